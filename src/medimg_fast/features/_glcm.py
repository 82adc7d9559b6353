"""IBSI grey-level co-occurrence matrix (GLCM) features: 13 directions in 3-D, 4 in 2-D.

Counting is chunk-exact: a block counts the ordered pairs ``(v, v + d)`` whose first
voxel ``v`` lies in its core, looking ``distance`` voxels into its halo for ``v + d``, so
every neighbour pair of the volume is counted once and the per-block counts add up to
the counts of the whole volume.  Symmetric matrices are ``C + C.T``.  The aggregations
(``_2D_avg`` ... ``_3D_comb``) are those of :mod:`._texture`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ._texture import TextureCounts, aggregate, directions_3d

__all__ = ["GLCM_FEATURES", "directions_3d", "glcm_aggregate", "glcm_features",
           "glcm_features_stack"]

GLCM_FEATURES = (
    "joint_max", "joint_avg", "joint_var", "joint_entr", "diff_avg", "diff_var",
    "diff_entr", "sum_avg", "sum_var", "sum_entr", "energy", "contrast", "dissimilarity",
    "inv_diff", "inv_diff_norm", "inv_diff_mom", "inv_diff_mom_norm", "inv_var", "corr",
    "auto_corr", "clust_tend", "clust_shade", "clust_prom", "info_corr1", "info_corr2",
)


def glcm_features(matrix) -> dict[str, float]:
    """The 25 IBSI GLCM features of one co-occurrence matrix (counts or probabilities).

    Parameters
    ----------
    matrix : (Ng, Ng) array
        Co-occurrence counts with grey levels ``1..Ng`` along both axes, symmetric for
        the IBSI definitions (``C + C.T``).

    Returns
    -------
    dict
        Feature name (without ``cm_`` prefix and aggregation suffix) to value; NaN where
        a feature is undefined (e.g. correlation of a one-level matrix).

    Notes
    -----
    Definitions from the IBSI reference manual (Zwanenburg et al., arXiv:1612.07003),
    section "Grey level co-occurrence based features"; logarithms are base 2.  The
    formulas run on a stack of matrices at once (:func:`glcm_features_stack`).
    """
    return glcm_features_stack(np.asarray(matrix)[None])[0]


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


def _symmetric_stack(matrices):
    m = np.asarray(matrices, dtype=np.float64)
    return glcm_features_stack(m + m.transpose(0, 2, 1))


def _symmetric_features(counts):
    return _symmetric_stack(np.asarray(counts)[None])[0]


def glcm_aggregate(counts, aggregations=("3D_avg", "3D_comb")) -> dict[str, float]:
    """IBSI aggregations of co-occurrence counts (ordered pairs, not symmetrised).

    ``counts`` is a :class:`~._texture.TextureCounts` (or, for the 3-D aggregations
    alone, the ``(13, Ng, Ng)`` per-direction counts); ``aggregations`` the tag
    suffixes wanted, e.g. ``("2D_avg", "3D_comb")``.
    """
    if not isinstance(counts, TextureCounts):
        counts = TextureCounts(volume=np.asarray(counts))
    dims = {a.rsplit("_", 1)[0].replace("_", ".") for a in aggregations}
    out = aggregate(counts, _symmetric_features, GLCM_FEATURES, "cm", dims, directional=True,
                    features_stack=_symmetric_stack)
    return {k: v for k, v in out.items() if any(k.endswith("_" + a) for a in aggregations)}
