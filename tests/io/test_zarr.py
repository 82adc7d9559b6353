"""Zarr / OME-Zarr reading, the atomic writer, and chunk-by-chunk (memory bounded) filtering."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from dask.callbacks import Callback
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from medimg_fast.io import Volume, open_volume, save_volume
from medimg_fast.io._zarr import _store_regions

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def test_round_trip_and_metadata_on_disk(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(10, 12, 14)).astype(np.float32)
    direction = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)
    vol = Volume(data=da.from_array(data, chunks=(5, 6, 7)), spacing=(2.5, 0.75, 0.5),
                 origin=(-10.0, 20.0, 30.0), direction=direction, modality="CT")
    path = save_volume(vol, tmp_path / "v.zarr")
    assert path == tmp_path / "v.zarr"

    # The store as written, read with plain JSON/zarr (not our reader).
    group_meta = json.loads((path / "zarr.json").read_text())
    assert group_meta["zarr_format"] == 3
    ms = group_meta["attributes"]["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    transforms = ms["datasets"][0]["coordinateTransformations"]
    assert transforms[0] == {"type": "scale", "scale": [2.5, 0.75, 0.5]}
    array_meta = json.loads((path / "0" / "zarr.json").read_text())
    # default store chunks: slabs of whole planes (here the whole small volume), whole blocks
    assert array_meta["chunk_grid"]["configuration"]["chunk_shape"] == [10, 12, 14]
    # the default codec: Blosc LZ4 with byte shuffle (benchmarks/bench_out_of_core.py codecs)
    assert any(c["name"] == "blosc" and c["configuration"]["cname"] == "lz4"
               and c["configuration"]["shuffle"] == "shuffle" for c in array_meta["codecs"])
    np.testing.assert_array_equal(zarr.open_array(str(path / "0"), mode="r")[...], data)

    back = open_volume(path)
    np.testing.assert_array_equal(np.asarray(back.data), data)
    assert back.spacing == (2.5, 0.75, 0.5)
    assert back.origin == (-10.0, 20.0, 30.0)
    np.testing.assert_array_equal(back.direction, direction)
    assert back.modality == "CT"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp left behind


def test_numpy_input_overwrite_and_errors(tmp_path):
    path = tmp_path / "a.zarr"
    save_volume(np.zeros((3, 4, 5), np.uint16), path, spacing=(1, 2, 3))
    assert open_volume(path).spacing == (1.0, 2.0, 3.0)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_volume(np.ones((3, 4, 5), np.uint16), path)
    save_volume(np.ones((3, 4, 5), np.uint16), path, overwrite=True)
    back = open_volume(path)
    assert back.data.dtype == np.uint16 and int(back.data.sum()) == 60
    assert back.spacing == (1.0, 1.0, 1.0)  # the new store replaced the old one entirely
    with pytest.raises(ValueError, match="`spacing` must be 3 positive"):
        save_volume(np.ones((3, 4, 5)), tmp_path / "b.zarr", spacing=(1, 0, 1))
    with pytest.raises(ValueError, match="3-D"):
        save_volume(np.ones((3, 4)), tmp_path / "c.zarr")
    with pytest.raises(TypeError, match="Volume, a NumPy array or a Dask array"):
        save_volume([[1]], tmp_path / "d.zarr")


def test_ome_zarr_written_by_hand_level0_and_units(tmp_path):
    path = tmp_path / "ome.zarr"
    level0 = np.arange(1 * 1 * 4 * 6 * 8, dtype=np.int16).reshape(1, 1, 4, 6, 8)
    attrs = {"ome": {"version": "0.5", "multiscales": [{
        "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
        + [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
        "datasets": [
            {"path": "s0", "coordinateTransformations": [
                {"type": "scale", "scale": [1, 1, 500.0, 250.0, 250.0]},
                {"type": "translation", "translation": [0, 0, 1000.0, 2000.0, 3000.0]}]},
            {"path": "s1", "coordinateTransformations": [
                {"type": "scale", "scale": [1, 1, 1000.0, 500.0, 500.0]}]},
        ]}]}}
    group = zarr.open_group(str(path), mode="w", zarr_format=3, attributes=attrs)
    group.create_array("s0", data=level0, chunks=(1, 1, 2, 3, 4))
    group.create_array("s1", data=level0[:, :, ::2, ::2, ::2])
    vol = open_volume(path)
    assert vol.shape == (4, 6, 8)
    np.testing.assert_array_equal(np.asarray(vol.data), level0[0, 0])
    assert vol.spacing == pytest.approx((0.5, 0.25, 0.25))
    assert vol.origin == pytest.approx((3.0, 2.0, 1.0))  # world (x, y, z) from (z, y, x)


def test_plain_zarr_array(tmp_path):
    data = np.random.default_rng(2).integers(0, 100, (5, 6, 7)).astype(np.uint8)
    zarr.save_array(str(tmp_path / "plain.zarr"), data, zarr_format=3)
    vol = open_volume(tmp_path / "plain.zarr")
    np.testing.assert_array_equal(np.asarray(vol.data), data)
    assert vol.spacing == (1.0, 1.0, 1.0)


class _LargestResult(Callback):
    """Records the largest array any single task of a Dask computation produced."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        self.largest = max(self.largest, getattr(result, "nbytes", 0))


