"""Spatial units of the IBSI texture families and their aggregations.

Every texture family (GLCM ``cm``, run length ``rlm``, size zone ``szm``, distance zone
``dzm``, neighbourhood grey tone difference ``ngt``, neighbouring grey level dependence
``ngl``) counts matrices per *unit*: a 3-D unit is the whole ROI (per direction for the
directional families ``cm`` and ``rlm``), a 2-D unit one z-slice of a ``(z, y, x)``
volume (per in-plane direction for ``cm`` and ``rlm``).  The partial result of a family
is :class:`TextureCounts`: the 3-D matrices and a mapping from slice index to that
slice's matrices.  Merging two partials (two chunks, or two slices for the 2.5D
aggregation) adds matrices unit by unit, padding the smaller one with zeros, so the
IBSI "merged" aggregations and the chunked computation are one mechanism.

Aggregations (IBSI-1 reference manual, arXiv:1612.07003, section 3.1.5):

=========  ==========================================================================
tag        features computed from
=========  ==========================================================================
2D_avg     each slice's matrix per direction, averaged over slices and directions
2D_comb    each slice's directions merged, averaged over slices
2_5D_avg   each direction merged over slices, averaged over directions
2_5D_comb  every slice and direction merged into one matrix
3D_avg     each 3-D direction's matrix, averaged over directions
3D_comb    the 3-D directions merged into one matrix
=========  ==========================================================================

The non-directional families have one matrix per unit, and their tags are ``2D``
(averaged over slices), ``2_5D`` (merged over slices) and ``3D``.  Empty matrices (a
slice without ROI voxels, a direction without a neighbour pair) are left out of
averages.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "TEXTURE_DIMS",
    "TextureCounts",
    "aggregate",
    "aggregation_tags",
    "check_level_range",
    "check_levels",
    "directions_2d",
    "directions_3d",
    "emphasis_features",
    "merge_matrices",
]

#: The spatial dimensions of texture analysis, as ``FeatureSettings.texture_dims`` names them.
TEXTURE_DIMS = ("2D", "2.5D", "3D")


def directions_3d(distance: int = 1) -> np.ndarray:
    """The 13 unique 3-D directions ``(dz, dy, dx)`` (one of each +/- pair) times ``distance``."""
    dirs = [d for d in itertools.product((-1, 0, 1), repeat=3)
            if d > (0, 0, 0)]  # lexicographically positive: one of each opposite pair
    return np.array(dirs, dtype=np.int64) * int(distance)


def directions_2d(distance: int = 1) -> np.ndarray:
    """The 4 unique in-plane directions ``(0, dy, dx)`` times ``distance``."""
    dirs = directions_3d(1)
    return dirs[dirs[:, 0] == 0] * int(distance)


def check_levels(levels, ng, dims, *, values=True):
    """The validated ``(levels, ng)`` of a texture family's counting.

    ``levels`` must be a 3-D integer array and ``ng`` a positive integer, ``dims`` a
    collection of :data:`TEXTURE_DIMS`.  With ``values`` (NumPy levels), the voxels must lie
    in ``0..ng`` and ``levels`` comes back as contiguous int32; without (lazy Dask levels,
    checked per block with :func:`check_level_range`), it comes back as given.
    """
    if not values:
        levels = levels if hasattr(levels, "ndim") else np.asarray(levels)
    else:
        levels = np.asarray(levels)
    if levels.ndim != 3:
        raise ValueError(f"`levels` must be a 3-D (z, y, x) array, got {levels.ndim}-D")
    if np.dtype(levels.dtype).kind not in "iu":
        raise TypeError(f"`levels` must hold integer grey levels, got dtype {levels.dtype}")
    if isinstance(ng, bool) or not isinstance(ng, (int, np.integer)) or ng < 1:
        raise ValueError(f"`ng` must be a positive integer, got {ng!r}")
    if isinstance(dims, str) or set(dims) - set(TEXTURE_DIMS):
        raise ValueError(f"`dims` must be a collection of {TEXTURE_DIMS}, got {dims!r}")
    if not values:
        return levels, int(ng)
    check_level_range(levels, ng)
    return np.ascontiguousarray(levels, dtype=np.int32), int(ng)


def check_level_range(levels, ng):
    """``levels`` (a NumPy block) unchanged, or ValueError when a voxel lies outside
    ``0..ng``."""
    if levels.size and (levels.min() < 0 or levels.max() > ng):
        raise ValueError(f"`levels` must lie in 0..ng={ng} (0..{ng}; 0 outside the ROI), "
                         f"got range {levels.min()}..{levels.max()}")
    return levels


def merge_matrices(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """``a + b`` after padding both with zeros to their common (largest) shape.

    Run-length and zone matrices grow with the longest run or largest zone seen, so two
    chunks' matrices may differ in their last axes.
    """
    if a is None:
        return b
    if b is None:
        return a
    if a.shape == b.shape:
        return a + b
    shape = tuple(max(x, y) for x, y in zip(a.shape, b.shape))
    out = np.zeros(shape, dtype=np.result_type(a.dtype, b.dtype))
    out[tuple(slice(0, n) for n in a.shape)] += a
    out[tuple(slice(0, n) for n in b.shape)] += b
    return out


@dataclass
class TextureCounts:
    """A family's matrices per unit: mergeable partial result of a block or a volume.

    Attributes
    ----------
    volume : ndarray or None
        3-D units, shape ``(n_directions, *matrix_shape)`` (``n_directions`` is 1 for the
        non-directional families); None when 3-D is not asked.
    slices : dict of int to ndarray
        2-D units: global z index -> ``(n_directions, *matrix_shape)``; only slices with
        ROI voxels need to appear.  Empty when neither 2D nor 2.5D is asked.
    """

    volume: np.ndarray | None = None
    slices: dict[int, np.ndarray] = field(default_factory=dict)

    @staticmethod
    def merge(a: TextureCounts | None, b: TextureCounts | None) -> TextureCounts | None:
        """Unit-by-unit sum (exact for integer counts)."""
        if a is None:
            return b
        if b is None:
            return a
        slices = dict(a.slices)
        for z, m in b.slices.items():
            slices[z] = merge_matrices(slices.get(z), m)
        return TextureCounts(merge_matrices(a.volume, b.volume), slices)


def aggregation_tags(dims, directional: bool) -> list[str]:
    """The tag suffixes of ``dims`` (subset of :data:`TEXTURE_DIMS`), in output order."""
    out = []
    for d in TEXTURE_DIMS:
        if d not in dims:
            continue
        base = d.replace(".", "_")
        out += [f"{base}_avg", f"{base}_comb"] if directional else [base]
    return out


def _is_empty(m) -> bool:
    return not np.any(m)


def _mean_features(feature_sets: list[Mapping[str, float]], names) -> dict[str, float]:
    if not feature_sets:
        return {n: math.nan for n in names}
    # one reduction along the rows of a (feature, unit) array: each row is summed as
    # ``np.mean`` of that feature's list would (the same pairwise sum), in one call
    # instead of one per feature
    table = np.array([[f[n] for f in feature_sets] for n in names], dtype=np.float64)
    return dict(zip(names, np.mean(table, axis=1).tolist()))


def _sum_axis0(stack: np.ndarray) -> np.ndarray:
    return stack.sum(axis=0)


def aggregate(counts: TextureCounts, features: Callable[[np.ndarray], Mapping[str, float]],
              names, family: str, dims, directional: bool, *,
              features_stack=None) -> dict[str, float]:
    """IBSI-tagged features ``{family}_{name}_{aggregation}`` of ``counts``.

    Parameters
    ----------
    counts : TextureCounts
    features : callable
        Formulas of one matrix: ``features(matrix) -> {name: value}`` for every name of
        ``names`` (NaN where undefined).
    names : sequence of str
        Feature names without the family prefix and the aggregation suffix.
    family : str
        Tag prefix, e.g. ``"rlm"``.
    dims : collection of str
        Which of ``"2D"``, ``"2.5D"``, ``"3D"`` to report.
    directional : bool
        True for ``cm``/``rlm`` (``_avg``/``_comb`` suffixes), False for the others.
    features_stack : callable, optional
        ``features`` of a ``(k, ...)`` stack of matrices at once, a list of ``k``
        results: used for the per-direction matrices when given.

    Examples
    --------
    >>> c = TextureCounts(volume=np.array([[[2.0]]]))
    >>> aggregate(c, lambda m: {"n": float(m.sum())}, ["n"], "x", ["3D"], False)
    {'x_n_3D': 2.0}
    """
    out: dict[str, float] = {}

    def each(matrices):
        """``features`` of every non-empty matrix of ``matrices``."""
        kept = [m for m in matrices if not _is_empty(m)]
        if features_stack is None or len(kept) < 2:
            return [features(m) for m in kept]
        return features_stack(np.stack(kept))

    def put(values, suffix):
        for n in names:
            out[f"{family}_{n}_{suffix}"] = values[n]

    slices = [counts.slices[z] for z in sorted(counts.slices)]
    if "2D" in dims:
        if directional:
            per = each([m for s in slices for m in s])
            put(_mean_features(per, names), "2D_avg")
            per = each([_sum_axis0(s) for s in slices])
            put(_mean_features(per, names), "2D_comb")
        else:
            per = [features(s[0]) for s in slices if not _is_empty(s)]
            put(_mean_features(per, names), "2D")
    if "2.5D" in dims:
        merged = None
        for s in slices:
            merged = merge_matrices(merged, s)
        if directional:
            per = [] if merged is None else each(merged)
            put(_mean_features(per, names), "2_5D_avg")
            whole = None if merged is None else _sum_axis0(merged)
            put(_mean_features([] if whole is None or _is_empty(whole) else [features(whole)],
                               names), "2_5D_comb")
        else:
            whole = None if merged is None else merged[0]
            put(_mean_features([] if whole is None or _is_empty(whole) else [features(whole)],
                               names), "2_5D")
    if "3D" in dims:
        vol = counts.volume
        kept = [] if vol is None else [m for m in vol if not _is_empty(m)]
        if directional and features_stack is not None and len(kept) >= 2:
            # the directions and their sum in one stack: each matrix's formulas are
            # evaluated on its own row, so the values are those of two calls
            whole = _sum_axis0(vol)
            per = features_stack(np.stack(kept + [whole]))
            put(_mean_features(per[:-1], names), "3D_avg")
            put(_mean_features(per[-1:], names), "3D_comb")
        elif directional:
            per = [] if vol is None else each(vol)
            put(_mean_features(per, names), "3D_avg")
            whole = None if vol is None else _sum_axis0(vol)
            put(_mean_features([] if whole is None or _is_empty(whole) else [features(whole)],
                               names), "3D_comb")
        else:
            whole = None if vol is None else vol[0]
            put(_mean_features([] if whole is None or _is_empty(whole) else [features(whole)],
                               names), "3D")
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
