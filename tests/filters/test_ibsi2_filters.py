"""IBSI-2 filters (Laws, Gabor, wavelets, LoG/mean specs) against independent references:
explicit outer products with scipy.ndimage, scikit-image's Gabor kernel, PyWavelets' swtn.

Tolerances: float64 inputs against float64 references, rtol 1e-10 / atol 1e-10 (only the
summation order differs); float32 backend comparisons rtol 1e-5.
"""

import itertools

import numpy as np
import pytest
import scipy.ndimage as ndi
from _mf_testing import LAWS_1D, laws_outer, rotations_90

from medimg_fast.features import FilterSpec, filter_response
from medimg_fast.filters import (
    gabor_filter,
    gabor_kernel,
    laws_filter,
    laws_kernel1d,
    simoncelli_filter,
    wavelet_filter,
)

pywt = pytest.importorskip("pywt")

MODES = ("reflect", "nearest", "mirror", "constant", "wrap")
TIGHT = {"rtol": 1e-10, "atol": 1e-10}

@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


def _cube_rotations(kernel):
    """The distinct 90-degree rotations of a 3-D (or 2-D) array (np.rot90 compositions,
    independent of the filters' signed permutations)."""
    seen, out = set(), []
    for k in rotations_90(kernel):
        key = (k.shape, k.tobytes())
        if key not in seen:
            seen.add(key)
            out.append(k)
    return out


# -- Laws ------------------------------------------------------------------------------

