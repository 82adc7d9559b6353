"""The fused numba Laws path (``backends/_numba_laws.py``): rotation-invariant pooling in
one sweep, against independent references.

References: explicit outer-product kernels rotated with ``np.rot90`` compositions and
``scipy.ndimage.convolve`` in float64, ``scipy.ndimage.uniform_filter`` for the energy
box; for bit-identity, the generic chain of ``correlate_separable`` per rotation and a
NumPy pool.
Tolerances: float64 inputs against float64 references 1e-10 relative to the response
range (the order of the sums differs); float32 inputs 2e-6 of the range (a few float32
roundings per pass, three passes and the box).
"""

import numpy as np
import pytest
import scipy.ndimage as ndi
from _mf_testing import laws_outer, rotations_90

from medimg_fast._shared.boundary import MODE_CODES as CODES
from medimg_fast.backends import _numba_kernels, _numba_laws
from medimg_fast.filters import laws_filter, laws_kernel1d

MODES = ("reflect", "mirror", "nearest", "wrap", "constant")

@pytest.fixture
def rng():
    return np.random.default_rng(20261201)


def _factors(kernel):
    """The 1-D factors of a rank-1 (outer product) array, read off through its largest
    element: ``k = a (x) b (x) c`` with ``a = k[:, j, l]``, ``b = k[i, :, l] / k[i, j, l]``,
    ``c = k[i, j, :] / k[i, j, l]``."""
    centre = np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)
    k0 = kernel[centre]
    out = []
    for axis in range(kernel.ndim):
        index = list(centre)
        index[axis] = slice(None)
        v = kernel[tuple(index)]
        out.append(v if axis == 0 else v / k0)
    return out


def _reference(image, name, *, pooling, energy, delta, mode, cval, dims):
    """Rotation-invariant Laws in float64: convolve with every rotated outer-product
    kernel, pool, then the energy box (scipy.ndimage.uniform_filter).

    With ``cval == 0`` the response is ``scipy.ndimage.convolve`` with the 3-D kernel.
    Otherwise the package's convention: a separable convolution, each 1-D pass extending
    its own input with ``cval`` (scipy's rule for separable filters), with the 1-D factors
    of each rotated kernel scaled to unit norm and their first non-zero tap positive, and
    the sign of the rotated kernel applied to the response (a flipped antisymmetric kernel
    is the negated kernel: its response is the negated response)."""
    kernel = laws_outer(name)
    axes = tuple(range(image.ndim))[-kernel.ndim:]
    responses = []
    for k in rotations_90(kernel):
        if cval == 0 or mode != "constant":
            full = k.reshape((1,) * (image.ndim - k.ndim) + k.shape)
            responses.append(ndi.convolve(image, full, mode=mode, cval=cval))
        else:
            factors = []
            for v in _factors(k):
                v = v / np.linalg.norm(v)
                factors.append(v if v[np.flatnonzero(np.abs(v) > 1e-12)[0]] > 0 else -v)
            product = factors[0]
            for v in factors[1:]:
                product = np.multiply.outer(product, v)
            sign = np.sign((product * k).sum())
            r = image
            for axis, v in zip(axes, factors):
                r = ndi.convolve1d(r, v, axis=axis, mode=mode, cval=cval)
            responses.append(sign * r)
    pooled = {"max": np.max, "min": np.min, "mean": np.mean}[pooling](responses, axis=0)
    if not energy:
        return pooled
    return ndi.uniform_filter(np.abs(pooled), 2 * delta + 1, mode=mode, cval=cval,
                              axes=axes)


def test_rotation_groups_have_24_and_4_elements():
    assert len(rotations_90(np.random.default_rng(0).random((2, 3, 4)))) == 24
    assert len(rotations_90(np.random.default_rng(0).random((2, 3)))) == 4


CASES = [("E5L5S5", "3D", "max"), ("E5L5S5", "3D", "min"), ("L5S5R5", "3D", "mean"),
         ("E5L3S5", "3D", "max"), ("S3R5L5", "3D", "mean"), ("E5E5L5", "3D", "max"),
         ("E5S3", "2D", "max"), ("R5S3", "2D", "mean"), ("W5E3", "2D", "min")]


@pytest.mark.parametrize("mode, cval", [(m, 0.0) for m in MODES] + [("constant", 0.7)])
@pytest.mark.parametrize("kernel, dims, pooling", CASES)
@pytest.mark.parametrize("energy", [False, True])
def test_numba_rotation_invariant_matches_rotated_kernels(rng, mode, cval, kernel, dims,
                                                          pooling, energy):
    image = rng.normal(size=(9, 10, 11))
    kw = {"pooling": pooling, "energy": energy, "delta": 2, "mode": mode, "cval": cval,
          "dims": dims}
    ref = _reference(image, kernel, **kw)
    out = laws_filter(image, kernel, rotation_invariant=True, backend="numba", **kw)
    assert out.dtype == np.float64
    scale = np.ptp(ref) or 1.0
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10 * scale)
    out32 = laws_filter(image.astype(np.float32), kernel, rotation_invariant=True,
                        backend="numba", **kw)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, ref, rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize("kernel, dims", [("E5L5S5", "3D"), ("W5R5", "2D")])
def test_two_dimensional_image(rng, kernel, dims):
    image = rng.normal(size=(13, 12)) if dims == "2D" else rng.normal(size=(6, 7, 8))
    for energy in (False, True):
        kw = {"pooling": "max", "energy": energy, "delta": 3, "mode": "mirror", "cval": 0.0,
              "dims": dims}
        ref = _reference(image, kernel, **kw)
        out = laws_filter(image, kernel, rotation_invariant=True, backend="numba", **kw)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10 * np.ptp(ref))


