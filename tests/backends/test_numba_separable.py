"""The fused separable correlation of the numba backend (``correlate_separable``).

Two references: scipy.ndimage (``correlate1d`` passes in float64), and the chain of the
backend's own ``correlate1d`` kernel, which the fused sweep must reproduce bit for bit
(same sums in the same order, each intermediate rounded to the image dtype).  Tolerances
against scipy as in test_numba_kernels.py: float32 rtol 1e-5 with atol 1e-5 * max|ref|,
float64 1e-12 likewise (the kernels accumulate in the image dtype, scipy in float64).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from _mf_testing import draw_interior_block, padded_and_interior, run_concurrently
from scipy import ndimage as ndi

numba = pytest.importorskip("numba")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medimg_fast._shared.boundary import MODE_CODES, MODES
from medimg_fast._shared.gaussian import gaussian_kernel1d
from medimg_fast.backends import _numba_kernels as K

DTYPES = (np.float32, np.float64)
CVAL = 1.75


def rng_for(*key):
    # crc32, not hash(): str hashes change between runs (PYTHONHASHSEED)
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def image(shape, dtype, *key):
    return rng_for(shape, *key).standard_normal(shape).astype(dtype)


def gaussian(sigma, order=0):
    return gaussian_kernel1d(sigma, order, int(4.0 * sigma + 0.5))


def chain(a, axes, weights, mode, cval=CVAL):
    """The unfused reference: one correlate1d kernel call per pass."""
    for axis, w in zip(axes, weights):
        a = K.correlate1d(a, w, axis, MODE_CODES[mode], cval)
    return a


def scipy_chain(a, axes, weights, mode, cval=CVAL):
    a = a.astype(np.float64)
    for axis, w in zip(axes, weights):
        a = ndi.correlate1d(a, w, axis=axis, mode=mode, cval=cval)
    return a


def check(a, axes, weights, mode, cval=CVAL):
    """Fused == chain bit for bit, and close to scipy in float64."""
    got = K.correlate_separable(a, axes, weights, MODE_CODES[mode], cval)
    assert got.dtype == a.dtype and got.shape == a.shape and got is not a
    np.testing.assert_array_equal(got, chain(a, axes, weights, mode, cval))
    ref = scipy_chain(a, axes, weights, mode, cval)
    tol = 1e-5 if a.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, ref, rtol=tol,
                               atol=tol * max(1.0, float(np.abs(ref).max(initial=0.0))))


def weight_sets(ndim, key):
    """Per-axis weights: Gaussians of 17, 9 and 5 taps, a derivative (antisymmetric), a
    general odd and an even-length set, and a single tap."""
    gen = rng_for("weights", ndim, key)
    sets = [
        [gaussian(2.0), gaussian(1.0), np.full(5, 0.2)][:ndim],
        [gaussian(1.0, 1), gaussian(2.0), gaussian(0.7, 2)][:ndim],
        [gen.standard_normal(7), gen.standard_normal(4), gen.standard_normal(3)][:ndim],
        [np.array([2.5]), gaussian(2.0), np.array([-1.0, 0.0, 1.0])][:ndim],
    ]
    return sets


# -- against the chain and scipy --------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_all_axes_match_chain_and_scipy(dtype, mode):
    # tiny axes (1, 2, 3 voxels) are far shorter than a 17-tap kernel: the extension
    # folds over several times, and every pass must extend its own input
    shapes = [(11,), (1, 9), (3, 2), (9, 12), (1, 2, 3), (3, 1, 2), (2, 3, 17), (6, 7, 9)]
    for shape in shapes:
        a = image(shape, dtype, "all-axes")
        for weights in weight_sets(a.ndim, mode):
            check(a, tuple(range(a.ndim)), weights, mode)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_axis_subsets_and_orders(dtype, mode):
    a = image((5, 6, 13), dtype, "subsets")
    g17, g9, d = gaussian(2.0), gaussian(1.0), gaussian(1.0, 1)
    cases = [
        ((1, 2), (g9, g17)),         # in-plane only: no z-pass
        ((0, 2), (g17, d)),          # no y-pass
        ((0, 1), (g9, g17)),         # no x-pass: y-pass writes the output
        ((2,), (g17,)),              # one pass: plain correlate1d
        ((2, 1, 0), (g9, g17, d)),   # descending: three separate passes
        ((1, 2, 0), (g9, d, g17)),   # a fused run, then a z-pass
        ((0, 1, 2, 0, 1, 2), (g9, g9, g9, d, d, d)),  # two fused runs
        ((-3, -1), (g9, g17)),       # negative axes
    ]
    for axes, weights in cases:
        check(a, axes, weights, mode)
    b = image((7, 10), dtype, "subsets-2d")
    for axes, weights in [((0, 1), (g17, d)), ((1, 0), (g9, g17)), ((1,), (g9,))]:
        check(b, axes, weights, mode)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_every_work_split_gives_the_same_bits(dtype, mode):
    """Whole planes, blocks of rows with a z halo ("local" planes), and bands of every
    height, including ones that cut through the y halo at the faces."""
    a = image((4, 11, 9), dtype, "split")
    passes = [(0, gaussian(1.0)), (1, gaussian(1.3)), (2, gaussian(1.0, 1))]
    for sub in ([0, 1, 2], [0, 1], [1, 2], [0, 2]):
        run = [passes[i] for i in sub]
        expected = chain(a, [p[0] for p in run], [p[1] for p in run], mode)
        for yblock in (1, 2, 5, 11):
            for band in (1, 3, 16):
                got = K._sweep(a, run, MODE_CODES[mode], CVAL, yblock=yblock, band=band)
                np.testing.assert_array_equal(got, expected)


def dilated(w, step):
    """``w`` with ``step - 1`` zeros between taps (an a trous wavelet level)."""
    out = np.zeros((len(w) - 1) * step + 1)
    out[::step] = w
    return out


# general kernels with zero taps: dilated ones, an even-length kernel made odd with a zero
# first (the wavelet taps) or last tap, a zero last tap among others, a single non-zero tap
ZERO_TAP_KERNELS = [
    dilated([0.48, 0.84, 0.22, -0.13], 2),
    dilated([-0.13, -0.22, 0.84, -0.48], 4),
    np.array([0.0, 0.48, 0.84, 0.22, -0.13]),
    np.array([0.48, 0.84, 0.22, -0.13, 0.0]),
    np.array([0.3, 0.0, -1.2, 0.7, 0.0]),
    np.array([0.0, 0.0, 0.0, 1.5, 0.0]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_zero_taps_are_skipped_bit_for_bit(dtype, mode):
    """The sweep drops the zero taps of general kernels (see ``_compact_taps``) and still
    adds the others in correlate1d's order: bit for bit the chain, on every work split."""
    a = image((6, 13, 11), dtype, "zero-taps")
    k = ZERO_TAP_KERNELS
    for weights in [(k[0], k[1], k[2]), (k[3], k[4], k[5]), (k[1], k[5], k[0]),
                    (k[4], k[2], k[3])]:
        check(a, (0, 1, 2), weights, mode)
        expected = chain(a, (0, 1, 2), weights, mode)
        for yblock, band in [(1, 1), (4, 3), (13, 16)]:
            got = K._sweep(a, list(zip((0, 1, 2), weights)), MODE_CODES[mode], CVAL,
                           yblock=yblock, band=band)
            np.testing.assert_array_equal(got, expected)
    check(a[0], (0, 1), (k[1], k[4]), mode)


