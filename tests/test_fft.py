"""medimg_fast._fft (ducc0-backed transforms) against scipy.fft and numpy.fft.

Tolerances: float64 results agree with pocketfft to ~1e-13 of the data's scale (both are
exact to rounding, in different orders of operations); float32 ones to ~1e-5 of it, the
single-precision rounding of sums over up to ~1e3 terms, against a float64 reference.
"""
import os

import numpy as np
import pytest
import scipy.fft

from medimg_fast import _fft

SHAPES_AXES = [
    ((17,), (0,)),
    ((16,), (0,)),
    ((9, 12), (0, 1)),
    ((10, 7), (1,)),
    ((8, 11, 6), (0, 1, 2)),
    ((7, 9, 13), (1, 2)),
    ((6, 5, 4), (2, 0)),
    ((5, 6, 7), (0,)),
]


def _tol(dtype, ref):
    scale = float(np.abs(ref).max()) or 1.0
    return (1e-13 if dtype == np.float64 else 2e-5) * scale


@pytest.fixture
def rng():
    return np.random.default_rng(20261201)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axes"), SHAPES_AXES)
def test_rfftn_matches_scipy(rng, dtype, shape, axes):
    x = rng.standard_normal(shape).astype(dtype)
    ref = scipy.fft.rfftn(x.astype(np.float64), axes=axes)
    got = _fft.rfftn(x, axes)
    assert got.dtype == (np.complex64 if dtype == np.float32 else np.complex128)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=_tol(dtype, ref))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axes"), SHAPES_AXES)
def test_rfftn_into_out(rng, dtype, shape, axes):
    x = rng.standard_normal(shape).astype(dtype)
    ref = np.fft.rfftn(x.astype(np.float64), axes=axes)
    out = np.full(ref.shape, np.nan, np.complex64 if dtype == np.float32 else np.complex128)
    got = _fft.rfftn(x, axes, out=out)
    assert got is out
    np.testing.assert_allclose(out, ref, rtol=0, atol=_tol(dtype, ref))


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("use_out", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axes"), SHAPES_AXES)
def test_irfftn_matches_scipy(rng, dtype, shape, axes, overwrite, use_out):
    x = rng.standard_normal(shape)
    lengths = [shape[a] for a in axes]
    spectrum = scipy.fft.rfftn(x, axes=axes)
    # a spectrum that is not Hermitian along the halved axis (entries 0 and n/2 complex):
    # the inverse must take the real part there as pocketfft does
    spectrum = spectrum + 0.3j * rng.standard_normal(spectrum.shape)
    ref = scipy.fft.irfftn(spectrum, s=lengths, axes=axes)
    given = spectrum.astype(np.complex64 if dtype == np.float32 else np.complex128)
    kept = given.copy()
    out = np.full(shape, np.nan, dtype) if use_out else None
    got = _fft.irfftn(given, lengths, axes, overwrite=overwrite, out=out)
    assert got.dtype == dtype and got.shape == shape
    if use_out:
        assert got is out
    if not overwrite:
        np.testing.assert_array_equal(given, kept)
    np.testing.assert_allclose(got, ref, rtol=0, atol=_tol(dtype, ref))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axes"), SHAPES_AXES)
def test_round_trip(rng, dtype, shape, axes):
    x = rng.standard_normal(shape).astype(dtype)
    back = _fft.irfftn(_fft.rfftn(x, axes), [shape[a] for a in axes], axes, overwrite=True)
    np.testing.assert_allclose(back, x, rtol=0, atol=_tol(dtype, x) * 10)


def test_irfftn_strided_input(rng):
    spectrum = scipy.fft.rfftn(rng.standard_normal((12, 10, 8)))
    view = np.swapaxes(spectrum, 0, 1)  # not C-contiguous
    ref = scipy.fft.irfftn(view, s=(10, 12, 8), axes=(0, 1, 2))
    got = _fft.irfftn(view, (10, 12, 8), axes=(0, 1, 2))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13 * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [None, 5, 16, 23])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_rfft_and_fft_with_length(rng, dtype, n, axis):
    x = rng.standard_normal((11, 8, 9)).astype(dtype)
    ref = scipy.fft.rfft(x.astype(np.float64), n=n, axis=axis)
    got = _fft.rfft(x, n, axis)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=_tol(dtype, ref))
    z = (x + 1j * rng.standard_normal(x.shape)).astype(
        np.complex64 if dtype == np.float32 else np.complex128)
    ref = np.fft.fft(z.astype(np.complex128), n=n, axis=axis)
    got = _fft.fft(z, n, axis)
    assert got.dtype == z.dtype and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=_tol(dtype, ref))
    np.testing.assert_allclose(_fft.fft(x, n, axis), np.fft.fft(x.astype(np.float64), n, axis),
                               rtol=0, atol=_tol(dtype, ref))


