"""Independent NumPy references of the compiled texture formulas (``_formulas.py``).

These are the NumPy formulas the extraction used before the compiled ones replaced them:
written from the IBSI-1 reference manual (Zwanenburg et al., arXiv:1612.07003) in array
form, with the general (not necessarily symmetric) GLCM definitions (separate row and
column marginals, ``HXY1`` and ``HXY2`` from the outer product of the marginals) and the
emphasis formulas from the non-zero entries.  They share no code with the package.
"""

from __future__ import annotations

import functools
import math

import numpy as np

GLCM_FEATURES = (
    "joint_max", "joint_avg", "joint_var", "joint_entr", "diff_avg", "diff_var",
    "diff_entr", "sum_avg", "sum_var", "sum_entr", "energy", "contrast", "dissimilarity",
    "inv_diff", "inv_diff_norm", "inv_diff_mom", "inv_diff_mom_norm", "inv_var", "corr",
    "auto_corr", "clust_tend", "clust_shade", "clust_prom", "info_corr1", "info_corr2",
)
NGTDM_FEATURES = ("coarseness", "contrast", "busyness", "complexity", "strength")


@functools.lru_cache(maxsize=16)
def _marginal_groups(ng: int):
    """Orders of the flattened ``(i, j)`` grid grouping it by ``|i - j|`` and by
    ``i + j`` (stable: ascending flat index within a group, as ``bincount`` adds), and
    the groups' start offsets (every group of ``0 .. ng - 1`` and ``2 .. 2 ng`` exists)."""
    lv = np.arange(ng)
    out = []
    for key in (np.abs(lv[:, None] - lv[None, :]).ravel(), (lv[:, None] + lv[None, :]).ravel()):
        order = np.argsort(key, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(key[order]) != 0])
        out += [order, starts]
    return tuple(out)


def _dot_rows(a, v):
    """Row-wise dot products without BLAS (a threaded BLAS call on tiny operands costs
    more than the arithmetic on a busy machine)."""
    return np.sum(a * v, axis=-1)


def _xlog2x_sum(x, axes):
    """``sum x log2 x`` over ``axes``, 0 log 0 taken as 0."""
    return np.sum(x * np.log2(np.where(x > 0, x, 1.0)), axis=axes)


