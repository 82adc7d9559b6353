"""How the numba kernels cut and share out their work never changes a bit of the result.

The kernels hand out work blocks on demand (an atomic counter, :func:`_take_block`), and
the fused separable sweep may order its work items z-fastest over blocks of rows sized
for the L2 cache (:func:`_l2_yblock`).  References: the chain of the backend's own
``correlate1d`` passes (which the sweep must reproduce bit for bit, see
test_numba_separable.py) and scipy.ndimage in float64 (float32 rtol 1e-5 with atol
1e-5 * max|ref|: the kernels accumulate in the image dtype, scipy in float64); and for the
thread counts, the same kernel on one thread.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scipy import ndimage as ndi

numba = pytest.importorskip("numba")

from medimg_fast._shared.boundary import MODE_CODES, MODES
from medimg_fast._shared.gaussian import gaussian_kernel1d
from medimg_fast.backends import _numba_kernels as K

CVAL = -0.625


def image(shape, dtype, *key):
    rng = np.random.default_rng(zlib.crc32(repr((shape, dtype, key)).encode()))
    a = rng.standard_normal(shape).astype(dtype)
    a.flat[::53] = 0.0
    a.flat[1::59] = -0.0  # signed zeros must survive every path
    return a


def gaussian(sigma, order=0):
    return gaussian_kernel1d(sigma, order, int(4.0 * sigma + 0.5))


def chain(a, passes, mode):
    for axis, w in passes:
        a = K.correlate1d(a, w, axis, MODE_CODES[mode], CVAL)
    return a


def assert_same_bits(got, expected):
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


def test_take_block_hands_out_each_block_once():
    @numba.njit(parallel=True)
    def claim(counter, owner, n_workers):
        for worker in numba.prange(n_workers):
            while True:
                b = K._take_block(counter)
                if b >= owner.shape[0]:
                    break
                owner[b] += 1

    owner = np.zeros(1000, dtype=np.int64)
    counter = np.zeros(1, dtype=np.int64)
    claim(counter, owner, numba.get_num_threads())
    np.testing.assert_array_equal(owner, 1)
    # each worker stops after one failed take
    assert 1000 <= counter[0] <= 1000 + numba.get_num_threads()


def test_work_queue_covers_every_item():
    for total in (1, 2, 7, 64, 1000):
        block, n_blocks, n_workers, counter = K._work_queue(total, 16)
        assert block * n_blocks >= total > block * (n_blocks - 1)
        assert 1 <= n_workers <= min(n_blocks, numba.get_num_threads())
        assert counter.dtype == np.int64 and counter.tolist() == [0]


def test_l2_blocks_only_when_the_z_window_misses_l2():
    g17 = gaussian(2.0).astype(np.float32)
    g41 = gaussian(5.0).astype(np.float32)
    empty = np.empty(0, np.float32)
    # 17 planes of 256 x 256 float32 = 4.4 MB: blocks of rows, at least twice the halo
    rows = K._l2_yblock(256, 256, [g17, g17, g17], 4)
    assert 32 <= rows < 256
    assert (rows + 16) * 256 * 4 * 17 <= K._L2_WINDOW_BYTES
    # a small plane fits as a whole; no z-pass needs no window; a 41-tap window would
    # leave blocks shorter than their halo
    assert K._l2_yblock(64, 64, [g17, g17, g17], 4) == 0
    assert K._l2_yblock(256, 256, [empty, g17, g17], 4) == 0
    assert K._l2_yblock(256, 256, [g41, g41, g41], 4) == 0


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("mode", MODES)
def test_z_fastest_row_blocks_match_the_chain(dtype, mode):
    """Blocks of rows taken z-fastest (the L2 order), at every block height, with and
    without the y- and x-passes, equal the chain bit for bit."""
    a = image((9, 13, 10), dtype, "z-inner", mode)
    g7, g9, d = gaussian(0.8), gaussian(1.0), gaussian(1.0, 1)
    runs = [[(0, g9), (1, g7), (2, d)], [(0, g7), (1, g9)], [(0, d), (2, g9)]]
    for run in runs:
        expected = chain(a, run, mode)
        for yblock in (1, 3, 4, 13):
            for z_inner in (False, True):
                got = K._sweep(a, run, MODE_CODES[mode], CVAL, yblock=yblock, band=2,
                               z_inner=z_inner)
                assert_same_bits(got, expected)


def test_l2_order_is_taken_on_a_volume_that_needs_it(monkeypatch):
    """Shrink the L2 budget so a small volume takes the blocked z-fastest order by
    default, then compare with the chain and with scipy."""
    monkeypatch.setattr(K, "_L2_WINDOW_BYTES", 40 * 4 * 9 * (24 + 8))  # 24-row blocks
    a = image((12, 48, 40), np.float32, "budget")
    g9 = gaussian(1.0)
    passes = [(0, g9), (1, g9), (2, g9)]
    assert 0 < K._l2_yblock(48, 40, [g9.astype(np.float32)] * 3, 4) < 48
    for mode in MODES:
        got = K.correlate_separable(a, (0, 1, 2), (g9, g9, g9), MODE_CODES[mode], CVAL)
        assert_same_bits(got, chain(a, passes, mode))
        ref = a.astype(np.float64)
        for axis in range(3):
            ref = ndi.correlate1d(ref, g9, axis=axis, mode=mode, cval=CVAL)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


@pytest.mark.parametrize("mode", MODES)
def test_thread_count_never_changes_a_bit(mode):
    a = image((20, 24, 31), np.float32, "threads", mode)
    b = image((40, 37), np.float64, "threads-2d", mode)
    g = gaussian(1.5)
    cases = [
        lambda: K.correlate_separable(a, (0, 1, 2), (g, g, g), MODE_CODES[mode], CVAL),
        lambda: K.correlate1d(a, g, 0, MODE_CODES[mode], CVAL),
        lambda: K.correlate1d(a, g, 2, MODE_CODES[mode], CVAL),
        lambda: K.gradient_magnitude(a, 0, (0, 1, 2), MODE_CODES[mode], CVAL),
        lambda: K.gradient_magnitude(b, 1, (0, 1), MODE_CODES[mode], CVAL),
    ]
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = [case() for case in cases]
    finally:
        numba.set_num_threads(threads)
    for case, expected in zip(cases, single):
        assert_same_bits(case(), expected)
