"""The compiled whole-ROI intensity statistics (numba) against the block path, bit for bit.

The block path (``BlockGrid`` + ``roi_moments`` + ``intensity_statistics``) is the
reference: it is what a Dask image runs and is checked against NumPy/SciPy in
``test_intensity.py``; here the percentiles are also checked against ``np.percentile``
directly.  The filter-bank crop to the ROI box plus the filter reach is checked against
the uncropped response.
"""

import numpy as np
import pytest

from medimg_fast.features import _intensity
from medimg_fast.features._intensity import STAT_TAGS, intensity_statistics, roi_moments
from medimg_fast.features._kernels import kernels_for
from medimg_fast.features._partials import BlockGrid

numba = pytest.importorskip("numba")


def _reference(image, mask):
    kernels = kernels_for("numba")
    grid = BlockGrid(image, mask)
    mom = roi_moments(grid, kernels)
    return mom, intensity_statistics(grid, kernels, mom)


def _assert_identical(image, mask):
    from medimg_fast.features._stats_fast import roi_statistics

    mom_ref, ref = _reference(image, mask)
    mom, got = roi_statistics(image, mask)
    assert mom == mom_ref
    assert list(got) == list(STAT_TAGS)
    for tag in STAT_TAGS:
        a, b = got[tag], ref[tag]
        assert a == b or (np.isnan(a) and np.isnan(b)), (tag, a, b)
    values = np.asarray(image, np.float64)[np.asarray(mask, bool)]
    want = np.percentile(values, [10, 50, 90])
    assert [got["stat_p10"], got["stat_median"], got["stat_p90"]] == list(want)
    return got


def _cases(rng):
    shape = (13, 17, 11)
    idx = np.indices(shape)
    ball = sum(((i - c) / r) ** 2 for i, c, r in zip(idx, (6, 8, 5), (5.5, 7.0, 4.5))) <= 1
    yield "float32 noise", rng.normal(100, 20, shape).astype(np.float32), ball
    yield "float64 lognormal", rng.lognormal(0, 1.5, shape), rng.random(shape) < 0.4
    yield "int16 ties", rng.integers(-3, 4, shape).astype(np.int16), ball
    yield "uint8 two levels", rng.integers(0, 2, shape).astype(np.uint8), ~ball
    yield "bool", rng.random(shape) < 0.5, ball
    yield "constant", np.full(shape, 7.5, np.float32), ball
    one = np.zeros(shape, bool)
    one[12, 0, 10] = True
    yield "one voxel", rng.normal(size=shape), one
    two = np.zeros(shape, bool)
    two[3, 4, 5:7] = True
    yield "two voxels", rng.normal(size=shape), two
    yield "no mask restriction", rng.normal(size=shape).astype(np.float32), np.ones(shape, bool)


def test_roi_statistics_bit_identical_to_block_path(rng):
    for name, image, mask in _cases(rng):
        try:
            _assert_identical(image, mask)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


def test_crowded_bins_are_refined(rng, monkeypatch):
    # with a tiny collection limit every wanted bin is histogrammed again (several
    # rounds), in both paths
    monkeypatch.setattr(_intensity, "_COLLECT_MAX", 3)
    image = np.concatenate([rng.normal(0, 1, 4000), rng.normal(0, 1e-9, 3000),
                            np.full(500, 0.25)]).reshape(10, 15, 50)
    mask = rng.random(image.shape) < 0.8
    _assert_identical(image, mask)


def test_empty_roi_raises():
    from medimg_fast.features._stats_fast import roi_statistics

    with pytest.raises(ValueError, match="ROI is empty"):
        roi_statistics(np.zeros((3, 3, 3)), np.zeros((3, 3, 3), bool))


@pytest.mark.parametrize("name, params", [("gaussian", {"sigma_mm": 1.0}),
                                          ("log", {"sigma_mm": 1.5}),
                                          ("mean", {"size": 3})])
def test_filter_bank_crop_with_known_box_is_exact(rng, name, params):
    from medimg_fast import filters  # noqa: F401  (the filter bank needs it)
    from medimg_fast.features._filterbank import crop_for_filter, filter_response
    from medimg_fast.features._settings import FeatureSettings

    spec = FeatureSettings.coerce({"filters": [{"name": name, **params}]}).filters[0]
    shape = (30, 26, 28)
    image = rng.normal(50, 10, shape).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[2:20, 9:17, 12:27] = rng.random((18, 8, 15)) < 0.7  # near faces on some axes
    mask[2, 9, 12] = mask[19, 16, 26] = True
    spacing = (1.0, 0.8, 1.2)
    full = filter_response(image, spec, spacing, "numba")[mask]
    box = (slice(2, 20), slice(9, 17), slice(12, 27))
    for b in (None, box):
        img, msk = crop_for_filter(image, mask, spec, spacing, box=b)
        assert img.shape != shape  # cropped on at least one axis
        np.testing.assert_array_equal(filter_response(img, spec, spacing, "numba")[msk], full)


def test_extract_numba_fast_paths_equal_block_paths(rng):
    """Whole-volume numba extraction (compiled statistics, morphology on a second thread,
    cropped filter bank) against the same image as a one-chunk Dask array (block paths)."""
    da = pytest.importorskip("dask.array")
    from medimg_fast.features import extract_features
    from medimg_fast.features._extract import feature_names

    shape = (16, 18, 14)
    idx = np.indices(shape)
    mask = sum(((i - c) / r) ** 2 for i, c, r in zip(idx, (8, 9, 6), (6.5, 7.0, 5.0))) <= 1
    image = (rng.normal(100, 20, shape) + 30 * mask).astype(np.float32)
    settings = {"bin_count": 16, "filters": [{"name": "gaussian", "sigma_mm": 1.0},
                                             {"name": "mean", "size": 3}]}
    got = extract_features(image, mask, spacing=(1.0, 0.9, 1.1), settings=settings,
                           backend="numba")
    ref = extract_features(da.from_array(image, chunks=-1), mask, spacing=(1.0, 0.9, 1.1),
                           settings=settings, backend="numba")
    assert list(got) == feature_names(settings) == list(ref)
    for key, want in ref.items():
        assert got[key] == pytest.approx(want, rel=1e-10, abs=1e-12, nan_ok=True), key
    for key in got:
        if "stat_" in key:  # statistics: bit-identical to the block path
            assert got[key] == ref[key] or (np.isnan(got[key]) and np.isnan(ref[key])), key
