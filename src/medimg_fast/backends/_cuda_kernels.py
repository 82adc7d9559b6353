"""Our own CUDA kernels (``kernels/*.cu``): run-time compilation, launch planning, launch.

The CUDA C++ sources are templates specialised on a hashable :class:`KernelKey`
(kernel family, dtype, boundary mode, reduction, tap count, outputs per thread,
dimensionality, radius).  Each key is compiled once per device by
``cupy.RawModule(..., name_expressions=[...])`` and memoised; the key is spelled out in
the template arguments, so a profiler shows which specialisation ran
(``medimg::sep_line<float, medimg::Reflect, medimg::Correlate, 17, 8>``).

Everything that decides *how* a kernel runs (grid and block shapes for sizes that are
not multiples of the block, tiles and shared-memory bytes, chunk shapes that fit the
free device memory) is pure Python in this module and tested on the CPU.  The
primitives build :class:`Launch` records and hand them to an executor; the CuPy
executor compiles and launches them on the current stream, so a chain of launches
(:func:`filter_bank`) never waits for the host.

CuPy is imported lazily, inside functions: importing this module needs only NumPy.

Functions called by :mod:`medimg_fast.backends._cupy` (``image`` a C-contiguous
float32/float64 CuPy array of 2 or 3 dimensions, ``mode`` a canonical mode name):
:func:`correlate1d`, :func:`extremum_filter1d`, :func:`gradient_magnitude`,
:func:`median_filter`, :func:`filter_bank`.  Sizes and tap counts outside what the
kernels handle raise :class:`UnsupportedByKernels` (a ValueError) so the caller can
fall back to ``cupyx.scipy.ndimage``; :func:`supports` says so beforehand.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import numbers
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._shared.boundary import MODE_CODES, MODES
from .._shared.gaussian import gaussian_kernel1d, gaussian_radius

__all__ = [
    "KernelKey",
    "Launch",
    "LaunchPlan",
    "UnsupportedByKernels",
    "apply_chunked",
    "correlate1d",
    "extremum_filter1d",
    "filter_bank",
    "gaussian_weights",
    "gradient_magnitude",
    "kernel_source",
    "median_filter",
    "name_expression",
    "plan_chunk_shape",
    "plan_line",
    "plan_stencil",
    "plan_strided",
    "supports",
]

#: Bytes of shared memory a block may use without the opt-in attribute, on every
#: architecture since sm_35; the planners stay within it.
MAX_SHARED_BYTES = 48 * 1024
#: Taps up to which sep kernels keep the weights in registers (kernels/separable.cu).
UNROLL_TAPS = 33
#: Median box sides with a selection network.
MEDIAN_SIZES = (3, 5)
#: Threads of a stencil block (gradient, median): 32 along x (one warp, coalesced), 8 along y.
STENCIL_BLOCK = (32, 8)
#: z planes one stencil block walks; the ring preload costs 2R extra planes per slab.
STENCIL_SLAB = 16
#: Largest grid.y / grid.z.
MAX_GRID_YZ = 65535
MAX_GRID_X = 2**31 - 1

_FAMILY_FILE = {
    "sep_line": "separable.cu",
    "sep_strided": "separable.cu",
    "gradient_magnitude": "gradient.cu",
    "median_box": "median.cu",
}
_CTYPE = {"float32": "float", "float64": "double"}
_MODE_TAG = {m: m.capitalize() for m in MODES}
_OPS = ("correlate", "minimum", "maximum")
_OP_TAG = {op: op.capitalize() for op in _OPS}


class UnsupportedByKernels(ValueError):
    """The request is valid but outside what the CUDA kernels implement."""


# --------------------------------------------------------------------------------------
# Keys, names, sources
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelKey:
    """Everything a specialisation depends on; hashable, so it keys the module cache."""

    family: str
    dtype: str
    mode: str
    op: str = "correlate"
    taps: int = 0
    per: int = 0
    ndim: int = 0
    radius: int = 0

    def __post_init__(self):
        if self.family not in _FAMILY_FILE:
            raise ValueError(f"`family` must be one of {sorted(_FAMILY_FILE)}, got {self.family!r}")
        if self.dtype not in _CTYPE:
            raise ValueError(f"`dtype` must be one of {sorted(_CTYPE)}, got {self.dtype!r}")
        if self.mode not in MODE_CODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {self.mode!r}")
        if self.op not in _OPS:
            raise ValueError(f"`op` must be one of {_OPS}, got {self.op!r}")

    @property
    def short_name(self) -> str:
        """A compact label for logs and benchmark ids, e.g. ``sep_line_f32_reflect_correlate_t17_p8``."""
        bits = [self.family, "f32" if self.dtype == "float32" else "f64", self.mode]
        if self.family.startswith("sep_"):
            bits += [self.op, f"t{self.taps}", f"p{self.per}"]
        else:
            bits.append(f"{self.ndim}d")
            if self.family == "median_box":
                bits.append(f"r{self.radius}")
        return "_".join(bits)


def name_expression(key: KernelKey) -> str:
    """The C++ template instance of ``key``, as given to RawModule's ``name_expressions``."""
    t = _CTYPE[key.dtype]
    mode = f"medimg::{_MODE_TAG[key.mode]}"
    if key.family in ("sep_line", "sep_strided"):
        return (f"medimg::{key.family}<{t}, {mode}, medimg::{_OP_TAG[key.op]}, "
                f"{key.taps}, {key.per}>")
    if key.family == "gradient_magnitude":
        return f"medimg::gradient_magnitude<{t}, {mode}, {key.ndim}>"
    return f"medimg::median_box<{t}, {mode}, {key.ndim}, {key.radius}>"


