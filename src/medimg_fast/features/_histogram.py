"""IBSI discretisation and the intensity-histogram family (``ih_*``).

The histogram of grey levels is a fixed-bin count, so per-block histograms merge by
addition and every ``ih_*`` feature, quantiles included, is exact from the merged
counts: an order statistic of the discretised values is the level at which the
cumulative count passes its rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._intensity import quantile_ranks, quantiles_from_order_stats

__all__ = ["IH_TAGS", "Discretisation", "histogram_features"]

IH_TAGS = (
    "ih_mean", "ih_var", "ih_skew", "ih_kurt", "ih_median", "ih_min", "ih_p10", "ih_p90",
    "ih_max", "ih_mode", "ih_iqr", "ih_range", "ih_mad", "ih_rmad", "ih_medad", "ih_cov",
    "ih_qcod", "ih_entropy", "ih_uniformity", "ih_max_grad", "ih_max_grad_g",
    "ih_min_grad", "ih_min_grad_g",
)


@dataclass(frozen=True)
class Discretisation:
    """``level = clip(floor(scale_num * (x - lo) / scale_den) + 1, 1, n_levels)``.

    Built from the ROI minimum/maximum (pass 1) and the settings, so every block
    discretises with the same numbers.
    """

    lo: float
    scale_num: float
    scale_den: float
    n_levels: int

    @classmethod
    def from_settings(cls, settings, vmin: float, vmax: float) -> Discretisation:
        if settings.bin_width is not None:
            w = settings.bin_width
            lo = vmin if settings.bin_origin is None else settings.bin_origin
            if vmin < lo:
                raise ValueError(
                    f"the ROI minimum {vmin!r} lies below `bin_min`={lo!r}: fixed bin size "
                    "needs bin_min <= every ROI value"
                )
            n_levels = math.floor((vmax - lo) / w) + 1
            return cls(lo, 1.0, w, n_levels)
        ng = settings.effective_bin_count
        span = vmax - vmin
        if span == 0:  # a constant ROI: every voxel in level 1
            return cls(vmin, 0.0, 1.0, ng)
        return cls(vmin, float(ng), span, ng)

    def apply(self, kernels, image, mask):
        """Grey levels of a block (int32, 0 outside the mask)."""
        return kernels.discretise(image, mask, self.lo, self.scale_num, self.scale_den,
                                  self.n_levels)


def _order_stat(cum, r):
    """Level (1-based) of the order statistic of rank ``r`` (0-based)."""
    return int(np.searchsorted(cum, r, side="right")) + 1


def histogram_features(counts: np.ndarray) -> dict[str, float]:
    """The 23 IBSI intensity-histogram features from grey-level counts ``counts[i-1]``.

    Notes
    -----
    Histogram gradients use the IBSI central differences (one-sided at the ends).  When
    several levels share the highest count, ``ih_mode`` is the lowest of them; the
    gradient intensities likewise take the lowest level among ties.
    """
    counts = np.asarray(counts, dtype=np.int64)
    ng = counts.size
    n = int(counts.sum())
    if n == 0:
        raise ValueError("the ROI is empty: `mask` selects no voxel")
    levels = np.arange(1, ng + 1, dtype=np.float64)
    p = counts / n
    mean = float(np.dot(p, levels))
    d = levels - mean
    var = float(np.dot(p, d * d))
    if var > 0:
        skew = float(np.dot(p, d ** 3)) / var ** 1.5
        kurt = float(np.dot(p, d ** 4)) / var ** 2 - 3.0
    else:
        skew = kurt = 0.0
    cum = np.cumsum(counts)
    nz = np.flatnonzero(counts)
    vmin, vmax = float(nz[0] + 1), float(nz[-1] + 1)
    qs = (0.10, 0.25, 0.50, 0.75, 0.90)
    q = quantiles_from_order_stats(
        {r: _order_stat(cum, r) for r in quantile_ranks(n, qs)}, n, qs)
    median = q[0.5]
    inside = (levels >= q[0.10]) & (levels <= q[0.90])
    n_in = counts[inside].sum()
    if n_in:
        m_in = float(np.dot(counts[inside], levels[inside])) / n_in
        rmad = float(np.dot(counts[inside], np.abs(levels[inside] - m_in))) / n_in
    else:
        rmad = math.nan
    pnz = p[p > 0]
    if ng > 1:
        grad = np.empty(ng)
        grad[0] = counts[1] - counts[0]
        grad[-1] = counts[-1] - counts[-2]
        grad[1:-1] = (counts[2:] - counts[:-2]) / 2.0
    else:
        grad = np.zeros(1)
    p25, p75 = q[0.25], q[0.75]
    return {
        "ih_mean": mean,
        "ih_var": var,
        "ih_skew": skew,
        "ih_kurt": kurt,
        "ih_median": median,
        "ih_min": vmin,
        "ih_p10": q[0.10],
        "ih_p90": q[0.90],
        "ih_max": vmax,
        "ih_mode": float(np.argmax(counts) + 1),
        "ih_iqr": p75 - p25,
        "ih_range": vmax - vmin,
        "ih_mad": float(np.dot(p, np.abs(d))),
        "ih_rmad": rmad,
        "ih_medad": float(np.dot(p, np.abs(levels - median))),
        "ih_cov": math.sqrt(var) / mean,
        "ih_qcod": (p75 - p25) / (p75 + p25),
        "ih_entropy": float(-np.dot(pnz, np.log2(pnz))),
        "ih_uniformity": float(np.dot(p, p)),
        "ih_max_grad": float(grad.max()),
        "ih_max_grad_g": float(np.argmax(grad) + 1),
        "ih_min_grad": float(grad.min()),
        "ih_min_grad_g": float(np.argmin(grad) + 1),
    }
