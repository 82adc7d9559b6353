"""Intensity statistics of a whole NumPy ROI in a few compiled passes (numba backend).

The result is bit-identical to :func:`._intensity.intensity_statistics` with the numba
kernels: the moments are the same sequential float64 sums in the same (C) order, the
quantiles are exact order statistics (any monotone binning finds the same ones), and
the sums of absolute deviations are NumPy sums of the same float64 arrays the
reference path builds (``|v - c|`` is written by a compiled loop instead of two NumPy
temporaries), so they are equal to the last bit.  What is saved is the NumPy
temporaries and extra passes: one gathering pass (values, sum, sum of squares, min,
max), one pass for the central moments fused with the quantile histogram, one pass
collecting the few candidate values of all wanted ranks at once, and the deviation
arrays.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ._intensity import (
    _COLLECT_MAX,
    _NBINS,
    _QUANTILES,
    quantile_ranks,
    quantiles_from_order_stats,
    ranks_by_bin,
)
from ._partials import Moments

__all__ = ["roi_statistics"]


@functools.lru_cache(maxsize=1)
def _compiled():
    import numba

    from . import _numba_inline as inl

    @numba.njit(cache=True, nogil=True)
    def absdev(v, c, out):
        """``out[:n] = |v - c|`` without temporaries; NumPy then sums it."""
        n = v.size
        for i in range(n):
            out[i] = abs(v[i] - c)
        return out[:n]

    @numba.njit(cache=True, nogil=True)
    def gather(image, mask):
        """ROI values in C order as float64, with their sum, sum of squares, min, max."""
        flat = image.ravel()
        mflat = mask.ravel()
        n = 0
        for i in range(mflat.size):
            if mflat[i]:
                n += 1
        v = np.empty(n, np.float64)
        s = 0.0
        ss = 0.0
        vmin = np.inf
        vmax = -np.inf
        k = 0
        for i in range(mflat.size):
            if mflat[i]:
                x = np.float64(flat[i])
                v[k] = x
                k += 1
                s += x
                ss += x * x
                vmin = min(vmin, x)
                vmax = max(vmax, x)
        return v, s, ss, vmin, vmax

    @numba.njit(cache=True, nogil=True)
    def central_and_hist(v, mean, lo, hi, nbins):
        """Central moment sums (sequential, as the ``moments`` kernel) and per-bin
        count/min/max of a monotone binning of ``[lo, hi]``."""
        counts = np.zeros(nbins, np.int64)
        mins = np.full(nbins, np.inf)
        maxs = np.full(nbins, -np.inf)
        scale = nbins / (hi - lo) if hi > lo else 0.0
        m2 = 0.0
        m3 = 0.0
        m4 = 0.0
        for x in v:
            m2, m3, m4 = inl.central_sums_add(x, mean, m2, m3, m4)
            b = inl.quantile_bin(x, lo, scale, nbins)
            counts[b] += 1
            mins[b] = min(mins[b], x)
            maxs[b] = max(maxs[b], x)
        return m2, m3, m4, counts, mins, maxs

    @numba.njit(cache=True, nogil=True)
    def hist(v, lo, hi, nbins):
        """Per-bin count/min/max of the values in ``[lo, hi]`` (binning as above)."""
        counts = np.zeros(nbins, np.int64)
        mins = np.full(nbins, np.inf)
        maxs = np.full(nbins, -np.inf)
        scale = nbins / (hi - lo) if hi > lo else 0.0
        for x in v:
            if x < lo or x > hi:
                continue
            b = inl.quantile_bin(x, lo, scale, nbins)
            counts[b] += 1
            mins[b] = min(mins[b], x)
            maxs[b] = max(maxs[b], x)
        return counts, mins, maxs

    @numba.njit(cache=True, nogil=True)
    def collect(v, lo, hi, nbins, slot_of_bin, sizes):
        """The values of the bins with ``slot_of_bin[b] >= 0`` (binning as ``hist``),
        grouped by slot; ``sizes`` are the bins' counts."""
        ns = sizes.size
        starts = np.zeros(ns + 1, np.int64)
        for w in range(ns):
            starts[w + 1] = starts[w] + sizes[w]
        out = np.empty(starts[ns], np.float64)
        fill = starts[:ns].copy()
        scale = nbins / (hi - lo) if hi > lo else 0.0
        for x in v:
            if x < lo or x > hi:
                continue
            w = slot_of_bin[inl.quantile_bin(x, lo, scale, nbins)]
            if w >= 0:
                out[fill[w]] = x
                fill[w] += 1
        return out, starts

    @numba.njit(cache=True, nogil=True)
    def inside(v, p10, p90, buf):
        """The values in ``[p10, p90]``, in order (branch-free: the test is random)."""
        k = 0
        for x in v:
            buf[k] = x
            k += (x >= p10) & (x <= p90)
        return buf[:k]

    return absdev, gather, central_and_hist, hist, collect, inside