def kernels_dir():
    """Where the ``.cu`` sources are: inside the installed package (``medimg_fast/kernels``,
    a link to the repository's ``kernels/`` in a source checkout), else the repository."""
    try:
        packaged = importlib.resources.files("medimg_fast") / "kernels"
        if packaged.is_dir() and (packaged / "common.cu").is_file():
            return packaged
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        pass
    repo = Path(__file__).resolve().parents[3] / "kernels"
    if (repo / "common.cu").is_file():
        return repo
    raise FileNotFoundError(
        "the CUDA kernel sources (kernels/*.cu) are missing from the medimg_fast package "
        f"and from {repo}; reinstall medimg-fast"
    )


@functools.cache
def kernel_source(family: str) -> str:
    """One translation unit for ``family``: ``common.cu`` followed by the family's file.

    RawModule compiles a single string; the kernel files skip their own
    ``#include "common.cu"`` when it has already been pasted in front of them.
    """
    if family not in _FAMILY_FILE:
        raise ValueError(f"`family` must be one of {sorted(_FAMILY_FILE)}, got {family!r}")
    root = kernels_dir()
    common = (root / "common.cu").read_text(encoding="utf-8")
    body = (root / _FAMILY_FILE[family]).read_text(encoding="utf-8")
    return common + "\n" + body


# --------------------------------------------------------------------------------------
# Launch planning (pure Python, CPU-tested)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchPlan:
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int
    per: int = 0
    slab: int = 0
    inner_blocks: int = 0


@dataclass(frozen=True)
class Launch:
    """One kernel launch: what runs, where, and with which arguments (in kernel order)."""

    key: KernelKey
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int
    args: tuple


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def line_view(shape: Sequence[int], axis: int) -> tuple[int, int, int]:
    """``(outer, n, inner)``: a C-contiguous array seen as lines along ``axis``."""
    outer = math.prod(shape[:axis])
    inner = math.prod(shape[axis + 1:])
    return outer, int(shape[axis]), inner


def skewed(i: int, per: int) -> int:
    """Padded shared-memory index of sample ``i`` in a ``sep_line`` row (kernels/separable.cu):
    one pad element after every ``per`` samples, so strided reads are free of bank conflicts."""
    return i if per == 1 else i + i // per


def stages_weights(op: str, taps: int) -> bool:
    """Whether a sep kernel copies its weights to shared memory (long correlations)."""
    return op == "correlate" and taps > UNROLL_TAPS


def line_shared_bytes(block: tuple[int, int], per: int, taps: int, itemsize: int,
                      op: str = "correlate") -> int:
    """Dynamic shared memory of ``sep_line``: staged weights plus one skewed row per line."""
    bx, by = block
    row_stride = skewed(bx * per + taps - 2, per) + 1
    w_len = taps if stages_weights(op, taps) else 0
    return (w_len + by * row_stride) * itemsize


