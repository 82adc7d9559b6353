"""The numba backend's fused 3-D Laplacian of Gaussian (seven passes, one sweep).

References: ``scipy.ndimage.gaussian_laplace`` in float64 (independent of our code) for
every mode, anisotropic sigmas, ``cval`` != 0 and shapes shorter than the kernel; the
nine-pass chain of our own separable filter for the float32 rounding between the two
groupings; Dask chunks that cut through the halo for bit-identity.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from _filter_cases import assert_close_to_reference, random_image
from scipy import ndimage as ndi

import medimg_fast as mf
from medimg_fast._shared.boundary import MODE_CODES, MODES
from medimg_fast._shared.gaussian import gaussian_kernel1d, gaussian_radius
from medimg_fast.features import filter_response
from medimg_fast.filters._gaussian import _fused_laplace_kernels

pytest.importorskip("numba")
from medimg_fast.backends._numba_log import fusable, gaussian_laplace_3d

SHAPES = [(11, 9, 10), (1, 7, 5), (3, 2, 17), (6, 13, 4)]


def _kernels(sigma, truncate=4.0):
    radii = [gaussian_radius(s, truncate) for s in sigma]
    smooth = [gaussian_kernel1d(s, 0, r) for s, r in zip(sigma, radii)]
    second = [gaussian_kernel1d(s, 2, r) for s, r in zip(sigma, radii)]
    return smooth, second


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("sigma", [(1.2, 1.2, 1.2), (0.5, 1.9, 1.3)], ids=str)
def test_fused_kernel_matches_scipy_float64(mode, shape, sigma, rng):
    image = random_image(rng, shape, "float64")
    reference = ndi.gaussian_laplace(image, sigma, mode=mode, cval=2.5)
    smooth, second = _kernels(sigma)
    # every way of cutting the work (row blocks, bands) gives the same sums
    for yblock, band in [(None, None), (1, 1), (3, 2), (5, 64)]:
        out = gaussian_laplace_3d(image, smooth, second, MODE_CODES[mode], 2.5,
                                  yblock=yblock, band=band)
        assert out.dtype == np.float64 and out.shape == shape
        assert_close_to_reference(out, reference, float32=False, image=image)
        out32 = gaussian_laplace_3d(image.astype(np.float32), smooth, second,
                                    MODE_CODES[mode], 2.5, yblock=yblock, band=band)
        assert out32.dtype == np.float32
        assert_close_to_reference(out32, reference, float32=True, image=image)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "float64"])
def test_public_function_takes_fused_path_and_matches_scipy(mode, dtype, rng, monkeypatch):
    from medimg_fast.backends import _numba_log

    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return gaussian_laplace_3d(*args, **kwargs)

    monkeypatch.setattr(_numba_log, "gaussian_laplace_3d", counted)
    image = random_image(rng, (9, 12, 14), dtype)
    sigma = (0.8, 1.5, 1.1)
    ours = mf.gaussian_laplace(image, sigma, mode=mode, cval=-3.0, backend="numba")
    assert calls == [(9, 12, 14)]
    reference = ndi.gaussian_laplace(image.astype(np.float64), sigma, mode=mode, cval=-3.0)
    assert_close_to_reference(ours, reference, float32=dtype != "float64", image=image)


def test_fused_path_is_chosen_only_where_it_applies():
    def terms(axes_per_term, size=5):
        return [[(a, gaussian_kernel1d(1.0, 2 if a == i else 0, size // 2)) for a in axes]
                for i, axes in enumerate(axes_per_term)]

    assert _fused_laplace_kernels(3, terms([(0, 1, 2)] * 3)) is not None
    assert _fused_laplace_kernels(2, terms([(0, 1)] * 2)) is None  # 2-D: nine-pass form
    assert _fused_laplace_kernels(3, terms([(1, 2)] * 2)) is None  # axes=(1, 2)
    assert _fused_laplace_kernels(3, terms([(0, 2)] * 3)) is None  # sigma 0 along y
    lopsided = terms([(0, 1, 2)] * 3)
    lopsided[0][1] = (1, np.array([0.2, 0.5, 0.3]))
    assert _fused_laplace_kernels(3, lopsided) is None
    assert not fusable([np.ones(3)] * 2, [np.ones(3)] * 2)


@pytest.mark.parametrize("mode", MODES)
def test_fused_equals_nine_pass_chain_to_float32_rounding(mode, rng):
    from medimg_fast.backends import get_backend

    image = random_image(rng, (20, 24, 22), "float32")
    sigma = 1.5
    engine = get_backend("numba")
    terms = []
    for a in range(3):
        passes = [(b, gaussian_kernel1d(sigma, 2 if b == a else 0, 6)) for b in range(3)]
        terms.append(engine.correlate_separable(image, passes, mode, 1.0))
    chain = terms[0] + terms[1] + terms[2]
    fused = mf.gaussian_laplace(image, sigma, mode=mode, cval=1.0, backend="numba")
    # float32 rounding of the range of the response (the sums are grouped otherwise)
    assert np.max(np.abs(fused - chain)) <= 1e-6 * float(np.ptp(chain))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunks", [(1, 4, 3), (4, 2, 7), (5, 13, 11)], ids=str)
def test_dask_chunks_are_bit_identical(mode, chunks, rng):
    image = random_image(rng, (9, 13, 11), "float32")
    whole = mf.gaussian_laplace(image, (0.6, 1.4, 1.0), mode=mode, cval=0.5, backend="numba")
    lazy = mf.gaussian_laplace(da.from_array(image, chunks=chunks), (0.6, 1.4, 1.0),
                               mode=mode, cval=0.5, backend="numba")
    np.testing.assert_array_equal(lazy.compute(), whole)


@pytest.mark.parametrize("mode", MODES)
def test_numba_equals_numpy_backend(mode, rng):
    image = random_image(rng, (10, 11, 12), "float32")
    a = mf.gaussian_laplace(image, 1.3, mode=mode, cval=2.0, backend="numba")
    b = mf.gaussian_laplace(image, 1.3, mode=mode, cval=2.0, backend="numpy")
    assert_close_to_reference(a, b, float32=True, image=image)


def test_ibsi_convention_on_anisotropic_voxels(rng):
    # IBSI-2 LoG: sigma in mm converted to voxels, derivatives per voxel^2
    image = random_image(rng, (12, 20, 18), "float32")
    spacing = (3.0, 0.98, 0.98)
    spec = {"name": "log", "sigma_mm": 1.5, "truncate": 4.0, "mode": "mirror", "dims": "3D"}
    ours = filter_response(image, spec, spacing=spacing, backend="numba")
    reference = ndi.gaussian_laplace(image.astype(np.float64), [1.5 / s for s in spacing],
                                     mode="mirror", truncate=4.0)
    assert_close_to_reference(ours, reference, float32=True, image=image)


def test_bad_inputs_are_refused():
    smooth, second = _kernels((1.0, 1.0, 1.0))
    with pytest.raises(TypeError, match="3-D float32 or float64"):
        gaussian_laplace_3d(np.zeros((4, 4), np.float32), smooth[:2], second[:2], 0, 0.0)
    with pytest.raises(TypeError, match="3-D float32 or float64"):
        gaussian_laplace_3d(np.zeros((4, 4, 4), np.int16), smooth, second, 0, 0.0)
    with pytest.raises(ValueError, match="symmetric"):
        gaussian_laplace_3d(np.zeros((4, 4, 4)), smooth, [np.ones(2)] * 3, 0, 0.0)
