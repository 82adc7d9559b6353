"""CPU kernels of the ``numba`` backend, compiled with numba and parallel over cores.

Every function takes a C-contiguous float32 or float64 NumPy array (already cast by the
caller) and returns a new array of the same dtype and shape, with the semantics of the
matching ``scipy.ndimage`` function at origin 0 and the boundary modes of
:mod:`medimg_fast._shared.boundary` (passed as integer codes).

Two properties shape the code:

* **Position independence.**  The arithmetic that produces an output voxel depends only
  on its neighbourhood values, never on where it sits: every path (contiguous or strided
  axis, vector body or remainder) evaluates the same expression in the same order, and
  nothing is compiled with ``fastmath`` (which would let LLVM reassociate sums or fuse
  multiply-adds in the vector body only).  A chunk padded with its halo therefore gives
  bit-identical results to the whole array, which the Dask layer relies on.
* **Vectorisation along the contiguous axis.**  Loops run taps (or comparator steps)
  outside and contiguous positions inside, on rows that live in L1, so LLVM emits SIMD
  code without reordering any per-voxel arithmetic.

The linear filters evaluate the same sums as ``scipy.ndimage`` (including its pairing of
symmetric and antisymmetric 1-D weights), so float64 results usually match scipy to the
last bit; float32 results accumulate in float32.

Rank filters with up to :data:`SCHEDULE_MAX_COUNT` footprint elements run a *forgetful
selection* comparator schedule (Paeth, "Median finding on a 3x3 grid", Graphics Gems,
1990, generalised to any rank): the same compare-exchange steps for every voxel, applied
to whole rows at once.  Larger footprints use Wirth's selection per voxel.

Thread safety: numba's default ``workqueue`` threading layer aborts the process when two
Python threads launch parallel kernels at the same time.  Unless a thread-safe layer
(``omp`` or ``tbb``) is in use, kernel launches are serialised by
:data:`parallel_launch_lock`; each launch already uses every core, so little is lost.
Other modules that launch ``parallel=True`` numba code should take the same lock.
"""

from __future__ import annotations

import functools
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from .._shared.boundary import CONSTANT, extend_index
from .._shared.utils import destination_problem

#: Footprints with more elements than this use per-voxel selection instead of a
#: comparator schedule (the schedule's cost grows as count**2).
SCHEDULE_MAX_COUNT = 64

#: scipy's ``correlate`` ignores weights whose magnitude is at most DBL_EPSILON.
_DBL_EPSILON = float(np.finfo(np.float64).eps)

#: Serialises parallel launches when the threading layer is not thread-safe.
parallel_launch_lock = threading.Lock()
_THREADSAFE_LAYERS = ("omp", "tbb")
_layer_is_threadsafe = False

_extend = numba.njit(cache=True)(extend_index)


def _launch(kernel, *args):
    """Run a parallel kernel, serialised unless the active threading layer is thread-safe."""
    global _layer_is_threadsafe
    if _layer_is_threadsafe:
        return kernel(*args)
    with parallel_launch_lock:
        result = kernel(*args)
        try:
            _layer_is_threadsafe = numba.threading_layer() in _THREADSAFE_LAYERS
        except ValueError:  # no parallel region has run yet
            pass
        return result


