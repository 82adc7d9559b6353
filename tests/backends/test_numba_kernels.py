"""The numba CPU kernels against scipy.ndimage (float64), and their chunk exactness.

Tolerances: the kernels accumulate in the image dtype, scipy in float64.  float32 results
must agree to rtol 1e-5 with atol 1e-5 * max|ref| (cancellation in derivatives makes a
purely relative test meaningless near zero); float64 results to 1e-12 likewise.
"""

from __future__ import annotations

import inspect
import zlib

import numpy as np
import pytest
from _mf_testing import draw_interior_block, padded_and_interior, run_concurrently
from scipy import ndimage as ndi

numba = pytest.importorskip("numba")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medimg_fast._shared.boundary import MODE_CODES, MODES
from medimg_fast.backends import _numba_kernels as K

DTYPES = (np.float32, np.float64)
CVAL = 1.75
SHAPES = [(1,), (2,), (3,), (11,), (1, 9), (2, 3), (6, 7), (1, 2, 3), (3, 1, 2), (4, 5, 6)]


def rng_for(*key):
    # crc32, not hash(): str hashes change between runs (PYTHONHASHSEED)
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def assert_matches(got, ref, dtype):
    assert got.dtype == dtype
    assert got.shape == ref.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    atol = tol * max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=tol, atol=atol)


def image(shape, dtype, *key):
    return rng_for(shape, *key).standard_normal(shape).astype(dtype)


# -- correlate1d ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_correlate1d_matches_scipy(dtype, mode):
    gen = rng_for("weights", mode)
    weight_sets = [
        gen.standard_normal(9),          # odd, general, wider than small axes
        gen.standard_normal(4),          # even length: centre tap 2
        np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16,  # symmetric (scipy pairs taps)
        np.array([-1.0, 0.0, 1.0]),      # antisymmetric
        np.array([2.5]),
    ]
    for shape in SHAPES:
        a = image(shape, dtype, "c1d")
        for axis in range(-a.ndim, a.ndim):
            for w in weight_sets:
                got = K.correlate1d(a, w, axis, MODE_CODES[mode], CVAL)
                ref = ndi.correlate1d(a.astype(np.float64), w, axis=axis, mode=mode, cval=CVAL)
                assert_matches(got, ref, dtype)


def test_correlate1d_float32_in_float32_out_and_input_untouched():
    a = image((5, 6), np.float32, "untouched")
    before = a.copy()
    out = K.correlate1d(a, [1.0, 2.0, 1.0], 0, MODE_CODES["reflect"], 0.0)
    assert out.dtype == np.float32 and out is not a
    np.testing.assert_array_equal(a, before)


# -- extremum_filter1d ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("maximum", [False, True])
def test_extremum_filter1d_matches_scipy(dtype, mode, maximum):
    reference = ndi.maximum_filter1d if maximum else ndi.minimum_filter1d
    for shape in SHAPES:
        a = image(shape, dtype, "ext")
        for axis in range(a.ndim):
            for size in (1, 2, 3, 4, 9):
                got = K.extremum_filter1d(a, size, axis, MODE_CODES[mode], CVAL, maximum)
                ref = reference(a.astype(np.float64), size, axis=axis, mode=mode, cval=CVAL)
                assert_matches(got, ref, dtype)


# -- correlate (N-D weights) ------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_correlate_matches_scipy(dtype, mode):
    gen = rng_for("nd-weights", mode)
    for shape in SHAPES:
        a = image(shape, dtype, "corr")
        for k in (1, 2, 3, 5):
            w = gen.standard_normal((k,) * a.ndim)
            w.flat[0] = 0.0  # scipy skips zero weights; so must we
            got = K.correlate(a, w, MODE_CODES[mode], CVAL)
            ref = ndi.correlate(a.astype(np.float64), w, mode=mode, cval=CVAL)
            assert_matches(got, ref, dtype)
    # anisotropic kernel on a 3-D image
    a = image((5, 4, 6), dtype, "corr-aniso")
    w = gen.standard_normal((1, 3, 4))
    assert_matches(K.correlate(a, w, MODE_CODES[mode], CVAL),
                   ndi.correlate(a.astype(np.float64), w, mode=mode, cval=CVAL), dtype)


# -- rank_filter ------------------------------------------------------------------------


