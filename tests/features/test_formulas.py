"""The compiled texture formulas (``_formulas.py``) against independent NumPy references.

The references (``_formula_reference.py``) are array formulas written from the IBSI-1
definitions; the GLCM one uses the general definitions (row and column marginals, HXY1
and HXY2 from the outer product), the compiled one those of a symmetric matrix.
Tolerance: rtol 1e-12, absolute tolerance 0, except where a feature is a difference of
much larger terms, where the bound is 1e-12 times the size of those terms (float64
rounding of each term, ~1e-16 relative, summed over a few thousand entries), and for the
variances, whose rounding through their mean does not vanish with the variance (see
``_variance_atol``; a one-level matrix has variance 0, the reference ~1e-32):

* ``clust_shade`` = sum (i + j - 2 mu)^3 p: the terms' size is sum |i + j - 2 mu|^3 p;
* ``corr``: the terms' size is sum |i - mu| |j - mu| p / var <= 1;
* ``info_corr1`` = (HXY - HXY1) / HX: the terms' size (HXY + HXY1) / HX;
* ``info_corr2`` = sqrt(1 - exp(-2 (HXY2 - HXY))): compared squared (the square root of
  a rounding error near 0 is not small), to 1e-12 (HXY + HXY2).

Both paths of the compiled GLCM formulas are checked for the same numbers: the map
kernels' (int32 symmetric counts, int64 marginals, a small log2 table) and the
extraction's stack (int64 ordered counts symmetrised on the fly, a large table).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _formula_reference import (
    GLCM_FEATURES,
    NGTDM_FEATURES,
    dependence_energy,
    emphasis_features,
    glcm_features_stack,
    ngtdm_features,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medimg_fast.features import _glcm, _glrlm, _glszm, _ngldm, _ngtdm
from medimg_fast.features._formulas import (
    NV_COUNTS,
    NV_GIVEN,
    NV_RUN_VOXELS,
    compiled_formulas,
    emphasis_table,
    glcm_table,
    log2_table,
    ngtdm_table,
)
from medimg_fast.features._texture import TextureCounts

RTOL = 1e-12


def _close(a, b, rtol=RTOL, atol=0.0):
    if math.isnan(b):
        return math.isnan(a)
    return abs(a - b) <= max(rtol * abs(b), atol)


def _glcm_scales(sym):
    """Sizes of the terms of the GLCM features that are differences (see the module)."""
    p = sym / sym.sum()
    lv = np.arange(1, len(p) + 1.0)
    pi = p.sum(axis=1)
    mu = float(pi @ lv)
    var = float(pi @ (lv - mu) ** 2)
    i, j = lv[:, None], lv[None, :]
    nz = p[p > 0]
    hxy = float(-(nz * np.log2(nz)).sum())
    pin = pi[pi > 0]
    hx = float(-(pin * np.log2(pin)).sum())
    return {
        "clust_shade": float((np.abs(i + j - 2 * mu) ** 3 * p).sum()),
        "corr": float((np.abs(i - mu) * np.abs(j - mu) * p).sum()) / var if var > 0 else 0.0,
        "info_corr1": (hxy + 2 * hx) / hx if hx > 0 else 0.0,
        "info_corr2_sq": hxy + 2 * hx,
    }


#: Below this, a GLCM feature's value is rounding (a square of float64 errors or less).
_ROUNDING_FLOOR = 1e-25
#: ... and an entropy's (-p log p of a probability within rounding of 1).
_ENTROPY_FLOOR = 1e-14


def _assert_glcm(got, ref, sym, where=""):
    """``got`` (25 values in order) against the reference's dict for matrix ``sym``."""
    scales = _glcm_scales(sym) if sym.sum() > 0 else {}
    for k, name in enumerate(GLCM_FEATURES):
        a, b = float(got[k]), ref[name]
        if name == "info_corr2":
            ok = math.isclose(a * a, b * b, rel_tol=RTOL,
                              abs_tol=RTOL * scales.get("info_corr2_sq", 0.0))
        else:
            # a feature that is 0 exactly (say, the variances of a matrix whose mass
            # sits on one diagonal) comes out as 0 or as powers of rounding errors
            floor = _ENTROPY_FLOOR if name.endswith("entr") else _ROUNDING_FLOOR
            ok = _close(a, b, atol=max(RTOL * scales.get(name, 0.0), floor))
        assert ok, (where, name, a, b)


