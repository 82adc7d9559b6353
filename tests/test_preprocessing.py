"""The IBSI-1 image-processing chain: grid, interpolation, mask, re-segmentation, diagnostics.

References are independent of the code under test: grids worked out by hand from the IBSI
manual's formulas, ``scipy.ndimage.map_coordinates`` on coordinates built here, hand-computed
re-segmentations, and the IBSI-1 CT phantom's consensus diagnostic values.
"""

from __future__ import annotations

import csv
import doctest
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from medimg_fast import preprocessing
from medimg_fast.preprocessing import (
    IBSIGrid,
    Preprocessed,
    ibsi_grid,
    interpolate_image,
    interpolate_mask,
    preprocess,
    resegment,
)

CT_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ibsi1_ct"

# Interpolation here and scipy's map_coordinates run the same spline arithmetic in float64 but
# not in the same summation order: they agree to rounding error.
ATOL = 1e-9


def _manual_coordinates(shape, spacing, new_spacing):
    """The align-grid-centers coordinates per axis, straight from the manual's formulas."""
    coords = []
    for n_a, s_a, s_b in zip(shape, spacing, new_spacing):
        if s_b is None:
            coords.append(np.arange(n_a, dtype=float))
            continue
        n_b = math.ceil(n_a * s_a / s_b)
        x0 = 0.5 * (n_a - 1 - (s_b / s_a) * (n_b - 1))
        coords.append(x0 + (s_b / s_a) * np.arange(n_b))
    return coords


def _map_coordinates_reference(image, coords, order):
    mesh = np.meshgrid(*coords, indexing="ij")
    return ndi.map_coordinates(np.asarray(image, dtype=np.float64), np.stack(mesh),
                               order=order, mode="nearest")


# --------------------------------------------------------------------------------------------
# ibsi_grid


def test_grid_manual_example():
    # Manual, figure "Interpolation grids": a 4 x 4 grid of 3 mm resampled to 2 mm is 6 x 6,
    # voxel 0 at (3*3 - 2*5) / (2*3) = -1/6 old voxels, step 2/3.
    grid = ibsi_grid((4, 4), (3.0, 3.0), (2.0, 2.0))
    assert isinstance(grid, IBSIGrid)
    assert grid.new_shape == (6, 6)
    assert grid.new_spacing == (2.0, 2.0)
    np.testing.assert_allclose(grid.start, (-1 / 6, -1 / 6), rtol=0, atol=1e-15)
    np.testing.assert_allclose(grid.step, (2 / 3, 2 / 3), rtol=1e-15)


@pytest.mark.parametrize("shape, spacing, new_spacing, new_shape, start, step", [
    # 5 voxels of 1 mm to 2 mm: ceil(2.5) = 3 voxels at old 0, 2, 4.
    ((5,), (1.0,), (2.0,), (3,), (0.0,), (2.0,)),
    # upsampling 3 voxels of 2 mm to 1 mm: 6 voxels from (4 - 5) / 4 = -0.25 by 0.5.
    ((3,), (2.0,), (1.0,), (6,), (-0.25,), (0.5,)),
    # None keeps an axis: in-plane only.
    ((3, 5), (3.0, 1.0), (None, 2.0), (3, 3), (0.0, 0.0), (1.0, 2.0)),
    # a scalar applies to every axis.
    ((2, 4), (1.0, 1.0), 2.0, (1, 2), (0.5, 0.5), (2.0, 2.0)),
    # a single voxel stays a single voxel (ceil(0.5) = 1) centred on it.
    ((1,), (1.0,), (2.0,), (1,), (0.0,), (2.0,)),
])
def test_grid_by_hand(shape, spacing, new_spacing, new_shape, start, step):
    grid = ibsi_grid(shape, spacing, new_spacing)
    assert grid.new_shape == new_shape
    np.testing.assert_allclose(grid.start, start, rtol=0, atol=1e-15)
    np.testing.assert_allclose(grid.step, step, rtol=1e-15)
    for coords, s0, ds in zip(grid.coordinates(), grid.start, grid.step):
        np.testing.assert_allclose(coords, s0 + ds * np.arange(len(coords)))


