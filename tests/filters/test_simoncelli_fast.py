"""Simoncelli wavelet with its transfer function cached per (shape, level, dtype).

Reference: the full complex DFT in float64 (``numpy.fft.fftn``) times the transfer
function written out from the IBSI-2 formula here, independent of our code.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from _filter_cases import random_image

from medimg_fast.filters import _wavelet, simoncelli_filter


def _reference(image, level):
    grids = np.meshgrid(*[np.fft.fftfreq(n) * 2.0 for n in image.shape], indexing="ij",
                        sparse=True)
    nu = np.sqrt(sum(g * g for g in grids))
    nu_max = 2.0 ** -(level - 1)
    inside = (nu >= nu_max / 4) & (nu <= nu_max)
    h = np.where(inside, np.cos(np.pi / 2 * np.log2(2 * np.clip(nu, 1e-12, None) / nu_max)),
                 0.0)
    return np.fft.ifftn(np.fft.fftn(image) * h).real


@pytest.fixture
def empty_cache(monkeypatch):
    monkeypatch.setattr(_wavelet, "_transfer_cache", type(_wavelet._transfer_cache)())
    return _wavelet._transfer_cache


@pytest.mark.parametrize("shape", [(16, 12, 10), (7, 9, 5), (1, 8, 6)], ids=str)
@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int16"])
def test_matches_float64_dft_and_repeats_from_cache(shape, level, dtype, rng, empty_cache):
    image = random_image(rng, shape, dtype)
    reference = _reference(image.astype(np.float64), level)
    first = simoncelli_filter(image, level, backend="numpy")
    assert len(empty_cache) == 1
    second = simoncelli_filter(image, level, backend="numba")  # from the cache
    assert len(empty_cache) == 1
    np.testing.assert_array_equal(first, second)
    tol = (2e-6 if dtype != "float64" else 1e-12) * float(np.ptp(reference))
    np.testing.assert_allclose(first, reference, rtol=0, atol=tol)


def test_cache_keys_shape_level_and_dtype(rng, empty_cache):
    image = random_image(rng, (8, 10, 12), "float32")
    simoncelli_filter(image, 1, backend="numpy")
    simoncelli_filter(image, 2, backend="numpy")
    simoncelli_filter(image.astype(np.float64), 1, backend="numpy")
    simoncelli_filter(image[:, :, :11].copy(), 1, backend="numpy")
    simoncelli_filter(image, 1, mode="mirror", backend="numpy")  # extended grid
    assert len(empty_cache) == 5
    for transfer in empty_cache.values():
        assert not transfer.flags.writeable
    cached = _wavelet._cached_transfer((8, 10, 12), 1, np.float32)
    fresh = _wavelet.simoncelli_transfer((8, 10, 12), 1, half=True).astype(np.float32)
    np.testing.assert_array_equal(cached, fresh)


def test_cache_stays_within_its_byte_budget(rng, empty_cache, monkeypatch):
    one = _wavelet._cached_transfer((8, 8, 8), 1, np.float64).nbytes
    monkeypatch.setattr(_wavelet, "_TRANSFER_CACHE_BYTES", 2 * one)
    for n in (8, 9, 10, 11):
        _wavelet._cached_transfer((n, 8, 8), 1, np.float64)
    assert sum(t.nbytes for t in empty_cache.values()) <= 2 * one
    assert (11, 8, 8) in {k[0] for k in empty_cache}  # the newest is kept
    big = _wavelet._cached_transfer((64, 64, 64), 1, np.float64)  # larger than the budget
    assert big.shape == (64, 64, 33)
    assert (64, 64, 64) not in {k[0] for k in empty_cache}


@pytest.mark.parametrize("mode", ["wrap", "mirror", "constant"])
def test_dask_blocks_reuse_cache_and_stay_exact(mode, rng, empty_cache):
    image = random_image(rng, (6, 10, 12), "float32")
    whole = simoncelli_filter(image, 1, mode=mode, cval=1.5, dims="2D", backend="numba")
    lazy = simoncelli_filter(da.from_array(image, chunks=(2, 5, 6)), 1, mode=mode, cval=1.5,
                             dims="2D", backend="numba")
    np.testing.assert_array_equal(lazy.compute(), whole)
    assert len(empty_cache) == 1  # every block has the same shape


def _transfer_direct(shape, level, half):
    """H on every bin of the grid, straight from the formula (no folding)."""
    freqs = [np.fft.rfftfreq(n) if half and i == len(shape) - 1 else np.fft.fftfreq(n)
             for i, n in enumerate(shape)]
    grids = np.meshgrid(*[2.0 * f for f in freqs], indexing="ij", sparse=True)
    nu = np.sqrt(sum(g * g for g in grids))
    nu_max = 2.0 ** -(level - 1)
    inside = (nu >= nu_max / 4) & (nu <= nu_max)
    out = np.zeros(nu.shape)
    out[inside] = np.cos(np.pi / 2 * np.log2(2.0 * nu[inside] / nu_max))
    return out


@pytest.mark.parametrize("shape", [(1,), (8,), (7, 6), (9, 8, 7), (16, 1, 3), (2, 3, 4, 5)],
                         ids=str)
@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("level", [1, 3])
def test_folded_transfer_equals_direct_formula(shape, half, level):
    # the transfer is evaluated on a folded grid and unfolded: every bin must hold
    # exactly the value of the direct evaluation
    direct = _transfer_direct(shape, level, half)
    folded = _wavelet.simoncelli_transfer(shape, level, half=half)
    assert folded.shape == direct.shape
    np.testing.assert_array_equal(folded, direct)
    single = _wavelet.simoncelli_transfer(shape, level, half=half, dtype=np.float32)
    assert single.dtype == np.float32
    np.testing.assert_array_equal(single, direct.astype(np.float32))