def glcm_features_stack(stack) -> list[dict[str, float]]:
    """:func:`glcm_features` of each matrix of a ``(k, Ng, Ng)`` stack (directions,
    slices), the formulas evaluated on the whole stack at once: a few dozen array
    operations instead of a few dozen per matrix."""
    m = np.asarray(stack, dtype=np.float64)
    k, ng = m.shape[0], m.shape[1]
    total = m.reshape(k, -1).sum(axis=1)
    valid = total > 0
    out: list[dict[str, float]] = [dict.fromkeys(GLCM_FEATURES, math.nan) for _ in range(k)]
    if not valid.any():
        return out
    m, total = m[valid], total[valid]
    kv = len(total)
    axes = (1, 2)
    p = m / total[:, None, None]
    lv = np.arange(1, ng + 1, dtype=np.float64)
    i = lv[:, None]
    j = lv[None, :]
    pi = p.sum(axis=2)
    pj = p.sum(axis=1)
    mu = _dot_rows(pi, lv)  # joint average (= mu_i)
    mu_j = _dot_rows(pj, lv)
    var_i = np.sum(pi * (lv - mu[:, None]) ** 2, axis=1)
    var_j = np.sum(pj * (lv - mu_j[:, None]) ** 2, axis=1)
    absdiff = np.abs(i - j)
    diff2 = absdiff * absdiff
    # diagonal and anti-diagonal marginals
    diff_order, diff_starts, sum_order, sum_starts = _marginal_groups(ng)
    flat = p.reshape(kv, -1)
    p_diff = np.add.reduceat(flat[:, diff_order], diff_starts, axis=1)
    p_sum = np.add.reduceat(flat[:, sum_order], sum_starts, axis=1)
    kd = np.arange(ng, dtype=np.float64)
    ks = np.arange(2, 2 * ng + 1, dtype=np.float64)
    diff_avg = _dot_rows(p_diff, kd)
    sum_avg = _dot_rows(p_sum, ks)
    hxy = -_xlog2x_sum(flat, 1)
    hx = -_xlog2x_sum(pi, 1)
    hy = -_xlog2x_sum(pj, 1)
    outer = pi[:, :, None] * pj[:, None, :]
    # where p > 0, both marginals are > 0
    hxy1 = -np.sum(p * np.log2(np.where(p > 0, outer, 1.0)), axis=axes)
    hxy2 = -_xlog2x_sum(outer, axes)
    mu3 = mu[:, None, None]
    mu_j3 = mu_j[:, None, None]
    cl = i + j - mu3 - mu_j3
    cl2 = cl * cl  # powers by products: ``**3`` and ``**4`` go through pow, 10x slower
    sd = np.sqrt(var_i * var_j)
    hmax = np.maximum(hx, hy)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(sd > 0, np.sum((i - mu3) * (j - mu_j3) * p, axis=axes) / sd,
                        math.nan)
        info_corr1 = np.where(hmax > 0, (hxy - hxy1) / hmax, math.nan)
    columns = {
        "joint_max": flat.max(axis=1),
        "joint_avg": mu,
        "joint_var": np.sum((i - mu3) ** 2 * p, axis=axes),
        "joint_entr": hxy,
        "diff_avg": diff_avg,
        "diff_var": np.sum(p_diff * (kd - diff_avg[:, None]) ** 2, axis=1),
        "diff_entr": -_xlog2x_sum(p_diff, 1),
        "sum_avg": sum_avg,
        "sum_var": np.sum(p_sum * (ks - sum_avg[:, None]) ** 2, axis=1),
        "sum_entr": -_xlog2x_sum(p_sum, 1),
        "energy": np.sum(p * p, axis=axes),
        "contrast": np.sum(diff2 * p, axis=axes),
        "dissimilarity": np.sum(absdiff * p, axis=axes),
        "inv_diff": np.sum(p / (1.0 + absdiff), axis=axes),
        "inv_diff_norm": np.sum(p / (1.0 + absdiff / ng), axis=axes),
        "inv_diff_mom": np.sum(p / (1.0 + diff2), axis=axes),
        "inv_diff_mom_norm": np.sum(p / (1.0 + diff2 / ng ** 2), axis=axes),
        "inv_var": _dot_rows(p_diff[:, 1:], 1.0 / kd[1:] ** 2),
        "corr": corr,
        "auto_corr": np.sum(i * j * p, axis=axes),
        "clust_tend": np.sum(cl2 * p, axis=axes),
        "clust_shade": np.sum(cl2 * cl * p, axis=axes),
        "clust_prom": np.sum(cl2 * cl2 * p, axis=axes),
        "info_corr1": info_corr1,
        "info_corr2": np.sqrt(np.maximum(0.0, 1.0 - np.exp(-2.0 * (hxy2 - hxy)))),
    }
    rows = np.flatnonzero(valid)
    values = np.stack([columns[n] for n in GLCM_FEATURES], axis=1).tolist()
    for r, row in zip(rows, values):
        out[r] = dict(zip(GLCM_FEATURES, row))
    return out