def test_grid_centres_coincide(rng):
    for _ in range(50):
        shape = tuple(int(n) for n in rng.integers(1, 300, size=3))
        spacing = tuple(rng.uniform(0.3, 5.0, size=3))
        new_spacing = tuple(rng.uniform(0.3, 5.0, size=3))
        grid = ibsi_grid(shape, spacing, new_spacing)
        for n_a, s_a, s_b, n_b, s0, ds in zip(shape, spacing, new_spacing, grid.new_shape,
                                              grid.start, grid.step):
            assert n_b == math.ceil(round(n_a * s_a / s_b, 6))
            assert s0 + ds * (n_b - 1) / 2 == pytest.approx((n_a - 1) / 2, abs=1e-9)


def test_grid_float_noise_adds_no_voxel():
    # 0.1 * 3 is 0.30000000000000004: 10 * s_a / s_b is 10.000000000000002, whose plain
    # ceiling would be 11.
    assert ibsi_grid((10,), (0.1 * 3,), (0.3,)).new_shape == (10,)
    # The phantom's 0.977 mm is stored as float32.
    s = float(np.float32(0.977))
    assert ibsi_grid((204,), (s,), (0.977,)).new_shape == (204,)


def test_grid_same_spacing_is_identity():
    grid = ibsi_grid((6, 7), (1.5, 0.8), (1.5, 0.8))
    assert grid.new_shape == (6, 7)
    assert grid.start == (0.0, 0.0) and grid.step == (1.0, 1.0)
    assert grid.identity_axes() == (True, True)


# --------------------------------------------------------------------------------------------
# interpolate_image


SPACINGS = [
    ((3.0, 0.9, 1.1), (2.0, 2.0, 0.7)),  # down- and upsampling mixed
    ((3.0, 0.977, 0.977), (2.0, 2.0, 2.0)),  # the IBSI configuration C
    ((1.0, 1.0, 1.0), (0.6, 1.7, 1.0)),  # one axis unchanged
]


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("spacing, new_spacing", SPACINGS)
def test_interpolation_matches_map_coordinates(rng, order, spacing, new_spacing):
    image = rng.normal(size=(7, 9, 8)) * 100
    coords = _manual_coordinates(image.shape, spacing, new_spacing)
    expected = _map_coordinates_reference(image, coords, order)
    got = interpolate_image(image, spacing, new_spacing, order=order)
    assert got.dtype == np.float64
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL * 100)


@pytest.mark.parametrize("order", [1, 3])
def test_in_plane_interpolation_matches_map_coordinates(rng, order):
    # None on the slice axis: slice by slice, the same values as a 3-D spline evaluated at the
    # integer slice positions (mathematically equal; float rounding apart).
    image = rng.normal(size=(5, 11, 10)) * 100
    spacing, new_spacing = (3.0, 0.977, 0.977), (None, 2.0, 2.0)
    coords = _manual_coordinates(image.shape, spacing, new_spacing)
    expected = _map_coordinates_reference(image, coords, order)
    got = interpolate_image(image, spacing, new_spacing, order=order)
    assert got.shape == (5, 6, 5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL * 100)
    for z in range(image.shape[0]):  # each slice alone, as a 2-D image
        np.testing.assert_allclose(
            got[z], _map_coordinates_reference(image[z], coords[1:], order),
            rtol=0, atol=ATOL * 100)


def test_interpolation_2d_and_1d(rng):
    image2 = rng.normal(size=(6, 9))
    coords = _manual_coordinates(image2.shape, (1.3, 0.7), (1.0, 1.1))
    np.testing.assert_allclose(interpolate_image(image2, (1.3, 0.7), (1.0, 1.1)),
                               _map_coordinates_reference(image2, coords, 1), atol=ATOL)
    np.testing.assert_allclose(interpolate_image(np.array([0.0, 3.0, 6.0, 9.0]), 3.0, 2.0),
                               [0.0, 1.5, 3.5, 5.5, 7.5, 9.0], atol=ATOL)