def _random_counts(rng, ng, fill, high=40):
    return rng.integers(0, high, (ng, ng)) * (rng.random((ng, ng)) < fill)


def _maps_glcm(sym, log2_size):
    """The map kernels' call: int32 symmetric counts, int64 marginals and total."""
    f = compiled_formulas()
    m = np.ascontiguousarray(sym, dtype=np.int32)
    ng = len(m)
    res = np.empty(25)
    f.glcm(m, m.sum(axis=1).astype(np.int64), np.int64(m.sum()), ng, log2_table(log2_size),
           np.empty(ng, np.int64), np.empty(ng, np.int64), np.empty(2 * ng + 1, np.int64),
           res)
    return res


@pytest.mark.parametrize("ng", [1, 2, 3, 7, 16, 50])
def test_glcm_stack_equals_reference(ng):
    rng = np.random.default_rng(ng)
    for fill in (0.05, 0.3, 1.0):
        counts = np.stack([_random_counts(rng, ng, fill) for _ in range(13)])
        counts[3] = 0  # an empty direction
        values, counted = glcm_table(counts, symmetrise=True, with_sum=True)
        assert values.shape == (14, 25)
        sym = counts + counts.transpose(0, 2, 1)
        sym = np.concatenate([sym, sym.sum(axis=0)[None]])
        ref = glcm_features_stack(sym.astype(np.float64))
        for r in range(14):
            assert counted[r] == (sym[r].sum() > 0)
            if counted[r]:
                _assert_glcm(values[r], ref[r], sym[r], (ng, fill, r))
                # the maps' call gives the same numbers, with a table of any size
                np.testing.assert_array_equal(_maps_glcm(sym[r], 3), values[r])
                np.testing.assert_array_equal(_maps_glcm(sym[r], int(sym[r].sum()) + 1),
                                              values[r])
            else:
                assert np.isnan(values[r]).all()


def test_glcm_large_counts_beyond_the_table():
    # whole-ROI totals of millions: logarithms computed, not looked up
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 3_000_000, (2, 12, 12)) * (rng.random((2, 12, 12)) < 0.5)
    values, _ = glcm_table(counts, with_sum=True)
    sym = counts + counts.transpose(0, 2, 1)
    sym = np.concatenate([sym, sym.sum(axis=0)[None]])
    for r, ref in enumerate(glcm_features_stack(sym.astype(np.float64))):
        _assert_glcm(values[r], ref, sym[r], r)


@pytest.mark.parametrize("ng", [1, 4, 9])
def test_glcm_edge_cases(ng):
    # one grey level present, a single non-zero entry (diagonal or not), an empty matrix
    cases = []
    for a, b in [(0, 0), (ng - 1, 0), (ng // 2, ng - 1)]:
        c = np.zeros((ng, ng), np.int64)
        c[a, b] = 7
        cases.append(c)
    cases.append(np.zeros((ng, ng), np.int64))
    values, counted = glcm_table(np.stack(cases))
    for r, c in enumerate(cases):
        sym = c + c.T
        if not counted[r]:
            assert sym.sum() == 0 and np.isnan(values[r]).all()
            continue
        _assert_glcm(values[r], glcm_features_stack(sym[None].astype(float))[0], sym, r)
    # one grey level: joint entropy 0, correlation undefined
    assert values[0][GLCM_FEATURES.index("joint_entr")] == 0.0
    assert math.isnan(values[0][GLCM_FEATURES.index("corr")])
    assert values[0][GLCM_FEATURES.index("info_corr2")] == 0.0


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 12)).map(
    lambda s: (s[0], s[1], s[1])), elements=st.integers(0, 1000)))
