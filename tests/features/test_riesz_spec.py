"""The ``riesz`` filter-bank spec: validation, prefixes, serialisation, and responses
equal to :func:`riesz_transform` of the inner filter's response (and, independently, the
identity ``sum_i R^(2 e_i) r = -(r - mean r)``: the pure second-order multipliers
``-w_i**2 / |w|**2`` sum to -1 off DC)."""

import json

import numpy as np
import pytest

from medimg_fast.features import FeatureSettings, FilterSpec, extract_features, filter_response
from medimg_fast.features._filterbank import crop_for_filter
from medimg_fast.filters import riesz_transform

TIGHT = {"rtol": 1e-10, "atol": 1e-10}

CONTRACT = [
    ({"name": "riesz", "order": [1, 0, 0]}, "riesz_z1y0x0"),
    ({"name": "riesz", "order": (0, 0, 1), "mode": "constant"}, "riesz_z0y0x1_constant"),
    ({"name": "riesz", "order": [0, 2], "dims": "2D"}, "riesz_y0x2_2D"),
    ({"name": "riesz", "order": [1, 0, 0],
      "of": {"name": "log", "sigma_mm": 3.0, "mode": "constant"}},
     "riesz_z1y0x0_log_sigma3.0mm_constant"),
    ({"name": "riesz", "order": [0, 2, 0], "of": {"name": "simoncelli", "level": 1}},
     "riesz_z0y2x0_simoncelli_level1"),
    ({"name": "riesz", "order": [0, 1, 1], "mode": "reflect",
      "of": {"name": "wavelet", "family": "db2", "set": "LHL", "mode": "constant"}},
     "riesz_z0y1x1_reflect_wavelet_db2_LHL_level1_constant"),
    ({"name": "riesz", "order": [1, 1], "dims": "2D",
      "of": {"name": "gabor", "sigma_mm": 5.0, "lambda_mm": 4.0, "gamma": 0.5,
             "theta_deg": 30.0, "response": "real"}},
     "riesz_y1x1_2D_gabor_sigma5.0mm_lambda4.0mm_gamma0.5_theta30.0_real"),
    ({"name": "riesz", "order": [2, 0, 0], "tensor_sigma_mm": 2,
      "of": {"name": "log", "sigma_mm": 3.0, "mode": "constant"}},
     "riesz_z2y0x0_aligned2.0mm_log_sigma3.0mm_constant"),
]


def test_prefixes_and_round_trip():
    settings = FeatureSettings(filters=tuple(d for d, _ in CONTRACT))
    assert [s.prefix for s in settings.filters] == [p for _, p in CONTRACT]
    assert len({s.prefix for s in settings.filters}) == len(CONTRACT)
    assert FeatureSettings.from_dict(settings.to_dict()) == settings
    assert FeatureSettings.from_dict(json.loads(settings.to_json())) == settings
    spec = settings.filters[3]
    assert spec.order == (1, 0, 0) and isinstance(spec.of, FilterSpec)
    assert spec.to_dict() == {"name": "riesz", "order": [1, 0, 0],
                              "of": {"name": "log", "sigma_mm": 3.0, "mode": "constant"}}
    assert hash(spec) == hash(FilterSpec.from_any(spec.to_dict()))
    # the specs of earlier releases write unchanged
    assert FilterSpec.from_any({"name": "log", "sigma_mm": 1.0}).to_dict() == {
        "name": "log", "sigma_mm": 1.0}


@pytest.mark.parametrize("spec, match", [
    ({"name": "riesz"}, "`order`, got None"),
    ({"name": "riesz", "order": [1, 0]}, r"`order` must have 3 entries.*\[1, 0\]"),
    ({"name": "riesz", "order": [1, 0, 0], "dims": "2D"}, r"2 entries.*\[1, 0, 0\]"),
    ({"name": "riesz", "order": [0, 0, 0]}, r"total order.*\[0, 0, 0\]"),
    ({"name": "riesz", "order": [1, -1, 0]}, r"`order`.*\[1, -1, 0\]"),
    ({"name": "riesz", "order": [0.5, 0, 1]}, r"`order`.*0\.5"),
    ({"name": "riesz", "order": 2}, "`order`.*got 2"),
    ({"name": "riesz", "order": [1, 0, 0], "mode": "periodic"}, "`mode`.*periodic"),
    ({"name": "riesz", "order": [1, 0, 0], "of": "log"}, "`of`.*'log'"),
    ({"name": "riesz", "order": [1, 0, 0], "of": {"name": "log"}}, "`of`.*`sigma_mm`"),
    ({"name": "riesz", "order": [1, 0, 0], "of": {"name": "log", "sigma_mm": -1}},
     "`of`.*`sigma_mm`.*-1"),
    ({"name": "riesz", "order": [1, 0, 0], "sigma_mm": 1.0}, "does not take `sigma_mm`"),
    ({"name": "riesz", "order": [1, 0, 0], "tensor_sigma_mm": 0}, "`tensor_sigma_mm`.*0"),
    ({"name": "riesz", "order": [1, 0, 0], "tensor_sigma_mm": "2"},
     "`tensor_sigma_mm`.*'2'"),
    ({"name": "log", "sigma_mm": 1.0, "order": [1, 0, 0]}, "does not take `order`"),
    ({"name": "simoncelli", "of": {"name": "log", "sigma_mm": 1.0}}, "does not take `of`"),
])
def test_validation_names_key_and_value(spec, match):
    with pytest.raises(ValueError, match=match):
        FilterSpec.from_any(spec)


