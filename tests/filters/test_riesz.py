"""Riesz transforms (IBSI-2) against independent references: scipy.signal.hilbert,
Parseval's identity, the closed form on plane waves, 90-degree rotations, and an
explicit complex FFT written here from the multiplier's formula; the aligned variant
(``tensor_sigma``) against rotation invariance, voxelwise energy per order, the gradient
magnitude and plane waves along their wave vector.

Sign convention: ``H_n(w) = (-j)**N sqrt(N!/n!) w**n / |w|**N``, so first order in 1-D
is ``-j sign(w)``, the imaginary part of ``scipy.signal.hilbert``'s analytic signal, and
``R_i cos(k.x) = (k_i / |k|) sin(k.x)``.

IBSI-2 gives no reference response map of a Riesz transform in this repository's data
(the phase-1 Riesz tests 9 and 10 have consensus maps only upstream, not here), so no
map is compared.

Tolerances: float64 against float64 closed forms 1e-10 (FFT round-off on unit-range
data); float32 against float64 1e-5 of the data range.
"""

import math

import numpy as np
import pytest
import scipy.signal as ss
from _mf_testing import backends_to_test, to_host

from medimg_fast.filters import riesz_transform
from medimg_fast.filters._riesz import riesz_orders

TIGHT = {"rtol": 1e-10, "atol": 1e-10}
MODES = ("reflect", "nearest", "mirror", "constant", "wrap")


@pytest.fixture
def rng():
    return np.random.default_rng(20261201)


def _norm(n):
    return math.sqrt(math.factorial(sum(n)) / math.prod(math.factorial(k) for k in n))


@pytest.mark.parametrize("length", [31, 32])
def test_first_order_is_the_hilbert_transform(rng, length):
    signal = rng.normal(size=length)
    hilbert = np.imag(ss.hilbert(signal))  # scipy: -j sign(w), Nyquist set to 0
    volume = np.broadcast_to(signal, (3, 4, length)).copy()
    along_x = riesz_transform(volume, (0, 0, 1), backend="numpy")
    np.testing.assert_allclose(along_x, np.broadcast_to(hilbert, volume.shape), **TIGHT)
    # the signal does not vary along z and y: their components vanish
    for order in [(1, 0, 0), (0, 1, 0)]:
        assert abs(riesz_transform(volume, order, backend="numpy")).max() < 1e-12
    # slice by slice, the same along the last axis
    np.testing.assert_allclose(riesz_transform(volume, (0, 1), dims="2D", backend="numpy"),
                               along_x, **TIGHT)
    # second order along one axis of a 1-D signal: -identity on zero-mean signals
    # ((-j)**2 sign(w)**2 = -1 off DC; the even Nyquist power stays, as in the formula)
    np.testing.assert_allclose(riesz_transform(volume, (0, 0, 2), backend="numpy"),
                               -(volume - volume.mean()), **TIGHT)


@pytest.mark.parametrize("total", [1, 2, 3])
def test_parseval_components_of_one_order(rng, total):
    # odd lengths: no self-conjugate Nyquist frequency, so the identity is exact
    image = rng.normal(size=(9, 11, 13))
    energy = ((image - image.mean()) ** 2).sum()
    orders = riesz_orders(total)
    assert len(orders) == math.comb(total + 2, 2)
    squares = sum((riesz_transform(image, n, backend="numpy") ** 2).sum() for n in orders)
    np.testing.assert_allclose(squares, energy, rtol=1e-12)
    plane = image[0]
    squares_2d = sum((riesz_transform(plane, n, dims="2D", backend="numpy") ** 2).sum()
                     for n in riesz_orders(total, 2))
    np.testing.assert_allclose(squares_2d, ((plane - plane.mean()) ** 2).sum(), rtol=1e-12)