@pytest.mark.parametrize("order", [1, 3])
def test_interpolation_identity(rng, order):
    image = rng.integers(-1000, 3000, size=(4, 6, 5)).astype(np.int16)
    got = interpolate_image(image, (3.0, 0.8, 0.8), (3.0, 0.8, 0.8), order=order)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, image.astype(np.float64))
    got = interpolate_image(image, (3.0, 0.8, 0.8), (None, None, None), order=order)
    np.testing.assert_array_equal(got, image.astype(np.float64))


def test_linear_interpolation_reproduces_a_ramp_inside_the_grid():
    spacing, new_spacing = (3.0, 0.9, 1.1), (2.0, 0.7, 1.9)
    shape = (8, 10, 9)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    ramp = 7.0 * z - 3.0 * y + 0.5 * x + 11.0
    got = interpolate_image(ramp, spacing, new_spacing, order=1)
    cz, cy, cx = np.meshgrid(*_manual_coordinates(shape, spacing, new_spacing), indexing="ij")
    expected = 7.0 * cz - 3.0 * cy + 0.5 * cx + 11.0
    inside = ((cz >= 0) & (cz <= shape[0] - 1) & (cy >= 0) & (cy <= shape[1] - 1)
              & (cx >= 0) & (cx <= shape[2] - 1))
    assert inside.sum() > 0.3 * inside.size
    np.testing.assert_allclose(got[inside], expected[inside], rtol=0, atol=ATOL)
    # Outside the original grid the boundary value is repeated ("nearest" padding).
    clamped = (7.0 * np.clip(cz, 0, shape[0] - 1) - 3.0 * np.clip(cy, 0, shape[1] - 1)
               + 0.5 * np.clip(cx, 0, shape[2] - 1) + 11.0)
    np.testing.assert_allclose(got, clamped, rtol=0, atol=ATOL)


def test_round_intensities(rng):
    image = rng.normal(size=(5, 6, 7)) * 300
    raw = interpolate_image(image, (3.0, 1.0, 1.0), (2.0, 2.0, 2.0))
    rounded = interpolate_image(image, (3.0, 1.0, 1.0), (2.0, 2.0, 2.0), round_intensities=True)
    assert rounded.dtype == np.float64
    np.testing.assert_array_equal(rounded, np.rint(raw))
    assert np.abs(raw - rounded).max() <= 0.5


def test_dask_input_is_computed(rng):
    da = pytest.importorskip("dask.array")
    image = rng.normal(size=(6, 8, 8))
    lazy = da.from_array(image, chunks=(3, 4, 4))
    np.testing.assert_array_equal(interpolate_image(lazy, 1.0, 1.5),
                                  interpolate_image(image, 1.0, 1.5))
    out = preprocess(lazy, da.from_array(image > 0, chunks=3), 1.0, resample_mm=1.5)
    ref = preprocess(image, image > 0, 1.0, resample_mm=1.5)
    np.testing.assert_array_equal(out.image, ref.image)
    np.testing.assert_array_equal(out.morph_mask, ref.morph_mask)


# --------------------------------------------------------------------------------------------
# interpolate_mask


def test_mask_threshold_by_hand():
    # Mask [0, 0, 1, 1] at 3 mm resampled to 2 mm: old coordinates -1/6, 1/2, 7/6, 11/6, 5/2,
    # 19/6 give fractions 0, 0, 1/6, 5/6, 1, 1.
    mask = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(interpolate_mask(mask, 3.0, 2.0),
                                  [False, False, False, True, True, True])
    np.testing.assert_array_equal(interpolate_mask(mask, 3.0, 2.0, threshold=0.9),
                                  [False, False, False, False, True, True])
    np.testing.assert_array_equal(interpolate_mask(mask, 3.0, 2.0, threshold=1 / 6),
                                  [False, False, True, True, True, True])


def test_mask_threshold_is_inclusive():
    # Mask [0, 1] at 1 mm resampled to 2/3 mm: the middle voxel sits at old 1/2 (computed as
    # -1/6 + 2/3), fraction 0.5 up to float error; the manual includes R >= delta.
    got = interpolate_mask(np.array([False, True]), 1.0, 2 / 3)
    np.testing.assert_array_equal(got, [False, True, True])
    got = interpolate_mask(np.array([False, True]), 1.0, 2 / 3, threshold=0.51)
    np.testing.assert_array_equal(got, [False, False, True])