def test_filtering_a_chunked_zarr_streams_chunk_by_chunk(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(48, 48, 48)).astype(np.float32)
    src = tmp_path / "src.zarr"
    save_volume(data, src, chunks=(16, 16, 16))
    vol = open_volume(src, chunks=(16, 16, 16))
    assert vol.data.numblocks == (3, 3, 3)

    def smooth(block):
        return ndimage.uniform_filter(block, size=3, mode="reflect")

    # dask's "reflect" boundary is scipy's "reflect" (edge sample repeated).
    filtered = vol.data.map_overlap(smooth, depth=1, boundary="reflect")
    watcher = _LargestResult()
    with watcher, dask.config.set(scheduler="synchronous"):
        save_volume(Volume(data=filtered, spacing=vol.spacing), tmp_path / "out.zarr")
    expected = ndimage.uniform_filter(data.astype(np.float64), size=3, mode="reflect")
    np.testing.assert_allclose(np.asarray(open_volume(tmp_path / "out.zarr").data), expected,
                               rtol=1e-5, atol=1e-6)
    # No task held more than a chunk plus its halo (18^3 voxels), far from the whole volume.
    assert 0 < watcher.largest <= 18**3 * 4 < data.nbytes / 10


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.lists(st.integers(1, 9), min_size=1, max_size=6), min_size=1,
                       max_size=4),
       itemsize=st.sampled_from([1, 4, 8]), budget=st.integers(1, 4000))
def test_store_regions_tile_the_array_within_the_budget(chunks, itemsize, budget):
    chunks = tuple(tuple(c) for c in chunks)
    shape = tuple(sum(c) for c in chunks)
    covered = np.zeros(shape, np.int32)
    bounds = [set(np.cumsum((0,) + c).tolist()) for c in chunks]
    largest_block = itemsize * int(np.prod([max(c) for c in chunks]))
    for region in _store_regions(chunks, itemsize, budget):
        covered[region] += 1
        # whole blocks only, so no two regions write one chunk of the store
        assert all(s.start in b and s.stop in b for s, b in zip(region, bounds))
        nbytes = itemsize * int(np.prod([s.stop - s.start for s in region]))
        assert nbytes <= max(budget, largest_block)
    assert (covered == 1).all()


def test_store_in_small_regions_writes_the_same_volume(tmp_path, monkeypatch):
    from medimg_fast import chunking

    data = np.random.default_rng(5).normal(size=(40, 320, 96)).astype(np.float32)
    lazy = da.from_array(data, chunks=(16, 64, 96))
    step = 16 * 64 * 96 * 4 * 3  # three blocks a step (just over the 1 MiB floor)
    monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", str(32 * step))
    assert chunking.write_step_bytes() == step
    regions = list(_store_regions(lazy.chunks, 4, step))
    assert len(regions) == 3 * 2  # each z block-row (5 blocks) split into y runs of 3, 2
    stored = []
    real_store = da.store
    monkeypatch.setattr(da, "store", lambda source, *a, **k: (
        stored.append(source.shape), real_store(source, *a, **k))[1])
    save_volume(lazy, tmp_path / "small.zarr", chunks=(16, 64, 96))
    # z block-rows of 16, 16, 8; each split into y runs of 3 and 2 blocks of 64
    assert stored == [(16, 192, 96), (16, 128, 96)] * 2 + [(8, 192, 96), (8, 128, 96)]
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "small.zarr").data), data)