@pytest.fixture
def image():
    return np.random.default_rng(11).normal(size=(12, 13, 14))


def test_response_is_riesz_of_the_inner_response(image):
    spacing = (2.0, 1.0, 1.5)
    log = {"name": "log", "sigma_mm": 2.0, "mode": "constant"}
    got = filter_response(image, {"name": "riesz", "order": [0, 1, 1], "of": log,
                                  "mode": "reflect"}, spacing=spacing, backend="numpy")
    inner = filter_response(image, log, spacing=spacing, backend="numpy")
    np.testing.assert_allclose(got, riesz_transform(inner, (0, 1, 1), spacing=spacing,
                                                    mode="reflect", backend="numpy"), **TIGHT)
    plain = filter_response(image, {"name": "riesz", "order": [1, 0, 0]}, spacing=spacing,
                            backend="numpy")
    np.testing.assert_allclose(plain, riesz_transform(image, (1, 0, 0), spacing=spacing,
                                                      backend="numpy"), **TIGHT)
    flat = filter_response(image, {"name": "riesz", "order": [0, 2], "dims": "2D"},
                           spacing=spacing, backend="numpy")
    np.testing.assert_allclose(flat, riesz_transform(image, (0, 2), dims="2D",
                                                     spacing=spacing[1:], backend="numpy"),
                               **TIGHT)


def test_aligned_response_is_the_aligned_transform(image):
    spacing = (2.0, 2.0, 2.0)
    log = {"name": "log", "sigma_mm": 3.0, "mode": "constant"}
    got = filter_response(image, {"name": "riesz", "order": [1, 1, 0], "of": log,
                                  "tensor_sigma_mm": 4.0}, spacing=spacing, backend="numpy")
    inner = filter_response(image, log, spacing=spacing, backend="numpy")
    # 4 mm on 2 mm voxels: a window of 2 voxels
    np.testing.assert_allclose(got, riesz_transform(inner, (1, 1, 0), tensor_sigma=2.0,
                                                    backend="numpy"), **TIGHT)


def test_pure_second_orders_of_a_log_sum_to_minus_the_log(image):
    log = {"name": "log", "sigma_mm": 1.5, "mode": "constant"}
    r = filter_response(image, log, backend="numpy")
    total = sum(filter_response(image, {"name": "riesz", "order": n, "of": log},
                                backend="numpy")
                for n in ([2, 0, 0], [0, 2, 0], [0, 0, 2]))
    np.testing.assert_allclose(total, -(r - r.mean()), **TIGHT)


def test_dask_and_float32(image):
    da = pytest.importorskip("dask.array")
    spec = {"name": "riesz", "order": [1, 0, 1],
            "of": {"name": "simoncelli", "level": 1}}
    x = image.astype(np.float32)
    whole = filter_response(x, spec, backend="numpy")
    assert whole.dtype == np.float32
    lazy = filter_response(da.from_array(x, chunks=(5, 6, 7)), spec, backend="numpy")
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), whole)
    ref = filter_response(image, spec, backend="numpy")
    assert ref.dtype == np.float64
    np.testing.assert_allclose(whole, ref, atol=1e-5 * np.ptp(ref), rtol=0)


def test_crop_keeps_the_whole_image_and_features_match(image):
    mask = np.zeros(image.shape, bool)
    mask[3:8, 4:9, 5:10] = True
    spec = {"name": "riesz", "order": [0, 0, 1], "mode": "constant",
            "of": {"name": "log", "sigma_mm": 1.0, "mode": "constant"}}
    img, msk = crop_for_filter(image, mask, spec, (1.0, 1.0, 1.0))
    assert img.shape == msk.shape == image.shape  # global: no crop, whatever the mode
    features = extract_features(image * 100, mask, spacing=(1.0, 1.0, 1.0),
                                settings={"families": ["stat"], "filters": [spec]})
    prefix = FilterSpec.from_any(spec).prefix
    response = filter_response(image * 100, spec, backend="numpy")
    np.testing.assert_allclose(features[f"{prefix}_stat_mean"], response[mask].mean(),
                               rtol=1e-6)
    np.testing.assert_allclose(features[f"{prefix}_stat_max"], response[mask].max(),
                               rtol=1e-6)
