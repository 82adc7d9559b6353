"""Neighbourhood grey tone difference matrices (NGTDM) and features.

References: hand-computed matrices (the IBSI-1 manual's example among them), a plain
Python loop over every voxel's neighbourhood, and the IBSI-1 digital phantom.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from _ibsi_reference import mismatches, read_digital_reference
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medimg_fast.features._ngtdm import (
    COARSENESS_MAX,
    NGTDM_FEATURES,
    _ngtdm_kernels,
    count_ngtdm,
    ngtdm_aggregate,
    ngtdm_features,
)
from medimg_fast.features._texture import TEXTURE_DIMS, TextureCounts

# the 2-D example of the IBSI-1 reference manual: only the inner 2x2 voxels are counted
IBSI_EXAMPLE = np.array([[[1, 2, 2, 3],
                          [1, 2, 3, 3],
                          [4, 2, 4, 1],
                          [4, 1, 2, 3]]], dtype=np.int32)
IBSI_EXAMPLE_NGTDM = np.array([[0, 0.0], [2, 1.0], [1, 0.625], [1, 1.875]])

# s_i are sums of |i - A_k|: float rounding in another summation order only
RTOL = 1e-12


# -- hand-computed matrices ----------------------------------------------------------
def test_ibsi_example_with_a_halo():
    core = (slice(None), slice(1, 3), slice(1, 3))
    counts = count_ngtdm(IBSI_EXAMPLE, 4, ["2D", "3D"], core=core)
    np.testing.assert_allclose(counts.slices[0][0], IBSI_EXAMPLE_NGTDM, rtol=RTOL)
    # a one-slice volume has the same neighbourhoods in 3-D
    np.testing.assert_allclose(counts.volume[0], IBSI_EXAMPLE_NGTDM, rtol=RTOL)


def test_voxels_without_roi_neighbours_are_left_out():
    # slice 0: [1, 2]; slice 1: [2, 0]
    levels = np.array([[[1, 2]], [[2, 0]]], dtype=np.int32)
    counts = count_ngtdm(levels, 2, TEXTURE_DIMS)
    # 3-D: 1 sees {2, 2}; each 2 sees {1, 2}
    np.testing.assert_allclose(counts.volume[0], [[1, 1.0], [2, 1.0]], rtol=RTOL)
    np.testing.assert_allclose(counts.slices[0][0], [[1, 1.0], [1, 1.0]], rtol=RTOL)
    # the lone voxel of slice 1 has no in-plane ROI neighbour: an empty unit
    np.testing.assert_array_equal(counts.slices[1][0], np.zeros((2, 2)))
    feats = ngtdm_aggregate(counts, ["2D"])
    # the empty slice is left out of the 2D average: features of slice 0 alone
    assert feats["ngt_coarseness_2D"] == pytest.approx(1.0)


def test_distance_two_neighbourhood():
    levels = np.array([[[1, 2, 3, 0, 0, 4]]], dtype=np.int32)
    counts = count_ngtdm(levels, 4, ["3D"], distance=2)
    # 1: {2, 3}; 2: {1, 3}; 3: {1, 2}; 4: none within 2
    np.testing.assert_allclose(counts.volume[0],
                               [[1, 1.5], [1, 0.0], [1, 1.5], [0, 0.0]], rtol=RTOL)


def test_ngtdm_refuses_bad_input():
    levels = np.ones((1, 3, 3), np.int32)
    with pytest.raises(ValueError, match="`distance` must be a positive integer"):
        count_ngtdm(levels, 1, ["3D"], distance=0)
    with pytest.raises(ValueError, match="`core` must be a tuple of 3 slices"):
        count_ngtdm(levels, 1, ["3D"], core=(slice(None),) * 2)
    with pytest.raises(ValueError, match="step 1"):
        count_ngtdm(levels, 1, ["3D"], core=(slice(None, None, 2),) * 3)
    with pytest.raises(ValueError, match="`levels` must lie in 0..ng=1"):
        count_ngtdm(levels * 2, 1, ["3D"])
    with pytest.raises(ValueError, match="`matrix` must have shape"):
        ngtdm_features(np.zeros((3, 3)))


# -- formulas on a hand-computed matrix ----------------------------------------------
def test_features_of_the_ibsi_example_matrix():
    # N_vc = 4, p = (0, 1/2, 1/4, 1/4), levels present 2, 3, 4 (N_gp = 3),
    # p s = (1/2, 5/32, 15/32), sum s = 7/2
    f = ngtdm_features(IBSI_EXAMPLE_NGTDM)
    assert set(f) == set(NGTDM_FEATURES)
    expected = {
        "coarseness": 1 / (1 / 2 + 5 / 32 + 15 / 32),
        # sum p1 p2 (i1 - i2)^2 = 2 (1/8 + 1/2 + 1/16)
        "contrast": 2 * (1 / 8 + 1 / 2 + 1 / 16) / (3 * 2) * (7 / 2) / 4,
        # i p = (1, 3/4, 1): sum |i1 p1 - i2 p2| = 2 (1/4 + 0 + 1/4)
        "busyness": (9 / 8) / 1.0,
        "complexity": 2 * (1 * (21 / 32) / (3 / 4) + 2 * (31 / 32) / (3 / 4)
                           + 1 * (20 / 32) / (1 / 2)) / 4,
        "strength": 2 * (3 / 4 * 1 + 3 / 4 * 4 + 1 / 2 * 1) / (7 / 2),
    }
    for name, value in expected.items():
        assert f[name] == pytest.approx(value, rel=1e-12), name


def test_ibsi_conventions_for_degenerate_matrices():
    # one grey level, no grey tone difference
    f = ngtdm_features(np.array([[0, 0.0], [5, 0.0]]))
    assert f["coarseness"] == COARSENESS_MAX
    assert f["contrast"] == 0.0 and f["busyness"] == 0.0 and f["strength"] == 0.0
    assert f["complexity"] == 0.0
    assert all(math.isnan(v) for v in ngtdm_features(np.zeros((3, 2))).values())


# -- independent reference on random ROIs --------------------------------------------
def _reference_ngtdm(levels, ng, planar, distance=1, bounds=None):
    """The NGTDM of the core ``bounds`` (default: all of ``levels``; one unit per core
    z-slice when ``planar``), neighbours from all of ``levels``, each neighbourhood
    listed voxel by voxel."""
    nz, ny, nx = levels.shape
    (z0, z1), (y0, y1), (x0, x1) = ((0, nz), (0, ny), (0, nx)) if bounds is None else bounds
    reach_z = 0 if planar else distance
    out = np.zeros((max(z1 - z0, 0) if planar else 1, ng, 2))
    for z, y, x in itertools.product(range(z0, z1), range(y0, y1), range(x0, x1)):
        g = int(levels[z, y, x])
        if g == 0:
            continue
        neighbours = [int(levels[zz, yy, xx])
                      for zz in range(z - reach_z, z + reach_z + 1)
                      for yy in range(y - distance, y + distance + 1)
                      for xx in range(x - distance, x + distance + 1)
                      if (zz, yy, xx) != (z, y, x) and 0 <= zz < nz and 0 <= yy < ny
                      and 0 <= xx < nx and levels[zz, yy, xx] > 0]
        if neighbours:
            unit = z - z0 if planar else 0
            out[unit, g - 1, 0] += 1
            out[unit, g - 1, 1] += abs(g - sum(neighbours) / len(neighbours))
    return out


@st.composite
def _levels_and_core(draw):
    ng = draw(st.integers(1, 4))
    shape = draw(st.tuples(st.integers(1, 5), st.integers(1, 7), st.integers(1, 7)))
    levels = draw(hnp.arrays(np.int32, shape, elements=st.integers(0, ng)))
    bounds = []
    for n in shape:
        a = draw(st.integers(0, n))
        bounds.append([a, draw(st.integers(a, n))])
    return levels, np.array(bounds, np.int64), ng, draw(st.integers(1, 2)), draw(st.booleans())


@settings(max_examples=60, deadline=None)
@given(_levels_and_core())
def test_ngtdm_kernel_matches_listing_each_neighbourhood(case):
    """The separable neighbourhood sums of the kernel, on a core with neighbours around."""
    levels, bounds, ng, distance, planar = case
    got = _ngtdm_kernels()(levels, bounds, distance, planar, ng)
    # integer neighbourhood sums: the accumulated differences agree to rounding of the
    # per-voxel quotient (the reference divides in another order)
    np.testing.assert_allclose(got, _reference_ngtdm(levels, ng, planar, distance, bounds),
                               rtol=1e-12, atol=1e-12)
    # the int64 sums (for levels and neighbourhoods whose sums may not fit int32): the
    # same numbers
    np.testing.assert_array_equal(_ngtdm_kernels(wide=True)(levels, bounds, distance,
                                                            planar, ng), got)


def test_wide_sums_where_int32_could_overflow(monkeypatch):
    """The kernel sums in int64 when ``ng * (2 d + 1)^3`` reaches 2^31."""
    import medimg_fast.features._ngtdm as ngtdm_module

    asked = []
    kernels = ngtdm_module._ngtdm_kernels

    def spy(wide=False):
        asked.append(wide)
        return kernels(wide)

    monkeypatch.setattr(ngtdm_module, "_ngtdm_kernels", spy)
    levels = np.ones((2, 3, 3), np.int32)
    narrow = count_ngtdm(levels, 2, ["3D"], distance=500)  # 2 * 1001^3 < 2^31
    wide = count_ngtdm(levels, 2, ["3D"], distance=600)  # 2 * 1201^3 >= 2^31
    assert asked == [False, True]
    np.testing.assert_array_equal(narrow.volume, wide.volume)


@st.composite
def random_rois(draw):
    ng = draw(st.integers(1, 4))
    shape = draw(st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 7)))
    levels = draw(hnp.arrays(np.int32, shape, elements=st.integers(0, ng)))
    distance = draw(st.integers(1, 2))
    return levels, ng, distance


@settings(max_examples=30, deadline=None)
@given(random_rois())
def test_matrices_match_plain_loops(roi):
    levels, ng, distance = roi
    counts = count_ngtdm(levels, ng, TEXTURE_DIMS, distance=distance)
    if levels.any():
        np.testing.assert_allclose(counts.volume,
                                   _reference_ngtdm(levels, ng, False, distance),
                                   rtol=RTOL, atol=1e-12)
    else:
        assert counts.volume is None
    per_slice = _reference_ngtdm(levels, ng, True, distance)
    assert sorted(counts.slices) == [z for z in range(levels.shape[0]) if levels[z].any()]
    for z, m in counts.slices.items():
        np.testing.assert_allclose(m[0], per_slice[z], rtol=RTOL, atol=1e-12)


def _half_with_halo(levels, axis, cut, first, distance):
    """(block, core) of the half before/after ``cut`` along ``axis``, with its halo."""
    n = levels.shape[axis]
    lo, hi = (0, cut) if first else (cut, n)
    a, b = max(lo - distance, 0), min(hi + distance, n)
    block = [slice(None)] * 3
    core = [slice(None)] * 3
    block[axis] = slice(a, b)
    core[axis] = slice(lo - a, hi - a)
    return levels[tuple(block)], tuple(core), a


@st.composite
def split_rois(draw):
    levels, ng, distance = draw(random_rois())
    axis = draw(st.integers(0, 2))
    cut = draw(st.integers(0, levels.shape[axis]))
    return levels, ng, distance, axis, cut


@settings(max_examples=30, deadline=None)
@given(split_rois())
def test_halves_with_halos_add_up_to_the_whole(case):
    levels, ng, distance, axis, cut = case
    whole = count_ngtdm(levels, ng, TEXTURE_DIMS, distance=distance)
    merged = None
    for first in (True, False):
        block, core, offset = _half_with_halo(levels, axis, cut, first, distance)
        part = count_ngtdm(block, ng, TEXTURE_DIMS, distance=distance, core=core)
        # slice keys are z indices of the block: shift them to the whole volume's
        shift = offset if axis == 0 else 0
        part = TextureCounts(part.volume, {z + shift: m for z, m in part.slices.items()})
        merged = TextureCounts.merge(merged, part)
    if whole.volume is None:
        assert merged.volume is None
    else:
        np.testing.assert_array_equal(merged.volume[..., 0], whole.volume[..., 0])
        np.testing.assert_allclose(merged.volume, whole.volume, rtol=RTOL, atol=1e-12)
    assert sorted(merged.slices) == sorted(whole.slices)
    for z, m in whole.slices.items():
        np.testing.assert_allclose(merged.slices[z], m, rtol=RTOL, atol=1e-12)


# -- IBSI-1 digital phantom ----------------------------------------------------------
def test_phantom_matches_ibsi(phantom_levels):
    reference = read_digital_reference(prefix="ngt_")
    assert len(reference) == 15
    feats = ngtdm_aggregate(count_ngtdm(phantom_levels, 6, TEXTURE_DIMS), TEXTURE_DIMS)
    bad = mismatches(feats, reference)
    assert not bad, "\n".join(bad)