def test_mask_matches_map_coordinates(rng):
    mask = ndi.binary_opening(rng.random((9, 12, 11)) > 0.4)
    spacing, new_spacing = (3.0, 0.977, 0.977), (2.0, 2.0, 2.0)
    fraction = _map_coordinates_reference(mask.astype(float),
                                          _manual_coordinates(mask.shape, spacing, new_spacing),
                                          1)
    got = interpolate_mask(mask.astype(np.uint8), spacing, new_spacing)
    assert got.dtype == bool
    decided = np.abs(fraction - 0.5) > 1e-6  # fractions at 0.5 +- float error are tested above
    np.testing.assert_array_equal(got[decided], fraction[decided] >= 0.5)


@pytest.mark.parametrize("spacing, new_spacing", [
    ((3.0, 0.977, 0.977), (2.0, 2.0, 2.0)),
    ((1.0, 1.0, 1.0), (2.5, 3.5, 0.4)),  # strong down-sampling: the grid overhangs > 1 voxel
    ((3.0, 0.977, 0.977), (None, 2.0, 2.0)),
])
@pytest.mark.parametrize("where", ["centre", "corner", "far_corner", "one_voxel"])
def test_mask_near_the_edges_matches_map_coordinates(spacing, new_spacing, where):
    # Small ROIs inside and touching the grid's faces: only the voxels near the ROI's bounding
    # box are evaluated, and that must not change a value.
    mask = np.zeros((9, 13, 12), dtype=bool)
    if where == "centre":
        mask[3:6, 4:9, 5:8] = True
    elif where == "corner":
        mask[:3, :4, :2] = True
    elif where == "far_corner":
        mask[-2:, -5:, -3:] = True
    else:
        mask[4, 0, 11] = True
    coords = _manual_coordinates(mask.shape, spacing, new_spacing)
    fraction = _map_coordinates_reference(mask.astype(float), coords, 1)
    for threshold in (0.05, 0.5, 0.9, 1.0):
        got = interpolate_mask(mask, spacing, new_spacing, threshold=threshold)
        decided = np.abs(fraction - threshold) > 1e-6
        np.testing.assert_array_equal(got[decided], fraction[decided] >= threshold)


def test_empty_mask_stays_empty():
    got = interpolate_mask(np.zeros((4, 5, 6), dtype=bool), 1.0, 0.7)
    assert got.shape == (6, 8, 9) and not got.any()


# --------------------------------------------------------------------------------------------
# resegment


def test_resegment_range_closed_and_open_ends():
    image = np.array([-1000.0, -500.0, -499.0, 0.0, 400.0, 401.0, 3000.0])
    roi = np.array([1, 1, 1, 0, 1, 1, 1], dtype=bool)
    np.testing.assert_array_equal(resegment(image, roi, range=(-500, 400)),
                                  [False, True, True, False, True, False, False])
    np.testing.assert_array_equal(resegment(image, roi, range=(-500, None)),
                                  [False, True, True, False, True, True, True])
    np.testing.assert_array_equal(resegment(image, roi, range=(None, 400)),
                                  [True, True, True, False, True, False, False])
    np.testing.assert_array_equal(resegment(image, roi), roi)
    np.testing.assert_array_equal(resegment(image, roi, range=(None, None)), roi)


def test_resegment_outliers_use_the_population_sd():
    # ROI [0 x 9, 100]: mean 10, population sd 30 (sample sd 31.6).  At k = 2.95 the upper
    # bound is 98.5 with the population sd (100 excluded) and 103.3 with the sample sd.
    image = np.array([0.0] * 9 + [100.0, 1e6])
    roi = np.array([True] * 10 + [False])
    np.testing.assert_array_equal(resegment(image, roi, outliers_sigma=2.95),
                                  [True] * 9 + [False, False])
    np.testing.assert_array_equal(resegment(image, roi, outliers_sigma=3.0),  # bound 100: kept
                                  [True] * 10 + [False])


