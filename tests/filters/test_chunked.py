"""Dask inputs: lazy, chunked like the input, and bit-identical to the unchunked result.

Property tests (hypothesis) draw shapes, chunkings (chunks thinner than the halo
included), filter parameters and boundary modes; ``wrap`` and ``mirror`` at the faces
need voxels from the far side or several folds, which the halo logic must supply.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from _filter_cases import CASES, assert_close_to_reference, random_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

import medimg_fast as mf
from medimg_fast import chunking
from medimg_fast._shared.boundary import MODES

CPU = ("numpy", "numba")


@st.composite
def chunked_volumes(draw, max_ndim=3):
    ndim = draw(st.integers(1, max_ndim))
    shape = tuple(draw(st.lists(st.integers(1, 12), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, max(1, s))) for s in shape)
    seed = draw(st.integers(0, 2**31 - 1))
    dtype = draw(st.sampled_from(["uint8", "int16", "float32", "float64"]))
    image = random_image(np.random.default_rng(seed), shape, dtype)
    return image, chunks


FILTERS = {
    "gaussian": lambda x, p, **k: mf.gaussian_filter(x, p["sigma"], **k),
    "gaussian_laplace": lambda x, p, **k: mf.gaussian_laplace(x, p["sigma"], **k),
    "gaussian_gradient_magnitude": lambda x, p, **k: mf.gaussian_gradient_magnitude(
        x, p["sigma"], **k),
    "uniform": lambda x, p, **k: mf.uniform_filter(x, p["size"], **k),
    "median": lambda x, p, **k: mf.median_filter(x, size=p["size"], **k),
    "minimum": lambda x, p, **k: mf.minimum_filter(x, size=p["size"], **k),
    "maximum": lambda x, p, **k: mf.maximum_filter(x, size=p["size"], **k),
    "sobel": lambda x, p, **k: mf.sobel(x, axis=0, **k),
    "laplace": lambda x, p, **k: mf.laplace(x, **k),
    "gradient_magnitude": lambda x, p, **k: mf.gradient_magnitude(x, **k),
    "difference_of_gaussians": lambda x, p, **k: mf.difference_of_gaussians(
        x, p["sigma"], 2 * p["sigma"], **k),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    volume=chunked_volumes(),
    name=st.sampled_from(sorted(FILTERS)),
    mode=st.sampled_from(MODES),
    sigma=st.floats(0.3, 3.0),
    size=st.integers(1, 6),
    backend=st.sampled_from(CPU),
)
def test_chunked_equals_unchunked(volume, name, mode, sigma, size, backend):
    image, chunks = volume
    params = {"sigma": sigma, "size": size}
    kwargs = {"mode": mode, "cval": 2.5, "backend": backend}
    whole = FILTERS[name](image, params, **kwargs)
    lazy = FILTERS[name](da.from_array(image, chunks=chunks), params, **kwargs)
    assert isinstance(lazy, da.Array)
    assert lazy.chunks == da.from_array(image, chunks=chunks).chunks
    assert lazy.dtype == whole.dtype
    np.testing.assert_array_equal(lazy.compute(), whole)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    volume=chunked_volumes(),
    name=st.sampled_from(sorted(FILTERS)),
    mode=st.sampled_from(MODES),
    sigma=st.floats(0.3, 3.0),
    size=st.integers(1, 6),
)
def test_numba_equals_numpy(volume, name, mode, sigma, size):
    image, _ = volume
    params = {"sigma": sigma, "size": size}
    a = FILTERS[name](image, params, mode=mode, cval=2.5, backend="numba")
    b = FILTERS[name](image, params, mode=mode, cval=2.5, backend="numpy")
    assert a.dtype == b.dtype
    selection = name in ("median", "minimum", "maximum")
    assert_close_to_reference(a, b, float32=a.dtype == np.float32, selection=selection,
                              image=image)


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("mode", MODES)
def test_every_filter_chunked_3d(case, mode, rng):
    # A fixed grid on top of the property test: every public filter, every mode,
    # chunks of 1-4 voxels that cut through every halo.
    image = random_image(rng, (11, 9, 10), "float32")
    lazy = da.from_array(image, chunks=(1, 4, 3))
    whole = case.ours(image, mode=mode, cval=-1.0, backend="numba")
    chunked = case.ours(lazy, mode=mode, cval=-1.0, backend="numba")
    np.testing.assert_array_equal(chunked.compute(), whole)


@pytest.fixture
def chunked_calls(monkeypatch):
    """The NumPy images filtered block by block by the memory budget, as they come."""
    calls = []
    real = chunking.filter_numpy_in_chunks

    def spy(image, *args, **kwargs):
        calls.append(image.shape)
        return real(image, *args, **kwargs)

    monkeypatch.setattr(chunking, "filter_numpy_in_chunks", spy)
    return calls


def test_numpy_larger_than_budget_is_chunked_and_exact(monkeypatch, rng, chunked_calls):
    # int16: the whole-image call would hold a float32 copy of it, over the budget
    image = rng.integers(-1000, 2000, size=(40, 30, 20)).astype(np.int16)
    whole = mf.gaussian_filter(image, 1.5, mode="wrap", backend="numba")
    monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", str(40 * 1024))
    chunks = chunking.chunk_shape_for_budget(image.shape, 4, chunking.memory_budget(), (6, 6, 6))
    assert chunks[0] < image.shape[0]  # the budget really forces chunks
    chunked = mf.gaussian_filter(image, 1.5, mode="wrap", backend="numba")
    assert chunked_calls == [image.shape]
    assert isinstance(chunked, np.ndarray)
    np.testing.assert_array_equal(chunked, whole)


def test_a_gaussian_in_one_sweep_is_not_chunked(monkeypatch, rng, chunked_calls):
    """A float32 Gaussian is one numba sweep that holds no array of the image's size:
    blocks would bound nothing, so the budget does not cut it.  The numpy backend's
    passes each make a new array, and a Fortran-ordered image needs a C-ordered copy:
    those are cut."""
    image = random_image(rng, (40, 30, 20), "float32")
    reference = ndi.gaussian_filter(image.astype(np.float64), 1.5)
    monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", str(40 * 1024))
    output = np.full_like(image, np.nan)
    assert mf.gaussian_filter(image, 1.5, backend="numba", output=output) is output
    assert_close_to_reference(output, reference, float32=True)
    whole = mf.gaussian_filter(image, 1.5, backend="numba")
    np.testing.assert_array_equal(whole, output)
    assert chunked_calls == []
    # the chunked call gives the whole call's values, bit for bit
    np.testing.assert_array_equal(
        mf.gaussian_filter(np.asfortranarray(image), 1.5, backend="numba"), whole)
    assert chunked_calls == [image.shape]
    mf.gaussian_filter(image, 1.5, backend="numpy")
    assert chunked_calls == [image.shape] * 2


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("mode", MODES)
def test_every_filter_on_numpy_blocks_of_the_budget(case, mode, monkeypatch, rng):
    """A NumPy image over the memory budget is filtered block by block (blocks cut along
    two axes here), into a new array or the caller's ``output``: the whole array's
    values, bit for bit."""
    image = random_image(rng, (13, 11, 9), "float32")
    whole = case.ours(image, mode=mode, cval=-1.0, backend="numba")
    monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", str(12 * 1024))
    chunks = chunking.chunk_shape_for_budget(image.shape, 4, chunking.memory_budget(), (2, 2, 2))
    assert chunks[0] == 1 and chunks[1] < image.shape[1]  # cuts along z and y
    np.testing.assert_array_equal(case.ours(image, mode=mode, cval=-1.0, backend="numba"),
                                  whole)
    # difference_of_gaussians has scikit-image's signature: no ``output``
    if whole.dtype == np.float32 and case.name != "difference_of_gaussians":
        output = np.full(image.shape, np.nan, np.float32)
        got = case.ours(image, mode=mode, cval=-1.0, backend="numba", output=output)
        assert got is output
        np.testing.assert_array_equal(output, whole)


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("mode", [m for m in MODES if m != "wrap"])
def test_every_filter_on_slabs_written_in_place(case, mode, monkeypatch, rng):
    """Slabs of whole planes (the budget cuts z alone) are filtered straight into the
    result's planes, halo planes included and then restored: the whole array's values."""
    image = random_image(rng, (64, 40, 40), "float32")
    whole = case.ours(image, mode=mode, cval=-1.0, backend="numba")
    slabs = []
    real = chunking._slabs_in_place

    def spy(image, block_function, depth, thickness, result):
        slabs.append(thickness)
        return real(image, block_function, depth, thickness, result)

    monkeypatch.setattr(chunking, "_slabs_in_place", spy)
    monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", str(700 * 1024))
    got = case.ours(image, mode=mode, cval=-1.0, backend="numba")
    np.testing.assert_array_equal(got, whole)
    if slabs:  # the filters whose op writes into ``out`` take the slab path
        assert slabs[0] < image.shape[0]
    if case.name.startswith(("uniform", "median", "gradient_magnitude")):
        assert slabs


def test_memory_budget_takes_sizes(monkeypatch):
    monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", "1GiB")
    assert chunking.memory_budget() == 2**30
    assert chunking.write_step_bytes() == 2**30 // 32
    monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", "1e6")
    assert chunking.memory_budget() == 10**6
    assert chunking.write_step_bytes() == 2**20  # never below one MiB
    monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", "0")
    with pytest.raises(ValueError, match="must be positive"):
        chunking.memory_budget()


def test_bad_memory_budget_is_reported(monkeypatch):
    monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="MEDIMG_FAST_MEMORY_BUDGET"):
        mf.gaussian_filter(np.ones((4, 4)), 1.0)


def test_chunked_reference_against_scipy_directly(rng):
    # Independent of the unchunked path: the chunked answer against scipy in float64.
    from scipy import ndimage as ndi

    image = random_image(rng, (16, 12, 14), "float64")
    for mode in MODES:
        lazy = mf.gaussian_filter(da.from_array(image, chunks=(5, 3, 7)), 2.0, mode=mode,
                                  cval=0.7, backend="numba")
        assert_close_to_reference(lazy.compute(),
                                  ndi.gaussian_filter(image, 2.0, mode=mode, cval=0.7),
                                  float32=False)
