"""Our CUDA kernels on a real device against scipy.ndimage in float64.

Every output is poisoned with NaN before the run, inputs are random and never zero,
shapes cross tile boundaries and are not multiples of the blocks, every mode.
Skipped cleanly without CuPy or a CUDA device.
"""

from __future__ import annotations

import numpy as np
import pytest
from _mf_testing import nonzero_image
from scipy import ndimage as ndi

from medimg_fast._shared.boundary import MODES
from medimg_fast.backends import _cuda_kernels as ck

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy", reason="CuPy is not installed")

SHAPE3 = (37, 45, 131)  # > one 16-plane slab, > one 8-row tile, > two 64-sample segments
SHAPE2 = (75, 300)


@pytest.fixture(scope="module", autouse=True)
def _device():
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        pytest.skip(f"no CUDA device ({exc})")


def _poisoned_executor():
    """The CuPy executor, but every output it is handed was filled with NaN first."""
    ex = ck.CupyExecutor()
    launch = ex.launch

    def poisoned(lc):
        lc.args[1].fill(np.nan)
        launch(lc)
        cupy.cuda.get_current_stream().synchronize()
    ex.launch = poisoned
    return ex


def _check(got, ref, dtype):
    got = cupy.asnumpy(got)
    assert np.isfinite(got).all(), "unwritten (NaN-poisoned) outputs remain"
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,axis", [(SHAPE3, 0), (SHAPE3, 1), (SHAPE3, 2), (SHAPE2, 0),
                                        (SHAPE2, 1)])
@pytest.mark.parametrize("taps", [3, 17, 40, 129])
def test_correlate1d(shape, axis, mode, taps, dtype):
    img = nonzero_image(shape, dtype, taps + axis)
    w = np.random.default_rng(taps).uniform(-1, 1, taps)
    got = ck._correlate1d(_poisoned_executor(), cupy.asarray(img), w, axis, mode, 0.75)
    _check(got, ndi.correlate1d(img.astype(np.float64), w, axis=axis, mode=mode, cval=0.75),
           dtype)


@pytest.mark.parametrize("maximum", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,axis", [(SHAPE3, 0), (SHAPE3, 1), (SHAPE3, 2), (SHAPE2, 1)])
@pytest.mark.parametrize("size", [2, 5, 64])
def test_extremum_filter1d(shape, axis, mode, size, maximum):
    img = nonzero_image(shape, np.float64, size)
    got = ck._extremum_filter1d(_poisoned_executor(), cupy.asarray(img), size, axis, mode, -0.2,
                                maximum)
    f = ndi.maximum_filter1d if maximum else ndi.minimum_filter1d
    _check(got, f(img, size, axis=axis, mode=mode, cval=-0.2), np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["sobel", "prewitt"])
@pytest.mark.parametrize("shape,axes", [(SHAPE3, (0, 1, 2)), (SHAPE3, (1,)), (SHAPE3, (0, 2)),
                                        (SHAPE2, (0, 1)), (SHAPE2, (1,))])
def test_gradient_magnitude(shape, axes, kind, mode, dtype):
    img = nonzero_image(shape, dtype, 3)
    f = ndi.sobel if kind == "sobel" else ndi.prewitt
    x = img.astype(np.float64)
    ref = np.sqrt(sum(f(x, axis=a, mode=mode, cval=0.6) ** 2 for a in axes))
    got = ck._gradient_magnitude(_poisoned_executor(), cupy.asarray(img), kind, axes, mode, 0.6)
    _check(got, ref, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,size", [(SHAPE3, 3), ((21, 19, 70), 5), (SHAPE2, 3), (SHAPE2, 5)])
def test_median_filter(shape, size, mode, dtype):
    img = nonzero_image(shape, dtype, size)
    got = ck._median_filter(_poisoned_executor(), cupy.asarray(img), size, mode, 0.3)
    _check(got, ndi.median_filter(img.astype(np.float64), size=size, mode=mode, cval=0.3), dtype)


def test_filter_bank_matches_scipy():
    img = nonzero_image(SHAPE3, np.float64, 5)
    specs = [("gaussian", {"sigma": 2.0}), ("uniform", {"size": 5}),
             ("gaussian_laplace", {"sigma": 1.5, "mode": "nearest"}),
             ("difference_of_gaussians", {"low_sigma": 1.0, "high_sigma": 3.0}),
             ("gradient_magnitude", {"kind": "sobel", "mode": "constant", "cval": 0.4}),
             ("median", {"size": 3, "mode": "mirror"}), ("minimum", {"size": 4})]
    out = cupy.full((len(specs),) + img.shape, np.nan)
    got = ck.filter_bank(cupy.asarray(img), specs, out=out)
    ref = np.stack([ndi.gaussian_filter(img, 2.0), ndi.uniform_filter(img, 5),
                    ndi.gaussian_laplace(img, 1.5, mode="nearest"),
                    ndi.gaussian_filter(img, 1.0) - ndi.gaussian_filter(img, 3.0),
                    np.sqrt(sum(ndi.sobel(img, axis=a, mode="constant", cval=0.4) ** 2
                                for a in range(3))),
                    ndi.median_filter(img, 3, mode="mirror"), ndi.minimum_filter(img, 4)])
    _check(got, ref, np.float64)


def test_public_entry_points_keep_dtype_and_device():
    img = cupy.asarray(nonzero_image(SHAPE2, np.float32, 9))
    for out in (ck.correlate1d(img, np.ones(3) / 3, 0, "reflect", 0.0),
                ck.extremum_filter1d(img, 3, 1, "reflect", 0.0, True),
                ck.gradient_magnitude(img, "sobel", (0, 1), "reflect", 0.0),
                ck.median_filter(img, 5, "reflect", 0.0)):
        assert isinstance(out, cupy.ndarray) and out.dtype == np.float32 and out.shape == img.shape


@pytest.mark.parametrize("mode", MODES)
def test_apply_chunked_on_the_device_equals_whole(mode):
    img = nonzero_image((40, 33, 50), np.float32, 21)

    def fn(x):
        return ck.correlate1d(x, ck.gaussian_weights(2.0), 0, mode, 0.5)

    whole = cupy.asnumpy(fn(cupy.asarray(img)))
    got = ck.apply_chunked(img, fn, 9, mode, chunk_shape=(7, 33, 50), to_device=cupy.asarray,
                           to_host=cupy.asnumpy)
    np.testing.assert_array_equal(got, whole)


def test_dask_on_cupy_chunked_equals_unchunked():
    da = pytest.importorskip("dask.array")
    filters = pytest.importorskip("medimg_fast.filters")
    img = cupy.asarray(nonzero_image((40, 45, 70), np.float32, 23))
    whole = filters.gaussian_filter(img, 2.0, backend="cupy")
    chunked = filters.gaussian_filter(da.from_array(img, chunks=(13, 20, 33), asarray=False),
                                      2.0, backend="cupy")
    assert isinstance(chunked._meta, cupy.ndarray)
    got = chunked.compute()
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(got), cupy.asnumpy(whole))
