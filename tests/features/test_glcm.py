"""Co-occurrence counts and features against scikit-image and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops

from medimg_fast import available_backends
from medimg_fast.features._glcm import directions_3d, glcm_aggregate, glcm_features
from medimg_fast.features._kernels import kernels_for

BACKENDS = [b for b in ("numpy", "numba") if available_backends()[b].available]
# in-plane directions of a (1, rows, cols) volume, matched to scikit-image angles
PLANE = {0.0: (0, 0, 1), np.pi / 2: (0, 1, 0)}


def _counts_2d(levels2d, backend, direction):
    ng = int(levels2d.max())
    lev = (levels2d + 1)[None].astype(np.int32)  # our grey levels start at 1
    core = (slice(None),) * 3
    return kernels_for(backend).glcm(lev, core, np.array([direction]), ng + 1)[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_2d_matrices_match_graycomatrix(backend, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 8, (17, 23)).astype(np.uint8)
    angles = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    sk = graycomatrix(img, [1], angles, levels=8, symmetric=True)[:, :, 0, :]
    ours = {}
    for d in [(0, 0, 1), (0, 1, 0), (0, 1, 1), (0, 1, -1)]:
        c = _counts_2d(img, backend, d)[:8, :8]
        ours[d] = c + c.T
    np.testing.assert_array_equal(ours[(0, 0, 1)], sk[:, :, 0])
    np.testing.assert_array_equal(ours[(0, 1, 0)], sk[:, :, 2])
    # the two diagonals, whichever sign convention scikit-image uses for them
    pairs = {tuple(ours[(0, 1, 1)].ravel()), tuple(ours[(0, 1, -1)].ravel())}
    assert pairs == {tuple(sk[:, :, 1].ravel()), tuple(sk[:, :, 3].ravel())}


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_2d_features_match_graycoprops(seed):
    rng = np.random.default_rng(seed)
    levels = 6
    img = rng.integers(0, levels, (31, 29)).astype(np.uint8)
    for angle in (0.0, np.pi / 4, np.pi / 2):
        P = graycomatrix(img, [1], [angle], levels=levels, symmetric=True)
        f = glcm_features(P[:, :, 0, 0])
        prop = {k: float(graycoprops(P.astype(float), k)[0, 0]) for k in
                ("contrast", "dissimilarity", "homogeneity", "energy", "ASM", "correlation",
                 "entropy", "mean", "variance")}
        assert f["contrast"] == pytest.approx(prop["contrast"], rel=1e-12)
        assert f["dissimilarity"] == pytest.approx(prop["dissimilarity"], rel=1e-12)
        assert f["inv_diff_mom"] == pytest.approx(prop["homogeneity"], rel=1e-12)
        assert f["energy"] == pytest.approx(prop["ASM"], rel=1e-12)
        assert math.sqrt(f["energy"]) == pytest.approx(prop["energy"], rel=1e-12)
        assert f["corr"] == pytest.approx(prop["correlation"], rel=1e-10)
        # scikit-image uses the natural logarithm, IBSI base 2
        assert f["joint_entr"] * math.log(2) == pytest.approx(prop["entropy"], rel=1e-12)
        # scikit-image grey levels start at 0, IBSI at 1
        assert f["joint_avg"] == pytest.approx(prop["mean"] + 1, rel=1e-12)
        assert f["joint_var"] == pytest.approx(prop["variance"], rel=1e-12)


def _brute_force_counts(levels, ng, distance=1):
    """Pairs (v, v + d) counted by looping over voxels: the independent 3-D reference."""
    out = np.zeros((13, ng, ng), np.int64)
    dirs = [d for d in itertools.product((-1, 0, 1), repeat=3) if d > (0, 0, 0)]
    for k, d in enumerate(dirs):
        for v in itertools.product(*(range(n) for n in levels.shape)):
            w = tuple(a + distance * b for a, b in zip(v, d))
            if all(0 <= a < n for a, n in zip(w, levels.shape)):
                a, b = levels[v], levels[w]
                if a and b:
                    out[k, a - 1, b - 1] += 1
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("distance", [1, 2])
def test_3d_counts_match_brute_force(rng, backend, distance):
    levels = rng.integers(0, 5, (5, 6, 7)).astype(np.int32)  # 0 = outside the ROI
    want = _brute_force_counts(levels, 4, distance)
    got = kernels_for(backend).glcm(levels, (slice(None),) * 3, directions_3d(distance), 4)
    np.testing.assert_array_equal(got, want)


def test_3d_counts_core_partition(rng):
    # counting over cores that partition the volume adds up to the whole-volume counts
    levels = rng.integers(0, 4, (6, 7, 8)).astype(np.int32)
    k = kernels_for("numpy")
    whole = k.glcm(levels, (slice(None),) * 3, directions_3d(1), 3)
    parts = sum(k.glcm(levels, (slice(z0, z1), slice(y0, y1), slice(None)), directions_3d(1), 3)
                for z0, z1 in ((0, 2), (2, 6)) for y0, y1 in ((0, 5), (5, 7)))
    np.testing.assert_array_equal(parts, whole)


def test_numba_equals_numpy_kernels(rng):
    if "numba" not in BACKENDS:
        pytest.skip("numba backend unavailable")
    image = rng.normal(size=(9, 10, 11))
    mask = rng.random(image.shape) < 0.7
    a, b = kernels_for("numpy"), kernels_for("numba")
    la = a.discretise(image, mask, image.min(), 7.0, np.ptp(image), 7)
    lb = b.discretise(image, mask, image.min(), 7.0, np.ptp(image), 7)
    np.testing.assert_array_equal(la, lb)
    core = (slice(1, 8), slice(0, 10), slice(2, 11))
    np.testing.assert_array_equal(a.glcm(la, core, directions_3d(1), 7),
                                  b.glcm(lb, core, directions_3d(1), 7))
    v = image[mask]
    for x, y in zip(a.bin_stats(v, -1.0, 1.5, 64), b.bin_stats(v, -1.0, 1.5, 64)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(a.moments(v), b.moments(v), rtol=1e-12)


def test_aggregations():
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 5, (13, 4, 4))
    counts[3] = 0  # a direction without pairs is left out of the average
    out = glcm_aggregate(counts)
    sym = counts + counts.transpose(0, 2, 1)
    i, j = np.indices((4, 4))
    # contrast by hand, sum (i - j)^2 p_ij, averaged over the directions that have pairs
    contrast = [np.sum((i - j) ** 2 * m / m.sum()) for m in sym if m.sum()]
    assert len(contrast) == 12
    assert out["cm_contrast_3D_avg"] == pytest.approx(np.mean(contrast))
    assert out["cm_joint_max_3D_comb"] == pytest.approx(sym.sum(0).max() / sym.sum())
    assert len(out) == 50


def test_one_level_matrix_is_defined_where_ibsi_defines_it():
    f = glcm_features(np.array([[10.0]]))
    assert f["joint_max"] == 1.0 and f["contrast"] == 0.0 and f["joint_entr"] == 0.0
    assert math.isnan(f["corr"])
    assert all(math.isnan(v) for v in glcm_features(np.zeros((3, 3))).values())