def strided_shared_bytes(block: tuple[int, int], per: int, taps: int, itemsize: int,
                         op: str = "correlate") -> int:
    """Dynamic shared memory of ``sep_strided``: staged weights plus the tile with halo."""
    bi, bl = block
    w_len = taps if stages_weights(op, taps) else 0
    return (w_len + (bl * per + taps - 1) * bi) * itemsize


def _default_per(itemsize: int) -> int:
    # Eight float accumulators (four double) keep a sep thread near 32 registers.
    return 8 if itemsize == 4 else 4


def plan_line(n_lines: int, n: int, taps: int, itemsize: int,
              op: str = "correlate") -> LaunchPlan:
    """Launch of ``sep_line`` over ``n_lines`` contiguous lines of ``n`` samples."""
    for per in sorted({_default_per(itemsize), 4, 2, 1}, reverse=True):
        # Short lines get 32-thread rows, so a block does not idle on a mostly empty row.
        bx = 64 if n > 32 * per else 32
        for by in (256 // bx, 2, 1):
            shared = line_shared_bytes((bx, by), per, taps, itemsize, op)
            if shared <= MAX_SHARED_BYTES:
                grid = (_ceil_div(n_lines, by), _ceil_div(n, bx * per), 1)
                _check_grid(grid)
                return LaunchPlan(grid, (bx, by, 1), shared, per=per)
    raise UnsupportedByKernels(
        f"a line filter of {taps} taps does not fit in {MAX_SHARED_BYTES} bytes of shared memory"
    )


def plan_strided(outer: int, n: int, inner: int, taps: int, itemsize: int,
                 op: str = "correlate") -> LaunchPlan:
    """Launch of ``sep_strided`` over an ``(outer, n, inner)`` view, ``inner > 1``."""
    widths = (32, 16) if inner > 16 else (16, 32)
    for bi in widths:
        for per in sorted({_default_per(itemsize), 4, 2, 1}, reverse=True):
            for bl in (8, 4, 2, 1):
                shared = strided_shared_bytes((bi, bl), per, taps, itemsize, op)
                if shared <= MAX_SHARED_BYTES:
                    inner_blocks = _ceil_div(inner, bi)
                    grid = (outer * inner_blocks, _ceil_div(n, bl * per), 1)
                    _check_grid(grid)
                    return LaunchPlan(grid, (bi, bl, 1), shared, per=per,
                                      inner_blocks=inner_blocks)
    raise UnsupportedByKernels(
        f"a filter of {taps} taps along a strided axis does not fit in {MAX_SHARED_BYTES} bytes "
        "of shared memory"
    )


def plan_stencil(shape: Sequence[int], radius: int, itemsize: int) -> LaunchPlan:
    """Launch of a plane-ring stencil kernel (``gradient_magnitude``, ``median_box``)."""
    bx, by = STENCIL_BLOCK
    plane = (by + 2 * radius) * (bx + 2 * radius)
    if len(shape) == 2:
        ny, nx = shape
        grid = (_ceil_div(nx, bx), _ceil_div(ny, by), 1)
        ring, slab = 1, 0
    else:
        nz, ny, nx = shape
        slab = STENCIL_SLAB
        grid = (_ceil_div(nx, bx), _ceil_div(ny, by), _ceil_div(nz, slab))
        ring = 2 * radius + 1
    shared = ring * plane * itemsize
    if shared > MAX_SHARED_BYTES:
        raise UnsupportedByKernels(f"a stencil of radius {radius} needs {shared} bytes of shared memory")
    _check_grid(grid)
    return LaunchPlan(grid, (bx, by, 1), shared, slab=slab)


def _check_grid(grid):
    if grid[0] > MAX_GRID_X or grid[1] > MAX_GRID_YZ or grid[2] > MAX_GRID_YZ:
        raise UnsupportedByKernels(f"the array needs a launch grid {grid} beyond CUDA's limits")


# --------------------------------------------------------------------------------------
# Chunking for volumes larger than the device memory (pure Python, CPU-tested)
# --------------------------------------------------------------------------------------
def plan_chunk_shape(shape: Sequence[int], itemsize: int, free_bytes: int,
                     halo: int | Sequence[int], *, n_buffers: int = 4,
                     fraction: float = 0.8) -> tuple[int, ...]:
    """The largest chunk whose halo-padded slab, times ``n_buffers`` device arrays
    (input, output, scratch), fits in ``fraction`` of ``free_bytes``.

    Splits the slowest axis first, so slabs stay contiguous and the kernels keep their
    coalesced inner axes whole; an axis that stays whole needs no halo along it.

    Raises
    ------
    ValueError
        When not even a single-voxel chunk with its halo fits.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    halo = (int(halo),) * ndim if isinstance(halo, numbers.Integral) else tuple(map(int, halo))
    if len(halo) != ndim:
        raise ValueError(f"`halo` must have one value per axis ({ndim}), got {halo!r}")
    if any(h < 0 for h in halo):
        raise ValueError(f"`halo` must be non-negative, got {halo!r}")
    if itemsize <= 0 or n_buffers <= 0:
        raise ValueError(f"`itemsize` and `n_buffers` must be positive, got {itemsize}, {n_buffers}")
    if not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be in (0, 1], got {fraction!r}")
    budget = int(free_bytes * fraction) // (itemsize * n_buffers)

    def padded(chunk):
        return math.prod(c if c == s else min(s, c + 2 * h)
                         for c, s, h in zip(chunk, shape, halo))

    chunk = list(shape)
    if padded(chunk) <= budget:
        return tuple(chunk)
    for axis in range(ndim):
        # Largest extent along `axis` (axes before it already 1, after it whole) that fits.
        lo, hi = 1, shape[axis]
        chunk[axis] = 1
        if padded(chunk) > budget:
            continue
        while lo < hi:
            mid = (lo + hi + 1) // 2
            chunk[axis] = mid
            if padded(chunk) <= budget:
                lo = mid
            else:
                hi = mid - 1
        chunk[axis] = lo
        return tuple(chunk)
    raise ValueError(
        f"no chunk of an array of shape {shape} with halo {halo} fits in {free_bytes} bytes "
        f"({n_buffers} buffers of {itemsize}-byte samples)"
    )


def chunk_slabs(shape: Sequence[int], chunk_shape: Sequence[int], halo: Sequence[int],
                mode: str):
    """For each chunk: ``(out_slices, source_index, crop_slices)``.

    ``source_index`` is, per axis, a ``slice`` of the array (an axis kept whole, or
    clipped at the array's edge so the filter's own boundary rule acts there exactly as
    on the whole array) or an integer index array (``wrap`` across an edge, where the
    samples come from the far end of the axis).  ``crop_slices`` cut the chunk's output
    out of the filtered slab.
    """
    shape = tuple(shape)
    counts = [_ceil_div(s, c) for s, c in zip(shape, chunk_shape)]
    for flat in range(math.prod(counts)):
        pos = np.unravel_index(flat, counts)
        out_sl, src, crop = [], [], []
        for p, n, c, h in zip(pos, shape, chunk_shape, halo):
            start, stop = int(p) * c, min(n, (int(p) + 1) * c)
            out_sl.append(slice(start, stop))
            if c >= n:  # the axis is whole: the kernel sees the true boundary
                src.append(slice(0, n))
                crop.append(slice(0, n))
            elif mode == "wrap" and (start - h < 0 or stop + h > n):
                src.append(np.arange(start - h, stop + h) % n)
                crop.append(slice(h, h + stop - start))
            else:
                lo, hi = max(0, start - h), min(n, stop + h)
                src.append(slice(lo, hi))
                crop.append(slice(start - lo, stop - lo))
        yield tuple(out_sl), tuple(src), tuple(crop)


def _take_slab(image, src):
    slab = image
    for axis, index in enumerate(src):
        if isinstance(index, slice):
            slab = slab[(slice(None),) * axis + (index,)]
        else:
            slab = np.take(slab, index, axis=axis)
    return np.ascontiguousarray(slab)


def apply_chunked(image: np.ndarray, fn: Callable, halo: int | Sequence[int], mode: str, *,
                  chunk_shape: Sequence[int], to_device: Callable = np.asarray,
                  to_host: Callable = np.asarray, out: np.ndarray | None = None) -> np.ndarray:
    """Filter a host array too large for the device, one halo-padded slab at a time.

    ``fn`` maps a device slab to its filtered slab (same shape), using ``mode`` itself;
    ``halo`` is the filter's reach along each axis (the sum over chained passes).  The
    result equals ``fn(image)`` for every boundary mode: interior chunk edges read their
    neighbours, true edges are either left to ``fn`` (slab clipped there) or, for
    ``wrap``, padded from the far side of the axis.
    """
    ndim = image.ndim
    halo = (int(halo),) * ndim if isinstance(halo, numbers.Integral) else tuple(map(int, halo))
    if out is None:
        out = np.empty(image.shape, dtype=image.dtype)
    for out_sl, src, crop in chunk_slabs(image.shape, tuple(chunk_shape), halo, mode):
        filtered = fn(to_device(_take_slab(image, src)))
        out[out_sl] = to_host(filtered[crop])
    return out


def free_device_bytes() -> int:
    """Free bytes on the current device, counting CuPy's pool's cached free blocks."""
    cupy = _import_cupy()
    free, _total = cupy.cuda.runtime.memGetInfo()
    pool = cupy.get_default_memory_pool()
    return int(free + pool.free_bytes())


# --------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------
def gaussian_weights(sigma: float, order: int = 0, truncate: float = 4.0) -> np.ndarray:
    """The correlation weights scipy.ndimage.gaussian_filter1d applies (float64)."""
    if not sigma > 0:
        raise ValueError(f"`sigma` must be positive, got {sigma!r}")
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 0:
        raise ValueError(f"`order` must be a non-negative integer, got {order!r}")
    return gaussian_kernel1d(float(sigma), int(order), gaussian_radius(sigma, truncate))


# --------------------------------------------------------------------------------------
# Primitives, written against an executor (CuPy on a device; the tests use others)
# --------------------------------------------------------------------------------------
def _dtype_name(image) -> str:
    name = np.dtype(image.dtype).name
    if name not in _CTYPE:
        raise TypeError(f"`image` must be float32 or float64 for the CUDA kernels, got {name}")
    return name


def _check_image(image):
    if image.ndim not in (2, 3):
        raise UnsupportedByKernels(f"the CUDA kernels handle 2-D and 3-D images, got {image.ndim}-D")
    if not image.flags.c_contiguous:
        raise ValueError("`image` must be C-contiguous for the CUDA kernels")
    return _dtype_name(image)


def _check_mode(mode: str) -> str:
    if mode not in MODE_CODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}")
    return mode


def _check_axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise ValueError(f"`axis` must be an integer in [{-ndim}, {ndim}), got {axis!r}")
    return int(axis) % ndim


def _sep_launch(ex, image, out, weights_dev, taps: int, axis: int, mode: str, cval: float,
                op: str) -> Launch:
    dtype = _dtype_name(image)
    itemsize = np.dtype(dtype).itemsize
    outer, n, inner = line_view(image.shape, axis)
    scalar = np.dtype(dtype).type
    if inner == 1:
        plan = plan_line(outer, n, taps, itemsize, op)
        key = KernelKey("sep_line", dtype, mode, op, taps, plan.per)
        args = (image, out, weights_dev, np.int32(outer), np.int32(n), scalar(cval))
    else:
        plan = plan_strided(outer, n, inner, taps, itemsize, op)
        key = KernelKey("sep_strided", dtype, mode, op, taps, plan.per)
        args = (image, out, weights_dev, np.int32(outer), np.int32(n), np.int32(inner),
                np.int32(plan.inner_blocks), scalar(cval))
    return Launch(key, plan.grid, plan.block, plan.shared_bytes, args)


def _correlate1d(ex, image, weights, axis, mode, cval, out=None):
    dtype = _check_image(image)
    mode = _check_mode(mode)
    axis = _check_axis(axis, image.ndim)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(f"`weights` must be a non-empty 1-D array, got shape {weights.shape}")
    if out is None:
        out = ex.xp.empty_like(image)
    w_dev = ex.device_weights(weights, dtype)
    ex.launch(_sep_launch(ex, image, out, w_dev, weights.size, axis, mode, cval, "correlate"))
    return out


def _extremum_filter1d(ex, image, size, axis, mode, cval, maximum, out=None):
    _check_image(image)
    mode = _check_mode(mode)
    axis = _check_axis(axis, image.ndim)
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"`size` must be a positive integer, got {size!r}")
    if out is None:
        out = ex.xp.empty_like(image)
    op = "maximum" if maximum else "minimum"
    # The extrema read no weights; any valid pointer will do.
    ex.launch(_sep_launch(ex, image, out, image, int(size), axis, mode, cval, op))
    return out


_SMOOTH_CENTRE = {"sobel": 2.0, "prewitt": 1.0}


def _gradient_magnitude(ex, image, kind, axes, mode, cval, out=None):
    dtype = _check_image(image)
    mode = _check_mode(mode)
    if kind not in _SMOOTH_CENTRE:
        raise ValueError(f"`kind` must be 'sobel' or 'prewitt', got {kind!r}")
    axes = tuple(_check_axis(a, image.ndim) for a in axes)
    if not axes or len(set(axes)) != len(axes):
        raise ValueError(f"`axes` must name distinct axes, got {axes!r}")
    if out is None:
        out = ex.xp.empty_like(image)
    itemsize = np.dtype(dtype).itemsize
    plan = plan_stencil(image.shape, 1, itemsize)
    scalar = np.dtype(dtype).type
    nz, ny, nx = (1, *image.shape) if image.ndim == 2 else image.shape
    mask = sum(1 << a for a in axes)
    key = KernelKey("gradient_magnitude", dtype, mode, ndim=image.ndim)
    args = (image, out, np.int32(nz), np.int32(ny), np.int32(nx), np.int32(mask),
            scalar(_SMOOTH_CENTRE[kind]), scalar(cval), np.int32(plan.slab))
    ex.launch(Launch(key, plan.grid, plan.block, plan.shared_bytes, args))
    return out


def _median_filter(ex, image, size, mode, cval, out=None):
    dtype = _check_image(image)
    mode = _check_mode(mode)
    if size not in MEDIAN_SIZES:
        raise UnsupportedByKernels(f"the median kernels handle boxes of side {MEDIAN_SIZES}, got {size!r}")
    if out is None:
        out = ex.xp.empty_like(image)
    radius = size // 2
    plan = plan_stencil(image.shape, radius, np.dtype(dtype).itemsize)
    scalar = np.dtype(dtype).type
    nz, ny, nx = (1, *image.shape) if image.ndim == 2 else image.shape
    key = KernelKey("median_box", dtype, mode, ndim=image.ndim, radius=radius)
    args = (image, out, np.int32(nz), np.int32(ny), np.int32(nx), scalar(cval),
            np.int32(plan.slab))
    ex.launch(Launch(key, plan.grid, plan.block, plan.shared_bytes, args))
    return out


def supports(primitive: str, image, **params) -> bool:
    """Whether the CUDA kernels implement ``primitive`` for this image and these parameters
    (the caller falls back to cupyx.scipy.ndimage otherwise)."""
    if image.ndim not in (2, 3) or np.dtype(image.dtype).name not in _CTYPE:
        return False
    itemsize = np.dtype(image.dtype).itemsize
    try:
        if primitive in ("correlate1d", "extremum_filter1d"):
            taps = (np.asarray(params["weights"]).size if primitive == "correlate1d"
                    else int(params["size"]))
            axis = params.get("axis", -1) % image.ndim
            outer, n, inner = line_view(image.shape, axis)
            op = "correlate" if primitive == "correlate1d" else "maximum"
            if inner == 1:
                plan_line(outer, n, taps, itemsize, op)
            else:
                plan_strided(outer, n, inner, taps, itemsize, op)
            return True
        if primitive == "median_filter":
            return params.get("size") in MEDIAN_SIZES
        if primitive == "gradient_magnitude":
            return params.get("kind", "sobel") in _SMOOTH_CENTRE
    except UnsupportedByKernels:
        return False
    return False


# --------------------------------------------------------------------------------------
# Filter bank: several responses of one chunk, one launch sequence, no host round trip
# --------------------------------------------------------------------------------------
_BANK_FILTERS = ("gaussian", "uniform", "gaussian_laplace", "difference_of_gaussians",
                 "gradient_magnitude", "median", "minimum", "maximum")


def _per_axis(value, ndim, name):
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != ndim:
            raise ValueError(f"`{name}` must have one value per axis ({ndim}), got {value!r}")
        return tuple(value)
    return (value,) * ndim


def _normalize_spec(spec, ndim):
    if isinstance(spec, Mapping):
        params = dict(spec)
        try:
            name = params.pop("filter")
        except KeyError:
            raise ValueError(f"a filter-bank spec needs a 'filter' entry, got {spec!r}") from None
    else:
        try:
            name, params = spec
        except (TypeError, ValueError):
            raise ValueError(
                f"a filter-bank spec must be (name, params) or a dict with 'filter', got {spec!r}"
            ) from None
        params = dict(params)
    if name not in _BANK_FILTERS:
        raise ValueError(f"filter-bank filter must be one of {_BANK_FILTERS}, got {name!r}")
    params.setdefault("mode", "reflect")
    params.setdefault("cval", 0.0)
    _check_mode(params["mode"])
    return name, params


def _gaussian_into(ex, image, out, scratch, sigmas, orders, truncate, mode, cval):
    """Separable Gaussian into ``out``, ping-ponging through ``scratch`` (scipy's axis order)."""
    passes = [(a, s, o) for a, (s, o) in enumerate(zip(sigmas, orders)) if s > 1e-15]
    if not passes:
        ex.copy(image, out)
        return out
    # Arrange the ping-pong so the last pass lands in `out`.
    targets = [out if (len(passes) - 1 - i) % 2 == 0 else scratch for i in range(len(passes))]
    src = image
    for (axis, sigma, order), dst in zip(passes, targets):
        _correlate1d(ex, src, gaussian_weights(sigma, order, truncate), axis, mode, cval, out=dst)
        src = dst
    return out


def _filter_bank(ex, image, specs, out=None):
    _check_image(image)
    ndim = image.ndim
    specs = [_normalize_spec(s, ndim) for s in specs]
    if not specs:
        raise ValueError("`specs` must name at least one filter")
    xp = ex.xp
    if out is None:
        out = xp.empty((len(specs),) + image.shape, dtype=image.dtype)
    scratch = [xp.empty_like(image) for _ in range(3)]
    for i, (name, p) in enumerate(specs):
        dst, mode, cval = out[i], p["mode"], p["cval"]
        truncate = p.get("truncate", 4.0)
        if name == "gaussian":
            sig = _per_axis(p["sigma"], ndim, "sigma")
            order = _per_axis(p.get("order", 0), ndim, "order")
            _gaussian_into(ex, image, dst, scratch[0], sig, order, truncate, mode, cval)
        elif name == "uniform":
            sizes = _per_axis(p["size"], ndim, "size")
            weights = [np.full(int(s), 1.0 / int(s)) for s in sizes]
            src = image
            for axis in range(ndim):  # ping-pong so that the last pass lands in dst
                target = dst if (ndim - 1 - axis) % 2 == 0 else scratch[0]
                _correlate1d(ex, src, weights[axis], axis, mode, cval, out=target)
                src = target
        elif name == "gaussian_laplace":
            sig = _per_axis(p["sigma"], ndim, "sigma")
            for axis in range(ndim):
                order = tuple(2 if a == axis else 0 for a in range(ndim))
                term = dst if axis == 0 else scratch[1]
                _gaussian_into(ex, image, term, scratch[0], sig, order, truncate, mode, cval)
                if axis:
                    xp.add(dst, term, out=dst)
        elif name == "difference_of_gaussians":
            low = _per_axis(p["low_sigma"], ndim, "low_sigma")
            high = _per_axis(p["high_sigma"], ndim, "high_sigma")
            zero = (0,) * ndim
            _gaussian_into(ex, image, dst, scratch[0], low, zero, truncate, mode, cval)
            _gaussian_into(ex, image, scratch[1], scratch[0], high, zero, truncate, mode, cval)
            xp.subtract(dst, scratch[1], out=dst)
        elif name == "gradient_magnitude":
            axes = p.get("axes", tuple(range(ndim)))
            _gradient_magnitude(ex, image, p.get("kind", "sobel"), axes, mode, cval, out=dst)
        elif name == "median":
            _median_filter(ex, image, p["size"], mode, cval, out=dst)
        else:  # minimum / maximum over a box: one separable pass per axis
            sizes = _per_axis(p["size"], ndim, "size")
            src = image
            for axis in range(ndim):
                target = dst if (ndim - 1 - axis) % 2 == 0 else scratch[0]
                _extremum_filter1d(ex, src, int(sizes[axis]), axis, mode, cval,
                                   name == "maximum", out=target)
                src = target
    return out


# --------------------------------------------------------------------------------------
# CuPy executor: compilation cache and launches
# --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _import_cupy():
    import cupy

    return cupy


_MODULES: dict[tuple[int, KernelKey], object] = {}
_MODULES_LOCK = threading.Lock()
#: NVRTC options: C++17 for `if constexpr`; fast-math stays off so the arithmetic is IEEE.
COMPILE_OPTIONS = ("-std=c++17",)


def get_function(key: KernelKey):
    """The compiled kernel for ``key`` on the current device (compiled once per device)."""
    cupy = _import_cupy()
    device = cupy.cuda.Device().id
    cache_key = (device, key)
    with _MODULES_LOCK:
        module = _MODULES.get(cache_key)
        if module is None:
            module = cupy.RawModule(code=kernel_source(key.family), options=COMPILE_OPTIONS,
                                    name_expressions=[name_expression(key)])
            _MODULES[cache_key] = module
    return module.get_function(name_expression(key))


class CupyExecutor:
    """Launches on the current CuPy device and stream."""

    def __init__(self):
        self.xp = _import_cupy()
        self._weights: dict[tuple[int, str, bytes], object] = {}

    def device_weights(self, weights: np.ndarray, dtype: str):
        # Cached per device so a filter bank re-uses its weights without a host copy.
        key = (self.xp.cuda.Device().id, dtype, weights.tobytes())
        w = self._weights.get(key)
        if w is None:
            w = self.xp.asarray(weights.astype(dtype))
            self._weights[key] = w
        return w

    def copy(self, src, dst):
        self.xp.copyto(dst, src)

    def launch(self, launch: Launch):
        fn = get_function(launch.key)
        fn(launch.grid, launch.block, launch.args, shared_mem=launch.shared_bytes)


@functools.lru_cache(maxsize=1)
def _executor() -> CupyExecutor:
    return CupyExecutor()


def correlate1d(image, weights, axis, mode, cval):
    """1-D correlation along ``axis`` (scipy.ndimage.correlate1d, origin 0) on the device."""
    return _correlate1d(_executor(), image, weights, axis, mode, cval)


def extremum_filter1d(image, size, axis, mode, cval, maximum):
    """Running minimum or maximum of ``size`` samples along ``axis`` on the device."""
    return _extremum_filter1d(_executor(), image, size, axis, mode, cval, maximum)


def gradient_magnitude(image, kind, axes, mode, cval):
    """Fused Sobel/Prewitt gradient magnitude over ``axes`` on the device."""
    return _gradient_magnitude(_executor(), image, kind, axes, mode, cval)


def median_filter(image, size, mode, cval):
    """Median over a box of side ``size`` (3 or 5) on the device."""
    return _median_filter(_executor(), image, size, mode, cval)


def filter_bank(image, specs, out=None):
    """Several responses of one image, stacked along a new first axis, in one launch
    sequence on the current stream.

    Each spec is ``(name, params)`` or a dict with a ``"filter"`` entry; names:
    ``gaussian`` (sigma, order=0, truncate=4), ``uniform`` (size), ``gaussian_laplace``
    (sigma, truncate), ``difference_of_gaussians`` (low_sigma, high_sigma, truncate),
    ``gradient_magnitude`` (kind="sobel", axes), ``median`` (size 3 or 5), ``minimum`` /
    ``maximum`` (size); every spec takes ``mode`` (default "reflect") and ``cval``.
    """
    return _filter_bank(_executor(), image, specs, out=out)