def emphasis_features(matrix, n_voxels=None) -> tuple[float, ...]:
    """The 16 formulas IBSI shares between the matrices of grey level ``i`` by a count
    ``j`` (run length, zone size, zone distance, dependence ``+ 1``), in this order::

        short/small j emphasis       sum m / j^2 / Ns       (rlm_sre, szm_sze, dzm_sde, ngl_lde)
        long/large j emphasis        sum m j^2 / Ns
        low grey level emphasis      sum m / i^2 / Ns
        high grey level emphasis     sum m i^2 / Ns
        short j low grey level       sum m / (i^2 j^2) / Ns
        short j high grey level      sum m i^2 / j^2 / Ns
        long j low grey level        sum m j^2 / i^2 / Ns
        long j high grey level       sum m i^2 j^2 / Ns
        grey level non-uniformity    sum_i (sum_j m)^2 / Ns, and normalised by Ns^2
        j non-uniformity             sum_j (sum_i m)^2 / Ns, and normalised by Ns^2
        percentage                   Ns / Nv
        grey level variance          sum p (i - mu_i)^2,  p = m / Ns
        j variance                   sum p (j - mu_j)^2
        j entropy                    -sum p log2 p

    ``Ns = sum m``; ``Nv`` is ``n_voxels``, by default ``sum j m`` (the voxels of runs
    and zones, each voxel once per merged direction).  Evaluated on the non-zero entries
    only: a size-zone matrix is as wide as the largest zone and mostly empty.  All NaN
    for an empty matrix.

    Examples
    --------
    >>> f = emphasis_features(np.array([[2, 1]]))  # two counts of j = 1, one of j = 2
    >>> f[0], f[12]
    (0.75, 0.75)
    """
    m = np.asarray(matrix)
    # the columns holding counts first (a vectorised reduction), then the non-zero
    # entries of those: the same entries in the same order as ``np.nonzero(m)``
    cols = np.flatnonzero(m.any(axis=0)) if m.ndim == 2 else None
    if cols is not None and 4 * len(cols) < m.shape[1]:
        ii, kk = np.nonzero(m[:, cols])
        jj = cols[kk]
    else:
        ii, jj = np.nonzero(m)
    c = m[ii, jj].astype(np.float64)  # only the non-zero entries are converted
    n_s = float(c.sum())
    if n_s <= 0:
        return (math.nan,) * 16
    i = ii + 1.0
    j = jj + 1.0
    i2, j2 = i * i, j * j
    n_v = float(np.dot(c, j)) if n_voxels is None else float(n_voxels)
    p = c / n_s
    # the marginals' empty bins add nothing to their sums of squares: dropped, so that
    # the dot products stay short (a long one goes to threaded BLAS, slow on busy cores)
    m_i = np.bincount(ii, weights=c)
    m_j = np.bincount(jj, weights=c)
    m_i, m_j = m_i[m_i > 0], m_j[m_j > 0]
    mu_i = float(np.dot(i, p))
    mu_j = float(np.dot(j, p))
    return (
        float(np.dot(c, 1.0 / j2)) / n_s,
        float(np.dot(c, j2)) / n_s,
        float(np.dot(c, 1.0 / i2)) / n_s,
        float(np.dot(c, i2)) / n_s,
        float(np.dot(c, 1.0 / (i2 * j2))) / n_s,
        float(np.dot(c, i2 / j2)) / n_s,
        float(np.dot(c, j2 / i2)) / n_s,
        float(np.dot(c, i2 * j2)) / n_s,
        float(np.dot(m_i, m_i)) / n_s,
        float(np.dot(m_i, m_i)) / n_s**2,
        float(np.dot(m_j, m_j)) / n_s,
        float(np.dot(m_j, m_j)) / n_s**2,
        n_s / n_v if n_v > 0 else math.nan,
        float(np.dot((i - mu_i) ** 2, p)),
        float(np.dot((j - mu_j) ** 2, p)),
        float(-np.dot(p, np.log2(p))),
    )



def dependence_energy(matrix) -> float:
    """``ngl_dc_energy``: ``sum p^2``, NaN for an empty matrix."""
    s = np.asarray(matrix, dtype=np.float64)
    ns = float(s.sum())
    return float(np.sum((s / ns) ** 2)) if ns > 0 else math.nan


def ngtdm_features(matrix) -> dict[str, float]:
    """NumPy reference of :func:`medimg_fast.features._ngtdm.ngtdm_features` (its
    docstring states the definitions and IBSI's conventions)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != 2:
        raise ValueError(f"`matrix` must have shape (Ng, 2), got {m.shape}")
    n, s = m[:, 0], m[:, 1]
    n_vc = float(n.sum())
    if n_vc <= 0:
        return {k: math.nan for k in NGTDM_FEATURES}
    present = n > 0
    lv = np.arange(1, m.shape[0] + 1, dtype=np.float64)[present]
    p = n[present] / n_vc
    s = s[present]
    n_gp = lv.size
    ps = p * s
    sum_ps = float(ps.sum())
    sum_s = float(s.sum())
    diff = lv[:, None] - lv[None, :]
    p_plus = p[:, None] + p[None, :]
    ip = lv * p
    busy_den = float(np.abs(ip[:, None] - ip[None, :]).sum())
    if n_gp > 1:
        contrast = (float(np.sum(p[:, None] * p[None, :] * diff**2)) / (n_gp * (n_gp - 1))
                    * sum_s / n_vc)
        busyness = sum_ps / busy_den if busy_den > 0 else math.nan
    else:
        contrast = busyness = 0.0
    complexity = float(np.sum(np.abs(diff) * (ps[:, None] + ps[None, :]) / p_plus)) / n_vc
    strength = float(np.sum(p_plus * diff**2)) / sum_s if sum_s > 0 else 0.0
    return {
        "coarseness": 1.0 / sum_ps if sum_ps > 0 else 1.0e6,  # ngt.coarseness
        "contrast": contrast,                                            # ngt.contrast
        "busyness": busyness,                                            # ngt.busyness
        "complexity": complexity,                                        # ngt.complexity
        "strength": strength,                                            # ngt.strength
    }