def scipy_rank(a64, rank, footprint, mode):
    # scipy 1.17's 1-D fast path ignores holes in even-length footprints (it returns the
    # full-window order statistic); its general N-D path is right, so give it a unit axis
    if a64.ndim == 1:
        return ndi.rank_filter(a64[None], rank, footprint=footprint[None], mode=mode,
                               cval=CVAL)[0]
    return ndi.rank_filter(a64, rank, footprint=footprint, mode=mode, cval=CVAL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_rank_filter_matches_scipy(dtype, mode):
    gen = rng_for("footprints", mode)
    for shape in SHAPES:
        a = image(shape, dtype, "rank")
        a64 = a.astype(np.float64)
        for k in (1, 2, 3, 4):
            fp = gen.random((k,) * a.ndim) < 0.7
            fp.flat[-1] = True
            count = int(fp.sum())
            for rank in sorted({0, count // 2, count - 1}):
                got = K.rank_filter(a, fp, rank, MODE_CODES[mode], CVAL)
                assert_matches(got, scipy_rank(a64, rank, fp, mode), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fp_shape", [(3, 3, 3), (3, 3), (5, 5), (1, 3, 3), (5, 5, 5)])
def test_box_median_matches_scipy(dtype, mode, fp_shape):
    """Full boxes take the unrolled networks (3**3, 3x3), the comparator schedule (5x5) or
    per-voxel selection (5**3)."""
    shape = {3: (4, 7, 9), 2: (6, 11)}[len(fp_shape)]
    fp = np.ones(fp_shape, dtype=bool)
    for sub in (shape, tuple(min(2, n) for n in shape)):  # tiny arrays: windows wrap around
        a = image(sub, dtype, "median", fp_shape)
        a[0, 0] = a[-1, -1]  # ties
        got = K.rank_filter(a, fp, fp.size // 2, MODE_CODES[mode], CVAL)
        ref = ndi.median_filter(a.astype(np.float64), footprint=fp, mode=mode, cval=CVAL)
        assert_matches(got, ref, dtype)


def test_rank_filter_large_footprint_uses_selection():
    fp = np.ones((1, 9, 9), dtype=bool)
    assert fp.sum() > K.SCHEDULE_MAX_COUNT
    a = image((2, 10, 12), np.float64, "large-fp")
    for rank in (0, 40, 80):
        got = K.rank_filter(a, fp, rank, MODE_CODES["mirror"], CVAL)
        assert_matches(got, scipy_rank(a, rank, fp, "mirror"), np.float64)


@pytest.mark.parametrize("count", range(1, 30))
def test_selection_schedule_selects_every_rank(count):
    """Run each schedule on integer data with many ties; np.sort is the reference."""
    gen = rng_for("schedule", count)
    values = gen.integers(0, 4, size=(count, 64)).astype(np.float64)
    for rank in range(count):
        ops, result = K.selection_schedule(count, rank)
        slots = values.copy()
        for i, j in ops:
            slots[i], slots[j] = np.minimum(slots[i], slots[j]), np.maximum(slots[i], slots[j])
        np.testing.assert_array_equal(slots[result], np.sort(values, axis=0)[rank])


@pytest.mark.parametrize("name, count", [("_median_of_9", 9), ("_median_of_27", 27)])
def test_generated_networks_are_up_to_date(name, count):
    source = inspect.getsource(getattr(K, name).py_func)
    assert source == K.network_source(name, count, count // 2)


# -- gradient_magnitude -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["sobel", "prewitt"])
def test_gradient_magnitude_matches_scipy(dtype, mode, kind):
    derivative = getattr(ndi, kind)
    code = {"sobel": 0, "prewitt": 1}[kind]
    for shape in SHAPES:
        a = image(shape, dtype, "grad")
        a64 = a.astype(np.float64)
        parts = [derivative(a64, axis=ax, mode=mode, cval=CVAL) for ax in range(a.ndim)]
        axes_sets = [tuple(range(a.ndim)), (a.ndim - 1,), (0,)]
        if a.ndim == 3:
            axes_sets.append((2, 0))
        for axes in axes_sets:
            ref = np.sqrt(sum(parts[ax] ** 2 for ax in axes))
            got = K.gradient_magnitude(a, code, axes, MODE_CODES[mode], CVAL)
            assert_matches(got, ref, dtype)


# -- exactness across chunks ------------------------------------------------------------


def _operation(draw, ndim):
    """An operation and its halo (before, after) per axis."""
    kind = draw(st.sampled_from(["correlate1d", "extremum", "correlate", "rank", "median",
                                 "gradient"]))
    mode = draw(st.sampled_from(MODES))
    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    zero = [(0, 0)] * ndim
    if kind in ("correlate1d", "extremum"):
        axis = draw(st.integers(0, ndim - 1))
        taps = draw(st.integers(1, 9))
        halo = list(zero)
        halo[axis] = (taps // 2, taps - 1 - taps // 2)
        if kind == "correlate1d":
            w = gen.standard_normal(taps)
            if draw(st.booleans()):  # symmetric weights take scipy's paired-tap sums
                w = w + w[::-1]
            return (lambda x: K.correlate1d(x, w, axis, MODE_CODES[mode], CVAL)), halo
        maximum = draw(st.booleans())
        return (lambda x: K.extremum_filter1d(x, taps, axis, MODE_CODES[mode], CVAL,
                                              maximum)), halo
    if kind == "gradient":
        axes = tuple(draw(st.sets(st.integers(0, ndim - 1), min_size=1)))
        code = draw(st.integers(0, 1))
        return (lambda x: K.gradient_magnitude(x, code, axes, MODE_CODES[mode], CVAL)), \
            [(1, 1)] * ndim
    if kind == "median":
        fp = np.ones((3,) * ndim, dtype=bool)
        return (lambda x: K.rank_filter(x, fp, fp.size // 2, MODE_CODES[mode], CVAL)), \
            [(1, 1)] * ndim
    fshape = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    halo = [(k // 2, k - 1 - k // 2) for k in fshape]
    if kind == "correlate":
        w = gen.standard_normal(fshape)
        return (lambda x: K.correlate(x, w, MODE_CODES[mode], CVAL)), halo
    fp = gen.random(fshape) < 0.6
    fp.flat[0] = True
    rank = draw(st.integers(0, int(fp.sum()) - 1))
    return (lambda x: K.rank_filter(x, fp, rank, MODE_CODES[mode], CVAL)), halo


@st.composite
def chunk_cases(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 14)) for _ in range(ndim))
    dtype = draw(st.sampled_from(DTYPES))
    op, halo = _operation(draw, ndim)
    # a sub-block whose halo lies inside the array (size-1 blocks included: they change
    # the contiguous/strided layout the kernels pick)
    block = draw_interior_block(draw, shape, halo)
    seed = draw(st.integers(0, 2**16))
    return shape, dtype, op, halo, block, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk_cases())
def test_padded_sub_block_is_bit_identical(case):
    """kernel(full)[block] == kernel(block padded with its true neighbours)[interior]."""
    shape, dtype, op, halo, block, seed = case
    full = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    padded, interior = padded_and_interior(full, block, halo)
    expected = op(full)[tuple(slice(lo, hi) for lo, hi in block)]
    got = op(np.ascontiguousarray(padded))[interior]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_passes_on_big_chunk_are_bit_identical(dtype):
    """Large enough to use several threads, many x blocks and the vector bodies."""
    full = image((20, 33, 70), dtype, "big-chunk")
    w = np.exp(-0.5 * (np.arange(-4, 5) / 1.5) ** 2)
    w /= w.sum()
    for axis in range(3):
        expected = K.correlate1d(full, w, axis, MODE_CODES["reflect"], 0.0)
        sl = [slice(4, 16), slice(5, 28), slice(7, 61)]
        padded_sl = list(sl)
        padded_sl[axis] = slice(sl[axis].start - 4, sl[axis].stop + 4)
        interior = [slice(None)] * 3
        interior[axis] = slice(4, -4)
        got = K.correlate1d(np.ascontiguousarray(full[tuple(padded_sl)]), w, axis,
                            MODE_CODES["reflect"], 0.0)[tuple(interior)]
        np.testing.assert_array_equal(got, expected[tuple(sl)])
    expected = K.gradient_magnitude(full, 0, (0, 1, 2), MODE_CODES["nearest"], 0.0)
    got = K.gradient_magnitude(np.ascontiguousarray(full[2:15, 4:29, 6:60]), 0, (0, 1, 2),
                               MODE_CODES["nearest"], 0.0)[1:-1, 1:-1, 1:-1]
    np.testing.assert_array_equal(got, expected[3:14, 5:28, 7:59])


# -- thread safety ----------------------------------------------------------------------


def test_concurrent_calls_from_threads():
    """Dask calls kernels from several threads at once: no crash, same results."""
    arrays = [image((12, 20, 24), np.float32, "threads", i) for i in range(4)]
    fp = np.ones((3, 3, 3), dtype=bool)
    w = np.array([0.25, 0.5, 0.25])

    def work(x):
        return (K.correlate1d(x, w, 0, MODE_CODES["reflect"], 0.0),
                K.gradient_magnitude(x, 0, (0, 1, 2), MODE_CODES["reflect"], 0.0),
                K.rank_filter(x, fp, 13, MODE_CODES["reflect"], 0.0))

    expected = [work(x) for x in arrays]
    results = run_concurrently(work, arrays)
    for got, exp in zip(results, expected):
        for g, e in zip(got, exp):
            np.testing.assert_array_equal(g, e)


# -- validation -------------------------------------------------------------------------


def test_invalid_arguments_raise_clear_errors():
    a = np.zeros((4, 5), dtype=np.float32)
    with pytest.raises(TypeError, match="image"):
        K.correlate1d(a.astype(np.int32), [1.0], 0, 0, 0.0)
    with pytest.raises(ValueError, match="axis"):
        K.correlate1d(a, [1.0], 2, 0, 0.0)
    with pytest.raises(ValueError, match="weights"):
        K.correlate1d(a, np.ones((2, 2)), 0, 0, 0.0)
    with pytest.raises(ValueError, match="size"):
        K.extremum_filter1d(a, 0, 0, 0, 0.0, True)
    with pytest.raises(ValueError, match="rank"):
        K.rank_filter(a, np.ones((3, 3), bool), 9, 0, 0.0)
    with pytest.raises(ValueError, match="footprint"):
        K.rank_filter(a, np.zeros((3, 3), bool), 0, 0, 0.0)
    with pytest.raises(ValueError, match="dimensions"):
        K.correlate(a, np.ones(3), 0, 0.0)
    with pytest.raises(ValueError, match="axes"):
        K.gradient_magnitude(a, 0, (0, 0), 0, 0.0)
    with pytest.raises(ValueError, match="kind_code"):
        K.gradient_magnitude(a, 2, (0,), 0, 0.0)
