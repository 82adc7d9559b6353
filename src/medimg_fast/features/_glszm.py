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

Zones that cross a chunk face cannot be summed from per-chunk counts, so these counts
are made for a whole volume (or a whole slice) in one block.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from ._texture import TEXTURE_DIMS, TextureCounts, aggregate

__all__ = [
    "GLDZM_FEATURES",
    "GLSZM_FEATURES",
    "count_gldzm",
    "count_glszm",
    "gldzm_aggregate",
    "gldzm_features",
    "glszm_aggregate",
    "glszm_features",
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
    def edge_distance(levels, face_steps):
        """Distance to the ROI edge of every voxel (0 outside the ROI), flat.

        Breadth-first from the edge voxels (distance 1: a face neighbour outside the ROI
        or outside the array); each later ring is one face step further in.
        """
        nz, ny, nx = levels.shape
        flat = levels.ravel()
        n = flat.size
        dist = np.zeros(n, np.int32)
        queue = np.empty(n, np.int64)
        tail = 0
        for v in range(n):
            if flat[v] == 0:
                continue
            z, r = divmod(v, ny * nx)
            y, x = divmod(r, nx)
            for k in range(face_steps.shape[0]):
                zz = z + face_steps[k, 0]
                yy = y + face_steps[k, 1]
                xx = x + face_steps[k, 2]
                if (zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx
                        or flat[(zz * ny + yy) * nx + xx] == 0):
                    dist[v] = 1
                    queue[tail] = v
                    tail += 1
                    break
        head = 0
        while head < tail:
            v = queue[head]
            head += 1
            z, r = divmod(v, ny * nx)
            y, x = divmod(r, nx)
            for k in range(face_steps.shape[0]):
                zz = z + face_steps[k, 0]
                yy = y + face_steps[k, 1]
                xx = x + face_steps[k, 2]
                if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                    continue
                w = (zz * ny + yy) * nx + xx
                if flat[w] != 0 and dist[w] == 0:
                    dist[w] = dist[v] + 1
                    queue[tail] = w
                    tail += 1
        return dist

    @numba.njit(cache=True, nogil=True)
    def zones(levels, steps, dist):
        """Connected zones of equal level: ``(z, level, size, distance)`` per zone.

        Depth-first flood fill over ``steps`` from each unvisited ROI voxel in scan
        order, so zones come out sorted by the z of their first voxel.  ``dist`` is the
        flat edge distance map, or an empty array when distances are not needed (the
        distance column is then 0).
        """
        nz, ny, nx = levels.shape
        flat = levels.ravel()
        n = flat.size
        with_distance = dist.size == n
        visited = np.zeros(n, np.bool_)
        stack = np.empty(n, np.int64)
        zone_z = np.empty(n, np.int32)
        zone_level = np.empty(n, np.int32)
        zone_size = np.empty(n, np.int64)
        zone_dist = np.zeros(n, np.int32)
        nzones = 0
        for v in range(n):
            g = flat[v]
            if g == 0 or visited[v]:
                continue
            visited[v] = True
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
                z, r = divmod(u, ny * nx)
                y, x = divmod(r, nx)
                for k in range(steps.shape[0]):
                    zz = z + steps[k, 0]
                    yy = y + steps[k, 1]
                    xx = x + steps[k, 2]
                    if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                        continue
                    w = (zz * ny + yy) * nx + xx
                    if flat[w] == g and not visited[w]:
                        visited[w] = True
                        stack[top] = w
                        top += 1
            zone_z[nzones] = v // (ny * nx)
            zone_level[nzones] = g
            zone_size[nzones] = size
            if with_distance:
                zone_dist[nzones] = dmin
            nzones += 1
        return (zone_z[:nzones].copy(), zone_level[:nzones].copy(),
                zone_size[:nzones].copy(), zone_dist[:nzones].copy())

    return edge_distance, zones


def _check_levels(levels, ng, dims) -> np.ndarray:
    levels = np.asarray(levels)
    if levels.ndim != 3:
        raise ValueError(f"`levels` must be a 3-D (z, y, x) array, got {levels.ndim}-D")
    if levels.dtype.kind not in "iu":
        raise TypeError(f"`levels` must hold integer grey levels, got dtype {levels.dtype}")
    if isinstance(ng, bool) or not isinstance(ng, (int, np.integer)) or ng < 1:
        raise ValueError(f"`ng` must be a positive integer, got {ng!r}")
    if levels.size and (levels.min() < 0 or levels.max() > ng):
        raise ValueError(f"`levels` must lie in 0..ng={ng}, got range "
                         f"{levels.min()}..{levels.max()}")
    bad = set(dims) - set(TEXTURE_DIMS)
    if isinstance(dims, str) or bad:
        raise ValueError(f"`dims` must be a collection of {TEXTURE_DIMS}, got {dims!r}")
    return np.ascontiguousarray(levels, dtype=np.int32)


def _zone_table(levels, planar: bool, with_distance: bool, distance_roi=None):
    edge_distance, zones = _zone_kernels()
    if with_distance:
        roi = levels if distance_roi is None else distance_roi
        dist = edge_distance(roi, _neighbour_offsets(planar, "face"))
    else:
        dist = np.zeros(0, np.int32)
    return zones(levels, _neighbour_offsets(planar, "full"), dist)


def _zone_matrix(level, value, ng, weights=None) -> np.ndarray:
    """``(ng, max(value))`` counts of zones by (level, value), or sums of ``weights``."""
    width = int(value.max())
    idx = (level.astype(np.int64) - 1) * width + (value.astype(np.int64) - 1)
    m = np.bincount(idx, weights=weights, minlength=ng * width)
    return m.astype(np.int64).reshape(ng, width)


def _by_unit(levels, ng, dims, build, with_distance: bool, distance_roi=None) -> TextureCounts:
    """``build(zone_level, zone_size, zone_dist, ng) -> matrix`` per 3-D / 2-D unit."""
    counts = TextureCounts()
    if "3D" in dims and levels.any():
        _, lev, size, dist = _zone_table(levels, False, with_distance, distance_roi)
        counts.volume = build(lev, size, dist, ng)[None]
    if "2D" in dims or "2.5D" in dims:
        zz, lev, size, dist = _zone_table(levels, True, with_distance, distance_roi)
        # zones come sorted by slice: split at the slice boundaries
        z_values, starts = np.unique(zz, return_index=True)
        bounds = list(starts[1:]) + [zz.size]
        for z, a, b in zip(z_values, starts, bounds):
            counts.slices[int(z)] = build(lev[a:b], size[a:b], dist[a:b], ng)[None]
    return counts


def _glszm_matrix(lev, size, dist, ng):
    return _zone_matrix(lev, size, ng)


def _gldzm_matrix(lev, size, dist, ng):
    return np.stack([_zone_matrix(lev, dist, ng), _zone_matrix(lev, dist, ng, size)])


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
    The zones are labelled by a compiled flood fill (numba).

    Examples
    --------
    >>> lv = np.array([[[1, 1, 2], [0, 2, 2]]], dtype=np.int32)
    >>> count_glszm(lv, 2, ["3D"]).volume[0]
    array([[0, 1, 0],
           [0, 0, 1]])
    """
    levels = _check_levels(levels, ng, dims)
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
    least over its voxels.

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
    levels = _check_levels(levels, ng, dims)
    roi = None
    if distance_mask is not None:
        distance_mask = np.asarray(distance_mask, dtype=bool)
        if distance_mask.shape != levels.shape:
            raise ValueError(f"`distance_mask` must have the shape of `levels` "
                             f"{levels.shape}, got {distance_mask.shape}")
        roi = np.ascontiguousarray(distance_mask, dtype=levels.dtype)
    return _by_unit(levels, int(ng), dims, _gldzm_matrix, with_distance=True,
                    distance_roi=roi)


def _zone_features(m, n_voxels) -> tuple[float, ...]:
    """The 16 shared zone formulas of a (grey level, zone size or distance) matrix.

    Returned in the order of :data:`GLSZM_FEATURES` / :data:`GLDZM_FEATURES`; the second
    axis ``j`` is the zone size for ``szm``, the zone distance for ``dzm``.
    """
    m = np.asarray(m, dtype=np.float64)
    n_s = float(m.sum())
    if n_s <= 0:
        return (math.nan,) * len(GLSZM_FEATURES)
    i = np.arange(1, m.shape[0] + 1, dtype=np.float64)[:, None]
    j = np.arange(1, m.shape[1] + 1, dtype=np.float64)[None, :]
    p = m / n_s
    m_i = m.sum(axis=1)
    m_j = m.sum(axis=0)
    mu_i = float(np.sum(i * p))
    mu_j = float(np.sum(j * p))
    nz = p[p > 0]
    return (
        float(np.sum(m / j**2)) / n_s,                # szm.sze / dzm.sde
        float(np.sum(m * j**2)) / n_s,                # szm.lze / dzm.lde
        float(np.sum(m / i**2)) / n_s,                # lgze
        float(np.sum(m * i**2)) / n_s,                # hgze
        float(np.sum(m / (i**2 * j**2))) / n_s,       # szm.szlge / dzm.sdlge
        float(np.sum(m * i**2 / j**2)) / n_s,         # szm.szhge / dzm.sdhge
        float(np.sum(m * j**2 / i**2)) / n_s,         # szm.lzlge / dzm.ldlge
        float(np.sum(m * i**2 * j**2)) / n_s,         # szm.lzhge / dzm.ldhge
        float(np.dot(m_i, m_i)) / n_s,                # glnu
        float(np.dot(m_i, m_i)) / n_s**2,             # glnu_norm
        float(np.dot(m_j, m_j)) / n_s,                # szm.zsnu / dzm.zdnu
        float(np.dot(m_j, m_j)) / n_s**2,             # szm.zsnu_norm / dzm.zdnu_norm
        n_s / n_voxels if n_voxels > 0 else math.nan,  # z_perc
        float(np.sum((i - mu_i) ** 2 * p)),           # gl_var
        float(np.sum((j - mu_j) ** 2 * p)),           # szm.zs_var / dzm.zd_var
        float(-np.dot(nz, np.log2(nz))),              # szm.zs_entr / dzm.zd_entr
    )


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
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"`matrix` must be 2-D (Ng, Nz), got shape {m.shape}")
    n_voxels = float(np.sum(m * np.arange(1, m.shape[1] + 1)))
    return dict(zip(GLSZM_FEATURES, _zone_features(m, n_voxels)))


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
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim == 3 and m.shape[0] == 2:
        zones_, voxels = m[0], m[1]
        if n_voxels is None:
            n_voxels = float(voxels.sum())
    elif m.ndim == 2:
        zones_ = m
    else:
        raise ValueError(f"`matrix` must have shape (2, Ng, Nd) or (Ng, Nd), got {m.shape}")
    n_voxels = math.nan if n_voxels is None else float(n_voxels)
    return dict(zip(GLDZM_FEATURES, _zone_features(zones_, n_voxels)))


def glszm_aggregate(counts: TextureCounts, dims=TEXTURE_DIMS) -> dict[str, float]:
    """IBSI-tagged ``szm_{feature}_{2D, 2_5D, 3D}`` features of :func:`count_glszm` counts."""
    return aggregate(counts, glszm_features, GLSZM_FEATURES, "szm", dims, directional=False)


def gldzm_aggregate(counts: TextureCounts, dims=TEXTURE_DIMS) -> dict[str, float]:
    """IBSI-tagged ``dzm_{feature}_{2D, 2_5D, 3D}`` features of :func:`count_gldzm` counts."""
    return aggregate(counts, gldzm_features, GLDZM_FEATURES, "dzm", dims, directional=False)