@pytest.mark.parametrize("total", [1, 2, 3])
@pytest.mark.parametrize("spacing", [None, (2.0, 0.5, 1.25)])
def test_plane_wave_closed_form(total, spacing):
    shape, k = (16, 18, 20), (2, -3, 5)  # whole periods on the periodic grid
    grid = np.indices(shape, dtype=np.float64)
    phase = sum(2 * np.pi * ki * g / n for ki, g, n in zip(k, grid, shape))
    wave = np.cos(phase)
    s = (1.0, 1.0, 1.0) if spacing is None else spacing
    w = np.array([2 * np.pi * ki / (n * si) for ki, n, si in zip(k, shape, s)])
    for n in riesz_orders(total):
        amplitude = _norm(n) * np.prod(w ** np.array(n)) / np.linalg.norm(w) ** total
        expected = amplitude * np.cos(phase - total * np.pi / 2)
        got = riesz_transform(wave, n, spacing=spacing, backend="numpy")
        np.testing.assert_allclose(got, expected, err_msg=str(n), **TIGHT)
    if total == 1:  # R_i cos(k.x) = (k_i / |k|) sin(k.x)
        got = riesz_transform(wave, (0, 0, 1), spacing=spacing, backend="numpy")
        np.testing.assert_allclose(got, w[2] / np.linalg.norm(w) * np.sin(phase), **TIGHT)


@pytest.mark.parametrize("total", [1, 2, 3])
def test_rot90_permutes_components_with_signs(rng, total):
    # np.rot90 in the (y, x) plane: g(z, a, b) = f(z, b, c - a), so d/da g = -(d/dx f)
    # and d/db g = d/dy f, rotated: R^(nz, ny, nx) g = (-1)**ny rot(R^(nz, nx, ny) f)
    # (exact on the periodic grid: the shift by c is a circular shift)
    image = rng.normal(size=(6, 8, 10))
    rotated = np.rot90(image, axes=(1, 2))
    for nz, ny, nx in riesz_orders(total):
        lhs = riesz_transform(rotated, (nz, ny, nx), backend="numpy")
        rhs = (-1) ** ny * np.rot90(riesz_transform(image, (nz, nx, ny), backend="numpy"),
                                    axes=(1, 2))
        np.testing.assert_allclose(lhs, rhs, err_msg=str((nz, ny, nx)), **TIGHT)
    # a rotation about y: (z, x) plane
    rotated = np.rot90(image, axes=(0, 2))
    for nz, ny, nx in riesz_orders(total):
        lhs = riesz_transform(rotated, (nz, ny, nx), backend="numpy")
        rhs = (-1) ** nz * np.rot90(riesz_transform(image, (nx, ny, nz), backend="numpy"),
                                    axes=(0, 2))
        np.testing.assert_allclose(lhs, rhs, err_msg=str((nz, ny, nx)), **TIGHT)


def _explicit_riesz(image, order, mode):
    """Pad by n // 2 per side with numpy.pad, full complex FFT with the multiplier
    written from its formula, crop (odd padded lengths: no Nyquist frequency)."""
    numpy_mode = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge",
                  "constant": "constant", "wrap": "wrap"}[mode]
    if mode == "wrap":
        padded, crop = image, (slice(None),) * 3
    else:
        pads = [(n // 2, n // 2) for n in image.shape]
        padded = np.pad(image, pads, mode=numpy_mode)
        crop = tuple(slice(p, p + n) for (p, _), n in zip(pads, image.shape))
    w = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n) for n in padded.shape], indexing="ij")
    norm = np.sqrt(sum(wi ** 2 for wi in w))
    total = sum(order)
    with np.errstate(invalid="ignore", divide="ignore"):
        h = (-1j) ** total * _norm(order) * np.prod([wi ** ni for wi, ni in zip(w, order)],
                                                    axis=0) / norm ** total
    h[0, 0, 0] = 0
    out = np.fft.ifftn(np.fft.fftn(padded) * h)
    assert abs(out.imag).max() < 1e-12
    return out.real[crop]


@pytest.mark.parametrize("mode", MODES)
def test_boundary_modes_against_explicit_fft(rng, mode):
    image = rng.normal(size=(7, 9, 11))
    for order in [(1, 0, 0), (0, 1, 1), (0, 0, 3)]:
        np.testing.assert_allclose(riesz_transform(image, order, mode=mode, backend="numpy"),
                                   _explicit_riesz(image, order, mode), **TIGHT)


def test_constant_mode_uses_cval(rng):
    image = rng.normal(size=(7, 9, 11))
    shifted = riesz_transform(image + 5.0, (0, 1, 0), mode="constant", cval=5.0,
                              backend="numpy")
    # a constant added everywhere (inside and outside) has no response
    np.testing.assert_allclose(shifted, riesz_transform(image, (0, 1, 0), mode="constant",
                                                        backend="numpy"), **TIGHT)


