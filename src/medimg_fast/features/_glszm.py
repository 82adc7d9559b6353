"""IBSI grey level size zone (GLSZM, ``szm``) and distance zone (GLDZM, ``dzm``) matrices.

A *zone* is a connected set of ROI voxels sharing one discretised grey level:
26-connected in 3-D, 8-connected within a z-slice in 2-D (IBSI-1 reference manual,
Zwanenburg et al., arXiv:1612.07003, sections "Grey level size zone based features" and
"Grey level distance zone based features").  Both families count the same zones, so one
compiled pass labels them and records each zone's grey level, size and distance to the
ROI edge.

The distance of a ROI voxel to the edge is the least number of 6-connected (3-D) or
in-plane 4-connected (2-D) steps that reach a voxel outside the ROI; the space beyond
the array counts as outside, and a voxel on the edge has distance 1 (IBSI's convention,
which keeps ``1/j**2`` finite).  A zone's distance is the least distance of its voxels.
The ROI of the distance map is IBSI's morphological mask (``distance_mask``; by default
``levels > 0``, the same unless the intensities were re-segmented).

Matrices per unit (see :mod:`._texture`):

* GLSZM ``(ng, max_zone_size)`` of int64, entry ``[i - 1, s - 1]`` the number of zones
  of level ``i`` and size ``s``.
* GLDZM ``(2, ng, max_distance)`` of int64: layer 0 holds the zone counts, entry
  ``[0, i - 1, d - 1]`` the number of zones of level ``i`` and distance ``d``; layer 1
  the number of voxels in those zones.  Zone percentage needs the voxel count ``N_v``,
  which the zone counts alone do not carry; the sum of layer 1 is ``N_v`` (the zones
  partition the ROI), and it stays correct when matrices are merged by summation, as
  the IBSI 2.5D aggregation asks ("``N_v`` should likewise be summed").

Zones cross chunk faces: a Dask ``levels`` is counted chunk by chunk as
:class:`ZonePartial` s (:func:`zone_block`, one-voxel halo) that keep the zones touching
a face open and unite them with their neighbours' in :meth:`ZonePartial.merge`; the edge
distances, a global quantity, come from the separable taxicab transform of
:func:`edge_distance_maps`.  The result equals the whole-volume count.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

from ._formulas import NV_GIVEN, NV_RUN_VOXELS, emphasis_table
from ._joins import block_core, components, linear_steps, trim_counts
from ._texture import (
    TEXTURE_DIMS,
    TextureCounts,
    aggregate,
    check_level_range,
    check_levels,
)

__all__ = [
    "GLDZM_FEATURES",
    "GLSZM_FEATURES",
    "LevelDistanceCode",
    "ZonePartial",
    "count_gldzm",
    "count_glszm",
    "edge_distance_maps",
    "gldzm_aggregate",
    "gldzm_features",
    "glszm_aggregate",
    "glszm_features",
    "zone_block",
]

GLSZM_FEATURES = (
    "sze", "lze", "lgze", "hgze", "szlge", "szhge", "lzlge", "lzhge", "glnu", "glnu_norm",
    "zsnu", "zsnu_norm", "z_perc", "gl_var", "zs_var", "zs_entr",
)
GLDZM_FEATURES = (
    "sde", "lde", "lgze", "hgze", "sdlge", "sdhge", "ldlge", "ldhge", "glnu", "glnu_norm",
    "zdnu", "zdnu_norm", "z_perc", "gl_var", "zd_var", "zd_entr",
)


def _neighbour_offsets(planar: bool, connectivity: str) -> np.ndarray:
    """``(dz, dy, dx)`` steps: ``"full"`` 26 (8 in-plane), ``"face"`` 6 (4 in-plane)."""
    steps = [d for d in itertools.product((-1, 0, 1), repeat=3) if d != (0, 0, 0)]
    if planar:
        steps = [d for d in steps if d[0] == 0]
    if connectivity == "face":
        steps = [d for d in steps if sum(map(abs, d)) == 1]
    return np.array(steps, dtype=np.int64)


@functools.lru_cache(maxsize=1)
def _zone_kernels():
    import numba

    @numba.njit(cache=True, nogil=True)
    def edge_distance(padded, face_offsets):
        """Distance to the ROI edge of every voxel (0 outside the ROI), flat.

        ``padded`` is the flat ROI volume (non-zero inside) padded by one voxel of 0 on
        every side, ``face_offsets`` the face neighbours' flat steps in it: a neighbour
        outside the ROI or the array is a 0 one step away.  Breadth-first from the edge
        voxels (distance 1: a face neighbour outside); each later ring is one face step
        further in.  The result is padded as ``padded`` is.
        """
        n = padded.size
        dist = np.zeros(n, np.int32)
        queue = np.empty(n, np.int64)
        tail = 0
        for v in range(n):
            if padded[v] == 0:
                continue
            for k in range(face_offsets.size):
                if padded[v + face_offsets[k]] == 0:
                    dist[v] = 1
                    queue[tail] = v
                    tail += 1
                    break
        head = 0
        while head < tail:
            v = queue[head]
            head += 1
            d = dist[v] + 1
            for k in range(face_offsets.size):
                w = v + face_offsets[k]
                if padded[w] != 0 and dist[w] == 0:
                    dist[w] = d
                    queue[tail] = w
                    tail += 1
        return dist

    @numba.njit(cache=True, nogil=True)
    def zones_padded(work, offsets, dist, plane):
        """Connected zones of equal level: ``(z, level, size, distance)`` per zone.

        Depth-first flood fill over the neighbour ``offsets`` from each unvisited ROI
        voxel in scan order, so zones come out sorted by the z (in unpadded slices) of
        their first voxel.  ``work`` is the flat level volume padded by one voxel of 0 on
        every side (consumed: a visited voxel is set to 0), so that a neighbour is a flat
        offset away without bounds tests; ``plane`` is the padded ``ny * nx``.  ``dist``
        is the padded flat edge distance map, or an empty array when distances are not
        needed (the distance column is then 0)."""
        n = work.size
        with_distance = dist.size == n
        stack = np.empty(n, np.int64)
        zone_z = np.empty(n, np.int32)
        zone_level = np.empty(n, np.int32)
        zone_size = np.empty(n, np.int64)
        zone_dist = np.zeros(n, np.int32)
        nzones = 0
        for v in range(n):
            g = work[v]
            if g == 0:
                continue
            work[v] = 0
            stack[0] = v
            top = 1
            size = 0
            dmin = 2**31 - 1
            while top > 0:
                top -= 1
                u = stack[top]
                size += 1
                if with_distance and dist[u] < dmin:
                    dmin = dist[u]
                for k in range(offsets.shape[0]):
                    w = u + offsets[k]
                    if work[w] == g:
                        work[w] = 0
                        stack[top] = w
                        top += 1
            zone_z[nzones] = v // plane - 1
            zone_level[nzones] = g
            zone_size[nzones] = size
            if with_distance:
                zone_dist[nzones] = dmin
            nzones += 1
        return (zone_z[:nzones].copy(), zone_level[:nzones].copy(),
                zone_size[:nzones].copy(), zone_dist[:nzones].copy())

    return edge_distance, zones_padded


def _is_dask(x) -> bool:
    return type(x).__module__.split(".")[0] == "dask"


def _zone_table(levels, planar: bool, with_distance: bool, distance_roi=None):
    """``(z, level, size, distance)`` of every zone, in scan order of first voxels."""
    edge_distance, zones_padded = _zone_kernels()
    work = np.pad(np.asarray(levels, np.int32), 1)
    py, px = work.shape[1], work.shape[2]

    def flat_steps(steps):
        return np.ascontiguousarray((steps[:, 0] * py + steps[:, 1]) * px + steps[:, 2])

    if with_distance:
        roi = work if distance_roi is None else np.pad(distance_roi, 1)
        dist = edge_distance(roi.ravel(), flat_steps(_neighbour_offsets(planar, "face")))
    else:
        dist = np.zeros(0, np.int32)
    return zones_padded(work.ravel(), flat_steps(_neighbour_offsets(planar, "full")), dist,
                        py * px)


def _zone_matrix(level, value, ng, weights=None) -> np.ndarray:
    """``(ng, max(value))`` counts of zones by (level, value), or sums of ``weights``."""
    width = int(value.max())
    idx = (level.astype(np.int64) - 1) * width + (value.astype(np.int64) - 1)
    m = np.bincount(idx, weights=weights, minlength=ng * width)
    return m.astype(np.int64, copy=False).reshape(ng, width)


def _by_unit(levels, ng, dims, build, with_distance: bool, distance_roi=None, *,
             stack=True) -> TextureCounts:
    """``build(zone_level, zone_size, zone_dist, ng) -> matrix`` per 3-D / 2-D unit
    (``stack=False``: whatever ``build`` returns, not stacked into a unit axis)."""
    wrap = (lambda m: m[None]) if stack else (lambda m: m)
    counts = TextureCounts()
    if "3D" in dims and levels.any():
        _, lev, size, dist = _zone_table(levels, False, with_distance, distance_roi)
        counts.volume = wrap(build(lev, size, dist, ng))
    if "2D" in dims or "2.5D" in dims:
        zz, lev, size, dist = _zone_table(levels, True, with_distance, distance_roi)
        # zones come sorted by slice: split at the slice boundaries
        z_values, starts = np.unique(zz, return_index=True)
        bounds = list(starts[1:]) + [zz.size]
        for z, a, b in zip(z_values, starts, bounds):
            counts.slices[int(z)] = wrap(build(lev[a:b], size[a:b], dist[a:b], ng))
    return counts


def _glszm_matrix(lev, size, dist, ng):
    return _zone_matrix(lev, size, ng)


def _gldzm_matrix(lev, size, dist, ng):
    return np.stack([_zone_matrix(lev, dist, ng), _zone_matrix(lev, dist, ng, size)])


def count_zone_families(levels, ng, dims=TEXTURE_DIMS, *, families=("szm", "dzm"),
                        distance_mask=None) -> dict[str, TextureCounts]:
    """:func:`count_glszm` and :func:`count_gldzm` of a NumPy level volume from one
    labelling of its zones: ``{"szm": ..., "dzm": ...}`` for the ``families`` asked
    (equal to calling both)."""
    want = [f for f in ("szm", "dzm") if f in families]
    if _is_dask(levels):
        out = {}
        if "szm" in want:
            out["szm"] = count_glszm(levels, ng, dims)
        if "dzm" in want:
            out["dzm"] = count_gldzm(levels, ng, dims, distance_mask=distance_mask)
        return out
    levels, ng = check_levels(levels, ng, dims)
    roi = _distance_roi(levels, distance_mask)
    builders = {"szm": _glszm_matrix, "dzm": _gldzm_matrix}

    def build(lev, size, dist, ng_):
        return {f: builders[f](lev, size, dist, ng_) for f in want}

    per_unit = _by_unit(levels, int(ng), dims, build, with_distance="dzm" in want,
                        distance_roi=roi, stack=False)
    out = {}
    for f in want:
        counts = TextureCounts()
        if per_unit.volume is not None:
            counts.volume = per_unit.volume[f][None]
        counts.slices = {z: m[f][None] for z, m in per_unit.slices.items()}
        out[f] = counts
    return out


def count_glszm(levels, ng, dims=TEXTURE_DIMS) -> TextureCounts:
    """Grey level size zone matrices of the 3-D volume and of every z-slice.

    Parameters
    ----------
    levels : (z, y, x) int array
        Discretised grey levels ``1..ng`` inside the ROI, 0 outside.
    ng : int
        Number of grey levels (rows of every matrix).
    dims : collection of {"2D", "2.5D", "3D"}
        "3D" counts 26-connected zones of the volume (``TextureCounts.volume``);
        "2D"/"2.5D" count 8-connected zones of each slice with ROI voxels
        (``TextureCounts.slices``).

    Returns
    -------
    TextureCounts
        Units of shape ``(1, ng, max_zone_size)`` (int64), entry ``[0, i - 1, s - 1]``
        the number of zones of grey level ``i`` and size ``s`` voxels.

    Raises
    ------
    ValueError
        If ``levels`` is not 3-D or leaves ``0..ng``, ``ng < 1``, or ``dims`` is unknown.
    TypeError
        If ``levels`` is not an integer array.

    Notes
    -----
    IBSI-1 reference manual (arXiv:1612.07003), "Grey level size zone based features".
    The zones are labelled by a compiled flood fill (numba).  A Dask ``levels`` is
    counted chunk by chunk (:func:`zone_block`, :meth:`ZonePartial.merge`), with the
    same result.

    Examples
    --------
    >>> lv = np.array([[[1, 1, 2], [0, 2, 2]]], dtype=np.int32)
    >>> count_glszm(lv, 2, ["3D"]).volume[0]
    array([[0, 1, 0],
           [0, 0, 1]])
    """
    if _is_dask(levels):
        return _count_zones_chunked(levels, ng, dims, "szm")
    levels, ng = check_levels(levels, ng, dims)
    return _by_unit(levels, int(ng), dims, _glszm_matrix, with_distance=False)


def count_gldzm(levels, ng, dims=TEXTURE_DIMS, *, distance_mask=None) -> TextureCounts:
    """Grey level distance zone matrices of the 3-D volume and of every z-slice.

    Parameters
    ----------
    levels : (z, y, x) int array
        Discretised grey levels ``1..ng`` inside the ROI, 0 outside.
    ng : int
        Number of grey levels.
    dims : collection of {"2D", "2.5D", "3D"}
        "3D": 26-connected zones, 6-connected distances; "2D"/"2.5D": per slice,
        8-connected zones, 4-connected in-plane distances.
    distance_mask : (z, y, x) bool array, optional
        The mask the edge distances are measured in: IBSI's morphological mask (before
        re-segmentation).  Default ``levels > 0``.

    Returns
    -------
    TextureCounts
        Units of shape ``(1, 2, ng, max_distance)`` (int64): ``[0, 0, i - 1, d - 1]`` the
        number of zones of grey level ``i`` at distance ``d`` from the ROI edge,
        ``[0, 1, i - 1, d - 1]`` the number of voxels in those zones.

    Raises
    ------
    ValueError, TypeError
        As :func:`count_glszm`.

    Notes
    -----
    IBSI-1 reference manual (arXiv:1612.07003), "Grey level distance zone based
    features": a voxel's distance is the least number of face steps to a voxel outside
    the ROI (edge voxels have distance 1; beyond the array is outside), a zone's the
    least over its voxels.  A Dask ``levels`` (and ``distance_mask``) is counted chunk
    by chunk, the distances from :func:`edge_distance_maps`, with the same result.

    Examples
    --------
    >>> lv = np.ones((1, 3, 3), dtype=np.int32)
    >>> lv[0, 1, 1] = 2
    >>> count_gldzm(lv, 2, ["2D"]).slices[0][0]
    array([[[1, 0],
            [0, 1]],
    <BLANKLINE>
           [[8, 0],
            [0, 1]]])
    """
    if _is_dask(levels):
        return _count_zones_chunked(levels, ng, dims, "dzm", distance_mask)
    levels, ng = check_levels(levels, ng, dims)
    return _by_unit(levels, int(ng), dims, _gldzm_matrix, with_distance=True,
                    distance_roi=_distance_roi(levels, distance_mask))


def _distance_roi(levels, distance_mask):
    """The mask the edge distances are measured in, as the kernels take it (or None:
    ``levels > 0``)."""
    if distance_mask is None:
        return None
    distance_mask = np.asarray(distance_mask, dtype=bool)
    if distance_mask.shape != levels.shape:
        raise ValueError(f"`distance_mask` must have the shape of `levels` "
                         f"{levels.shape}, got {distance_mask.shape}")
    return np.ascontiguousarray(distance_mask, dtype=levels.dtype)


# -- chunk-mergeable partials -----------------------------------------------------
@functools.lru_cache(maxsize=1)
def _block_kernels():
    import numba

    @numba.njit(cache=True, nogil=True)
    def block_zones(padded, bounds, steps, dist, origin, gshape, vox_cap):
        """Zones of the core ``bounds`` of ``padded`` (flood fill over ``steps``).

        Per zone: global z of its first voxel, level, size and least ``dist`` over its
        voxels (0 when ``dist`` is empty).  Per *open* voxel (a core voxel with a
        neighbour of its level outside the core, read in the halo): its global linear
        index, zone and a bit mask of those neighbours (bit ``k`` for ``steps[k]``).
        """
        z0, z1 = bounds[0, 0], bounds[0, 1]
        y0, y1 = bounds[1, 0], bounds[1, 1]
        x0, x1 = bounds[2, 0], bounds[2, 1]
        _, pny, pnx = padded.shape
        gy, gx = gshape[1], gshape[2]
        flat = padded.ravel()
        dflat = dist.ravel()
        with_distance = dflat.size == flat.size
        n_core = (z1 - z0) * (y1 - y0) * (x1 - x0)
        visited = np.zeros(flat.size, np.bool_)
        stack = np.empty(max(n_core, 1), np.int64)
        zone_z = np.empty(n_core, np.int64)
        zone_level = np.empty(n_core, np.int64)
        zone_size = np.empty(n_core, np.int64)
        zone_dist = np.zeros(n_core, np.int64)
        vox_lin = np.empty(vox_cap, np.int64)
        vox_zone = np.empty(vox_cap, np.int64)
        vox_mask = np.empty(vox_cap, np.int64)
        nzones = 0
        nvox = 0
        for z in range(z0, z1):
            for y in range(y0, y1):
                for x in range(x0, x1):
                    v = (z * pny + y) * pnx + x
                    g = flat[v]
                    if g == 0 or visited[v]:
                        continue
                    visited[v] = True
                    stack[0] = v
                    top = 1
                    size = 0
                    dmin = 2**62
                    while top > 0:
                        top -= 1
                        u = stack[top]
                        size += 1
                        if with_distance and dflat[u] < dmin:
                            dmin = dflat[u]
                        uz, r = divmod(u, pny * pnx)
                        uy, ux = divmod(r, pnx)
                        bits = 0
                        for k in range(steps.shape[0]):
                            wz = uz + steps[k, 0]
                            wy = uy + steps[k, 1]
                            wx = ux + steps[k, 2]
                            w = (wz * pny + wy) * pnx + wx
                            if flat[w] != g:
                                continue
                            if z0 <= wz < z1 and y0 <= wy < y1 and x0 <= wx < x1:
                                if not visited[w]:
                                    visited[w] = True
                                    stack[top] = w
                                    top += 1
                            else:
                                bits |= 1 << k
                        if bits:
                            vox_lin[nvox] = (((uz - z0 + origin[0]) * gy + uy - y0 + origin[1])
                                             * gx + ux - x0 + origin[2])
                            vox_zone[nvox] = nzones
                            vox_mask[nvox] = bits
                            nvox += 1
                    zone_z[nzones] = z - z0 + origin[0]
                    zone_level[nzones] = g
                    zone_size[nzones] = size
                    if with_distance:
                        zone_dist[nzones] = dmin
                    nzones += 1
        return (zone_z[:nzones].copy(), zone_level[:nzones].copy(),
                zone_size[:nzones].copy(), zone_dist[:nzones].copy(),
                vox_lin[:nvox].copy(), vox_zone[:nvox].copy(), vox_mask[:nvox].copy())

    @numba.njit(cache=True, nogil=True)
    def sweep_last_axis(f):
        """In place: ``f[..., i] = min(f[..., i], f[..., i -/+ 1] + 1)`` forward then
        backward, the array's ends bordered by zeros (outside the ROI)."""
        a, b, n = f.shape
        for i in range(a):
            for j in range(b):
                prev = 0
                for k in range(n):
                    prev = min(f[i, j, k], prev + 1)
                    f[i, j, k] = prev
                prev = 0
                for k in range(n - 1, -1, -1):
                    prev = min(f[i, j, k], prev + 1)
                    f[i, j, k] = prev
        return f

    return block_zones, sweep_last_axis


