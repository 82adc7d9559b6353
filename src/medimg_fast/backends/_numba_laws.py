"""Fused Laws kernel of the ``numba`` backend: every rotated response of a separable
Laws kernel pooled in one sweep.

The 24 rotations of a 3-D Laws kernel ``kz ky kx`` are signed permutations of its three
1-D kernels, and a flipped Laws kernel is itself or its negation, so every rotated
response is +-1 times one of at most 6 permutation responses (2 in 2-D).  The sweep
computes them as a tree: the z-pass of each distinct z kernel once per row (sharing the
input rows), the y-pass of each distinct (z, y) pair once per output row, the x-pass
of each permutation, folded straight into the pool (max, min or signed sum).  The
volume is read once and the pooled response written once, instead of a full 3-pass
sweep and a full-volume maximum per permutation.

Arithmetic: each pass evaluates exactly the sums of
:func:`medimg_fast.backends._numba_kernels.correlate1d` (symmetric and antisymmetric
pairing, float rounding after every operation, no ``fastmath``) on its input rounded to
the working dtype, and extends its own input at the faces, so the pooled response is
bit-identical to the chain ``correlate_separable`` + pool of the generic path.  Taps are
written out (3 or 5, the Laws lengths) so each pass is one loop with its sum in a
register, and rows are indexed with constant offsets (the x margin is :data:`MARGIN`)
rather than through array views: a view costs atomic reference counting, contended
between the threads when it is a view of a shared array, which measured as a third of
the sweep's time.

A work item is a block of rows of one plane; items run with z fastest, so a thread walks
down the planes of one block of rows and the input rows it rereads stay in its L2.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._shared.boundary import CONSTANT
from ._numba_kernels import _extend, _launch, _partition

#: x margin of the row buffers: the radius of the longest Laws kernel (5 taps)
MARGIN = 2

#: pooling codes of :func:`laws_pool`
POOL_MAX, POOL_MIN, POOL_MEAN = 0, 1, 2
#: how a permutation response enters a max/min pool: as r, as -r, or as both (|r| for
#: max, -|r| for min)
ENTER_PLUS, ENTER_MINUS, ENTER_BOTH = 0, 1, 2


# --------------------------------------------------------------------------------------
# the Laws sweep
# --------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _plane_value(src, zz, y, x, cval):
    return src[zz, y, x] if zz >= 0 else cval


@numba.njit(cache=True)
def _z_row(zb, k, j, src, z, y, wt, i, taps, sym, mode, cval):
    """``zb[k, j, MARGIN:MARGIN + nx]``: z-pass of image row ``(., y)`` at plane ``z``."""
    nz = src.shape[0]
    nx = src.shape[2]
    c = taps // 2
    if taps == 5:
        z0 = _extend(z - 2, nz, mode)
        z1 = _extend(z - 1, nz, mode)
        z2 = _extend(z, nz, mode)
        z3 = _extend(z + 1, nz, mode)
        z4 = _extend(z + 2, nz, mode)
        w0 = wt[i, 0]
        w1 = wt[i, 1]
        w2 = wt[i, 2]
        if z0 >= 0 and z1 >= 0 and z3 >= 0 and z4 >= 0:
            if sym > 0:
                for x in range(nx):
                    s = src[z2, y, x] * w2
                    s += (src[z0, y, x] + src[z4, y, x]) * w0
                    s += (src[z1, y, x] + src[z3, y, x]) * w1
                    zb[k, j, x + 2] = s
            else:
                for x in range(nx):
                    s = src[z2, y, x] * w2
                    s += (src[z0, y, x] - src[z4, y, x]) * w0
                    s += (src[z1, y, x] - src[z3, y, x]) * w1
                    zb[k, j, x + 2] = s
        else:  # constant mode at a z face
            for x in range(nx):
                a0 = _plane_value(src, z0, y, x, cval)
                a1 = _plane_value(src, z1, y, x, cval)
                a3 = _plane_value(src, z3, y, x, cval)
                a4 = _plane_value(src, z4, y, x, cval)
                s = src[z2, y, x] * w2
                if sym > 0:
                    s += (a0 + a4) * w0
                    s += (a1 + a3) * w1
                else:
                    s += (a0 - a4) * w0
                    s += (a1 - a3) * w1
                zb[k, j, x + 2] = s
    else:
        z0 = _extend(z - c, nz, mode)
        z1 = _extend(z, nz, mode)
        z2 = _extend(z + c, nz, mode)
        w0 = wt[i, 0]
        w1 = wt[i, 1]
        if z0 >= 0 and z2 >= 0:
            if sym > 0:
                for x in range(nx):
                    s = src[z1, y, x] * w1
                    s += (src[z0, y, x] + src[z2, y, x]) * w0
                    zb[k, j, x + 2] = s
            else:
                for x in range(nx):
                    s = src[z1, y, x] * w1
                    s += (src[z0, y, x] - src[z2, y, x]) * w0
                    zb[k, j, x + 2] = s
        else:
            for x in range(nx):
                a0 = _plane_value(src, z0, y, x, cval)
                a2 = _plane_value(src, z2, y, x, cval)
                s = src[z1, y, x] * w1
                if sym > 0:
                    s += (a0 + a2) * w0
                else:
                    s += (a0 - a2) * w0
                zb[k, j, x + 2] = s


@numba.njit(cache=True)
def _z_rows_shared(zb, j, src, z, y, zw, zsym, mode):
    """``_z_row`` of every z kernel at once (all 5-tap, two or three of them, no
    constant face), reading the five input rows once.  Each kernel's sum is the same
    expression as in :func:`_z_row` (the pair sums are computed once and shared)."""
    nz = src.shape[0]
    nx = src.shape[2]
    z0 = _extend(z - 2, nz, mode)
    z1 = _extend(z - 1, nz, mode)
    z2 = _extend(z, nz, mode)
    z3 = _extend(z + 1, nz, mode)
    z4 = _extend(z + 2, nz, mode)
    n_z = zw.shape[0]
    a0, a1, a2 = zw[0, 0], zw[0, 1], zw[0, 2]
    b0, b1, b2 = zw[1, 0], zw[1, 1], zw[1, 2]
    sa = zsym[0] > 0
    sb = zsym[1] > 0
    if n_z == 2:
        for x in range(nx):
            v0 = src[z0, y, x]
            v1 = src[z1, y, x]
            v2 = src[z2, y, x]
            v3 = src[z3, y, x]
            v4 = src[z4, y, x]
            p0 = v0 + v4
            p1 = v1 + v3
            m0 = v0 - v4
            m1 = v1 - v3
            s = v2 * a2
            s += (p0 if sa else m0) * a0
            s += (p1 if sa else m1) * a1
            zb[0, j, x + 2] = s
            s = v2 * b2
            s += (p0 if sb else m0) * b0
            s += (p1 if sb else m1) * b1
            zb[1, j, x + 2] = s
        return
    c0, c1, c2 = zw[2, 0], zw[2, 1], zw[2, 2]
    sc = zsym[2] > 0
    for x in range(nx):
        v0 = src[z0, y, x]
        v1 = src[z1, y, x]
        v2 = src[z2, y, x]
        v3 = src[z3, y, x]
        v4 = src[z4, y, x]
        p0 = v0 + v4
        p1 = v1 + v3
        m0 = v0 - v4
        m1 = v1 - v3
        s = v2 * a2
        s += (p0 if sa else m0) * a0
        s += (p1 if sa else m1) * a1
        zb[0, j, x + 2] = s
        s = v2 * b2
        s += (p0 if sb else m0) * b0
        s += (p1 if sb else m1) * b1
        zb[1, j, x + 2] = s
        s = v2 * c2
        s += (p0 if sc else m0) * c0
        s += (p1 if sc else m1) * c1
        zb[2, j, x + 2] = s


@numba.njit(cache=True)
def _margin_sources(nx, mode):
    """Buffer column feeding each margin column (``-1``: cval): the x positions
    ``-MARGIN .. -1`` and ``nx .. nx + MARGIN - 1`` extended by ``mode``."""
    sources = np.empty(2 * MARGIN, dtype=np.int64)
    for p in range(MARGIN):
        k = _extend(p - MARGIN, nx, mode)
        sources[p] = k + MARGIN if k >= 0 else -1
        k = _extend(nx + p, nx, mode)
        sources[MARGIN + p] = k + MARGIN if k >= 0 else -1
    return sources


@numba.njit(cache=True)
def _x_margins(zb, k, j, nx, sources, cval):
    """Extend ``zb[k, j, MARGIN:MARGIN + nx]`` over its margins (indexed, no row view)."""
    for p in range(MARGIN):
        q = sources[p]
        zb[k, j, p] = zb[k, j, q] if q >= 0 else cval
        q = sources[MARGIN + p]
        zb[k, j, nx + MARGIN + p] = zb[k, j, q] if q >= 0 else cval


@numba.njit(cache=True)
def _z_stage(zb, src, z, lo, count, zw, ztaps, zsym, has_z, mode, cval):
    """Rows ``j < count`` of ``zb``: the z-pass (or the input row) of image row
    ``lo + j``, extended along y and x as the y- and x-passes extend their inputs."""
    nz, ny, nx = src.shape
    n_z = zb.shape[0]
    sources = _margin_sources(nx, mode)
    shared = has_z and 2 <= n_z <= 3 and (mode != CONSTANT or 2 <= z < nz - 2)
    for k in range(n_z):
        shared = shared and ztaps[k] == 5
    for j in range(count):
        yy = _extend(lo + j, ny, mode)
        if yy >= 0 and shared:
            _z_rows_shared(zb, j, src, z, yy, zw, zsym, mode)
        for k in range(n_z):
            if yy < 0:
                zb[k, j, :] = cval
                continue
            if not has_z:
                for x in range(nx):
                    zb[k, j, x + 2] = src[z, yy, x]
            elif not shared:
                _z_row(zb, k, j, src, z, yy, zw, k, ztaps[k], zsym[k], mode, cval)
            _x_margins(zb, k, j, nx, sources, cval)


@numba.njit(cache=True)
def _y_row(yrow, zb, k, j, wt, i, taps, sym, m):
    """y-pass centred on row ``j`` of ``zb[k]``, over the whole extended row."""
    if taps == 5:
        w0 = wt[i, 0]
        w1 = wt[i, 1]
        w2 = wt[i, 2]
        if sym > 0:
            for x in range(m):
                s = zb[k, j, x] * w2
                s += (zb[k, j - 2, x] + zb[k, j + 2, x]) * w0
                s += (zb[k, j - 1, x] + zb[k, j + 1, x]) * w1
                yrow[x] = s
        else:
            for x in range(m):
                s = zb[k, j, x] * w2
                s += (zb[k, j - 2, x] - zb[k, j + 2, x]) * w0
                s += (zb[k, j - 1, x] - zb[k, j + 1, x]) * w1
                yrow[x] = s
    else:
        w0 = wt[i, 0]
        w1 = wt[i, 1]
        if sym > 0:
            for x in range(m):
                s = zb[k, j, x] * w1
                s += (zb[k, j - 1, x] + zb[k, j + 1, x]) * w0
                yrow[x] = s
        else:
            for x in range(m):
                s = zb[k, j, x] * w1
                s += (zb[k, j - 1, x] - zb[k, j + 1, x]) * w0
                yrow[x] = s


@numba.njit(cache=True)
def _y_rows_shared(yrows, p, zb, k, j, yw, ysym, m):
    """``_y_row`` of pairs ``p`` and ``p + 1`` (5-tap y kernels on the same z-pass rows),
    reading the five rows once; each sum is the same expression as in :func:`_y_row`."""
    a0, a1, a2 = yw[p, 0], yw[p, 1], yw[p, 2]
    b0, b1, b2 = yw[p + 1, 0], yw[p + 1, 1], yw[p + 1, 2]
    sa = ysym[p] > 0
    sb = ysym[p + 1] > 0
    for x in range(m):
        v0 = zb[k, j - 2, x]
        v1 = zb[k, j - 1, x]
        v2 = zb[k, j, x]
        v3 = zb[k, j + 1, x]
        v4 = zb[k, j + 2, x]
        p0 = v0 + v4
        p1 = v1 + v3
        m0 = v0 - v4
        m1 = v1 - v3
        s = v2 * a2
        s += (p0 if sa else m0) * a0
        s += (p1 if sa else m1) * a1
        yrows[p, x] = s
        s = v2 * b2
        s += (p0 if sb else m0) * b0
        s += (p1 if sb else m1) * b1
        yrows[p + 1, x] = s


@numba.njit(cache=True)
def _x_row(xrow, yrows, r, wt, i, taps, sym, nx):
    """x-pass of the extended row ``yrows[r]`` into ``xrow[:nx]``."""
    if taps == 5:
        w0 = wt[i, 0]
        w1 = wt[i, 1]
        w2 = wt[i, 2]
        if sym > 0:
            for x in range(nx):
                s = yrows[r, x + 2] * w2
                s += (yrows[r, x] + yrows[r, x + 4]) * w0
                s += (yrows[r, x + 1] + yrows[r, x + 3]) * w1
                xrow[x] = s
        else:
            for x in range(nx):
                s = yrows[r, x + 2] * w2
                s += (yrows[r, x] - yrows[r, x + 4]) * w0
                s += (yrows[r, x + 1] - yrows[r, x + 3]) * w1
                xrow[x] = s
    else:
        w0 = wt[i, 0]
        w1 = wt[i, 1]
        if sym > 0:
            for x in range(nx):
                s = yrows[r, x + 2] * w1
                s += (yrows[r, x + 1] + yrows[r, x + 3]) * w0
                xrow[x] = s
        else:
            for x in range(nx):
                s = yrows[r, x + 2] * w1
                s += (yrows[r, x + 1] - yrows[r, x + 3]) * w0
                xrow[x] = s


@numba.njit(cache=True)
def _x_fold_max(acc, yrows, r, wt, i, taps, sym, nx, c, use_abs):
    """x-pass of ``yrows[r]`` folded into a running maximum: ``acc = max(acc, c * v)``
    with ``v`` the x-pass value, or ``|v|`` when ``use_abs``, and ``c`` = +-1.

    ``(a - b)`` is evaluated as ``a + (-1 * b)``, which IEEE arithmetic defines as the
    same operation, so one loop serves both symmetries.  The maximum follows
    ``numpy.maximum``: a NaN on either side wins.  A minimum is the negated maximum
    of negated values (negation is exact)."""
    g = yrows.dtype.type(sym)
    if taps == 5:
        w0 = wt[i, 0]
        w1 = wt[i, 1]
        w2 = wt[i, 2]
        if use_abs:
            for x in range(nx):
                s = yrows[r, x + 2] * w2
                s += (yrows[r, x] + yrows[r, x + 4] * g) * w0
                s += (yrows[r, x + 1] + yrows[r, x + 3] * g) * w1
                v = abs(s) * c
                a = acc[x]
                acc[x] = v if (v > a or np.isnan(v)) else a
        else:
            for x in range(nx):
                s = yrows[r, x + 2] * w2
                s += (yrows[r, x] + yrows[r, x + 4] * g) * w0
                s += (yrows[r, x + 1] + yrows[r, x + 3] * g) * w1
                v = s * c
                a = acc[x]
                acc[x] = v if (v > a or np.isnan(v)) else a
    else:
        w0 = wt[i, 0]
        w1 = wt[i, 1]
        if use_abs:
            for x in range(nx):
                s = yrows[r, x + 2] * w1
                s += (yrows[r, x + 1] + yrows[r, x + 3] * g) * w0
                v = abs(s) * c
                a = acc[x]
                acc[x] = v if (v > a or np.isnan(v)) else a
        else:
            for x in range(nx):
                s = yrows[r, x + 2] * w1
                s += (yrows[r, x + 1] + yrows[r, x + 3] * g) * w0
                v = s * c
                a = acc[x]
                acc[x] = v if (v > a or np.isnan(v)) else a


@numba.njit(cache=True)
def _fold_sum(acc, xrow, signs, first_sign, last_sign, first, nx):
    # one addition per rotation, in order, as the generic pool adds them
    for i in range(first_sign, last_sign):
        if first and i == first_sign:
            if signs[i] > 0:
                acc[:nx] = xrow[:nx]
            else:
                for x in range(nx):
                    acc[x] = -xrow[x]
        elif signs[i] > 0:
            for x in range(nx):
                acc[x] += xrow[x]
        else:
            for x in range(nx):
                acc[x] -= xrow[x]


@numba.njit(parallel=True, cache=True)
def _laws_sweep(src, out, has_z, zw, ztaps, zsym, pair_z, yw, ytaps, ysym, group_pair, xw,
                xtaps, xsym, group_enter, sign_start, signs, pooling, count, take_abs,
                mode, cval, yblock, block, n_blocks):
    nz, ny, nx = src.shape
    m = nx + 2 * MARGIN
    ry = MARGIN  # y halo of the z stage: the longest kernel's radius
    n_z = zw.shape[0]
    n_pairs = pair_z.shape[0]
    n_groups = group_pair.shape[0]
    n_yblocks = -(-ny // yblock)
    n_items = nz * n_yblocks
    scale = src.dtype.type(count)
    for b in prange(n_blocks):
        zb = np.empty((n_z, min(yblock, ny) + 2 * ry, m), dtype=src.dtype)
        yrows = np.empty((n_pairs, m), dtype=src.dtype)
        xrow = np.empty(nx, dtype=src.dtype)
        acc = np.empty(nx, dtype=src.dtype)
        for item in range(b * block, min(n_items, (b + 1) * block)):
            # z runs fastest: a thread walks down the planes of one block of rows, and
            # the input planes it reads again stay in its L2
            yb = item // nz
            z = item - yb * nz
            y0 = yb * yblock
            y1 = min(ny, y0 + yblock)
            _z_stage(zb, src, z, y0 - ry, y1 - y0 + 2 * ry, zw, ztaps, zsym, has_z, mode,
                     cval)
            for y in range(y0, y1):
                j = y - y0 + ry
                p = 0
                while p < n_pairs:
                    if p + 1 < n_pairs and pair_z[p + 1] == pair_z[p] and ytaps[p] == 5 \
                            and ytaps[p + 1] == 5:
                        _y_rows_shared(yrows, p, zb, pair_z[p], j, yw, ysym, m)
                        p += 2
                    else:
                        _y_row(yrows[p], zb, pair_z[p], j, yw, p, ytaps[p], ysym[p], m)
                        p += 1
                if mode == CONSTANT:  # the x-pass extends its input with cval
                    for p in range(n_pairs):
                        for q in range(MARGIN):
                            yrows[p, q] = cval
                            yrows[p, nx + MARGIN + q] = cval
                if pooling == POOL_MEAN:
                    for g in range(n_groups):
                        _x_row(xrow, yrows, group_pair[g], xw, g, xtaps[g], xsym[g], nx)
                        _fold_sum(acc, xrow, signs, sign_start[g], sign_start[g + 1], g == 0,
                                  nx)
                    if count > 1:
                        for x in range(nx):
                            acc[x] /= scale
                else:
                    # max(-inf, v) is v, NaN included: the first response needs no branch
                    acc[:] = -np.inf
                    flip = 1.0 if pooling == POOL_MAX else -1.0
                    for g in range(n_groups):
                        enter = group_enter[g]
                        # |r| enters a max as itself, -|r| a min: negated, |r| again
                        c = 1.0 if enter == ENTER_BOTH else \
                            flip * (-1.0 if enter == ENTER_MINUS else 1.0)
                        _x_fold_max(acc, yrows, group_pair[g], xw, g, xtaps[g], xsym[g], nx,
                                    src.dtype.type(c), enter == ENTER_BOTH)
                    if pooling == POOL_MIN:
                        for x in range(nx):
                            acc[x] = -acc[x]
                # indexed, not a row view: a view of the shared output costs atomic
                # reference counting contended between the threads
                if take_abs:
                    for x in range(nx):
                        out[z, y, x] = abs(acc[x])
                else:
                    for x in range(nx):
                        out[z, y, x] = acc[x]


#: bytes of the input and row buffers one thread should keep in its L2 cache
_L2_BYTES = 1 << 20


def _yblock(nz, ny, nx, itemsize, planes, halo):
    """Rows per work item.  A thread walks down the planes of one block of rows; the
    ``planes`` row bands it rereads (input planes of the z window, row buffers; ``halo``
    rows beyond the block on each side) should fit in L2, and there should be blocks for
    every thread.  Each block recomputes the z stage of its ``2 * halo`` halo rows, so
    blocks stay taller than that."""
    threads = numba.get_num_threads()
    fit = _L2_BYTES // (planes * nx * itemsize) - 2 * halo
    share = -(-ny // threads) if nz < 4 * threads else ny
    return max(4 * halo, 16, min(fit, share))


def laws_pool(image, has_z, z_kernels, pairs, groups, pooling, count, take_abs, mode_code,
              cval, yblock=None):
    """Pooled response of the permutations of a separable Laws kernel, in one sweep.

    Parameters
    ----------
    image : ndarray
        C-contiguous float32 or float64 array, 2-D (y, x) or 3-D (z, y, x).
    has_z : bool
        Whether the first axis of a 3-D image is filtered (False: each (y, x) plane on
        its own).
    z_kernels : list of ndarray
        The distinct z-pass weights (float64, 3 or 5 taps, symmetric or antisymmetric);
        one entry, ignored, when ``has_z`` is False.
    pairs : list of (int, ndarray)
        ``(z kernel index, y-pass weights)`` of each distinct (z, y) pair.
    groups : list of (int, ndarray, list of int)
        ``(pair index, x-pass weights, signs)``: one permutation response, entered into
        the pool once per sign (negated for -1), in the generic pool's order.
    pooling : int
        :data:`POOL_MAX`, :data:`POOL_MIN` or :data:`POOL_MEAN`.
    count : int
        Rotations pooled (the divisor of the mean).
    take_abs : bool
        Return ``|pooled|`` (the input of the energy map).
    mode_code, cval
        Boundary rule of every pass.
    yblock : int, optional
        Rows per work item (tests set it to reach the split-plane path).

    Returns
    -------
    ndarray
        New array of the image's dtype and shape.
    """
    dtype = image.dtype
    view = image.reshape((1,) * (3 - image.ndim) + image.shape)
    nz, ny, nx = view.shape
    out = np.empty_like(view)
    if view.size == 0:
        return out.reshape(image.shape)

    def table(weights):
        w = np.zeros((len(weights), 5), dtype=dtype)
        taps = np.zeros(len(weights), dtype=np.int64)
        sym = np.zeros(len(weights), dtype=np.int64)
        for i, k in enumerate(weights):
            k = np.asarray(k, dtype=np.float64)
            w[i, :k.size] = k
            taps[i] = k.size
            c = k.size // 2
            sym[i] = 1 if np.array_equal(k[:c], k[::-1][:c]) else -1
        return w, taps, sym

    zw, ztaps, zsym = table(z_kernels)
    yw, ytaps, ysym = table([k for _, k in pairs])
    xw, xtaps, xsym = table([k for _, k, _ in groups])
    pair_z = np.array([z for z, _ in pairs], dtype=np.int64)
    group_pair = np.array([p for p, _, _ in groups], dtype=np.int64)
    enter = []
    for _, _, s in groups:
        s = set(s)
        enter.append(ENTER_BOTH if len(s) == 2 else ENTER_PLUS if 1 in s else ENTER_MINUS)
    sign_start = np.cumsum([0] + [len(s) for _, _, s in groups]).astype(np.int64)
    signs = np.array([v for _, _, s in groups for v in s], dtype=np.int64)
    if yblock is None:
        # the z window's 5 input planes and the z stage's rows
        yblock = _yblock(nz, ny, nx, dtype.itemsize, 5 + len(z_kernels), MARGIN)
    yblock = max(1, min(int(yblock), ny))
    n_items = nz * -(-ny // yblock)
    block, n_blocks = _partition(n_items, per_thread=2)
    _launch(_laws_sweep, view, out, bool(has_z), zw, ztaps, zsym, pair_z, yw, ytaps, ysym,
            group_pair, xw, xtaps, xsym, np.array(enter, dtype=np.int64), sign_start, signs,
            int(pooling), int(count), bool(take_abs), int(mode_code), dtype.type(cval),
            yblock, block, n_blocks)
    return out.reshape(image.shape)
