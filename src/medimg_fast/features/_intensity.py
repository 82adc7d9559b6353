"""IBSI intensity statistics (``stat_*``), exact from per-block partials.

Moments, minimum, maximum and energy come from one pass of mergeable
:class:`~._partials.Moments`.  Quantiles are exact order statistics found by selection
over passes (no sort of the whole ROI): a pass histograms the values into
``_NBINS`` equal bins between the known bounds, keeping each bin's count, minimum and
maximum; the rank wanted falls in one bin, whose members are exactly the values in
``[bin min, bin max]`` because binning is monotone.  If that bin holds one distinct value
the order statistic is known; if it holds at most ``_COLLECT_MAX`` values they are
gathered and sorted in the next pass; otherwise the bin is histogrammed again.  Integer
or discretised images finish after one histogram pass.  Percentiles follow NumPy's
default (linear interpolation between order statistics, Hyndman & Fan type 7).  The
deviations about the mean, the median and the 10-90 % mean take two more passes.
"""

from __future__ import annotations

import math

import numpy as np

from ._partials import Moments, add

__all__ = ["STAT_TAGS", "exact_quantiles", "intensity_statistics", "roi_moments"]

STAT_TAGS = (
    "stat_mean", "stat_var", "stat_skew", "stat_kurt", "stat_median", "stat_min",
    "stat_p10", "stat_p90", "stat_max", "stat_iqr", "stat_range", "stat_mad", "stat_rmad",
    "stat_medad", "stat_cov", "stat_qcod", "stat_energy", "stat_rms",
)

_NBINS = 4096
_COLLECT_MAX = 1 << 16
_QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90)


def roi_moments(grid, kernels) -> Moments:
    """Pass 1: mergeable moments of the ROI values."""
    mom = grid.reduce_values(lambda v: Moments.of(*kernels.moments(v)), Moments.merge)
    if mom is None or mom.n == 0:
        raise ValueError("the ROI is empty: `mask` selects no voxel")
    return mom


def quantile_ranks(n: int, qs) -> list[int]:
    """The 0-based ranks whose values the type-7 quantiles ``qs`` of ``n`` values need:
    ``floor((n - 1) q)`` and the next one (sorted, each once)."""
    ranks = set()
    for q in qs:
        j = math.floor((n - 1) * q)
        ranks.add(j)
        if j + 1 < n:
            ranks.add(j + 1)
    return sorted(ranks)