def _l1_pass(block, axis):
    """One exact 1-D pass of the taxicab distance along ``axis`` (whole in ``block``)."""
    _, sweep = _block_kernels()
    moved = np.ascontiguousarray(np.moveaxis(np.asarray(block, np.int32), axis, -1))
    return np.moveaxis(sweep(moved), -1, axis)


def edge_distance_maps(mask, *, planar=True, volume=True):
    """Distance of every voxel to the ROI edge, for a NumPy or Dask ``mask``.

    Parameters
    ----------
    mask : (z, y, x) bool array (NumPy or Dask)
        The ROI the distances are measured in (IBSI's morphological mask).
    planar, volume : bool
        Whether to return the in-plane (4-connected, per slice) and the 3-D
        (6-connected) distance maps.

    Returns
    -------
    (planar_map, volume_map)
        int32 arrays like ``mask`` (Dask when ``mask`` is, with its chunks), 0 outside
        the ROI, 1 on its edge; None for the maps not asked.

    Notes
    -----
    The least number of face steps from a ROI voxel to a voxel outside the ROI (the
    space beyond the array counting as outside) is the taxicab (L1) distance to the
    nearest such voxel: a shortest lattice path that met another outside voxel first
    would end nearer.  The L1 distance transform is separable: a forward and a backward
    min-plus sweep along x, then y (the in-plane map), then z (the 3-D map), each on a
    rechunking where that axis is one chunk, so a Dask mask is never read whole.
    """
    is_dask = type(mask).__module__.split(".")[0] == "dask"
    big = np.int32(2**30)
    if is_dask:
        import dask.array as da

        chunks = mask.chunks
        f = da.where(mask.astype(bool), big, np.int32(0)).astype(np.int32)

        def along(x, axis):
            x = x.rechunk({axis: -1})
            return x.map_blocks(_l1_pass, axis, dtype=np.int32)

        plane = along(along(f, 2), 1)
        vol = along(plane, 0) if volume else None
        return (plane.rechunk(chunks) if planar else None,
                vol.rechunk(chunks) if volume else None)
    f = np.where(np.asarray(mask, bool), big, np.int32(0)).astype(np.int32)
    plane = _l1_pass(_l1_pass(f, 2), 1)
    vol = _l1_pass(plane, 0) if volume else None
    return (plane if planar else None), vol


