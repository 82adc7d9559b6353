"""The GPU backend: CuPy arrays, kernels from cupyx.scipy.ndimage or our own.

This is the only module (with :mod:`medimg_fast.backends._cuda_kernels`) that imports
CuPy, and it does so lazily, so ``import medimg_fast`` never needs a GPU.

Our CUDA kernels (``kernels/*.cu``, :mod:`._cuda_kernels`) compile with nvcc and match
scipy.ndimage in a CPU emulation, but have not yet run on a GPU; until they have, they
are used only when ``MEDIMG_FAST_CUDA_KERNELS=1`` and the default is cupyx.scipy.ndimage.

The primitives accept ``out`` and ignore it: they return new arrays, which the caller
copies into its destination.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from ._base import Backend
from ._numpy import separable_gradient_magnitude


@functools.lru_cache(maxsize=1)
def _import_cupy():
    import cupy
    import cupyx.scipy.ndimage as cndi

    return cupy, cndi


def _own_kernels():
    """The :mod:`._cuda_kernels` module when enabled by the environment, else None."""
    if os.environ.get("MEDIMG_FAST_CUDA_KERNELS", "0") != "1":
        return None
    from . import _cuda_kernels

    return _cuda_kernels


class CupyBackend(Backend):
    name = "cupy"
    on_gpu = True

    def probe(self):
        try:
            cupy, _ = _import_cupy()
        except ImportError as exc:
            return f"CuPy is not installed ({exc}); install the extra: pip install 'medimg-fast[gpu]'"
        except Exception as exc:  # noqa: BLE001  a broken CUDA install raises many kinds
            return f"CuPy failed to import: {type(exc).__name__}: {exc}"
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # noqa: BLE001  reported as the backend's reason
            return f"no CUDA device found ({type(exc).__name__}: {exc})"
        if count < 1:
            return "no CUDA device found"
        try:
            x = cupy.arange(4, dtype=cupy.float32)
            if float((x * 2).sum()) != 12.0:
                return "a test kernel on the CUDA device returned a wrong result"
        except Exception as exc:  # noqa: BLE001  reported as the backend's reason
            return f"CUDA device present but unusable ({type(exc).__name__}: {exc})"
        return None

    @property
    def xp(self):
        return _import_cupy()[0]

    def correlate1d(self, image, weights, axis, mode, cval, out=None):
        own = _own_kernels()
        if own and own.supports("correlate1d", image, weights=weights, axis=axis):
            return own.correlate1d(image, weights, axis, mode, cval)
        cupy, cndi = _import_cupy()
        w = cupy.asarray(np.asarray(weights, dtype=np.float64))
        return cndi.correlate1d(image, w, axis=axis, output=image.dtype, mode=mode, cval=cval)

    def correlate(self, image, weights, mode, cval, out=None):
        cupy, cndi = _import_cupy()
        w = cupy.asarray(np.asarray(weights, dtype=np.float64))
        return cndi.correlate(image, w, output=image.dtype, mode=mode, cval=cval)

    def rank_filter(self, image, footprint, rank, mode, cval, out=None):
        own = _own_kernels()
        side = footprint.shape[0]
        if (own and footprint.all() and footprint.shape == (side,) * image.ndim
                and rank == footprint.size // 2
                and own.supports("median_filter", image, size=side)):
            return own.median_filter(image, side, mode, cval)
        cupy, cndi = _import_cupy()
        return cndi.rank_filter(image, rank, footprint=cupy.asarray(footprint),
                                output=image.dtype, mode=mode, cval=cval)

    def extremum_filter1d(self, image, size, axis, mode, cval, maximum, out=None):
        own = _own_kernels()
        if own and own.supports("extremum_filter1d", image, size=size, axis=axis):
            return own.extremum_filter1d(image, size, axis, mode, cval, maximum)
        _, cndi = _import_cupy()
        f = cndi.maximum_filter1d if maximum else cndi.minimum_filter1d
        return f(image, size, axis=axis, output=image.dtype, mode=mode, cval=cval)

    def gradient_magnitude(self, image, kind, axes, mode, cval, out=None):
        own = _own_kernels()
        if own and own.supports("gradient_magnitude", image, kind=kind):
            return own.gradient_magnitude(image, kind, axes, mode, cval)
        return separable_gradient_magnitude(self, image, kind, axes, mode, cval)
