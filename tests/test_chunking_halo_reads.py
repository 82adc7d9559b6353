"""Halo filters on Dask arrays read straight from a store (``map_with_halo``'s direct path).

Each block reads itself plus a thin halo from the source, never its neighbours whole; the
result must be bit-identical to filtering the whole array in memory, for every boundary
mode, dtype and chunking (hypothesis), and the writer must store whole chunks, each
block computed once.
"""

from __future__ import annotations

import json
import os

import dask.array as da
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zarr.storage import LocalStore, MemoryStore, WrapperStore

import medimg_fast as mf
from medimg_fast import chunking
from medimg_fast._shared.boundary import MODES
from medimg_fast.io import Volume, open_volume, save_volume
from medimg_fast.io._zarr import _default_chunks, slab_shape

FILTERS = {
    "gaussian": lambda x, s, n, **k: mf.gaussian_filter(x, s, **k),
    "gaussian_gradient_magnitude": lambda x, s, n, **k: mf.gaussian_gradient_magnitude(
        x, s, **k),
    "difference_of_gaussians": lambda x, s, n, **k: mf.difference_of_gaussians(
        x, s, 2 * s, **k),
    "uniform": lambda x, s, n, **k: mf.uniform_filter(x, n, **k),
    "median": lambda x, s, n, **k: mf.median_filter(x, size=n, **k),
    "minimum": lambda x, s, n, **k: mf.minimum_filter(x, size=n, **k),
    "sobel": lambda x, s, n, **k: mf.sobel(x, axis=-1, **k),
    "laplace": lambda x, s, n, **k: mf.laplace(x, **k),
}


def _memory_array(data, chunks):
    z = zarr.create_array(MemoryStore(), shape=data.shape, dtype=data.dtype, chunks=chunks,
                          fill_value=0)
    z[...] = data
    return z


def _random(rng, shape, dtype):
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 100, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -2000), min(info.max, 3000), shape, endpoint=True,
                        dtype=dtype)


@st.composite
def stored_volumes(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 14), min_size=ndim, max_size=ndim)))
    store_chunks = tuple(draw(st.integers(1, s)) for s in shape)
    # Dask blocks: whole store chunks or any other cut (both must give the same result).
    blocks = tuple(draw(st.one_of(st.just(c), st.integers(1, s)))
                   for c, s in zip(store_chunks, shape))
    dtype = draw(st.sampled_from(["uint8", "int16", "float32", "float64"]))
    data = _random(np.random.default_rng(draw(st.integers(0, 2**31 - 1))), shape, dtype)
    return data, store_chunks, blocks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volume=stored_volumes(), name=st.sampled_from(sorted(FILTERS)),
       mode=st.sampled_from(MODES), sigma=st.floats(0.3, 3.0), size=st.integers(1, 6),
       backend=st.sampled_from(["numpy", "numba"]))
def test_direct_reads_equal_the_whole_array_in_memory(volume, name, mode, sigma, size,
                                                      backend):
    data, store_chunks, blocks = volume
    lazy = da.from_zarr(_memory_array(data, store_chunks), chunks=blocks)
    kwargs = {"mode": mode, "backend": backend}
    if mode == "constant":
        kwargs["cval"] = 7.0
    result = FILTERS[name](lazy, sigma, size, **kwargs)
    assert chunking.sliceable_source(lazy) is not None
    assert result.chunks == lazy.chunks
    expected = FILTERS[name](data, sigma, size, **kwargs)
    got = result.compute(scheduler="threads")
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_open_volume_takes_the_direct_path_and_matches_scipy(tmp_path, mode, dtype):
    from scipy import ndimage

    rng = np.random.default_rng(4)
    data = _random(rng, (37, 20, 18), dtype)
    save_volume(data, tmp_path / "v.zarr", chunks=(3, 20, 18))
    vol = open_volume(tmp_path / "v.zarr", chunks=(9, 20, 18))
    result = mf.gaussian_filter(vol.data, 1.0, mode=mode, backend="numba")
    assert result.name.startswith("halo-")  # read straight from the store
    np.testing.assert_array_equal(result.compute(),
                                  mf.gaussian_filter(data, 1.0, mode=mode, backend="numba"))
    # and the in-memory kernel itself against an independent float64 reference
    # (float32 arithmetic: rtol 1e-5 of the data's scale)
    reference = ndimage.gaussian_filter(data.astype(np.float64), 1.0, mode=mode)
    np.testing.assert_allclose(result.compute(), reference, rtol=1e-5,
                               atol=1e-5 * float(np.abs(data).max()))


