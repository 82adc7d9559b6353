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


def draw_kernel(draw, gen, max_taps, kinds):
    """A random 1-D kernel of 1 .. ``max_taps`` taps of one of ``kinds``: general,
    symmetric, antisymmetric (odd lengths; even ones stay general) or general with
    about half its taps zero."""
    taps = draw(st.integers(1, max_taps))
    w = gen.standard_normal(taps)
    kind = draw(st.sampled_from(kinds))
    if kind == "symmetric":
        w = w + w[::-1]
    elif kind == "antisymmetric" and taps % 2:
        w = w - w[::-1]
    elif kind == "zeros":
        w[gen.random(taps) < 0.5] = 0.0
    return w


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
        w = draw_kernel(draw, gen, 9, ["general", "symmetric", "antisymmetric"])
        weights.append(w)
        halo[axis] = (w.size // 2, w.size - 1 - w.size // 2)
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


# -- x tiles (the z window in L2 at large plane sizes) ----------------------------------


def assert_same_bits(got, expected):
    """Equal bit for bit, NaN where the reference has NaN (and nowhere else)."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.array_equal(got, expected, equal_nan=True)


def tiled(a, run, mode, xtile, yblock=None, band=None, zchunk=None, cval=CVAL):
    return K._sweep(a, run, MODE_CODES[mode], cval, yblock=yblock, band=band, xtile=xtile,
                    zchunk=zchunk)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_z_pass_of_two_planes_equals_two_passes_of_one(dtype):
    """The two-plane band (the tiled sweep's z-pass of a symmetric kernel): each output
    equals, bit for bit, the one-plane band over its own window of the same inputs,
    for kernels of 1 to 21 taps (every group size of 1-4 pairs), inputs outside the
    image (offset -1: cval), NaN and infinities among them."""
    rng = np.random.default_rng(7)
    n = 37
    for taps in range(1, 22, 2):
        half = rng.uniform(0.1, 1.0, taps // 2 + 1)
        w = np.concatenate([half[:0:-1], half]).astype(dtype)  # symmetric
        assert K._symmetry(w.astype(np.float64)) == 1
        flat = rng.standard_normal((taps + 1) * n + 5).astype(dtype)
        flat[[3, n + 4, 2 * n]] = [np.nan, np.inf, -np.inf]
        cval_flat = np.full(n, 0.25, dtype)
        offsets = (np.arange(taps + 1) * n + 2).astype(np.int64)
        offsets[rng.random(taps + 1) < 0.2] = -1
        d0 = np.empty(n, dtype)
        d1 = np.empty(n, dtype)
        K._correlate_band_two(d0, d1, flat, cval_flat, offsets, w)
        e0 = np.empty(n, dtype)
        e1 = np.empty(n, dtype)
        K._correlate_band(e0, flat, cval_flat, offsets[:taps].copy(), w, 1)
        K._correlate_band(e1, flat, cval_flat, offsets[1:].copy(), w, 1)
        assert_same_bits(d0, e0)
        assert_same_bits(d1, e1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_x_tiles_give_the_same_bits(dtype, mode):
    """Work items of (x tile, z chunk), y blocks in order with the y halo carried from
    the block before, z fastest: tiles of one column, narrower than the x halo (8 and 4
    columns here), ragged last tiles (23 = 5 + 5 + 5 + 5 + 3), one tile of the whole
    row; blocks shorter than the y halo; chunks of one plane, ragged, or all planes; with
    and without each pass; against the chain, bit for bit."""
    a = image((7, 19, 23), dtype, "x-tiles", mode)
    g17, g9, d = gaussian(2.0), gaussian(1.0), gaussian(1.0, 1)
    passes = [(0, g9), (1, g17), (2, g17)]
    for sub in ([0, 1, 2], [0, 2], [0, 1], [1, 2], [0]):
        run = [passes[i] for i in sub]
        expected = chain(a, [p[0] for p in run], [p[1] for p in run], mode)
        for xtile in (1, 3, 5, 8, 22, 23):
            for yblock, band, zchunk in [(None, None, None), (1, 1, 2), (4, 3, 1),
                                         (19, 64, 3), (7, 2, 7)]:
                assert_same_bits(tiled(a, run, mode, xtile, yblock, band, zchunk), expected)
    # an antisymmetric x-pass and a general one with zero taps (_compact_taps)
    for run in ([(0, g17), (1, d), (2, d)],
                [(0, ZERO_TAP_KERNELS[0]), (1, g9), (2, ZERO_TAP_KERNELS[3])]):
        expected = chain(a, [p[0] for p in run], [p[1] for p in run], mode)
        for xtile, yblock, zchunk in [(2, 3, 1), (6, 19, 4), (10, 1, 7)]:
            assert_same_bits(tiled(a, run, mode, xtile, yblock, 2, zchunk), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_x_tiles_of_gaussians_up_to_sigma_5(dtype, mode):
    """41-tap kernels on axes shorter than the kernel (the extension folds over), with
    the untiled sweep, the chain and scipy as references."""
    for shape in [(5, 30, 37), (45, 12, 50)]:
        a = image(shape, dtype, "x-tiles-sigma", mode)
        for sigma in (1.0, 3.0, 5.0):
            run = [(axis, gaussian(sigma)) for axis in range(3)]
            expected = chain(a, range(3), [w for _, w in run], mode)
            assert_same_bits(K._sweep(a, run, MODE_CODES[mode], CVAL), expected)
            for xtile, yblock, zchunk in [(7, 5, 2), (16, 30, None), (36, 2, 11),
                                          (50, 3, 1)]:
                assert_same_bits(tiled(a, run, mode, xtile, yblock, None, zchunk), expected)
    ref = scipy_chain(a, range(3), [w for _, w in run], mode)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(tiled(a, run, mode, 9, 4), ref, rtol=tol,
                               atol=tol * float(np.abs(ref).max()))


@pytest.mark.parametrize("mode", MODES)
def test_x_tiles_equal_scipy_gaussian_filter_in_float64(mode):
    """scipy.ndimage.gaussian_filter (float64) itself, bit for bit, where the sweep
    matches it today (sigma <= 2: same weights, same sums)."""
    a = image((10, 21, 26), np.float64, "scipy-bits", mode)
    for sigma in (1.0, 2.0):
        ref = ndi.gaussian_filter(a, sigma, mode=mode, cval=CVAL)
        run = [(axis, gaussian(sigma)) for axis in range(3)]
        for xtile, yblock, zchunk in [(4, 3, 3), (11, 21, 10), (26, 8, 1)]:
            assert_same_bits(tiled(a, run, mode, xtile, yblock, None, zchunk), ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_x_tiles_keep_nan_positions(dtype, mode):
    a = image((8, 15, 21), dtype, "x-tiles-nan", mode)
    a[0, 0, 0] = a[3, 7, 20] = a[7, 14, 10] = np.nan
    a[5, 2, 3] = np.inf
    run = [(0, gaussian(1.0)), (1, gaussian(1.5)), (2, gaussian(2.0))]
    expected = chain(a, range(3), [w for _, w in run], mode)
    assert np.isnan(expected).any() and not np.isnan(expected).all()
    for xtile, yblock, zchunk in [(1, 4, 3), (6, 15, 8), (9, 2, 1)]:
        assert_same_bits(tiled(a, run, mode, xtile, yblock, 3, zchunk), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_x_tiles_of_a_2d_image(dtype, mode):
    """No z-pass: the tiled sweep copies the rows of the plane (an identity z-pass)."""
    a = image((17, 29), dtype, "x-tiles-2d", mode)
    for run in ([(0, gaussian(2.0)), (1, gaussian(1.0))], [(0, gaussian(1.0, 1)),
                                                             (1, gaussian(2.0, 2))]):
        expected = chain(a, [p[0] for p in run], [p[1] for p in run], mode)
        for xtile, yblock in [(1, 1), (4, 17), (13, 5), (29, 3)]:
            assert_same_bits(tiled(a, run, mode, xtile, yblock, 2), expected)


def test_x_tile_geometry():
    """Local rows: the tile's columns with its x halo inside the row, then the columns
    the x extension copies from elsewhere (wrap: the far end of the row)."""
    tiles, runs, emap = K._x_tiles(20, 6, 5, MODE_CODES["wrap"])
    assert tiles[:, :2].tolist() == [[0, 6], [6, 12], [12, 18], [18, 20]]
    # tile 0: columns 0..7, then 18, 19 for the extended positions -2, -1
    x0, x1, width, r0, r1, lpad, inside, e0 = tiles[0]
    assert (width, lpad, inside) == (10, 2, 8)
    assert runs[r0:r1].tolist() == [[0, 8, 0], [18, 2, 8]]
    assert emap[e0:e0 + x1 - x0 + 4].tolist() == [8, 9] + list(range(8))
    # an inner tile reads its halo from the row itself
    x0, x1, width, r0, r1, lpad, inside, e0 = tiles[1]
    assert (width, lpad, inside) == (10, 0, 10) and runs[r0:r1].tolist() == [[4, 10, 0]]
    # a row shorter than the halo: the extension folds over the whole row
    tiles, runs, emap = K._x_tiles(3, 1, 17, MODE_CODES["reflect"])
    assert tiles[:, 2].tolist() == [3, 3, 3]
    assert set(emap.tolist()) == {0, 1, 2}
    tiles, runs, emap = K._x_tiles(9, 4, 3, MODE_CODES["constant"])
    assert emap[tiles[0, 7]] == -1 and tiles[0, 2] == 5


@st.composite
def tile_cases(draw):
    ndim = draw(st.integers(2, 3))
    shape = tuple(draw(st.integers(1, 14)) for _ in range(ndim))
    dtype = draw(st.sampled_from(DTYPES))
    mode = draw(st.sampled_from(MODES))
    axes = tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1))))
    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    weights = []
    for _ in axes:
        weights.append(draw_kernel(draw, gen, 11,
                                   ["general", "symmetric", "antisymmetric", "zeros"]))
    xtile = draw(st.integers(1, shape[-1]))
    yblock = draw(st.one_of(st.none(), st.integers(1, shape[-2])))
    band = draw(st.one_of(st.none(), st.integers(1, 5)))
    zchunk = draw(st.one_of(st.none(), st.integers(1, shape[0])))
    seed = draw(st.integers(0, 2**16))
    return shape, dtype, mode, axes, weights, xtile, yblock, band, zchunk, seed


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tile_cases())
def test_x_tiles_property(case):
    """Any shape, kernels, tile width, block height, band and z chunk: the tiled sweep
    equals the chain and the untiled sweep bit for bit."""
    shape, dtype, mode, axes, weights, xtile, yblock, band, zchunk, seed = case
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    run = list(zip(axes, [np.asarray(w, dtype=np.float64) for w in weights]))
    expected = chain(a, axes, weights, mode)
    assert_same_bits(K._sweep(a, run, MODE_CODES[mode], CVAL, yblock=yblock, band=band),
                     expected)
    assert_same_bits(tiled(a, run, mode, xtile, yblock, band, zchunk), expected)


def test_tiles_are_chosen_for_large_planes_and_fit_the_budget():
    """Every Gaussian up to sigma 5, float32 and float64: planes of 512^2 and 1024^2 get
    tiles whose z window (the ring of input rows) fits the L2 budget."""
    for dtype in DTYPES:
        itemsize = np.dtype(dtype).itemsize
        for sigma in (2.0, 3.0, 4.0, 5.0):
            g = gaussian(sigma).astype(dtype)
            for n in (512, 1024):
                yblock, xtile = K._l2_tiles(n, n, [g, g, g], g.size, itemsize)
                local = min(n, xtile + g.size - 1)
                assert 8 <= yblock < n and 64 <= xtile <= n
                assert g.size * yblock * local * itemsize <= K._L2_TILE_BYTES
                # two planes per z-pass: the ring holds one input plane more
                yblock, xtile = K._l2_tiles(n, n, [g, g, g], g.size, itemsize,
                                            two_planes=True)
                local = min(n, xtile + g.size - 1)
                assert 8 <= yblock < n and 64 <= xtile <= n
                assert (g.size + 1) * yblock * local * itemsize <= K._L2_TILE_BYTES
    # where blocks of whole rows keep the window in L2, only a z-pass of two planes at a
    # time takes tiles, and only where the blocks would recompute much of their y halo
    g = gaussian(2.0).astype(np.float32)
    assert K._l2_yblock(256, 256, [g, g, g], 4) > 0
    assert K._l2_tiles(256, 256, [g, g, g], g.size, 4) is None
    assert K._l2_tiles(256, 256, [g, g, g], g.size, 4, two_planes=True) is not None
    box = np.full(5, 0.2, np.float32)  # uniform 5: blocks of 196 rows, a halo of 4
    assert K._l2_yblock(256, 256, [box, box, box], 4) > 0
    assert K._l2_tiles(256, 256, [box, box, box], 5, 4, two_planes=True) is None
    # a z window that fits L2 as it is: no tiles
    g = gaussian(1.0).astype(np.float32)
    assert K._l2_tiles(64, 64, [g, g, g], g.size, 4) is None
    assert K._l2_tiles(512, 512, [np.empty(0), g, g], 0, 4) is None
    # chunks of z: a multiple of the thread count, long where there are planes to spare
    threads = numba.get_num_threads()
    for nz, n_xtiles, kz in [(512, 1, 17), (160, 1, 41), (7, 3, 9), (1, 1, 5)]:
        zchunk = K._tile_zchunk(nz, n_xtiles, kz)
        assert 1 <= zchunk <= max(nz, 1)
        if nz >= 8 * threads * 2 * kz:
            assert -(-nz // zchunk) * n_xtiles >= 4 * threads


@pytest.mark.parametrize("mode", MODES)
def test_a_small_budget_takes_the_tiled_sweep_by_default(monkeypatch, mode):
    """Shrink the L2 budgets so a small volume takes tiles by default; the public
    gaussian_filter then still equals scipy's (float64, bit for bit) and the chain."""
    from medimg_fast import filters

    monkeypatch.setattr(K, "_L2_WINDOW_BYTES", 4096)
    monkeypatch.setattr(K, "_L2_TILE_BYTES", 9 * 90 * 8 * 12)  # 12-row blocks of whole rows
    a = image((16, 40, 90), np.float64, "small-budget", mode)
    g = gaussian(1.0)
    choice = K._l2_tiles(40, 90, [g, g, g], g.size, 8)
    assert choice == (12, 90)
    ref = ndi.gaussian_filter(a, 1.0, mode=mode, cval=CVAL)
    got = filters.gaussian_filter(a, 1.0, mode=mode, cval=CVAL, backend="numba")
    assert_same_bits(got, ref)
    b = a.astype(np.float32)
    got = K.correlate_separable(b, (0, 1, 2), (g, g, g), MODE_CODES[mode], CVAL)
    assert_same_bits(got, chain(b, (0, 1, 2), (g, g, g), mode))
