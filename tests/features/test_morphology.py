"""Morphology against analytic shapes, scikit-image, SciPy and NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist
from skimage.measure import marching_cubes, mesh_surface_area

from medimg_fast.features import _morphology as morphology_module
from medimg_fast.features import extract_features

MORPH = {"families": ["morph"]}


def _ball(shape, centre, radii):
    idx = np.indices(shape).astype(float)
    return sum(((i - c) / r) ** 2 for i, c, r in zip(idx, centre, radii)) <= 1.0


def test_single_voxel_is_an_octahedron():
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    f = extract_features(np.ones((3, 3, 3)), mask, settings=MORPH)
    # marching cubes at 0.5 puts a vertex half-way to each of the 6 neighbours
    assert f["morph_volume"] == pytest.approx(1 / 6, rel=1e-12)
    assert f["morph_area_mesh"] == pytest.approx(math.sqrt(3), rel=1e-12)
    assert f["morph_diam"] == pytest.approx(1.0, rel=1e-12)
    assert f["morph_vol_approx"] == 1.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.7, 0.5)])
def test_ball_against_skimage_scipy_numpy(rng, spacing):
    shape = (22, 25, 27)
    mask = _ball(shape, (10.3, 12.1, 13.2), (7.5, 9.0, 8.2))
    image = rng.normal(100, 15, shape)
    f = extract_features(image, mask, spacing=spacing, settings=MORPH)
    verts, faces, _, _ = marching_cubes(np.pad(mask, 1).astype(float), 0.5, spacing=spacing)
    verts = verts.astype(np.float64)  # scikit-image returns float32 vertices
    assert f["morph_area_mesh"] == pytest.approx(mesh_surface_area(verts, faces), rel=1e-10)
    assert f["morph_diam"] == pytest.approx(pdist(verts).max(), rel=1e-12)
    hull = ConvexHull(verts)
    assert f["morph_vol_dens_conv_hull"] * hull.volume == pytest.approx(f["morph_volume"])
    assert f["morph_area_dens_conv_hull"] * hull.area == pytest.approx(f["morph_area_mesh"])
    ext = np.ptp(verts, axis=0)
    assert f["morph_vol_dens_aabb"] * np.prod(ext) == pytest.approx(f["morph_volume"])
    # the mesh encloses about the voxel volume of a smooth ball
    assert f["morph_volume"] == pytest.approx(f["morph_vol_approx"], rel=0.05)
    assert f["morph_vol_approx"] == pytest.approx(mask.sum() * np.prod(spacing))
    # PCA axes from the sample covariance of voxel centres in mm
    pos = np.argwhere(mask) * np.asarray(spacing)
    eig = np.sort(np.linalg.eigvalsh(np.cov(pos.T)))[::-1]
    assert f["morph_pca_maj_axis"] == pytest.approx(4 * math.sqrt(eig[0]), rel=1e-9)
    assert f["morph_pca_least_axis"] == pytest.approx(4 * math.sqrt(eig[2]), rel=1e-9)
    assert f["morph_pca_flatness"] == pytest.approx(math.sqrt(eig[2] / eig[0]), rel=1e-9)
    # centre-of-mass shift
    geom = np.asarray(ndi.center_of_mass(mask)) * spacing
    weighted = np.asarray(ndi.center_of_mass(np.where(mask, image, 0.0))) * spacing
    assert f["morph_com"] == pytest.approx(np.linalg.norm(geom - weighted), rel=1e-8)
    assert f["morph_integ_int"] == pytest.approx(image[mask].mean() * f["morph_volume"])
    # shape ratios from the IBSI formulas
    v, a = f["morph_volume"], f["morph_area_mesh"]
    assert f["morph_sphericity"] == pytest.approx((36 * math.pi * v * v) ** (1 / 3) / a)
    assert f["morph_comp_2"] == pytest.approx(36 * math.pi * v * v / a ** 3)
    assert 0.0 < f["morph_sphericity"] < 1.0


def test_volume_scales_with_spacing(rng):
    mask = _ball((12, 13, 14), (6, 6, 7), (4, 5, 5))
    image = rng.normal(size=mask.shape)
    f1 = extract_features(image, mask, spacing=1.0, settings=MORPH)
    f2 = extract_features(image, mask, spacing=(3.0, 1.0, 1.0), settings=MORPH)
    assert f2["morph_volume"] == pytest.approx(3 * f1["morph_volume"], rel=1e-12)


@pytest.mark.parametrize("method", ["fft", "pairwise"])
def test_moran_geary_brute_force(rng, monkeypatch, method):
    if method == "pairwise":  # no grid is small enough: the direct pair sums
        monkeypatch.setattr(morphology_module, "_AUTOCORR_FFT_MAX_GRID", 0)
    mask = _ball((7, 7, 7), (3, 3, 3), (2.5, 2.5, 2.5))
    image = rng.normal(size=mask.shape)
    spacing = np.array([1.5, 1.0, 1.0])
    f = extract_features(image, mask, spacing=tuple(spacing), settings=MORPH)
    pos = np.argwhere(mask) * spacing
    x = image[mask]
    dev = x - x.mean()
    n = len(x)
    w_sum = moran = geary = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                w = 1.0 / np.linalg.norm(pos[i] - pos[j])
                w_sum += w
                moran += w * dev[i] * dev[j]
                geary += w * (x[i] - x[j]) ** 2
    ss = np.sum(dev ** 2)
    assert f["morph_moran_i"] == pytest.approx(n / w_sum * moran / ss, rel=1e-10)
    assert f["morph_geary_c"] == pytest.approx((n - 1) / (2 * w_sum) * geary / ss, rel=1e-10)
    capped = extract_features(image, mask, settings={"families": ["morph"],
                                                     "autocorrelation_max_voxels": 10})
    assert math.isnan(capped["morph_moran_i"]) and math.isnan(capped["morph_geary_c"])


def _moran_geary_pdist(pos_mm, x):
    """Reference from scipy's pair distances (each unordered pair once, so doubled)."""
    n = len(x)
    w = 1.0 / pdist(pos_mm)
    dev = x - x.mean()
    i, j = np.triu_indices(n, 1)
    ss = np.sum(dev ** 2)
    w_sum = 2 * w.sum()
    moran = 2 * np.sum(w * dev[i] * dev[j])
    geary = 2 * np.sum(w * (x[i] - x[j]) ** 2)
    return n / w_sum * moran / ss, (n - 1) / (2 * w_sum) * geary / ss


