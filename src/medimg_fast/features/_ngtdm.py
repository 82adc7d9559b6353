"""IBSI neighbourhood grey tone difference matrix (NGTDM, ``ngt``).

For every ROI voxel ``k`` of grey level ``i`` the neighbourhood is the set of ROI voxels
within Chebyshev distance ``distance`` of it, the voxel itself excluded (3-D: up to 26
neighbours at distance 1; 2-D: up to 8 in its z-slice).  With ``W_k`` their number and
``A_k`` their mean grey level, voxels with ``W_k > 0`` add ``|i - A_k|`` to ``s_i`` and
1 to ``n_i``; voxels without a ROI neighbour are left out of both (IBSI-1 reference
manual, Zwanenburg et al., arXiv:1612.07003, "Neighbourhood grey tone difference based
features").

A unit's matrix is ``(ng, 2)`` float64: column 0 ``n_i``, column 1 ``s_i``.  Both are
sums over voxels, so the NGTDM of merged slices (IBSI 2.5D) or of a volume cut into
chunks is the sum of the matrices: a chunk counts the voxels of its core and reads the
``distance``-voxel halo around it only as neighbours.
"""

from __future__ import annotations

import functools

import numpy as np

from ._formulas import COARSENESS_MAX, ngtdm_table
from ._texture import TEXTURE_DIMS, TextureCounts, aggregate, check_levels

__all__ = ["COARSENESS_MAX", "NGTDM_FEATURES", "count_ngtdm", "ngtdm_aggregate", "ngtdm_features"]

NGTDM_FEATURES = ("coarseness", "contrast", "busyness", "complexity", "strength")


@functools.lru_cache(maxsize=2)
def _ngtdm_kernels(wide: bool = False):
    """The NGTDM kernel, its neighbourhood sums in int64 when ``wide`` (sums that may
    not fit int32), else in int32 (half the memory traffic)."""
    import numba

    acc = np.int64 if wide else np.int32

    @numba.njit(cache=True, nogil=True)
    def ngtdm(levels, bounds, distance, planar, ng):
        """``(units, ng, 2)`` NGTDM of the voxels in ``bounds`` (one unit per core
        z-slice when ``planar``, else one), neighbours read from all of ``levels``.

        The neighbourhood sums of levels and the counts of ROI voxels are box sums
        over the neighbourhood cube clipped to the array, taken separably (along x,
        then y, then z: ``3 (2 d + 1)`` reads a voxel instead of ``(2 d + 1)^3``);
        they are integers, so the differences accumulated voxel by voxel in raster
        order are the same floating-point numbers as from the direct sums.
        """
        nz, ny, nx = levels.shape
        z0, z1 = bounds[0, 0], bounds[0, 1]
        y0, y1 = bounds[1, 0], bounds[1, 1]
        x0, x1 = bounds[2, 0], bounds[2, 1]
        reach_z = 0 if planar else distance
        out = np.zeros((max(z1 - z0, 0) if planar else 1, ng, 2), np.float64)
        if z1 <= z0 or y1 <= y0 or x1 <= x0:
            return out
        # the region the core's neighbourhoods read
        rz0, rz1 = max(z0 - reach_z, 0), min(z1 + reach_z, nz)
        ry0, ry1 = max(y0 - distance, 0), min(y1 + distance, ny)
        mz, my, mx = rz1 - rz0, ry1 - ry0, x1 - x0
        sum_x = np.zeros((mz, my, mx), acc)
        cnt_x = np.zeros((mz, my, mx), acc)
        for z in range(rz0, rz1):
            for y in range(ry0, ry1):
                row = levels[z, y]
                sx = sum_x[z - rz0, y - ry0]
                cx = cnt_x[z - rz0, y - ry0]
                # one offset at a time over the row, clipped to the array (SIMD)
                for o in range(-distance, distance + 1):
                    for x in range(max(x0, -o), min(x1, nx - o)):
                        h = row[x + o]
                        sx[x - x0] += h
                        cx[x - x0] += h > 0
        sum_y = np.zeros((mz, y1 - y0, mx), acc)
        cnt_y = np.zeros((mz, y1 - y0, mx), acc)
        for z in range(mz):
            for y in range(y0, y1):
                ya, yb = max(y - distance, 0) - ry0, min(y + distance + 1, ny) - ry0
                for yy in range(ya, yb):
                    for x in range(mx):
                        sum_y[z, y - y0, x] += sum_x[z, yy, x]
                        cnt_y[z, y - y0, x] += cnt_x[z, yy, x]
        for z in range(z0, z1):
            unit = z - z0 if planar else 0
            za, zb = max(z - reach_z, 0) - rz0, min(z + reach_z + 1, nz) - rz0
            for y in range(y0, y1):
                for x in range(x0, x1):
                    g = levels[z, y, x]
                    if g == 0:
                        continue
                    total = 0
                    count = 0
                    for zz in range(za, zb):
                        total += sum_y[zz, y - y0, x - x0]
                        count += cnt_y[zz, y - y0, x - x0]
                    # the centre was summed with its neighbours
                    total -= g
                    count -= 1
                    if count > 0:
                        out[unit, g - 1, 0] += 1.0
                        # |i - total / W| from the exact integer numerator
                        out[unit, g - 1, 1] += abs(g * count - total) / count
        return out

    return ngtdm


def _core_bounds(core, shape) -> np.ndarray:
    if core is None:
        return np.array([[0, n] for n in shape], dtype=np.int64)
    if not isinstance(core, tuple) or len(core) != 3 or not all(
            isinstance(c, slice) for c in core):
        raise ValueError(f"`core` must be a tuple of 3 slices, got {core!r}")
    bounds = []
    for c, n in zip(core, shape):
        start, stop, step = c.indices(n)
        if step != 1:
            raise ValueError(f"`core` slices must have step 1, got {core!r}")
        bounds.append([start, max(start, stop)])
    return np.array(bounds, dtype=np.int64)


