"""Dependence counts and features: hand-computed matrices, a voxel-by-voxel reference
counter, chunked counting, and the IBSI-1 digital phantom."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _ibsi_reference import mismatches, read_digital_reference
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medimg_fast.features._ngldm import (
    NGLDM_FEATURES,
    count_ngldm,
    ngldm_aggregate,
    ngldm_features,
)
from medimg_fast.features._texture import TextureCounts

ALL_DIMS = ("2D", "2.5D", "3D")

# (y, x) image of the hand-computed matrix below; grey levels 1, 2, ROI edge 0
IMAGE_2D = np.array([[[1, 1, 2, 2],
                      [1, 2, 2, 2],
                      [0, 1, 1, 1]]], dtype=np.int32)
# dependences (8-neighbourhood, alpha 0), row by row:
#   2 2 4 3 / 3 2 4 3 / - 2 2 1
# level 1: k = 2, 2, 3, 2, 2, 1; level 2: k = 4, 3, 2, 4, 3
HAND_2D = [[0, 1, 4, 1, 0], [0, 0, 1, 2, 2]]


def _padded(rows, n_columns):
    out = np.zeros((len(rows), n_columns), np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def test_2d_matrix_by_hand():
    c = count_ngldm(IMAGE_2D, 2, ["2D"])
    assert c.volume is None
    assert sorted(c.slices) == [0]
    np.testing.assert_array_equal(c.slices[0], _padded(HAND_2D, 9)[None])


def test_3d_matrix_of_one_slice_by_hand():
    c = count_ngldm(IMAGE_2D, 2, ["3D"])
    assert c.slices == {}
    np.testing.assert_array_equal(c.volume, _padded(HAND_2D, 27)[None])


def test_3d_and_2d_matrices_by_hand():
    # z0: 1 1 / z1: 1 2: every voxel neighbours the three others
    lev = np.array([[[1, 1]], [[1, 2]]], dtype=np.int32)
    c = count_ngldm(lev, 2, ALL_DIMS)
    np.testing.assert_array_equal(c.volume[0], _padded([[0, 0, 3], [1]], 27))
    np.testing.assert_array_equal(c.slices[0][0], _padded([[0, 2], []], 9))
    np.testing.assert_array_equal(c.slices[1][0], _padded([[1], [1]], 9))
    # alpha 1: levels 1 and 2 depend on each other
    c = count_ngldm(lev, 2, ["3D"], alpha=1)
    np.testing.assert_array_equal(c.volume[0], _padded([[0, 0, 0, 3], [0, 0, 0, 1]], 27))


def test_distance_two_reaches_the_second_ring():
    lev = np.array([[[1, 0, 1, 1]]], dtype=np.int32)
    c = count_ngldm(lev, 1, ["2D", "3D"], distance=2)
    # x0 sees x2; x2 sees x0 and x3; x3 sees x2 (x1 is outside the ROI)
    np.testing.assert_array_equal(c.slices[0][0], _padded([[0, 2, 1]], 25))
    np.testing.assert_array_equal(c.volume[0], _padded([[0, 2, 1]], 125))


def test_features_of_a_hand_matrix():
    # s_ij: one voxel (1, j=1), two (1, j=2), one (2, j=2); Ns = 4
    f = ngldm_features(np.array([[1, 2], [0, 1]]))
    expected = {
        "lde": (1 / 1 + 3 / 4) / 4,
        "hde": (1 * 1 + 3 * 4) / 4,
        "lgce": (3 / 1 + 1 / 4) / 4,
        "hgce": (3 * 1 + 1 * 4) / 4,
        "ldlge": (1 + 2 / 4 + 1 / 16) / 4,
        "ldhge": (1 + 2 / 4 + 4 / 4) / 4,
        "hdlge": (1 + 2 * 4 + 4 / 4) / 4,
        "hdhge": (1 + 2 * 4 + 16) / 4,
        "glnu": (9 + 1) / 4,
        "glnu_norm": (9 + 1) / 16,
        "dcnu": (1 + 9) / 4,
        "dcnu_norm": (1 + 9) / 16,
        "dc_perc": 1.0,
        "gl_var": 0.75 * 0.25 ** 2 + 0.25 * 0.75 ** 2,   # mu_i = 1.25
        "dc_var": 0.25 * 0.75 ** 2 + 0.75 * 0.25 ** 2,   # mu_j = 1.75
        "dc_entr": 2 * 0.25 * 2 + 0.5 * 1,
        "dc_energy": 2 * 0.25 ** 2 + 0.5 ** 2,
    }
    assert set(f) == set(NGLDM_FEATURES)
    for name, value in expected.items():
        assert f[name] == pytest.approx(value, rel=1e-14), name
    # trailing empty dependence columns change nothing
    assert ngldm_features(np.array([[1, 2, 0, 0], [0, 1, 0, 0]])) == f


def test_empty_matrix_gives_nan():
    assert all(np.isnan(v) for v in ngldm_features(np.zeros((3, 9))).values())
    empty = count_ngldm(np.zeros((2, 3, 3), np.int32), 3, ALL_DIMS)
    assert empty.slices == {}
    agg = ngldm_aggregate(empty, ALL_DIMS)
    assert len(agg) == 3 * len(NGLDM_FEATURES)
    assert all(np.isnan(v) for v in agg.values())
    no_voxels = count_ngldm(np.zeros((0, 3, 3), np.int32), 3, ALL_DIMS)
    assert no_voxels.volume.shape == (1, 3, 27) and not no_voxels.volume.any()


@pytest.mark.parametrize("kwargs, match", [
    ({"levels": np.zeros((3, 3), np.int32)}, "3-D"),
    ({"levels": np.full((1, 2, 2), 4, np.int32)}, "0..3"),
    ({"ng": 0}, "`ng`"),
    ({"dims": ["4D"]}, "`dims`"),
    ({"distance": 0}, "`distance`"),
    ({"alpha": -1}, "`alpha`"),
    ({"core": (slice(None), slice(None))}, "`core`"),
    ({"core": (slice(None, None, 2),) * 3}, "`core`"),
])
def test_invalid_arguments(kwargs, match):
    args = {"levels": np.ones((1, 2, 2), np.int32), "ng": 3, "dims": ["3D"], **kwargs}
    levels, ng, dims = args.pop("levels"), args.pop("ng"), args.pop("dims")
    with pytest.raises(ValueError, match=match):
        count_ngldm(levels, ng, dims, **args)


def _reference_matrix(levels, ng, voxels, in_plane, distance, alpha):
    """Dependence counts of ``voxels`` by looping over their neighbourhoods."""
    r = range(-distance, distance + 1)
    offsets = [d for d in itertools.product(r, r, r) if d != (0, 0, 0)
               and (d[0] == 0 or not in_plane)]
    out = np.zeros((ng, len(offsets) + 1), np.int64)
    for v in voxels:
        a = int(levels[v])
        if not a:
            continue
        k = 0
        for d in offsets:
            w = tuple(p + s for p, s in zip(v, d))
            if all(0 <= p < n for p, n in zip(w, levels.shape)):
                b = int(levels[w])
                k += b != 0 and abs(b - a) <= alpha
        out[a - 1, k] += 1
    return out


def _reference_counts(levels, ng, distance, alpha):
    nz, ny, nx = levels.shape
    every = list(itertools.product(range(nz), range(ny), range(nx)))
    volume = _reference_matrix(levels, ng, every, False, distance, alpha)
    slices = {z: _reference_matrix(levels, ng, itertools.product([z], range(ny), range(nx)),
                                   True, distance, alpha)
              for z in range(nz) if levels[z].any()}
    return volume, slices


case_strategy = st.integers(1, 4).flatmap(lambda ng: st.tuples(
    st.just(ng),
    hnp.arrays(np.int32, st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)),
               elements=st.integers(0, ng)),
    st.integers(1, 2),      # distance
    st.integers(0, 2),      # alpha
))


@settings(max_examples=30, deadline=None)
@given(case_strategy)
def test_counts_match_a_voxel_by_voxel_reference(case):
    ng, levels, distance, alpha = case
    c = count_ngldm(levels, ng, ALL_DIMS, distance=distance, alpha=alpha)
    volume, slices = _reference_counts(levels, ng, distance, alpha)
    np.testing.assert_array_equal(c.volume[0], volume)
    assert sorted(c.slices) == sorted(slices)
    for z, m in slices.items():
        np.testing.assert_array_equal(c.slices[z][0], m)


@settings(max_examples=30, deadline=None)
@given(case_strategy, st.integers(0, 2), st.floats(0, 1))
def test_two_halves_with_halos_add_up_to_the_whole(case, axis, where):
    ng, levels, distance, alpha = case
    n = levels.shape[axis]
    cut = min(n, int(where * (n + 1)))
    whole = count_ngldm(levels, ng, ALL_DIMS, distance=distance, alpha=alpha)
    parts = []
    for lo, hi in ((0, cut), (cut, n)):
        # the block: its core plus a halo of `distance` voxels, clipped to the image
        b0, b1 = max(lo - distance, 0), min(hi + distance, n)
        block = [slice(None)] * 3
        block[axis] = slice(b0, b1)
        core = [slice(None)] * 3
        core[axis] = slice(lo - b0, hi - b0)
        part = count_ngldm(levels[tuple(block)], ng, ALL_DIMS, distance=distance,
                           alpha=alpha, core=tuple(core))
        z_offset = b0 if axis == 0 else 0  # slice indices are relative to the block
        parts.append(TextureCounts(part.volume,
                                   {z + z_offset: m for z, m in part.slices.items()}))
    merged = TextureCounts.merge(*parts)
    np.testing.assert_array_equal(merged.volume, whole.volume)
    assert sorted(merged.slices) == sorted(whole.slices)
    for z, m in whole.slices.items():
        np.testing.assert_array_equal(merged.slices[z], m)


def test_phantom_matches_ibsi(phantom_levels):
    assert phantom_levels.shape == (4, 4, 5)
    reference = read_digital_reference(prefix="ngl_")
    assert len(reference) == 51
    feats = ngldm_aggregate(count_ngldm(phantom_levels, 6, ALL_DIMS), ALL_DIMS)
    assert set(reference) <= set(feats)
    bad = mismatches(feats, reference)
    assert not bad, "\n".join(bad)