def test_laws_kernels_have_unit_norm_and_ibsi_taps():
    for name, raw in LAWS_1D.items():
        k = laws_kernel1d(name)
        np.testing.assert_allclose(k, np.array(raw) / np.linalg.norm(raw), **TIGHT)
        assert np.isclose((k * k).sum(), 1.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kernel, dims", [("E5L5S5", "3D"), ("L3W5R5", "3D"), ("S3E5", "2D")])
def test_laws_equals_convolution_with_outer_product(rng, mode, kernel, dims):
    image = rng.normal(size=(9, 11, 10))
    out = laws_filter(image, kernel, mode=mode, dims=dims, backend="numpy")
    weights = laws_outer(kernel)
    if dims == "2D":
        weights = weights[None]
    # a convolution: scipy.ndimage.correlate with the kernel flipped
    ref = ndi.correlate(image, weights[(slice(None, None, -1),) * 3], mode=mode)
    np.testing.assert_allclose(out, ref, **TIGHT)
    np.testing.assert_allclose(out, ndi.convolve(image, weights, mode=mode), **TIGHT)


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_laws_rotation_invariant_energy_against_rotated_kernels(rng, pooling):
    image = rng.normal(size=(10, 10, 10))
    kernels = _cube_rotations(laws_outer("E5L3S5"))
    assert len(kernels) == 12  # L3 is symmetric: half of the 24 rotations coincide
    responses = [ndi.convolve(image, k, mode="constant") for k in kernels]
    pooled = np.max(responses, axis=0) if pooling == "max" else np.mean(responses, axis=0)
    ref = ndi.uniform_filter(np.abs(pooled), 2 * 2 + 1, mode="constant")
    out = laws_filter(image, "E5L3S5", energy=True, delta=2, rotation_invariant=True,
                      pooling=pooling, mode="constant", backend="numpy")
    np.testing.assert_allclose(out, ref, **TIGHT)


def test_laws_2d_rotation_invariance_pools_four_rotations(rng):
    image = rng.normal(size=(3, 12, 12))
    kernels = _cube_rotations(laws_outer("E5S3"))
    assert len(kernels) == 4
    ref = np.max([ndi.convolve(image, k[None], mode="reflect") for k in kernels], axis=0)
    out = laws_filter(image, "E5S3", rotation_invariant=True, dims="2D", backend="numpy")
    np.testing.assert_allclose(out, ref, **TIGHT)


# -- Gabor -----------------------------------------------------------------------------

@pytest.mark.parametrize("sigma, lam, gamma, theta", [(10.0, 4.0, 0.5, 60.0),
                                                      (3.0, 5.0, 1.5, -20.0),
                                                      (4.2, 2.5, 1.0, 135.0)])
def test_gabor_kernel_matches_scikit_image(sigma, lam, gamma, theta):
    from skimage.filters import gabor_kernel as sk_gabor_kernel

    spacing = 2.0
    ours = gabor_kernel(sigma, lam, gamma, theta, spacing=spacing)
    sx, sy = sigma / spacing, sigma / gamma / spacing
    # a wide scikit-image kernel, cropped to ours (their box can be smaller)
    sk = sk_gabor_kernel(spacing / lam, theta=np.deg2rad(theta), sigma_x=sx, sigma_y=sy,
                         n_stds=12) * (2 * np.pi * sx * sy)
    cy, cx = sk.shape[0] // 2, sk.shape[1] // 2
    ry, rx = ours.shape[0] // 2, ours.shape[1] // 2
    np.testing.assert_allclose(ours, sk[cy - ry:cy + ry + 1, cx - rx:cx + rx + 1], **TIGHT)
    # outside our box the envelope is below exp(-truncate**2 / 2)
    outside = np.abs(sk).copy()
    outside[cy - ry:cy + ry + 1, cx - rx:cx + rx + 1] = 0
    assert outside.max() <= np.exp(-8.0) * 1.0001


@pytest.mark.parametrize("response", ["modulus", "real", "imaginary"])
@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_gabor_filter_is_the_complex_convolution(rng, response, mode):
    image = rng.normal(size=(3, 30, 28))
    k = gabor_kernel(3.0, 4.0, 0.8, 30.0, spacing=(1.0, 1.0))
    re = ndi.convolve(image, k.real[None], mode=mode)
    im = ndi.convolve(image, k.imag[None], mode=mode)
    ref = {"modulus": np.hypot(re, im), "real": re, "imaginary": im}[response]
    out = gabor_filter(image, sigma_mm=3.0, lambda_mm=4.0, gamma=0.8, theta_deg=30.0,
                       response=response, mode=mode, backend="numpy")
    np.testing.assert_allclose(out, ref, **TIGHT)


def test_gabor_rotation_invariant_3d_pools_planes_and_angles(rng):
    image = rng.normal(size=(14, 15, 16))
    thetas = [10.0, 100.0, 190.0, 280.0]
    responses = []
    for rows, cols in [(1, 2), (0, 2), (0, 1)]:
        for theta in thetas:
            k = gabor_kernel(2.0, 3.0, 1.2, theta)
            shape = [1, 1, 1]
            shape[rows], shape[cols] = k.shape
            re = ndi.convolve(image, k.real.reshape(shape), mode="nearest")
            im = ndi.convolve(image, k.imag.reshape(shape), mode="nearest")
            responses.append(np.hypot(re, im))
    out = gabor_filter(image, sigma_mm=2.0, lambda_mm=3.0, gamma=1.2, theta_deg=10.0,
                       rotation_invariant=True, theta_step_deg=90.0, pooling="mean",
                       mode="nearest", dims="3D", backend="numpy")
    np.testing.assert_allclose(out, np.mean(responses, axis=0), **TIGHT)


# -- separable wavelets -----------------------------------------------------------------

@pytest.mark.parametrize("family", ["haar", "db2", "coif1", "sym3"])
@pytest.mark.parametrize("level", [1, 2, 3])
def test_wavelet_wrap_equals_pywt_swtn(rng, family, level):
    image = rng.normal(size=(16, 16, 16))
    coeffs = pywt.swtn(image, family, level=level)[0]  # coarsest level first
    for band in ["LLL", "LHL", "HHL", "HHH", "HLL"]:
        key = "".join("a" if c == "L" else "d" for c in reversed(band))  # z, y, x order
        out = wavelet_filter(image, family, band, level, mode="wrap", backend="numpy")
        np.testing.assert_allclose(out, coeffs[key], **TIGHT, err_msg=f"{family} {band}")


@pytest.mark.parametrize("mode", MODES)
def test_wavelet_level1_equals_convolve1d(rng, mode):
    image = rng.normal(size=(9, 10, 11))
    w = pywt.Wavelet("db3")
    ref = ndi.convolve1d(image, w.dec_hi, axis=0, mode=mode)  # z: H
    ref = ndi.convolve1d(ref, w.dec_lo, axis=1, mode=mode)  # y: L
    ref = ndi.convolve1d(ref, w.dec_hi, axis=2, mode=mode)  # x: H
    out = wavelet_filter(image, "db3", "HLH", 1, mode=mode, backend="numpy")
    np.testing.assert_allclose(out, ref, **TIGHT)


def test_wavelet_rotation_invariant_mean_against_rotated_images(rng):
    """Rotating the image is rotating the whole cascade the other way."""
    image = rng.normal(size=(12, 12, 12))
    planes = [(0, 1), (1, 2)]
    transforms = {(): image}
    frontier = [()]
    while frontier:  # the 24 rotations as sequences of rot90 on the coordinate planes
        nxt = []
        for seq in frontier:
            for p in planes:
                s = seq + (p,)
                arr = image
                for q in s:
                    arr = np.rot90(arr, axes=q)
                if not any(np.array_equal(arr, t) for t in transforms.values()):
                    transforms[s] = arr
                    nxt.append(s)
        frontier = nxt
    assert len(transforms) == 24
    responses = []
    for seq, arr in transforms.items():
        r = wavelet_filter(np.ascontiguousarray(arr), "db2", "HLL", 2, mode="constant",
                           backend="numpy")
        for q in reversed(seq):
            r = np.rot90(r, axes=q, k=-1)
        responses.append(r)
    out = wavelet_filter(image, "db2", "HLL", 2, rotation_invariant=True, pooling="mean",
                         mode="constant", backend="numpy")
    np.testing.assert_allclose(out, np.mean(responses, axis=0), **TIGHT)


# -- Simoncelli ------------------------------------------------------------------------

def test_simoncelli_band_against_explicit_fft(rng):
    image = rng.normal(size=(12, 14, 16))
    f = np.meshgrid(*[np.fft.fftfreq(n) * 2 for n in image.shape], indexing="ij")
    nu = np.sqrt(sum(c * c for c in f))
    for level in (1, 2):
        nu_max = 0.5 ** (level - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.where((nu >= nu_max / 4) & (nu <= nu_max),
                         np.cos(np.pi / 2 * np.log2(2 * nu / nu_max)), 0.0)
        ref = np.fft.ifftn(np.fft.fftn(image) * h).real
        np.testing.assert_allclose(simoncelli_filter(image, level, backend="numpy"), ref,
                                   **TIGHT)
    assert abs(simoncelli_filter(np.ones((8, 8, 8)), backend="numpy")).max() < 1e-12


def test_simoncelli_2d_is_slice_by_slice(rng):
    image = rng.normal(size=(3, 10, 12))
    out = simoncelli_filter(image, dims="2D", mode="reflect", backend="numpy")
    for z in range(3):
        np.testing.assert_allclose(out[z], simoncelli_filter(image[z], dims="2D",
                                                             mode="reflect", backend="numpy"),
                                   **TIGHT)


# -- LoG and mean specs -----------------------------------------------------------------

def test_log_spec_ibsi_convention_has_no_spacing_factor(rng):
    image = rng.normal(size=(12, 13, 14))
    spacing = (2.0, 1.5, 1.2)
    ibsi = filter_response(image, {"name": "log", "sigma_mm": 3.0, "truncate": 4.0,
                                   "mode": "constant", "dims": "3D"}, spacing=spacing,
                           backend="numpy")
    sigma_vox = [3.0 / s for s in spacing]
    np.testing.assert_allclose(ibsi, ndi.gaussian_laplace(image, sigma_vox, mode="constant"),
                               **TIGHT)
    per_mm = filter_response(image, {"name": "log", "sigma_mm": 3.0, "convention": "per_mm"},
                             spacing=spacing, backend="numpy")
    ref = sum(ndi.gaussian_filter(image, sigma_vox, order=[2 * (a == b) for b in range(3)])
              / v ** 2 for a, v in enumerate(spacing))
    np.testing.assert_allclose(per_mm, ref, **TIGHT)


@pytest.mark.parametrize("dims", ["2D", "3D"])
def test_mean_spec_is_uniform_filter(rng, dims):
    image = rng.normal(size=(10, 11, 12))
    out = filter_response(image, {"name": "mean", "size": 5, "mode": "constant", "dims": dims},
                          spacing=(1.0, 1.0, 1.0), backend="numpy")
    axes = (1, 2) if dims == "2D" else None
    np.testing.assert_allclose(out, ndi.uniform_filter(image, 5, mode="constant", axes=axes),
                               **TIGHT)


# -- chunks and backends -----------------------------------------------------------------

_CASES = {
    "laws": lambda x, mode, backend: laws_filter(x, "E5L3S5", energy=True, delta=2,
                                                  rotation_invariant=True, mode=mode,
                                                  backend=backend),
    "laws2d": lambda x, mode, backend: laws_filter(x, "W5R5", dims="2D", mode=mode,
                                                    backend=backend),
    "gabor": lambda x, mode, backend: gabor_filter(x, sigma_mm=2.0, lambda_mm=3.0, gamma=0.7,
                                                    theta_deg=25.0, mode=mode,
                                                    backend=backend),
    "wavelet": lambda x, mode, backend: wavelet_filter(x, "db2", "HLH", 2,
                                                        rotation_invariant=True, mode=mode,
                                                        backend=backend),
    "simoncelli": lambda x, mode, backend: simoncelli_filter(x, 1, mode=mode, backend=backend),
    "log_ibsi": lambda x, mode, backend: filter_response(
        x, {"name": "log", "sigma_mm": 2.0, "mode": mode}, spacing=(2.0, 1.0, 1.5),
        backend=backend),
}


def test_dask_chunked_equals_unchunked():
    da = pytest.importorskip("dask.array")
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    # no shrinking: a failure prints its example, and shrinking would cost minutes
    @hypothesis.settings(max_examples=6, deadline=None, derandomize=True,
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    @hypothesis.given(name=st.sampled_from(sorted(_CASES)), mode=st.sampled_from(MODES),
                      chunks=st.tuples(*[st.integers(2, 9)] * 3),
                      dtype=st.sampled_from([np.float32, np.uint8]))
    def check(name, mode, chunks, dtype):
        image = (np.random.default_rng(7).random((14, 13, 12)) * 200).astype(dtype)
        whole = _CASES[name](image, mode, "numba")
        lazy = _CASES[name](da.from_array(image, chunks=chunks), mode, "numba")
        assert isinstance(lazy, da.Array) and lazy.chunks == da.from_array(
            image, chunks=chunks).chunks
        np.testing.assert_array_equal(lazy.compute(), whole, err_msg=f"{name} {mode} {chunks}")

    check()


@pytest.mark.parametrize("name", sorted(_CASES))
def test_dask_chunks_cut_through_halo_every_filter(name):
    da = pytest.importorskip("dask.array")
    image = np.random.default_rng(3).normal(size=(15, 14, 13)).astype(np.float32)
    for mode in ("constant", "wrap"):
        whole = _CASES[name](image, mode, "numba")
        lazy = _CASES[name](da.from_array(image, chunks=(4, 5, 6)), mode, "numba")
        np.testing.assert_array_equal(lazy.compute(), whole, err_msg=f"{name} {mode}")


@pytest.mark.parametrize("name", sorted(_CASES))
def test_numba_equals_numpy(name):
    image = np.random.default_rng(5).normal(size=(12, 13, 14)).astype(np.float32)
    for mode in ("reflect", "constant"):
        np.testing.assert_allclose(_CASES[name](image, mode, "numba"),
                                   _CASES[name](image, mode, "numpy"), rtol=1e-5, atol=1e-5)


# -- validation and specs ------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda x: laws_filter(x, "E5L5Q5"), "Q5"),
    (lambda x: laws_filter(x, "E5L5"), "kernel"),
    (lambda x: laws_filter(x, pooling="median"), "pooling"),
    (lambda x: laws_filter(x, delta=-1), "delta"),
    (lambda x: laws_filter(x, dims="4D"), "dims"),
    (lambda x: gabor_filter(x, sigma_mm=-1, lambda_mm=4, gamma=1, theta_deg=0), "sigma_mm"),
    (lambda x: gabor_filter(x, sigma_mm=1, lambda_mm=4, gamma=1, theta_deg=0,
                            response="phase"), "response"),
    (lambda x: gabor_filter(x, sigma_mm=1, lambda_mm=4, gamma=1, theta_deg=0,
                            rotation_invariant=True), "theta_step_deg"),
    (lambda x: wavelet_filter(x, "db99"), "family"),
    (lambda x: wavelet_filter(x, "db2", "LXL"), "set"),
    (lambda x: wavelet_filter(x, "db2", "LHL", 0), "level"),
    (lambda x: simoncelli_filter(x, level=0), "level"),
    (lambda x: laws_filter(x, mode="periodic"), "mode"),
])
def test_invalid_arguments_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.zeros((6, 6, 6)))