def test_2d_is_slice_by_slice(rng):
    image = rng.normal(size=(3, 10, 12))
    for mode in ("wrap", "reflect"):
        out = riesz_transform(image, (1, 1), dims="2D", mode=mode, backend="numpy")
        for z in range(image.shape[0]):
            np.testing.assert_allclose(out[z], riesz_transform(image[z], (1, 1), dims="2D",
                                                               mode=mode, backend="numpy"),
                                       **TIGHT)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int16])
def test_dtypes(rng, dtype):
    image = (rng.random((9, 10, 11)) * 100).astype(dtype)
    out = riesz_transform(image, (1, 0, 1), backend="numpy")
    assert out.dtype == (np.float64 if dtype == np.float64 else np.float32)
    ref = riesz_transform(image.astype(np.float64), (1, 0, 1), backend="numpy")
    np.testing.assert_allclose(out, ref, atol=1e-5 * np.ptp(image), rtol=0)


@pytest.mark.parametrize("backend", backends_to_test())
def test_backends_agree_with_numpy_float64(rng, backend):
    image = rng.normal(size=(8, 9, 10))
    ref = riesz_transform(image, (2, 0, 1), mode="reflect", backend="numpy")
    for dtype, tol in [(np.float64, 1e-10), (np.float32, 1e-5)]:
        x = image.astype(dtype)
        if backend == "cupy":
            import cupy

            x = cupy.asarray(x)
        out = to_host(riesz_transform(x, (2, 0, 1), mode="reflect", backend=backend))
        assert out.dtype == dtype
        np.testing.assert_allclose(out, ref, atol=tol * np.ptp(image), rtol=0)


@pytest.mark.parametrize("dims, order", [("3D", (1, 2, 0)), ("2D", (1, 1))])
@pytest.mark.parametrize("mode", ["wrap", "constant", "mirror"])
def test_dask_equals_numpy(rng, dims, order, mode):
    da = pytest.importorskip("dask.array")
    image = rng.normal(size=(11, 12, 13)).astype(np.float32)
    lazy_in = da.from_array(image, chunks=(4, 5, 6))
    lazy = riesz_transform(lazy_in, order, dims=dims, mode=mode)
    assert isinstance(lazy, da.Array) and lazy.chunks == lazy_in.chunks
    assert lazy.dtype == np.float32
    np.testing.assert_array_equal(lazy.compute(), riesz_transform(image, order, dims=dims,
                                                                  mode=mode))


# -- aligned to the local dominant orientation (tensor_sigma) -------------------------------

@pytest.fixture
def smooth(rng):
    import scipy.ndimage as ndi

    return ndi.gaussian_filter(rng.normal(size=(10, 12, 14)), 1.0, mode="wrap")


@pytest.mark.parametrize("total", [1, 2, 3])
def test_aligned_is_rotation_invariant(smooth, total):
    # the frame turns with the image, so every aligned component just moves with it
    for axes in [(1, 2), (0, 2), (0, 1)]:
        rotated = np.rot90(smooth, axes=axes)
        for n in riesz_orders(total):
            got = riesz_transform(rotated, n, tensor_sigma=1.5, backend="numpy")
            want = np.rot90(riesz_transform(smooth, n, tensor_sigma=1.5, backend="numpy"),
                            axes=axes)
            np.testing.assert_allclose(got, want, err_msg=f"{n} {axes}", **TIGHT)


@pytest.mark.parametrize("total", [1, 2, 3])
def test_aligned_keeps_the_energy_of_each_order_voxelwise(smooth, total):
    # steering by an orthonormal frame is an orthogonal map of one order's components
    aligned = sum(riesz_transform(smooth, n, tensor_sigma=2.0, backend="numpy") ** 2
                  for n in riesz_orders(total))
    grid = sum(riesz_transform(smooth, n, backend="numpy") ** 2 for n in riesz_orders(total))
    np.testing.assert_allclose(aligned, grid, **TIGHT)


def test_aligned_first_order_with_a_narrow_window_is_the_magnitude(smooth):
    magnitude = np.sqrt(sum(riesz_transform(smooth, e, backend="numpy") ** 2
                            for e in riesz_orders(1)))
    np.testing.assert_allclose(riesz_transform(smooth, (1, 0, 0), tensor_sigma=0.01,
                                               backend="numpy"), magnitude, **TIGHT)


