"""Every public filter with its independent float64 reference (scipy.ndimage / scikit-image).

Shared by the test modules of this folder.  Each case: name, our call, the reference
call on a float64 array, and the halo the chunked path must honour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import difference_of_gaussians as sk_dog

import medimg_fast as mf


@dataclass(frozen=True)
class Case:
    name: str
    ours: Callable  # ours(image, mode=, cval=, backend=)
    reference: Callable  # reference(image_float64, mode=, cval=)
    selection: bool = False  # a rank filter: output values are input values

    def __repr__(self):
        return self.name


def _sobel_magnitude(x, mode, cval):
    return np.sqrt(sum(ndi.sobel(x, axis=a, mode=mode, cval=cval) ** 2 for a in range(x.ndim)))


def _weights(ndim, shape_per_axis, seed=3):
    return np.random.default_rng(seed).normal(size=(shape_per_axis,) * ndim)


CASES = [
    Case("gaussian_sigma1.5",
         lambda x, **k: mf.gaussian_filter(x, 1.5, **k),
         lambda x, **k: ndi.gaussian_filter(x, 1.5, **k)),
    Case("gaussian_order1",
         lambda x, **k: mf.gaussian_filter(x, 1.0, order=[1] + [0] * (x.ndim - 1), **k),
         lambda x, **k: ndi.gaussian_filter(x, 1.0, order=[1] + [0] * (x.ndim - 1), **k)),
    Case("gaussian_order2_aniso",
         lambda x, **k: mf.gaussian_filter(x, [0.8, 1.7, 1.2][: x.ndim],
                                           order=[0, 2, 1][: x.ndim], **k),
         lambda x, **k: ndi.gaussian_filter(x, [0.8, 1.7, 1.2][: x.ndim],
                                            order=[0, 2, 1][: x.ndim], **k)),
    Case("uniform_size3", lambda x, **k: mf.uniform_filter(x, 3, **k),
         lambda x, **k: ndi.uniform_filter(x, 3, **k)),
    Case("uniform_size4", lambda x, **k: mf.uniform_filter(x, 4, **k),
         lambda x, **k: ndi.uniform_filter(x, 4, **k)),
    Case("median_size3", lambda x, **k: mf.median_filter(x, size=3, **k),
         lambda x, **k: ndi.median_filter(x, size=3, **k), selection=True),
    Case("median_footprint",
         lambda x, **k: mf.median_filter(x, footprint=ndi.generate_binary_structure(x.ndim, 1), **k),
         lambda x, **k: ndi.median_filter(x, footprint=ndi.generate_binary_structure(x.ndim, 1), **k),
         selection=True),
    Case("minimum_size2x3", lambda x, **k: mf.minimum_filter(x, size=[2, 3, 3][: x.ndim], **k),
         lambda x, **k: ndi.minimum_filter(x, size=[2, 3, 3][: x.ndim], **k), selection=True),
    Case("maximum_size3", lambda x, **k: mf.maximum_filter(x, size=3, **k),
         lambda x, **k: ndi.maximum_filter(x, size=3, **k), selection=True),
    Case("maximum_footprint",
         lambda x, **k: mf.maximum_filter(x, footprint=ndi.generate_binary_structure(x.ndim, 1), **k),
         lambda x, **k: ndi.maximum_filter(x, footprint=ndi.generate_binary_structure(x.ndim, 1), **k),
         selection=True),
    Case("sobel_axis0", lambda x, **k: mf.sobel(x, axis=0, **k),
         lambda x, **k: ndi.sobel(x, axis=0, **k)),
    Case("prewitt_axis-1", lambda x, **k: mf.prewitt(x, axis=-1, **k),
         lambda x, **k: ndi.prewitt(x, axis=-1, **k)),
    Case("laplace", lambda x, **k: mf.laplace(x, **k), lambda x, **k: ndi.laplace(x, **k)),
    Case("gaussian_laplace", lambda x, **k: mf.gaussian_laplace(x, 1.2, **k),
         lambda x, **k: ndi.gaussian_laplace(x, 1.2, **k)),
    Case("gaussian_gradient_magnitude",
         lambda x, **k: mf.gaussian_gradient_magnitude(x, 1.1, **k),
         lambda x, **k: ndi.gaussian_gradient_magnitude(x, 1.1, **k)),
    Case("gradient_magnitude", lambda x, **k: mf.gradient_magnitude(x, **k),
         _sobel_magnitude),
    Case("difference_of_gaussians", lambda x, **k: mf.difference_of_gaussians(x, 1.0, 2.0, **k),
         lambda x, **k: sk_dog(x, 1.0, 2.0, **k)),
    Case("correlate_odd", lambda x, **k: mf.correlate(x, _weights(x.ndim, 3), **k),
         lambda x, **k: ndi.correlate(x, _weights(x.ndim, 3), **k)),
    Case("correlate_even", lambda x, **k: mf.correlate(x, _weights(x.ndim, 4), **k),
         lambda x, **k: ndi.correlate(x, _weights(x.ndim, 4), **k)),
    Case("convolve_even", lambda x, **k: mf.convolve(x, _weights(x.ndim, 2), **k),
         lambda x, **k: ndi.convolve(x, _weights(x.ndim, 2), **k)),
]

DTYPES = ("uint8", "uint16", "int16", "int32", "float32", "float64")


def random_image(rng, shape, dtype):
    """Random, never-constant test data covering the dtype's typical range."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.normal(size=shape) * 100).astype(dtype)
    high = {"uint8": 255, "uint16": 4000, "int16": 3000, "int32": 100000}[dtype.name]
    low = -1000 if dtype.kind == "i" else 0
    return rng.integers(low, high, size=shape, endpoint=True).astype(dtype)


def assert_close_to_reference(result, reference, *, float32: bool, selection: bool = False,
                              image=None):
    """The stated tolerances: float32 outputs within 1e-5 of the largest magnitude of the
    reference (or of the input ``image``, for filters that cancel, such as derivatives and
    differences of Gaussians, whose float32 rounding scales with the input), float64 within
    1e-10; rank filters select an input value: exact up to the float32 cast."""
    scale = max(float(np.max(np.abs(reference))), 1e-30)
    if image is not None:
        scale = max(scale, float(np.max(np.abs(np.asarray(image, dtype=np.float64)))))
    if float32:
        tol = 1e-5 * scale if not selection else 6e-8 * scale
    else:
        tol = 1e-10 * scale if not selection else 0.0
    np.testing.assert_allclose(result, reference, rtol=0, atol=tol)