def _select(v, vmin, vmax, hist0):
    """Exact order statistics for the type-7 quantiles: the selection of
    :func:`._intensity.exact_quantiles`, each round's candidate bins collected in one
    compiled pass per histogrammed window."""
    _, _, _, hist, collect, _ = _compiled()
    n = v.size
    order_stats: dict[int, float] = {}
    pending = [(vmin, vmax, 0, quantile_ranks(n, _QUANTILES), hist0)]
    while pending:
        todo, pending = pending, []
        for lo, hi, off, rs, h in todo:
            if lo == hi:
                for r in rs:
                    order_stats[r] = lo
                continue
            counts, mins, maxs = h if h is not None else hist(v, lo, hi, _NBINS)
            cum, by_bin = ranks_by_bin(counts, off, rs)
            slot_of_bin = np.full(_NBINS, -1, np.int64)
            gathered = []
            for b, brs in by_bin.items():
                if mins[b] == maxs[b] or counts[b] > _COLLECT_MAX:
                    pending.append((float(mins[b]), float(maxs[b]), int(cum[b]), brs, None))
                else:
                    slot_of_bin[b] = len(gathered)
                    gathered.append((b, brs))
            if not gathered:
                continue
            sizes = np.array([counts[b] for b, _ in gathered], np.int64)
            vals, starts = collect(v, lo, hi, _NBINS, slot_of_bin, sizes)
            for k, (b, brs) in enumerate(gathered):
                sel = np.sort(vals[starts[k]:starts[k + 1]])
                for r in brs:
                    order_stats[r] = float(sel[r - int(cum[b])])
    return quantiles_from_order_stats(order_stats, n, _QUANTILES)


def roi_statistics(image, mask) -> tuple[Moments, dict[str, float]]:
    """``(moments, stat_* features)`` of the values of a NumPy ``image`` where ``mask``.

    Equal bit for bit to ``roi_moments`` and ``intensity_statistics`` of the numba
    kernels on ``BlockGrid(image, mask)``.

    Raises
    ------
    ValueError
        If ``mask`` selects no voxel.
    """
    from ._intensity import statistics_features

    absdev, gather, central_and_hist, _, _, inside = _compiled()
    image = np.ascontiguousarray(image)
    if image.dtype.kind == "b":
        image = image.astype(np.uint8)
    v, s, ss, vmin, vmax = gather(image, np.ascontiguousarray(mask, dtype=np.bool_))
    n = v.size
    if n == 0:
        raise ValueError("the ROI is empty: `mask` selects no voxel")
    mean = s / n
    m2, m3, m4, counts, mins, maxs = central_and_hist(v, mean, vmin, vmax, _NBINS)
    q = _select(v, vmin, vmax, (counts, mins, maxs))
    mom = Moments.of(n, mean, m2, m3, m4, vmin, vmax, ss)
    mean = mom.mean
    median, p10, p90, p25, p75 = q[0.5], q[0.10], q[0.90], q[0.25], q[0.75]
    # the sums are NumPy's (its reduction order) over the arrays the reference builds
    buf = np.empty_like(v)
    abs_mean = absdev(v, mean, buf).sum()
    abs_median = absdev(v, median, buf).sum()
    vin = inside(v, p10, p90, np.empty_like(v))
    n1090 = np.float64(vin.size)
    s1090 = vin.sum()
    rmad = absdev(vin, s1090 / n1090, buf).sum() / n1090 if n1090 else math.nan
    stats = statistics_features(mom, median, p10, p90, p25, p75, abs_mean, abs_median, rmad)
    return mom, stats