def test_compact_taps_order_and_positions():
    taps, positions, symmetry = K._compact_taps(np.array([0.3, 0.0, -1.2, 0.7, 0.0]),
                                                np.float64)
    # the full sum starts from the zero last tap, so the kept taps start from the first
    np.testing.assert_array_equal(positions, [2, 3, 0])
    np.testing.assert_array_equal(taps, [-1.2, 0.7, 0.3])
    assert symmetry == 0
    taps, positions, _ = K._compact_taps(dilated([1.0, 2.0, 3.0, 4.0], 2), np.float32)
    np.testing.assert_array_equal(positions, [0, 2, 4, 6])
    assert taps.dtype == np.float32
    # symmetric and antisymmetric kernels keep every tap (their paired sums need them)
    for w in (np.array([1.0, 0.0, 2.0, 0.0, 1.0]), np.array([-1.0, 0.0, 0.0, 0.0, 1.0])):
        taps, positions, symmetry = K._compact_taps(w, np.float64)
        assert symmetry != 0 and positions.size == 5
    taps, positions, symmetry = K._compact_taps(np.array([0.0, 0.0, 2.0, 0.0]), np.float64)
    assert positions.tolist() == [2] and symmetry == 1


def test_nan_under_a_zero_tap_does_not_spread():
    a = image((5, 9, 10), np.float64, "nan")
    a[2, 4, 5] = np.nan
    w = dilated([0.48, 0.84, 0.22, -0.13], 2)  # taps at -3, -1, +1, +3
    got = K._sweep(a, [(2, w)], MODE_CODES["mirror"], 0.0)
    assert np.isnan(got[2, 4]).tolist() == [x in (2, 4, 6, 8) for x in range(10)]