def test_other_graphs_fall_back_and_stay_exact():
    data = np.random.default_rng(1).normal(size=(12, 9, 10)).astype(np.float32)
    z = _memory_array(data, (4, 9, 10))
    for lazy in (da.from_zarr(z) + 1, da.from_array(data, chunks=(4, 9, 5)),
                 da.from_zarr(z).rechunk((5, 9, 10))):
        assert chunking.sliceable_source(lazy) is None
        result = mf.uniform_filter(lazy, 3, mode="wrap")
        assert not result.name.startswith("halo-")
        np.testing.assert_array_equal(result.compute(),
                                      mf.uniform_filter(np.asarray(lazy), 3, mode="wrap"))


class CountingStore(WrapperStore):
    """A store that records the key of every chunk read (zarr.json reads excluded)."""

    def __init__(self, store):
        super().__init__(store)
        self.reads = []

    def _with_store(self, store):
        return type(self)(store)

    async def get(self, key, prototype, byte_range=None):
        if not key.endswith("zarr.json"):
            self.reads.append(key)
        return await self._store.get(key, prototype, byte_range)


def _chunk_index(key):
    return tuple(int(k) for k in key.split("/")[-3:])


@pytest.mark.parametrize("mode", ["reflect", "wrap"])
def test_a_block_reads_only_the_store_chunks_its_halo_falls_in(tmp_path, mode):
    data = np.random.default_rng(2).normal(size=(40, 24, 16)).astype(np.float32)
    z = zarr.create_array(LocalStore(str(tmp_path / "a.zarr")), shape=data.shape,
                          dtype=data.dtype, chunks=(2, 24, 16), fill_value=0)
    z[...] = data
    counting = CountingStore(LocalStore(str(tmp_path / "a.zarr"), read_only=True))
    source = zarr.open_array(store=counting, mode="r")
    lazy = da.from_zarr(source, chunks=(8, 24, 16))  # 5 blocks of 4 store chunks each
    result = mf.uniform_filter(lazy, 3, mode=mode)  # halo: 1 plane each side
    for i in range(5):
        counting.reads.clear()
        block = result.blocks[i].compute(scheduler="synchronous")
        np.testing.assert_array_equal(
            block, mf.uniform_filter(data, 3, mode=mode)[8 * i:8 * i + 8])
        read = sorted(_chunk_index(k)[0] for k in counting.reads)
        own = list(range(4 * i, 4 * i + 4))
        halo = [c for c in (4 * i - 1, 4 * i + 4) if 0 <= c < 20]
        if mode == "wrap":  # the outer blocks take the far face's plane
            halo = [c % 20 for c in (4 * i - 1, 4 * i + 4)]
        # one store chunk (2 planes) per halo side, each read once: never a whole
        # neighbouring block (4 chunks), as an overlap of whole blocks would read
        assert read == sorted(own + halo)