def count_ngtdm(levels, ng, dims=TEXTURE_DIMS, *, distance=1, core=None) -> TextureCounts:
    """Neighbourhood grey tone difference matrices of the volume and of every z-slice.

    Parameters
    ----------
    levels : (z, y, x) int array
        Discretised grey levels ``1..ng`` inside the ROI, 0 outside.
    ng : int
        Number of grey levels.
    dims : collection of {"2D", "2.5D", "3D"}
        "3D": neighbourhoods in the volume; "2D"/"2.5D": in-plane neighbourhoods of
        each slice.
    distance : int, optional
        Chebyshev radius of the neighbourhood (IBSI default 1).
    core : tuple of 3 slices, optional
        The voxels whose neighbourhoods are counted, as slices (step 1) of ``levels``
        itself (indices relative to this array, not to a larger volume).  The voxels
        outside it are a halo read only as neighbours.  The counts of chunks whose cores
        tile a volume, each given ``distance`` voxels of halo where the volume goes on,
        add up to the counts of the whole volume.  Default: all of ``levels``.

    Returns
    -------
    TextureCounts
        Units of shape ``(1, ng, 2)`` (float64): ``[0, i - 1, 0]`` is ``n_i``, the number
        of voxels of level ``i`` with at least one ROI neighbour, ``[0, i - 1, 1]`` is
        ``s_i``.  ``slices`` holds the core z-slices with ROI voxels in the core, keyed
        by their z index in ``levels``.

    Raises
    ------
    ValueError
        If ``levels`` is not 3-D or leaves ``0..ng``, ``ng`` or ``distance`` is not a
        positive integer, ``dims`` is unknown, or ``core`` is not 3 slices of step 1.
    TypeError
        If ``levels`` is not an integer array.

    Notes
    -----
    IBSI-1 reference manual (arXiv:1612.07003), "Neighbourhood grey tone difference
    based features": ``s_i = sum_k |i - A_k| [X(k) = i and W_k > 0]``, ``A_k`` the mean
    level of the ``W_k`` ROI voxels in the neighbourhood of ``k``.

    Examples
    --------
    >>> lv = np.array([[[1, 2, 2]]], dtype=np.int32)
    >>> count_ngtdm(lv, 2, ["3D"]).volume[0]
    array([[1. , 1. ],
           [2. , 0.5]])
    """
    levels, ng = check_levels(levels, ng, dims)
    if isinstance(distance, bool) or not isinstance(distance, (int, np.integer)) or (
            distance < 1):
        raise ValueError(f"`distance` must be a positive integer, got {distance!r}")
    bounds = _core_bounds(core, levels.shape)
    ng = int(ng)
    reach = 2 * int(distance) + 1
    ngtdm = _ngtdm_kernels(wide=ng * reach ** 3 >= 2**31)
    counts = TextureCounts()
    inner = tuple(slice(a, b) for a, b in bounds)
    if "3D" in dims and levels[inner].any():
        counts.volume = ngtdm(levels, bounds, int(distance), False, ng)
    if "2D" in dims or "2.5D" in dims:
        per_slice = ngtdm(levels, bounds, int(distance), True, ng)
        has_roi = levels[inner].any(axis=(1, 2))
        for k in np.flatnonzero(has_roi):
            counts.slices[int(bounds[0, 0] + k)] = per_slice[k][None]
    return counts


def ngtdm_features(matrix) -> dict[str, float]:
    """The 5 IBSI NGTDM features of one matrix.

    Parameters
    ----------
    matrix : (Ng, 2) array
        Column 0 ``n_i`` (voxels of level ``i`` with a valid neighbourhood), column 1
        ``s_i`` (their summed grey tone differences), as counted by :func:`count_ngtdm`.

    Returns
    -------
    dict
        Name of :data:`NGTDM_FEATURES` to value; all NaN when no voxel has a neighbour.

    Notes
    -----
    IBSI-1 reference manual (arXiv:1612.07003), "Neighbourhood grey tone difference
    based features".  ``N_vc = sum n_i``, ``p_i = n_i / N_vc``, ``N_gp`` the number of
    levels with ``p_i > 0``; double sums run over those levels.  IBSI's conventions:
    coarseness is capped at ``1e6`` when ``sum p_i s_i = 0``; contrast and busyness are 0
    when ``N_gp = 1``; strength is 0 when ``sum s_i = 0``.  Busyness is NaN when its
    denominator vanishes with ``N_gp > 1`` (e.g. ``p = (2/3, 1/3)``), which IBSI leaves
    undefined.

    Examples
    --------
    >>> f = ngtdm_features(np.array([[1.0, 1.0], [2.0, 0.5]]))
    >>> round(f["coarseness"], 4), round(f["strength"], 4)
    (1.5, 1.3333)
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != 2:
        raise ValueError(f"`matrix` must have shape (Ng, 2), got {m.shape}")
    # ngt_coarseness, ngt_contrast, ngt_busyness, ngt_complexity, ngt_strength
    values, _ = ngtdm_table(m[None])
    return dict(zip(NGTDM_FEATURES, values[0].tolist()))


def _ngtdm_table(stack, with_sum):
    # non-directional: never asked for a sum of units
    return ngtdm_table(stack)


def ngtdm_aggregate(counts: TextureCounts, dims=TEXTURE_DIMS) -> dict[str, float]:
    """IBSI-tagged ``ngt_{feature}_{2D, 2_5D, 3D}`` features of :func:`count_ngtdm` counts."""
    return aggregate(counts, None, NGTDM_FEATURES, "ngt", dims, directional=False,
                     features_stack=_ngtdm_table)
