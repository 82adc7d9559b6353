"""IBSI grey-level co-occurrence matrix (GLCM) features: 13 directions in 3-D, 4 in 2-D.

Counting is chunk-exact: a block counts the ordered pairs ``(v, v + d)`` whose first
voxel ``v`` lies in its core, looking ``distance`` voxels into its halo for ``v + d``, so
every neighbour pair of the volume is counted once and the per-block counts add up to
the counts of the whole volume.  Symmetric matrices are ``C + C.T``.  The aggregations
(``_2D_avg`` ... ``_3D_comb``) are those of :mod:`._texture`.
"""

from __future__ import annotations

import math

import numpy as np

from ._texture import TextureCounts, aggregate, directions_3d

__all__ = ["GLCM_FEATURES", "directions_3d", "glcm_aggregate", "glcm_features"]

GLCM_FEATURES = (
    "joint_max", "joint_avg", "joint_var", "joint_entr", "diff_avg", "diff_var",
    "diff_entr", "sum_avg", "sum_var", "sum_entr", "energy", "contrast", "dissimilarity",
    "inv_diff", "inv_diff_norm", "inv_diff_mom", "inv_diff_mom_norm", "inv_var", "corr",
    "auto_corr", "clust_tend", "clust_shade", "clust_prom", "info_corr1", "info_corr2",
)


def _entropy(p):
    p = p[p > 0]
    return float(-np.dot(p, np.log2(p)))


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
    section "Grey level co-occurrence based features"; logarithms are base 2.
    """
    m = np.asarray(matrix, dtype=np.float64)
    ng = m.shape[0]
    total = m.sum()
    if total <= 0:
        return {k: math.nan for k in GLCM_FEATURES}
    p = m / total
    lv = np.arange(1, ng + 1, dtype=np.float64)
    i = lv[:, None]
    j = lv[None, :]
    pi = p.sum(axis=1)
    pj = p.sum(axis=0)
    mu = float(np.dot(pi, lv))  # joint average (= mu_i)
    mu_j = float(np.dot(pj, lv))
    var_i = float(np.dot(pi, (lv - mu) ** 2))
    var_j = float(np.dot(pj, (lv - mu_j) ** 2))
    absdiff = np.abs(i - j)
    diff2 = absdiff * absdiff
    # diagonal and anti-diagonal marginals
    k_diff = absdiff.astype(np.int64).ravel()
    p_diff = np.bincount(k_diff, weights=p.ravel(), minlength=ng)
    kd = np.arange(ng, dtype=np.float64)
    k_sum = (i + j).astype(np.int64).ravel()
    p_sum = np.bincount(k_sum, weights=p.ravel(), minlength=2 * ng + 1)[2:]
    ks = np.arange(2, 2 * ng + 1, dtype=np.float64)
    diff_avg = float(np.dot(p_diff, kd))
    sum_avg = float(np.dot(p_sum, ks))
    hxy = _entropy(p.ravel())
    hx = _entropy(pi)
    hy = _entropy(pj)
    outer = np.outer(pi, pj)
    nzp = p > 0
    hxy1 = float(-np.sum(p[nzp] * np.log2(outer[nzp])))
    nzo = outer > 0
    hxy2 = float(-np.sum(outer[nzo] * np.log2(outer[nzo])))
    cl = i + j - mu - mu_j
    sd = math.sqrt(var_i * var_j)
    hmax = max(hx, hy)
    return {
        "joint_max": float(p.max()),
        "joint_avg": mu,
        "joint_var": float(np.sum((i - mu) ** 2 * p)),
        "joint_entr": hxy,
        "diff_avg": diff_avg,
        "diff_var": float(np.dot(p_diff, (kd - diff_avg) ** 2)),
        "diff_entr": _entropy(p_diff),
        "sum_avg": sum_avg,
        "sum_var": float(np.dot(p_sum, (ks - sum_avg) ** 2)),
        "sum_entr": _entropy(p_sum),
        "energy": float(np.sum(p * p)),
        "contrast": float(np.sum(diff2 * p)),
        "dissimilarity": float(np.sum(absdiff * p)),
        "inv_diff": float(np.sum(p / (1.0 + absdiff))),
        "inv_diff_norm": float(np.sum(p / (1.0 + absdiff / ng))),
        "inv_diff_mom": float(np.sum(p / (1.0 + diff2))),
        "inv_diff_mom_norm": float(np.sum(p / (1.0 + diff2 / ng ** 2))),
        "inv_var": float(np.dot(p_diff[1:], 1.0 / kd[1:] ** 2)),
        "corr": (float(np.sum((i - mu) * (j - mu_j) * p)) / sd) if sd > 0 else math.nan,
        "auto_corr": float(np.sum(i * j * p)),
        "clust_tend": float(np.sum(cl ** 2 * p)),
        "clust_shade": float(np.sum(cl ** 3 * p)),
        "clust_prom": float(np.sum(cl ** 4 * p)),
        "info_corr1": (hxy - hxy1) / hmax if hmax > 0 else math.nan,
        "info_corr2": math.sqrt(max(0.0, 1.0 - math.exp(-2.0 * (hxy2 - hxy)))),
    }


def _symmetric_features(counts):
    m = np.asarray(counts, dtype=np.float64)
    return glcm_features(m + m.T)


def glcm_aggregate(counts, aggregations=("3D_avg", "3D_comb")) -> dict[str, float]:
    """IBSI aggregations of co-occurrence counts (ordered pairs, not symmetrised).

    ``counts`` is a :class:`~._texture.TextureCounts` (or, for the 3-D aggregations
    alone, the ``(13, Ng, Ng)`` per-direction counts); ``aggregations`` the tag
    suffixes wanted, e.g. ``("2D_avg", "3D_comb")``.
    """
    if not isinstance(counts, TextureCounts):
        counts = TextureCounts(volume=np.asarray(counts))
    dims = {a.rsplit("_", 1)[0].replace("_", ".") for a in aggregations}
    out = aggregate(counts, _symmetric_features, GLCM_FEATURES, "cm", dims, directional=True)
    return {k: v for k, v in out.items() if any(k.endswith("_" + a) for a in aggregations)}
