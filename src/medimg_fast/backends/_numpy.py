"""The reference backend: scipy.ndimage on NumPy arrays, single-threaded.

Its primitives accept ``out`` and ignore it: they return new arrays, which the caller
copies into its destination (the reference path stays scipy's calls as they are)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ._base import Backend

EDGE_SMOOTHING = {"sobel": np.array([1.0, 2.0, 1.0]), "prewitt": np.array([1.0, 1.0, 1.0])}
EDGE_DERIVATIVE = np.array([-1.0, 0.0, 1.0])


def edge_derivative(backend, image, kind, axis, smooth_axes, mode, cval, out=None):
    """Sobel/Prewitt derivative from 1-D passes of ``backend``: the central difference
    along ``axis``, then the smoothing along each other axis of ``smooth_axes``
    (``scipy.ndimage.sobel``/``prewitt`` when ``smooth_axes`` is every axis).  Only the
    last pass is offered ``out``."""
    passes = [(axis, EDGE_DERIVATIVE)]
    passes += [(other, EDGE_SMOOTHING[kind]) for other in smooth_axes if other != axis]
    for i, (a, weights) in enumerate(passes):
        image = backend.correlate1d(image, weights, a, mode, cval,
                                    out=out if i == len(passes) - 1 else None)
    return image


def separable_gradient_magnitude(backend, image, kind, axes, mode, cval, *, smooth_axes=None):
    """Gradient magnitude over ``axes`` composed from 1-D passes of ``backend`` (used where
    no fused kernel exists); each derivative is smoothed along ``smooth_axes`` (default:
    every axis, the backends' rule; the public filter passes its ``axes``)."""
    if smooth_axes is None:
        smooth_axes = range(image.ndim)
    total = None
    for axis in axes:
        d = edge_derivative(backend, image, kind, axis, smooth_axes, mode, cval)
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

    def correlate1d(self, image, weights, axis, mode, cval, out=None):
        return ndi.correlate1d(image, weights, axis=axis, output=image.dtype, mode=mode,
                               cval=cval)

    def correlate(self, image, weights, mode, cval, out=None):
        return ndi.correlate(image, weights, output=image.dtype, mode=mode, cval=cval)

    def rank_filter(self, image, footprint, rank, mode, cval, out=None):
        if image.ndim == 1:
            # scipy 1.17's 1-D rank path reads past a length-1 axis in ``mirror`` mode and
            # ignores holes in even footprints; its N-D path is right, so go through 2-D.
            return self.rank_filter(image[None], footprint[None], rank, mode, cval)[0]
        return ndi.rank_filter(image, rank, footprint=footprint, output=image.dtype,
                               mode=mode, cval=cval)

    def extremum_filter1d(self, image, size, axis, mode, cval, maximum, out=None):
        f = ndi.maximum_filter1d if maximum else ndi.minimum_filter1d
        return f(image, size, axis=axis, output=image.dtype, mode=mode, cval=cval)

    def gradient_magnitude(self, image, kind, axes, mode, cval, out=None):
        return separable_gradient_magnitude(self, image, kind, axes, mode, cval)