def _partition(total, per_thread=8):
    """Split ``total`` work items into blocks, several per thread for load balance.

    Returns ``(block_size, n_blocks)``.  The split only decides which thread computes
    which voxels, never how a voxel is computed.
    """
    if total <= 0:
        return 1, 0
    n_blocks = min(total, max(1, per_thread * numba.get_num_threads()))
    block = -(-total // n_blocks)
    return block, -(-total // block)


@intrinsic
def _take_block(typingctx, counter):
    """Atomically increment ``counter[0]`` (an int64 array) and return its old value."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        one = ir.Constant(ir.IntType(64), 1)
        return builder.atomic_rmw("add", ary.data, one, "monotonic")

    return types.int64(counter), codegen


def _work_queue(total, per_thread=8):
    """Blocks of work handed out on demand: ``(block_size, n_blocks, n_workers, counter)``.

    The kernels that take these run one ``prange`` iteration per worker thread; each
    worker takes the next block from ``counter`` (an atomic increment) until none are
    left.  numba's own schedules (``omp``, ``workqueue``) give every thread an equal
    share up front, so when another process slows one core the whole launch waits for
    that core's share; taking blocks on demand lets the other threads finish it.  Which
    thread computes a block never changes how a voxel is computed.
    """
    block, n_blocks = _partition(total, per_thread)
    n_workers = max(1, min(n_blocks, numba.get_num_threads()))
    return block, n_blocks, n_workers, np.zeros(1, dtype=np.int64)


# --------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _fill_extended(ext, line, before, mode, cval):
    """Copy ``line`` into ``ext[before:before + n]`` and extend it on both sides."""
    n = line.shape[0]
    m = ext.shape[0]
    for p in range(before):
        k = _extend(p - before, n, mode)
        ext[p] = line[k] if k >= 0 else cval
    ext[before:before + n] = line
    for p in range(before + n, m):
        k = _extend(p - before, n, mode)
        ext[p] = line[k] if k >= 0 else cval


@numba.njit(cache=True)
def _fill_window_rows(rows, img, z, y, kz, ky, cz, cy, cx, used, mode, cval):
    """Fill ``rows[iz * ky + iy]`` with image row ``(z + iz - cz, y + iy - cy)``,
    extended along x by ``cx`` before (and the rest of the row length after)."""
    nz, ny, _ = img.shape
    for iz in range(kz):
        zz = _extend(z + iz - cz, nz, mode)
        for iy in range(ky):
            r = iz * ky + iy
            if not used[r]:
                continue
            yy = _extend(y + iy - cy, ny, mode)
            if zz < 0 or yy < 0:
                rows[r, :] = cval
            else:
                _fill_extended(rows[r], img[zz, yy], cx, mode, cval)


@numba.njit(cache=True)
def _strided_row(src, cval_row, o, i, n, mode, x0, x1):
    """Row ``(o, i)`` of a (outer, n, inner) array, extended along ``n``; a row of
    ``cval`` outside the axis in constant mode."""
    k = _extend(i, n, mode)
    if k < 0:
        return cval_row[0, 0, x0:x1]
    return src[o, k, x0:x1]


# --------------------------------------------------------------------------------------
# correlate1d
# --------------------------------------------------------------------------------------
# Per voxel, with c = K // 2 and v[k] the sample under tap k, exactly as scipy sums:
#   symmetric (odd K, w[c-j] == w[c+j]):      v[c]*w[c], then += (v[c-j] + v[c+j])*w[c-j]
#   antisymmetric (odd K, w[c-j] == -w[c+j]): v[c]*w[c], then += (v[c-j] - v[c+j])*w[c-j]
#   otherwise:                                v[K-1]*w[K-1], then += v[k]*w[k], k = 0..K-2
# with j running from c down to 1.  Both layouts below evaluate exactly this.


@numba.njit(cache=True)
def _correlate_line(ext, out, w, symmetry):
    # shifted views instead of ext[x + k]: a provably non-negative index lets LLVM drop
    # numba's negative-index wraparound and vectorise
    n = out.shape[0]
    taps = w.shape[0]
    c = taps // 2
    if symmetry != 0:
        centre = ext[c:c + n]
        wc = w[c]
        for x in range(n):
            out[x] = centre[x] * wc
        for j in range(c, 0, -1):
            left = ext[c - j:c - j + n]
            right = ext[c + j:c + j + n]
            wj = w[c - j]
            if symmetry > 0:
                for x in range(n):
                    out[x] += (left[x] + right[x]) * wj
            else:
                for x in range(n):
                    out[x] += (left[x] - right[x]) * wj
    else:
        last = ext[taps - 1:taps - 1 + n]
        wl = w[taps - 1]
        for x in range(n):
            out[x] = last[x] * wl
        for k in range(taps - 1):
            src = ext[k:k + n]
            wk = w[k]
            for x in range(n):
                out[x] += src[x] * wk


@numba.njit(parallel=True, cache=True)
def _correlate1d_contiguous(src, out, w, symmetry, mode, cval, block, n_blocks, n_workers, counter):
    outer, n = src.shape
    taps = w.shape[0]
    for worker in prange(n_workers):
        ext = np.empty(n + taps - 1, dtype=src.dtype)
        while True:
            b = _take_block(counter)
            if b >= n_blocks:
                break
            for o in range(b * block, min(outer, (b + 1) * block)):
                _fill_extended(ext, src[o], taps // 2, mode, cval)
                _correlate_line(ext, out[o], w, symmetry)


@numba.njit(parallel=True, cache=True)
def _correlate1d_strided(src, out, cval_row, w, symmetry, mode, xblock, n_xblocks, n_workers, counter):
    outer, n, inner = src.shape
    taps = w.shape[0]
    c = taps // 2
    for worker in prange(n_workers):
        while True:
            item = _take_block(counter)
            if item >= outer * n_xblocks:
                break
            o = item // n_xblocks
            x0 = (item - o * n_xblocks) * xblock
            x1 = min(inner, x0 + xblock)
            m = x1 - x0
            for i in range(n):
                orow = out[o, i, x0:x1]
                if symmetry != 0:
                    a = _strided_row(src, cval_row, o, i, n, mode, x0, x1)
                    wc = w[c]
                    for x in range(m):
                        orow[x] = a[x] * wc
                    for j in range(c, 0, -1):
                        a = _strided_row(src, cval_row, o, i - j, n, mode, x0, x1)
                        bb = _strided_row(src, cval_row, o, i + j, n, mode, x0, x1)
                        wj = w[c - j]
                        if symmetry > 0:
                            for x in range(m):
                                orow[x] += (a[x] + bb[x]) * wj
                        else:
                            for x in range(m):
                                orow[x] += (a[x] - bb[x]) * wj
                else:
                    a = _strided_row(src, cval_row, o, i + taps - 1 - c, n, mode, x0, x1)
                    wl = w[taps - 1]
                    for x in range(m):
                        orow[x] = a[x] * wl
                    for k in range(taps - 1):
                        a = _strided_row(src, cval_row, o, i + k - c, n, mode, x0, x1)
                        wk = w[k]
                        for x in range(m):
                            orow[x] += a[x] * wk


def _symmetry(weights):
    """scipy's test: +1 symmetric, -1 antisymmetric (odd lengths only), else 0."""
    taps = weights.shape[0]
    if taps % 2 == 0 or taps == 1:
        return 1 if taps == 1 else 0
    c = taps // 2
    left = weights[c - 1::-1]
    right = weights[c + 1:]
    if np.all(np.abs(right - left) <= _DBL_EPSILON):
        return 1
    if np.all(np.abs(right + left) <= _DBL_EPSILON):
        return -1
    return 0


def _axis_view(image, axis):
    """View a C-contiguous array as (outer, n, inner) around ``axis``."""
    ndim = image.ndim
    if not -ndim <= axis < ndim:
        raise ValueError(f"`axis` must lie in [{-ndim}, {ndim}) for a {ndim}-D image, "
                         f"got {axis!r}")
    axis %= ndim
    shape = image.shape
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return image.reshape(outer, shape[axis], inner)


def _strided_blocks(outer, inner):
    """Column block size along the contiguous axis for the strided kernels."""
    threads = numba.get_num_threads()
    # enough items to balance the threads; long blocks stream well (each row of a block
    # is a separate memory stream), and 2048 columns x taps rows still sit in L2
    want = max(1, -(-4 * threads // max(outer, 1)))
    xblock = min(2048, max(64, -(-inner // want)))
    xblock = min(xblock, inner)
    return xblock, -(-inner // xblock)


def _check_image(image):
    if not isinstance(image, np.ndarray) or image.dtype not in (np.float32, np.float64):
        raise TypeError("`image` must be a float32 or float64 NumPy array, got "
                        f"{type(image).__name__} of dtype {getattr(image, 'dtype', None)}")
    if image.ndim < 1:
        raise ValueError(f"`image` must have at least one dimension, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _destination(image, out):
    """Where a kernel writes its result: ``out`` once checked
    (:func:`medimg_fast._shared.utils.destination_problem`), or a new array like
    ``image``."""
    if out is None:
        return np.empty_like(image)
    problem = destination_problem(out, image, image.dtype)
    if problem:
        raise ValueError(f"`out` must be {problem}")
    return out


def correlate1d(image, weights, axis, mode_code, cval, out=None):
    """1-D correlation along ``axis`` (``scipy.ndimage.correlate1d``, origin 0).

    Parameters
    ----------
    image : ndarray
        float32 or float64 array of any dimensionality.
    weights : array_like
        1-D weights; the centre tap is ``len(weights) // 2``.
    axis : int
        Axis to correlate along.
    mode_code : int
        Boundary mode code from :mod:`medimg_fast._shared.boundary`.
    cval : float
        Value outside the array in constant mode.
    out : ndarray, optional
        Array to write the result into (see :func:`_destination`); default a new one.

    Returns
    -------
    ndarray
        ``out``, or a new array of the image's dtype and shape.
    """
    image = _check_image(image)
    w64 = np.asarray(weights, dtype=np.float64)
    if w64.ndim != 1 or w64.size == 0:
        raise ValueError(f"`weights` must be a non-empty 1-D array, got shape {w64.shape}")
    view = _axis_view(image, axis)
    out = _destination(image, out)
    if image.size == 0:
        return out
    outer, n, inner = view.shape
    dtype = image.dtype.type
    w = w64.astype(image.dtype)
    symmetry = _symmetry(w64)
    if inner == 1:
        block, n_blocks, n_workers, counter = _work_queue(outer)
        _launch(_correlate1d_contiguous, view.reshape(outer, n), out.reshape(outer, n), w,
                symmetry, int(mode_code), dtype(cval), block, n_blocks, n_workers, counter)
    else:
        xblock, n_xblocks = _strided_blocks(outer, inner)
        cval_row = np.full((1, 1, inner), cval, dtype=image.dtype)
        _, _, n_workers, counter = _work_queue(outer * n_xblocks)
        _launch(_correlate1d_strided, view, out.reshape(view.shape), cval_row, w, symmetry,
                int(mode_code), xblock, n_xblocks, n_workers, counter)
    return out


# --------------------------------------------------------------------------------------
# correlate_separable: 1-D passes along ascending axes, fused into one sweep
# --------------------------------------------------------------------------------------
# A run of passes along ascending axes of the (z, y, x) view runs as one sweep through
# memory.  A work item is one z-plane (or a block of its rows when there are too few
# planes to share out): the z-pass of the rows the item needs goes into a per-thread
# plane buffer (L2), then bands of output rows get the y-pass and the x-pass in L1-sized
# buffers and go straight to the output.  The volume is read about once (the 2r+1 input
# planes of neighbouring z stay in L3) and written once, instead of once per pass.
# Where the 2r+1 input planes do not fit in L2 together, items are blocks of rows taken
# z-fastest (see :func:`_l2_yblock`), so that the z-pass reads its window from L2.
# Where even short blocks of whole rows do not fit (large planes, long kernels), the
# tiled sweep (:func:`_separable_sweep_tiled`, chosen by :func:`_l2_tiles`) cuts the
# rows into x tiles and keeps the window as a ring of packed input rows in L2; a work
# item runs the y blocks of one tile in order, so each block takes the z-pass of its y
# halo from the block before (the carry) instead of computing it again.
#
# Every pass works on "bands": runs of whole rows, flattened, so that each tap's input
# is one contiguous slice.  An array view costs numba about 50 cycles here (reference
# counting included), as much as the arithmetic of one tap on a 256-voxel row, so views
# are made once per tap and band (a few thousand voxels), never per row; rows are copied
# and extended by index (:func:`_copy_run`).  The band functions (:func:`_correlate_band`
# and the tap groups it calls) are compiled without numba's reference counting
# (``_nrt=False``): they only take views of arrays their caller holds, and the counts'
# atomic updates made a 17-tap call cost about 280 ns before its first voxel, 60 ns
# without (a 256-voxel row: 350 against 135 ns; same code, same sums).  The x-pass runs
# over the flattened band of x-extended rows; the sums that straddle two rows are thrown
# away.
#
# Each pass evaluates exactly correlate1d's sums on its input rounded to the working
# dtype, and extends its own input (the previous pass's result) at the faces, as scipy
# does; so the sweep is bit-identical to the chain of correlate1d calls, and every voxel
# comes from the same expression wherever it sits.

#: Voxels per band: the band's accumulator (16 KB in float32) stays in L1.
_BAND_VOXELS = 4096

_SWEEP_BLOCKS_PER_THREAD = 16


@numba.njit(cache=True, _nrt=False)
def _pair_group(dst, flat, cval_flat, offsets, w, j, count, symmetry, start):
    """Add the pairs ``j, j - 1, ..., j - count + 1`` (``1 <= count <= 4``) of a symmetric
    or antisymmetric kernel to ``dst``, in that order; ``start``: ``dst`` starts from the
    centre tap instead of its own value.

    Up to four taps per sweep over ``dst`` keep the running sum in a register: one load
    and store of ``dst`` per four pairs instead of per pair.  The sum of each voxel is
    the same expression, evaluated in the same order, as one pair at a time."""
    n = dst.shape[0]
    c = w.shape[0] // 2
    # unused slots repeat pair j (any valid view; their loops never read them)
    j1 = j - 1 if count > 1 else j
    j2 = j - 2 if count > 2 else j
    j3 = j - 3 if count > 3 else j
    a0 = _tap_input(flat, cval_flat, offsets[c - j], n)
    b0 = _tap_input(flat, cval_flat, offsets[c + j], n)
    a1 = _tap_input(flat, cval_flat, offsets[c - j1], n)
    b1 = _tap_input(flat, cval_flat, offsets[c + j1], n)
    a2 = _tap_input(flat, cval_flat, offsets[c - j2], n)
    b2 = _tap_input(flat, cval_flat, offsets[c + j2], n)
    a3 = _tap_input(flat, cval_flat, offsets[c - j3], n)
    b3 = _tap_input(flat, cval_flat, offsets[c + j3], n)
    w0 = w[c - j]
    w1 = w[c - j1]
    w2 = w[c - j2]
    w3 = w[c - j3]
    if start:
        centre = _tap_input(flat, cval_flat, offsets[c], n)
        wc = w[c]
        if symmetry > 0:
            if count == 4:
                for x in range(n):
                    s = centre[x] * wc
                    s += (a0[x] + b0[x]) * w0
                    s += (a1[x] + b1[x]) * w1
                    s += (a2[x] + b2[x]) * w2
                    s += (a3[x] + b3[x]) * w3
                    dst[x] = s
            elif count == 3:
                for x in range(n):
                    s = centre[x] * wc
                    s += (a0[x] + b0[x]) * w0
                    s += (a1[x] + b1[x]) * w1
                    s += (a2[x] + b2[x]) * w2
                    dst[x] = s
            elif count == 2:
                for x in range(n):
                    s = centre[x] * wc
                    s += (a0[x] + b0[x]) * w0
                    s += (a1[x] + b1[x]) * w1
                    dst[x] = s
            else:
                for x in range(n):
                    s = centre[x] * wc
                    s += (a0[x] + b0[x]) * w0
                    dst[x] = s
        else:
            if count == 4:
                for x in range(n):
                    s = centre[x] * wc
                    s += (a0[x] - b0[x]) * w0
                    s += (a1[x] - b1[x]) * w1
                    s += (a2[x] - b2[x]) * w2
                    s += (a3[x] - b3[x]) * w3
                    dst[x] = s
            elif count == 3:
                for x in range(n):
                    s = centre[x] * wc
                    s += (a0[x] - b0[x]) * w0
                    s += (a1[x] - b1[x]) * w1
                    s += (a2[x] - b2[x]) * w2
                    dst[x] = s
            elif count == 2:
                for x in range(n):
                    s = centre[x] * wc
                    s += (a0[x] - b0[x]) * w0
                    s += (a1[x] - b1[x]) * w1
                    dst[x] = s
            else:
                for x in range(n):
                    s = centre[x] * wc
                    s += (a0[x] - b0[x]) * w0
                    dst[x] = s
    elif symmetry > 0:
        if count == 4:
            for x in range(n):
                s = dst[x]
                s += (a0[x] + b0[x]) * w0
                s += (a1[x] + b1[x]) * w1
                s += (a2[x] + b2[x]) * w2
                s += (a3[x] + b3[x]) * w3
                dst[x] = s
        elif count == 3:
            for x in range(n):
                s = dst[x]
                s += (a0[x] + b0[x]) * w0
                s += (a1[x] + b1[x]) * w1
                s += (a2[x] + b2[x]) * w2
                dst[x] = s
        elif count == 2:
            for x in range(n):
                s = dst[x]
                s += (a0[x] + b0[x]) * w0
                s += (a1[x] + b1[x]) * w1
                dst[x] = s
        else:
            for x in range(n):
                s = dst[x]
                s += (a0[x] + b0[x]) * w0
                dst[x] = s
    else:
        if count == 4:
            for x in range(n):
                s = dst[x]
                s += (a0[x] - b0[x]) * w0
                s += (a1[x] - b1[x]) * w1
                s += (a2[x] - b2[x]) * w2
                s += (a3[x] - b3[x]) * w3
                dst[x] = s
        elif count == 3:
            for x in range(n):
                s = dst[x]
                s += (a0[x] - b0[x]) * w0
                s += (a1[x] - b1[x]) * w1
                s += (a2[x] - b2[x]) * w2
                dst[x] = s
        elif count == 2:
            for x in range(n):
                s = dst[x]
                s += (a0[x] - b0[x]) * w0
                s += (a1[x] - b1[x]) * w1
                dst[x] = s
        else:
            for x in range(n):
                s = dst[x]
                s += (a0[x] - b0[x]) * w0
                dst[x] = s



@numba.njit(cache=True, _nrt=False)
def _tap_group(dst, flat, cval_flat, offsets, w, k, count, start):
    """Add the taps ``k .. k + count - 1`` (``1 <= count <= 4``) of a general kernel to
    ``dst``, in that order; ``start``: ``dst`` starts from the last tap.  Grouped for the
    reason given in :func:`_pair_group`."""
    n = dst.shape[0]
    k1 = k + 1 if count > 1 else k
    k2 = k + 2 if count > 2 else k
    k3 = k + 3 if count > 3 else k
    a0 = _tap_input(flat, cval_flat, offsets[k], n)
    a1 = _tap_input(flat, cval_flat, offsets[k1], n)
    a2 = _tap_input(flat, cval_flat, offsets[k2], n)
    a3 = _tap_input(flat, cval_flat, offsets[k3], n)
    w0 = w[k]
    w1 = w[k1]
    w2 = w[k2]
    w3 = w[k3]
    if start:
        last = _tap_input(flat, cval_flat, offsets[w.shape[0] - 1], n)
        wl = w[w.shape[0] - 1]
        if count == 4:
            for x in range(n):
                s = last[x] * wl
                s += a0[x] * w0
                s += a1[x] * w1
                s += a2[x] * w2
                s += a3[x] * w3
                dst[x] = s
        elif count == 3:
            for x in range(n):
                s = last[x] * wl
                s += a0[x] * w0
                s += a1[x] * w1
                s += a2[x] * w2
                dst[x] = s
        elif count == 2:
            for x in range(n):
                s = last[x] * wl
                s += a0[x] * w0
                s += a1[x] * w1
                dst[x] = s
        else:
            for x in range(n):
                s = last[x] * wl
                s += a0[x] * w0
                dst[x] = s
    elif count == 4:
        for x in range(n):
            s = dst[x]
            s += a0[x] * w0
            s += a1[x] * w1
            s += a2[x] * w2
            s += a3[x] * w3
            dst[x] = s
    elif count == 3:
        for x in range(n):
            s = dst[x]
            s += a0[x] * w0
            s += a1[x] * w1
            s += a2[x] * w2
            dst[x] = s
    elif count == 2:
        for x in range(n):
            s = dst[x]
            s += a0[x] * w0
            s += a1[x] * w1
            dst[x] = s
    else:
        for x in range(n):
            dst[x] += a0[x] * w0


@numba.njit(cache=True, _nrt=False)
def _pair_group_two(d0, d1, flat, cval_flat, offsets, w, j, count):
    """:func:`_pair_group` for two outputs at once, symmetric kernels only: the pairs
    ``j .. j - count + 1`` of output 0 read the inputs at ``offsets[0 .. k - 1]``, those
    of output 1 the inputs one further on (``offsets[1 .. k]``, ``k`` taps): the z-pass of
    two consecutive planes, whose windows share all inputs but one.

    The ``count`` pairs of both outputs read ``2 * count + 2`` inputs, where one output
    at a time reads ``2 * count`` for half the sums: the z-pass reads its window from L2,
    and loads, not arithmetic, bound it.  Each output's sum is the expression of
    :func:`_pair_group`, in the same order."""
    n = d0.shape[0]
    c = w.shape[0] // 2
    # a_i = input c - j + i, b_i = input c + j + 1 - i; output 0 adds (a_i + b_{i+1}) *
    # w[c - j + i], output 1 (a_{i+1} + b_i) * w[c - j + i], i = 0 .. count - 1; unused
    # slots repeat a valid input (their loops never read them)
    i2 = 2 if count > 1 else 1
    i3 = 3 if count > 2 else 1
    i4 = 4 if count > 3 else 1
    a0 = _tap_input(flat, cval_flat, offsets[c - j], n)
    a1 = _tap_input(flat, cval_flat, offsets[c - j + 1], n)
    a2 = _tap_input(flat, cval_flat, offsets[c - j + i2], n)
    a3 = _tap_input(flat, cval_flat, offsets[c - j + i3], n)
    a4 = _tap_input(flat, cval_flat, offsets[c - j + i4], n)
    b0 = _tap_input(flat, cval_flat, offsets[c + j + 1], n)
    b1 = _tap_input(flat, cval_flat, offsets[c + j], n)
    b2 = _tap_input(flat, cval_flat, offsets[c + j + 1 - i2], n)
    b3 = _tap_input(flat, cval_flat, offsets[c + j + 1 - i3], n)
    b4 = _tap_input(flat, cval_flat, offsets[c + j + 1 - i4], n)
    w0 = w[c - j]
    w1 = w[c - j + i2 - 1]
    w2 = w[c - j + i3 - 1]
    w3 = w[c - j + i4 - 1]
    if count == 4:
        for x in range(n):
            s = d0[x]
            s += (a0[x] + b1[x]) * w0
            s += (a1[x] + b2[x]) * w1
            s += (a2[x] + b3[x]) * w2
            s += (a3[x] + b4[x]) * w3
            t = d1[x]
            t += (a1[x] + b0[x]) * w0
            t += (a2[x] + b1[x]) * w1
            t += (a3[x] + b2[x]) * w2
            t += (a4[x] + b3[x]) * w3
            d0[x] = s
            d1[x] = t
    elif count == 3:
        for x in range(n):
            s = d0[x]
            s += (a0[x] + b1[x]) * w0
            s += (a1[x] + b2[x]) * w1
            s += (a2[x] + b3[x]) * w2
            t = d1[x]
            t += (a1[x] + b0[x]) * w0
            t += (a2[x] + b1[x]) * w1
            t += (a3[x] + b2[x]) * w2
            d0[x] = s
            d1[x] = t
    elif count == 2:
        for x in range(n):
            s = d0[x]
            s += (a0[x] + b1[x]) * w0
            s += (a1[x] + b2[x]) * w1
            t = d1[x]
            t += (a1[x] + b0[x]) * w0
            t += (a2[x] + b1[x]) * w1
            d0[x] = s
            d1[x] = t
    else:
        for x in range(n):
            s = d0[x]
            s += (a0[x] + b1[x]) * w0
            t = d1[x]
            t += (a1[x] + b0[x]) * w0
            d0[x] = s
            d1[x] = t


@numba.njit(cache=True, _nrt=False)
def _correlate_band_two(d0, d1, flat, cval_flat, offsets, w):
    """:func:`_correlate_band` of a symmetric kernel for two outputs: ``d0`` from the
    inputs at ``offsets[0 .. k - 1]``, ``d1`` from those at ``offsets[1 .. k]`` (see
    :func:`_pair_group_two`); each the same sums, in the same order, as one call each."""
    n = d0.shape[0]
    c = w.shape[0] // 2
    m0 = _tap_input(flat, cval_flat, offsets[c], n)
    m1 = _tap_input(flat, cval_flat, offsets[c + 1], n)
    wc = w[c]
    for x in range(n):
        d0[x] = m0[x] * wc
        d1[x] = m1[x] * wc
    j = c
    while j >= 1:
        count = min(4, j)
        _pair_group_two(d0, d1, flat, cval_flat, offsets, w, j, count)
        j -= count


@numba.njit(cache=True, inline="always")
def _tap_input(flat, cval_flat, offset, n):
    """``flat[offset:offset + n]``, or ``n`` values of ``cval`` where ``offset`` is -1."""
    if offset < 0:
        return cval_flat[:n]
    return flat[offset:offset + n]


@numba.njit(cache=True, _nrt=False)
def _correlate_band(dst, flat, cval_flat, offsets, w, symmetry):
    """``dst = sum_k w[k] * input_k`` with input ``k`` at ``offsets[k]`` in ``flat``,
    summed in correlate1d's order (see the comment above :func:`_correlate_line`)."""
    n = dst.shape[0]
    taps = w.shape[0]
    c = taps // 2
    if symmetry != 0:
        if c == 0:
            centre = _tap_input(flat, cval_flat, offsets[0], n)
            wc = w[0]
            for x in range(n):
                dst[x] = centre[x] * wc
            return
        j = c
        while j >= 1:
            count = min(4, j)
            _pair_group(dst, flat, cval_flat, offsets, w, j, count, symmetry, j == c)
            j -= count
    else:
        # one tap counts as symmetric, so taps >= 2 here
        k = 0
        while k < taps - 1:
            count = min(4, taps - 1 - k)
            _tap_group(dst, flat, cval_flat, offsets, w, k, count, k == 0)
            k += count


@numba.njit(cache=True)
def _extension_map(before, n, after, mode):
    """Source index of each extended position outside a line of ``n``: the ``before``
    positions ahead of it, then the ``after`` behind it (-1 for cval)."""
    sources = np.empty(before + after, dtype=np.int64)
    for p in range(before):
        sources[p] = _extend(p - before, n, mode)
    for p in range(after):
        sources[before + p] = _extend(n + p, n, mode)
    return sources


@numba.njit(cache=True)
def _extend_by_map(ext, e0, before, n, sources, cval):
    """Extend the line held in ``ext[e0 + before:e0 + before + n]`` over the rest of its
    extended row (``ext[e0:e0 + before + n + after]``) from the source indices of
    :func:`_extension_map`, computed once per launch: the x-pass extends every row the
    same way, and the modulo arithmetic of the reflect, mirror and wrap rules, per row
    and position, would cost about as much as copying the row.  Indices, not a view of
    the row (see :func:`_copy_run`)."""
    for p in range(before):
        k = sources[p]
        ext[e0 + p] = ext[e0 + before + k] if k >= 0 else cval
    for p in range(sources.shape[0] - before):
        k = sources[before + p]
        ext[e0 + before + n + p] = ext[e0 + before + k] if k >= 0 else cval


@numba.njit(cache=True)
def _z_pass_rows(dst, src_flat, cval_flat, offsets, z, k0, k1, nz, ny, nx, wz, pz, cz, sym_z,
                 mode):
    """z-pass of image rows ``k0 .. k1 - 1`` of plane ``z`` into ``dst`` (flattened)."""
    for t in range(wz.shape[0]):
        zz = _extend(z + pz[t] - cz, nz, mode)
        offsets[t] = (zz * ny + k0) * nx if zz >= 0 else -1
    _correlate_band(dst, src_flat, cval_flat, offsets, wz, sym_z)


@numba.njit(parallel=True, cache=True)
def _separable_sweep(src, out, cval_flat, wz, pz, kz, sym_z, wy, py, ky, sym_y, wx, px, kx,
                     sym_x, mode, cval, yblock, band, z_inner, block, n_blocks, n_workers,
                     counter):
    # per axis: the kernel's taps w (zero taps dropped, see _compact_taps), their
    # positions p in the full kernel of k taps (centre k // 2); k == 0: no pass
    nz, ny, nx = src.shape
    has_z = kz > 0
    has_y = ky > 0
    has_x = kx > 0
    cz = kz // 2
    cy = ky // 2
    ry = ky - 1 - cy if has_y else 0  # rows the y-pass reads after its own
    cx = kx // 2
    m = nx + kx - 1 if has_x else nx  # length of an x-extended row
    n_yblocks = -(-ny // yblock)
    whole = n_yblocks == 1
    # with a z-pass, the plane buffer holds the y positions lo .. lo + count - 1: all ny
    # rows of the plane ("direct", the y-pass extends it), or a y block with its y halo
    # already extended ("local")
    local = has_z and not whole
    n_items = nz * n_yblocks
    src_flat = src.reshape(nz * ny * nx)
    out_flat = out.reshape(nz * ny * nx)
    n_taps = max(wz.shape[0], max(wy.shape[0], wx.shape[0]))
    for worker in prange(n_workers):
        plane = np.empty((yblock + cy + ry if local else ny) * nx if has_z else 0,
                         dtype=src.dtype)
        ybuf = np.empty(band * nx, dtype=src.dtype)
        ext = np.empty(band * m, dtype=src.dtype)
        xbuf = np.empty(band * m, dtype=src.dtype)
        offsets = np.empty(n_taps, dtype=np.int64)
        x_sources = _extension_map(cx, nx, m - nx - cx, mode)
        while True:
            b = _take_block(counter)
            if b >= n_blocks:
                break
            for item in range(b * block, min(n_items, (b + 1) * block)):
                if z_inner:
                    yb = item // nz
                    z = item - yb * nz
                else:
                    z = item // n_yblocks
                    yb = item - z * n_yblocks
                y0 = yb * yblock
                y1 = min(ny, y0 + yblock)
                lo = y0 - cy if local else 0
                count = y1 - y0 + cy + ry if local else ny
                if has_z:
                    # rows inside the image, in bands ...
                    ja = max(0, -lo)
                    jb = min(count, ny - lo)
                    for j0 in range(ja, jb, band):
                        j1 = min(jb, j0 + band)
                        _z_pass_rows(plane[j0 * nx:j1 * nx], src_flat, cval_flat, offsets, z,
                                     lo + j0, lo + j1, nz, ny, nx, wz, pz, cz, sym_z, mode)
                    # ... then the local halo rows outside it, extended
                    for j in range(count):
                        if ja <= j < jb:
                            continue
                        k = _extend(lo + j, ny, mode)
                        row = plane[j * nx:(j + 1) * nx]
                        if k < 0:
                            row[:] = cval
                        elif ja <= k - lo < jb:
                            row[:] = plane[(k - lo) * nx:(k - lo + 1) * nx]
                        else:
                            _z_pass_rows(row, src_flat, cval_flat, offsets, z, k, k + 1, nz, ny,
                                         nx, wz, pz, cz, sym_z, mode)
                    rows_flat = plane
                    base = 0
                else:
                    rows_flat = src_flat
                    base = z * ny * nx
                # bands, cut where the y window of a row starts or stops leaving a
                # direct plane: the rows near its faces are extended row by row, the
                # others go in whole bands (a band that held both would go row by row)
                f0 = y0
                f1 = y1
                if not local:
                    f0 = min(max(y0, cy), y1)
                    f1 = max(min(y1, ny - ry), f0)
                ya = y0
                while ya < y1:
                    yb = min(f0 if ya < f0 else f1 if ya < f1 else y1, ya + band)
                    nrows = yb - ya
                    if has_y:
                        if has_x:
                            ydst = ybuf[:nrows * nx]
                        else:
                            ydst = out_flat[(z * ny + ya) * nx:(z * ny + yb) * nx]
                        if ya - cy - lo >= 0 and yb - 1 + ry - lo < count:
                            for t in range(wy.shape[0]):
                                offsets[t] = base + (ya + py[t] - cy - lo) * nx
                            _correlate_band(ydst, rows_flat, cval_flat, offsets, wy, sym_y)
                        else:
                            # near a face of a direct plane: extend row by row
                            for y in range(ya, yb):
                                for t in range(wy.shape[0]):
                                    k = _extend(y + py[t] - cy, ny, mode)
                                    offsets[t] = base + (k - lo) * nx if k >= 0 else -1
                                _correlate_band(ydst[(y - ya) * nx:(y - ya + 1) * nx], rows_flat,
                                                cval_flat, offsets, wy, sym_y)
                        xsrc = ybuf
                        xbase = 0
                    else:
                        xsrc = rows_flat
                        xbase = base + (ya - lo) * nx
                    if has_x:
                        for r in range(nrows):
                            _copy_run(ext, r * m + cx, xsrc, xbase + r * nx, nx)
                            _extend_by_map(ext, r * m, cx, nx, x_sources, cval)
                        for t in range(wx.shape[0]):
                            offsets[t] = px[t]
                        length = (nrows - 1) * m + nx
                        _correlate_band(xbuf[:length], ext, cval_flat, offsets, wx, sym_x)
                        for r in range(nrows):
                            _copy_run(out_flat, (z * ny + ya + r) * nx, xbuf, r * m, nx)
                    elif not has_y:  # a z-pass alone
                        o = (z * ny + ya) * nx
                        out_flat[o:o + nrows * nx] = xsrc[xbase:xbase + nrows * nx]
                    ya = yb


@numba.njit(cache=True)
def _copy_run(dst, d0, src, s0, n):
    """``dst[d0:d0 + n] = src[s0:s0 + n]`` (``d0, s0 >= 0``) without making views (see the
    comment above).  Unsigned indices: numba's wraparound test of a signed index that
    LLVM cannot prove non-negative keeps the loop scalar, 5x slower."""
    d = np.uint64(d0)
    s = np.uint64(s0)
    for i in range(np.uint64(n)):
        dst[d + i] = src[s + i]


@numba.njit(cache=True)
def _z_pass_segment(dst, src_flat, cval_flat, offsets, z, y, x, nz, ny, nx, wz, pz, cz, sym_z,
                    mode):
    """z-pass of the ``dst.shape[0]`` voxels from ``(z, y, x)`` along a row into ``dst``."""
    for t in range(wz.shape[0]):
        zz = _extend(z + pz[t] - cz, nz, mode)
        offsets[t] = (zz * ny + y) * nx + x if zz >= 0 else -1
    _correlate_band(dst, src_flat, cval_flat, offsets, wz, sym_z)


@numba.njit(cache=True)
def _fill_tile_rows(ext, m, nrows, src, s0, lw, lpad, inside, emap, m0, cval):
    """x-extended rows ``ext[r * m:(r + 1) * m]`` (``r < nrows``) of a tile from its local
    rows at ``src[s0 + r * lw:]``: the local columns ``0 .. inside - 1`` go to ``lpad ..``,
    the other positions come from ``emap[m0 + position]`` (a local column, or -1 for
    ``cval``).  Position by position over the rows: the map and its test once per
    position, not once per position and row (a third of the x-pass's time at sigma 3)."""
    for r in range(nrows):
        _copy_run(ext, r * m + lpad, src, s0 + r * lw, inside)
    for p in range(lpad):
        _extend_tile_column(ext, m, nrows, src, s0, lw, p, emap[m0 + p], cval)
    for p in range(lpad + inside, m):
        _extend_tile_column(ext, m, nrows, src, s0, lw, p, emap[m0 + p], cval)


@numba.njit(cache=True, inline="always")
def _extend_tile_column(ext, m, nrows, src, s0, lw, p, k, cval):
    """Position ``p`` of the ``nrows`` x-extended rows of :func:`_fill_tile_rows`: local
    column ``k`` of each row, or ``cval`` where ``k`` is -1."""
    if k < 0:
        for r in range(nrows):
            ext[r * m + p] = cval
    else:
        for r in range(nrows):
            ext[r * m + p] = src[s0 + r * lw + k]


@numba.njit(parallel=True, cache=True)
def _separable_sweep_tiled(src, out, cval_flat, wz, pz, kz, sym_z, wy, py, ky, sym_y, wx, px,
                           kx, sym_x, mode, cval, yblock, band, zchunk, tiles, runs, emap,
                           block, n_blocks, n_workers, counter):
    # work items of (x tile, z chunk): the y blocks of the tile in order, each for the
    # planes of the chunk in order (z fastest); see _x_tiles for ``tiles`` (x0, x1, local
    # width, first run, end of runs, lpad, inside, first emap position), ``runs`` (image
    # column, length, local column) and ``emap``.  A symmetric z kernel takes the z-pass
    # of two planes at a time (:func:`_correlate_band_two`): their taps are the window of
    # ``kz + 1`` planes from ``z - cz``, which the ring holds
    nz, ny, nx = src.shape
    has_z = kz > 0
    has_y = ky > 0
    has_x = kx > 0
    cz = kz // 2
    cy = ky // 2
    ry = ky - 1 - cy if has_y else 0
    halo = cy + ry
    n_yblocks = -(-ny // yblock)
    n_xtiles = tiles.shape[0]
    n_zchunks = -(-nz // zchunk)
    n_items = n_xtiles * n_zchunks
    src_flat = src.reshape(nz * ny * nx)
    out_flat = out.reshape(nz * ny * nx)
    n_taps = max(wz.shape[0], max(wy.shape[0], wx.shape[0]))
    width = 0  # widest local row and x-extended row
    m_max = 0
    for t in range(n_xtiles):
        width = max(width, tiles[t, 2])
        m_max = max(m_max, tiles[t, 1] - tiles[t, 0] + (kx - 1 if has_x else 0))
    rows_max = min(yblock, ny) + halo
    two_at_once = has_z and sym_z > 0  # a symmetric kernel keeps all taps: pz = 0 .. kz - 1
    n_slots = wz.shape[0] + (1 if two_at_once else 0) if has_z else 0
    slot_size = min(rows_max, ny) * width
    for worker in prange(n_workers):
        # the z window: the rows a y block computes, of up to n_slots input planes
        ring = np.empty(n_slots * slot_size, dtype=src.dtype)
        tags = np.full(n_slots, -1, dtype=np.int64)
        planes = np.empty(n_slots, dtype=np.int64)
        bases = np.empty(n_slots, dtype=np.int64)  # where each tap's plane starts in the ring
        plane_a = np.empty(rows_max * width, dtype=src.dtype)  # plane z
        plane_b = np.empty(rows_max * width if two_at_once else 0, dtype=src.dtype)  # z + 1
        # the y halo of the next block: the last ``halo`` rows of the plane, per z
        carry = np.empty(min(zchunk, nz) * halo * width, dtype=src.dtype)
        ybuf = np.empty(band * width, dtype=src.dtype)
        ext = np.empty(band * m_max, dtype=src.dtype)
        xbuf = np.empty(band * m_max, dtype=src.dtype)
        offsets = np.empty(n_taps + 1, dtype=np.int64)
        while True:
            b = _take_block(counter)
            if b >= n_blocks:
                break
            for item in range(b * block, min(n_items, (b + 1) * block)):
                xt = item // n_zchunks
                z0 = (item - xt * n_zchunks) * zchunk
                z1 = min(nz, z0 + zchunk)
                x0 = tiles[xt, 0]
                x1 = tiles[xt, 1]
                lw = tiles[xt, 2]
                m = x1 - x0 + (kx - 1 if has_x else 0)
                for yb in range(n_yblocks):
                    y0 = yb * yblock
                    y1 = min(ny, y0 + yblock)
                    lo = y0 - cy
                    count = y1 - y0 + halo
                    # local rows ja .. jb - 1 are computed, rows 0 .. halo - 1 of blocks
                    # after the first come from the carry
                    ja = max(0, -lo) if yb == 0 else halo
                    jb = max(ja, min(count, ny - lo))
                    tags[:] = -1
                    z_first = z0
                    while z_first < z1:
                        two = two_at_once and z_first + 1 < z1
                        z_last = z_first + 1 if two else z_first
                        n_in = wz.shape[0] + (1 if two else 0)  # input planes of the pass
                        if yb > 0:
                            for z in range(z_first, z_last + 1):
                                _copy_run(plane_a if z == z_first else plane_b, 0, carry,
                                          (z - z0) * halo * lw, halo * lw)
                        if has_z:
                            # bring the planes of these taps into the ring, evicting
                            # planes that no tap of this pass reads
                            for t in range(n_in):
                                tap = t if two_at_once else pz[t]  # see two_at_once
                                planes[t] = _extend(z_first + tap - cz, nz, mode)
                            for t in range(n_in):
                                zz = planes[t]
                                if zz < 0:
                                    bases[t] = -1
                                    continue
                                slot = -1
                                for s in range(n_slots):
                                    if tags[s] == zz:
                                        slot = s
                                        break
                                if slot < 0:
                                    for s in range(n_slots):
                                        needed = False  # an empty slot (tag -1) is free
                                        for u in range(n_in if tags[s] >= 0 else 0):
                                            if planes[u] == tags[s]:
                                                needed = True
                                                break
                                        if not needed:
                                            slot = s
                                            break
                                    # distinct planes <= n_slots, so one is free
                                    tags[slot] = zz
                                    for j in range(ja, jb):
                                        d = slot * slot_size + (j - ja) * lw
                                        s0 = (zz * ny + lo + j) * nx
                                        for r in range(tiles[xt, 3], tiles[xt, 4]):
                                            _copy_run(ring, d + runs[r, 2], src_flat,
                                                      s0 + runs[r, 0], runs[r, 1])
                                bases[t] = slot * slot_size
                            for j0 in range(ja, jb, band):
                                j1 = min(jb, j0 + band)
                                for t in range(n_in):
                                    offsets[t] = (bases[t] + (j0 - ja) * lw if bases[t] >= 0
                                                  else -1)
                                if two:
                                    _correlate_band_two(plane_a[j0 * lw:j1 * lw],
                                                        plane_b[j0 * lw:j1 * lw], ring,
                                                        cval_flat, offsets, wz)
                                else:
                                    _correlate_band(plane_a[j0 * lw:j1 * lw], ring, cval_flat,
                                                    offsets, wz, sym_z)
                        else:
                            for j in range(ja, jb):
                                s0 = (z_first * ny + lo + j) * nx
                                for r in range(tiles[xt, 3], tiles[xt, 4]):
                                    _copy_run(plane_a, j * lw + runs[r, 2], src_flat,
                                              s0 + runs[r, 0], runs[r, 1])
                        for z in range(z_first, z_last + 1):
                            plane = plane_a if z == z_first else plane_b
                            _finish_tile_plane(
                                plane, out_flat, src_flat, cval_flat, carry, ybuf, ext, xbuf,
                                offsets, tiles, runs, emap, xt, z, z0, yb, n_yblocks, y0, y1,
                                lo, count, ja, jb, halo, lw, m, band, nz, ny, nx, wz, pz, cz,
                                sym_z, wy, py, cy, sym_y, wx, px, sym_x, has_z, has_y, has_x,
                                mode, cval)
                        z_first = z_last + 1


@numba.njit(cache=True)
def _finish_tile_plane(plane, out_flat, src_flat, cval_flat, carry, ybuf, ext, xbuf, offsets,
                       tiles, runs, emap, xt, z, z0, yb, n_yblocks, y0, y1, lo, count, ja, jb,
                       halo, lw, m, band, nz, ny, nx, wz, pz, cz, sym_z, wy, py, cy, sym_y, wx,
                       px, sym_x, has_z, has_y, has_x, mode, cval):
    """The rest of plane ``z`` of a y block in :func:`_separable_sweep_tiled`, once its
    z-pass rows ``ja .. jb - 1`` (and the carried halo) are in ``plane``: the y halo rows
    outside the image, the carry for the next block, then the y- and x-passes of the
    block's rows into the output."""
    x0 = tiles[xt, 0]
    x1 = tiles[xt, 1]
    # the y halo rows outside the image, extended
    va = 0 if yb > 0 else ja  # local rows that hold their image row
    for j in range(count):
        if (yb > 0 and j < halo) or ja <= j < jb:
            continue
        k = _extend(lo + j, ny, mode)
        if k < 0:
            plane[j * lw:(j + 1) * lw] = cval
        elif va <= k - lo < jb:
            _copy_run(plane, j * lw, plane, (k - lo) * lw, lw)
        else:
            for r in range(tiles[xt, 3], tiles[xt, 4]):
                d = j * lw + runs[r, 2]
                if has_z:
                    _z_pass_segment(plane[d:d + runs[r, 1]], src_flat, cval_flat, offsets, z,
                                    k, runs[r, 0], nz, ny, nx, wz, pz, cz, sym_z, mode)
                else:
                    _copy_run(plane, d, src_flat, (z * ny + k) * nx + runs[r, 0], runs[r, 1])
    if yb + 1 < n_yblocks:
        _copy_run(carry, (z - z0) * halo * lw, plane, (y1 - y0) * lw, halo * lw)
    ya = y0
    while ya < y1:
        ye = min(y1, ya + band)
        nrows = ye - ya
        if has_y:
            for t in range(wy.shape[0]):
                offsets[t] = (ya + py[t] - cy - lo) * lw
            _correlate_band(ybuf[:nrows * lw], plane, cval_flat, offsets, wy, sym_y)
            xsrc = ybuf
            xbase = 0
        else:
            xsrc = plane
            xbase = (ya - lo) * lw
        if has_x:
            _fill_tile_rows(ext, m, nrows, xsrc, xbase, lw, tiles[xt, 5], tiles[xt, 6], emap,
                            tiles[xt, 7], cval)
            for t in range(wx.shape[0]):
                offsets[t] = px[t]
            length = (nrows - 1) * m + x1 - x0
            _correlate_band(xbuf[:length], ext, cval_flat, offsets, wx, sym_x)
            for r in range(nrows):
                _copy_run(out_flat, (z * ny + ya + r) * nx + x0, xbuf, r * m, x1 - x0)
        else:
            for r in range(nrows):
                _copy_run(out_flat, (z * ny + ya + r) * nx + x0, xsrc, xbase + r * lw,
                          x1 - x0)
        ya = ye


#: Bytes of z-pass input (its 2r+1 planes' rows) that one worker keeps in its L2 cache.
_L2_WINDOW_BYTES = 1 << 20


def _l2_yblock(ny, nx, weights, itemsize):
    """Rows per work item that keep the z-pass input window in L2, or 0 if not worth it.

    A z-pass reads 2r+1 input planes per output plane.  When those planes do not fit in
    L2 together, every output plane streams them again from L3 or memory; blocks of
    ``yblock`` rows, taken for consecutive z by one worker, keep the window in L2 and
    read each input row about once.  Each block recomputes the z-pass of its y halo,
    so blocks shorter than twice the halo are not worth it.
    """
    kz = weights[0].size
    if kz <= 1:
        return 0
    row_bytes = nx * itemsize * kz
    halo = max(weights[1].size - 1, 0)
    if ny * row_bytes <= _L2_WINDOW_BYTES:
        return 0
    rows = _L2_WINDOW_BYTES // row_bytes - halo
    if rows < max(16, 2 * halo) or rows >= ny:
        return 0
    return int(rows)


#: Bytes of the tiled sweep's z window (its ring of input planes) per worker: most of a
#: 2 MiB L2, as the ring is packed (no other rows share its cache lines).
_L2_TILE_BYTES = 3 << 19

#: Cost of streaming the z window from L3 instead of L2, per tap, in taps: the z-pass
#: alone of 512^2 planes ran at 1003 Mvox/s from L3 and 2170 computed Mvox/s from L2.
_L3_TAP_COST = 2.0

#: Cost of copying an input voxel into the ring, in taps.
_RING_COPY_COST = 1.0

#: The tiled sweep must be estimated this much cheaper than the untiled one to be used.
_TILE_MARGIN = 0.95


def _tile_zchunk(nz, n_xtiles, kz):
    """Planes per work item of the tiled sweep: each item loads ``kz - 1`` planes beyond
    its own into the ring per y block, so chunks are long (twice the kernel at least),
    but there must be items to share out: a multiple of the thread count, several per
    thread where the chunks stay long enough."""
    threads = numba.get_num_threads()
    for per_thread in (8, 4, 2, 1):
        chunks = -(-per_thread * threads // n_xtiles)
        zchunk = -(-nz // chunks)
        if zchunk >= 2 * kz:
            break
    return max(1, zchunk)


def _computed_fraction(n, block, before, after):
    """Positions computed per position kept when an axis of ``n`` is cut into blocks of
    ``block``, each with its halo (``before``, ``after``) inside the axis."""
    total = 0
    for lo in range(0, n, block):
        total += min(n, lo + block + after) - max(0, lo - before)
    return total / n


def _l2_tiles(ny, nx, weights, n_ztaps, itemsize, two_planes=False):
    """``(yblock, xtile)`` of the tiled sweep, or None where the untiled one does as well.

    The tiled sweep keeps its z window (``n_ztaps`` input planes of ``yblock`` rows of a
    tile and its x halo, packed; one plane more where ``two_planes``: a symmetric z
    kernel, whose z-pass takes two planes at a time) in L2 for any plane size; the y
    halo of a block comes from the block before (the carry), and only the x halo is
    computed twice.  An estimate per output voxel, in taps, picks the cut: the z-pass,
    the ring copy and the carry on ``xtile + halo`` columns per ``xtile``, likewise the
    y- and x-passes; the untiled sweep pays :data:`_L3_TAP_COST` per z tap.  Only where
    the untiled sweep's window does not fit L2 as whole planes, nor in blocks of rows
    (see :func:`_l2_yblock`) unless the z-pass takes two planes at a time and the
    blocks' recomputed y halo costs more than the ring copy.
    """
    kz, ky, kx = (w.size for w in weights)
    if kz <= 1:
        return None
    cy, cx = ky // 2, kx // 2
    ry, rx = max(ky - 1 - cy, 0), max(kx - 1 - cx, 0)
    if ny * nx * itemsize * kz <= _L2_WINDOW_BYTES:
        return None  # the untiled sweep's window is in L2 already (whole planes)
    yblock_rows = _l2_yblock(ny, nx, weights, itemsize)
    if yblock_rows and not (two_planes and n_ztaps * (ky - 1) / yblock_rows
                            > 1.5 * _RING_COPY_COST):
        # nor where blocks of rows keep it in L2: measured, the tiled sweep of one plane
        # at a time was slower there (Gaussian sigma 2 at 256^3: 274-350 against 359-445
        # Mvox/s), faster only where the window streams from L3.  Two planes at a time,
        # it is worth its ring copy where the blocks' z-pass of their y halo costs more
        # (Gaussian sigma 2 at 256^3: 927-960 against 867-875 Mvox/s), not where that is
        # cheap (uniform 5: 1791-1802 against 1839-2080; sigma 1 and uniform 9 the same;
        # see benchmarks/RESULTS.md)
        return None
    ring_planes = n_ztaps + (1 if two_planes else 0)
    untiled = n_ztaps * _L3_TAP_COST + ky + kx
    best, choice = _TILE_MARGIN * untiled, None
    for xtile in [nx] + list(range(16 * (nx // 32), 63, -16)):
        local = min(nx, xtile + cx + rx)
        yblock = min(ny, _L2_TILE_BYTES // (ring_planes * local * itemsize))
        if yblock < 8:
            continue
        carry = 2.0 * (cy + ry) / yblock if yblock < ny else 0.0
        fx = _computed_fraction(nx, xtile, cx, rx)
        cost = (n_ztaps + 1.5 * _RING_COPY_COST + carry + ky + kx) * fx
        if cost < best:
            best, choice = cost, (int(yblock), int(xtile))
    return choice


def _x_tiles(nx, xtile, kx, mode_code):
    """Geometry of the x tiles of :func:`_separable_sweep_tiled`, ``xtile`` output columns
    each: ``(tiles, runs, emap)``, int64 arrays.

    A tile's z- and y-passes run on its *local row*: the image columns its x-pass reads,
    packed.  These are the columns ``a .. b - 1`` of the tile and its x halo inside the
    image, then any others that the x extension at a face copies (the far end of the row
    in wrap mode, or any column of a row shorter than the halo), in runs of consecutive
    columns.  ``tiles[t]`` = (x0, x1, local width, first run, end of its runs, lpad:
    extended positions before column ``a``, ``b - a``, first ``emap`` entry); ``runs[r]``
    = (image column, length, local column); ``emap[tiles[t, 7] + p]`` = the local column
    of the x-extended position ``x0 - cx + p``, or -1 for ``cval``.
    """
    cx = kx // 2
    rx = max(kx - 1 - cx, 0)
    tiles, runs, emap = [], [], []
    for x0 in range(0, nx, xtile):
        x1 = min(nx, x0 + xtile)
        a, b = max(0, x0 - cx), min(nx, x1 + rx)
        sources = [extend_index(p, nx, mode_code) for p in range(x0 - cx, x1 + rx)]
        extras = sorted({k for k in sources if k >= 0 and not a <= k < b})
        local = {c: c - a for c in range(a, b)}
        local.update({c: b - a + i for i, c in enumerate(extras)})
        first = len(runs)
        runs.append([a, b - a, 0])
        for c in extras:
            column, length, at = runs[-1]
            if c == column + length and local[c] == at + length:
                runs[-1][1] += 1
            else:
                runs.append([c, 1, local[c]])
        tiles.append((x0, x1, len(local), first, len(runs), a - (x0 - cx), b - a, len(emap)))
        emap += [local[k] if k >= 0 else -1 for k in sources]
    return (np.array(tiles, dtype=np.int64).reshape(-1, 8),
            np.array(runs, dtype=np.int64).reshape(-1, 3), np.array(emap, dtype=np.int64))


def _compact_taps(w64, dtype):
    """A sweep's taps for the 1-D kernel ``w64``: (taps, their positions in ``w64``,
    scipy's symmetry code).

    A general (neither symmetric nor antisymmetric) kernel drops its zero taps: the
    dilated kernels of an a trous wavelet level are mostly zeros, and the odd extension
    of an even-length kernel adds one.  The taps kept are ordered so that the kernel's
    sum (last tap first, then the others in order) adds them in the order correlate1d
    does, which adds the dropped ``v * 0.0`` terms too: for finite values those change
    nothing but the sign of an exact zero.  (A non-finite value under a zero tap does
    not spread, where correlate1d makes it NaN.)

    Worked out once per kernel and dtype: a Gaussian's three passes asked for the same
    taps three times per call, 30 us of a call on an 8^3 volume.  The arrays returned
    are shared between calls: read them only.
    """
    w64 = np.ascontiguousarray(w64, dtype=np.float64)
    return _compact_taps_of(w64.tobytes(), np.dtype(dtype).str)


@functools.lru_cache(maxsize=256)
def _compact_taps_of(w_bytes, dtype_str):
    """:func:`_compact_taps` of the float64 kernel held in ``w_bytes``."""
    w64 = np.frombuffer(w_bytes, dtype=np.float64)
    dtype = np.dtype(dtype_str)
    symmetry = _symmetry(w64)
    nonzero = np.flatnonzero(w64 != 0.0)
    if symmetry != 0 or nonzero.size in (0, w64.size):
        return w64.astype(dtype), np.arange(w64.size, dtype=np.int64), symmetry
    if nonzero[-1] != w64.size - 1:
        # the full sum starts from a zero last tap: start from the first kept one
        nonzero = np.roll(nonzero, -1)
    return (w64[nonzero].astype(dtype), nonzero.astype(np.int64),
            1 if nonzero.size == 1 else 0)


def _sweep(image, passes, mode_code, cval, yblock=None, band=None, z_inner=None, xtile=None,
           zchunk=None, out=None):
    """One fused sweep for passes along strictly ascending axes of a 2-D or 3-D image.

    ``yblock`` (rows per work item), ``band`` (rows per band), ``z_inner`` (work items
    ordered z fastest) and ``xtile`` (output columns per x tile: run the tiled sweep,
    whose items are always z fastest) only choose how the work is cut, never a result;
    tests pass them to reach every code path.  ``out``: a C-contiguous array of the
    image's shape and dtype to write into (not the image), else a new one.
    """
    view = image.reshape((1,) * (3 - image.ndim) + image.shape)
    nz, ny, nx = view.shape
    offset = 3 - image.ndim
    empty = np.empty(0, dtype=image.dtype)
    weights = [empty, empty, empty]  # the full kernels: their sizes set the halos
    compact = [(empty, np.empty(0, dtype=np.int64), 0)] * 3
    for axis, w64 in passes:
        weights[axis + offset] = w64.astype(image.dtype)
        compact[axis + offset] = _compact_taps(w64, image.dtype)
    if yblock is None and xtile is None:
        threads = numba.get_num_threads()
        if nz >= 2 * threads:
            yblock = ny
            tiled = _l2_tiles(ny, nx, weights, compact[0][0].size, image.itemsize,
                              two_planes=compact[0][2] > 0)
            yblock_l2 = _l2_yblock(ny, nx, weights, image.itemsize)
            if tiled is not None and z_inner is None:
                yblock, xtile = tiled
            elif yblock_l2 and z_inner is None:
                yblock, z_inner = yblock_l2, True
        else:
            # too few planes to share out: split them into blocks of rows; with a
            # z-pass each block recomputes the z-pass of its y halo, so keep them tall
            yblock = -(-ny // -(-4 * threads // nz))
            if weights[0].size:
                yblock = max(yblock, 4 * weights[1].size, 16)
    yblock = max(1, min(int(ny if yblock is None else yblock), ny))
    if xtile is not None:
        xtile = max(1, min(int(xtile), nx))
    if band is None:
        width = nx if xtile is None else xtile
        band = max(1, _BAND_VOXELS // (width + max(weights[2].size, 1) - 1))
    band = max(1, int(band))
    z_inner = bool(z_inner) and yblock < ny
    given = out
    out = np.empty_like(view) if out is None else out.reshape(view.shape)
    cval_flat = np.full(band * nx, cval, dtype=image.dtype)
    per_axis = []
    for w, (taps, positions, symmetry) in zip(weights, compact):
        per_axis += [taps, positions, w.size, symmetry]
    if xtile is None:
        n_items = nz * -(-ny // yblock)
        queue = _work_queue(n_items, _SWEEP_BLOCKS_PER_THREAD)
        _launch(_separable_sweep, view, out, cval_flat, *per_axis, int(mode_code),
                image.dtype.type(cval), yblock, band, z_inner, *queue)
    else:
        tiles, runs, emap = _x_tiles(nx, xtile, weights[2].size, int(mode_code))
        if zchunk is None:
            zchunk = _tile_zchunk(nz, tiles.shape[0], weights[0].size)
        zchunk = max(1, min(int(zchunk), nz))
        n_items = tiles.shape[0] * -(-nz // zchunk)
        queue = _work_queue(n_items, n_items)  # one item per block: items are long
        _launch(_separable_sweep_tiled, view, out, cval_flat, *per_axis, int(mode_code),
                image.dtype.type(cval), yblock, band, zchunk, tiles, runs, emap, *queue)
    return out.reshape(image.shape) if given is None else given


def sweep_runs(passes):
    """``passes`` (``(axis, weights)`` pairs, in order) cut into runs along strictly
    ascending axes: each run of a 2-D or 3-D image is one sweep."""
    runs = [[passes[0]]]
    for p in passes[1:]:
        if p[0] > runs[-1][-1][0]:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def correlate_separable(image, axes, weights, mode_code, cval, out=None):
    """1-D correlations along ``axes`` in order, fused into as few sweeps as possible.

    Equal, bit for bit, to ``correlate1d(image, weights[i], axes[i], ...)`` applied in
    order: each pass extends its own input (so in constant mode every pass sees ``cval``
    outside) and each intermediate is rounded to the image dtype.  Runs of passes along
    strictly ascending axes of a 2-D or 3-D image are fused into one sweep through
    memory; any other pass runs as :func:`correlate1d`.

    Parameters
    ----------
    image : ndarray
        float32 or float64 array of any dimensionality.
    axes : sequence of int
        Axis of each pass.
    weights : sequence of array_like
        1-D weights of each pass (centre tap ``len // 2``), as many as ``axes``.
    mode_code : int
        Boundary mode code from :mod:`medimg_fast._shared.boundary`.
    cval : float
        Value outside the array in constant mode.
    out : ndarray, optional
        Array to write the result into (see :func:`_destination`); default a new one.

    Returns
    -------
    ndarray
        ``out``, or a new array of the image's dtype and shape.
    """
    image = _check_image(image)
    axes = tuple(axes)
    weights = tuple(weights)
    if len(axes) != len(weights):
        raise ValueError(f"`axes` and `weights` must have the same length, got {len(axes)} "
                         f"axes and {len(weights)} weight arrays")
    ndim = image.ndim
    passes = []
    for axis, w in zip(axes, weights):
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) \
                or not -ndim <= axis < ndim:
            raise ValueError(f"`axes` must hold integers in [{-ndim}, {ndim}) for a "
                             f"{ndim}-D image, got {axis!r}")
        w64 = np.asarray(w, dtype=np.float64)
        if w64.ndim != 1 or w64.size == 0:
            raise ValueError(f"`weights` must be non-empty 1-D arrays, got shape {w64.shape}")
        passes.append((int(axis) % ndim, w64))
    if image.size == 0 or not passes:
        out = _destination(image, out)
        out[...] = image
        return out
    runs = sweep_runs(passes)
    result = image
    scratch = _Scratch(image) if len(runs) > 1 else None
    for i, run in enumerate(runs):
        last = i == len(runs) - 1  # only the last pass writes into ``out``
        if len(run) == 1 or ndim > 3:
            for j, (axis, w64) in enumerate(run):
                result = correlate1d(result, w64, axis, mode_code, cval,
                                     out=out if last and j == len(run) - 1 else None)
        else:
            result = _sweep(result, run, mode_code, cval,
                            out=_destination(result, out) if last else scratch.take(result))
    if scratch is not None:
        scratch.release()
    return result


#: Largest intermediate (bytes) that a thread keeps between calls, see :class:`_Scratch`.
_SCRATCH_BYTES = 64 << 20
_scratch_local = threading.local()


class _Scratch:
    """Intermediate arrays of a chain of sweeps, kept by the thread between calls.

    A level-2 wavelet runs two sweeps: a fresh array for the intermediate each call,
    freed with the output, lets the C allocator hand the pages back to the system (both
    together reach its trim threshold), so every call page-faults both arrays again: 2
    ms of a 7 ms call on a 2.5-Mvox volume.  Intermediates of at most
    ``_SCRATCH_BYTES`` in all stay with the thread instead (and are dropped for those of
    another shape); the output is always new.
    """

    def __init__(self, image):
        self.shape, self.dtype = image.shape, image.dtype
        kept = getattr(_scratch_local, "arrays", [])
        self.free = [a for a in kept if a.shape == self.shape and a.dtype == self.dtype]
        _scratch_local.arrays = []
        self.used = []

    def take(self, avoid):
        """An array of the chain's shape and dtype that is not ``avoid``."""
        for i, a in enumerate(self.free):
            if a is not avoid:
                array = self.free.pop(i)
                break
        else:
            array = np.empty(self.shape, dtype=self.dtype)
        self.used.append(array)
        return array

    def release(self):
        kept, total = [], 0
        for array in self.used + self.free:
            if total + array.nbytes <= _SCRATCH_BYTES:
                kept.append(array)
                total += array.nbytes
        _scratch_local.arrays = kept


# --------------------------------------------------------------------------------------
# extremum_filter1d
# --------------------------------------------------------------------------------------
# Per voxel: r = v[0]; then r = v[k] if v[k] > r (maximum; < for minimum), k = 1..size-1.


@numba.njit(cache=True)
def _extremum_line(ext, out, size, maximum):
    n = out.shape[0]
    out[:] = ext[:n]
    for k in range(1, size):
        src = ext[k:k + n]
        if maximum:
            for x in range(n):
                v = src[x]
                r = out[x]
                out[x] = max(r, v)
        else:
            for x in range(n):
                v = src[x]
                r = out[x]
                out[x] = min(r, v)


@numba.njit(parallel=True, cache=True)
def _extremum1d_contiguous(src, out, size, maximum, mode, cval, block, n_blocks):
    outer, n = src.shape
    for b in prange(n_blocks):
        ext = np.empty(n + size - 1, dtype=src.dtype)
        for o in range(b * block, min(outer, (b + 1) * block)):
            _fill_extended(ext, src[o], size // 2, mode, cval)
            _extremum_line(ext, out[o], size, maximum)


@numba.njit(parallel=True, cache=True)
def _extremum1d_strided(src, out, cval_row, size, maximum, mode, xblock, n_xblocks):
    outer, n, inner = src.shape
    before = size // 2
    for item in prange(outer * n_xblocks):
        o = item // n_xblocks
        x0 = (item - o * n_xblocks) * xblock
        x1 = min(inner, x0 + xblock)
        m = x1 - x0
        for i in range(n):
            orow = out[o, i, x0:x1]
            a = _strided_row(src, cval_row, o, i - before, n, mode, x0, x1)
            orow[:] = a
            for k in range(1, size):
                a = _strided_row(src, cval_row, o, i - before + k, n, mode, x0, x1)
                if maximum:
                    for x in range(m):
                        v = a[x]
                        r = orow[x]
                        orow[x] = max(r, v)
                else:
                    for x in range(m):
                        v = a[x]
                        r = orow[x]
                        orow[x] = min(r, v)


def extremum_filter1d(image, size, axis, mode_code, cval, maximum, out=None):
    """Running minimum or maximum of ``size`` samples along ``axis``.

    The window of output ``i`` is ``[i - size//2, i - size//2 + size)``, as in
    ``scipy.ndimage.minimum_filter1d`` / ``maximum_filter1d`` with origin 0.

    Parameters
    ----------
    image : ndarray
        float32 or float64 array of any dimensionality.
    size : int
        Window length, at least 1.
    axis : int
        Axis to filter along.
    mode_code : int
        Boundary mode code from :mod:`medimg_fast._shared.boundary`.
    cval : float
        Value outside the array in constant mode.
    maximum : bool
        True for the running maximum, False for the minimum.
    out : ndarray, optional
        Array to write the result into (see :func:`_destination`); default a new one.

    Returns
    -------
    ndarray
        ``out``, or a new array of the image's dtype and shape.
    """
    image = _check_image(image)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"`size` must be a positive integer, got {size!r}")
    size = int(size)
    view = _axis_view(image, axis)
    out = _destination(image, out)
    if image.size == 0:
        return out
    outer, n, inner = view.shape
    dtype = image.dtype.type
    if inner == 1:
        block, n_blocks = _partition(outer)
        _launch(_extremum1d_contiguous, view.reshape(outer, n), out.reshape(outer, n), size,
                bool(maximum), int(mode_code), dtype(cval), block, n_blocks)
    else:
        xblock, n_xblocks = _strided_blocks(outer, inner)
        cval_row = np.full((1, 1, inner), cval, dtype=image.dtype)
        _launch(_extremum1d_strided, view, out.reshape(view.shape), cval_row, size,
                bool(maximum), int(mode_code), xblock, n_xblocks)
    return out


# --------------------------------------------------------------------------------------
# N-D correlate and rank filters (1-D to 3-D, promoted to 3-D)
# --------------------------------------------------------------------------------------


def _as_3d(image, kernel):
    """Prepend unit axes so that ``image`` and ``kernel`` are 3-D."""
    if kernel.ndim != image.ndim:
        raise ValueError(f"the filter must have as many dimensions as `image` ({image.ndim}), "
                         f"got shape {kernel.shape}")
    if not 1 <= image.ndim <= 3:
        raise ValueError(f"`image` must be 1-D to 3-D for this kernel, got {image.ndim}-D")
    if 0 in kernel.shape:
        raise ValueError(f"the filter must not be empty, got shape {kernel.shape}")
    lead = (1,) * (3 - image.ndim)
    return image.reshape(lead + image.shape), kernel.reshape(lead + kernel.shape)


def _taps(mask_3d):
    """Window-row index and x offset of each True tap (C order), and which window rows
    any tap reads."""
    kz, ky, _ = mask_3d.shape
    iz, iy, ix = np.nonzero(mask_3d)  # C order, as scipy walks a footprint
    rows = (iz * ky + iy).astype(np.int64)
    used = np.zeros(kz * ky, dtype=np.bool_)
    used[rows] = True
    return rows, ix.astype(np.int64), used


@numba.njit(parallel=True, cache=True)
def _correlate_nd(img, out, shape_k, tap_row, tap_dx, tap_w, used, mode, cval, block,
                  n_blocks):
    nz, ny, nx = img.shape
    kz, ky, kx = shape_k
    cz, cy, cx = kz // 2, ky // 2, kx // 2
    n_taps = tap_row.shape[0]
    for b in prange(n_blocks):
        rows = np.empty((kz * ky, nx + kx - 1), dtype=img.dtype)
        for r in range(b * block, min(nz * ny, (b + 1) * block)):
            z = r // ny
            y = r - z * ny
            _fill_window_rows(rows, img, z, y, kz, ky, cz, cy, cx, used, mode, cval)
            orow = out[z, y]
            # scipy starts from 0 and adds taps in C order
            orow[:] = 0
            for t in range(n_taps):
                off = tap_dx[t]
                src = rows[tap_row[t], off:off + nx]
                wt = tap_w[t]
                for x in range(nx):
                    orow[x] += src[x] * wt


def correlate(image, weights, mode_code, cval, out=None):
    """N-D correlation (``scipy.ndimage.correlate``, origin 0), for 1-D to 3-D images.

    Parameters
    ----------
    image : ndarray
        float32 or float64 array, 1-D to 3-D.
    weights : array_like
        Weights with ``image.ndim`` dimensions, centred at ``shape // 2``.  As in scipy,
        weights of magnitude at most DBL_EPSILON are skipped.
    mode_code : int
        Boundary mode code from :mod:`medimg_fast._shared.boundary`.
    cval : float
        Value outside the array in constant mode.
    out : ndarray, optional
        Array to write the result into (see :func:`_destination`); default a new one.

    Returns
    -------
    ndarray
        ``out``, or a new array of the image's dtype and shape.
    """
    image = _check_image(image)
    w64 = np.asarray(weights, dtype=np.float64)
    img3, w3 = _as_3d(image, w64)
    out = _destination(image, out)
    if image.size == 0:
        return out
    tap_row, tap_dx, used = _taps(np.abs(w3) > _DBL_EPSILON)
    tap_w = w3[np.abs(w3) > _DBL_EPSILON].astype(image.dtype)
    block, n_blocks = _partition(img3.shape[0] * img3.shape[1])
    _launch(_correlate_nd, img3, out.reshape(img3.shape), np.array(w3.shape, dtype=np.int64),
            tap_row, tap_dx, tap_w, used, int(mode_code), image.dtype.type(cval), block,
            n_blocks)
    return out


def selection_schedule(count, rank):
    """Compare-exchange steps that leave the ``rank``-th smallest of ``count`` slots in
    one slot (forgetful selection, generalised to any rank).

    A slot set ``S`` takes inputs one at a time; while the inputs not yet taken (``U``)
    cannot fill the ranks below ``min(S)`` (``len(U) < rank``), that minimum cannot be
    the answer and is dropped (``rank`` decreases); while ``len(S) - 1 > rank`` the
    maximum of ``S`` is dropped.  Minimum and maximum are found together by pairing the
    slots and running two tournaments.

    Parameters
    ----------
    count : int
        Number of values (footprint elements), at least 1.
    rank : int
        Wanted order statistic, ``0 <= rank < count``.

    Returns
    -------
    ops : ndarray of int64, shape (k, 2)
        Each row ``(i, j)`` means ``slot[i], slot[j] = min(...), max(...)``.
    result : int
        Slot holding the answer after all steps.
    """
    if count < 1 or not 0 <= rank < count:
        raise ValueError(f"`rank` must lie in [0, {count}), got {rank!r}")
    ops = []
    active = []
    pending = list(range(count))
    r = rank
    while True:
        can_min = len(active) >= 1 and len(pending) < r
        can_max = len(active) >= 1 and len(active) - 1 > r
        if can_min and can_max and len(active) >= 2:
            lows, highs = [], []
            for k in range(0, len(active) - 1, 2):
                ops.append((active[k], active[k + 1]))
                lows.append(active[k])
                highs.append(active[k + 1])
            if len(active) % 2:
                lows.append(active[-1])
                highs.append(active[-1])
            for s in lows[1:]:
                ops.append((lows[0], s))
            for s in highs[1:]:
                ops.append((s, highs[0]))
            active = [s for s in active if s not in (lows[0], highs[0])]
            r -= 1
        elif can_min:
            for s in active[1:]:
                ops.append((active[0], s))
            active = active[1:]
            r -= 1
        elif can_max:
            for s in active[1:]:
                ops.append((s, active[0]))
            active = active[1:]
        elif pending:
            active.append(pending.pop(0))
        else:
            break
    if len(active) != 1 or r != 0:  # pragma: no cover - guards the derivation above
        raise AssertionError("selection schedule did not converge")
    return np.array(ops, dtype=np.int64).reshape(-1, 2), active[0]


def network_source(name, count, rank):
    """Python source of a numba function returning the ``rank``-th smallest of its
    ``count`` arguments through the compare-exchanges of :func:`selection_schedule`.

    The generated functions at the end of this module were written by this function;
    the test suite checks that they are still what it produces.  Straight-line code keeps
    every value in a register and lets LLVM vectorise the caller's loop over x.
    """
    ops, result = selection_schedule(count, rank)
    lines = ["@numba.njit(cache=True, inline=\"always\")", f"def {name}("]
    for start in range(0, count, 10):
        names = ", ".join(f"v{t}" for t in range(start, min(count, start + 10)))
        lines.append(f"        {names},")
    lines.append("):")
    lines.append(f'    """Rank {rank} of {count} values (generated by network_source)."""')
    for i, j in ops:
        lines.append(f"    v{i}, v{j} = min(v{i}, v{j}), max(v{j}, v{i})")
    lines.append(f"    return v{result}")
    return "\n".join(lines) + "\n"


@numba.njit(parallel=True, cache=True)
def _rank_scheduled(img, out, shape_k, tap_row, tap_dx, used, ops, result, mode, cval, block,
                    n_blocks, xblock):
    nz, ny, nx = img.shape
    kz, ky, kx = shape_k
    cz, cy, cx = kz // 2, ky // 2, kx // 2
    count = tap_row.shape[0]
    n_ops = ops.shape[0]
    for b in prange(n_blocks):
        rows = np.empty((kz * ky, nx + kx - 1), dtype=img.dtype)
        slots = np.empty((count, xblock), dtype=img.dtype)
        for r in range(b * block, min(nz * ny, (b + 1) * block)):
            z = r // ny
            y = r - z * ny
            _fill_window_rows(rows, img, z, y, kz, ky, cz, cy, cx, used, mode, cval)
            for x0 in range(0, nx, xblock):
                m = min(xblock, nx - x0)
                for t in range(count):
                    s0 = x0 + tap_dx[t]
                    slots[t, :m] = rows[tap_row[t], s0:s0 + m]
                for q in range(n_ops):
                    lo = slots[ops[q, 0]]
                    hi = slots[ops[q, 1]]
                    for x in range(m):
                        p = lo[x]
                        v = hi[x]
                        lo[x] = min(p, v)
                        hi[x] = max(v, p)
                out[z, y, x0:x0 + m] = slots[result, :m]


@numba.njit(cache=True)
def _select_inplace(buf, n, k):
    """k-th smallest of ``buf[:n]`` (Wirth's selection; reorders ``buf``)."""
    lo = 0
    hi = n - 1
    while lo < hi:
        pivot = buf[k]
        i = lo
        j = hi
        while True:
            while buf[i] < pivot:
                i += 1
            while pivot < buf[j]:
                j -= 1
            if i <= j:
                t = buf[i]
                buf[i] = buf[j]
                buf[j] = t
                i += 1
                j -= 1
            if i > j:
                break
        if j < k:
            lo = i
        if k < i:
            hi = j
    return buf[k]


@numba.njit(parallel=True, cache=True)
def _rank_select(img, out, shape_k, tap_row, tap_dx, used, rank, mode, cval, block, n_blocks):
    nz, ny, nx = img.shape
    kz, ky, kx = shape_k
    cz, cy, cx = kz // 2, ky // 2, kx // 2
    count = tap_row.shape[0]
    for b in prange(n_blocks):
        rows = np.empty((kz * ky, nx + kx - 1), dtype=img.dtype)
        buf = np.empty(count, dtype=img.dtype)
        for r in range(b * block, min(nz * ny, (b + 1) * block)):
            z = r // ny
            y = r - z * ny
            _fill_window_rows(rows, img, z, y, kz, ky, cz, cy, cx, used, mode, cval)
            for x in range(nx):
                for t in range(count):
                    buf[t] = rows[tap_row[t], x + tap_dx[t]]
                out[z, y, x] = _select_inplace(buf, count, rank)


@numba.njit(parallel=True, cache=True)
def _median_box_3x3x3(img, out, mode, cval, block, n_blocks):
    nz, ny, nx = img.shape
    used = np.ones(9, dtype=np.bool_)
    for b in prange(n_blocks):
        rows = np.empty((9, nx + 2), dtype=img.dtype)
        for r in range(b * block, min(nz * ny, (b + 1) * block)):
            z = r // ny
            y = r - z * ny
            _fill_window_rows(rows, img, z, y, 3, 3, 1, 1, 1, used, mode, cval)
            r0 = rows[0]
            r1 = rows[1]
            r2 = rows[2]
            r3 = rows[3]
            r4 = rows[4]
            r5 = rows[5]
            r6 = rows[6]
            r7 = rows[7]
            r8 = rows[8]
            orow = out[z, y]
            for x in range(nx):
                x1 = x + 1
                x2 = x + 2
                orow[x] = _median_of_27(
                    r0[x], r0[x1], r0[x2], r1[x], r1[x1], r1[x2], r2[x], r2[x1], r2[x2],
                    r3[x], r3[x1], r3[x2], r4[x], r4[x1], r4[x2], r5[x], r5[x1], r5[x2],
                    r6[x], r6[x1], r6[x2], r7[x], r7[x1], r7[x2], r8[x], r8[x1], r8[x2])


@numba.njit(parallel=True, cache=True)
def _median_box_3x3(img, out, mode, cval, block, n_blocks):
    nz, ny, nx = img.shape
    used = np.ones(3, dtype=np.bool_)
    for b in prange(n_blocks):
        rows = np.empty((3, nx + 2), dtype=img.dtype)
        for r in range(b * block, min(nz * ny, (b + 1) * block)):
            z = r // ny
            y = r - z * ny
            _fill_window_rows(rows, img, z, y, 1, 3, 0, 1, 1, used, mode, cval)
            r0 = rows[0]
            r1 = rows[1]
            r2 = rows[2]
            orow = out[z, y]
            for x in range(nx):
                x1 = x + 1
                x2 = x + 2
                orow[x] = _median_of_9(r0[x], r0[x1], r0[x2], r1[x], r1[x1], r1[x2],
                                       r2[x], r2[x1], r2[x2])


#: Full-box median footprints with an unrolled kernel, by 3-D footprint shape.
#: (Each unrolled network costs seconds of first compile, so only the common ones.)
_MEDIAN_BOX_KERNELS = {(3, 3, 3): _median_box_3x3x3, (1, 3, 3): _median_box_3x3}


def rank_filter(image, footprint, rank, mode_code, cval, out=None):
    """Rank filter over a boolean footprint (``scipy.ndimage.rank_filter``, origin 0).

    Parameters
    ----------
    image : ndarray
        float32 or float64 array, 1-D to 3-D.
    footprint : array_like of bool
        ``image.ndim`` dimensions, centred at ``shape // 2``, at least one True element.
    rank : int
        Order statistic over the True elements, from 0 (minimum); the median is
        ``count // 2``.
    mode_code : int
        Boundary mode code from :mod:`medimg_fast._shared.boundary`.
    cval : float
        Value outside the array in constant mode.
    out : ndarray, optional
        Array to write the result into (see :func:`_destination`); default a new one.

    Returns
    -------
    ndarray
        ``out``, or a new array of the image's dtype and shape.
    """
    image = _check_image(image)
    fp = np.asarray(footprint).astype(bool)
    img3, fp3 = _as_3d(image, fp)
    count = int(fp3.sum())
    if count == 0:
        raise ValueError("`footprint` must have at least one True element")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) \
            or not 0 <= rank < count:
        raise ValueError(f"`rank` must be an integer in [0, {count}), got {rank!r}")
    out = _destination(image, out)
    if image.size == 0:
        return out
    tap_row, tap_dx, used = _taps(fp3)
    shape_k = np.array(fp3.shape, dtype=np.int64)
    block, n_blocks = _partition(img3.shape[0] * img3.shape[1])
    box_kernel = _MEDIAN_BOX_KERNELS.get(fp3.shape)
    if box_kernel is not None and count == fp3.size and rank == count // 2:
        _launch(box_kernel, img3, out.reshape(img3.shape), int(mode_code),
                image.dtype.type(cval), block, n_blocks)
    elif count <= SCHEDULE_MAX_COUNT:
        ops, result = _schedule_cached(count, int(rank))
        nx = img3.shape[2]
        # keep the slot rows of one x block in L1/L2
        xblock = int(min(nx, max(64, (32768 // image.itemsize) // count)))
        _launch(_rank_scheduled, img3, out.reshape(img3.shape), shape_k, tap_row, tap_dx, used,
                ops, result, int(mode_code), image.dtype.type(cval), block, n_blocks, xblock)
    else:
        _launch(_rank_select, img3, out.reshape(img3.shape), shape_k, tap_row, tap_dx, used,
                int(rank), int(mode_code), image.dtype.type(cval), block, n_blocks)
    return out


_SCHEDULES: dict[tuple[int, int], tuple[np.ndarray, int]] = {}


def _schedule_cached(count, rank):
    key = (count, rank)
    if key not in _SCHEDULES:
        _SCHEDULES[key] = selection_schedule(count, rank)
    return _SCHEDULES[key]


# --------------------------------------------------------------------------------------
# fused Sobel / Prewitt gradient magnitude
# --------------------------------------------------------------------------------------
# scipy's sobel(axis=a) is a chain of 1-D passes: [-1, 0, 1] along a, then [1, s, 1]
# (s = 2 Sobel, 1 Prewitt) along the other axes in increasing order, each pass padding
# *its own input* with cval in constant mode.  The fused kernels evaluate that chain on a
# 3**ndim window: per stage, a window row outside the image contributes cval instead of
# its filtered value (the ``*_in`` flags; always true in the other modes, where padding
# commutes with the passes).  Sums are written as scipy's correlate1d writes them:
# derivative ``c - a``, smoothing ``s*b + (a + c)``.
#
# Rolling rows: a worker walks its block of output rows in order, and the window of row
# y + 1 shares two of its three y columns with the window of row y.  Each window column yy
# (the image rows (z - 1 .. z + 1, yy), extended along x) is therefore copied,
# differenced along x and smoothed along z once, into a ring of three slots (slot
# ``(yy + 1) % 3``); only the terms that mix columns are evaluated per output row.  Every
# intermediate is the same expression of the same operands as in a full window
# evaluation, so reusing it changes no bit of the result.  Where all ``*_in`` flags hold
# (every mode but constant, and the inside of the image in constant mode) a loop without
# the picks runs: ``_pick(True, v, cval)`` is ``v``, so that too changes no bit.  The
# kernels index the 2-D/3-D buffers directly: a row view per output row costs numba
# reference counting that is slower than the row's arithmetic.


@numba.njit(cache=True)
def _smooth3(a, b, c, s):
    return s * b + (a + c)


@numba.njit(cache=True)
def _pick(inside, value, cval):
    return value if inside else cval


@numba.njit(parallel=True, cache=True)
def _gradient_magnitude_1d(img, out, mode, cval):
    (nx,) = img.shape
    ext = np.empty(nx + 2, dtype=img.dtype)
    _fill_extended(ext, img, 1, mode, cval)
    for x in prange(nx):
        d = ext[x + 2] - ext[x]
        out[x] = np.sqrt(d * d)


@numba.njit(cache=True)
def _close_row_ends(row, mode, cval):
    """An intermediate row extended along x: in constant mode its ends are cval."""
    if mode == CONSTANT:
        row[0] = cval
        row[row.shape[0] - 1] = cval


@numba.njit(cache=True)
def _gm_source(i, n, mode):
    """``_extend(i, n, mode)`` without the call for an index inside the axis."""
    return i if 0 <= i < n else _extend(i, n, mode)


@numba.njit(cache=True)
def _gm_row_2d(rows, dx, img, yy, xl, xr, mode, cval):
    """Window row ``yy`` of a 2-D image into ring slot ``k = (yy + 1) % 3``: ``rows[k]``
    the image row extended along x (source columns ``xl``, ``xr`` at the ends; a row of
    cval outside the image in constant mode), ``dx[k]`` its d/dx."""
    ny, nx = img.shape
    k = (yy + 1) % 3
    src = _gm_source(yy, ny, mode)
    if src < 0:
        for p in range(nx + 2):
            rows[k, p] = cval
    else:
        rows[k, 0] = img[src, xl] if xl >= 0 else cval
        for x in range(nx):
            rows[k, x + 1] = img[src, x]
        rows[k, nx + 1] = img[src, xr] if xr >= 0 else cval
    for x in range(nx):
        dx[k, x] = rows[k, x + 2] - rows[k, x]


@numba.njit(parallel=True, cache=True)
def _gradient_magnitude_2d(img, out, s, use_y, use_x, mode, cval, block, n_blocks, n_workers, counter):
    ny, nx = img.shape
    zero = img.dtype.type(0)
    xl = _extend(-1, nx, mode)
    xr = _extend(nx, nx, mode)
    for worker in prange(n_workers):
        rows = np.empty((3, nx + 2), dtype=img.dtype)  # ring of extended rows
        dx = np.empty((3, nx), dtype=img.dtype)  # their d/dx
        dy_row = np.empty(nx + 2, dtype=img.dtype)
        while True:
            b = _take_block(counter)
            if b >= n_blocks:
                break
            y0 = b * block
            _gm_row_2d(rows, dx, img, y0 - 1, xl, xr, mode, cval)
            _gm_row_2d(rows, dx, img, y0, xl, xr, mode, cval)
            for y in range(y0, min(ny, (b + 1) * block)):
                _gm_row_2d(rows, dx, img, y + 1, xl, xr, mode, cval)
                y_in0 = _gm_source(y - 1, ny, mode) >= 0
                y_in2 = _gm_source(y + 1, ny, mode) >= 0
                k0 = y % 3  # slots of the rows y - 1, y, y + 1
                k1 = (y + 1) % 3
                k2 = (y + 2) % 3
                # d/dy first (rows outside are cval already), then smoothing along x
                for p in range(nx + 2):
                    dy_row[p] = rows[k2, p] - rows[k0, p]
                _close_row_ends(dy_row, mode, cval)
                if use_y and use_x and y_in0 and y_in2:
                    for x in range(nx):
                        gy = _smooth3(dy_row[x], dy_row[x + 1], dy_row[x + 2], s)
                        gx = _smooth3(dx[k0, x], dx[k1, x], dx[k2, x], s)
                        acc = zero + gy * gy
                        acc = acc + gx * gx
                        out[y, x] = np.sqrt(acc)
                    continue
                for x in range(nx):
                    gy = _smooth3(dy_row[x], dy_row[x + 1], dy_row[x + 2], s)
                    gx = _smooth3(_pick(y_in0, dx[k0, x], cval), dx[k1, x],
                                  _pick(y_in2, dx[k2, x], cval), s)
                    acc = zero
                    if use_y:
                        acc += gy * gy
                    if use_x:
                        acc += gx * gx
                    out[y, x] = np.sqrt(acc)


@numba.njit(cache=True, inline="always")
def _gm_column_3d(rows, tx, dz, img, z_src, z_in0, z_in2, yy, xl, xr, s, mode, cval):
    """Window column ``yy`` into ring slot ``k = (yy + 1) % 3``: ``rows[iz, k]`` the image
    row ``(z_src[iz], yy)`` extended along x (source columns ``xl``, ``xr`` at the ends; a
    row of cval outside the image in constant mode), ``tx[k]`` their d/dx smoothed along
    z, ``dz[k]`` their d/dz."""
    _, ny, nx = img.shape
    k = (yy + 1) % 3
    y_src = _gm_source(yy, ny, mode)
    for iz in range(3):
        zz = z_src[iz]
        if zz < 0 or y_src < 0:
            for p in range(nx + 2):
                rows[iz, k, p] = cval
        else:
            rows[iz, k, 0] = img[zz, y_src, xl] if xl >= 0 else cval
            for x in range(nx):
                rows[iz, k, x + 1] = img[zz, y_src, x]
            rows[iz, k, nx + 1] = img[zz, y_src, xr] if xr >= 0 else cval
    if z_in0 and z_in2:
        for x in range(nx):
            x2 = x + 2
            tx[k, x] = _smooth3(rows[0, k, x2] - rows[0, k, x], rows[1, k, x2] - rows[1, k, x],
                                rows[2, k, x2] - rows[2, k, x], s)
    else:
        for x in range(nx):
            x2 = x + 2
            tx[k, x] = _smooth3(_pick(z_in0, rows[0, k, x2] - rows[0, k, x], cval),
                                rows[1, k, x2] - rows[1, k, x],
                                _pick(z_in2, rows[2, k, x2] - rows[2, k, x], cval), s)
    for p in range(nx + 2):
        dz[k, p] = rows[2, k, p] - rows[0, k, p]


@numba.njit(parallel=True, cache=True)
def _gradient_magnitude_3d(img, out, s, use_z, use_y, use_x, mode, cval, block, n_blocks, n_workers, counter):
    nz, ny, nx = img.shape
    zero = img.dtype.type(0)
    xl = _extend(-1, nx, mode)
    xr = _extend(nx, nx, mode)
    use_all = use_z and use_y and use_x
    for worker in prange(n_workers):
        rows = np.empty((3, 3, nx + 2), dtype=img.dtype)  # [iz, slot]: extended rows
        tx = np.empty((3, nx), dtype=img.dtype)  # [slot]: d/dx, then z-smoothing
        dz = np.empty((3, nx + 2), dtype=img.dtype)  # [slot]: d/dz
        gy_part = np.empty(nx + 2, dtype=img.dtype)
        gz_part = np.empty(nx + 2, dtype=img.dtype)
        z_src = np.empty(3, dtype=np.int64)
        while True:
            b = _take_block(counter)
            if b >= n_blocks:
                break
            ring_z = -1  # the ring holds the columns ring_y - 1 .. ring_y + 1 of plane ring_z
            ring_y = -1
            z_in0 = z_in2 = True
            for r in range(b * block, min(nz * ny, (b + 1) * block)):
                z = r // ny
                y = r - z * ny
                if z != ring_z:
                    for iz in range(3):
                        z_src[iz] = _gm_source(z + iz - 1, nz, mode)
                    z_in0 = z_src[0] >= 0
                    z_in2 = z_src[2] >= 0
                if z != ring_z or y != ring_y + 1:
                    _gm_column_3d(rows, tx, dz, img, z_src, z_in0, z_in2, y - 1, xl, xr, s, mode, cval)
                    _gm_column_3d(rows, tx, dz, img, z_src, z_in0, z_in2, y, xl, xr, s, mode, cval)
                _gm_column_3d(rows, tx, dz, img, z_src, z_in0, z_in2, y + 1, xl, xr, s, mode, cval)
                ring_z = z
                ring_y = y
                y_in0 = _gm_source(y - 1, ny, mode) >= 0
                y_in2 = _gm_source(y + 1, ny, mode) >= 0
                k0 = y % 3  # slots of the columns y - 1, y, y + 1
                k1 = (y + 1) % 3
                k2 = (y + 2) % 3
                inside = z_in0 and z_in2 and y_in0 and y_in2
                # d/dy then z-smoothing, and d/dz then y-smoothing, at every extended x;
                # their x-smoothing comes last, in the loop below
                if inside:
                    for p in range(nx + 2):
                        gy_part[p] = _smooth3(rows[0, k2, p] - rows[0, k0, p],
                                              rows[1, k2, p] - rows[1, k0, p],
                                              rows[2, k2, p] - rows[2, k0, p], s)
                        gz_part[p] = _smooth3(dz[k0, p], dz[k1, p], dz[k2, p], s)
                else:
                    for p in range(nx + 2):
                        gy_part[p] = _smooth3(_pick(z_in0, rows[0, k2, p] - rows[0, k0, p], cval),
                                              rows[1, k2, p] - rows[1, k0, p],
                                              _pick(z_in2, rows[2, k2, p] - rows[2, k0, p], cval), s)
                        gz_part[p] = _smooth3(_pick(y_in0, dz[k0, p], cval), dz[k1, p],
                                              _pick(y_in2, dz[k2, p], cval), s)
                _close_row_ends(gy_part, mode, cval)
                _close_row_ends(gz_part, mode, cval)
                # d/dx then z-smoothing per window column (tx), then y-smoothing
                if use_all and y_in0 and y_in2:
                    for x in range(nx):
                        x2 = x + 2
                        gx = _smooth3(tx[k0, x], tx[k1, x], tx[k2, x], s)
                        gy = _smooth3(gy_part[x], gy_part[x + 1], gy_part[x2], s)
                        gz = _smooth3(gz_part[x], gz_part[x + 1], gz_part[x2], s)
                        acc = zero + gz * gz
                        acc = acc + gy * gy
                        acc = acc + gx * gx
                        out[z, y, x] = np.sqrt(acc)
                    continue
                for x in range(nx):
                    x2 = x + 2
                    gx = _smooth3(_pick(y_in0, tx[k0, x], cval), tx[k1, x],
                                  _pick(y_in2, tx[k2, x], cval), s)
                    gy = _smooth3(gy_part[x], gy_part[x + 1], gy_part[x2], s)
                    gz = _smooth3(gz_part[x], gz_part[x + 1], gz_part[x2], s)
                    acc = zero
                    if use_z:
                        acc += gz * gz
                    if use_y:
                        acc += gy * gy
                    if use_x:
                        acc += gx * gx
                    out[z, y, x] = np.sqrt(acc)


def gradient_magnitude(image, kind_code, axes, mode_code, cval, out=None):
    """Fused Sobel/Prewitt gradient magnitude ``sqrt(sum_a d_a**2)``.

    ``d_a`` equals ``scipy.ndimage.sobel(image, axis=a)`` (``prewitt`` for
    ``kind_code == 1``): ``[-1, 0, 1]`` along ``a`` and ``[1, 2, 1]`` (``[1, 1, 1]``)
    along every other axis of the array, all in one pass over a 3**ndim window.

    Parameters
    ----------
    image : ndarray
        float32 or float64 array, 1-D to 3-D.
    kind_code : int
        0 for Sobel, 1 for Prewitt.
    axes : tuple of int
        Distinct axes whose derivatives enter the magnitude (may be empty: zeros).
    mode_code : int
        Boundary mode code from :mod:`medimg_fast._shared.boundary`.
    cval : float
        Value outside the array in constant mode.
    out : ndarray, optional
        Array to write the result into (see :func:`_destination`); default a new one.

    Returns
    -------
    ndarray
        ``out``, or a new array of the image's dtype and shape.
    """
    image = _check_image(image)
    if kind_code not in (0, 1):
        raise ValueError(f"`kind_code` must be 0 (sobel) or 1 (prewitt), got {kind_code!r}")
    ndim = image.ndim
    if ndim > 3:
        raise ValueError(f"`image` must be 1-D to 3-D for this kernel, got {ndim}-D")
    wanted = [False] * ndim
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise ValueError(f"`axes` must hold axes of a {ndim}-D image, got {axes!r}")
        if wanted[a % ndim]:
            raise ValueError(f"`axes` must not repeat an axis, got {axes!r}")
        wanted[a % ndim] = True
    out = _destination(image, out)
    if image.size == 0:
        return out
    dtype = image.dtype.type
    s = dtype(2.0 if kind_code == 0 else 1.0)
    mode_code = int(mode_code)
    if ndim == 1:
        if wanted[0]:
            _launch(_gradient_magnitude_1d, image, out, mode_code, dtype(cval))
        else:
            out[:] = 0
    elif ndim == 2:
        block, n_blocks, n_workers, counter = _work_queue(image.shape[0])
        _launch(_gradient_magnitude_2d, image, out, s, wanted[0], wanted[1], mode_code,
                dtype(cval), block, n_blocks, n_workers, counter)
    else:
        block, n_blocks, n_workers, counter = _work_queue(image.shape[0] * image.shape[1])
        _launch(_gradient_magnitude_3d, image, out, s, wanted[0], wanted[1], wanted[2],
                mode_code, dtype(cval), block, n_blocks, n_workers, counter)
    return out


# --------------------------------------------------------------------------------------
# generated comparator networks: network_source(name, count, count // 2); do not edit
# --------------------------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _median_of_9(
        v0, v1, v2, v3, v4, v5, v6, v7, v8,
):
    """Rank 4 of 9 values (generated by network_source)."""
    v0, v1 = min(v0, v1), max(v1, v0)
    v2, v3 = min(v2, v3), max(v3, v2)
    v4, v5 = min(v4, v5), max(v5, v4)
    v0, v2 = min(v0, v2), max(v2, v0)
    v0, v4 = min(v0, v4), max(v4, v0)
    v3, v1 = min(v3, v1), max(v1, v3)
    v5, v1 = min(v5, v1), max(v1, v5)
    v2, v3 = min(v2, v3), max(v3, v2)
    v4, v5 = min(v4, v5), max(v5, v4)
    v2, v4 = min(v2, v4), max(v4, v2)
    v2, v6 = min(v2, v6), max(v6, v2)
    v5, v3 = min(v5, v3), max(v3, v5)
    v6, v3 = min(v6, v3), max(v3, v6)
    v4, v5 = min(v4, v5), max(v5, v4)
    v6, v7 = min(v6, v7), max(v7, v6)
    v4, v6 = min(v4, v6), max(v6, v4)
    v7, v5 = min(v7, v5), max(v5, v7)
    v6, v7 = min(v6, v7), max(v7, v6)
    v6, v8 = min(v6, v8), max(v8, v6)
    v8, v7 = min(v8, v7), max(v7, v8)
    return v8


@numba.njit(cache=True, inline="always")
def _median_of_27(
        v0, v1, v2, v3, v4, v5, v6, v7, v8, v9,
        v10, v11, v12, v13, v14, v15, v16, v17, v18, v19,
        v20, v21, v22, v23, v24, v25, v26,
):
    """Rank 13 of 27 values (generated by network_source)."""
    v0, v1 = min(v0, v1), max(v1, v0)
    v2, v3 = min(v2, v3), max(v3, v2)
    v4, v5 = min(v4, v5), max(v5, v4)
    v6, v7 = min(v6, v7), max(v7, v6)
    v8, v9 = min(v8, v9), max(v9, v8)
    v10, v11 = min(v10, v11), max(v11, v10)
    v12, v13 = min(v12, v13), max(v13, v12)
    v0, v2 = min(v0, v2), max(v2, v0)
    v0, v4 = min(v0, v4), max(v4, v0)
    v0, v6 = min(v0, v6), max(v6, v0)
    v0, v8 = min(v0, v8), max(v8, v0)
    v0, v10 = min(v0, v10), max(v10, v0)
    v0, v12 = min(v0, v12), max(v12, v0)
    v0, v14 = min(v0, v14), max(v14, v0)
    v3, v1 = min(v3, v1), max(v1, v3)
    v5, v1 = min(v5, v1), max(v1, v5)
    v7, v1 = min(v7, v1), max(v1, v7)
    v9, v1 = min(v9, v1), max(v1, v9)
    v11, v1 = min(v11, v1), max(v1, v11)
    v13, v1 = min(v13, v1), max(v1, v13)
    v14, v1 = min(v14, v1), max(v1, v14)
    v2, v3 = min(v2, v3), max(v3, v2)
    v4, v5 = min(v4, v5), max(v5, v4)
    v6, v7 = min(v6, v7), max(v7, v6)
    v8, v9 = min(v8, v9), max(v9, v8)
    v10, v11 = min(v10, v11), max(v11, v10)
    v12, v13 = min(v12, v13), max(v13, v12)
    v14, v15 = min(v14, v15), max(v15, v14)
    v2, v4 = min(v2, v4), max(v4, v2)
    v2, v6 = min(v2, v6), max(v6, v2)
    v2, v8 = min(v2, v8), max(v8, v2)
    v2, v10 = min(v2, v10), max(v10, v2)
    v2, v12 = min(v2, v12), max(v12, v2)
    v2, v14 = min(v2, v14), max(v14, v2)
    v5, v3 = min(v5, v3), max(v3, v5)
    v7, v3 = min(v7, v3), max(v3, v7)
    v9, v3 = min(v9, v3), max(v3, v9)
    v11, v3 = min(v11, v3), max(v3, v11)
    v13, v3 = min(v13, v3), max(v3, v13)
    v15, v3 = min(v15, v3), max(v3, v15)
    v4, v5 = min(v4, v5), max(v5, v4)
    v6, v7 = min(v6, v7), max(v7, v6)
    v8, v9 = min(v8, v9), max(v9, v8)
    v10, v11 = min(v10, v11), max(v11, v10)
    v12, v13 = min(v12, v13), max(v13, v12)
    v14, v15 = min(v14, v15), max(v15, v14)
    v4, v6 = min(v4, v6), max(v6, v4)
    v4, v8 = min(v4, v8), max(v8, v4)
    v4, v10 = min(v4, v10), max(v10, v4)
    v4, v12 = min(v4, v12), max(v12, v4)
    v4, v14 = min(v4, v14), max(v14, v4)
    v4, v16 = min(v4, v16), max(v16, v4)
    v7, v5 = min(v7, v5), max(v5, v7)
    v9, v5 = min(v9, v5), max(v5, v9)
    v11, v5 = min(v11, v5), max(v5, v11)
    v13, v5 = min(v13, v5), max(v5, v13)
    v15, v5 = min(v15, v5), max(v5, v15)
    v16, v5 = min(v16, v5), max(v5, v16)
    v6, v7 = min(v6, v7), max(v7, v6)
    v8, v9 = min(v8, v9), max(v9, v8)
    v10, v11 = min(v10, v11), max(v11, v10)
    v12, v13 = min(v12, v13), max(v13, v12)
    v14, v15 = min(v14, v15), max(v15, v14)
    v16, v17 = min(v16, v17), max(v17, v16)
    v6, v8 = min(v6, v8), max(v8, v6)
    v6, v10 = min(v6, v10), max(v10, v6)
    v6, v12 = min(v6, v12), max(v12, v6)
    v6, v14 = min(v6, v14), max(v14, v6)
    v6, v16 = min(v6, v16), max(v16, v6)
    v9, v7 = min(v9, v7), max(v7, v9)
    v11, v7 = min(v11, v7), max(v7, v11)
    v13, v7 = min(v13, v7), max(v7, v13)
    v15, v7 = min(v15, v7), max(v7, v15)
    v17, v7 = min(v17, v7), max(v7, v17)
    v8, v9 = min(v8, v9), max(v9, v8)
    v10, v11 = min(v10, v11), max(v11, v10)
    v12, v13 = min(v12, v13), max(v13, v12)
    v14, v15 = min(v14, v15), max(v15, v14)
    v16, v17 = min(v16, v17), max(v17, v16)
    v8, v10 = min(v8, v10), max(v10, v8)
    v8, v12 = min(v8, v12), max(v12, v8)
    v8, v14 = min(v8, v14), max(v14, v8)
    v8, v16 = min(v8, v16), max(v16, v8)
    v8, v18 = min(v8, v18), max(v18, v8)
    v11, v9 = min(v11, v9), max(v9, v11)
    v13, v9 = min(v13, v9), max(v9, v13)
    v15, v9 = min(v15, v9), max(v9, v15)
    v17, v9 = min(v17, v9), max(v9, v17)
    v18, v9 = min(v18, v9), max(v9, v18)
    v10, v11 = min(v10, v11), max(v11, v10)
    v12, v13 = min(v12, v13), max(v13, v12)
    v14, v15 = min(v14, v15), max(v15, v14)
    v16, v17 = min(v16, v17), max(v17, v16)
    v18, v19 = min(v18, v19), max(v19, v18)
    v10, v12 = min(v10, v12), max(v12, v10)
    v10, v14 = min(v10, v14), max(v14, v10)
    v10, v16 = min(v10, v16), max(v16, v10)
    v10, v18 = min(v10, v18), max(v18, v10)
    v13, v11 = min(v13, v11), max(v11, v13)
    v15, v11 = min(v15, v11), max(v11, v15)
    v17, v11 = min(v17, v11), max(v11, v17)
    v19, v11 = min(v19, v11), max(v11, v19)
    v12, v13 = min(v12, v13), max(v13, v12)
    v14, v15 = min(v14, v15), max(v15, v14)
    v16, v17 = min(v16, v17), max(v17, v16)
    v18, v19 = min(v18, v19), max(v19, v18)
    v12, v14 = min(v12, v14), max(v14, v12)
    v12, v16 = min(v12, v16), max(v16, v12)
    v12, v18 = min(v12, v18), max(v18, v12)
    v12, v20 = min(v12, v20), max(v20, v12)
    v15, v13 = min(v15, v13), max(v13, v15)
    v17, v13 = min(v17, v13), max(v13, v17)
    v19, v13 = min(v19, v13), max(v13, v19)
    v20, v13 = min(v20, v13), max(v13, v20)
    v14, v15 = min(v14, v15), max(v15, v14)
    v16, v17 = min(v16, v17), max(v17, v16)
    v18, v19 = min(v18, v19), max(v19, v18)
    v20, v21 = min(v20, v21), max(v21, v20)
    v14, v16 = min(v14, v16), max(v16, v14)
    v14, v18 = min(v14, v18), max(v18, v14)
    v14, v20 = min(v14, v20), max(v20, v14)
    v17, v15 = min(v17, v15), max(v15, v17)
    v19, v15 = min(v19, v15), max(v15, v19)
    v21, v15 = min(v21, v15), max(v15, v21)
    v16, v17 = min(v16, v17), max(v17, v16)
    v18, v19 = min(v18, v19), max(v19, v18)
    v20, v21 = min(v20, v21), max(v21, v20)
    v16, v18 = min(v16, v18), max(v18, v16)
    v16, v20 = min(v16, v20), max(v20, v16)
    v16, v22 = min(v16, v22), max(v22, v16)
    v19, v17 = min(v19, v17), max(v17, v19)
    v21, v17 = min(v21, v17), max(v17, v21)
    v22, v17 = min(v22, v17), max(v17, v22)
    v18, v19 = min(v18, v19), max(v19, v18)
    v20, v21 = min(v20, v21), max(v21, v20)
    v22, v23 = min(v22, v23), max(v23, v22)
    v18, v20 = min(v18, v20), max(v20, v18)
    v18, v22 = min(v18, v22), max(v22, v18)
    v21, v19 = min(v21, v19), max(v19, v21)
    v23, v19 = min(v23, v19), max(v19, v23)
    v20, v21 = min(v20, v21), max(v21, v20)
    v22, v23 = min(v22, v23), max(v23, v22)
    v20, v22 = min(v20, v22), max(v22, v20)
    v20, v24 = min(v20, v24), max(v24, v20)
    v23, v21 = min(v23, v21), max(v21, v23)
    v24, v21 = min(v24, v21), max(v21, v24)
    v22, v23 = min(v22, v23), max(v23, v22)
    v24, v25 = min(v24, v25), max(v25, v24)
    v22, v24 = min(v22, v24), max(v24, v22)
    v25, v23 = min(v25, v23), max(v23, v25)
    v24, v25 = min(v24, v25), max(v25, v24)
    v24, v26 = min(v24, v26), max(v26, v24)
    v26, v25 = min(v26, v25), max(v25, v26)
    return v26


__all__ = ["SCHEDULE_MAX_COUNT", "correlate", "correlate1d", "correlate_separable",
           "extremum_filter1d", "gradient_magnitude", "parallel_launch_lock", "rank_filter",
           "selection_schedule"]