CONTRACT = [
    ({"name": "laws", "kernel": "E5L5S5", "energy": True, "delta": 7,
      "rotation_invariant": True, "pooling": "max", "mode": "constant", "dims": "3D"},
     "laws_E5L5S5_energy7_rotmax_constant"),
    ({"name": "gabor", "sigma_mm": 10, "gamma": 0.5, "lambda_mm": 4, "theta_deg": 60,
      "theta_step_deg": None, "response": "modulus", "rotation_invariant": False,
      "mode": "constant", "dims": "2D"},
     "gabor_sigma10.0mm_lambda4.0mm_gamma0.5_theta60.0_constant"),
    ({"name": "wavelet", "family": "db2", "set": "LHL", "level": 1,
      "rotation_invariant": False, "pooling": "mean", "mode": "constant"},
     "wavelet_db2_LHL_level1_constant"),
    ({"name": "simoncelli", "level": 1, "mode": "wrap"}, "simoncelli_level1"),
    ({"name": "log", "sigma_mm": 3.0, "truncate": 4.0, "mode": "constant", "dims": "3D"},
     "log_sigma3.0mm_constant"),
    ({"name": "mean", "size": 15, "mode": "constant", "dims": "2D"}, "mean_size15_constant_2D"),
    ({"name": "log", "sigma_mm": 1.0}, "log_sigma1.0mm"),
    ({"name": "mean", "size": 3}, "mean_size3"),
    ({"name": "gaussian", "sigma_mm": 1.5}, "gaussian_sigma1.5mm"),
    ({"name": "gradient_magnitude", "sigma_mm": 1.0}, "gradient_magnitude_sigma1.0mm"),
]


