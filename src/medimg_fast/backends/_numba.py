"""The CPU backend: kernels compiled with numba, parallel over cores.

The kernels themselves live in :mod:`medimg_fast.backends._numba_kernels`, which imports
numba; this module imports it lazily so that ``import medimg_fast`` stays cheap.
"""

from __future__ import annotations

import functools

from .._shared.boundary import MODE_CODES
from ._base import Backend
from ._numpy import NumpyBackend

_GRADIENT_KINDS = {"sobel": 0, "prewitt": 1}


@functools.lru_cache(maxsize=1)
def _kernels():
    from . import _numba_kernels

    return _numba_kernels


class NumbaBackend(Backend):
    name = "numba"

    def probe(self):
        try:
            import numba  # noqa: F401
        except ImportError as exc:
            return f"numba is not installed ({exc})"
        try:
            _kernels()
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - numba/LLVM install
            return f"numba kernels failed to load ({type(exc).__name__}: {exc})"
        return None

    @property
    def xp(self):
        import numpy

        return numpy

    # every kernel writes into ``out`` when given one; the scipy fallbacks above 3-D
    # return a new array (see the base class)

    def correlate1d(self, image, weights, axis, mode, cval, out=None):
        return _kernels().correlate1d(image, weights, axis, MODE_CODES[mode], cval, out=out)

    def correlate_separable(self, image, passes, mode, cval, out=None):
        # the kernel fuses runs of passes (2-D/3-D) and runs any other pass alone
        return _kernels().correlate_separable(
            image, tuple(a for a, _ in passes), tuple(w for _, w in passes),
            MODE_CODES[mode], cval, out=out)

    def separable_temporaries(self, ndim, passes):
        # one run of passes in an image of at most 3-D is one sweep with no intermediate
        # (a 1-D image has one axis: a single pass); otherwise as the base class counts
        if not passes or (ndim <= 3 and len(_kernels().sweep_runs(passes)) == 1):
            return 0
        return super().separable_temporaries(ndim, passes)

    def correlate(self, image, weights, mode, cval, out=None):
        if image.ndim > 3:  # the compiled kernels cover 1-D to 3-D; scipy does the rest
            return NumpyBackend().correlate(image, weights, mode, cval)
        return _kernels().correlate(image, weights, MODE_CODES[mode], cval, out=out)

    def rank_filter(self, image, footprint, rank, mode, cval, out=None):
        if image.ndim > 3:
            return NumpyBackend().rank_filter(image, footprint, rank, mode, cval)
        return _kernels().rank_filter(image, footprint, rank, MODE_CODES[mode], cval,
                                      out=out)

    def extremum_filter1d(self, image, size, axis, mode, cval, maximum, out=None):
        return _kernels().extremum_filter1d(image, size, axis, MODE_CODES[mode], cval,
                                            maximum, out=out)

    def gradient_magnitude(self, image, kind, axes, mode, cval, out=None):
        if image.ndim > 3:
            return NumpyBackend().gradient_magnitude(image, kind, axes, mode, cval)
        return _kernels().gradient_magnitude(image, _GRADIENT_KINDS[kind], tuple(axes),
                                             MODE_CODES[mode], cval, out=out)
