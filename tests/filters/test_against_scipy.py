"""Every filter x backend x boundary mode x dtype x 2-D/3-D against a float64 reference.

References are independent: scipy.ndimage (and scikit-image for difference of
Gaussians) run on the input cast to float64.  Tolerances: float32 outputs within 1e-5 of
the largest magnitude of the reference or the input (float32 has 24 bits; a few roundings
per pass, which for cancelling filters such as derivatives scale with the input),
float64 outputs within 1e-10; rank filters select an input value, so they are exact up
to the float32 cast of that value.
"""

from __future__ import annotations

import numpy as np
import pytest
from _filter_cases import CASES, DTYPES, assert_close_to_reference, random_image
from _mf_testing import backends_to_test, to_host

from medimg_fast._shared.boundary import MODES

SHAPES = {"2d": (13, 11), "3d": (9, 10, 7)}


@pytest.mark.parametrize("backend", backends_to_test())
@pytest.mark.parametrize("ndim", sorted(SHAPES))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_filter_matches_reference_float32_and_float64(case, mode, ndim, backend, rng):
    for dtype in ("float32", "float64"):
        image = random_image(rng, SHAPES[ndim], dtype)
        if backend == "cupy":
            import cupy

            image_in = cupy.asarray(image)
        else:
            image_in = image
        result = to_host(case.ours(image_in, mode=mode, cval=1.5, backend=backend))
        reference = case.reference(image.astype(np.float64), mode=mode, cval=1.5)
        assert result.dtype == np.dtype(dtype)
        assert result.shape == image.shape
        assert_close_to_reference(result, reference, float32=dtype == "float32",
                                  selection=case.selection, image=image)


@pytest.mark.parametrize("backend", backends_to_test())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_filter_matches_reference_every_dtype(case, dtype, backend, rng):
    image = random_image(rng, SHAPES["3d"], dtype)
    if backend == "cupy":
        import cupy

        image_in = cupy.asarray(image)
    else:
        image_in = image
    result = to_host(case.ours(image_in, mode="reflect", cval=0.0, backend=backend))
    reference = case.reference(image.astype(np.float64), mode="reflect", cval=0.0)
    expected = np.float64 if dtype == "float64" else np.float32
    assert result.dtype == expected
    assert_close_to_reference(result, reference, float32=expected == np.float32,
                              selection=case.selection, image=image)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("mode", MODES)
def test_kernels_wider_than_the_array(mode, backend, rng):
    # A 17-tap Gaussian on axes of length 1..3: the extension folds several times.
    from scipy import ndimage as ndi

    import medimg_fast as mf

    for shape in [(1, 5), (2, 3), (3, 1, 2)]:
        image = random_image(rng, shape, "float64")
        result = mf.gaussian_filter(image, 2.0, mode=mode, cval=-2.0, backend=backend)
        reference = ndi.gaussian_filter(image, 2.0, mode=mode, cval=-2.0)
        assert_close_to_reference(result, reference, float32=False)
        result = mf.median_filter(image, size=5, mode=mode, cval=-2.0, backend=backend)
        reference = ndi.median_filter(image, size=5, mode=mode, cval=-2.0)
        assert_close_to_reference(result, reference, float32=False, selection=True)