@pytest.mark.parametrize("total", [1, 2, 3])
def test_aligned_plane_wave_along_its_wave_vector(total):
    # R f = (k/|k|) sin(k.x) everywhere, so q_1 = sign(sin(k.x)) k/|k| and the component
    # along q_1 is sign**N cos(k.x - N pi/2), whatever the direction of k (sign**N = 1 for
    # even N, also where sin(k.x) = 0 and the window still sees the wave)
    shape, k = (16, 18, 20), (2, -3, 5)
    grid = np.indices(shape, dtype=np.float64)
    phase = sum(2 * np.pi * ki * g / n for ki, g, n in zip(k, grid, shape))
    got = riesz_transform(np.cos(phase), (total, 0, 0), tensor_sigma=1.0, backend="numpy")
    sign = np.sign(np.sin(phase)) if total % 2 else 1.0
    want = sign * np.cos(phase - total * np.pi / 2)
    np.testing.assert_allclose(got, want, **TIGHT)


def test_aligned_2d_dask_and_float32(smooth):
    da = pytest.importorskip("dask.array")
    out = riesz_transform(smooth, (1, 1), tensor_sigma=1.5, dims="2D", backend="numpy")
    for z in range(smooth.shape[0]):
        np.testing.assert_allclose(out[z], riesz_transform(smooth[z], (1, 1), dims="2D",
                                                           tensor_sigma=1.5,
                                                           backend="numpy"), **TIGHT)
    x = smooth.astype(np.float32)
    whole = riesz_transform(x, (0, 2, 1), tensor_sigma=1.5, mode="reflect")
    assert whole.dtype == np.float32
    lazy = riesz_transform(da.from_array(x, chunks=(4, 5, 6)), (0, 2, 1), tensor_sigma=1.5,
                           mode="reflect")
    np.testing.assert_array_equal(lazy.compute(), whole)
    ref = riesz_transform(smooth, (0, 2, 1), tensor_sigma=1.5, mode="reflect")
    # 1e-4 of the range, not 1e-5: where two eigenvalues of the tensor nearly coincide
    # the frame amplifies float32 round-off (measured 1.6e-5 of the range at one voxel)
    np.testing.assert_allclose(whole, ref, atol=1e-4 * np.ptp(ref), rtol=0)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), True, "2"])
def test_aligned_tensor_sigma_is_validated(bad):
    with pytest.raises(ValueError, match=f"`tensor_sigma`.*{bad!r}"):
        riesz_transform(np.zeros((6, 6, 6)), (1, 0, 0), tensor_sigma=bad)


def test_flat_image_has_no_response():
    flat = np.full((8, 8, 8), 7.0)
    for n in riesz_orders(2):
        assert abs(riesz_transform(flat, n, backend="numpy")).max() < 1e-12


def test_riesz_orders():
    assert riesz_orders(1) == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert riesz_orders(2, 2) == [(2, 0), (1, 1), (0, 2)]
    assert len(set(riesz_orders(4))) == math.comb(6, 2)
    with pytest.raises(ValueError, match="total_order.*0"):
        riesz_orders(0)


@pytest.mark.parametrize("kwargs, match", [
    ({"order": (1, 0)}, r"`order` must be 3 .*\(1, 0\)"),
    ({"order": (0, 0, 0)}, r"total order .*\(0, 0, 0\)"),
    ({"order": (1, -1, 0)}, r"`order`.*\(1, -1, 0\)"),
    ({"order": (1.5, 0, 0)}, r"`order`.*1\.5"),
    ({"order": 1}, "`order`.*got 1"),
    ({"order": "100"}, "`order`.*'100'"),
    ({"order": (True, 0, 0)}, "`order`.*True"),
    ({"order": (1, 0), "dims": "2D", "mode": "periodic"}, "`mode`.*periodic"),
    ({"order": (1, 0, 0), "dims": "4D"}, "`dims`.*4D"),
    ({"order": (1, 0, 0), "spacing": (1.0, 0.0, 1.0)}, "`spacing`.*0.0"),
    ({"order": (1, 0, 0), "spacing": (1.0, 1.0)}, "`spacing`.*3"),
])
def test_invalid_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        riesz_transform(np.zeros((6, 6, 6)), **kwargs)


def test_docstring_examples_run():
    import doctest

    from medimg_fast.filters import _riesz

    failures, tried = doctest.testmod(_riesz, verbose=False)
    assert tried >= 1 and failures == 0
