"""Zarr arrays (v2 or v3) and OME-Zarr images (level 0), and the atomic OME-Zarr v3 writer."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from ._volume import CorruptVolumeError, Volume, VolumeReadError

#: Metres of each OME-NGFF space unit, used to convert scales to mm.
_UNIT_TO_MM = {
    "millimeter": 1.0, "micrometer": 1e-3, "nanometer": 1e-6, "centimeter": 10.0,
    "meter": 1e3, "mm": 1.0, "um": 1e-3, "micron": 1e-3,
}
#: Our own group attribute keeping the LPS geometry OME-NGFF cannot express (rotation).
_GEOMETRY_KEY = "medimg_fast"
#: Bytes of one store chunk the writer aims at.  Chunks are slabs (whole planes where a
#: plane fits), so a filter's halo along z costs a few planes of the neighbouring chunks.
_STORE_CHUNK_BYTES = 2 * 2**20
#: A Dask block read from a store is about 1/64 of the memory budget (32 MiB by default).
_BLOCK_FRACTION = 64
#: Store codecs by name.  Measured (``python benchmarks/bench_out_of_core.py codecs``, CT-like
#: int16 HU and float32 filter responses): Blosc LZ4 with byte shuffle compresses as well as
#: zstd level 3 (int16) or better (float32) while writing 3-6x and reading 1.5-2.5x faster.
CODECS = ("lz4", "zstd")


def is_zarr_store(path) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / n).exists() for n in ("zarr.json", ".zarray", ".zgroup"))


def _multiscales(attrs):
    if "ome" in attrs and "multiscales" in attrs["ome"]:
        return attrs["ome"]["multiscales"]
    return attrs.get("multiscales")


def slab_shape(shape, unit, itemsize: int, target: int) -> tuple[int, ...]:
    """A block of whole ``unit`` chunks, about ``target`` bytes, cut along the outer axes.

    As many unit layers along the first axis as fit in ``target`` with the other axes
    whole; where one layer alone is larger, one layer, and the next axis is cut the same
    way, and so on.  Slabs full in y and x need no halo along y and x, and a halo along z
    costs a few planes (those of the store chunks it falls in).
    """
    shape = tuple(int(n) for n in shape)
    unit = tuple(max(1, min(int(u), n)) if n else 1 for u, n in zip(unit, shape))
    block = [max(n, 1) for n in shape]
    for ax in range(len(shape)):
        rest = int(np.prod([block[b] for b in range(len(shape)) if b != ax]))
        layer = max(itemsize * unit[ax] * rest, 1)
        block[ax] = min(block[ax], max(1, target // layer) * unit[ax])
        if layer <= target:
            break  # the inner axes stay whole
    return tuple(block)


def _dask_chunks(array, target=None):
    """Dask blocks for reading ``array``: slabs of whole store chunks (:func:`slab_shape`).

    A store chunk is decoded whole, so a block never splits one.  The default target is
    1/64 of the memory budget (32 MiB by default): halo filters read a block and a few
    planes around it straight from the store (:func:`medimg_fast.chunking.map_with_halo`).
    """
    from ..chunking import memory_budget

    if target is None:
        target = max(memory_budget() // _BLOCK_FRACTION, 1)
    return slab_shape(array.shape, array.chunks, array.dtype.itemsize, target)


def read_zarr(path, chunks=None) -> Volume:
    import dask.array as da
    import zarr

    path = str(path)
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:
        raise CorruptVolumeError(f"{path}: not a readable Zarr store ({exc})") from exc
    attrs = dict(node.attrs)
    metadata = {"format": "zarr"}
    if isinstance(node, zarr.Array):
        data = da.from_zarr(path, chunks=chunks or _dask_chunks(node))
        spacing = tuple(attrs.get("spacing", (1.0,) * 3))[-3:]
        axis_names = None
        translation = None
    else:
        multiscales = _multiscales(attrs)
        if not multiscales:
            raise VolumeReadError(
                f"{path}: a Zarr group without OME-Zarr 'multiscales' metadata; "
                "open one of its arrays by path instead"
            )
        ms = multiscales[0]
        level0 = ms["datasets"][0]
        component = level0["path"]
        data = da.from_zarr(path, component=component,
                            chunks=chunks or _dask_chunks(node[component]))
        ndim = data.ndim
        scale, translation = np.ones(ndim), np.zeros(ndim)
        for transforms in (level0.get("coordinateTransformations", []),
                           ms.get("coordinateTransformations", []) or []):
            for t in transforms:
                if t.get("type") == "scale":
                    scale = scale * np.asarray(t["scale"], dtype=np.float64)
                elif t.get("type") == "translation":
                    translation = translation + np.asarray(t["translation"], dtype=np.float64)
        axes = ms.get("axes") or [{"name": n, "type": "space"} for n in "tczyx"[-ndim:]]
        axes = [a if isinstance(a, dict) else {"name": a} for a in axes]
        axis_names = [a["name"] for a in axes]
        to_mm = np.array([_UNIT_TO_MM.get(a.get("unit", "millimeter"), 1.0)
                          if a.get("type", "space") == "space" else 1.0 for a in axes])
        scale, translation = scale * to_mm, translation * to_mm
        metadata.update({"ome_axes": axis_names, "level0_path": component,
                         "ome_version": attrs.get("ome", {}).get("version")})
        # Bring spatial axes to (z, y, x); drop singleton non-spatial axes (t, c).
        space = [i for i, a in enumerate(axes) if a.get("type", "space") == "space"]
        other = [i for i in range(ndim) if i not in space]
        if len(space) != 3:
            raise VolumeReadError(f"{path}: OME-Zarr image has {len(space)} spatial axes, "
                                  "3 (z, y, x) expected")
        order_names = {"z": 0, "y": 1, "x": 2}
        space.sort(key=lambda i: order_names.get(axis_names[i], i))
        # Only when needed: a transpose or slicing layer would hide the store from the
        # filters' direct halo reads (chunking.sliceable_source).
        if other + space != list(range(ndim)):
            data = data.transpose(other + space)
        keep = [k for k, i in enumerate(other) if data.shape[k] != 1]
        index = tuple(slice(None) if k in keep else 0 for k in range(len(other)))
        if len(keep) != len(other):
            data = data[index]
        if len(keep) > 1:
            raise VolumeReadError(f"{path}: OME-Zarr image with more than one non-spatial "
                                  f"axis of length > 1 ({axis_names}) is not supported")
        spacing = tuple(scale[space])
        translation = translation[space]

    geometry = attrs.get(_GEOMETRY_KEY) or {}
    if data.ndim == 2:
        data = data[None]
    origin = geometry.get("origin")
    if origin is None:
        origin = tuple(translation[::-1]) if translation is not None else (0.0, 0.0, 0.0)
    direction = np.asarray(geometry.get("direction", np.eye(3)), dtype=np.float64)
    metadata.update({k: v for k, v in geometry.get("metadata", {}).items()})
    return Volume(data=data, spacing=spacing, origin=origin, direction=direction,
                  modality=geometry.get("modality"), source=path, metadata=metadata)


def _default_chunks(shape, itemsize, blocks=None):
    """Store chunks of about 2 MiB: slabs of whole planes (:func:`slab_shape`).

    With Dask ``blocks``, along each axis where a block is at least a chunk, the chunk is
    a divisor of the block (each block is whole chunks: written as it is computed, no
    block split between two write steps); where blocks are thinner (small cubes), the
    chunk is whole blocks, so the store keeps its slabs.
    """
    chunks = slab_shape(shape, (1,) * len(shape), itemsize, _STORE_CHUNK_BYTES)
    if blocks is None:
        return chunks
    return tuple(c if b <= 0 else next(d for d in range(c, 0, -1) if b % d == 0) if b >= c
                 else min(n, c // b * b)
                 for c, b, n in zip(chunks, blocks, shape))


def _compressor(codec: str, level: int):
    """The Zarr v3 compressor named ``codec`` at ``level``: Blosc LZ4 with byte shuffle
    (clevel ``min(level, 9)``; Blosc takes the item size from the dtype), or zstd."""
    from zarr.codecs import BloscCodec, ZstdCodec

    if codec == "lz4":
        return BloscCodec(cname="lz4", clevel=min(int(level), 9), shuffle="shuffle")
    if codec == "zstd":
        return ZstdCodec(level=int(level))
    raise ValueError(f"`codec` must be one of {CODECS}, got {codec!r}")


def _store_regions(chunks, itemsize, slab_bytes):
    """Split a chunk grid into regions of whole blocks of at most ``slab_bytes`` each.

    Regions are slabs of block-rows along the first axis; where one block-row alone
    exceeds the budget (a large volume: a 64-voxel row of a 1024^2 plane is 256 MiB of
    float32), the row is split along the next axis too, and so on.  Yields tuples of
    slices, in C order, covering the array exactly once.
    """
    import itertools

    ndim = len(chunks)
    bounds = [np.cumsum((0,) + tuple(c)) for c in chunks]
    widest = [max(c) if len(c) else 0 for c in chunks]
    per_step = [len(c) for c in chunks]  # blocks per region along each axis
    for ax in range(ndim):
        # bytes of one block-row along `ax`, outer axes as already chosen, inner ones whole
        row = max(itemsize * widest[ax] * int(np.prod(
            [widest[b] * per_step[b] for b in range(ndim) if b != ax])), 1)
        per_step[ax] = max(1, min(len(chunks[ax]), int(slab_bytes // row)))
        if per_step[ax] > 1 or row <= slab_bytes:
            break  # the remaining (inner) axes stay whole
    starts = [range(0, len(c), n) for c, n in zip(chunks, per_step)]
    for first in itertools.product(*starts):
        yield tuple(
            slice(int(b[f]), int(b[min(f + n, len(b) - 1)]))
            for b, f, n in zip(bounds, first, per_step)
        )


def _store_in_slabs(data, array, scheduler, slab_bytes, blocks=None):
    """Store a Dask array region by region (see :func:`_store_regions`).

    One ``da.store`` over the whole graph lets Dask load input chunks far ahead of the
    writes (with ``map_overlap`` graphs, measured: about the whole input resident), so
    peak memory grows with the volume.  Computing one region at a time culls the graph to
    that region and its halo, so the peak follows ``slab_bytes`` (a few times it, with the
    halo blocks and Dask's copies), whatever the volume size.

    ``blocks``, the chunks ``data`` had before its rechunk to the store's (when every
    block is whole store chunks), makes the regions whole such blocks, so no block is
    computed for two regions.
    """
    import dask.array as da

    for region in _store_regions(blocks or data.chunks, data.dtype.itemsize, slab_bytes):
        da.store(data[region], array, regions=region, lock=False, compute=True,
                 scheduler=scheduler)


def write_ome_zarr(data, path, *, spacing, origin, direction, modality, source, chunks,
                   overwrite, compression_level, scheduler=None, codec="lz4"):
    """Write `data` as an OME-Zarr v0.5 image (Zarr v3) at `path`, atomically.

    The store is built in a hidden sibling folder and renamed into place, so the final path
    either does not exist or holds a complete store.
    """
    import dask.array as da
    import zarr

    compressor = _compressor(codec, compression_level)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"`path` already exists: {str(path)!r} (pass overwrite=True)")
    path.parent.mkdir(parents=True, exist_ok=True)

    if isinstance(data, da.Array):
        if chunks is None:
            chunks = _default_chunks(data.shape, data.dtype.itemsize,
                                     tuple(c[0] for c in data.chunks))
    else:
        data = np.asarray(data)
        if chunks is None:
            chunks = _default_chunks(data.shape, data.dtype.itemsize)
    chunks = tuple(int(min(c, s)) for c, s in zip(chunks, data.shape))

    axes = [{"name": n, "type": "space", "unit": "millimeter"} for n in "zyx"]
    scale = [float(s) for s in spacing]
    if data.ndim == 4:
        axes = [{"name": "t", "type": "time"}] + axes
        scale = [1.0] + scale
    translation = [0.0] * (data.ndim - 3) + [float(o) for o in origin[::-1]]
    attrs = {
        "ome": {
            "version": "0.5",
            "multiscales": [{
                "name": Path(source).name if source else path.name,
                "axes": axes,
                "datasets": [{"path": "0", "coordinateTransformations": [
                    {"type": "scale", "scale": scale},
                    {"type": "translation", "translation": translation},
                ]}],
            }],
        },
        _GEOMETRY_KEY: {
            "origin": [float(o) for o in origin],
            "direction": np.asarray(direction, dtype=float).tolist(),
            "modality": modality,
            "metadata": {"source": str(source)} if source else {},
        },
    }
    # JSON round trip fails early (before any voxel is written) on odd metadata values.
    json.dumps(attrs)

    tmp = path.parent / f".{path.name}.partial-{uuid.uuid4().hex}"
    try:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3, attributes=attrs)
        array = group.create_array(
            "0", shape=data.shape, dtype=data.dtype, chunks=chunks,
            compressors=compressor, fill_value=0,
            # Every chunk is written whole once: skip zarr's all-fill-value test of each
            # chunk (a full extra pass over the data, measured 1.3-1.8x slower writes).
            config={"write_empty_chunks": True},
        )
        if isinstance(data, da.Array):
            # Chunks aligned with the store's so no two tasks write one chunk: no lock needed,
            # and each task holds one chunk at a time (memory bounded).
            blocks = data.chunks
            if not all(int(b) % c == 0 or int(b) == n
                       for bc, c, n in zip(blocks, chunks, data.shape) for b in np.cumsum(bc)):
                blocks = None
            data = data.rechunk(chunks)
            from ..chunking import write_step_bytes

            _store_in_slabs(data, array, scheduler, write_step_bytes(), blocks)
        else:
            array[...] = data
        if path.exists():
            trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
            os.rename(path, trash)
            os.rename(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