def test_fft_overwrite_in_place(rng):
    z = rng.standard_normal((6, 10)) + 1j * rng.standard_normal((6, 10))
    ref = np.fft.fft(z, axis=1)
    kept = z.copy()
    np.testing.assert_allclose(_fft.fft(z, axis=1), ref, rtol=0, atol=1e-13 * np.abs(ref).max())
    np.testing.assert_array_equal(z, kept)  # not overwritten unless asked
    got = _fft.fft(z, axis=1, overwrite=True)
    assert got is z
    np.testing.assert_allclose(z, ref, rtol=0, atol=1e-13 * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "factor_shape"), [
    ((9, 8, 5), (9, 8, 5)),      # one row: parallel within it
    ((40, 6, 5), (1, 6, 5)),     # many rows: parallel over them
    ((3, 7), (7,)),
])
def test_multiply_real(rng, dtype, shape, factor_shape):
    cdtype = np.complex64 if dtype == np.float32 else np.complex128
    spectrum = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(cdtype)
    factor = rng.standard_normal(factor_shape).astype(dtype)
    ref = spectrum * factor  # the same single rounding per part
    got = _fft.multiply_real(spectrum, factor)
    assert got is spectrum
    np.testing.assert_array_equal(spectrum, ref)


def test_multiply_real_rejects_mismatch():
    spectrum = np.zeros((4, 5), np.complex64)
    with pytest.raises(ValueError, match="does not fit"):
        _fft.multiply_real(spectrum, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        _fft.multiply_real(spectrum, np.zeros(5, np.float64))  # precision mismatch


def test_validation():
    with pytest.raises(TypeError, match="real"):
        _fft.rfftn(np.zeros(4, complex))
    with pytest.raises(ValueError, match="axes"):
        _fft.rfftn(np.zeros((4, 4)), (0, 0))
    with pytest.raises(ValueError, match="last length"):
        _fft.irfftn(np.zeros((4, 3), complex), (4, 7), (0, 1))
    with pytest.raises(ValueError, match="does not match"):
        _fft.irfftn(np.zeros((4, 3), complex), (5, 4), (0, 1))


def test_integer_input_is_float64(rng):
    x = rng.integers(0, 100, (6, 7))
    got = _fft.rfftn(x)
    assert got.dtype == np.complex128
    np.testing.assert_allclose(got, np.fft.rfftn(x), rtol=0, atol=1e-12)


def test_usable_cores():
    expected = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count())
    assert _fft.usable_cores() == max(expected or 1, 1)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("per_plane", [False, True])
@pytest.mark.parametrize(("shape", "axes"), [
    ((5, 12, 9), (1, 2)),
    ((5, 12, 9), (0, 2)),
    ((5, 12, 9), (0, 1)),
    ((4, 3, 6, 7), (2, 3)),
    ((11, 10), (0, 1)),
])
def test_fftn_inplace_matches_numpy(rng, dtype, per_plane, shape, axes):
    z = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    ref_fwd = np.fft.fftn(z.astype(np.complex128), axes=axes)
    ref_inv = np.fft.ifftn(z.astype(np.complex128), axes=axes)
    real_dtype = np.float32 if dtype == np.complex64 else np.float64
    fwd = z.copy()
    assert _fft.fftn_inplace(fwd, axes, per_plane=per_plane) is fwd
    np.testing.assert_allclose(fwd, ref_fwd, rtol=0, atol=_tol(real_dtype, ref_fwd))
    inv = z.copy()
    _fft.fftn_inplace(inv, axes, inverse=True, per_plane=per_plane)
    np.testing.assert_allclose(inv, ref_inv, rtol=0, atol=_tol(real_dtype, ref_inv))


