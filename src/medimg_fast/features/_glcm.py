"""IBSI grey-level co-occurrence matrix (GLCM) features: 13 directions in 3-D, 4 in 2-D.

Counting is chunk-exact: a block counts the ordered pairs ``(v, v + d)`` whose first
voxel ``v`` lies in its core, looking ``distance`` voxels into its halo for ``v + d``, so
every neighbour pair of the volume is counted once and the per-block counts add up to
the counts of the whole volume.  Symmetric matrices are ``C + C.T``.  The aggregations
(``_2D_avg`` ... ``_3D_comb``) are those of :mod:`._texture`.
"""

from __future__ import annotations

import numpy as np

from ._formulas import glcm_table
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
        Symmetric co-occurrence counts (``C + C.T``, the IBSI definitions) with grey
        levels ``1..Ng`` along both axes.

    Returns
    -------
    dict
        Feature name (without ``cm_`` prefix and aggregation suffix) to value; NaN where
        a feature is undefined (e.g. correlation of a one-level matrix), all NaN for an
        empty matrix.

    Raises
    ------
    ValueError
        If ``matrix`` is not square or not symmetric.

    Notes
    -----
    Definitions from the IBSI reference manual (Zwanenburg et al., arXiv:1612.07003),
    section "Grey level co-occurrence based features"; logarithms are base 2.  The
    compiled formulas of :mod:`._formulas`, shared with the feature maps.

    Examples
    --------
    >>> f = glcm_features(np.array([[2, 1], [1, 0]]))
    >>> f["joint_max"], f["contrast"]
    (0.5, 0.5)
    """
    m = np.asarray(matrix)
    if m.ndim != 2:
        raise ValueError(f"`matrix` must be 2-D (Ng, Ng), got shape {m.shape}")
    return glcm_features_stack(m[None])[0]


def glcm_features_stack(stack) -> list[dict[str, float]]:
    """:func:`glcm_features` of each symmetric matrix of a ``(k, Ng, Ng)`` stack
    (directions, slices), in one compiled call."""
    m = np.asarray(stack)
    if m.ndim != 3 or m.shape[1] != m.shape[2]:
        raise ValueError(f"`stack` must have shape (k, Ng, Ng), got {m.shape}")
    if not np.array_equal(m, m.transpose(0, 2, 1)):
        raise ValueError("GLCM matrices must be symmetric (C + C.T of the pair counts)")
    values, _ = glcm_table(m, symmetrise=False)
    return [dict(zip(GLCM_FEATURES, row)) for row in values.tolist()]


def _symmetric_table(counts, with_sum):
    # the ordered pair counts of the units, symmetrised by the compiled formulas
    return glcm_table(counts, symmetrise=True, with_sum=with_sum)


def glcm_aggregate(counts, aggregations=("3D_avg", "3D_comb")) -> dict[str, float]:
    """IBSI aggregations of co-occurrence counts (ordered pairs, not symmetrised).

    ``counts`` is a :class:`~._texture.TextureCounts` (or, for the 3-D aggregations
    alone, the ``(13, Ng, Ng)`` per-direction counts); ``aggregations`` the tag
    suffixes wanted, e.g. ``("2D_avg", "3D_comb")``.
    """
    if not isinstance(counts, TextureCounts):
        counts = TextureCounts(volume=np.asarray(counts))
    dims = {a.rsplit("_", 1)[0].replace("_", ".") for a in aggregations}
    out = aggregate(counts, None, GLCM_FEATURES, "cm", dims, directional=True,
                    features_stack=_symmetric_table)
    return {k: v for k, v in out.items() if any(k.endswith("_" + a) for a in aggregations)}
