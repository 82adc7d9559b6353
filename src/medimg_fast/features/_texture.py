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


def _mean_rows(values: np.ndarray, counted: np.ndarray, names) -> dict[str, float]:
    """The mean of the counted rows of a ``(unit, feature)`` table, NaN without one."""
    kept = values[counted]
    if not len(kept):
        return {n: math.nan for n in names}
    # one reduction along the rows of a contiguous (feature, unit) array: each feature
    # summed as ``np.mean`` of its list of values would (the same pairwise sum)
    return dict(zip(names, np.mean(np.ascontiguousarray(kept.T), axis=1).tolist()))


def _sum_axis0(stack: np.ndarray) -> np.ndarray:
    return stack.sum(axis=0)


def aggregate(counts: TextureCounts, features: Callable[[np.ndarray], Mapping[str, float]] | None,
              names, family: str, dims, directional: bool, *,
              features_stack=None) -> dict[str, float]:
    """IBSI-tagged features ``{family}_{name}_{aggregation}`` of ``counts``.

    Parameters
    ----------
    counts : TextureCounts
    features : callable or None
        Formulas of one matrix: ``features(matrix) -> {name: value}`` for every name of
        ``names`` (NaN where undefined); used when ``features_stack`` is None.
    names : sequence of str
        Feature names without the family prefix and the aggregation suffix.
    family : str
        Tag prefix, e.g. ``"rlm"``.
    dims : collection of str
        Which of ``"2D"``, ``"2.5D"``, ``"3D"`` to report.
    directional : bool
        True for ``cm``/``rlm`` (``_avg``/``_comb`` suffixes), False for the others.
    features_stack : callable, optional
        The formulas of a ``(k, ...)`` stack of matrices in one call:
        ``features_stack(stack, with_sum) -> (values, counted)``, ``values`` a ``(k [+
        1], len(names))`` array (a last row for the stack's sum with ``with_sum``) and
        ``counted`` False for the rows of empty matrices (left out of averages).

    Examples
    --------
    >>> c = TextureCounts(volume=np.array([[[2.0]]]))
    >>> aggregate(c, lambda m: {"n": float(m.sum())}, ["n"], "x", ["3D"], False)
    {'x_n_3D': 2.0}
    """
    out: dict[str, float] = {}
    width = len(names)

    def table(stack, with_sum=False):
        """``(values, counted)`` of the matrices of ``stack`` (an array of them or a list)
        and, with ``with_sum``, of their sum as a last row."""
        if isinstance(stack, list):
            if not stack:
                return np.empty((0, width)), np.zeros(0, bool)
            if all(m.shape == stack[0].shape for m in stack):
                stack = np.stack(stack)
            else:  # run and zone matrices of different widths: one by one
                parts = [table(m[None]) for m in stack]
                return (np.concatenate([p[0] for p in parts]),
                        np.concatenate([p[1] for p in parts]))
        if features_stack is not None:
            return features_stack(stack, with_sum)
        matrices = list(stack) + ([_sum_axis0(stack)] if with_sum else [])
        counted = np.array([not _is_empty(m) for m in matrices], dtype=bool)
        values = np.full((len(matrices), width), math.nan)
        for r, m in enumerate(matrices):
            if counted[r]:
                f = features(m)
                values[r] = [f[n] for n in names]
        return values, counted

    def put(values, counted, suffix):
        for n, v in _mean_rows(values, counted, names).items():
            out[f"{family}_{n}_{suffix}"] = v

    def put_none(suffix):
        for n in names:
            out[f"{family}_{n}_{suffix}"] = math.nan

    slices = [counts.slices[z] for z in sorted(counts.slices)]
    if "2D" in dims:
        if directional:
            values, counted = table([m for s in slices for m in s])
            put(values, counted, "2D_avg")
            values, counted = table([_sum_axis0(s) for s in slices])
            put(values, counted, "2D_comb")
        else:
            values, counted = table([s[0] for s in slices])
            put(values, counted, "2D")
    if "2.5D" in dims:
        merged = None
        for s in slices:
            merged = merge_matrices(merged, s)
        if merged is None:
            for suffix in (["2_5D_avg", "2_5D_comb"] if directional else ["2_5D"]):
                put_none(suffix)
        elif directional:
            # the directions and their sum in one call
            values, counted = table(merged, with_sum=True)
            put(values[:-1], counted[:-1], "2_5D_avg")
            put(values[-1:], counted[-1:], "2_5D_comb")
        else:
            values, counted = table(merged[:1])
            put(values, counted, "2_5D")
    if "3D" in dims:
        vol = counts.volume
        if vol is None:
            for suffix in (["3D_avg", "3D_comb"] if directional else ["3D"]):
                put_none(suffix)
        elif directional:
            values, counted = table(vol, with_sum=True)
            put(values[:-1], counted[:-1], "3D_avg")
            put(values[-1:], counted[-1:], "3D_comb")
        else:
            values, counted = table(vol[:1])
            put(values, counted, "3D")
    return out