def test_glcm_stack_property(counts):
    values, counted = glcm_table(counts, with_sum=True)
    sym = counts + counts.transpose(0, 2, 1)
    sym = np.concatenate([sym, sym.sum(axis=0)[None]])
    ref = glcm_features_stack(sym.astype(np.float64))
    for r in range(len(sym)):
        if counted[r]:
            _assert_glcm(values[r], ref[r], sym[r], r)
        else:
            assert sym[r].sum() == 0 and np.isnan(values[r]).all()


def test_glcm_public_functions():
    rng = np.random.default_rng(3)
    c = _random_counts(rng, 6, 0.5)
    sym = c + c.T
    ref = glcm_features_stack(sym[None].astype(float))[0]
    got = _glcm.glcm_features(sym)
    _assert_glcm([got[n] for n in GLCM_FEATURES], ref, sym)
    # probabilities: the same features as the counts
    prob = _glcm.glcm_features(sym / sym.sum())
    _assert_glcm([prob[n] for n in GLCM_FEATURES], ref, sym)
    assert all(math.isnan(v) for v in _glcm.glcm_features(np.zeros((4, 4))).values())
    with pytest.raises(ValueError, match="symmetric"):
        _glcm.glcm_features(c + 2 * c.T + np.eye(6, k=1, dtype=np.int64))


def _emphasis_cases(rng):
    for nrow, ncol, fill in ((1, 1, 1.0), (1, 5, 0.5), (4, 1, 0.5), (5, 7, 0.35),
                             (16, 27, 0.35), (50, 4000, 0.0005)):
        for trial in range(12):
            m = rng.integers(0, 6, (nrow, ncol)) * (rng.random((nrow, ncol)) < fill)
            if trial == 0:
                m[:] = 0  # empty: all NaN
            if trial == 1:
                m[:] = 0
                m[rng.integers(nrow), rng.integers(ncol)] = 3  # a single non-zero entry
            yield m


def _variance_atol(m, var, axis):
    """Rounding of a variance ``sum p (i - mu)^2`` through its mean (``mu`` off by
    ``d ~ 1e-16 mu``: ``2 d E|i - mu| + d^2``): 1e-12 (mu sqrt(var) + 1e-12 mu^2)."""
    w = np.asarray(m, dtype=np.float64).sum(axis=axis)
    if w.sum() <= 0 or math.isnan(var):
        return 0.0
    mu = float((np.arange(1, len(w) + 1) * w).sum() / w.sum())
    return RTOL * (mu * math.sqrt(var) + RTOL * mu * mu)


def _assert_emphasis(row, m, n_voxels=None, where=""):
    ref = emphasis_features(m, n_voxels=n_voxels)
    atol = {13: _variance_atol(m, ref[13], 1), 14: _variance_atol(m, ref[14], 0)}
    for k in range(16):
        assert _close(float(row[k]), ref[k], atol=atol.get(k, 0.0)), (where, k, row[k],
                                                                      ref[k])
    assert _close(float(row[16]), dependence_energy(m)), (where, row[16])


def test_emphasis_equals_reference():
    rng = np.random.default_rng(8)
    for m in _emphasis_cases(rng):
        stack = np.stack([m, m[::-1], np.zeros_like(m)])
        ns = float(m.sum())
        # runs and zones: N_v = sum j m
        values, counted = emphasis_table(stack, with_sum=True, nv_mode=NV_RUN_VOXELS)
        assert list(counted) == [ns > 0, ns > 0, False, ns > 0]
        for r, mat in enumerate([m, m[::-1], np.zeros_like(m), stack.sum(axis=0)]):
            _assert_emphasis(values[r], mat, where=(m.shape, r))
        # distance zones: N_v given (NaN: no voxel count)
        nv = [ns + 3.0, math.nan, 1.0, 2 * ns + 3.0]
        values, _ = emphasis_table(stack, with_sum=True, nv_mode=NV_GIVEN, n_voxels=nv)
        for r, mat in enumerate([m, m[::-1], np.zeros_like(m), stack.sum(axis=0)]):
            _assert_emphasis(values[r], mat, n_voxels=nv[r], where=(m.shape, r))
        # dependences: N_v = N_s
        values, _ = emphasis_table(m[None], nv_mode=NV_COUNTS)
        _assert_emphasis(values[0], m, n_voxels=ns, where=m.shape)


