"""Keyword options: axes (slice-wise filtering), spacing (sigma in mm), dtype rule, kinds."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from _filter_cases import random_image
from _mf_testing import backends_to_test, to_host
from scipy import ndimage as ndi

import medimg_fast as mf


@pytest.mark.parametrize("backend", backends_to_test())
def test_axes_filters_each_slice_in_2d(backend, rng):
    volume = random_image(rng, (4, 12, 13), "float64")
    xp_volume = volume
    if backend == "cupy":
        import cupy

        xp_volume = cupy.asarray(volume)
    checks = [
        (lambda v: mf.gaussian_filter(v, 1.5, axes=(1, 2), backend=backend),
         lambda s: ndi.gaussian_filter(s, 1.5)),
        (lambda v: mf.median_filter(v, size=3, axes=(1, 2), backend=backend),
         lambda s: ndi.median_filter(s, size=3)),
        (lambda v: mf.uniform_filter(v, 5, axes=(-2, -1), backend=backend),
         lambda s: ndi.uniform_filter(s, 5)),
        (lambda v: mf.gradient_magnitude(v, axes=(1, 2), backend=backend),
         lambda s: np.hypot(ndi.sobel(s, 0), ndi.sobel(s, 1))),
        (lambda v: mf.sobel(v, axis=2, axes=(1, 2), backend=backend),
         lambda s: ndi.sobel(s, axis=1)),
        (lambda v: mf.laplace(v, axes=(1, 2), backend=backend), ndi.laplace),
        (lambda v: mf.gaussian_laplace(v, 1.0, axes=(1, 2), backend=backend),
         lambda s: ndi.gaussian_laplace(s, 1.0)),
    ]
    for ours, reference in checks:
        result = to_host(ours(xp_volume))
        for z in range(volume.shape[0]):
            np.testing.assert_allclose(result[z], reference(volume[z]), rtol=0,
                                       atol=1e-10 * np.abs(reference(volume[z])).max())


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_spacing_gives_sigma_in_millimetres(backend, rng):
    volume = random_image(rng, (10, 14, 15), "float64")
    spacing = (2.5, 0.5, 1.0)
    sigma_mm = 2.0
    result = mf.gaussian_filter(volume, sigma_mm, spacing=spacing, backend=backend)
    reference = ndi.gaussian_filter(volume, [sigma_mm / s for s in spacing])
    np.testing.assert_allclose(result, reference, rtol=0, atol=1e-10 * np.abs(reference).max())
    # spacing per filtered axis with axes=
    result = mf.gaussian_filter(volume, sigma_mm, axes=(1, 2), spacing=(0.5, 1.0), backend=backend)
    reference = ndi.gaussian_filter(volume, [0, sigma_mm / 0.5, sigma_mm / 1.0])
    np.testing.assert_allclose(result, reference, rtol=0, atol=1e-10 * np.abs(reference).max())


def test_spacing_derivatives_are_per_millimetre(rng):
    # a ramp rising 3 HU per mm along an axis of 0.5 mm voxels: 1.5 per voxel
    ramp = np.tile(np.arange(64.0) * 1.5, (6, 1))
    grad = mf.gaussian_gradient_magnitude(ramp, 2.0, spacing=(1.0, 0.5), mode="nearest")
    per_voxel = ndi.gaussian_filter(ramp, [2.0, 4.0], order=[0, 1], mode="nearest")
    np.testing.assert_allclose(grad, np.abs(per_voxel) / 0.5, rtol=1e-9)
    # the sampled, truncated derivative kernel is within 0.1% of the analytic slope
    np.testing.assert_allclose(grad[3, 24:40], 3.0, rtol=1e-3)


@pytest.mark.parametrize("dtype,expected", [("uint8", "float32"), ("uint16", "float32"),
                                            ("int16", "float32"), ("int32", "float32"),
                                            ("float32", "float32"), ("float64", "float64"),
                                            ("bool", "float32"), ("int64", "float32")])
def test_one_dtype_rule(dtype, expected):
    image = np.ones((5, 5), dtype=dtype)
    for f in (lambda x: mf.gaussian_filter(x, 1), lambda x: mf.median_filter(x, size=3),
              lambda x: mf.gradient_magnitude(x), lambda x: mf.correlate(x, np.ones((2, 2)))):
        assert f(image).dtype == np.dtype(expected)
        assert f(da.from_array(image, chunks=2)).dtype == np.dtype(expected)
        assert f(da.from_array(image, chunks=2)).compute().dtype == np.dtype(expected)


def test_numpy_in_numpy_out_and_dask_in_lazy_dask_out(rng):
    image = random_image(rng, (8, 9), "int16")
    assert type(mf.gaussian_filter(image, 1.0)) is np.ndarray
    lazy = mf.gaussian_filter(da.from_array(image, chunks=3), 1.0)
    assert isinstance(lazy, da.Array)
    assert lazy.chunks == ((3, 3, 2), (3, 3, 3))
    assert isinstance(lazy._meta, np.ndarray)
    # lists are accepted like scipy does
    assert isinstance(mf.uniform_filter([[1, 2], [3, 4]], 2), np.ndarray)


def test_input_is_never_modified(rng):
    image = random_image(rng, (6, 7, 8), "float32")
    before = image.copy()
    for f in (lambda x: mf.gaussian_filter(x, 0), lambda x: mf.gaussian_filter(x, 1),
              lambda x: mf.uniform_filter(x, 1), lambda x: mf.maximum_filter(x, size=1),
              lambda x: mf.gradient_magnitude(x, backend="numba")):
        out = f(image)
        assert out is not image
        out[...] = 0
        np.testing.assert_array_equal(image, before)


def test_zero_sigma_axis_is_left_unfiltered(rng):
    image = random_image(rng, (6, 7), "float64")
    np.testing.assert_array_equal(mf.gaussian_filter(image, [0, 0]), image)
    np.testing.assert_allclose(mf.gaussian_filter(image, [0, 1.0]),
                               ndi.gaussian_filter1d(image, 1.0, axis=1), atol=1e-12)


@pytest.mark.gpu
def test_cupy_in_cupy_out_and_dask_cupy_chunks(rng):
    import cupy

    image = random_image(rng, (20, 18, 17), "float32")
    on_device = mf.gaussian_filter(cupy.asarray(image), 2.0)
    assert isinstance(on_device, cupy.ndarray)
    lazy = da.from_array(cupy.asarray(image), chunks=(7, 5, 9))
    chunked = mf.gaussian_filter(lazy, 2.0, mode="wrap")
    assert isinstance(chunked._meta, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(chunked.compute()),
                                  cupy.asnumpy(mf.gaussian_filter(cupy.asarray(image), 2.0,
                                                                  mode="wrap")))
    # NumPy-backed Dask array on the GPU backend: results come back as NumPy chunks
    host_lazy = mf.gaussian_filter(da.from_array(image, chunks=8), 2.0, backend="cupy")
    assert isinstance(host_lazy.compute(), np.ndarray)
    with pytest.raises(ValueError, match="CuPy"):
        mf.gaussian_filter(cupy.asarray(image), 2.0, backend="numba")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_one_dimensional_rank_filters_match_the_nd_definition(backend):
    # scipy's own 1-D rank path misbehaves here (mirror on a length-1 axis, holes in even
    # footprints); the definition is the N-D one, which both backends must follow.
    single = np.array([217.0])
    assert mf.median_filter(single, size=3, mode="mirror", backend=backend)[0] == 217.0
    x = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0])
    footprint = np.array([1, 0, 1, 1], dtype=bool)
    expected = ndi.rank_filter(x[None], 1, footprint=footprint[None], mode="reflect")[0]
    np.testing.assert_array_equal(
        mf.median_filter(x, footprint=footprint, mode="reflect", backend=backend), expected)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16"])
@pytest.mark.parametrize("name", ["median_filter", "minimum_filter", "maximum_filter"])
def test_rank_filters_of_integers_are_exact_in_float32(dtype, name, rng):
    """The documented choice: rank filters follow the one dtype rule (float32 for integer
    input, not scipy's input dtype), and their values are exactly scipy's integer ones."""
    from scipy import ndimage as ndi

    info = np.iinfo(dtype)
    image = rng.integers(info.min, info.max, size=(6, 7, 8), endpoint=True).astype(dtype)
    for backend in ("numpy", "numba"):
        ours = getattr(mf, name)(image, size=3, backend=backend)
        assert ours.dtype == np.float32
        reference = getattr(ndi, name)(image, size=3)
        assert reference.dtype == image.dtype
        np.testing.assert_array_equal(ours, reference.astype(np.float32))
        np.testing.assert_array_equal(ours.astype(dtype), reference)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_scipy_output_and_radius(backend, rng):
    """scipy.ndimage's ``output=`` (a dtype or an array to fill) and the Gaussians'
    ``radius=`` give scipy's results."""
    from scipy import ndimage as ndi

    image = rng.normal(100, 30, size=(9, 10, 11))
    for radius in (2, (1, 3, 2)):
        for ours, ref in ((mf.gaussian_filter, ndi.gaussian_filter),
                          (mf.gaussian_laplace, ndi.gaussian_laplace),
                          (mf.gaussian_gradient_magnitude, ndi.gaussian_gradient_magnitude)):
            got = ours(image, 1.5, radius=radius, backend=backend)
            want = ref(image, 1.5, radius=radius)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)
    lazy = mf.gaussian_filter(da.from_array(image, chunks=4), 1.5, radius=(1, 3, 2),
                              backend=backend)
    np.testing.assert_array_equal(lazy.compute(),
                                  mf.gaussian_filter(image, 1.5, radius=(1, 3, 2),
                                                     backend=backend))
    out = np.empty(image.shape, np.float32)
    assert mf.uniform_filter(image, 3, output=out, backend=backend) is out
    np.testing.assert_allclose(out, ndi.uniform_filter(image, 3), rtol=1e-6)
    assert mf.sobel(image.astype(np.int16), output=np.int32, backend=backend).dtype == np.int32
    ints = rng.integers(0, 255, size=(6, 7)).astype(np.uint8)
    np.testing.assert_array_equal(mf.median_filter(ints, size=3, output=np.uint8,
                                                   backend=backend),
                                  ndi.median_filter(ints, size=3))
    assert mf.median_filter(da.from_array(ints, chunks=3), size=3, output="uint8",
                            backend=backend).dtype == np.uint8
    with pytest.raises(TypeError, match="`output` as an array needs a NumPy"):
        mf.gaussian_filter(da.from_array(image, chunks=4), 1.0, output=out)
    with pytest.raises(ValueError, match="`output` must have the result's shape"):
        mf.gaussian_filter(image, 1.0, output=np.empty((2, 2)))
    with pytest.raises(TypeError, match="`output` must be None, a dtype or an array"):
        mf.gaussian_filter(image, 1.0, output=3.5)
    with pytest.raises(ValueError, match="`radius`"):
        mf.gaussian_filter(image, 1.0, radius=-1)