def test_filter_spec_contract_and_prefixes():
    from medimg_fast.features import FeatureSettings

    settings = FeatureSettings(filters=tuple(d for d, _ in CONTRACT))
    assert [s.prefix for s in settings.filters] == [p for _, p in CONTRACT]
    assert len({s.prefix for s in settings.filters}) == len(CONTRACT)
    assert FeatureSettings.from_dict(settings.to_dict()) == settings
    assert FilterSpec.from_any({"name": "log", "sigma_mm": 1.0}).params["convention"] == "ibsi"
    assert FilterSpec.from_any({"name": "log", "sigma_mm": 1.0, "convention": "per_mm"}
                               ).prefix == "log_sigma1.0mm_permm"
    variants = [{"name": "wavelet", "family": "db2", "set": s, "level": lv, "mode": m}
                for s, lv, m in itertools.product(["LHL", "HHH"], [1, 2], ["constant", "wrap"])]
    assert len({FilterSpec.from_any(v).prefix for v in variants}) == len(variants)


@pytest.mark.parametrize("spec, match", [
    ({"name": "laws", "kernel": "E5L5X5"}, "X5"),
    ({"name": "laws", "kernel": "E5L5S5", "delta": -2}, "`delta`.*-2"),
    ({"name": "laws", "kernel": "E5L5S5", "pooling": "median"}, "`pooling`.*median"),
    ({"name": "laws", "kernel": "E5L5S5", "energy": "yes"}, "`energy`.*yes"),
    ({"name": "gabor", "sigma_mm": 10, "gamma": 0.5, "lambda_mm": 0, "theta_deg": 60},
     "`lambda_mm`.*0"),
    ({"name": "gabor", "sigma_mm": 10, "gamma": 0.5, "lambda_mm": 4}, "`theta_deg`"),
    ({"name": "gabor", "sigma_mm": 10, "gamma": 0.5, "lambda_mm": 4, "theta_deg": 0,
      "response": "phase"}, "`response`.*phase"),
    ({"name": "wavelet", "family": "nope", "set": "LHL"}, "family.*nope"),
    ({"name": "wavelet", "family": "db2", "set": "LH"}, "set.*LH"),
    ({"name": "simoncelli", "level": 0}, "`level`.*0"),
    ({"name": "log", "sigma_mm": 1.0, "mode": "periodic"}, "`mode`.*periodic"),
    ({"name": "mean", "size": 3, "dims": "2.5D"}, "`dims`.*2.5D"),
    ({"name": "mean", "size": 3, "kernel": "E5L5S5"}, "does not take `kernel`"),
    ({"name": "log", "sigma_mm": 1.0, "convention": "mm"}, "`convention`.*mm"),
])
def test_filter_spec_validation_names_key_and_value(spec, match):
    with pytest.raises(ValueError, match=match):
        FilterSpec.from_any(spec)


@pytest.mark.parametrize("spec", [
    {"name": "laws", "kernel": "E5L3S5", "energy": True, "delta": 2,
     "rotation_invariant": True, "mode": "constant"},
    {"name": "gabor", "sigma_mm": 2.0, "lambda_mm": 3.0, "gamma": 0.6, "theta_deg": 40},
    {"name": "wavelet", "family": "db2", "set": "HLL", "level": 2, "mode": "nearest"},
    {"name": "log", "sigma_mm": 1.5, "mode": "constant", "dims": "2D"},
])
def test_filter_bank_crop_is_exact_for_ibsi2_specs(rng, spec):
    from medimg_fast.features._filterbank import crop_for_filter

    shape = (30, 28, 26)
    image = rng.normal(size=shape).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[12:18, 10:17, 11:15] = True
    spacing = (1.5, 1.0, 1.25)
    full = filter_response(image, spec, spacing=spacing, backend="numba")[mask]
    img, msk = crop_for_filter(image, mask, FilterSpec.from_any(spec), spacing)
    assert img.shape != shape
    np.testing.assert_array_equal(filter_response(img, spec, spacing, "numba")[msk], full)
