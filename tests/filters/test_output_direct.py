"""scipy.ndimage's ``output=`` array filled by the numba kernels themselves (issue 15).

Where the caller's ``output`` can take the kernel's writes (a writeable C-contiguous NumPy
array of the image's shape in the working dtype that does not overlap the image) and
the image is filtered whole on the numba backend, the result is written straight into
``output``: no result array is allocated and nothing is copied.  Everywhere else the
result is copied into ``output`` as before.  Either way the values are those of the call
without ``output`` (bit for bit: the same kernels in the same order), which
tests/filters/test_against_scipy.py compares with scipy.ndimage; here a float64 scipy
reference checks them too, at float32 rounding (rtol/atol 1e-4 on unit-scale data).

How the tests see which path ran: the copy into ``output`` is one function,
``_dispatch._fill``, which the tests replace with a spy; and ``tracemalloc`` (NumPy
reports its data allocations to it) bounds the memory a direct call allocates to a
fraction of one volume, where the copy path allocates at least one.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage as ndi

import medimg_fast as mf
from medimg_fast import chunking
from medimg_fast.backends import _numba_kernels as nk
from medimg_fast.filters import _dispatch

pytest.importorskip("numba")

_CORR_W3 = np.random.default_rng(5).normal(size=(3, 3, 3))
_CONV_W3 = np.random.default_rng(6).normal(size=(2, 3, 3))  # even length: scipy's centring


def _w(weights, ndim):
    return weights[(0,) * (weights.ndim - ndim)] if ndim < weights.ndim else weights


def _scipy_gm(x, mode, cval):
    return np.sqrt(sum(ndi.sobel(x, axis=a, mode=mode, cval=cval) ** 2 for a in range(x.ndim)))


_FOOTPRINT = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=bool)


def _fp(ndim):
    return _FOOTPRINT if ndim == 2 else np.stack([_FOOTPRINT, ~_FOOTPRINT | _FOOTPRINT.T,
                                                  _FOOTPRINT.T])


#: name -> (ours(x, ndim, **kw), scipy float64 reference(x, ndim, mode, cval))
FILTERS = {
    "gaussian": (lambda x, n, **k: mf.gaussian_filter(x, 1.5, **k),
                 lambda x, n, m, c: ndi.gaussian_filter(x, 1.5, mode=m, cval=c)),
    "gaussian_order1": (lambda x, n, **k: mf.gaussian_filter(x, 1.2, order=(1,) + (0,) * (n - 1),
                                                             **k),
                        lambda x, n, m, c: ndi.gaussian_filter(x, 1.2, order=(1,) + (0,) * (n - 1),
                                                               mode=m, cval=c)),
    # passes along axes (last, first): two sweeps, the first into scratch
    "gaussian_two_runs": (lambda x, n, **k: mf.gaussian_filter(x, 1.0, axes=(n - 1, 0), **k),
                          lambda x, n, m, c: ndi.gaussian_filter(x, 1.0, axes=(n - 1, 0),
                                                                 mode=m, cval=c)),
    "uniform": (lambda x, n, **k: mf.uniform_filter(x, 5, **k),
                lambda x, n, m, c: ndi.uniform_filter(x, 5, mode=m, cval=c)),
    "uniform_one_axis": (lambda x, n, **k: mf.uniform_filter(x, 4, axes=(0,), **k),
                         lambda x, n, m, c: ndi.uniform_filter(x, 4, axes=(0,), mode=m, cval=c)),
    "gradient_magnitude": (lambda x, n, **k: mf.gradient_magnitude(x, **k),
                           lambda x, n, m, c: _scipy_gm(x, m, c)),
    "sobel": (lambda x, n, **k: mf.sobel(x, axis=0, **k),
              lambda x, n, m, c: ndi.sobel(x, axis=0, mode=m, cval=c)),
    "correlate": (lambda x, n, **k: mf.correlate(x, _w(_CORR_W3, n), **k),
                  lambda x, n, m, c: ndi.correlate(x, _w(_CORR_W3, n), mode=m, cval=c)),
    "convolve": (lambda x, n, **k: mf.convolve(x, _w(_CONV_W3, n), **k),
                 lambda x, n, m, c: ndi.convolve(x, _w(_CONV_W3, n), mode=m, cval=c)),
    "median": (lambda x, n, **k: mf.median_filter(x, size=3, **k),
               lambda x, n, m, c: ndi.median_filter(x, size=3, mode=m, cval=c)),
    "median_footprint": (lambda x, n, **k: mf.median_filter(x, footprint=_fp(n), **k),
                         lambda x, n, m, c: ndi.median_filter(x, footprint=_fp(n), mode=m,
                                                              cval=c)),
    "minimum": (lambda x, n, **k: mf.minimum_filter(x, size=3, **k),
                lambda x, n, m, c: ndi.minimum_filter(x, size=3, mode=m, cval=c)),
    "maximum": (lambda x, n, **k: mf.maximum_filter(x, size=(3,) + (1,) * (n - 1), **k),
                lambda x, n, m, c: ndi.maximum_filter(x, size=(3,) + (1,) * (n - 1), mode=m,
                                                      cval=c)),
    "maximum_footprint": (lambda x, n, **k: mf.maximum_filter(x, footprint=_fp(n), **k),
                          lambda x, n, m, c: ndi.maximum_filter(x, footprint=_fp(n), mode=m,
                                                                cval=c)),
}
SHAPES = {2: (23, 31), 3: (9, 14, 17)}
MODES = [("reflect", 0.0), ("constant", 1.5), ("wrap", 0.0), ("nearest", 0.0)]


def _image(ndim, dtype, seed=0):
    return np.random.default_rng(seed).normal(size=SHAPES[ndim]).astype(dtype)


@pytest.fixture
def copies(monkeypatch):
    """A list of the (output, result) pairs that took the copy path."""
    seen = []
    real = _dispatch._fill

    def spy(output, result):
        seen.append((output, result))
        real(output, result)

    monkeypatch.setattr(_dispatch, "_fill", spy)
    return seen


@pytest.mark.parametrize("mode,cval", MODES, ids=[m for m, _ in MODES])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", list(FILTERS))
def test_kernel_writes_output_directly(name, ndim, dtype, mode, cval, copies):
    ours, reference = FILTERS[name]
    image = _image(ndim, dtype)
    expected = ours(image, ndim, mode=mode, cval=cval, backend="numba")
    buf = np.full(image.shape, np.nan, dtype=dtype)
    result = ours(image, ndim, mode=mode, cval=cval, backend="numba", output=buf)
    assert result is buf
    assert copies == []  # no ``output[...] = result``
    assert np.array_equal(buf, expected)
    np.testing.assert_allclose(buf, reference(image.astype(np.float64), ndim, mode, cval),
                               rtol=1e-4, atol=1e-4)


# filters of one kernel call (chains such as sobel or a box minimum allocate their
# intermediates, as many as the copy path's peak, so memory cannot tell the paths apart)
@pytest.mark.parametrize("name", ["gaussian", "uniform", "gradient_magnitude", "correlate",
                                  "median", "maximum", "gaussian_two_runs"])
def test_direct_call_allocates_no_result(name, copies):
    ours, _ = FILTERS[name]
    image = np.random.default_rng(1).normal(size=(48, 64, 64)).astype(np.float32)
    buf = np.empty_like(image)
    ours(image, 3, backend="numba", output=buf)  # compile and fill the scratch first
    contiguous_copy = np.empty_like(image)
    strided = np.empty(image.shape[::-1], dtype=np.float32).T  # Fortran order: copy path

    def peak(output):
        tracemalloc.start()
        try:
            ours(image, 3, backend="numba", output=output)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak(buf) < image.nbytes // 4
    assert peak(strided) >= image.nbytes  # the measure sees a result array
    assert len(copies) == 1  # the strided call copied; the direct calls did not
    np.testing.assert_array_equal(strided, buf)
    np.testing.assert_array_equal(ours(image, 3, backend="numba", output=contiguous_copy), buf)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", list(FILTERS))
def test_output_is_image_gives_filtered_values(name, ndim, dtype, copies):
    ours, reference = FILTERS[name]
    image = _image(ndim, dtype, seed=2)
    original = image.copy()
    expected = ours(original, ndim, backend="numba")
    result = ours(image, ndim, backend="numba", output=image)
    assert result is image
    assert len(copies) == 1  # the safe fallback
    assert np.array_equal(image, expected)
    np.testing.assert_allclose(image, reference(original.astype(np.float64), ndim, "reflect",
                                                0.0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["gaussian", "uniform", "median", "correlate",
                                  "gradient_magnitude"])
def test_overlapping_output_view_takes_the_copy_path(name, copies):
    ours, _ = FILTERS[name]
    base = _image(3, "float32", seed=3)
    image = base[:-1]  # the output below overlaps it, shifted by one plane
    expected = ours(image.copy(), 3, backend="numba")
    output = base[1:]
    assert output.flags.c_contiguous and np.shares_memory(output, image)
    assert ours(image, 3, backend="numba", output=output) is output
    assert len(copies) == 1
    np.testing.assert_array_equal(output, expected)


@pytest.mark.parametrize("name", ["gaussian", "uniform", "median", "gradient_magnitude"])
def test_non_contiguous_output_is_filled_by_copy(name, copies):
    ours, _ = FILTERS[name]
    image = _image(3, "float32")
    expected = ours(image, 3, backend="numba")
    holder = np.zeros(image.shape[:-1] + (2 * image.shape[-1],), dtype=np.float32)
    output = holder[..., ::2]
    assert ours(image, 3, backend="numba", output=output) is output
    assert len(copies) == 1
    np.testing.assert_array_equal(output, expected)
    assert not holder[..., 1::2].any()


@pytest.mark.parametrize("name", ["gaussian", "uniform", "median", "gradient_magnitude",
                                  "correlate"])
def test_float64_output_for_float32_image_casts(name, copies):
    ours, _ = FILTERS[name]
    image = _image(3, "float32")
    expected = ours(image, 3, backend="numba")
    output = np.empty(image.shape, dtype=np.float64)
    assert ours(image, 3, backend="numba", output=output) is output
    assert len(copies) == 1
    np.testing.assert_array_equal(output, expected.astype(np.float64))


def test_integer_image_into_float32_output_is_direct(copies):
    """The working dtype of an integer image is float32: its output is written directly
    (the kernel reads the image cast to float32)."""
    image = np.random.default_rng(4).integers(0, 4000, size=(10, 20, 30)).astype(np.uint16)
    expected = mf.gaussian_filter(image, 2.0, backend="numba")
    output = np.empty(image.shape, dtype=np.float32)
    assert mf.gaussian_filter(image, 2.0, backend="numba", output=output) is output
    assert copies == []
    np.testing.assert_array_equal(output, expected)


def test_the_numpy_backend_copies_and_chunks_write_into_output(copies, monkeypatch):
    """The numpy backend keeps the copy; a NumPy image chunked by the memory budget is
    written block by block into ``output`` (no copy of a whole result)."""
    image = _image(3, "float32")
    expected = mf.uniform_filter(image, 5, backend="numba")
    output = np.empty_like(image)
    assert mf.uniform_filter(image, 5, backend="numpy", output=output) is output
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-6)
    assert len(copies) == 1
    monkeypatch.setenv(chunking.MEMORY_BUDGET_ENV, str(image.nbytes))  # 4 volumes > budget
    output = np.full_like(image, np.nan)
    assert mf.uniform_filter(image, 5, backend="numba", output=output) is output
    assert len(copies) == 1
    np.testing.assert_array_equal(output, expected)


def test_wrong_shape_and_keyword_errors_unchanged():
    image = _image(2, "float32")
    with pytest.raises(ValueError, match="`output` must have the result's shape"):
        mf.gaussian_filter(image, 1.0, backend="numba", output=np.empty((2, 2), np.float32))
    with pytest.raises(ValueError, match="`output` must have the result's shape"):
        mf.median_filter(image, size=3, backend="numba", output=np.empty(image.shape[::-1],
                                                                          np.float32))
    with pytest.raises(TypeError, match="unexpected keyword argument 'out'"):
        mf.uniform_filter(image, 3, out=np.empty_like(image))
    import inspect

    assert "out" not in inspect.signature(mf.gaussian_filter).parameters


def test_kernel_out_checks():
    image = _image(3, "float32")
    w = np.array([1.0, 2.0, 1.0])
    good = np.empty_like(image)
    assert nk.correlate1d(image, w, 1, 0, 0.0, out=good) is good
    np.testing.assert_array_equal(good, nk.correlate1d(image, w, 1, 0, 0.0))
    for bad, match in [(np.empty(image.shape, np.float64), "shape .* and dtype"),
                       (np.empty((3, 3, 3), np.float32), "shape .* and dtype"),
                       (np.empty(image.shape[::-1], np.float32).T, "C-contiguous"),
                       (image, "overlap")]:
        with pytest.raises(ValueError, match=match):
            nk.correlate1d(image, w, 1, 0, 0.0, out=bad)
        with pytest.raises(ValueError, match=match):
            nk.gradient_magnitude(image, 0, (0, 1, 2), 0, 0.0, out=bad)
    readonly = np.empty_like(image)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        nk.rank_filter(image, np.ones((3, 3, 3), bool), 13, 0, 0.0, out=readonly)
