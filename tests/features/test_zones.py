"""Size zone (GLSZM) and distance zone (GLDZM) matrices and features.

References: hand-counted matrices on tiny images, scipy.ndimage.label for the zones,
scipy.ndimage.distance_transform_cdt (taxicab) for the distances to the ROI edge, and
the IBSI-1 digital phantom reference values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _ibsi_reference import mismatches, read_digital_reference
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from medimg_fast.features._glszm import (
    GLDZM_FEATURES,
    GLSZM_FEATURES,
    count_gldzm,
    count_glszm,
    count_zone_families,
    gldzm_aggregate,
    gldzm_features,
    glszm_aggregate,
    glszm_features,
)
from medimg_fast.features._texture import TEXTURE_DIMS

# the 2-D example of the IBSI-1 reference manual, "Grey level size zone based features"
IBSI_EXAMPLE = np.array([[[1, 2, 2, 3],
                          [1, 2, 3, 3],
                          [4, 2, 4, 1],
                          [4, 1, 2, 3]]], dtype=np.int32)
IBSI_EXAMPLE_GLSZM = np.array([[2, 1, 0, 0, 0],
                               [0, 0, 0, 0, 1],
                               [1, 0, 1, 0, 0],
                               [1, 1, 0, 0, 0]])


# -- hand-counted matrices -----------------------------------------------------------
def test_glszm_of_the_ibsi_example():
    counts = count_glszm(IBSI_EXAMPLE, 4, ["2D", "3D"])
    np.testing.assert_array_equal(counts.slices[0][0], IBSI_EXAMPLE_GLSZM)
    # one slice: the 26-connected 3-D zones are the 8-connected 2-D zones
    np.testing.assert_array_equal(counts.volume[0], IBSI_EXAMPLE_GLSZM)


def test_glszm_links_diagonal_neighbours_across_slices_only_in_3d():
    levels = np.zeros((2, 2, 2), np.int32)
    levels[0, 0, 0] = levels[1, 1, 1] = 1
    levels[0, 1, 1] = 2
    counts = count_glszm(levels, 2, TEXTURE_DIMS)
    # 3-D: the two level-1 voxels touch at a corner (26-connected): one zone of 2
    np.testing.assert_array_equal(counts.volume[0], [[0, 1], [1, 0]])
    # 2-D: slice 0 holds a level-1 and a level-2 voxel, slice 1 a level-1 voxel
    assert sorted(counts.slices) == [0, 1]
    np.testing.assert_array_equal(counts.slices[0][0], [[1], [1]])
    np.testing.assert_array_equal(counts.slices[1][0], [[1], [0]])


def test_glszm_skips_slices_without_roi():
    levels = np.zeros((3, 2, 2), np.int32)
    levels[1] = 1
    counts = count_glszm(levels, 1, ["2.5D"])
    assert counts.volume is None
    assert list(counts.slices) == [1]
    np.testing.assert_array_equal(counts.slices[1][0], [[0, 0, 0, 1]])


def test_gldzm_of_the_ibsi_example():
    counts = count_gldzm(IBSI_EXAMPLE, 4, ["2D"])
    # distance map: 1 on the image border, 2 for the four inner voxels.  The manual's
    # table has two level-2 zones, but its own GLSZM of this image (and 8-connectedness)
    # links the five level-2 voxels into one zone, which touches the border: distance 1.
    np.testing.assert_array_equal(counts.slices[0][0, 0], [[3, 0], [1, 0], [2, 0], [1, 1]])
    # layer 1: voxels of those zones
    np.testing.assert_array_equal(counts.slices[0][0, 1], [[4, 0], [5, 0], [4, 0], [2, 1]])


def test_gldzm_distance_2d_and_3d():
    # a 3x3x3 cube of level 1 around a level-2 centre
    levels = np.ones((3, 3, 3), np.int32)
    levels[1, 1, 1] = 2
    counts = count_gldzm(levels, 2, TEXTURE_DIMS)
    np.testing.assert_array_equal(counts.volume[0], [[[1, 0], [0, 1]], [[26, 0], [0, 1]]])
    # outer slices: one level-1 zone touching the edge; middle slice: ring + centre
    np.testing.assert_array_equal(counts.slices[0][0], [[[1], [0]], [[9], [0]]])
    np.testing.assert_array_equal(counts.slices[2][0], counts.slices[0][0])
    np.testing.assert_array_equal(counts.slices[1][0], [[[1, 0], [0, 1]], [[8, 0], [0, 1]]])


def test_gldzm_edges_of_the_array_and_of_the_mask():
    # one 5x7 slice: a 3x3 level-2 block at distance 2 in-plane, but every voxel of a
    # one-slice volume lies on the 3-D edge (beyond the array counts as outside)
    levels = np.ones((1, 5, 7), np.int32)
    levels[0, 1:4, 1:4] = 2
    counts = count_gldzm(levels, 2, ["2D", "3D"])
    np.testing.assert_array_equal(counts.slices[0][0, 0], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(counts.volume[0, 0], [[1], [1]])
    # a hole in the mask is an edge: the voxels around it come down to distance 1
    levels[0, 2, 2] = 0
    counts = count_gldzm(levels, 2, ["2D"])
    np.testing.assert_array_equal(counts.slices[0][0, 0], [[1], [1]])
    np.testing.assert_array_equal(counts.slices[0][0, 1], [[26], [8]])


def test_zone_counts_refuse_bad_input():
    with pytest.raises(ValueError, match="`levels` must be a 3-D"):
        count_glszm(np.ones((3, 3), np.int32), 1, ["3D"])
    with pytest.raises(TypeError, match="integer"):
        count_glszm(np.ones((1, 3, 3)), 1, ["3D"])
    with pytest.raises(ValueError, match="`levels` must lie in 0..ng=1"):
        count_gldzm(np.full((1, 3, 3), 2, np.int32), 1, ["3D"])
    with pytest.raises(ValueError, match="`ng` must be a positive integer"):
        count_glszm(np.ones((1, 3, 3), np.int32), 0, ["3D"])
    with pytest.raises(ValueError, match="`dims`"):
        count_glszm(np.ones((1, 3, 3), np.int32), 1, "3D")
    with pytest.raises(ValueError, match="`dims`"):
        count_glszm(np.ones((1, 3, 3), np.int32), 1, ["4D"])


# -- formulas on a hand-computed matrix ----------------------------------------------
def test_glszm_features_of_the_ibsi_example_matrix():
    # s_i. = (3, 1, 2, 2), s_.j = (4, 2, 1, 0, 1), N_s = 8, N_v = 16
    f = glszm_features(IBSI_EXAMPLE_GLSZM)
    expected = {
        "sze": (4 + 2 / 4 + 1 / 9 + 1 / 25) / 8,
        "lze": (4 + 2 * 4 + 9 + 25) / 8,
        "lgze": (3 + 1 / 4 + 2 / 9 + 2 / 16) / 8,
        "hgze": (3 + 4 + 2 * 9 + 2 * 16) / 8,
        "szlge": (2 + 1 / 4 + 1 / 100 + 1 / 9 + 1 / 81 + 1 / 16 + 1 / 64) / 8,
        "szhge": (2 + 1 / 4 + 4 / 25 + 9 + 1 + 16 + 4) / 8,
        "lzlge": (2 + 4 + 25 / 4 + 1 / 9 + 1 + 1 / 16 + 4 / 16) / 8,
        "lzhge": (2 + 4 + 100 + 9 + 81 + 16 + 64) / 8,
        "glnu": (9 + 1 + 4 + 4) / 8,
        "glnu_norm": (9 + 1 + 4 + 4) / 64,
        "zsnu": (16 + 4 + 1 + 1) / 8,
        "zsnu_norm": (16 + 4 + 1 + 1) / 64,
        "z_perc": 8 / 16,
        # mu_i = 19/8
        "gl_var": (3 * (1 - 19 / 8) ** 2 + (2 - 19 / 8) ** 2 + 2 * (3 - 19 / 8) ** 2
                   + 2 * (4 - 19 / 8) ** 2) / 8,
        # mu_j = 2
        "zs_var": (4 * 1 + 1 * 1 + 1 * 9) / 8,
        # one cell of p = 1/4, six of p = 1/8
        "zs_entr": 0.5 + 6 * 3 / 8,
    }
    assert set(f) == set(GLSZM_FEATURES)
    for name, value in expected.items():
        assert f[name] == pytest.approx(value, rel=1e-12), name


def test_gldzm_features_of_a_hand_matrix():
    zones = np.array([[3, 0], [1, 0], [2, 0], [1, 1]])
    voxels = np.array([[4, 0], [5, 0], [4, 0], [2, 1]])
    f = gldzm_features(np.stack([zones, voxels]))
    assert set(f) == set(GLDZM_FEATURES)
    # d_.j = (7, 1), d_i. = (3, 1, 2, 2), N_s = 8, N_v = 16
    expected = {
        "sde": (7 + 1 / 4) / 8,
        "lde": (7 + 4) / 8,
        "sdlge": (3 + 1 / 4 + 2 / 9 + 1 / 16 + 1 / 64) / 8,
        "ldhge": (3 + 4 + 18 + 16 + 64) / 8,
        "zdnu": (49 + 1) / 8,
        "zdnu_norm": (49 + 1) / 64,
        "z_perc": 8 / 16,
        "zd_var": (7 * (1 - 9 / 8) ** 2 + (2 - 9 / 8) ** 2) / 8,
    }
    for name, value in expected.items():
        assert f[name] == pytest.approx(value, rel=1e-12), name
    # the zone counts alone: everything but zone percentage, or it given N_v
    alone = gldzm_features(zones)
    assert math.isnan(alone["z_perc"])
    assert alone["sde"] == f["sde"]
    assert gldzm_features(zones, n_voxels=16)["z_perc"] == 0.5


def test_features_of_an_empty_matrix_are_nan():
    assert all(math.isnan(v) for v in glszm_features(np.zeros((3, 2))).values())
    assert all(math.isnan(v) for v in gldzm_features(np.zeros((2, 3, 2))).values())


# -- independent references on random ROIs -------------------------------------------
def _reference_zones(levels2or3d, ng, planar):
    """(level, size, distance) of every zone, by scipy.ndimage."""
    structure = np.ones((3, 3) if planar else (3, 3, 3), bool)
    roi = levels2or3d > 0
    padded = np.pad(roi, 1)
    dist = ndimage.distance_transform_cdt(padded, metric="taxicab")
    dist = dist[(slice(1, -1),) * roi.ndim]
    out = []
    for g in range(1, ng + 1):
        labels, n = ndimage.label(levels2or3d == g, structure=structure)
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        sizes = ndimage.sum_labels(np.ones_like(labels), labels, idx)
        dmin = ndimage.minimum(dist, labels, idx)
        out += [(g, int(s), int(d)) for s, d in zip(sizes, dmin)]
    return out


def _reference_matrices(zones, ng):
    size_m = np.zeros((ng, max(s for _, s, _ in zones)), np.int64)
    dist_m = np.zeros((2, ng, max(d for _, _, d in zones)), np.int64)
    for g, s, d in zones:
        size_m[g - 1, s - 1] += 1
        dist_m[0, g - 1, d - 1] += 1
        dist_m[1, g - 1, d - 1] += s
    return size_m, dist_m


@st.composite
def random_rois(draw):
    ng = draw(st.integers(1, 4))
    shape = draw(st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 7)))
    levels = draw(hnp.arrays(np.int32, shape, elements=st.integers(0, ng)))
    return levels, ng


@settings(max_examples=30, deadline=None)
@given(random_rois())
def test_zones_match_scipy_label_and_taxicab_distance(roi):
    levels, ng = roi
    szm = count_glszm(levels, ng, TEXTURE_DIMS)
    dzm = count_gldzm(levels, ng, TEXTURE_DIMS)
    if levels.any():
        size_m, dist_m = _reference_matrices(_reference_zones(levels, ng, False), ng)
        np.testing.assert_array_equal(szm.volume[0], size_m)
        np.testing.assert_array_equal(dzm.volume[0], dist_m)
    else:
        assert szm.volume is None and dzm.volume is None
    with_roi = [z for z in range(levels.shape[0]) if levels[z].any()]
    assert sorted(szm.slices) == with_roi and sorted(dzm.slices) == with_roi
    for z in with_roi:
        size_m, dist_m = _reference_matrices(_reference_zones(levels[z], ng, True), ng)
        np.testing.assert_array_equal(szm.slices[z][0], size_m)
        np.testing.assert_array_equal(dzm.slices[z][0], dist_m)
        # the zones partition the ROI
        assert dist_m[1].sum() == (levels[z] > 0).sum()


# -- IBSI-1 digital phantom ----------------------------------------------------------
@pytest.mark.parametrize(("prefix", "count", "aggregate_"), [
    ("szm_", count_glszm, glszm_aggregate),
    ("dzm_", count_gldzm, gldzm_aggregate),
])
def test_phantom_matches_ibsi(phantom_levels, prefix, count, aggregate_):
    reference = read_digital_reference(prefix=prefix)
    assert len(reference) == 48
    feats = aggregate_(count(phantom_levels, 6, TEXTURE_DIMS), TEXTURE_DIMS)
    assert set(reference) <= set(feats)
    bad = mismatches(feats, reference)
    assert not bad, "\n".join(bad)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([("szm",), ("dzm",), ("szm", "dzm")]),
       st.booleans())
def test_one_labelling_for_both_zone_families(seed, families, with_distance_mask):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(2, 7, 3))
    roi = rng.random(shape) < 0.8
    levels = np.where(roi, rng.integers(1, 4, shape), 0).astype(np.int32)
    dmask = (roi | (rng.random(shape) < 0.3)) if with_distance_mask else None
    got = count_zone_families(levels, 3, TEXTURE_DIMS, families=families, distance_mask=dmask)
    want = {}
    if "szm" in families:
        want["szm"] = count_glszm(levels, 3, TEXTURE_DIMS)
    if "dzm" in families:
        want["dzm"] = count_gldzm(levels, 3, TEXTURE_DIMS, distance_mask=dmask)
    assert got.keys() == want.keys()
    for fam, expected in want.items():
        np.testing.assert_array_equal(got[fam].volume, expected.volume)
        assert got[fam].slices.keys() == expected.slices.keys()
        for z, matrix in expected.slices.items():
            np.testing.assert_array_equal(got[fam].slices[z], matrix)