def test_resegment_outlier_statistics_come_from_the_roi_before_the_range():
    # ROI [-1000, 0 x 8, 100]: mean -90, population sd sqrt(92900) = 304.8, so at k = 1 the
    # outlier interval is [-394.8, 214.8] and 100 stays.  Statistics taken after the range
    # (-500, None) would give [-20.3, 42.5] and drop 100.
    image = np.array([-1000.0] + [0.0] * 8 + [100.0])
    roi = np.ones(10, dtype=bool)
    got = resegment(image, roi, range=(-500, None), outliers_sigma=1.0)
    np.testing.assert_array_equal(got, [False] + [True] * 9)


def test_resegment_keeps_the_input_and_handles_an_empty_roi():
    image = np.arange(6, dtype=float)
    roi = np.ones(6, dtype=bool)
    out = resegment(image, roi, range=(2, 3))
    assert roi.all() and out is not roi
    empty = resegment(image, np.zeros(6, bool), range=(0, 1), outliers_sigma=3)
    assert empty.dtype == bool and not empty.any()


# --------------------------------------------------------------------------------------------
# preprocess


def test_preprocess_is_the_chain_of_the_steps(rng):
    image = rng.normal(size=(6, 10, 9)) * 200
    mask = ndi.binary_opening(rng.random(image.shape) > 0.3)
    spacing, new = (3.0, 0.9, 0.9), (2.0, 2.0, 2.0)
    out = preprocess(image, mask, spacing, resample_mm=new, resample_order=3,
                     round_intensities=True, mask_threshold=0.4, reseg_range=(-300, 300),
                     reseg_outliers_sigma=2.0)
    assert isinstance(out, Preprocessed) and out.diagnostics is None
    expected_image = interpolate_image(image, spacing, new, order=3, round_intensities=True)
    expected_morph = interpolate_mask(mask, spacing, new, threshold=0.4)
    np.testing.assert_array_equal(out.image, expected_image)
    np.testing.assert_array_equal(out.morph_mask, expected_morph)
    np.testing.assert_array_equal(
        out.int_mask,
        resegment(expected_image, expected_morph, range=(-300, 300), outliers_sigma=2.0))
    assert out.spacing == new


def test_preprocess_without_resampling(rng):
    image = rng.integers(-1000, 1000, size=(4, 5, 6)).astype(np.int16)
    mask = image > 0
    out = preprocess(image, mask, (3.0, 1.0, 1.0), reseg_range=(0, 500), diagnostics=True)
    np.testing.assert_array_equal(out.image, image.astype(np.float64))
    np.testing.assert_array_equal(out.morph_mask, mask)
    np.testing.assert_array_equal(out.int_mask, mask & (image <= 500))
    assert out.spacing == (3.0, 1.0, 1.0)
    d = out.diagnostics
    assert d["img_dim_x_init_img"] == 6 and d["img_dim_y_init_img"] == 5
    assert d["img_dim_z_init_img"] == 4 and d["vox_dim_z_interp_img"] == 3.0
    assert d["int_mask_vox_count_reseg_roi"] == int((mask & (image <= 500)).sum())
    assert d["morph_mask_vox_count_reseg_roi"] == int(mask.sum())
    assert d["int_mask_max_int_reseg_roi"] == float(image[mask & (image <= 500)].max())


def test_diagnostic_bounding_box_axes():
    # One ROI box spanning z 1..2, y 2..5, x 0..6: the tags name x, y, z = axes 2, 1, 0.
    image = np.zeros((4, 8, 9))
    mask = np.zeros(image.shape, dtype=bool)
    mask[1:3, 2:6, 0:7] = True
    d = preprocess(image, mask, (2.0, 1.0, 0.5), diagnostics=True).diagnostics
    assert (d["int_mask_bb_dim_x_init_roi"], d["int_mask_bb_dim_y_init_roi"],
            d["int_mask_bb_dim_z_init_roi"]) == (7, 4, 2)
    assert (d["int_mask_dim_x_init_roi"], d["int_mask_dim_y_init_roi"],
            d["int_mask_dim_z_init_roi"]) == (9, 8, 4)
    assert (d["vox_dim_x_init_img"], d["vox_dim_y_init_img"], d["vox_dim_z_init_img"]) == (
        0.5, 1.0, 2.0)
    assert len(d) == 2 * 9 + 3 * 14