def test_fftn_inplace_per_plane_independent_of_stack(rng):
    # one plane at a time: a plane's result is bit-identical whatever is stacked with it
    # (what keeps chunked Dask results equal to unchunked ones)
    z = (rng.standard_normal((7, 24, 20)) + 1j * rng.standard_normal((7, 24, 20))).astype(
        np.complex64)
    whole = _fft.fftn_inplace(z.copy(), (1, 2), per_plane=True)
    part = _fft.fftn_inplace(z[2:5].copy(), (1, 2), per_plane=True)
    np.testing.assert_array_equal(part, whole[2:5])


def test_fftn_inplace_rejects_real():
    with pytest.raises(TypeError, match="complex"):
        _fft.fftn_inplace(np.zeros((4, 4)), (0, 1))


@pytest.mark.parametrize("shape", [(9,), (6, 5), (5, 8, 7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dctn_type1_matches_scipy(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    ref = scipy.fft.dctn(x.astype(np.float64), type=1)
    np.testing.assert_allclose(_fft.dctn_type1(x), ref, rtol=0, atol=_tol(dtype, ref))
    kept = x.copy()
    _fft.dctn_type1(x)
    np.testing.assert_array_equal(x, kept)
    got = _fft.dctn_type1(x, overwrite=True)
    assert got is x
    np.testing.assert_allclose(x, ref, rtol=0, atol=_tol(dtype, ref))


#: Run in a child process pinned to one core (before anything imports ducc0): digests of
#: transforms whose values ducc0's one-thread path changes in the last bits (shapes of at
#: least 32768 elements, lines of 300 or more), of Moran's I / Geary's C (FFT sums) and of
#: a Fourier-domain filter.
_CORE_PROBE = r"""
import hashlib, json, os, sys
if sys.argv[1] == "pin":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import numpy as np
import medimg_fast as mf
from medimg_fast import _fft
from medimg_fast.features._morphology import _moran_geary

def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

rng = np.random.default_rng(7)
out = {"cores": _fft.usable_cores()}
x = rng.standard_normal((512, 37, 9))
xc = x + 1j * rng.standard_normal(x.shape)
out["rfftn"] = digest(_fft.rfftn(x.astype(np.float32)))
out["irfftn"] = digest(_fft.irfftn(_fft.rfftn(x), x.shape))
out["fft"] = digest(_fft.fft(xc, axis=0))
out["rfft"] = digest(_fft.rfft(rng.standard_normal((9, 37, 600)), axis=2))
out["dct"] = digest(_fft.dctn_type1(rng.standard_normal((40, 41, 42))))
out["fftn_inplace"] = digest(_fft.fftn_inplace(xc.copy(), (0, 1)))
idx = np.argwhere(rng.random((30, 28, 26)) < 0.4)
out["moran_geary"] = _moran_geary(idx, rng.normal(40.0, 30.0, len(idx)), (2.0, 0.8, 0.8))
image = rng.normal(0.0, 100.0, (6, 160, 170)).astype(np.float32)
out["gabor"] = digest(mf.gabor_filter(image, sigma_mm=5.0, lambda_mm=2.0, gamma=1.5,
                                      theta_deg=30.0, backend="numpy"))
print(json.dumps(out))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
@pytest.mark.skipif(_fft.usable_cores() < 2,
                    reason="one usable core: the pinned and the free process would be alike")
def test_values_do_not_depend_on_the_number_of_cores():
    """A process pinned to one core computes the same transforms, Moran's I / Geary's C
    and Fourier-domain filter, bit for bit, as one with every core (see the module
    docstring of ``_fft``: ducc0's one-thread path differs)."""
    import json
    import subprocess
    import sys

    def probe(mode):
        run = subprocess.run([sys.executable, "-c", _CORE_PROBE, mode], capture_output=True,
                             text=True, check=True)
        return json.loads(run.stdout.strip().splitlines()[-1])

    pinned, free = probe("pin"), probe("free")
    assert pinned.pop("cores") == 1
    free.pop("cores")
    assert pinned == free
