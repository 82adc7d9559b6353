"""Morphology of a whole NumPy ROI in two compiled passes, without building the mesh.

The IBSI mesh of a binary mask is the marching-cubes surface at 0.5, and which
triangles a cell holds depends only on its eight corner bits (Lewiner's ambiguity tests
see the corner values alone, all 0 or 1 here).  So each of the 256 cell
configurations carries a fixed set of triangles, taken once from scikit-image's
:func:`~skimage.measure.marching_cubes` on a lone 2x2x2 cell.  A compiled pass counts the
cells of each configuration and sums their positions (int64, exact); the area and the
signed volume follow from per-configuration constants:

* area = sum over configurations of ``count * area(cfg)``;
* a triangle ``c + u_k`` (cell corner ``c``, local vertices ``u_k``) has
  ``det(c+u0, c+u1, c+u2) = det(u0, u1, u2) + c . (u1 x u2 + u2 x u0 + u0 x u1)``,
  so 6 x volume = sum of ``count * det(cfg) + (sum of c) . n(cfg)``.

They equal the mesh sums of :func:`._morphology.morph_block` up to float64 summation
order.  The mesh vertices are the midpoints of the voxel edges between an ROI voxel and
a background voxel; a point strictly inside a segment between two others is no hull
vertex, so only the first/last crossing on each grid line, filtered again along the two
other axes, goes to Qhull: the same hull, from far fewer points.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["mc_config_table", "morph_shape", "morph_whole", "with_intensities"]

# corner bit of cell corner (dz, dy, dx): dz * 4 + dy * 2 + dx
_N_CFG = 256


@functools.lru_cache(maxsize=1)
def _mc_triangles():
    """Triangles (t, 3 vertices, 3) in unit cell coordinates of each configuration."""
    from skimage.measure import marching_cubes

    tris = [np.empty((0, 3, 3))]
    for cfg in range(1, _N_CFG - 1):
        cell = np.zeros((2, 2, 2), np.float32)
        for b in range(8):
            if cfg >> b & 1:
                cell[b >> 2 & 1, b >> 1 & 1, b & 1] = 1.0
        verts, faces, _, _ = marching_cubes(cell, level=0.5)
        tris.append(verts[faces].astype(np.float64))
    tris.append(np.empty((0, 3, 3)))
    return tris


@functools.lru_cache(maxsize=64)
def mc_config_table(spacing: tuple[float, ...]):
    """Per-configuration area, ``det`` sum and ``n`` vector for voxel size ``spacing``.

    Returns
    -------
    area : (256,) float64, mm^2
    det : (256,) float64, sum of ``det(u0, u1, u2)`` over the cell's triangles, mm^3
    nvec : (256, 3) float64, sum of ``u1 x u2 + u2 x u0 + u0 x u1``, mm^2
    """
    s = np.asarray(spacing, np.float64)
    area = np.zeros(_N_CFG)
    det = np.zeros(_N_CFG)
    nvec = np.zeros((_N_CFG, 3))
    for cfg, tri in enumerate(_mc_triangles()):
        if len(tri) == 0:
            continue
        t = tri * s
        u0, u1, u2 = t[:, 0], t[:, 1], t[:, 2]
        cr = np.cross(u1 - u0, u2 - u0)
        area[cfg] = 0.5 * np.sqrt(np.einsum("ij,ij->i", cr, cr)).sum()
        det[cfg] = np.einsum("ij,ij->i", u0, np.cross(u1, u2)).sum()
        nvec[cfg] = (np.cross(u1, u2) + np.cross(u2, u0) + np.cross(u0, u1)).sum(axis=0)
    for arr in (area, det, nvec):
        arr.setflags(write=False)
    return area, det, nvec


#: z-slabs of the cell pass; fixed (not the thread count) so float sums are reproducible
_SLABS = 16


@functools.lru_cache(maxsize=1)
def _kernels():
    import numba

    # serial on purpose: the prange version of these two loops ran ~20x slower
    @numba.njit(cache=True, nogil=True)
    def cell_configs(padded):
        """Count and position sums of every non-trivial 2x2x2 configuration."""
        nz, ny, nx = padded.shape
        ncz = nz - 1
        counts = np.zeros((_SLABS, _N_CFG), np.int64)
        possum = np.zeros((_SLABS, _N_CFG, 3), np.int64)
        for s in range(_SLABS):
            z0 = ncz * s // _SLABS
            z1 = ncz * (s + 1) // _SLABS
            for z in range(z0, z1):
                for y in range(ny - 1):
                    prev = (padded[z, y, 0] | (padded[z, y + 1, 0] << 2)
                            | (padded[z + 1, y, 0] << 4) | (padded[z + 1, y + 1, 0] << 6))
                    for x in range(nx - 1):
                        col = (padded[z, y, x + 1] | (padded[z, y + 1, x + 1] << 2)
                               | (padded[z + 1, y, x + 1] << 4)
                               | (padded[z + 1, y + 1, x + 1] << 6))
                        cfg = prev | (col << 1)
                        prev = col
                        if cfg != 0 and cfg != 255:
                            counts[s, cfg] += 1
                            possum[s, cfg, 0] += z
                            possum[s, cfg, 1] += y
                            possum[s, cfg, 2] += x
        return counts, possum

    @numba.njit(cache=True, nogil=True)
    def mask_pass(mask):
        """Position sums of the ROI and first/last ROI index on every grid line."""
        nz, ny, nx = mask.shape
        f0 = np.full((ny, nx), -1, np.int64)
        l0 = np.full((ny, nx), -1, np.int64)
        f1 = np.full((nz, nx), -1, np.int64)
        l1 = np.full((nz, nx), -1, np.int64)
        f2 = np.full((nz, ny), -1, np.int64)
        l2 = np.full((nz, ny), -1, np.int64)
        n = 0
        sidx = np.zeros(3, np.int64)
        souter = np.zeros((3, 3), np.int64)
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    if not mask[z, y, x]:
                        continue
                    n += 1
                    sidx[0] += z
                    sidx[1] += y
                    sidx[2] += x
                    souter[0, 0] += z * z
                    souter[0, 1] += z * y
                    souter[0, 2] += z * x
                    souter[1, 1] += y * y
                    souter[1, 2] += y * x
                    souter[2, 2] += x * x
                    if f0[y, x] < 0:
                        f0[y, x] = z
                    l0[y, x] = z
                    if f1[z, x] < 0:
                        f1[z, x] = y
                    l1[z, x] = y
                    if f2[z, y] < 0:
                        f2[z, y] = x
                    l2[z, y] = x
        souter[1, 0] = souter[0, 1]
        souter[2, 0] = souter[0, 2]
        souter[2, 1] = souter[1, 2]
        return n, sidx, souter, (f0, l0, f1, l1, f2, l2)

    @numba.njit(cache=True, nogil=True)
    def intensity_pass(mask, image):
        """Sum of the ROI intensities and of intensity times index (raster order)."""
        nz, ny, nx = mask.shape
        sint = 0.0
        sint_idx = np.zeros(3)
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    if not mask[z, y, x]:
                        continue
                    v = np.float64(image[z, y, x])
                    sint += v
                    sint_idx[0] += v * z
                    sint_idx[1] += v * y
                    sint_idx[2] += v * x
        return sint, sint_idx

    @numba.njit(cache=True, nogil=True)
    def line_points(first, last, na):
        """Crossings ``(2*first-1, 2*last+1)`` on each line, kept when extreme along the
        two other axes too; returns (k, 3) doubled coordinates ``(w, 2u, 2v)``."""
        nu, nv = first.shape
        nw = 2 * na + 3
        big = 1 << 40
        umin = np.full((nw, nv), big, np.int64)
        umax = np.full((nw, nv), -1, np.int64)
        vmin = np.full((nw, nu), big, np.int64)
        vmax = np.full((nw, nu), -1, np.int64)
        for u in range(nu):
            for v in range(nv):
                if first[u, v] < 0:
                    continue
                for w in (2 * first[u, v], 2 * last[u, v] + 2):  # doubled + 1 (>= 0)
                    umin[w, v] = min(umin[w, v], u)
                    umax[w, v] = max(umax[w, v], u)
                    vmin[w, u] = min(vmin[w, u], v)
                    vmax[w, u] = max(vmax[w, u], v)
        out = np.empty((2 * nu * nv, 3), np.int64)
        k = 0
        for u in range(nu):
            for v in range(nv):
                if first[u, v] < 0:
                    continue
                for w in (2 * first[u, v], 2 * last[u, v] + 2):
                    if ((u == umin[w, v] or u == umax[w, v])
                            and (v == vmin[w, u] or v == vmax[w, u])):
                        out[k, 0] = w - 1
                        out[k, 1] = 2 * u
                        out[k, 2] = 2 * v
                        k += 1
        return out[:k]

    @numba.njit(cache=True, nogil=True)
    def max_sq_distance(points):
        n = points.shape[0]
        best = np.zeros(n)
        for i in range(n):
            b = 0.0
            pz = points[i, 0]
            py = points[i, 1]
            px = points[i, 2]
            for j in range(i + 1, n):
                dz = pz - points[j, 0]
                dy = py - points[j, 1]
                dx = px - points[j, 2]
                d = dz * dz + dy * dy + dx * dx
                b = max(b, d)
            best[i] = b
        return best.max() if n else 0.0

    @numba.njit(cache=True, nogil=True)
    def plane_hull_keep(pts, order, a, u, v):
        """Mark the points that are 2-D hull vertices within their plane ``pts[:, a]``.

        ``order`` sorts the points by (a, u, v); Andrew's monotone chain on integer
        coordinates (exact), collinear points dropped.
        """
        n = order.shape[0]
        keep = np.zeros(pts.shape[0], np.bool_)
        stack = np.empty(n + 1, np.int64)
        g0 = 0
        while g0 < n:
            g1 = g0
            w = pts[order[g0], a]
            while g1 < n and pts[order[g1], a] == w:
                g1 += 1
            if g1 - g0 <= 2:
                for k in range(g0, g1):
                    keep[order[k]] = True
            else:
                for rev in range(2):  # lower chain, then upper chain
                    top = 0
                    for kk in range(g0, g1):
                        k = kk if rev == 0 else g0 + g1 - 1 - kk
                        p = order[k]
                        while top >= 2:
                            o = stack[top - 2]
                            q = stack[top - 1]
                            cr = ((pts[q, u] - pts[o, u]) * (pts[p, v] - pts[o, v])
                                  - (pts[q, v] - pts[o, v]) * (pts[p, u] - pts[o, u]))
                            if cr > 0:
                                break
                            top -= 1
                        stack[top] = p
                        top += 1
                    for k in range(top):
                        keep[stack[k]] = True
            g0 = g1
        return keep

    return (cell_configs, mask_pass, line_points, max_sq_distance, plane_hull_keep,
            intensity_pass)


def hull_candidates(doubled: np.ndarray) -> np.ndarray:
    """The points of ``doubled`` (k, 3 int64) that are 2-D hull vertices of their plane
    along every axis: a superset of the 3-D hull vertices (a vertex of the 3-D hull is a
    vertex of every plane section through it)."""
    keep_fn = _kernels()[4]
    keep = np.ones(len(doubled), bool)
    for a in range(3):
        u, v = [b for b in range(3) if b != a]
        order = np.lexsort((doubled[:, v], doubled[:, u], doubled[:, a]))
        keep &= keep_fn(doubled, order, a, u, v)
    return doubled[keep]


def max_diameter(points: np.ndarray) -> float:
    """Largest distance between two of ``points`` (k, 3), compiled O(k^2) loop."""
    if len(points) == 0:
        return math.nan
    return math.sqrt(_kernels()[3](np.ascontiguousarray(points, dtype=np.float64)))


def morph_whole(image, mask, origin, *, spacing, ref_mm, gather_samples):
    """The :class:`~._morphology.MorphPartial` of a whole NumPy ROI (bounding box).

    Parameters
    ----------
    image, mask : ndarray, 3-D
        The ROI's bounding box (every face of the box touches the ROI).
    origin : tuple of int
        Global index of the box's element 0.

    Notes
    -----
    Same partial as :func:`._morphology.morph_block` on the whole volume (see the module
    docstring), its hull points being the hull vertices of the mesh vertices.  It is
    :func:`morph_shape` of the mask, then :func:`with_intensities` of the image.
    """
    shape = morph_shape(mask, origin, spacing=spacing, ref_mm=ref_mm)
    return with_intensities(shape, image, mask, origin, gather_samples=gather_samples)


def morph_shape(mask, origin, *, spacing, ref_mm):
    """The mask's part of :func:`morph_whole`: every field but the intensity sums (zero)
    and the samples (None), so it can run before the image is read."""
    from ._morphology import MorphPartial

    cell_configs, mask_pass, line_points = _kernels()[:3]
    spacing = np.asarray(spacing, np.float64)
    o = np.asarray(origin, np.int64)
    mask = np.ascontiguousarray(mask, dtype=np.bool_)

    n, sidx_l, souter_l, lines = mask_pass(mask)
    # local -> global positions, exactly in int64
    sum_idx = sidx_l + n * o
    sum_outer = souter_l + np.outer(o, sidx_l) + np.outer(sidx_l, o) + n * np.outer(o, o)

    padded = np.pad(mask.view(np.uint8), 1)
    counts, possum = cell_configs(padded)
    counts = counts.sum(axis=0)
    possum = possum.sum(axis=0)
    area_t, det_t, nvec_t = mc_config_table(tuple(float(s) for s in spacing))
    area = float(np.dot(counts.astype(np.float64), area_t))
    # cell corner in mm, from the reference point: (padded index - 1 + origin) * s - ref
    corner_sum = ((possum + counts[:, None] * (o - 1)).astype(np.float64) * spacing
                  - counts[:, None].astype(np.float64) * ref_mm)
    vol6 = float(np.dot(counts.astype(np.float64), det_t)
                 + np.einsum("ij,ij->", corner_sum, nvec_t))

    shape = np.asarray(mask.shape)
    vmin = (o - 0.5) * spacing
    vmax = (o + shape - 0.5) * spacing

    f0, l0, f1, l1, f2, l2 = lines
    nz, ny, nx = mask.shape
    p0 = line_points(f0, l0, nz)            # (z2, 2y, 2x)
    p1 = line_points(f1, l1, ny)[:, [1, 0, 2]]  # (2z, y2, 2x)
    p2 = line_points(f2, l2, nx)[:, [1, 2, 0]]  # (2z, 2y, x2)
    doubled = hull_candidates(np.concatenate([p0, p1, p2]))
    cand = (doubled * 0.5 + o) * spacing
    hull_stats = None
    if len(cand) >= 5:
        from ._morphology import convex_hull

        qh = convex_hull(cand)
        if qh is None:  # flat ROI: as _hull_vertices, keep every point (exact)
            hull = np.unique(cand, axis=0)
        else:
            hull, hull_stats = cand[qh[0]], qh[1:]
    else:
        hull = cand

    return MorphPartial(
        n=int(n), sum_idx=sum_idx, sum_outer=sum_outer, sum_int=0.0,
        sum_int_idx=np.zeros(3), area=area, vol6=vol6, vmin=vmin, vmax=vmax,
        hull_points=hull, samples_idx=None, samples_val=None, hull_stats=hull_stats,
    )


def with_intensities(shape, image, mask, origin, *, gather_samples):
    """:func:`morph_shape`'s partial ``shape`` of ``mask`` completed with the intensity
    sums of ``image`` (and the ROI samples for Moran's I / Geary's C when
    ``gather_samples``): the partial of :func:`morph_whole`."""
    import dataclasses

    intensity_pass = _kernels()[5]
    o = np.asarray(origin, np.int64)
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    image = np.ascontiguousarray(image)
    if image.dtype.kind not in "f":
        image = image.astype(np.float64)
    sint, sint_idx_l = intensity_pass(mask, image)
    samples_idx = samples_val = None
    if gather_samples:
        from ._morphology import roi_samples

        samples_idx, samples_val = roi_samples(image, mask, o)
    return dataclasses.replace(shape, sum_int=float(sint),
                               sum_int_idx=sint_idx_l + sint * o.astype(np.float64),
                               samples_idx=samples_idx, samples_val=samples_val)
