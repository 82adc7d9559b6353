"""Halo depth, boundary handling and the glue that runs a filter chunk by chunk.

A filter whose output voxel depends on input voxels at most ``d_a`` away along axis
``a`` is run on a Dask array as follows:

1. chunks thinner than the halo are merged with a neighbour, so each chunk holds at
   least ``d_a`` voxels (an axis shorter than that becomes one chunk);
2. for ``wrap``, every axis is extended by ``d_a`` voxels on both sides with the far
   face's voxels (:mod:`medimg_fast._shared.boundary`), merged into the outer chunks.
   For every other mode the kernel extends the outer faces itself, as unchunked: an
   outer block holds its chunk (at least ``d_a`` voxels) plus the neighbour's halo, all
   that ``reflect``/``mirror`` fold in, and a one-chunk axis is the whole axis;
3. :func:`dask.array.map_overlap` with ``boundary="none"`` hands each task its chunk
   plus ``d_a`` real voxels from each neighbour; the kernel runs on that block and the
   halo is trimmed;
4. the extension is sliced off and the original chunking restored.

Every output voxel is then computed from exactly the values, and by exactly the
arithmetic, of the unchunked computation: the result is bit-identical to it.

When the Dask array reads its blocks straight from an array-like (``da.from_array``,
``da.from_zarr``, :func:`medimg_fast.io.open_volume` on a Zarr store), possibly through
one ``astype``, steps 1-4 are replaced by direct reads: each task slices its own block
plus ``d_a`` voxels on each side (the far face's voxels for ``wrap``) from the source,
casts, runs the kernel and trims.  A halo then costs ``d_a`` voxel layers of the
neighbours (the store chunks they fall in, for Zarr), not the neighbouring blocks whole,
and no task depends on another: a block is read once per output block, whatever order
the writer computes them in.  The blocks the kernel sees are the ones step 3 would
build (real voxels up to the halo depth, the array's own faces at its faces), so the
result is the same, bit for bit.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ._shared.boundary import extension_indices

#: NumPy inputs larger than this many bytes are filtered in chunks (env override).
DEFAULT_MEMORY_BUDGET = 2 * 1024**3
MEMORY_BUDGET_ENV = "MEDIMG_FAST_MEMORY_BUDGET"
#: The Zarr writer's step is this fraction of the budget: its measured peak is about seven
#: steps (input with halo chunks, output, Dask's copies) plus the interpreter.
_WRITE_STEP_FRACTION = 32


def parse_size(value) -> int:
    """Bytes from a number or a size string such as ``"1GiB"`` or ``"512MB"``."""
    from dask.utils import parse_bytes

    try:
        size = int(parse_bytes(value))
    except (ValueError, TypeError):
        raise ValueError(f"expected a number of bytes or a size such as '1GiB', "
                         f"got {value!r}") from None
    if size <= 0:
        raise ValueError(f"a memory size must be positive, got {value!r}")
    return size


def memory_budget() -> int:
    """Bytes a filter call may hold at once (``MEDIMG_FAST_MEMORY_BUDGET``, default 2 GiB).

    A NumPy input whose whole-image call would hold more than this is filtered in chunks
    (what a call holds: :func:`medimg_fast.filters._dispatch.apply_filter`); writing a
    Dask result to Zarr proceeds in steps of 1/32 of it (:func:`write_step_bytes`).
    """
    value = os.environ.get(MEMORY_BUDGET_ENV)
    if value:
        try:
            return parse_size(value)
        except ValueError as exc:
            raise ValueError(f"environment variable {MEMORY_BUDGET_ENV}: {exc}") from None
    return DEFAULT_MEMORY_BUDGET


def write_step_bytes() -> int:
    """Output bytes the Zarr writer computes per step: 1/32 of the memory budget (64 MiB
    by default), at least 1 MiB (a step always holds at least one whole chunk)."""
    return max(memory_budget() // _WRITE_STEP_FRACTION, 2**20)


#: Modes whose extension needs voxels the outer blocks do not hold (the far face): the
#: array is extended with real data first.  For the others the kernel's own extension at
#: an outer block face is already the array's (a block holds at least the halo depth of
#: real voxels behind the face), so none is built.  (For ``constant`` it must not be:
#: scipy extends the intermediate of every separable pass with ``cval``, which differs
#: from filtering a ``cval`` margin whenever the weights do not sum to one.)
_PADDED_MODES = ("wrap",)


def _pad_axis(x, axis: int, depth: int, mode: str):
    """Extend a Dask array by ``depth`` voxels on both sides of ``axis`` (``mode`` rule)."""
    import dask.array as da

    n = x.shape[axis]
    idx = extension_indices(n, depth, depth, mode)
    before = da.take(x, idx[:depth], axis=axis)
    after = da.take(x, idx[n + depth:], axis=axis)
    return da.concatenate([before, x, after], axis=axis)


def _merge_thin_chunks(chunks: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """Merge neighbouring chunks until each holds at least ``minimum`` voxels."""
    if minimum <= 0 or all(c >= minimum for c in chunks):
        return chunks
    merged: list[int] = []
    for c in chunks:
        if merged and merged[-1] < minimum:
            merged[-1] += c
        else:
            merged.append(c)
    if len(merged) > 1 and merged[-1] < minimum:
        last = merged.pop()
        merged[-1] += last
    return tuple(merged)


def map_with_halo(image, block_function, depth: tuple[int, ...], *, mode: str, dtype,
                  meta=None):
    """Apply ``block_function`` to a Dask array chunk by chunk with halos of ``depth``.

    Parameters
    ----------
    image : dask.array.Array
        Input, already in the working dtype.
    block_function : callable
        ``f(block) -> block`` of the same shape; each output voxel may depend on input
        voxels up to ``depth[a]`` away along axis ``a``.  It applies the boundary rule
        (``mode`` and its ``cval``) at the faces of the blocks it is given.
    depth : tuple of int
        Halo depth per axis.
    mode : str
        The boundary rule at the faces of the whole array (``wrap`` needs the far face's
        voxels, which are brought in here).
    dtype : numpy dtype
        Output dtype.
    meta : array, optional
        Output meta (an empty NumPy or CuPy array).

    Returns
    -------
    dask.array.Array
        Lazy result, chunked like ``image``, equal to ``block_function(image)`` computed
        on the whole array.
    """

    depth = tuple(int(d) for d in depth)
    if len(depth) != image.ndim:
        raise ValueError(f"`depth` needs one entry per axis ({image.ndim}), got {depth!r}")
    original_chunks = image.chunks
    if meta is None:
        meta = image._meta.astype(dtype)

    source = sliceable_source(image)
    if source is not None:
        return _map_from_source(image, source, block_function, depth, mode=mode,
                                dtype=dtype, meta=meta)
    if not any(depth):
        return image.map_blocks(block_function, dtype=dtype, meta=meta)

    # Thin chunks first, so every neighbour can supply a full halo.
    work = image.rechunk(tuple(_merge_thin_chunks(c, d) for c, d in zip(image.chunks, depth)))
    padded = mode in _PADDED_MODES
    if padded:
        inner_chunks = work.chunks
        for axis, d in enumerate(depth):
            if d:
                work = _pad_axis(work, axis, d, mode)
        padded_chunks = []
        for c, d in zip(inner_chunks, depth):
            c = list(c)
            c[0] += d
            c[-1] += d
            padded_chunks.append(tuple(c))
        work = work.rechunk(tuple(padded_chunks))

    # An axis held in one chunk needs no neighbour's voxels (and Dask refuses a halo
    # deeper than a short axis); the kernel extends it at its true faces.
    overlap = {axis: (0 if len(c) == 1 else d) for axis, (c, d) in
               enumerate(zip(work.chunks, depth))}
    result = work.map_overlap(
        block_function,
        depth=overlap,
        boundary="none",
        trim=True,
        dtype=dtype,
        meta=meta,
    )
    if padded:
        result = result[tuple(slice(d, d + n) for d, n in zip(depth, image.shape))]
    if result.chunks != original_chunks:
        result = result.rechunk(original_chunks)
    return result


_GETTER_NAMES = ("getter", "getter_nofancy", "getter_inline")


def sliceable_source(image):
    """``(key, array_like, cast)`` when a Dask array is ``from_array(array_like)``, or that
    through one ``astype(cast)``; ``None`` for any other graph.

    Only the plain pattern with NumPy blocks is recognised (the source layer, one slicing
    layer with dask's own getter and no lock, and at most an ``astype``): anything else
    runs through :func:`dask.array.map_overlap`, which is always correct.
    """
    from dask.array import core

    if type(image._meta) is not np.ndarray:  # CuPy blocks keep the generic path
        return None
    layers = image.dask.layers
    deps = image.dask.dependencies
    name, cast = image.name, None
    if name.startswith("astype-") and len(deps.get(name, ())) == 1:
        (name,) = deps[name]
        cast = np.dtype(image.dtype)
    key = "original-" + name
    expected = {name, key} | ({image.name} if cast is not None else set())
    if set(layers) != expected or deps.get(name) != {key}:
        return None
    task = getattr(layers[name], "task", None)
    func = getattr(task, "func", None)
    if (getattr(func, "__name__", None) not in _GETTER_NAMES
            or getattr(core, func.__name__, None) is not func
            or getattr(task, "kwargs", {}).get("lock") not in (None, False)):
        return None
    values = list(dict(layers[key]).values())
    if len(values) != 1:
        return None
    array = values[0]
    array = getattr(array, "value", array)  # a task-spec DataNode in some dask versions
    if not hasattr(array, "__getitem__") or tuple(getattr(array, "shape", ())) != image.shape:
        return None
    return key, array, cast


def _axis_plan(start: int, stop: int, n: int, depth: int, single: bool, mode: str):
    """Source index runs ``[(lo, hi), ...]`` to read for one block along one axis, and
    the slice of the kernel's result that is the block's own output.

    The runs hold the block and ``depth`` real voxels on each side, clipped at the
    array's faces, where the kernel extends the block as it extends the whole array
    (for ``wrap``, the far face's voxels come in instead: what padding the array would
    give).  An axis held in one block is read whole, with no halo except for ``wrap``.
    """
    if depth == 0 or (single and mode not in _PADDED_MODES):
        return [(start, stop)], slice(0, stop - start)
    if mode in _PADDED_MODES:
        index = extension_indices(n, depth, depth, mode)[start:stop + 2 * depth]
        cuts = np.flatnonzero(np.diff(index) != 1) + 1
        runs = [(int(r[0]), int(r[-1]) + 1) for r in np.split(index, cuts)]
        return runs, slice(depth, depth + stop - start)
    lo, hi = max(0, start - depth), min(n, stop + depth)
    return [(lo, hi)], slice(start - lo, start - lo + stop - start)


def _read_runs(array, runs):
    """``array`` at the outer product of index runs (one list per axis), as one array.

    Each source voxel is read once: the runs of an axis are merged into disjoint
    intervals, their product is read box by box, and repeated or reordered indices
    (``wrap`` halos) are then taken in memory.
    """
    import itertools

    if all(len(r) == 1 for r in runs):
        return np.asarray(array[tuple(slice(lo, hi) for (lo, hi), in runs)])
    unions, takes = [], []
    for axis_runs in runs:
        merged: list[list[int]] = []
        for lo, hi in sorted(axis_runs):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        unions.append(merged)
        # position of each source index in the concatenation of the merged intervals
        where = {}
        offset = 0
        for lo, hi in merged:
            where[lo] = offset - lo
            offset += hi - lo
        wanted = np.concatenate([np.arange(lo, hi) for lo, hi in axis_runs])
        starts = np.array([lo for lo, _ in merged])
        first = np.searchsorted(starts, wanted, side="right") - 1
        shift = np.array([where[lo] for lo, _ in merged])
        position = wanted + shift[first]
        takes.append(None if np.array_equal(position, np.arange(offset)) else position)
    shape = tuple(sum(hi - lo for lo, hi in u) for u in unions)
    offsets = [np.cumsum([0] + [hi - lo for lo, hi in u]) for u in unions]
    block = None
    for pick in itertools.product(*(range(len(u)) for u in unions)):
        piece = np.asarray(array[tuple(slice(*unions[a][i]) for a, i in enumerate(pick))])
        if block is None:
            block = np.empty(shape, dtype=piece.dtype)
        block[tuple(slice(offsets[a][i], offsets[a][i + 1])
                    for a, i in enumerate(pick))] = piece
    for axis, position in enumerate(takes):
        if position is not None:
            block = np.take(block, position, axis=axis)
    return block


def _source_block(array, runs, trim, cast, block_function):
    block = _read_runs(array, runs)
    if cast is not None:
        block = block.astype(cast, copy=False)  # as dask's astype casts each block
    return block_function(block)[trim]


def _map_from_source(image, source, block_function, depth, *, mode, dtype, meta):
    """:func:`map_with_halo` for an ``image`` read straight from an array-like: one
    independent task per block of ``image``, reading the block and its halo itself."""
    import itertools

    from dask.array.core import Array
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    key, _, cast = source
    name = "halo-" + tokenize(image.name, block_function, depth, mode, np.dtype(dtype).str)
    bounds = [np.cumsum((0,) + tuple(c)) for c in image.chunks]
    plans = [
        [_axis_plan(int(b[i]), int(b[i + 1]), n, d, len(c) == 1, mode)
         for i in range(len(c))]
        for b, c, n, d in zip(bounds, image.chunks, image.shape, depth)
    ]
    tasks = {}
    for index in itertools.product(*(range(len(c)) for c in image.chunks)):
        picked = [plans[a][i] for a, i in enumerate(index)]
        runs = tuple(p[0] for p in picked)
        trim = tuple(p[1] for p in picked)
        tasks[(name,) + index] = (_source_block, key, runs, trim, cast, block_function)
    layers = {key: image.dask.layers[key], name: tasks}
    graph = HighLevelGraph(layers, {key: set(), name: {key}})
    return Array(graph, name, image.chunks, dtype=dtype, meta=meta)


def chunk_shape_for_budget(shape: tuple[int, ...], itemsize: int, budget: int,
                           depth: tuple[int, ...] = ()) -> tuple[int, ...]:
    """A chunk shape whose block, halo included, stays within ``budget`` bytes.

    Chunks are cut along the outermost axes first, so each block stays contiguous in
    memory along the last (fastest) axes.  The factor 4 leaves room for the input
    block, the output block and two temporaries of the kernels.
    """
    depth = tuple(depth) or (0,) * len(shape)
    per_voxel = 4 * itemsize
    chunk = list(shape)
    for axis in range(len(shape)):
        voxels = math.prod(c + 2 * d for c, d in zip(chunk, depth))
        if voxels * per_voxel <= budget:
            break
        rest = math.prod(c + 2 * d for i, (c, d) in enumerate(zip(chunk, depth)) if i != axis)
        fit = budget // (per_voxel * rest) - 2 * depth[axis]
        chunk[axis] = int(max(1, min(chunk[axis], fit)))
    return tuple(chunk)


def filter_numpy_in_chunks(image: np.ndarray, block_function, depth, *, mode, dtype,
                           budget: int, out=None, reuse=False) -> np.ndarray:
    """Filter a NumPy array too large for the memory budget chunk by chunk.

    Each block is read with its halo as :func:`map_with_halo` reads a block of a Dask
    array (the same plan: :func:`_axis_plan`), so the result is the same; the blocks run
    one after the other (the kernels are already parallel over cores) and each block's
    own part goes straight into the result: ``out`` when given (C-contiguous, the
    image's shape, ``dtype``), else a new array.  ``reuse``: ``block_function(block,
    out=scratch)`` writes every block into one scratch array of the block's shape, so
    fresh memory is touched once, not once per block.
    """
    import itertools

    depth = tuple(int(d) for d in depth)
    chunks = chunk_shape_for_budget(image.shape, np.dtype(dtype).itemsize, budget, depth)
    result = np.empty(image.shape, dtype) if out is None else out
    if (reuse and tuple(chunks[1:]) == tuple(image.shape[1:]) and mode not in _PADDED_MODES
            and image.dtype == dtype and image.flags.c_contiguous
            and result.flags.c_contiguous):
        # the slab and its result are views: only the two temporaries count, so the
        # slabs may be twice as thick (fewer halo planes computed twice)
        thickness = chunk_shape_for_budget(image.shape, np.dtype(dtype).itemsize,
                                           2 * budget, depth)[0]
        _slabs_in_place(image, block_function, depth[0], thickness, result)
        return result
    plans = []
    for n, c, d in zip(image.shape, chunks, depth):
        starts = range(0, n, c)
        plans.append([(slice(a, min(a + c, n)),
                       *_axis_plan(a, min(a + c, n), n, d, len(starts) == 1, mode))
                      for a in starts])
    scratch = None
    for picked in itertools.product(*plans):
        region = tuple(p[0] for p in picked)
        block = _read_runs(image, tuple(p[1] for p in picked)).astype(dtype, copy=False)
        if reuse:
            block = np.ascontiguousarray(block)
            if scratch is None or scratch.shape != block.shape:
                scratch = np.empty(block.shape, dtype)
            filtered = block_function(block, out=scratch)
        else:
            filtered = block_function(block)
        result[region] = filtered[tuple(p[2] for p in picked)]
    return result


def _slabs_in_place(image, block_function, depth, thickness, result):
    """:func:`filter_numpy_in_chunks` for blocks that are slabs of whole planes (C order):
    each slab and its halo is a view of ``image``, and the kernel writes its result
    straight into the same planes of ``result`` (``out=`` a view), halo planes too.  The
    halo planes before a slab hold the previous slab's finished planes: they are saved
    first and put back after (``depth`` planes); those after it are finished by the next
    slab.  No whole-result copy, the same values."""
    n = image.shape[0]
    for start in range(0, n, thickness):
        stop = min(start + thickness, n)
        lo, hi = max(0, start - depth), min(n, stop + depth)
        kept = result[lo:start].copy()
        planes = result[lo:hi]
        filtered = block_function(image[lo:hi], out=planes)
        if filtered is not planes:
            planes[...] = filtered  # a backend that returns a new array
        result[lo:start] = kept
