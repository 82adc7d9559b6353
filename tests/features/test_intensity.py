"""Intensity statistics and histogram features against NumPy/SciPy on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from medimg_fast import available_backends
from medimg_fast.features import FeatureSettings, extract_features
from medimg_fast.features._intensity import _COLLECT_MAX
from medimg_fast.features._partials import Moments

BACKENDS = [b for b in ("numpy", "numba") if available_backends()[b].available]
RTOL = 1e-10  # float64 accumulation in both


def _reference_stats(x):
    """IBSI statistics written directly with NumPy / SciPy (the independent reference)."""
    p10, p25, med, p75, p90 = np.percentile(x, [10, 25, 50, 75, 90])
    inside = x[(x >= p10) & (x <= p90)]
    return {
        "stat_mean": np.mean(x),
        "stat_var": np.var(x),
        "stat_skew": scipy.stats.skew(x, bias=True),
        "stat_kurt": scipy.stats.kurtosis(x, fisher=True, bias=True),
        "stat_median": np.median(x),
        "stat_min": x.min(),
        "stat_p10": p10,
        "stat_p90": p90,
        "stat_max": x.max(),
        "stat_iqr": scipy.stats.iqr(x),
        "stat_range": np.ptp(x),
        "stat_mad": np.mean(np.abs(x - x.mean())),
        "stat_rmad": np.mean(np.abs(inside - inside.mean())),
        "stat_medad": np.mean(np.abs(x - med)),
        "stat_cov": np.std(x) / np.mean(x),
        "stat_qcod": (p75 - p25) / (p75 + p25),
        "stat_energy": np.sum(x * x),
        "stat_rms": np.sqrt(np.mean(x * x)),
    }


def _check_stats(feats, x):
    ref = _reference_stats(x)
    for tag, want in ref.items():
        assert feats[tag] == pytest.approx(want, rel=RTOL, abs=1e-12), tag


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["normal", "integer_ties", "lognormal"])
def test_statistics_match_numpy_scipy(rng, backend, kind):
    shape = (12, 13, 14)
    if kind == "normal":
        image = rng.normal(50.0, 10.0, shape)
    elif kind == "integer_ties":
        image = rng.integers(0, 40, shape).astype(np.uint16)
    else:
        image = rng.lognormal(3.0, 1.0, shape).astype(np.float32)
    mask = rng.random(shape) < 0.6
    feats = extract_features(image, mask, settings={"families": ["stat"]}, backend=backend)
    _check_stats(feats, image[mask].astype(np.float64))


def test_quantile_selection_refines_crowded_bins(rng):
    # all but one value share the first of the 4096 histogram bins: selection must
    # histogram that bin again instead of gathering its > _COLLECT_MAX values
    values = np.concatenate([rng.random(_COLLECT_MAX + 5000), [1e9]])
    image = values.reshape(1, 1, -1)
    feats = extract_features(image, settings={"families": ["stat"]}, backend="numpy")
    _check_stats(feats, values)


def test_constant_roi():
    image = np.full((4, 4, 4), 7.0)
    feats = extract_features(image, settings={"families": ["stat", "ih"]})
    assert feats["stat_var"] == 0.0
    assert feats["stat_skew"] == 0.0 and feats["stat_kurt"] == 0.0
    assert feats["stat_median"] == 7.0 and feats["stat_iqr"] == 0.0
    assert feats["ih_entropy"] == 0.0 and feats["ih_uniformity"] == 1.0


def test_moments_merge_matches_scipy(rng):
    x = rng.gamma(2.0, 3.0, 1001)
    parts = []
    for chunk in np.array_split(x, [3, 400, 401, 900]):
        d = chunk - chunk.mean()
        parts.append(Moments.of(len(chunk), chunk.mean(), (d ** 2).sum(), (d ** 3).sum(),
                                (d ** 4).sum(), chunk.min(), chunk.max(), (chunk ** 2).sum()))
    m = parts[0]
    for p in parts[1:]:
        m = Moments.merge(m, p)
    assert m.n == x.size
    assert m.mean == pytest.approx(x.mean(), rel=1e-13)
    assert m.m2 / m.n == pytest.approx(np.var(x), rel=1e-12)
    assert (m.m3 / m.n) / (m.m2 / m.n) ** 1.5 == pytest.approx(scipy.stats.skew(x), rel=1e-10)
    assert (m.m4 / m.n) / (m.m2 / m.n) ** 2 - 3 == pytest.approx(scipy.stats.kurtosis(x),
                                                                  rel=1e-10)


def _levels_fbs(x, width, lo):
    return np.floor((x - lo) / width).astype(int) + 1


def _reference_histogram(levels, ng):
    counts = np.bincount(levels, minlength=ng + 1)[1:]
    p = counts / counts.sum()
    p25, p75 = np.percentile(levels, [25, 75])
    pp = p[p > 0]
    p10, p90 = np.percentile(levels, [10, 90])
    inside = levels[(levels >= p10) & (levels <= p90)]
    grad = np.gradient(counts.astype(float))  # central differences, one-sided at the ends
    return {
        "ih_mean": levels.mean(), "ih_var": levels.var(),
        "ih_skew": scipy.stats.skew(levels), "ih_kurt": scipy.stats.kurtosis(levels),
        "ih_median": np.median(levels), "ih_min": levels.min(), "ih_max": levels.max(),
        "ih_p10": np.percentile(levels, 10), "ih_p90": np.percentile(levels, 90),
        "ih_iqr": p75 - p25, "ih_qcod": (p75 - p25) / (p75 + p25),
        "ih_mode": np.argmax(counts) + 1,
        "ih_entropy": -np.sum(pp * np.log2(pp)), "ih_uniformity": np.sum(p * p),
        "ih_mad": np.mean(np.abs(levels - levels.mean())),
        "ih_medad": np.mean(np.abs(levels - np.median(levels))),
        "ih_max_grad": grad.max(), "ih_max_grad_g": np.argmax(grad) + 1,
        "ih_min_grad": grad.min(), "ih_min_grad_g": np.argmin(grad) + 1,
        "ih_cov": levels.std() / levels.mean(),
        "ih_range": np.ptp(levels),
        "ih_rmad": np.mean(np.abs(inside - inside.mean())),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_histogram_fixed_bin_size_with_bin_min(rng, backend):
    image = rng.normal(0.0, 100.0, (10, 11, 12))
    mask = rng.random(image.shape) < 0.7
    x = image[mask]
    settings = {"bin_width": 25.0, "bin_min": -1000.0, "families": ["ih"]}
    feats = extract_features(image, mask, settings=settings, backend=backend)
    levels = _levels_fbs(x, 25.0, -1000.0)
    ref = _reference_histogram(levels, levels.max())
    for tag, want in ref.items():
        assert feats[tag] == pytest.approx(want, rel=1e-12, abs=1e-12), tag


@pytest.mark.parametrize("backend", BACKENDS)
def test_histogram_fixed_bin_number(rng, backend):
    image = rng.uniform(-3.0, 5.0, (9, 10, 11))
    x = image.ravel()
    feats = extract_features(image, settings={"bin_count": 16, "families": ["ih"]},
                             backend=backend)
    levels = np.floor(16 * (x - x.min()) / (x.max() - x.min())).astype(int) + 1
    levels[levels > 16] = 16
    ref = _reference_histogram(levels, 16)
    for tag, want in ref.items():
        assert feats[tag] == pytest.approx(want, rel=1e-12, abs=1e-12), tag


def test_settings_round_trip_and_validation():
    s = FeatureSettings(bin_width=2.5, bin_min=-10, families=("stat", "cm"),
                        filters=({"name": "log", "sigma_mm": 1.5}, {"name": "mean", "size": 3}))
    assert FeatureSettings.from_dict(s.to_dict()) == s
    import json

    assert FeatureSettings.from_dict(json.loads(s.to_json())) == s
    with pytest.raises(ValueError, match="bin_widht"):
        FeatureSettings.from_dict({"bin_widht": 1})
    with pytest.raises(ValueError, match="either `bin_width` or `bin_count`"):
        FeatureSettings(bin_width=1.0, bin_count=8)
    with pytest.raises(ValueError, match="`bin_width` must be a positive number"):
        FeatureSettings(bin_width=0)
    with pytest.raises(ValueError, match="families"):
        FeatureSettings(families=("glrlm",))
    with pytest.raises(ValueError, match="sigma_mm"):
        FeatureSettings(filters=({"name": "log"},))
    with pytest.raises(ValueError, match="unknown key"):
        FeatureSettings(filters=({"name": "log", "sigma": 1.0},))


def test_input_validation(rng):
    image = rng.normal(size=(4, 5, 6))
    with pytest.raises(ValueError, match="ROI is empty"):
        extract_features(image, np.zeros(image.shape, bool))
    with pytest.raises(ValueError, match="`mask` must have the shape"):
        extract_features(image, np.ones((4, 5, 5), bool))
    with pytest.raises(ValueError, match="`spacing`"):
        extract_features(image, spacing=(1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="below `bin_min`"):
        extract_features(image, settings={"bin_width": 1.0, "bin_min": 100.0})
    with pytest.raises(TypeError, match="`image`"):
        extract_features([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="`backend`"):
        extract_features(image, backend="fortran")
    with pytest.raises(ValueError, match="unknown setting"):
        extract_features(image, settings={"bins": 3})
    assert math.isfinite(extract_features(image, settings={"families": ["stat"]})["stat_mean"])
