"""Counting kernels, each in two versions: pure NumPy and numba-compiled.

The two versions compute the same integers (counts) and the same floats up to the
order of summation, so ``backend="numba"`` and ``backend="numpy"`` agree to float64
rounding.  numba is imported lazily: ``import medimg_fast.features`` does not need it.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["kernels_for"]

#: Blocks of at least this many voxels use the multi-threaded numba kernels.
_PARALLEL_MIN = 1 << 18


# -- NumPy ---------------------------------------------------------------------------
def _np_moments(values):
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    if n == 0:
        return (0, 0.0, 0.0, 0.0, 0.0, np.inf, -np.inf, 0.0)
    mean = v.mean()
    d = v - mean
    d2 = d * d
    return (n, mean, d2.sum(), (d2 * d).sum(), (d2 * d2).sum(), v.min(), v.max(),
            np.dot(v, v))


def _np_discretise(image, mask, lo, scale_num, scale_den, ng):
    """Grey levels 1..ng inside the mask, 0 outside.

    ``level = floor(scale_num * (x - lo) / scale_den) + 1`` clipped to ``[1, ng]``: IBSI
    fixed bin size is ``scale_num=1, scale_den=bin_width``; fixed bin number is
    ``scale_num=ng, scale_den=max-min`` (the maximum lands in bin ``ng``).
    """
    x = np.asarray(image, dtype=np.float64)
    lev = np.floor(scale_num * (x - lo) / scale_den) + 1.0
    np.clip(lev, 1, ng, out=lev)
    out = lev.astype(np.int32)
    out[~mask] = 0
    return out


def _direction_slices(shape, core, d):
    """Source and neighbour slices of the pairs (v, v + d) with v in ``core``."""
    src, dst = [], []
    for n, c, s in zip(shape, core, d):
        c0, c1, _ = c.indices(n)
        lo = max(c0, -s)
        hi = min(c1, n - s)
        if hi <= lo:
            return None
        src.append(slice(lo, hi))
        dst.append(slice(lo + s, hi + s))
    return tuple(src), tuple(dst)


def _np_glcm(levels, core, directions, ng):
    out = np.zeros((len(directions), ng, ng), dtype=np.int64)
    for k, d in enumerate(directions):
        sl = _direction_slices(levels.shape, core, d)
        if sl is None:
            continue
        a = levels[sl[0]]
        b = levels[sl[1]]
        valid = (a > 0) & (b > 0)
        idx = (a[valid].astype(np.int64) - 1) * ng + (b[valid] - 1)
        out[k] = np.bincount(idx, minlength=ng * ng).reshape(ng, ng)
    return out


def _np_bin_stats(values, lo, hi, nbins):
    """Per-bin count, min and max of ``values`` in ``[lo, hi]`` over ``nbins`` equal bins."""
    v = values[(values >= lo) & (values <= hi)]
    counts = np.zeros(nbins, np.int64)
    mins = np.full(nbins, np.inf)
    maxs = np.full(nbins, -np.inf)
    if v.size == 0:
        return counts, mins, maxs
    idx = _bin_index(v, lo, hi, nbins)
    counts += np.bincount(idx, minlength=nbins)
    np.minimum.at(mins, idx, v)
    np.maximum.at(maxs, idx, v)
    return counts, mins, maxs


def _bin_index(v, lo, hi, nbins):
    if hi > lo:
        idx = np.floor((v - lo) / (hi - lo) * nbins).astype(np.int64)
        np.clip(idx, 0, nbins - 1, out=idx)
    else:
        idx = np.zeros(v.shape, np.int64)
    return idx


class _NumpyKernels:
    name = "numpy"
    moments = staticmethod(_np_moments)
    discretise = staticmethod(_np_discretise)
    glcm = staticmethod(_np_glcm)
    bin_stats = staticmethod(_np_bin_stats)


# -- numba ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _numba_kernels():
    import numba

    from . import _numba_inline as inl

    @numba.njit(cache=True, nogil=True)
    def moments(v):
        n = v.size
        if n == 0:
            return (0, 0.0, 0.0, 0.0, 0.0, np.inf, -np.inf, 0.0)
        s = 0.0
        ss = 0.0
        vmin = np.inf
        vmax = -np.inf
        for x in v:
            s += x
            ss += x * x
            vmin = min(vmin, x)
            vmax = max(vmax, x)
        mean = s / n
        m2 = 0.0
        m3 = 0.0
        m4 = 0.0
        for x in v:
            m2, m3, m4 = inl.central_sums_add(x, mean, m2, m3, m4)
        return (n, mean, m2, m3, m4, vmin, vmax, ss)

    def _discretise(image, mask, lo, scale_num, scale_den, ng):
        flat = image.ravel()
        mflat = mask.ravel()
        out = np.zeros(flat.size, np.int32)
        for i in numba.prange(flat.size):
            if mflat[i]:
                out[i] = inl.grey_level(flat[i], lo, scale_num, scale_den, ng)
        return out.reshape(image.shape)

    def _glcm(levels, bounds, directions, ng):
        nd = directions.shape[0]
        nz, ny, nx = levels.shape
        out = np.zeros((nd, ng, ng), np.int64)
        for k in numba.prange(nd):
            dz = directions[k, 0]
            dy = directions[k, 1]
            dx = directions[k, 2]
            z0 = max(bounds[0, 0], -dz)
            z1 = min(bounds[0, 1], nz - dz)
            y0 = max(bounds[1, 0], -dy)
            y1 = min(bounds[1, 1], ny - dy)
            x0 = max(bounds[2, 0], -dx)
            x1 = min(bounds[2, 1], nx - dx)
            for z in range(z0, z1):
                for y in range(y0, y1):
                    for x in range(x0, x1):
                        a = levels[z, y, x]
                        if a == 0:
                            continue
                        b = levels[z + dz, y + dy, x + dx]
                        if b == 0:
                            continue
                        out[k, a - 1, b - 1] += 1
        return out

    # waking numba's thread pool costs tens of ms on a loaded machine: small blocks
    # run the serial compilation of the same source
    discretise = (numba.njit(cache=True, nogil=True)(_discretise),
                  numba.njit(cache=True, nogil=True, parallel=True)(_discretise))
    glcm = (numba.njit(cache=True, nogil=True)(_glcm),
            numba.njit(cache=True, nogil=True, parallel=True)(_glcm))

    @numba.njit(cache=True, nogil=True)
    def bin_stats(values, lo, hi, nbins):
        counts = np.zeros(nbins, np.int64)
        mins = np.full(nbins, np.inf)
        maxs = np.full(nbins, -np.inf)
        span = hi - lo
        for x in values:
            if x < lo or x > hi:
                continue
            if span > 0:
                b = np.int64(np.floor((x - lo) / span * nbins))
                if b < 0:
                    b = 0
                elif b > nbins - 1:
                    b = nbins - 1
            else:
                b = 0
            counts[b] += 1
            mins[b] = min(mins[b], x)
            maxs[b] = max(maxs[b], x)
        return counts, mins, maxs

    @numba.njit(cache=True, nogil=True)
    def texture_whole(image, mask, lo, scale_num, scale_den, ng, dirs, cnt):
        """Grey-level histogram and per-direction co-occurrence counts of a whole ROI.

        Discretises into a zero-padded level volume (so neighbours need no bounds test),
        then visits each ROI voxel once for all directions.
        """
        nz, ny, nx = image.shape
        pad = 0
        for k in range(dirs.shape[0]):
            for a in range(3):
                pad = max(pad, abs(dirs[k, a]))
        levels = np.zeros((nz + 2 * pad, ny + 2 * pad, nx + 2 * pad), np.int32)
        hist = np.zeros(ng, np.int64)
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    if mask[z, y, x]:
                        g = inl.grey_level(image[z, y, x], lo, scale_num, scale_den, ng)
                        levels[z + pad, y + pad, x + pad] = g
                        hist[g - 1] += 1
        nd = dirs.shape[0]
        # counts of level pairs (a, b) in 0..ng, level 0 (outside the ROI) included: the
        # neighbour test is then an index instead of an unpredictable branch; ``cnt`` is
        # int32 (half the cache footprint) when the volume has fewer than 2**31 voxels
        stride = (ng + 1) * (ng + 1)
        py, px = ny + 2 * pad, nx + 2 * pad
        off = np.empty(nd, np.int64)
        for k in range(nd):
            off[k] = (dirs[k, 0] * py + dirs[k, 1]) * px + dirs[k, 2]
        flat = levels.ravel()
        # serial: on 2 shared cores a prange split of this loop ran several times slower
        for z in range(pad, nz + pad):
            for y in range(pad, ny + pad):
                base = (z * py + y) * px
                for x in range(pad, nx + pad):
                    a = flat[base + x]
                    if a == 0:
                        continue
                    row = a * (ng + 1)
                    for k in range(nd):
                        cnt[k * stride + row + flat[base + x + off[k]]] += 1
        out = np.zeros((nd, ng, ng), np.int64)
        for k in range(nd):
            for a in range(ng):
                for b in range(ng):
                    out[k, a, b] = cnt[k * stride + (a + 1) * (ng + 1) + b + 1]
        return hist, out, levels

    return moments, discretise, glcm, bin_stats, texture_whole


class _NumbaKernels:
    name = "numba"

    def __init__(self):
        (self._moments, self._discretise, self._glcm,
         self._bin_stats, self._texture_whole) = _numba_kernels()

    def moments(self, values):
        return self._moments(np.ascontiguousarray(values, dtype=np.float64))

    def discretise(self, image, mask, lo, scale_num, scale_den, ng):
        image = np.ascontiguousarray(image)
        if image.dtype.kind == "b":
            image = image.astype(np.uint8)
        fn = self._discretise[image.size >= _PARALLEL_MIN]
        return fn(image, np.ascontiguousarray(mask, dtype=np.bool_), float(lo),
                  float(scale_num), float(scale_den), int(ng))

    def glcm(self, levels, core, directions, ng):
        levels = np.ascontiguousarray(levels, dtype=np.int32)
        if levels.ndim != 3:
            raise ValueError(f"co-occurrence counting needs a 3-D array, got {levels.ndim}-D")
        bounds = np.array([c.indices(n)[:2] for c, n in zip(core, levels.shape)], np.int64)
        fn = self._glcm[levels.size >= _PARALLEL_MIN]
        return fn(levels, bounds, np.asarray(directions, np.int64), int(ng))

    def texture_whole(self, image, mask, lo, scale_num, scale_den, ng, directions):
        """``(histogram, glcm counts, levels)`` of a whole NumPy ROI in one compiled call:
        equal to ``bincount(discretise(...))``, ``glcm(levels, all, directions, ng)`` and
        ``discretise(...)`` (the levels are a view into a zero-padded array)."""
        image = np.ascontiguousarray(image)
        if image.dtype.kind == "b":
            image = image.astype(np.uint8)
        if image.ndim != 3:
            raise ValueError(f"co-occurrence counting needs a 3-D array, got {image.ndim}-D")
        directions = np.ascontiguousarray(directions, dtype=np.int64)
        ng = int(ng)
        # a pair count is at most the number of voxels
        dtype = np.int32 if image.size < 2**31 else np.int64
        cnt = np.zeros(len(directions) * (ng + 1) * (ng + 1), dtype)
        hist, counts, padded = self._texture_whole(
            image, np.ascontiguousarray(mask, dtype=np.bool_), float(lo), float(scale_num),
            float(scale_den), ng, directions, cnt)
        pad = (padded.shape[0] - image.shape[0]) // 2
        levels = padded[tuple(slice(pad, pad + n) for n in image.shape)]
        return hist, counts, levels

    def bin_stats(self, values, lo, hi, nbins):
        return self._bin_stats(np.ascontiguousarray(values, dtype=np.float64), float(lo),
                               float(hi), int(nbins))


@functools.cache
def kernels_for(name: str):
    """The kernel set of a resolved backend name (``cupy`` uses the numba/NumPy CPU set)."""
    if name == "numba":
        return _NumbaKernels()
    if name == "numpy":
        return _NumpyKernels()
    raise ValueError(f"no counting kernels for backend {name!r}")
