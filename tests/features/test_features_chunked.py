"""Chunked (Dask) == unchunked and numba == numpy, every family, to 1e-9 relative."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medimg_fast import available_backends
from medimg_fast.features import extract_features

da = pytest.importorskip("dask.array")

BACKENDS = [b for b in ("numpy", "numba") if available_backends()[b].available]
RTOL = 1e-9
SETTINGS = {"bin_count": 12, "autocorrelation_max_voxels": 3000}


def _assert_same(a: dict, b: dict):
    assert list(a) == list(b)
    bad = []
    for k, x in a.items():
        y = b[k]
        if math.isnan(x) and math.isnan(y):
            continue
        if not abs(x - y) <= RTOL * max(abs(x), abs(y), 1e-300):
            bad.append(f"{k}: {x!r} != {y!r}")
    assert not bad, "\n".join(bad)


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(2024)
    shape = (14, 17, 19)
    image = rng.normal(80.0, 12.0, shape)
    z, y, x = np.indices(shape)
    mask = ((z - 7) / 5.5) ** 2 + ((y - 8) / 7.0) ** 2 + ((x - 9) / 7.5) ** 2 <= 1
    mask |= rng.random(shape) < 0.04  # scattered voxels: many small mesh pieces
    return image, mask


@pytest.fixture(scope="module")
def unchunked(volume):
    image, mask = volume
    return extract_features(image, mask, spacing=(1.2, 0.9, 0.8), settings=SETTINGS,
                            backend="numpy")


@pytest.mark.parametrize("chunks", [(5, 6, 7), (1, 17, 19), (14, 2, 19), (7, 17, 4)])
def test_chunked_equals_unchunked(volume, unchunked, chunks):
    image, mask = volume
    chunked = extract_features(da.from_array(image, chunks=chunks),
                               da.from_array(mask, chunks=chunks), spacing=(1.2, 0.9, 0.8),
                               settings=SETTINGS, backend=BACKENDS[-1])
    _assert_same(unchunked, chunked)


def test_mask_chunks_differ_from_image_chunks(volume, unchunked):
    image, mask = volume
    chunked = extract_features(da.from_array(image, chunks=(4, 9, 5)), mask,
                               spacing=(1.2, 0.9, 0.8), settings=SETTINGS)
    _assert_same(unchunked, chunked)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_backends_agree(volume, unchunked, backend):  # against `unchunked`: numpy
    image, mask = volume
    feats = extract_features(image, mask, spacing=(1.2, 0.9, 0.8), settings=SETTINGS,
                             backend=backend)
    _assert_same(unchunked, feats)


def test_integer_image_fixed_bin_size(volume):
    image, mask = volume
    image = np.round(image).astype(np.int16)
    s = {"bin_width": 5.0, "bin_min": 0.0, "glcm_distance": 2}
    ref = extract_features(image, mask, settings=s, backend="numpy")
    _assert_same(ref, extract_features(da.from_array(image, chunks=(4, 5, 6)),
                                       da.from_array(mask, chunks=(4, 5, 6)), settings=s))


def test_filter_bank_chunked_equals_unchunked(volume):
    pytest.importorskip("medimg_fast.filters")
    image, mask = volume
    s = {"families": [], "filters": [{"name": "log", "sigma_mm": 1.5},
                                     {"name": "mean", "size": 3}]}
    ref = extract_features(image, mask, spacing=(1.2, 0.9, 0.8), settings=s, backend="numpy")
    chunked = extract_features(da.from_array(image, chunks=(7, 9, 10)),
                               da.from_array(mask, chunks=(7, 9, 10)),
                               spacing=(1.2, 0.9, 0.8), settings=s)
    _assert_same(ref, chunked)


def test_filter_bank_matches_scipy(volume):
    pytest.importorskip("medimg_fast.filters")
    import scipy.ndimage as ndi
    import scipy.stats

    image, mask = volume
    spacing = (1.2, 0.9, 0.8)
    s = {"families": [], "filters": [{"name": "gaussian", "sigma_mm": 1.5},
                                     {"name": "log", "sigma_mm": 1.5, "convention": "per_mm"},
                                     {"name": "log", "sigma_mm": 1.5},
                                     {"name": "gradient_magnitude", "sigma_mm": 1.0},
                                     {"name": "mean", "size": 3}]}
    f = extract_features(image, mask, spacing=spacing, settings=s)
    sig = [1.5 / v for v in spacing]
    g = ndi.gaussian_filter(image, sig)[mask]
    log = sum(ndi.gaussian_filter(image, sig, order=[2 * (a == b) for b in range(3)]) / v ** 2
              for a, v in enumerate(spacing))[mask]
    log_ibsi = ndi.gaussian_laplace(image, sig)[mask]  # IBSI-2: per voxel^2
    sig1 = [1.0 / v for v in spacing]
    grad = np.sqrt(sum((ndi.gaussian_filter(image, sig1, order=[int(a == b) for b in range(3)])
                        / v) ** 2 for a, v in enumerate(spacing)))[mask]
    mean3 = ndi.uniform_filter(image, 3)[mask]
    checks = [("gaussian_sigma1.5mm", g), ("log_sigma1.5mm_permm", log),
              ("log_sigma1.5mm", log_ibsi),
              ("gradient_magnitude_sigma1.0mm", grad), ("mean_size3", mean3)]
    for prefix, ref in checks:
        assert f[f"{prefix}_stat_mean"] == pytest.approx(ref.mean(), rel=1e-9)
        assert f[f"{prefix}_stat_var"] == pytest.approx(ref.var(), rel=1e-7)
        assert f[f"{prefix}_stat_skew"] == pytest.approx(scipy.stats.skew(ref), rel=1e-6)
        assert f[f"{prefix}_stat_p90"] == pytest.approx(np.percentile(ref, 90), rel=1e-9)