def test_writer_stores_whole_chunks_and_computes_each_block_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", str(64 * 2**20))  # 2 MiB write steps
    data = np.random.default_rng(3).normal(size=(96, 64, 64)).astype(np.float32)
    save_volume(data, tmp_path / "src.zarr")
    vol = open_volume(tmp_path / "src.zarr")
    calls = []

    def counted(block):
        calls.append(block.shape)
        return mf.uniform_filter(block, 3, mode="nearest")

    result = chunking.map_with_halo(vol.data, counted, (1, 1, 1), mode="nearest",
                                    dtype=np.float32)
    calls.clear()
    save_volume(Volume(data=result, spacing=vol.spacing), tmp_path / "out.zarr")
    assert len(calls) == result.npartitions  # no block computed for two write steps
    out = zarr.open_array(str(tmp_path / "out.zarr" / "0"), mode="r")
    for c, b in zip(out.chunks, result.chunks):
        assert all(n % c == 0 for n in b[:-1])  # store chunks divide the blocks
    np.testing.assert_array_equal(out[...], mf.uniform_filter(data, 3, mode="nearest"))


@pytest.mark.parametrize("codec, name", [("lz4", "blosc"), ("zstd", "zstd")])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "float64"])
def test_codec_round_trip(tmp_path, codec, name, dtype):
    data = _random(np.random.default_rng(5), (9, 33, 17), dtype)
    for i, x in enumerate((data, da.from_array(data, chunks=(4, 33, 17)))):
        path = save_volume(x, tmp_path / f"v{i}.zarr", codec=codec, compression_level=5)
        meta = json.loads((path / "0" / "zarr.json").read_text())
        codecs = {c["name"]: c.get("configuration", {}) for c in meta["codecs"]}
        assert name in codecs
        if codec == "lz4":
            assert codecs["blosc"]["cname"] == "lz4"
            assert codecs["blosc"]["shuffle"] == "shuffle"
            assert codecs["blosc"]["clevel"] == 5
        back = open_volume(path).data.compute()
        assert back.dtype == data.dtype
        np.testing.assert_array_equal(back, data)


def test_bad_codec_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="codec"):
        save_volume(np.zeros((2, 3, 4), np.float32), tmp_path / "v.zarr", codec="lzma")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("shape, itemsize, expected", [
    ((512, 512, 512), 2, (4, 512, 512)),     # 2 MiB: four int16 planes
    ((512, 512, 512), 4, (2, 512, 512)),
    ((64, 1024, 1024), 4, (1, 512, 1024)),   # a plane above 2 MiB: cut along y
    ((3, 5, 7), 8, (3, 5, 7)),               # small: one chunk
])
def test_default_store_chunks_are_slabs_of_planes(shape, itemsize, expected):
    assert _default_chunks(shape, itemsize) == expected
    # with Dask blocks, each axis a divisor of the block
    assert _default_chunks(shape, itemsize, (6,) + shape[1:])[0] in (1, 2, 3, 6)


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       data=st.data(), itemsize=st.sampled_from([1, 2, 4, 8]),
       target=st.integers(1, 100_000))
def test_slab_shape_is_whole_units_within_the_target(shape, data, itemsize, target):
    unit = tuple(data.draw(st.integers(1, n)) for n in shape)
    block = slab_shape(shape, unit, itemsize, target)
    assert all(b == n or b % u == 0 for b, u, n in zip(block, unit, shape))
    assert all(1 <= b <= n for b, n in zip(block, shape))
    nbytes = itemsize * int(np.prod(block))
    assert nbytes <= max(target, itemsize * int(np.prod(unit)))
    # axes after the first cut one are whole
    cut = [a for a, (b, n) in enumerate(zip(block, shape)) if b < n]
    if cut:
        assert all(block[a] == shape[a] for a in range(cut[-1] + 1, len(shape)))


def test_counting_store_sees_reads():
    # the wrapper used above records chunk reads (guards the byte-count tests themselves)
    store = CountingStore(MemoryStore())
    z = zarr.create_array(store, shape=(4, 4), chunks=(2, 4), dtype="f4", fill_value=0)
    z[...] = 1
    store.reads.clear()
    assert z[0:1, :].sum() == 4
    assert len(store.reads) == 1