def test_diagnostics_of_an_empty_roi_after_resegmentation():
    image = np.full((3, 4, 4), 100.0)
    mask = np.ones(image.shape, dtype=bool)
    d = preprocess(image, mask, 1.0, reseg_range=(0, 50), diagnostics=True).diagnostics
    assert d["int_mask_vox_count_reseg_roi"] == 0
    assert d["int_mask_bb_dim_x_reseg_roi"] == 0
    assert math.isnan(d["int_mask_mean_int_reseg_roi"])
    assert d["morph_mask_bb_dim_x_reseg_roi"] == 4


# --------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize("call, exc, match", [
    (lambda: ibsi_grid((4, 4), (1.0, -2.0), 1.0), ValueError, r"`spacing`.*-2\.0"),
    (lambda: ibsi_grid((4, 4), 1.0, (1.0, 0.0)), ValueError, r"`new_spacing`.*0\.0"),
    (lambda: ibsi_grid((4, 4), (1.0, 1.0, 1.0), 1.0), ValueError, r"`spacing`.*\(1\.0, 1\.0"),
    (lambda: ibsi_grid((4, 0), 1.0, 1.0), ValueError, r"`shape`.*\(4, 0\)"),
    (lambda: ibsi_grid((4, 2.5), 1.0, 1.0), TypeError, r"`shape`.*2\.5"),
    (lambda: ibsi_grid((4,), "1", 1.0), TypeError, r"`spacing`.*'1'"),
    (lambda: ibsi_grid((4,), 1.0, float("nan")), ValueError, r"`new_spacing`.*nan"),
    (lambda: interpolate_image(np.zeros((3, 3)), 1.0, 0.5, order=7), ValueError,
     r"`order`.*7"),
    (lambda: interpolate_image(np.zeros((3, 3)), 1.0, 0.5, order=1.5), TypeError,
     r"`order`.*1\.5"),
    (lambda: interpolate_image(np.zeros((3, 3)), 1.0, 0.5, round_intensities=1), TypeError,
     r"`round_intensities`.*1"),
    (lambda: interpolate_image(np.array(["a"]), 1.0, 0.5), TypeError, r"`image`.*dtype"),
    (lambda: interpolate_image([1.0, 2.0], 1.0, 0.5), TypeError, r"`image`.*list"),
    (lambda: interpolate_mask(np.zeros((3, 3)), 1.0, 0.5, threshold=0.0), ValueError,
     r"`threshold`.*0\.0"),
    (lambda: interpolate_mask(np.zeros((3, 3)), 1.0, 0.5, threshold=1.5), ValueError,
     r"`threshold`.*1\.5"),
    (lambda: resegment(np.zeros(3), np.ones(4, bool)), ValueError, r"`mask`.*\(4,\)"),
    (lambda: resegment(np.zeros(3), np.ones(3, bool), range=(5, 1)), ValueError,
     r"`range`.*\(5, 1\)"),
    (lambda: resegment(np.zeros(3), np.ones(3, bool), range=(1, 2, 3)), ValueError,
     r"`range`.*\(1, 2, 3\)"),
    (lambda: resegment(np.zeros(3), np.ones(3, bool), range=("a", 2)), TypeError,
     r"`range`.*'a'"),
    (lambda: resegment(np.zeros(3), np.ones(3, bool), outliers_sigma=-1), ValueError,
     r"`outliers_sigma`.*-1"),
    (lambda: preprocess(np.zeros((3, 3)), np.ones((3, 3)), 1.0, mask_threshold=2),
     ValueError, r"`mask_threshold`.*2"),
    (lambda: preprocess(np.zeros((3, 3)), np.ones((3, 3)), 1.0, resample_order=-1),
     ValueError, r"`resample_order`.*-1"),
    (lambda: preprocess(np.zeros((3, 3)), np.ones((3, 3)), 1.0, reseg_range=(3, 1)),
     ValueError, r"`reseg_range`.*\(3, 1\)"),
    (lambda: preprocess(np.zeros((3, 3)), np.ones((3, 3)), 1.0, reseg_outliers_sigma=0),
     ValueError, r"`reseg_outliers_sigma`.*0"),
    (lambda: preprocess(np.zeros((3, 3)), np.ones((3, 3)), 1.0, resample_mm=(1.0, -1.0)),
     ValueError, r"`new_spacing`.*-1\.0"),
    (lambda: preprocess(np.zeros((3, 3)), np.ones((3, 3)), 1.0, diagnostics="yes"),
     TypeError, r"`diagnostics`.*'yes'"),
])
def test_validation_names_the_parameter_and_value(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_docstring_examples_run():
    result = doctest.testmod(preprocessing, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


# --------------------------------------------------------------------------------------------
# the IBSI-1 CT phantom, configurations A, B and C (manual, section 5)

CONFIGS = {
    "a": {"reseg_range": (-500, 400)},
    "b": {"resample_mm": (None, 2.0, 2.0), "resample_order": 1, "round_intensities": True,
          "mask_threshold": 0.5, "reseg_range": (-500, 400)},
    "c": {"resample_mm": (2.0, 2.0, 2.0), "resample_order": 1, "round_intensities": True,
          "mask_threshold": 0.5, "reseg_range": (-1000, 400)},
}
DIAGNOSTIC_PREFIXES = ("img_", "vox_", "mean_int", "min_int", "max_int", "int_mask_",
                       "morph_mask_")


@pytest.fixture(scope="module")
def ct_phantom():
    if not (CT_DIR / "image.nii.gz").is_file():
        pytest.skip(f"IBSI-1 CT phantom not found at {CT_DIR} (the shared data folder is absent)")
    nib = pytest.importorskip("nibabel")
    img = nib.load(CT_DIR / "image.nii.gz")
    msk = nib.load(CT_DIR / "mask.nii.gz")
    image = np.asarray(img.dataobj).transpose(2, 1, 0)
    mask = np.asarray(msk.dataobj).transpose(2, 1, 0)
    spacing = tuple(float(s) for s in img.header.get_zooms()[::-1])
    return image, mask, spacing


def _reference_diagnostics(config: str):
    path = CT_DIR / f"reference_config_{config}.csv"
    if not path.is_file():
        pytest.skip(f"IBSI-1 CT reference values not found at {path}")
    rows = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for value, tol, tag in csv.reader(fh, delimiter=";"):
            if tag.startswith(DIAGNOSTIC_PREFIXES) and value:
                rows.append((tag, value, float(tol)))
    return rows


def _significant_digits(text: str) -> int:
    digits = text.lower().split("e")[0].lstrip("+-").replace(".", "").lstrip("0").rstrip("0")
    return len(digits)


def _round_sig(x: float, digits: int) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def _passes(value: float, ref_text: str, tol: float) -> bool:
    """The IBSI rule: within the tolerance; a zero tolerance compares the value rounded as the
    reference is published (three significant digits, or all of an exact count like 125256)."""
    ref = float(ref_text)
    if tol > 0:
        return abs(value - ref) <= tol * (1 + 1e-12)
    digits = max(3, _significant_digits(ref_text))
    return math.isclose(_round_sig(value, digits), ref, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_ct_phantom_diagnostics(ct_phantom, config):
    image, mask, spacing = ct_phantom
    reference = _reference_diagnostics(config)
    assert len(reference) == 2 * 9 + 3 * 14
    out = preprocess(image, mask, spacing, diagnostics=True, **CONFIGS[config])
    assert set(out.diagnostics) == {tag for tag, _, _ in reference}
    failures = [f"{tag}: {out.diagnostics[tag]!r} vs {ref} +- {tol}"
                for tag, ref, tol in reference if not _passes(out.diagnostics[tag], ref, tol)]
    assert not failures, "\n".join(failures)
