"""Run length counts and features: hand-computed matrices, a line-by-line reference
counter, and the IBSI-1 digital phantom."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _ibsi_reference import mismatches, read_digital_reference
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medimg_fast.features._glrlm import (
    GLRLM_FEATURES,
    count_glrlm,
    glrlm_aggregate,
    glrlm_features,
)
from medimg_fast.features._texture import (
    TextureCounts,
    directions_2d,
    directions_3d,
    merge_matrices,
)

ALL_DIMS = ("2D", "2.5D", "3D")

# (y, x) image of the hand-computed 2-D matrices below; grey levels 1, 2, ROI edge 0
IMAGE_2D = np.array([[[1, 1, 2, 2],
                      [1, 2, 2, 2],
                      [0, 1, 1, 1]]], dtype=np.int32)
# rows: levels 1, 2; columns: run lengths 1, 2, 3
HAND_2D = {
    (0, 0, 1): [[1, 1, 1], [0, 1, 1]],   # rows: 1-1|2-2, 1|2-2-2, 1-1-1
    (0, 1, 0): [[4, 1, 0], [1, 2, 0]],   # columns: 1-1, 1|2|1, 2-2|1, 2-2|1
    (0, 1, 1): [[4, 1, 0], [3, 1, 0]],   # diagonals down-right
    (0, 1, -1): [[4, 1, 0], [1, 2, 0]],  # diagonals down-left
}


def _direction_index(dirs, d):
    return [tuple(int(a) for a in row) for row in dirs].index(d)


def test_2d_matrices_by_hand():
    c = count_glrlm(IMAGE_2D, 2, ["2D"])
    assert c.volume is None
    assert sorted(c.slices) == [0]
    m = c.slices[0]
    assert m.shape == (4, 2, 3)
    for d, expected in HAND_2D.items():
        np.testing.assert_array_equal(m[_direction_index(directions_2d(), d)], expected)


def test_3d_matrices_of_one_slice_by_hand():
    c = count_glrlm(IMAGE_2D, 2, ["3D"])
    assert c.slices == {}
    dirs = directions_3d()
    assert c.volume.shape == (13, 2, 3)
    for k, d in enumerate(dirs):
        d = tuple(int(a) for a in d)
        if d[0] == 0:
            np.testing.assert_array_equal(c.volume[k], HAND_2D[d])
        else:  # across a single slice every voxel is a run of its own: 6 of 1, 5 of 2
            np.testing.assert_array_equal(c.volume[k], [[6, 0, 0], [5, 0, 0]])


def test_3d_matrices_by_hand():
    # z0: 1 1 / z1: 1 2, one row (y) of two columns (x)
    lev = np.array([[[1, 1]], [[1, 2]]], dtype=np.int32)
    c = count_glrlm(lev, 2, ["3D", "2D"])
    dirs = directions_3d()
    hand = {
        (0, 0, 1): [[1, 1], [1, 0]],   # 1-1 | 1, 2
        (1, 0, 0): [[1, 1], [1, 0]],   # 1-1 down x0 | 1, 2 down x1
        (1, 0, 1): [[3, 0], [1, 0]],   # (0,0)->(1,1) is 1|2, the others alone
        (1, 0, -1): [[1, 1], [1, 0]],  # (0,1)->(1,0) is 1-1
    }
    for k, d in enumerate(dirs):
        d = tuple(int(a) for a in d)
        np.testing.assert_array_equal(c.volume[k], hand.get(d, [[3, 0], [1, 0]]), err_msg=str(d))
    np.testing.assert_array_equal(c.slices[0][_direction_index(directions_2d(), (0, 0, 1))],
                                  [[0, 1], [0, 0]])
    np.testing.assert_array_equal(c.slices[1][_direction_index(directions_2d(), (0, 0, 1))],
                                  [[1], [1]])


def test_features_of_a_hand_matrix():
    # r_ij: two runs (1, 1), one (1, 2), one (2, 2); Ns = 4, Nv = 6
    f = glrlm_features(np.array([[2, 1], [0, 1]]))
    expected = {
        "sre": (2 / 1 + 2 / 4) / 4,
        "lre": (2 * 1 + 2 * 4) / 4,
        "lgre": (3 / 1 + 1 / 4) / 4,
        "hgre": (3 * 1 + 1 * 4) / 4,
        "srlge": (2 + 1 / 4 + 1 / 16) / 4,
        "srhge": (2 + 1 / 4 + 4 / 4) / 4,
        "lrlge": (2 + 4 + 4 / 4) / 4,
        "lrhge": (2 + 4 + 16) / 4,
        "glnu": (9 + 1) / 4,
        "glnu_norm": (9 + 1) / 16,
        "rlnu": (4 + 4) / 4,
        "rlnu_norm": (4 + 4) / 16,
        "r_perc": 4 / 6,
        "gl_var": 0.75 * 0.25 ** 2 + 0.25 * 0.75 ** 2,   # mu_i = 1.25
        "rl_var": 0.5 * 0.5 ** 2 + 0.5 * 0.5 ** 2,       # mu_j = 1.5
        "rl_entr": 0.5 * 1 + 2 * 0.25 * 2,
    }
    assert set(f) == set(GLRLM_FEATURES)
    for name, value in expected.items():
        assert f[name] == pytest.approx(value, rel=1e-14), name


def test_empty_matrix_gives_nan():
    f = glrlm_features(np.zeros((3, 2)))
    assert all(np.isnan(v) for v in f.values())
    empty = count_glrlm(np.zeros((2, 3, 3), np.int32), 3, ALL_DIMS)
    assert empty.slices == {}
    agg = glrlm_aggregate(empty, ALL_DIMS)
    assert len(agg) == 6 * len(GLRLM_FEATURES)
    assert all(np.isnan(v) for v in agg.values())
    no_voxels = count_glrlm(np.zeros((0, 3, 3), np.int32), 3, ALL_DIMS)
    assert no_voxels.volume.shape == (13, 3, 1) and not no_voxels.volume.any()


@pytest.mark.parametrize("kwargs, match", [
    ({"levels": np.zeros((3, 3), np.int32)}, "3-D"),
    ({"levels": np.full((1, 2, 2), 4, np.int32)}, "0..3"),
    ({"ng": 0}, "`ng`"),
    ({"dims": ["4D"]}, "`dims`"),
])
def test_invalid_arguments(kwargs, match):
    args = {"levels": np.ones((1, 2, 2), np.int32), "ng": 3, "dims": ["3D"], **kwargs}
    with pytest.raises(ValueError, match=match):
        count_glrlm(args["levels"], args["ng"], args["dims"])
    with pytest.raises(TypeError, match="integer"):
        count_glrlm(np.ones((1, 2, 2)), 3, ["3D"])


def _reference_counts(levels, ng, dirs):
    """Runs found by walking every line of the image along each direction and grouping
    equal consecutive levels: ``(n_directions, ng, longest)``, trimmed to the longest run."""
    shape = levels.shape
    out = np.zeros((len(dirs), ng, max(shape) + 1), np.int64)
    for k, d in enumerate(dirs):
        for v in itertools.product(*(range(n) for n in shape)):
            if all(0 <= a - s < n for a, s, n in zip(v, d, shape)):
                continue  # not the first voxel of its line
            line = []
            w = v
            while all(0 <= a < n for a, n in zip(w, shape)):
                line.append(int(levels[w]))
                w = tuple(a + s for a, s in zip(w, d))
            for level, group in itertools.groupby(line):
                if level:
                    out[k, level - 1, len(list(group)) - 1] += 1
    longest = max([1] + [j + 1 for j in range(out.shape[2]) if out[:, :, j].any()])
    return out[:, :, :longest]


levels_strategy = st.integers(1, 4).flatmap(lambda ng: st.tuples(st.just(ng), hnp.arrays(
    np.int32, st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)),
    elements=st.integers(0, ng))))


@settings(max_examples=30, deadline=None)
@given(levels_strategy)
def test_counts_match_a_line_by_line_reference(case):
    ng, levels = case
    c = count_glrlm(levels, ng, ALL_DIMS)
    dirs3 = [tuple(int(a) for a in d) for d in directions_3d()]
    np.testing.assert_array_equal(c.volume, _reference_counts(levels, ng, dirs3))
    dirs2 = [tuple(int(a) for a in d) for d in directions_2d()]
    roi_slices = [z for z in range(levels.shape[0]) if levels[z].any()]
    assert sorted(c.slices) == roi_slices
    for z in roi_slices:
        np.testing.assert_array_equal(c.slices[z], _reference_counts(levels[z:z + 1], ng, dirs2))
    # every ROI voxel lies on exactly one run per direction
    lengths = np.arange(1, c.volume.shape[2] + 1)
    np.testing.assert_array_equal((c.volume * lengths).sum(axis=(1, 2)),
                                  np.count_nonzero(levels))


def test_slice_counts_merge_to_the_in_plane_volume_counts():
    # a run along an in-plane direction never leaves its slice, so merging the slices'
    # matrices (two partials, as two chunks would give) yields the 3-D in-plane matrices
    rng = np.random.default_rng(7)
    levels = rng.integers(0, 4, (5, 9, 8)).astype(np.int32)
    c = count_glrlm(levels, 3, ALL_DIMS)
    halves = [TextureCounts(slices={z: m for z, m in c.slices.items() if (z < 2) == low})
              for low in (True, False)]
    merged = TextureCounts.merge(*halves)
    assert merged.slices.keys() == c.slices.keys()
    total = None
    for m in merged.slices.values():
        total = merge_matrices(total, m)
    in_plane = directions_3d()[:, 0] == 0
    np.testing.assert_array_equal(merge_matrices(total, 0 * c.volume[in_plane]),
                                  c.volume[in_plane])


def test_phantom_matches_ibsi(phantom_levels):
    assert phantom_levels.shape == (4, 4, 5)
    reference = read_digital_reference(prefix="rlm_")
    assert len(reference) == 96
    feats = glrlm_aggregate(count_glrlm(phantom_levels, 6, ALL_DIMS), ALL_DIMS)
    assert set(reference) <= set(feats)
    bad = mismatches(feats, reference)
    assert not bad, "\n".join(bad)


# -- 3-D only: all 13 directions in one pass
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4).flatmap(lambda ng: st.tuples(st.just(ng), hnp.arrays(
    np.int32, st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)),
    elements=st.integers(0, ng)))))
def test_3d_run_lengths_match_walking_the_lines(case):
    ng, levels = case
    counts = count_glrlm(levels, ng, ["3D"])
    dirs = [tuple(int(a) for a in d) for d in directions_3d()]
    np.testing.assert_array_equal(counts.volume, _reference_counts(levels, ng, dirs))
    assert counts.slices == {}
    # the same matrices as the slice-by-slice path of the 2-D aggregations
    np.testing.assert_array_equal(counts.volume,
                                  count_glrlm(levels, ng, ["2D", "3D"]).volume)
