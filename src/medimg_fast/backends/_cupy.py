"""The GPU backend: CuPy arrays, kernels from cupyx.scipy.ndimage.

This is the only module (with :mod:`medimg_fast.backends._cuda_kernels`) that imports
CuPy, and it does so lazily, so ``import medimg_fast`` never needs a GPU.
"""

from __future__ import annotations

import functools

import numpy as np

from ._base import Backend
from ._numpy import separable_gradient_magnitude


@functools.lru_cache(maxsize=1)
def _import_cupy():
    import cupy  # noqa: PLC0415  (optional dependency, imported on first use)
    import cupyx.scipy.ndimage as cndi  # noqa: PLC0415

    return cupy, cndi


class CupyBackend(Backend):
    name = "cupy"
    on_gpu = True

    def probe(self):
        try:
            cupy, _ = _import_cupy()
        except ImportError as exc:
            return f"CuPy is not installed ({exc}); install the extra: pip install 'medimg-fast[gpu]'"
        except Exception as exc:  # a broken CUDA install raises many kinds of error
            return f"CuPy failed to import: {type(exc).__name__}: {exc}"
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:
            return f"no CUDA device found ({type(exc).__name__}: {exc})"
        if count < 1:
            return "no CUDA device found"
        try:
            x = cupy.arange(4, dtype=cupy.float32)
            if float((x * 2).sum()) != 12.0:
                return "a test kernel on the CUDA device returned a wrong result"
        except Exception as exc:
            return f"CUDA device present but unusable ({type(exc).__name__}: {exc})"
        return None

    @property
    def xp(self):
        return _import_cupy()[0]

    def correlate1d(self, image, weights, axis, mode, cval):
        cupy, cndi = _import_cupy()
        w = cupy.asarray(np.asarray(weights, dtype=np.float64))
        return cndi.correlate1d(image, w, axis=axis, output=image.dtype, mode=mode, cval=cval)

    def correlate(self, image, weights, mode, cval):
        cupy, cndi = _import_cupy()
        w = cupy.asarray(np.asarray(weights, dtype=np.float64))
        return cndi.correlate(image, w, output=image.dtype, mode=mode, cval=cval)

    def rank_filter(self, image, footprint, rank, mode, cval):
        cupy, cndi = _import_cupy()
        return cndi.rank_filter(image, rank, footprint=cupy.asarray(footprint),
                                output=image.dtype, mode=mode, cval=cval)

    def extremum_filter1d(self, image, size, axis, mode, cval, maximum):
        _, cndi = _import_cupy()
        f = cndi.maximum_filter1d if maximum else cndi.minimum_filter1d
        return f(image, size, axis=axis, output=image.dtype, mode=mode, cval=cval)

    def gradient_magnitude(self, image, kind, axes, mode, cval):
        return separable_gradient_magnitude(self, image, kind, axes, mode, cval)
