"""The 3-D Laplacian of Gaussian of the ``numba`` backend as one fused sweep.

``scipy.ndimage.gaussian_laplace`` sums three separable filters of three 1-D passes
each (nine passes, three sweeps through memory and two sums).  With ``G`` the sampled
Gaussian and ``G''`` its second derivative along one axis, the same sum factors as

    LoG f = G_x [G_y (G''_z f) + G''_y (G_z f)] + G''_x [G_y (G_z f)]

so that ``A = G_z f`` is shared by two terms and the two terms under ``G_x`` share one
x-pass: seven 1-D passes, and passes that read the same input share its loads
(``A, B = G_z f, G''_z f``; ``G_y A`` and ``G''_y A``).  A work item is one z-plane (or
a block of its rows): the z-passes of the rows it needs go to two per-thread plane
buffers, then bands of rows get the y-passes and the x-passes in small buffers and go
straight to the output, so the volume is read about once and written once.

Boundaries are those of the nine-pass form: every pass extends its own input at the
faces.  In ``constant`` mode the x-pass shared by two terms sees ``2 * cval`` outside
(the sum of the two terms' extensions), which keeps the factorisation exact.

The kernels evaluate the same expression, in the same order, for every voxel wherever
it sits (no ``fastmath``), so a Dask chunk padded with its halo gives bit-identical
results to the whole array.  They accumulate in the working dtype; the grouping of the
sums differs from the nine-pass chain, so results agree with it to float rounding
(float32: a few units of 1e-7 of the response's range), not bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ._numba_kernels import _extend, _tap_input, parallel_launch_lock

#: Voxels per band of rows: the band buffers of a thread stay in L1/L2.
_BAND_VOXELS = 2048


@numba.njit(cache=True)
def _z_pair(dst_a, dst_b, flat, cval_flat, offsets, w_a, w_b):
    """``dst_a = sum_k w_a[k] in_k`` and ``dst_b = sum_k w_b[k] in_k`` for two
    symmetric kernels of one length, sharing the loads and the pair sums."""
    n = dst_a.shape[0]
    c = w_a.shape[0] // 2
    centre = _tap_input(flat, cval_flat, offsets[c], n)
    wa = w_a[c]
    wb = w_b[c]
    for x in range(n):
        v = centre[x]
        dst_a[x] = v * wa
        dst_b[x] = v * wb
    for j in range(1, c + 1):
        lo = _tap_input(flat, cval_flat, offsets[c - j], n)
        hi = _tap_input(flat, cval_flat, offsets[c + j], n)
        wa = w_a[c - j]
        wb = w_b[c - j]
        for x in range(n):
            s = lo[x] + hi[x]
            dst_a[x] += s * wa
            dst_b[x] += s * wb


@numba.njit(cache=True)
def _y_pair(smooth, mixed, a_flat, b_flat, cval_flat, offsets, w0, w2):
    """``smooth = G_y A`` and ``mixed = G''_y A + G_y B`` (rows at ``offsets`` in both
    plane buffers; -1: outside, the extension value)."""
    n = smooth.shape[0]
    c = w0.shape[0] // 2
    a = _tap_input(a_flat, cval_flat, offsets[c], n)
    b = _tap_input(b_flat, cval_flat, offsets[c], n)
    u0 = w0[c]
    u2 = w2[c]
    for x in range(n):
        smooth[x] = a[x] * u0
        s = a[x] * u2
        s += b[x] * u0
        mixed[x] = s
    for j in range(1, c + 1):
        a_lo = _tap_input(a_flat, cval_flat, offsets[c - j], n)
        a_hi = _tap_input(a_flat, cval_flat, offsets[c + j], n)
        b_lo = _tap_input(b_flat, cval_flat, offsets[c - j], n)
        b_hi = _tap_input(b_flat, cval_flat, offsets[c + j], n)
        u0 = w0[c - j]
        u2 = w2[c - j]
        for x in range(n):
            sa = a_lo[x] + a_hi[x]
            sb = b_lo[x] + b_hi[x]
            smooth[x] += sa * u0
            t = mixed[x] + sa * u2
            t += sb * u0
            mixed[x] = t


@numba.njit(cache=True)
def _x_pair(dst, mixed_ext, smooth_ext, w0, w2):
    """``dst = G_x mixed + G''_x smooth`` over x-extended rows laid end to end."""
    n = dst.shape[0]
    c = w0.shape[0] // 2
    m = mixed_ext[c:c + n]
    s = smooth_ext[c:c + n]
    u0 = w0[c]
    u2 = w2[c]
    for x in range(n):
        t = m[x] * u0
        t += s[x] * u2
        dst[x] = t
    for j in range(1, c + 1):
        m_lo = mixed_ext[c - j:c - j + n]
        m_hi = mixed_ext[c + j:c + j + n]
        s_lo = smooth_ext[c - j:c - j + n]
        s_hi = smooth_ext[c + j:c + j + n]
        u0 = w0[c - j]
        u2 = w2[c - j]
        for x in range(n):
            t = dst[x] + (m_lo[x] + m_hi[x]) * u0
            t += (s_lo[x] + s_hi[x]) * u2
            dst[x] = t


@numba.njit(cache=True)
def _extend_row(ext, before, n, mode, value):
    """Extend the row held in ``ext[before:before + n]`` over the rest of ``ext``."""
    for p in range(before):
        k = _extend(p - before, n, mode)
        ext[p] = ext[before + k] if k >= 0 else value
    for p in range(before + n, ext.shape[0]):
        k = _extend(p - before, n, mode)
        ext[p] = ext[before + k] if k >= 0 else value


@numba.njit(parallel=True, cache=True)
def _log_sweep(src, out, cval_flat, z0, z2, y0w, y2w, x0w, x2w, mode, cval,
               yblock, band, block, n_blocks):
    nz, ny, nx = src.shape
    cz = z0.shape[0] // 2
    cy = y0w.shape[0] // 2
    cx = x0w.shape[0] // 2
    m = nx + 2 * cx  # an x-extended row
    n_yblocks = -(-ny // yblock)
    n_items = nz * n_yblocks
    src_flat = src.reshape(nz * ny * nx)
    out_flat = out.reshape(nz * ny * nx)
    n_taps = max(z0.shape[0], max(y0w.shape[0], x0w.shape[0]))
    cval2 = cval + cval
    for b in prange(n_blocks):
        plane_a = np.empty(ny * nx, dtype=src.dtype)  # G_z f
        plane_b = np.empty(ny * nx, dtype=src.dtype)  # G''_z f
        needed = np.zeros(ny, dtype=np.bool_)
        smooth = np.empty(band * nx, dtype=src.dtype)
        mixed = np.empty(band * nx, dtype=src.dtype)
        smooth_ext = np.empty(band * m, dtype=src.dtype)
        mixed_ext = np.empty(band * m, dtype=src.dtype)
        xbuf = np.empty(band * m, dtype=src.dtype)
        offsets = np.empty(n_taps, dtype=np.int64)
        for item in range(b * block, min(n_items, (b + 1) * block)):
            z = item // n_yblocks
            ya0 = (item - z * n_yblocks) * yblock
            ya1 = min(ny, ya0 + yblock)
            # the plane rows the y-passes of rows ya0 .. ya1 - 1 read
            needed[:] = False
            for e in range(ya0 - cy, ya1 + cy):
                k = _extend(e, ny, mode)
                if k >= 0:
                    needed[k] = True
            for t in range(z0.shape[0]):
                zz = _extend(z + t - cz, nz, mode)
                offsets[t] = zz * ny * nx if zz >= 0 else -1
            k0 = 0
            while k0 < ny:
                if not needed[k0]:
                    k0 += 1
                    continue
                k1 = k0
                while k1 < ny and needed[k1] and k1 - k0 < band:
                    k1 += 1
                for t in range(z0.shape[0]):
                    if offsets[t] >= 0:
                        offsets[t] += k0 * nx
                _z_pair(plane_a[k0 * nx:k1 * nx], plane_b[k0 * nx:k1 * nx], src_flat,
                        cval_flat, offsets, z0, z2)
                for t in range(z0.shape[0]):
                    if offsets[t] >= 0:
                        offsets[t] -= k0 * nx
                k0 = k1
            for ya in range(ya0, ya1, band):
                yb = min(ya1, ya + band)
                nrows = yb - ya
                if ya - cy >= 0 and yb - 1 + cy < ny:
                    for t in range(y0w.shape[0]):
                        offsets[t] = (ya + t - cy) * nx
                    _y_pair(smooth[:nrows * nx], mixed[:nrows * nx], plane_a, plane_b,
                            cval_flat, offsets, y0w, y2w)
                else:
                    # near a face: extend row by row
                    for y in range(ya, yb):
                        for t in range(y0w.shape[0]):
                            k = _extend(y + t - cy, ny, mode)
                            offsets[t] = k * nx if k >= 0 else -1
                        r = y - ya
                        _y_pair(smooth[r * nx:(r + 1) * nx], mixed[r * nx:(r + 1) * nx],
                                plane_a, plane_b, cval_flat, offsets, y0w, y2w)
                for r in range(nrows):
                    mixed_ext[r * m + cx:r * m + cx + nx] = mixed[r * nx:(r + 1) * nx]
                    smooth_ext[r * m + cx:r * m + cx + nx] = smooth[r * nx:(r + 1) * nx]
                    # the two terms under G_x each extend with cval: their sum with 2 cval
                    _extend_row(mixed_ext[r * m:(r + 1) * m], cx, nx, mode, cval2)
                    _extend_row(smooth_ext[r * m:(r + 1) * m], cx, nx, mode, cval)
                length = (nrows - 1) * m + nx
                _x_pair(xbuf[:length], mixed_ext, smooth_ext, x0w, x2w)
                for r in range(nrows):
                    o = (z * ny + ya + r) * nx
                    out_flat[o:o + nx] = xbuf[r * m:r * m + nx]


def _is_symmetric(w):
    return w.ndim == 1 and w.size % 2 == 1 and bool(np.all(w == w[::-1]))


def fusable(smooth, second):
    """Whether per-axis kernel pairs can go through :func:`gaussian_laplace_3d`: three
    axes, each with a smoothing and a second-derivative kernel that are symmetric, odd
    and of one length."""
    return (len(smooth) == 3 and len(second) == 3
            and all(_is_symmetric(np.asarray(w0)) and _is_symmetric(np.asarray(w2))
                    and np.size(w0) == np.size(w2) for w0, w2 in zip(smooth, second)))


def gaussian_laplace_3d(image, smooth, second, mode_code, cval, yblock=None, band=None):
    """``sum_a`` (second derivative along ``a``, smoothing along the other axes) of a
    C-contiguous 3-D float32/float64 image, in one fused sweep.

    Parameters
    ----------
    image : ndarray
        3-D, float32 or float64, C-contiguous.
    smooth, second : sequence of three 1-D arrays
        Per axis (z, y, x), the smoothing and the second-derivative correlation weights
        (odd, symmetric, one length per axis; see :func:`fusable`).
    mode_code : int
        Boundary mode code from :mod:`medimg_fast._shared.boundary`.
    cval : float
        Value outside the image in constant mode.
    yblock, band : int, optional
        Rows per work item and per band: they only choose how the work is cut, never a
        result; tests pass them to reach every code path.

    Returns
    -------
    ndarray
        New array of the image's dtype and shape.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 \
            or image.dtype not in (np.float32, np.float64):
        raise TypeError("`image` must be a 3-D float32 or float64 NumPy array, got "
                        f"{type(image).__name__} {getattr(image, 'shape', None)} of dtype "
                        f"{getattr(image, 'dtype', None)}")
    if not fusable(smooth, second):
        raise ValueError("`smooth` and `second` must hold three odd, symmetric 1-D kernels "
                         "each, of one length per axis")
    image = np.ascontiguousarray(image)
    nz, ny, nx = image.shape
    out = np.empty_like(image)
    if image.size == 0:
        return out
    dtype = image.dtype
    w = [np.asarray(k, dtype=np.float64).astype(dtype) for k in (*smooth, *second)]
    threads = numba.get_num_threads()
    cy = w[1].size // 2
    if yblock is None:
        if nz >= 2 * threads:
            yblock = ny
        else:
            # too few planes to share out: blocks of rows, each recomputing the z-passes
            # of its y halo, so keep them tall
            yblock = max(-(-ny // -(-4 * threads // nz)), 8 * cy, 16)
    yblock = max(1, min(int(yblock), ny))
    if band is None:
        band = _BAND_VOXELS // (nx + 2 * (w[2].size // 2))
    band = max(1, int(band))
    n_items = nz * -(-ny // yblock)
    n_blocks = min(n_items, 2 * threads)
    block = -(-n_items // n_blocks)
    n_blocks = -(-n_items // block)
    cval_flat = np.full(band * nx, cval, dtype=dtype)
    with parallel_launch_lock:
        _log_sweep(image, out, cval_flat, w[0], w[3], w[1], w[4], w[2], w[5],
                   int(mode_code), dtype.type(cval), yblock, band, block, n_blocks)
    return out