@pytest.mark.parametrize("case", ["noise", "smooth", "two-clusters", "slab"])
def test_moran_geary_fft_against_pair_distances(case):
    """ROIs of a few thousand voxels, anisotropic spacing; the FFT form vs scipy pdist.

    ``smooth`` (a ramp) is positively autocorrelated (Moran's I well above its null value,
    Geary's C below 1); ``two-clusters`` is a sparse ROI whose bounding box is mostly empty.
    """
    rng = np.random.default_rng(["noise", "smooth", "two-clusters", "slab"].index(case))
    shape = (16, 30, 34)
    image = rng.normal(50.0, 10.0, shape)
    if case == "smooth":
        image = image * 0.01 + np.indices(shape)[2] * 3.0  # a ramp along x
    if case == "two-clusters":
        mask = _ball(shape, (3, 4, 5), (2.5, 3.5, 4)) | _ball(shape, (12, 25, 28), (3, 4, 5))
    elif case == "slab":
        mask = np.zeros(shape, bool)
        mask[7, 3:27, 2:31] = True  # one plane: flat ROI
    else:
        mask = _ball(shape, (7.5, 14.5, 16.5), (7, 12, 13)) & (rng.random(shape) < 0.8)
    spacing = (2.5, 0.8, 0.7)
    f = extract_features(image, mask, spacing=spacing,
                         settings={"families": ["morph"], "autocorrelation_max_voxels": 10**6})
    moran, geary = _moran_geary_pdist(np.argwhere(mask) * np.asarray(spacing), image[mask])
    assert mask.sum() > 300
    if case == "smooth":
        assert moran > 0.1 and geary < 0.9
    assert f["morph_moran_i"] == pytest.approx(moran, rel=1e-10, abs=1e-14)
    assert f["morph_geary_c"] == pytest.approx(geary, rel=1e-10)


def test_moran_geary_work_arrays_kept_between_calls(monkeypatch):
    """The FFT's work arrays are kept for the next call, dirty: a smaller ROI after a
    larger one, and a first call on fresh buffers, give the same bits; arrays over the
    keep limit, or over an eighth of the memory budget, are not kept."""
    rng = np.random.default_rng(5)
    big = np.argwhere(rng.random((14, 40, 36)) < 0.6)
    small = np.argwhere(_ball((9, 17, 21), (4, 8, 10), (4, 8, 9)))
    values = [rng.normal(30.0, 20.0, len(big)), rng.normal(-5.0, 8.0, len(small))]
    spacing = (2.0, 0.7, 0.9)
    monkeypatch.setattr(morphology_module, "_WORK", {})
    fresh = morphology_module._moran_geary(small, values[1], spacing)
    morphology_module._moran_geary(big, values[0], spacing)
    assert sum(b.nbytes for b in morphology_module._WORK.values()) > 0
    assert morphology_module._moran_geary(small, values[1], spacing) == fresh
    for env, limit in [("1 GiB", 1024), ("64 KiB", 1 << 30)]:  # either limit counts
        monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", env)
        monkeypatch.setattr(morphology_module, "_WORK", {})
        monkeypatch.setattr(morphology_module, "_WORK_KEEP_BYTES", limit)
        assert morphology_module._moran_geary(small, values[1], spacing) == fresh
        assert morphology_module._WORK == {}


def test_roi_touching_the_volume_edge():
    # the zero padding closes the mesh where the ROI meets the array border
    mask = np.ones((4, 5, 6), bool)
    f = extract_features(np.ones(mask.shape), mask, settings=MORPH)
    verts, faces, _, _ = marching_cubes(np.pad(mask, 1).astype(float), 0.5)
    verts = verts.astype(np.float64)
    assert f["morph_area_mesh"] == pytest.approx(mesh_surface_area(verts, faces), rel=1e-12)
    assert f["morph_vol_dens_aabb"] < 1.0
