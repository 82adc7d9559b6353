"""Formulas shared by several compiled feature kernels, inlined into each of them.

One definition keeps kernels that must agree bit for bit (the block and whole-volume
paths) from drifting apart.  Imported only inside the kernels' builders, so importing
the package does not import numba.  (Referenced as ``module.function`` there: numba's
cache only reuses a kernel whose compiled helpers are module globals.)
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def grey_level(x, lo, scale_num, scale_den, ng):
    """IBSI discretisation of one value: ``floor(num (x - lo) / den) + 1`` in ``[1, ng]``."""
    lev = np.floor(scale_num * (np.float64(x) - lo) / scale_den) + 1.0
    if lev < 1.0:
        lev = 1.0
    elif lev > ng:
        lev = ng
    return np.int32(lev)


@numba.njit(cache=True, inline="always")
def central_sums_add(x, mean, m2, m3, m4):
    """Add one value to the central moment sums (sequential order, no fastmath)."""
    d = x - mean
    d2 = d * d
    return m2 + d2, m3 + d2 * d, m4 + d2 * d2


@numba.njit(cache=True, inline="always")
def quantile_bin(x, lo, scale, nbins):
    """Bin of ``x >= lo`` in a monotone binning of ``[lo, hi]`` (``scale = nbins /
    (hi - lo)``, 0 when the window is one value): truncation is floor for ``x >= lo``."""
    return min(np.int64((x - lo) * scale), nbins - 1)