def test_emphasis_maps_call_equals_stack():
    # the map kernels' call (int64 matrix, float64 workspaces) gives the stack's numbers
    f = compiled_formulas()
    rng = np.random.default_rng(9)
    for m in _emphasis_cases(rng):
        m = m.astype(np.int64)
        nrow, ncol = m.shape
        res = np.empty(17)
        ok = f.emphasis(m, nrow, ncol, NV_RUN_VOXELS, 0.0, np.empty(nrow), np.empty(ncol),
                        np.empty(ncol, np.int64), res)
        values, counted = emphasis_table(m[None])
        assert ok == counted[0]
        np.testing.assert_array_equal(res, values[0])


@settings(max_examples=80, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 40)),
                  elements=st.integers(0, 50)))
def test_emphasis_property(m):
    values, counted = emphasis_table(m[None])
    assert counted[0] == (m.sum() > 0)
    _assert_emphasis(values[0], m)


def test_family_features_equal_reference():
    rng = np.random.default_rng(4)
    m = rng.integers(0, 5, (6, 9)) * (rng.random((6, 9)) < 0.4)
    m[0, 0] = 1
    ref = emphasis_features(m)
    assert list(_glrlm.glrlm_features(m).values()) == pytest.approx(ref, rel=RTOL, abs=0)
    assert list(_glszm.glszm_features(m).values()) == pytest.approx(ref, rel=RTOL, abs=0)
    vox = rng.integers(1, 9, m.shape) * (m > 0)
    dzm = _glszm.gldzm_features(np.stack([m, vox]))
    assert list(dzm.values()) == pytest.approx(emphasis_features(m, float(vox.sum())),
                                               rel=RTOL, abs=0)
    assert list(_glszm.gldzm_features(m, n_voxels=40).values()) == pytest.approx(
        emphasis_features(m, 40.0), rel=RTOL, abs=0)
    assert math.isnan(_glszm.gldzm_features(m)["z_perc"])  # no voxel count
    ngl = _ngldm.ngldm_features(m)
    assert list(ngl.values()) == pytest.approx(
        list(emphasis_features(m, float(m.sum()))) + [dependence_energy(m)], rel=RTOL, abs=0)
    for fn in (_glrlm.glrlm_features, _glszm.glszm_features, _glszm.gldzm_features,
               _ngldm.ngldm_features):
        assert all(math.isnan(v) for v in fn(np.zeros((3, 4), np.int64)).values())


def _ngtdm_cases(rng):
    for ng in (1, 2, 3, 8, 20):
        for trial in range(30):
            n = (rng.integers(0, 4, ng) * (rng.random(ng) < 0.6)).astype(float)
            s = rng.random(ng) * 30 * (n > 0)
            if trial % 5 == 0:
                s[:] = 0  # no grey tone change: capped coarseness, strength 0
            if trial == 1:
                n[:] = 0
                s[:] = 0
            if ng == 2 and trial == 2:
                n[:] = (2, 1)  # busyness denominator 0 with two levels: NaN
            yield np.stack([n, s], axis=1)


def test_ngtdm_equals_reference():
    rng = np.random.default_rng(10)
    for m in _ngtdm_cases(rng):
        values, counted = ngtdm_table(m[None])
        ref = ngtdm_features(m)
        assert counted[0] == (m[:, 0].sum() > 0)
        for k, name in enumerate(NGTDM_FEATURES):
            assert _close(float(values[0, k]), ref[name]), (name, m, values[0, k], ref[name])
        got = _ngtdm.ngtdm_features(m)
        np.testing.assert_array_equal(list(got.values()), values[0])