def test_chained_sweeps_reuse_scratch_but_never_share_outputs():
    """Two or three fused runs keep their intermediates for the next call on the thread
    (``_Scratch``); every output stays a new array, equal to the chain."""
    g9, d = gaussian(1.0), gaussian(1.0, 1)
    axes, weights = (0, 1, 2, 0, 1, 2, 0, 1, 2), (g9, g9, g9, d, d, d, g9, d, g9)
    results = []
    for shape in [(6, 7, 9), (6, 7, 9), (5, 8, 9), (6, 7, 9)]:
        for n in (6, 9):
            a = image(shape, np.float32, "scratch", n)
            got = K.correlate_separable(a, axes[:n], weights[:n], MODE_CODES["mirror"], 0.0)
            expected = chain(a, axes[:n], weights[:n], "mirror", 0.0)
            np.testing.assert_array_equal(got, expected)
            results.append((got, got.copy()))
    for got, copy in results:  # no later call wrote into an earlier output
        np.testing.assert_array_equal(got, copy)
    assert len({id(g) for g, _ in results}) == len(results)
    kept = K._scratch_local.arrays
    assert 1 <= len(kept) <= 2 and sum(k.nbytes for k in kept) <= K._SCRATCH_BYTES


def test_constant_mode_extends_each_pass_with_cval():
    """scipy's rule: the y-pass sees ``cval`` outside the z-pass's result, not the z-pass
    of ``cval``; with weights that do not sum to 1 the two differ."""
    a = np.zeros((3, 4, 5), dtype=np.float64)
    w = np.array([1.0, 1.0, 1.0])
    got = K.correlate_separable(a, (0, 1, 2), (w, w, w), MODE_CODES["constant"], 1.0)
    ref = scipy_chain(a, (0, 1, 2), (w, w, w), "constant", 1.0)
    np.testing.assert_array_equal(got, ref)
    # at the corner: z-pass gives 1 (one cval plane), y-pass 1 + 1 + cval, x-pass ...
    assert got[0, 0, 0] == 3.0 + 3.0 + 1.0


def test_float32_in_float32_out_input_untouched_and_empty():
    a = image((4, 5, 6), np.float32, "untouched")
    before = a.copy()
    out = K.correlate_separable(a, (0, 1, 2), (gaussian(1.0),) * 3, MODE_CODES["reflect"],
                                0.0)
    assert out.dtype == np.float32 and out is not a
    np.testing.assert_array_equal(a, before)
    # no passes: a copy
    same = K.correlate_separable(a, (), (), MODE_CODES["reflect"], 0.0)
    assert same is not a
    np.testing.assert_array_equal(same, a)
    empty = np.zeros((0, 4, 5), dtype=np.float64)
    assert K.correlate_separable(empty, (0, 1), (gaussian(1.0),) * 2, 0, 0.0).shape == \
        (0, 4, 5)
    # non-contiguous input is accepted (copied to C order first)
    view = image((6, 8, 10), np.float64, "strided")[:, ::2, 1:]
    check(view, (0, 1, 2), (gaussian(1.0),) * 3, "mirror")


def test_four_dimensional_images_fall_back_to_passes():
    a = image((2, 3, 4, 5), np.float32, "4d")
    check(a, (0, 1, 2, 3), (gaussian(1.0),) * 4, "nearest")


# -- exactness across chunks ------------------------------------------------------------


@st.composite
def chunk_cases(draw):
    ndim = draw(st.integers(2, 3))
    shape = tuple(draw(st.integers(1, 16)) for _ in range(ndim))
    dtype = draw(st.sampled_from(DTYPES))
    mode = draw(st.sampled_from(MODES))
    axes = tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=2))))
    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    weights = []
    halo = [(0, 0)] * ndim
    for axis in axes:
        taps = draw(st.integers(1, 9))
        w = gen.standard_normal(taps)
        kind = draw(st.sampled_from(["general", "symmetric", "antisymmetric"]))
        if kind == "symmetric":
            w = w + w[::-1]
        elif kind == "antisymmetric" and taps % 2:
            w = w - w[::-1]
        weights.append(w)
        halo[axis] = (taps // 2, taps - 1 - taps // 2)
    block = draw_interior_block(draw, shape, halo)
    split = draw(st.sampled_from([None, (1, 1), (2, 3), (5, 2)]))
    seed = draw(st.integers(0, 2**16))
    return shape, dtype, mode, axes, weights, halo, block, split, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk_cases())
