"""The fused Sobel/Prewitt gradient magnitude of the numba backend, bit for bit.

The kernel reuses per-column intermediates between consecutive output rows (a ring of
window columns), so the shapes here make work blocks start mid-plane, planes of one and
two rows, and thin axes of sizes 1, 2, 3.  References, exact to the last bit:

* float64: ``scipy.ndimage.sobel`` / ``prewitt`` per axis, squared and summed in axis
  order from zeros, then ``np.sqrt`` (scipy evaluates the same sums in float64);
* float32: the chain of the backend's separate 1-D ``correlate1d`` passes (``[-1, 0, 1]``
  along the axis, ``[1, s, 1]`` along the others in increasing order, each accumulating
  in float32), combined the same way in float32 by NumPy.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
from scipy import ndimage as ndi

numba = pytest.importorskip("numba")

from medimg_fast._shared.boundary import MODE_CODES, MODES
from medimg_fast.backends import _numba_kernels as K

SHAPES_3D = [(1, 1, 1), (1, 2, 3), (3, 2, 1), (2, 3, 5), (5, 1, 4), (3, 3, 3), (6, 5, 17),
             (9, 13, 33), (17, 3, 2), (23, 29, 31)]
SHAPES_2D = [(1, 1), (1, 5), (5, 1), (2, 2), (3, 7), (7, 3), (13, 33), (67, 45)]
MODE_CVALS = [(mode, 0.0) for mode in MODES if mode != "constant"] + \
    [("constant", 0.0), ("constant", -2.5)]
KINDS = [(0, ndi.sobel, 2.0), (1, ndi.prewitt, 1.0)]


def image(shape, dtype, *key):
    rng = np.random.default_rng(zlib.crc32(repr((shape, np.dtype(dtype).str, key)).encode()))
    a = (8.0 * rng.standard_normal(shape)).astype(dtype)
    a.flat[::7] = 0.0
    a.flat[1::11] = -0.0
    return a


def axis_subsets(ndim):
    return [c for r in range(ndim + 1) for c in itertools.combinations(range(ndim), r)]


def magnitude(parts, axes, dtype):
    total = np.zeros(parts[0].shape, dtype=dtype)
    for axis in sorted(axes):
        total = total + parts[axis] * parts[axis]
    return np.sqrt(total)


def assert_same_bits(got, expected):
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


def correlate1d_chain(a, axis, s, mode, cval):
    d = K.correlate1d(a, np.array([-1.0, 0.0, 1.0]), axis, MODE_CODES[mode], cval)
    for other in range(a.ndim):
        if other != axis:
            d = K.correlate1d(d, np.array([1.0, s, 1.0]), other, MODE_CODES[mode], cval)
    return d


@pytest.mark.parametrize("mode,cval", MODE_CVALS)
@pytest.mark.parametrize("kind,derivative,s", KINDS)
def test_float64_equals_scipy_bit_for_bit(mode, cval, kind, derivative, s):
    for shape in SHAPES_3D + SHAPES_2D:
        a = image(shape, np.float64, "f64")
        parts = [derivative(a, axis=ax, mode=mode, cval=cval) for ax in range(a.ndim)]
        for axes in axis_subsets(a.ndim):
            got = K.gradient_magnitude(a, kind, axes, MODE_CODES[mode], cval)
            assert_same_bits(got, magnitude(parts, axes, np.float64))


@pytest.mark.parametrize("mode,cval", MODE_CVALS)
@pytest.mark.parametrize("kind,derivative,s", KINDS)
def test_float32_equals_chain_of_1d_passes_bit_for_bit(mode, cval, kind, derivative, s):
    for shape in SHAPES_3D + SHAPES_2D:
        a = image(shape, np.float32, "f32")
        parts = [correlate1d_chain(a, ax, s, mode, cval) for ax in range(a.ndim)]
        for axes in axis_subsets(a.ndim):
            got = K.gradient_magnitude(a, kind, axes, MODE_CODES[mode], cval)
            assert_same_bits(got, magnitude(parts, axes, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_and_non_finite_inputs(dtype):
    """Views are read as their contiguous copies.  The references take ``0 * x`` for the
    derivative's centre tap (nan at an inf, where the kernel's ``c - a`` is not), so they
    are compared on finite values only."""
    finite = image((12, 14, 20), dtype, "views")
    special = finite.copy()
    special[3, 4, 5] = np.inf
    special[7, 1, 2] = np.nan
    special[9, 9, 9] = -np.inf
    for base in (finite, special):
        views = [base[::2, 1::3, ::-1], base.transpose(2, 0, 1), base[..., 3],
                 base[2:9, 3:4, 5:]]
        for view in views:
            contiguous = np.ascontiguousarray(view)
            axes = tuple(range(view.ndim))
            for (mode, cval), (kind, derivative, s) in itertools.product(MODE_CVALS, KINDS):
                got = K.gradient_magnitude(view, kind, axes, MODE_CODES[mode], cval)
                if base is finite:
                    parts = [derivative(contiguous.astype(np.float64), axis=ax, mode=mode,
                                        cval=cval) for ax in axes]
                    if dtype == np.float32:
                        parts = [correlate1d_chain(contiguous, ax, s, mode, cval)
                                 for ax in axes]
                    assert_same_bits(got, magnitude(parts, axes, dtype))
                else:
                    expected = K.gradient_magnitude(contiguous, kind, axes, MODE_CODES[mode],
                                                    cval)
                    assert_same_bits(got, expected)
                    assert np.isfinite(got).all() == np.isfinite(view).all()


@pytest.mark.parametrize("shape", [(40, 37, 70), (3, 101, 9), (300, 41)])
def test_any_thread_count_and_block_split(shape):
    """Work blocks of any size, starting anywhere in a plane, give the same bits."""
    a = image(shape, np.float32, "blocks")
    mode = MODE_CODES["constant"]
    axes = tuple(range(a.ndim))
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = K.gradient_magnitude(a, 0, axes, mode, 1.5)
    finally:
        numba.set_num_threads(threads)
    assert_same_bits(K.gradient_magnitude(a, 0, axes, mode, 1.5), single)
    parts = [correlate1d_chain(a, ax, 2.0, "constant", 1.5) for ax in axes]
    assert_same_bits(single, magnitude(parts, axes, np.float32))