def _reference_aggregate(counts, formulas, names, directional, dims):
    """The IBSI aggregations (``_texture`` module docstring) by explicit loops."""
    def mean(mats):
        rows = [formulas(m) for m in mats if np.any(m)]
        if not rows:
            return [math.nan] * len(names)
        return list(np.mean(np.array(rows), axis=0))

    out = {}
    slices = [counts.slices[z] for z in sorted(counts.slices)]
    if "2D" in dims:
        if directional:
            out["2D_avg"] = mean([m for s in slices for m in s])
            out["2D_comb"] = mean([s.sum(axis=0) for s in slices])
        else:
            out["2D"] = mean([s[0] for s in slices])
    if "2.5D" in dims:
        merged = sum(slices)
        if directional:
            out["2_5D_avg"] = mean(list(merged))
            out["2_5D_comb"] = mean([merged.sum(axis=0)])
        else:
            out["2_5D"] = mean([merged[0]])
    if "3D" in dims:
        if directional:
            out["3D_avg"] = mean(list(counts.volume))
            out["3D_comb"] = mean([counts.volume.sum(axis=0)])
        else:
            out["3D"] = mean([counts.volume[0]])
    return out


def _check_aggregate(got, ref, family, names, rel):
    for suffix, values in ref.items():
        for name, v in zip(names, values):
            g = got[f"{family}_{name}_{suffix}"]
            assert (math.isnan(g) and math.isnan(v)) or g == pytest.approx(v, rel=rel), (
                suffix, name, g, v)


def test_aggregations_equal_explicit_loops():
    rng = np.random.default_rng(12)
    dims = ["2D", "2.5D", "3D"]
    ng = 5

    def units(shape, empty=()):
        a = rng.integers(0, 6, shape) * (rng.random(shape) < 0.4)
        for k in empty:
            a[k] = 0  # an empty unit (a direction without pairs)
        return a

    # GLCM: 4 slices of 4 in-plane directions (one direction of one slice, and one slice,
    # empty), 13 volume directions
    sl = {z: units((4, ng, ng), [1]) for z in range(4)}
    sl[3][:] = 0
    vol = units((13, ng, ng), [0])
    counts = TextureCounts(volume=vol, slices=sl)
    got = _glcm.glcm_aggregate(counts, ["2D_avg", "2D_comb", "2_5D_avg", "2_5D_comb",
                                        "3D_avg", "3D_comb"])

    def glcm_ref(c):
        ref = glcm_features_stack((c + c.T)[None].astype(float))[0]
        return [ref[n] for n in GLCM_FEATURES]

    _check_aggregate(got, _reference_aggregate(counts, glcm_ref, GLCM_FEATURES, True, dims),
                     "cm", GLCM_FEATURES, 1e-10)
    # run lengths, the same units with wider matrices
    sl = {z: units((4, ng, 7), [3]) for z in range(3)}
    counts = TextureCounts(volume=units((13, ng, 9), [2]), slices=sl)
    got = _glrlm.glrlm_aggregate(counts, dims)
    _check_aggregate(got, _reference_aggregate(counts, emphasis_features, _glrlm.GLRLM_FEATURES,
                                               True, dims), "rlm", _glrlm.GLRLM_FEATURES, 1e-12)
    # size zones, one unit per slice, slices of different widths
    sl = {0: units((1, ng, 30)), 2: units((1, ng, 12)), 5: np.zeros((1, ng, 4), np.int64)}
    counts = TextureCounts(volume=units((1, ng, 30)), slices=sl)
    got = _glszm.glszm_aggregate(counts, dims)
    pad = {z: np.pad(m, ((0, 0), (0, 0), (0, 30 - m.shape[2]))) for z, m in sl.items()}
    ref = _reference_aggregate(TextureCounts(counts.volume, pad), emphasis_features,
                               _glszm.GLSZM_FEATURES, False, dims)
    _check_aggregate(got, ref, "szm", _glszm.GLSZM_FEATURES, 1e-12)
    # NGTDM
    sl = {z: np.stack([rng.integers(0, 4, (ng,)), rng.random(ng) * 9], axis=1)[None]
          for z in range(3)}
    sl[1][:] = 0
    counts = TextureCounts(volume=sl[0] + sl[2], slices=sl)
    got = _ngtdm.ngtdm_aggregate(counts, dims)

    def ngt_ref(m):
        ref = ngtdm_features(m)
        return [ref[n] for n in NGTDM_FEATURES]

    _check_aggregate(got, _reference_aggregate(counts, ngt_ref, NGTDM_FEATURES, False, dims),
                     "ngt", NGTDM_FEATURES, 1e-12)