def ranks_by_bin(counts, offset: int, ranks) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Locate ``ranks`` in a window's histogram: ``(cum, {bin: ranks in it})`` where
    ``cum[b]`` is the rank of the first value of bin ``b`` (the window starts at rank
    ``offset``)."""
    cum = np.concatenate([[0], np.cumsum(counts)]) + offset
    by_bin: dict[int, list[int]] = {}
    for r in ranks:
        b = int(np.searchsorted(cum, r, side="right") - 1)
        by_bin.setdefault(b, []).append(r)
    return cum, by_bin


def exact_quantiles(grid, kernels, mom: Moments, qs=_QUANTILES) -> dict[float, float]:
    """Exact type-7 quantiles of the ROI values by multi-pass selection (see module)."""
    n = mom.n
    # windows: (lo, hi, rank offset, ranks inside), every value in [lo, hi] has a rank
    # in [offset, offset + count)
    order_stats: dict[int, float] = {}
    pending = [(mom.min, mom.max, 0, quantile_ranks(n, qs))]
    while pending:
        hist_windows = []
        collect_windows = []
        for lo, hi, off, rs in pending:
            if lo == hi:
                for r in rs:
                    order_stats[r] = lo
            else:
                hist_windows.append((lo, hi, off, rs))
        pending = []
        if hist_windows:
            def _hist(v, windows=tuple(hist_windows)):
                return tuple(kernels.bin_stats(v, lo, hi, _NBINS) for lo, hi, _, _ in windows)

            def _merge(a, b):
                return tuple((ca + cb, np.minimum(ia, ib), np.maximum(xa, xb))
                             for (ca, ia, xa), (cb, ib, xb) in zip(a, b))

            results = grid.reduce_values(_hist, _merge)
            for (lo, hi, off, rs), (counts, mins, maxs) in zip(hist_windows, results):
                cum, by_bin = ranks_by_bin(counts, off, rs)
                for b, brs in by_bin.items():
                    window = (float(mins[b]), float(maxs[b]), int(cum[b]), brs)
                    if mins[b] == maxs[b] or counts[b] > _COLLECT_MAX:
                        pending.append(window)
                    else:
                        collect_windows.append(window)
        if collect_windows:
            def _collect(v, windows=tuple(collect_windows)):
                return tuple(v[(v >= lo) & (v <= hi)] for lo, hi, _, _ in windows)

            def _cat(a, b):
                return tuple(np.concatenate([x, y]) for x, y in zip(a, b))

            results = grid.reduce_values(_collect, _cat)
            for (_, _, off, rs), vals in zip(collect_windows, results):
                vals = np.sort(vals)
                for r in rs:
                    order_stats[r] = float(vals[r - off])
    return quantiles_from_order_stats(order_stats, n, qs)


def quantiles_from_order_stats(order_stats, n: int, qs) -> dict[float, float]:
    """Quantiles ``qs`` of ``n`` values from the order statistics they need.

    ``order_stats`` maps a rank to its value (ranks ``floor((n-1) q)`` and the next one).
    Linear interpolation with NumPy's lerp: the same arithmetic as
    ``np.percentile(method="linear")``, so results are bit-identical to it.
    """
    out = {}
    for q in qs:
        h = (n - 1) * q
        j = math.floor(h)
        lo = order_stats[j]
        hi = order_stats[j + 1] if j + 1 < n else lo
        t = h - j
        out[q] = lo + (hi - lo) * t if t < 0.5 else hi - (hi - lo) * (1 - t)
    return out


def _central_moment_features(mom: Moments) -> dict[str, float]:
    n = mom.n
    var = mom.m2 / n
    if var > 0:
        skew = (mom.m3 / n) / var ** 1.5
        kurt = (mom.m4 / n) / var ** 2 - 3.0
    else:  # IBSI: a constant ROI has zero skewness and kurtosis
        skew = 0.0
        kurt = 0.0
    return {"mean": mom.mean, "var": var, "skew": skew, "kurt": kurt}


def intensity_statistics(grid, kernels, mom: Moments | None = None) -> dict[str, float]:
    """All 18 IBSI intensity statistics of the ROI values (``stat_*``)."""
    if mom is None:
        mom = roi_moments(grid, kernels)
    q = exact_quantiles(grid, kernels, mom)
    mean = mom.mean
    median = q[0.5]
    p10, p90 = q[0.10], q[0.90]

    def _deviations(v):
        inside = v[(v >= p10) & (v <= p90)]
        return (np.abs(v - mean).sum(), np.abs(v - median).sum(),
                np.float64(inside.size), inside.sum())

    abs_mean, abs_median, n1090, s1090 = grid.reduce_values(_deviations, add)
    m1090 = s1090 / n1090 if n1090 else math.nan

    def _robust(v):
        inside = v[(v >= p10) & (v <= p90)]
        return np.abs(inside - m1090).sum()

    # empty only for tiny ROIs whose p10 and p90 fall between two consecutive values
    rmad = grid.reduce_values(_robust, add) / n1090 if n1090 else math.nan
    return statistics_features(mom, median, p10, p90, q[0.25], q[0.75], abs_mean, abs_median,
                               rmad)


def statistics_features(mom, median, p10, p90, p25, p75, abs_mean, abs_median, rmad) -> dict:
    """The 18 IBSI intensity statistics from merged moments, quantiles and deviation sums.

    One place for the formulas, shared by the block path and the compiled fast path.
    """
    n = mom.n
    mean = mom.mean
    c = _central_moment_features(mom)
    std = math.sqrt(c["var"])
    return {
        "stat_mean": mean,
        "stat_var": c["var"],
        "stat_skew": c["skew"],
        "stat_kurt": c["kurt"],
        "stat_median": median,
        "stat_min": mom.min,
        "stat_p10": p10,
        "stat_p90": p90,
        "stat_max": mom.max,
        "stat_iqr": p75 - p25,
        "stat_range": mom.max - mom.min,
        "stat_mad": abs_mean / n,
        "stat_rmad": rmad,
        "stat_medad": abs_median / n,
        "stat_cov": std / mean if mean != 0 else math.nan,
        "stat_qcod": (p75 - p25) / (p75 + p25) if (p75 + p25) != 0 else math.nan,
        "stat_energy": mom.sumsq,
        "stat_rms": math.sqrt(mom.sumsq / n),
    }