def test_padded_sub_block_is_bit_identical(case):
    """sweep(full)[block] == sweep(block padded with its true neighbours)[interior], for
    any way of cutting the work (whole planes, row blocks, bands)."""
    shape, dtype, mode, axes, weights, halo, block, split, seed = case
    full = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    padded, interior = padded_and_interior(full, block, halo)
    yblock, band = split if split else (None, None)
    passes = list(zip(axes, [np.asarray(w, dtype=np.float64) for w in weights]))

    def run(x, yb, bd):
        return K._sweep(np.ascontiguousarray(x), passes, MODE_CODES[mode], CVAL, yblock=yb,
                        band=bd)

    expected = run(full, None, None)[tuple(slice(lo, hi) for lo, hi in block)]
    np.testing.assert_array_equal(run(padded, yblock, band)[interior], expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reflect_padded_chunks_of_a_big_volume_are_bit_identical(dtype):
    """As the Dask layer runs it: chunks cut through the volume, padded with the true
    neighbours (reflect-padded at the faces); large enough for several threads, many
    bands and the vector bodies, with a 17-tap Gaussian."""
    full = image((24, 40, 70), dtype, "big-chunk")
    w = (gaussian(2.0), gaussian(1.0), gaussian(2.0, 1))
    halo = [len(x) // 2 for x in w]
    expected = K.correlate_separable(full, (0, 1, 2), w, MODE_CODES["reflect"], 0.0)
    np.testing.assert_array_equal(expected, chain(full, (0, 1, 2), w, "reflect", 0.0))
    padded_full = np.pad(full, [(h, h) for h in halo], mode="symmetric")  # scipy reflect
    for lo, hi in [((0, 0, 0), (12, 20, 35)), ((12, 20, 35), (24, 40, 70)),
                   ((5, 13, 1), (19, 27, 69))]:
        chunk = padded_full[tuple(slice(a, b + 2 * h) for a, b, h in zip(lo, hi, halo))]
        got = K.correlate_separable(np.ascontiguousarray(chunk), (0, 1, 2), w,
                                    MODE_CODES["reflect"], 0.0)
        interior = tuple(slice(h, h + b - a) for a, b, h in zip(lo, hi, halo))
        np.testing.assert_array_equal(got[interior],
                                      expected[tuple(slice(a, b) for a, b in zip(lo, hi))])


# -- thread safety ----------------------------------------------------------------------


def test_concurrent_calls_from_threads():
    """Dask calls kernels from several threads at once: no crash, same results."""
    arrays = [image((12, 20, 24), np.float32, "threads", i) for i in range(4)]
    w = (gaussian(2.0), gaussian(1.0), gaussian(1.0, 1))

    def work(x):
        return K.correlate_separable(x, (0, 1, 2), w, MODE_CODES["reflect"], 0.0)

    expected = [work(x) for x in arrays]
    results = run_concurrently(work, arrays)
    for got, exp in zip(results, expected):
        np.testing.assert_array_equal(got, exp)


# -- the backend uses it ----------------------------------------------------------------


def test_numba_backend_gaussian_matches_scipy():
    from medimg_fast.backends import resolve_backend

    backend = resolve_backend("numba")
    a = image((10, 12, 14), np.float32, "backend")
    passes = [(ax, gaussian(1.5)) for ax in range(3)]
    got = backend.correlate_separable(a, passes, "constant", CVAL)
    ref = ndi.gaussian_filter(a.astype(np.float64), 1.5, mode="constant", cval=CVAL)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    np.testing.assert_array_equal(got, chain(a, range(3), [p[1] for p in passes],
                                             "constant"))


# -- validation -------------------------------------------------------------------------


def test_invalid_arguments_raise_clear_errors():
    a = np.zeros((4, 5), dtype=np.float32)
    w = np.ones(3)
    with pytest.raises(TypeError, match="image"):
        K.correlate_separable(a.astype(np.int32), (0,), (w,), 0, 0.0)
    with pytest.raises(ValueError, match="axes"):
        K.correlate_separable(a, (0, 2), (w, w), 0, 0.0)
    with pytest.raises(ValueError, match="axes"):
        K.correlate_separable(a, (0.5,), (w,), 0, 0.0)
    with pytest.raises(ValueError, match="same length"):
        K.correlate_separable(a, (0, 1), (w,), 0, 0.0)
    with pytest.raises(ValueError, match="weights"):
        K.correlate_separable(a, (0,), (np.ones((2, 2)),), 0, 0.0)
    with pytest.raises(ValueError, match="weights"):
        K.correlate_separable(a, (0,), (np.ones(0),), 0, 0.0)