@pytest.mark.parametrize("shape, store_chunks", [
    ((96, 200, 160), (16, 16, 16)),      # small store chunks: grouped into bigger blocks
    ((40, 512, 512), (1, 512, 512)),     # one slice per store chunk
    ((30, 70, 90), (64, 64, 64)),        # one store chunk covers most of the volume
    ((8, 2048, 2048), (8, 1024, 1024)),  # store chunks above the target: never split
])
def test_zarr_dask_chunks_are_whole_store_chunks(tmp_path, shape, store_chunks):
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=shape, chunks=store_chunks,
                          dtype="float32", fill_value=0)
    vol = open_volume(tmp_path / "a.zarr")
    blocks = tuple(c[0] for c in vol.data.chunks)
    for b, s, n in zip(blocks, store_chunks, shape):
        assert b == n or b % s == 0  # whole store chunks (the last block may be short)
    nbytes = 4 * int(np.prod(blocks))
    # slabs of about 1/64 of the memory budget (32 MiB), never less than one store chunk
    assert nbytes <= max(32 * 2**20, 4 * int(np.prod([min(s, n) for s, n in
                                                       zip(store_chunks, shape)])))
    cut = [a for a, (b, n) in enumerate(zip(blocks, shape)) if b < n]
    assert all(blocks[a] == shape[a] for a in range(cut[-1] + 1 if cut else 0, 3))
    if store_chunks == (16, 16, 16):
        assert vol.data.npartitions < z.nchunks / 8  # far fewer tasks than store chunks
    assert open_volume(tmp_path / "a.zarr", chunks=(8, 10, 10)).data.chunksize == (8, 10, 10)


def test_zarr_dask_chunks_shrink_with_a_small_memory_budget(tmp_path, monkeypatch):
    zarr.create_array(str(tmp_path / "a.zarr"), shape=(256, 256, 256), chunks=(32, 32, 32),
                      dtype="float32", fill_value=0)
    default = open_volume(tmp_path / "a.zarr").data.chunksize
    monkeypatch.setenv("MEDIMG_FAST_MEMORY_BUDGET", "256MiB")
    small = open_volume(tmp_path / "a.zarr").data.chunksize
    assert 8 * 2**20 < 4 * np.prod(default) <= 32 * 2**20  # about 32 MiB
    assert default[1:] == (256, 256)  # slabs: whole planes
    assert 4 * np.prod(small) <= 4 * 2**20  # 1/64 of the budget
    assert all(c % 32 == 0 for c in default + small)


def test_open_volume_chunks_for_other_formats(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8))
    vol = open_volume(tmp_path / "v.npy", chunks=(2, 7, 4))
    assert vol.data.chunks == ((2, 2, 2), (7,), (4, 4))
    np.testing.assert_array_equal(vol.data.compute(), np.load(tmp_path / "v.npy"))


def test_killed_write_leaves_no_store_at_the_final_path(tmp_path):
    target = tmp_path / "slow.zarr"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {SRC!r})
        import dask, dask.array as da, numpy as np
        from medimg_fast.io import save_volume

        def slow(block):
            time.sleep(0.2)
            return block
        data = da.ones((20, 8, 8), chunks=(1, 8, 8), dtype=np.float32).map_blocks(slow)
        with dask.config.set(scheduler="synchronous"):
            save_volume(data, {str(target)!r}, chunks=(1, 8, 8))  # one chunk per block
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        partial = []
        while time.monotonic() < deadline and not partial:
            partial = [p for p in os.listdir(tmp_path) if p.startswith(".slow.zarr.partial-")]
            chunks = (os.listdir(tmp_path / partial[0] / "0" / "c")
                      if partial and (tmp_path / partial[0] / "0" / "c").exists() else [])
            if not chunks:
                partial = []
                time.sleep(0.05)
        assert partial, "the writer never started writing chunks"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not target.exists()
    # A fresh write completes and is complete.
    save_volume(np.ones((20, 8, 8), np.float32), target)
    assert float(open_volume(target).data.sum()) == 20 * 64
