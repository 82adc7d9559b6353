"""The reference backend: scipy.ndimage on NumPy arrays, single-threaded."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ._base import Backend

_SMOOTH = {"sobel": np.array([1.0, 2.0, 1.0]), "prewitt": np.array([1.0, 1.0, 1.0])}
_DERIV = np.array([-1.0, 0.0, 1.0])


def separable_gradient_magnitude(backend, image, kind, axes, mode, cval):
    """Gradient magnitude composed from 1-D passes of ``backend`` (used where no fused
    kernel exists).  Matches ``scipy.ndimage.sobel``/``prewitt`` per axis."""
    smooth = _SMOOTH[kind]
    total = None
    for axis in axes:
        d = backend.correlate1d(image, _DERIV, axis, mode, cval)
        for other in range(image.ndim):
            if other != axis:
                d = backend.correlate1d(d, smooth, other, mode, cval)
        d *= d
        total = d if total is None else total + d
    return backend.xp.sqrt(total, out=total)


class NumpyBackend(Backend):
    name = "numpy"

    def probe(self):
        return None

    @property
    def xp(self):
        return np

    def correlate1d(self, image, weights, axis, mode, cval):
        return ndi.correlate1d(image, weights, axis=axis, output=image.dtype, mode=mode,
                               cval=cval)

    def correlate(self, image, weights, mode, cval):
        return ndi.correlate(image, weights, output=image.dtype, mode=mode, cval=cval)

    def rank_filter(self, image, footprint, rank, mode, cval):
        if image.ndim == 1:
            # scipy 1.17's 1-D rank path reads past a length-1 axis in ``mirror`` mode and
            # ignores holes in even footprints; its N-D path is right, so go through 2-D.
            return self.rank_filter(image[None], footprint[None], rank, mode, cval)[0]
        return ndi.rank_filter(image, rank, footprint=footprint, output=image.dtype,
                               mode=mode, cval=cval)

    def extremum_filter1d(self, image, size, axis, mode, cval, maximum):
        f = ndi.maximum_filter1d if maximum else ndi.minimum_filter1d
        return f(image, size, axis=axis, output=image.dtype, mode=mode, cval=cval)

    def gradient_magnitude(self, image, kind, axes, mode, cval):
        return separable_gradient_magnitude(self, image, kind, axes, mode, cval)