@dataclass(frozen=True)
class LevelDistanceCode:
    """Grey levels and the two edge distances of a voxel packed into one int64.

    ``code = level + (ng + 1) * (planar + base * volume)`` with ``base`` above any
    in-plane distance; lets one array (and one halo exchange) carry all three through
    :meth:`BlockGrid.reduce_blocks`.
    """

    ng: int
    base: int

    @classmethod
    def for_shape(cls, ng, shape) -> LevelDistanceCode:
        return cls(int(ng), max(int(s) for s in shape[1:]) + 2)

    def pack(self, levels, planar=None, volume=None):
        code = levels.astype(np.int64)
        rest = None
        if planar is not None:
            rest = planar.astype(np.int64)
        if volume is not None:
            vol = volume.astype(np.int64) * self.base
            rest = vol if rest is None else rest + vol
        return code if rest is None else code + (self.ng + 1) * rest

    def unpack(self, code):
        """``(levels int32, planar int32, volume int32)`` of a NumPy ``code``."""
        code = np.asarray(code, np.int64)
        levels = (code % (self.ng + 1)).astype(np.int32)
        rest = code // (self.ng + 1)
        return levels, (rest % self.base).astype(np.int32), (rest // self.base).astype(np.int32)


_ZONE_FIELDS = ("z", "level", "size", "dist")
_VOXEL_FIELDS = ("lin", "zone", "mask")


@dataclass
class _OpenZones:
    """Zones that may continue in a block not merged yet, and their open voxels."""

    zones: dict  # _ZONE_FIELDS -> (n_zones,) int64
    voxels: dict  # _VOXEL_FIELDS -> (n_voxels,) int64; "zone" indexes `zones`

    @classmethod
    def empty(cls) -> _OpenZones:
        return cls({k: np.zeros(0, np.int64) for k in _ZONE_FIELDS},
                   {k: np.zeros(0, np.int64) for k in _VOXEL_FIELDS})


def _opposites(steps) -> np.ndarray:
    index = {tuple(s): k for k, s in enumerate(steps.tolist())}
    return np.array([index[tuple(-s for s in st)] for st in steps.tolist()], np.int64)


def _join_zones(a: _OpenZones, b: _OpenZones, steps, shape):
    """Zones of ``a`` and ``b`` united where open voxels of one level touch across a
    face, edge or corner: ``(open zones, complete zones)``."""
    lin_steps = linear_steps(steps, shape)
    opposite = _opposites(steps)
    n_a = a.zones["z"].size
    zones = {k: np.concatenate([a.zones[k], b.zones[k]]) for k in _ZONE_FIELDS}
    lin = np.concatenate([a.voxels["lin"], b.voxels["lin"]])
    label = np.concatenate([a.voxels["zone"], b.voxels["zone"] + n_a])
    mask = np.concatenate([a.voxels["mask"], b.voxels["mask"]])
    na_vox = a.voxels["lin"].size
    left, right = [], []
    if na_vox and b.voxels["lin"].size:
        order = np.argsort(a.voxels["lin"], kind="stable")
        keys = a.voxels["lin"][order]
        b_mask = b.voxels["mask"]
        for k in range(len(steps)):
            sel = np.flatnonzero(b_mask & (1 << k))
            if sel.size == 0:
                continue
            target = b.voxels["lin"][sel] + lin_steps[k]
            pos = np.minimum(np.searchsorted(keys, target), keys.size - 1)
            hit = keys[pos] == target
            ia, ib = order[pos[hit]], sel[hit] + na_vox
            # the link is seen from both sides; its bits are spent on both
            ok = (mask[ia] >> opposite[k]) & 1 == 1
            ia, ib = ia[ok], ib[ok]
            left.append(label[ia])
            right.append(label[ib])
            mask[ib] &= ~(1 << k)
            mask[ia] &= ~(1 << int(opposite[k]))
    n = zones["z"].size
    comp = components(n, np.concatenate(left) if left else [],
                      np.concatenate(right) if right else [])
    n_comp = int(comp.max()) + 1 if n else 0
    first = np.full(n_comp, n, np.int64)
    np.minimum.at(first, comp, np.arange(n, dtype=np.int64))
    merged = {"z": zones["z"][first], "level": zones["level"][first],
              "size": np.bincount(comp, weights=zones["size"], minlength=n_comp).astype(np.int64)}
    dist = np.full(n_comp, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(dist, comp, zones["dist"])
    merged["dist"] = dist
    keep = mask != 0
    vox_comp = comp[label[keep]]
    is_open = np.zeros(n_comp, bool)
    is_open[vox_comp] = True
    new_id = np.cumsum(is_open) - 1
    still_open = _OpenZones({k: v[is_open] for k, v in merged.items()},
                            {"lin": lin[keep], "zone": new_id[vox_comp], "mask": mask[keep]})
    complete = {k: v[~is_open] for k, v in merged.items()}
    return still_open, complete


def _zone_matrices(zones, ng, planar, want_szm, want_dzm):
    """``(szm, dzm)`` TextureCounts of complete zones (volume, or slices by z)."""
    szm, dzm = TextureCounts(), TextureCounts()
    if zones["z"].size == 0:
        return szm, dzm
    if planar:
        z_values, unit = np.unique(zones["z"], return_inverse=True)
        unit = unit.ravel()
    else:
        z_values, unit = np.zeros(1, np.int64), np.zeros(zones["z"].size, np.int64)
    n_units = z_values.size
    level0 = zones["level"] - 1
    if want_szm:
        width = int(zones["size"].max())
        idx = (unit * ng + level0) * width + zones["size"] - 1
        m = np.bincount(idx, minlength=n_units * ng * width).reshape(n_units, 1, ng, width)
        if planar:
            szm.slices = {int(z): m[i] for i, z in enumerate(z_values)}
        else:
            szm.volume = m[0]
    if want_dzm:
        width = int(zones["dist"].max())
        idx = (unit * ng + level0) * width + zones["dist"] - 1
        size = n_units * ng * width
        m = np.stack([np.bincount(idx, minlength=size).reshape(n_units, ng, width),
                      np.bincount(idx, weights=zones["size"], minlength=size).astype(
                          np.int64).reshape(n_units, ng, width)], axis=1)[:, None]
        if planar:
            dzm.slices = {int(z): m[i] for i, z in enumerate(z_values)}
        else:
            dzm.volume = m[0]
    return szm, dzm


@dataclass
class ZonePartial:
    """Size and distance zone counts of a block, mergeable across faces.

    Attributes
    ----------
    szm, dzm : TextureCounts
        Counts of the zones known complete (matrix widths not yet trimmed).
    volume_zones, slice_zones : _OpenZones or None
        26-connected 3-D zones and 8-connected in-plane zones that touch a face of the
        merged region towards a voxel of their level: level, size, least edge distance
        and the open voxels (global linear index, zone, bit mask of the neighbour steps
        that lead out of the region to a voxel of the same level).
    ng, dims, families, shape
        Number of levels, the texture dims asked, ``{"szm", "dzm"}`` or a part of it,
        the global volume shape.
    """

    szm: TextureCounts
    dzm: TextureCounts
    volume_zones: _OpenZones | None
    slice_zones: _OpenZones | None
    ng: int
    dims: frozenset
    families: frozenset
    shape: tuple

    def _add(self, zones, planar, szm, dzm):
        s, d = _zone_matrices(zones, self.ng, planar, "szm" in self.families,
                              "dzm" in self.families)
        return TextureCounts.merge(szm, s), TextureCounts.merge(dzm, d)

    @staticmethod
    def merge(a: ZonePartial | None, b: ZonePartial | None) -> ZonePartial | None:
        """Union of both blocks' zones: open zones whose open voxels of one level are
        26- (in-plane 8-) neighbours are one zone (sizes summed, least distance kept);
        zones left without open voxels are complete and move into the counts.  Exact
        and associative."""
        if a is None:
            return b
        if b is None:
            return a
        szm = TextureCounts.merge(a.szm, b.szm)
        dzm = TextureCounts.merge(a.dzm, b.dzm)
        out = {}
        for name, planar in (("volume_zones", False), ("slice_zones", True)):
            za, zb = getattr(a, name), getattr(b, name)
            if za is None:
                out[name] = None
                continue
            still_open, complete = _join_zones(za, zb, _neighbour_offsets(planar, "full"),
                                               a.shape)
            szm, dzm = a._add(complete, planar, szm, dzm)
            out[name] = still_open
        return ZonePartial(szm, dzm, out["volume_zones"], out["slice_zones"], a.ng, a.dims,
                           a.families, a.shape)

    def finish(self) -> dict[str, TextureCounts]:
        """``{"szm": ..., "dzm": ...}``: the counts of :func:`count_glszm` /
        :func:`count_gldzm` for the merged region (zones still open counted as they are)."""
        szm, dzm = self.szm, self.dzm
        for zones, planar in ((self.volume_zones, False), (self.slice_zones, True)):
            if zones is not None:
                szm, dzm = self._add(zones.zones, planar, szm, dzm)
        want_3d = "3D" in self.dims
        want_2d = "2D" in self.dims or "2.5D" in self.dims
        out = {}
        for fam, counts in (("szm", szm), ("dzm", dzm)):
            if fam in self.families:
                out[fam] = trim_counts(counts, want_volume=want_3d, want_slices=want_2d,
                                       volume_min_width=1, keep_empty_volume=False)
        return out


def zone_block(levels, ng, dims, *, core, offset, shape, families=("szm", "dzm"),
               distances=None) -> ZonePartial:
    """The :class:`ZonePartial` of one block.

    Parameters
    ----------
    levels : (z, y, x) int array
        The block's grey levels (0 outside the ROI) with a halo of one voxel on every
        side that has a neighbouring block (zeros beyond the volume), or none.
    ng : int
    dims : collection of str
    core, offset : as :class:`BlockInfo`
        The slices of ``levels`` the block owns; global index of ``levels[0, 0, 0]``.
    shape : sequence of int
        The global volume shape.
    families : collection of {"szm", "dzm"}
    distances : (planar, volume) arrays like ``levels``, optional
        Global edge distances (:func:`edge_distance_maps`), needed for ``"dzm"``; only
        their values on the core are read.

    Returns
    -------
    ZonePartial

    Examples
    --------
    >>> lev = np.array([[[1, 1, 0, 1]]], dtype=np.int32)
    >>> parts = [zone_block(lev[..., :3], 1, ["3D"], core=(slice(None),) * 2 + (slice(0, 2),),
    ...                     offset=(0, 0, 0), shape=lev.shape, families=["szm"]),
    ...          zone_block(lev[..., 1:], 1, ["3D"], core=(slice(None),) * 2 + (slice(1, 3),),
    ...                     offset=(0, 0, 1), shape=lev.shape, families=["szm"])]
    >>> ZonePartial.merge(*parts).finish()["szm"].volume
    array([[[1, 1]]])
    """
    ng = int(ng)
    dims = frozenset(dims)
    families = frozenset(families)
    shape = tuple(int(s) for s in shape)
    block = block_core(levels, core, offset, shape)
    (z0, z1), (y0, y1), (x0, x1) = block.bounds
    core_levels = block.padded[z0:z1, y0:y1, x0:x1]
    check_level_range(core_levels, ng)
    if "dzm" in families and distances is None:
        raise ValueError("`distances` are needed for the distance zone matrix ('dzm')")
    kernel, _ = _block_kernels()
    gshape = np.asarray(shape, np.int64)
    partial = ZonePartial(TextureCounts(), TextureCounts(), None, None, ng, dims, families,
                          shape)
    units = []
    if "3D" in dims:
        units.append(("volume_zones", False, 1))
    if "2D" in dims or "2.5D" in dims:
        units.append(("slice_zones", True, 0))
    for name, planar, which in units:
        dist = np.zeros(0, np.int32)
        if "dzm" in families:
            dist = block.pad_like(distances[which])
        z, lev, size, dmin, lin, zone, mask = kernel(
            block.padded, block.bounds, _neighbour_offsets(planar, "full"), dist,
            block.origin, gshape, block.boundary_voxels())
        is_open = np.zeros(z.size, bool)
        is_open[zone] = True
        new_id = np.cumsum(is_open) - 1
        table = {"z": z, "level": lev, "size": size, "dist": dmin}
        partial.szm, partial.dzm = partial._add({k: v[~is_open] for k, v in table.items()},
                                                planar, partial.szm, partial.dzm)
        setattr(partial, name, _OpenZones({k: v[is_open] for k, v in table.items()},
                                          {"lin": lin, "zone": new_id[zone], "mask": mask}))
    return partial


def _count_zones_chunked(levels, ng, dims, family, distance_mask=None) -> TextureCounts:
    """:func:`count_glszm` / :func:`count_gldzm` of a Dask ``levels``, chunk by chunk."""
    import dask.array as da

    from ._partials import BlockGrid

    levels, ng = check_levels(levels, ng, dims, values=False)
    ng = int(ng)
    shape = tuple(int(s) for s in levels.shape)
    code = LevelDistanceCode.for_shape(ng, shape)
    levels = levels.map_blocks(check_level_range, ng, dtype=levels.dtype)  # before packing
    packed = levels
    if family == "dzm":
        if distance_mask is None:
            distance_mask = levels > 0
        elif not isinstance(distance_mask, da.Array):
            distance_mask = da.from_array(np.asarray(distance_mask, bool), chunks=levels.chunks)
        if tuple(distance_mask.shape) != shape:
            raise ValueError(f"`distance_mask` must have the shape of `levels` {shape}, "
                             f"got {tuple(distance_mask.shape)}")
        planar, volume = edge_distance_maps(distance_mask.rechunk(levels.chunks))
        packed = code.pack(levels, planar, volume)
    grid = BlockGrid(packed, levels > 0)

    def _block(block, _mask, info):
        lev, planar, volume = code.unpack(block)
        return zone_block(lev, ng, dims, core=info.core, offset=info.offset, shape=shape,
                          families=[family], distances=(planar, volume))

    return grid.reduce_blocks(_block, ZonePartial.merge, halo=1).finish()[family]


def glszm_features(matrix) -> dict[str, float]:
    """The 16 IBSI size zone features of one GLSZM.

    Parameters
    ----------
    matrix : (Ng, Nz) array
        Zone counts, entry ``[i - 1, s - 1]`` for grey level ``i`` and size ``s``.

    Returns
    -------
    dict
        Name of :data:`GLSZM_FEATURES` to value; all NaN for a matrix without zones.

    Notes
    -----
    IBSI-1 reference manual (arXiv:1612.07003), "Grey level size zone based features";
    ``N_s`` is the number of zones, ``N_v = sum_ij j s_ij`` the number of voxels;
    logarithms base 2.

    Examples
    --------
    >>> f = glszm_features(np.array([[2, 0], [0, 1]]))
    >>> round(f["sze"], 4), round(f["z_perc"], 4)
    (0.75, 0.75)
    """
    m = np.asarray(matrix)
    if m.ndim != 2:
        raise ValueError(f"`matrix` must be 2-D (Ng, Nz), got shape {m.shape}")
    return dict(zip(GLSZM_FEATURES, _size_table(m[None], False)[0][0].tolist()))


def _size_table(stack, with_sum):
    # N_v = sum_ij j s_ij: the voxels of the zones
    values, counted = emphasis_table(stack, with_sum=with_sum, nv_mode=NV_RUN_VOXELS)
    return values[:, :len(GLSZM_FEATURES)], counted


def gldzm_features(matrix, *, n_voxels=None) -> dict[str, float]:
    """The 16 IBSI distance zone features of one GLDZM.

    Parameters
    ----------
    matrix : (2, Ng, Nd) or (Ng, Nd) array
        As counted by :func:`count_gldzm` (zone counts and their voxel counts), or the
        zone counts alone, entry ``[i - 1, d - 1]`` for grey level ``i``, distance ``d``.
    n_voxels : float, optional
        Number of ROI voxels ``N_v`` for zone percentage; defaults to the sum of layer 1
        of a ``(2, Ng, Nd)`` matrix.  Zone percentage is NaN for a ``(Ng, Nd)`` matrix
        without it.

    Returns
    -------
    dict
        Name of :data:`GLDZM_FEATURES` to value; all NaN for a matrix without zones.

    Notes
    -----
    IBSI-1 reference manual (arXiv:1612.07003), "Grey level distance zone based
    features"; logarithms base 2.

    Examples
    --------
    >>> f = gldzm_features(np.array([[[1, 0], [0, 1]], [[8, 0], [0, 1]]]))
    >>> round(f["sde"], 4), round(f["z_perc"], 4)
    (0.625, 0.2222)
    """
    m = np.asarray(matrix)
    if m.ndim == 3 and m.shape[0] == 2:
        zones_ = m[0]
        if n_voxels is None:
            n_voxels = float(m[1].sum())
    elif m.ndim == 2:
        zones_ = m
    else:
        raise ValueError(f"`matrix` must have shape (2, Ng, Nd) or (Ng, Nd), got {m.shape}")
    n_voxels = math.nan if n_voxels is None else float(n_voxels)
    values, _ = emphasis_table(zones_[None], nv_mode=NV_GIVEN, n_voxels=[n_voxels])
    return dict(zip(GLDZM_FEATURES, values[0, :len(GLDZM_FEATURES)].tolist()))


def _distance_table(stack, with_sum):
    """Formulas of a stack of ``(2, Ng, Nd)`` matrices (zone counts, their voxels):
    ``N_v`` of each the sum of its layer 1."""
    stack = np.asarray(stack)
    n_voxels = stack[:, 1].sum(axis=(1, 2)).astype(np.float64)
    if with_sum:
        n_voxels = np.append(n_voxels, n_voxels.sum())
    values, counted = emphasis_table(stack[:, 0], with_sum=with_sum, nv_mode=NV_GIVEN,
                                     n_voxels=n_voxels)
    return values[:, :len(GLDZM_FEATURES)], counted


def glszm_aggregate(counts: TextureCounts, dims=TEXTURE_DIMS) -> dict[str, float]:
    """IBSI-tagged ``szm_{feature}_{2D, 2_5D, 3D}`` features of :func:`count_glszm` counts."""
    return aggregate(counts, None, GLSZM_FEATURES, "szm", dims, directional=False,
                     features_stack=_size_table)


def gldzm_aggregate(counts: TextureCounts, dims=TEXTURE_DIMS) -> dict[str, float]:
    """IBSI-tagged ``dzm_{feature}_{2D, 2_5D, 3D}`` features of :func:`count_gldzm` counts."""
    return aggregate(counts, None, GLDZM_FEATURES, "dzm", dims, directional=False,
                     features_stack=_distance_table)
