"""Settings of the IBSI-1 families, the names they produce, local intensity and the IVH
against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medimg_fast.features import FeatureSettings, extract_features
from medimg_fast.features._extract import feature_names
from medimg_fast.features._ivh import IvhBins, ivh_features
from medimg_fast.features._local import SPHERE_RADIUS_MM, local_intensity_features


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(7)
    image = np.round(rng.normal(40, 25, size=(9, 12, 11)))
    z, y, x = np.indices(image.shape)
    mask = ((z - 4) / 4) ** 2 + ((y - 6) / 5) ** 2 + ((x - 5) / 4.5) ** 2 <= 1
    return image, mask


@pytest.mark.parametrize("settings", [
    {},
    {"families": "all", "texture_dims": ["2D", "2.5D", "3D"], "diagnostics": True},
    {"families": ["rlm", "ngl", "loc"], "texture_dims": ["2.5D"]},
    {"families": ["cm", "rlm"], "texture_dims": ["2D", "3D"],
     "glcm_aggregations": ["2D_comb", "3D_avg"]},
    {"families": ["ivh", "stat"], "filters": [{"name": "mean", "size": 3}],
     "reseg_range": [0, None], "resample_mm": [None, 1.5, 1.5]},
])
def test_feature_names_are_the_keys_in_order(volume, settings):
    image, mask = volume
    feats = extract_features(image, mask, spacing=(2.0, 1.0, 1.0), settings=settings)
    assert list(feats) == feature_names(settings)


def test_glcm_aggregations_restrict_cm_and_rlm(volume):
    image, mask = volume
    s = {"families": ["cm", "rlm", "szm"], "texture_dims": ["2D", "3D"],
         "glcm_aggregations": ["2D_comb"]}
    feats = extract_features(image, mask, settings=s)
    suffixes = {k.rsplit("_", 2)[-2] + "_" + k.rsplit("_", 1)[-1] for k in feats
                if k.startswith(("cm_", "rlm_"))}
    assert suffixes == {"2D_comb"}
    assert "szm_sze_3D" in feats and "szm_sze_2D" in feats


@pytest.mark.parametrize(("settings", "match"), [
    ({"families": ["glrlm"]}, r"`families`.*'glrlm'"),
    ({"texture_dims": ["4D"]}, r"`texture_dims`.*4D"),
    ({"texture_dims": []}, r"`texture_dims`"),
    ({"glcm_aggregations": ["2D_avg"]}, r"`glcm_aggregations`.*'2D_avg'"),
    ({"resample_mm": [1.0, 2.0]}, r"`resample_mm`.*\(1.0, 2.0\)"),
    ({"resample_mm": [1.0, -2.0, 1.0]}, r"`resample_mm`.*-2.0"),
    ({"resample_order": 2}, r"`resample_order`.*2"),
    ({"mask_threshold": 1.5}, r"`mask_threshold`.*1.5"),
    ({"reseg_range": [400, -500]}, r"`reseg_range`.*low <= high"),
    ({"reseg_range": [float("nan"), 3]}, r"`reseg_range`"),
    ({"reseg_outliers_sigma": 0}, r"`reseg_outliers_sigma`.*0"),
    ({"ivh_bin_width": 2.5, "ivh_bin_count": 10}, r"`ivh_bin_width` or `ivh_bin_count`"),
    ({"ivh_bin_count": 0}, r"`ivh_bin_count`.*0"),
    ({"ngldm_distance": 0}, r"`ngldm_distance`.*0"),
    ({"ngldm_alpha": -1}, r"`ngldm_alpha`.*-1"),
    ({"autocorrelation_max_voxels": -5}, r"`autocorrelation_max_voxels`.*-5"),
    ({"texture_dim": ["2D"]}, r"unknown setting.*texture_dim"),
])
def test_bad_settings_name_the_option_and_value(settings, match):
    with pytest.raises(ValueError, match=match):
        FeatureSettings.from_dict(settings)


def test_bool_settings_refuse_other_types():
    with pytest.raises(TypeError, match=r"`diagnostics` must be true or false, got 'yes'"):
        FeatureSettings(diagnostics="yes")


def test_settings_round_trip_every_field():
    s = FeatureSettings(bin_width=25.0, families="all", texture_dims=("2.5D", "2D"),
                        resample_mm=(None, 2, 2), resample_order=3, round_intensities=True,
                        mask_threshold=0.4, reseg_range=(-500, None), reseg_outliers_sigma=3,
                        ivh_bin_width=2.5, ngldm_distance=2, ngldm_alpha=1, diagnostics=True,
                        glcm_aggregations=("2D_avg",), autocorrelation_max_voxels=100)
    assert s.texture_dims == ("2D", "2.5D")  # canonical order
    assert FeatureSettings.from_dict(s.to_dict()) == s
    import json

    assert FeatureSettings.from_dict(json.loads(s.to_json())) == s
    assert s.bin_origin == -500.0


def test_default_settings_keep_the_first_families():
    s = FeatureSettings()
    assert s.families == ("stat", "ih", "cm", "morph")
    assert s.texture_dims == ("3D",)
    assert s.texture_aggregations["cm"] == ("3D_avg", "3D_comb")


def test_fixed_bin_size_starts_at_the_reseg_range(volume):
    image, mask = volume
    lo = float(image[mask].min()) - 7.0
    a = extract_features(image, mask, settings={"families": ["ih"], "bin_width": 5.0,
                                                "reseg_range": [lo, None]})
    b = extract_features(image, mask, settings={"families": ["ih"], "bin_width": 5.0,
                                                "bin_min": lo})
    assert a == b
    assert a["ih_min"] == 2.0  # the ROI minimum lies 7 above the origin: bin 2


# -- local intensity -------------------------------------------------------------------
def _local_mean_direct(image, centre, spacing):
    idx = np.indices(image.shape).reshape(3, -1).T
    d = np.sqrt((((idx - centre) * np.asarray(spacing)) ** 2).sum(axis=1))
    return image.reshape(-1)[d <= SPHERE_RADIUS_MM].mean()


@pytest.mark.parametrize("spacing", [(2.0, 2.0, 2.0), (3.0, 0.9, 1.1)])
def test_local_intensity_against_direct_sums(volume, spacing):
    image, mask = volume
    got = local_intensity_features(image, mask, spacing)
    means = {tuple(c): _local_mean_direct(image, c, spacing) for c in np.argwhere(mask)}
    assert got["loc_peak_glob"] == pytest.approx(max(means.values()), rel=1e-10)
    peak = image[mask].max()
    expected = max(m for c, m in means.items() if image[c] == peak)
    assert got["loc_peak_loc"] == pytest.approx(expected, rel=1e-12)


def test_local_intensity_sphere_reaches_outside_the_roi():
    image = np.zeros((5, 9, 9))
    image[2, 4, 5] = 100.0  # outside the ROI, within the sphere of (2, 4, 4)
    mask = np.zeros(image.shape, bool)
    mask[2, 4, 4] = True
    got = local_intensity_features(image, mask, (1.0, 1.0, 1.0))
    n = len(np.argwhere(np.sqrt(((np.indices(image.shape).reshape(3, -1).T - [2, 4, 4]) ** 2)
                               .sum(axis=1)) <= SPHERE_RADIUS_MM))
    assert got["loc_peak_glob"] == pytest.approx(100.0 / n)


# -- intensity-volume histogram --------------------------------------------------------
def test_ivh_by_hand_without_discretisation():
    values = np.array([1.0, 1, 1, 2, 2, 5])  # levels 1..5, fractions gamma 0, .25, ...
    bins = IvhBins.from_settings(FeatureSettings(), 1.0, 5.0)
    f = ivh_features(bins.counts(values), bins)
    # nu: >=1: 1, >=2: 1/2, >=3..5: 1/6
    assert f["ivh_v10"] == pytest.approx(0.5)  # lowest level with gamma >= 0.1 is 2
    assert f["ivh_v90"] == pytest.approx(1 / 6)
    assert f["ivh_i10"] == 6.0  # no level has nu <= 0.1: one past the highest level
    assert f["ivh_i90"] == 2.0  # lowest level with nu <= 0.9


def test_ivh_fixed_bin_size_uses_bin_centres_from_the_range():
    s = FeatureSettings(reseg_range=(-10.0, 10.0), ivh_bin_width=5.0)
    bins = IvhBins.from_settings(s, -3.0, 7.0)
    np.testing.assert_allclose(bins.values, [-7.5, -2.5, 2.5, 7.5, 12.5])
    f = ivh_features(bins.counts(np.array([-3.0, 0.0, 7.0, 7.5])), bins)
    # counts per centre 0, 1, 1, 2, 0; gamma 0, .25, .5, .75, 1; nu 1, 1, .75, .5, 0
    assert f["ivh_v10"] == 1.0
    assert f["ivh_v90"] == 0.0
    assert f["ivh_i10"] == 12.5
    assert f["ivh_i90"] == 2.5


def test_ivh_of_non_integer_intensities_takes_1000_bins(volume):
    image, mask = volume
    f = extract_features(image + 0.25, mask, settings={"families": ["ivh"]})
    g = extract_features(image + 0.25, mask, settings={"families": ["ivh"],
                                                       "ivh_bin_count": 1000})
    assert f == g
    assert math.isfinite(f["ivh_auc"])