def _generic_numba(image, kernel, pooling, mode, cval, dims):
    """The pre-fusion numba path, spelled out: correlate_separable per distinct rotation
    up to sign (kernels flipped for the convolution), each response entered once per
    sign into a NumPy pool."""
    from medimg_fast.filters._laws import _signed_kernel_sets, parse_laws_kernel
    from medimg_fast.filters._orientations import oriented_kernel_sets

    axes = (0, 1, 2) if dims == "3D" else (image.ndim - 2, image.ndim - 1)
    sets = _signed_kernel_sets(oriented_kernel_sets(parse_laws_kernel(kernel, len(axes)),
                                                    True))
    pooled, count = None, 0
    for ks, signs in sets:
        r = _numba_kernels.correlate_separable(image, axes, [k[::-1] for k in ks],
                                               CODES[mode], cval)
        for sign in signs:
            v = r if sign > 0 else -r
            count += 1
            if pooled is None:
                pooled = v
            elif pooling == "max":
                pooled = np.maximum(pooled, v)
            elif pooling == "min":
                pooled = np.minimum(pooled, v)
            else:
                pooled = pooled + v
    if pooling == "mean":
        pooled = pooled / image.dtype.type(count)
    return pooled


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kernel, dims, pooling", [("E5L5S5", "3D", "max"),
                                                   ("E5L3S5", "3D", "min"),
                                                   ("E5E5L5", "3D", "max"),
                                                   ("L5S5R5", "3D", "mean"),
                                                   ("E5S3", "2D", "max")])
def test_bit_identical_to_generic_numba_chain(rng, mode, kernel, dims, pooling):
    image = rng.normal(size=(11, 12, 13)).astype(np.float32)
    out = laws_filter(image, kernel, rotation_invariant=True, pooling=pooling, mode=mode,
                      cval=-0.3, dims=dims, backend="numba")
    generic = _generic_numba(image, kernel, pooling, mode, -0.3, dims)
    np.testing.assert_array_equal(out, generic)
    # the energy map: the same box sweep on the same pooled |response|
    energy = laws_filter(image, kernel, rotation_invariant=True, pooling=pooling, mode=mode,
                         cval=-0.3, dims=dims, energy=True, delta=2, backend="numba")
    axes = (0, 1, 2) if dims == "3D" else (1, 2)
    box = np.full(5, 0.2)
    np.testing.assert_array_equal(energy, _numba_kernels.correlate_separable(
        np.abs(generic), axes, [box] * len(axes), CODES[mode], -0.3))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("energy", [False, True])
@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_numba_equals_numpy_backend(rng, mode, energy, pooling):
    image = rng.normal(size=(10, 9, 12)).astype(np.float32)
    kw = {"rotation_invariant": True, "pooling": pooling, "energy": energy, "delta": 3,
          "mode": mode, "cval": 0.25}
    fast = laws_filter(image, "L5S5E5" if pooling == "max" else "L5S5R5", backend="numba",
                       **kw)
    ref = laws_filter(image, "L5S5E5" if pooling == "max" else "L5S5R5", backend="numpy",
                      **kw)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=2e-6 * np.ptp(ref))


@pytest.mark.parametrize("mode", MODES)
def test_split_planes_give_the_same_bits(rng, mode):
    image = rng.normal(size=(3, 17, 9)).astype(np.float32)
    z = [laws_kernel1d(n)[::-1].copy() for n in ("S5", "L5", "E3")]
    pairs = [(0, z[1]), (0, z[2]), (1, z[0]), (2, z[1])]
    groups = [(0, z[2], [1, -1]), (1, z[1], [1]), (2, z[2], [-1]), (3, z[0], [1, 1])]
    code = CODES[mode]
    for pooling in (_numba_laws.POOL_MAX, _numba_laws.POOL_MIN, _numba_laws.POOL_MEAN):
        whole = _numba_laws.laws_pool(image, True, z, pairs, groups, pooling, 5, False, code,
                                      1.5)
        for yblock in (1, 2, 5):
            part = _numba_laws.laws_pool(image, True, z, pairs, groups, pooling, 5, False,
                                         code, 1.5, yblock=yblock)
            np.testing.assert_array_equal(part, whole)


def test_nan_propagates_as_on_numpy(rng):
    image = rng.normal(size=(9, 9, 9)).astype(np.float32)
    image[4, 4, 4] = np.nan
    for energy in (False, True):
        fast = laws_filter(image, "E5L5S5", rotation_invariant=True, energy=energy, delta=1,
                           backend="numba")
        ref = laws_filter(image, "E5L5S5", rotation_invariant=True, energy=energy, delta=1,
                          backend="numpy")
        np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
        # the 5^3 support of every rotation, grown by the 3^3 energy box
        assert np.isnan(fast).sum() == (7 if energy else 5) ** 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims, kernel, pooling", [("3D", "E5L5S5", "max"),
                                                   ("3D", "L5S5R5", "mean"),
                                                   ("2D", "E5S3", "min")])
def test_dask_chunked_equals_unchunked(mode, dims, kernel, pooling):
    da = pytest.importorskip("dask.array")
    image = np.random.default_rng(11).normal(size=(14, 15, 13)).astype(np.float32)
    kw = {"rotation_invariant": True, "pooling": pooling, "energy": True, "delta": 2,
          "mode": mode, "cval": 0.5, "dims": dims, "backend": "numba"}
    whole = laws_filter(image, kernel, **kw)
    for chunks in ((5, 6, 7), (4, 15, 3), (14, 4, 13)):
        lazy = laws_filter(da.from_array(image, chunks=chunks), kernel, **kw)
        np.testing.assert_array_equal(lazy.compute(), whole, err_msg=f"{chunks}")
