"""The compiled whole-ROI paths (NumPy input, numba kernels) against the block paths.

The block paths (marching cubes + Qhull per block, NumPy counting) are the references:
they are what a Dask image runs, and they are checked against scikit-image, SciPy and
the IBSI values elsewhere.
"""

import numpy as np
import pytest

from medimg_fast.features._glcm import directions_3d
from medimg_fast.features._kernels import kernels_for
from medimg_fast.features._morphology import morph_block, morphology_features
from medimg_fast.features._partials import BlockGrid, BlockInfo

numba = pytest.importorskip("numba")


def _masks(rng):
    shape = (14, 17, 12)
    idx = np.indices(shape)
    ball = sum(((i - c) / r) ** 2 for i, c, r in zip(idx, (7, 8, 6), (5.5, 7.0, 4.0))) <= 1
    yield "ball", ball
    yield "noise", rng.random(shape) < 0.45  # every ambiguous marching-cubes cell
    flat = np.zeros(shape, bool)
    flat[5, 3:12, 2:9] = True  # one slice: a flat hull
    yield "slice", flat
    line = np.zeros(shape, bool)
    line[2:9, 4, 5] = True
    yield "line", line
    one = np.zeros(shape, bool)
    one[0, 16, 11] = True  # a corner voxel
    yield "voxel", one


def _extreme(points):
    """The vertices of the convex hull of ``points`` (Qhull's default options merge
    coplanar facets: no point within a face), as a sorted list."""
    from scipy.spatial import ConvexHull

    return sorted(map(tuple, points[ConvexHull(points).vertices])) if len(points) > 4 \
        else sorted(map(tuple, points))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.7, 1.3)])
def test_morph_whole_equals_mesh_path(rng, spacing):
    from medimg_fast.features._morph_fast import max_diameter, morph_whole

    sp = np.asarray(spacing)
    for name, mask in _masks(rng):
        image = rng.normal(50, 10, mask.shape).astype(np.float32)
        grid = BlockGrid(image, mask)
        ref_mm = np.floor(np.asarray(grid.shape) / 2.0) * sp
        info = BlockInfo(grid.origin, (slice(None),) * 3, (True,) * 3, 0)
        ref = morph_block(grid.image, grid.mask, info, spacing=sp, ref_mm=ref_mm,
                          gather_samples=True)
        got = morph_whole(grid.image, grid.mask, grid.origin, spacing=sp, ref_mm=ref_mm,
                          gather_samples=True)
        assert got.n == ref.n
        np.testing.assert_array_equal(got.sum_idx, ref.sum_idx)
        np.testing.assert_array_equal(got.sum_outer, ref.sum_outer)
        np.testing.assert_array_equal(got.vmin, ref.vmin)
        np.testing.assert_array_equal(got.vmax, ref.vmax)
        # float64 sums in another order
        np.testing.assert_allclose(got.area, ref.area, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(got.vol6, ref.vol6, rtol=1e-12, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(got.sum_int_idx, ref.sum_int_idx, rtol=1e-12)
        # the same hull vertices, as sets (each path's points may hold a few coplanar
        # points more: Qhull without pre-merging keeps some, see convex_hull)
        assert _extreme(got.hull_points) == _extreme(ref.hull_points), name
        f_ref = morphology_features(ref, sp)
        f_got = morphology_features(got, sp, max_diameter=max_diameter)
        for key, value in f_ref.items():
            np.testing.assert_allclose(f_got[key], value, rtol=1e-10, atol=1e-12,
                                       equal_nan=True, err_msg=f"{name}: {key}")


def test_max_diameter_brute_force(rng):
    from scipy.spatial.distance import pdist

    from medimg_fast.features._morph_fast import max_diameter

    pts = rng.normal(size=(300, 3)) * (3.0, 1.0, 0.5)
    assert max_diameter(pts) == pytest.approx(pdist(pts).max(), rel=1e-14)
    assert np.isnan(max_diameter(np.empty((0, 3))))


@pytest.mark.parametrize("distance", [1, 2])
def test_texture_whole_equals_numpy_counting(rng, distance):
    kn = kernels_for("numpy")
    kb = kernels_for("numba")
    image = rng.normal(0, 1, (9, 11, 10))
    mask = rng.random(image.shape) < 0.6
    dirs = directions_3d(distance)
    lo, span = image[mask].min(), np.ptp(image[mask])
    levels = kn.discretise(image, mask, lo, 8.0, span, 8)
    hist, counts, whole_levels = kb.texture_whole(image, mask, lo, 8.0, span, 8, dirs)
    np.testing.assert_array_equal(hist, np.bincount(levels[mask], minlength=9)[1:])
    np.testing.assert_array_equal(counts, kn.glcm(levels, (slice(None),) * 3, dirs, 8))
    np.testing.assert_array_equal(whole_levels, levels)


def test_extract_numba_equals_numpy_backend(rng):
    from medimg_fast.features import extract_features

    image = rng.normal(100, 20, (12, 15, 13)).astype(np.float32)
    idx = np.indices(image.shape)
    mask = sum(((i - c) / r) ** 2 for i, c, r in zip(idx, (6, 7, 6), (5, 6.5, 5))) <= 1
    settings = {"bin_count": 16}
    a = extract_features(image, mask, spacing=(1.5, 0.8, 0.8), settings=settings,
                         backend="numpy")
    b = extract_features(image, mask, spacing=(1.5, 0.8, 0.8), settings=settings,
                         backend="numba")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-10, atol=1e-12, equal_nan=True,
                                   err_msg=key)
