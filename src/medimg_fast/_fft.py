"""FFTs of NumPy arrays, backed by ducc0 (internal).

ducc0 is the successor of pocketfft (the library behind ``scipy.fft`` and ``numpy.fft``)
by the same author.  It writes into given arrays (no padded or temporary copies), lets
the inverse real transform use the spectrum as scratch space, and threads every axis.
Measured on this project's 2-core machine (256^3 float32, one process, alternating, best
of 5): forward real transform 0.058 s against 0.067 s for ``scipy.fft.rfftn(...,
workers=-1)``, inverse 0.062-0.086 s against 0.089-0.124 s; the Simoncelli filter 0.127 s
against 0.159 s, the IBSI-2 Gabor bank about 20% faster.  That is why the Fourier-domain
filters and Moran's I / Geary's C use it.

NumPy's conventions: the last of ``axes`` is the real (halved) axis, forward transforms
are unnormalised, inverse ones divide by the number of transformed points.  float32 data
transforms in single precision (complex64), float64 in double; other real dtypes are
converted to float64.  CuPy arrays keep ``cupy.fft``: these functions take NumPy arrays
only.  Import this module lazily (inside functions): it imports numba.

ducc0 transforms lines in SIMD batches, and a line's result depends in its last bits on
the lines batched with it: where a Dask block holds part of a stack of independent
slices and must match the whole exactly, transform one plane at a time
(:func:`fftn_inplace` with ``per_plane``) or use ``scipy.fft``.

The same values on every machine: ducc0 shares a transform's lines among its threads
without changing any result for 2, 3, 4, 7 or 16 threads, but its one-thread path (taken
when it is given one thread, or its thread pool has one, as in a process pinned to one
core) differs in the last bits for about half of the transforms of 32768 elements or more
(62 of 120 random shapes, float32 and float64, c2c, r2c, c2r and DCT-I, ducc0 0.42).  So
every transform here asks for at least two threads, and the pool is given two where it
has fewer: a one-core machine then reproduces the values of the others (at the cost of a
second thread on its one core).  Below 32768 elements ducc0 uses one thread whatever it
is given, the same everywhere.
"""
from __future__ import annotations

import functools
import os

import numba
import numpy as np

__all__ = ["dctn_type1", "fft", "fftn_inplace", "irfftn", "multiply_real", "rfft", "rfftn",
           "usable_cores"]


@functools.lru_cache(maxsize=1)
def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


#: Threads every transform asks ducc0 for at least (see the module docstring).
_MIN_THREADS = 2


@functools.lru_cache(maxsize=1)
def _ducc_fft():
    import ducc0
    import ducc0.fft

    if ducc0.misc.thread_pool_size() < _MIN_THREADS:
        ducc0.misc.resize_thread_pool(_MIN_THREADS)
    return ducc0.fft


def _threads() -> int:
    """ducc0's ``nthreads``: every usable core, and never fewer than ``_MIN_THREADS``."""
    return max(_MIN_THREADS, usable_cores())


def _real(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind == "c":
        raise TypeError(f"expected a real array, got dtype {x.dtype}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return x


def _complex(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype not in (np.complex64, np.complex128):
        x = x.astype(np.complex64 if x.dtype == np.float32 else np.complex128)
    return x


def _axes(axes, ndim: int) -> list[int]:
    if axes is None:
        return list(range(ndim))
    if np.ndim(axes) == 0:
        axes = [axes]
    out = [int(a) % ndim if -ndim <= int(a) < ndim else None for a in axes]
    if None in out or len(set(out)) != len(out) or not out:
        raise ValueError(f"`axes` must be distinct axes of a {ndim}-D array, got {axes!r}")
    return out


def rfftn(x, axes=None, *, out=None) -> np.ndarray:
    """``numpy.fft.rfftn(x, axes=axes)`` (no padding): the half spectrum, the last of
    ``axes`` cut to ``n // 2 + 1``; into ``out`` (complex, that shape, not overlapping
    ``x``) when given."""
    x = _real(x)
    return _ducc_fft().r2c(x, axes=_axes(axes, x.ndim), out=out, nthreads=_threads())


def irfftn(spectrum, shape, axes=None, *, overwrite=False, out=None) -> np.ndarray:
    """``numpy.fft.irfftn(spectrum, s=shape, axes=axes)`` with ``shape`` the lengths of
    the transformed output axes; those other than the last must equal the spectrum's
    (no padding or cropping), the last is ``2 * m - 2`` or ``2 * m - 1`` for ``m``
    spectrum entries.  ``overwrite``: the spectrum may be used as scratch space (its
    values are then undefined), which saves a copy.  Into ``out`` (real, not overlapping
    ``spectrum``) when given."""
    spectrum = _complex(spectrum)
    axes = _axes(axes, spectrum.ndim)
    shape = [int(n) for n in shape]
    if len(shape) != len(axes):
        raise ValueError(f"`shape` must give one length per axis {axes}, got {shape!r}")
    for a, n in zip(axes[:-1], shape[:-1]):
        if spectrum.shape[a] != n:
            raise ValueError(f"`shape` {shape!r} does not match the spectrum's shape "
                             f"{spectrum.shape} along axis {a}")
    m = spectrum.shape[axes[-1]]
    if shape[-1] // 2 + 1 != m:
        raise ValueError(f"the last length of `shape` must be 2 * {m} - 2 or 2 * {m} - 1, "
                         f"got {shape[-1]}")
    return _ducc_fft().c2r(spectrum, axes=axes, lastsize=shape[-1], forward=False, inorm=2,
                           out=out, nthreads=_threads(),
                           allow_overwriting_input=bool(overwrite))


def rfft(x, n=None, axis=-1, *, out=None) -> np.ndarray:
    """``numpy.fft.rfft(x, n, axis)``: zero-padded (or cut) to ``n`` along ``axis``; into
    ``out`` (complex, possibly a strided view, not overlapping ``x``) when given."""
    x = _real(x)
    axis = _axes([axis], x.ndim)[0]
    x = _fit(x, n, axis)
    return _ducc_fft().r2c(x, axes=[axis], out=out, nthreads=_threads())


def fft(x, n=None, axis=-1, *, overwrite=False) -> np.ndarray:
    """``numpy.fft.fft(x, n, axis)`` (complex result in the input's precision), zero-padded
    (or cut) to ``n`` along ``axis``.  ``overwrite``: a complex ``x`` of length ``n`` is
    transformed in place (and returned)."""
    x = np.asarray(x)
    if x.dtype.kind != "c":
        x = _complex(_real(x))
    else:
        x = _complex(x)
    axis = _axes([axis], x.ndim)[0]
    fitted = _fit(x, n, axis)
    in_place = overwrite or fitted is not x
    return _ducc_fft().c2c(fitted, axes=[axis], out=fitted if in_place else None,
                           nthreads=_threads())


def dctn_type1(x, *, overwrite=False) -> np.ndarray:
    """``scipy.fft.dctn(x, type=1)`` (unnormalised) over every axis; ``overwrite``: a
    float ``x`` holds the result (and is returned)."""
    x = _real(x)
    return _ducc_fft().dct(x, 1, out=x if overwrite else None, nthreads=_threads())


def fftn_inplace(x: np.ndarray, axes, *, inverse=False, per_plane=False) -> np.ndarray:
    """``x[...] = numpy.fft.fftn(x, axes=axes)`` (``ifftn`` with ``inverse``, divided by
    the number of points) for a complex ``x``, in place; returns ``x``.

    ``per_plane``: one transform per index of the other axes.  ducc0 transforms lines in
    SIMD batches, and a line's result depends in its last bits on the lines batched with
    it; one plane at a time, a plane's result depends on that plane alone (a Dask block
    holding some of the slices then matches the whole volume exactly).  For contiguous
    planes (the trailing axes) it costs nothing measurable; for strided ones it is slow.
    """
    if x.dtype not in (np.complex64, np.complex128):
        raise TypeError(f"expected a complex64 or complex128 array, got dtype {x.dtype}")
    axes = _axes(axes, x.ndim)
    kw = {"forward": not inverse, "inorm": 2 if inverse else 0, "nthreads": _threads()}
    if not per_plane or len(axes) == x.ndim:
        return _ducc_fft().c2c(x, axes=axes, out=x, **kw)
    others = [a for a in range(x.ndim) if a not in axes]
    moved = np.moveaxis(x, others, list(range(len(others))))
    plane_axes = list(range(len(others), x.ndim))
    # the axes of the plane in the order given (moveaxis keeps their relative order)
    order = sorted(axes)
    plane_axes = [plane_axes[order.index(a)] - len(others) for a in axes]
    c2c = _ducc_fft().c2c
    for index in np.ndindex(*moved.shape[:len(others)]):
        plane = moved[index]
        c2c(plane, axes=plane_axes, out=plane, **kw)
    return x


def _fit(x: np.ndarray, n, axis: int) -> np.ndarray:
    """``x`` zero-padded or cut to ``n`` along ``axis`` (``x`` itself when it has ``n``)."""
    if n is None or int(n) == x.shape[axis]:
        return x
    n = int(n)
    if n < 1:
        raise ValueError(f"`n` must be positive, got {n}")
    if n < x.shape[axis]:
        return np.ascontiguousarray(np.take(x, np.arange(n), axis=axis))
    shape = list(x.shape)
    shape[axis] = n
    padded = np.zeros(shape, x.dtype)
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, x.shape[axis])
    padded[tuple(index)] = x
    return padded


def multiply_real(spectrum: np.ndarray, factor) -> np.ndarray:
    """``spectrum *= factor`` in place, on every usable core; returns ``spectrum``.

    ``spectrum`` is a C-contiguous complex array, ``factor`` a real array of the same
    precision shaped like the trailing axes of ``spectrum`` (leading axes of length 1
    are ignored).  On a 256^3 half spectrum (complex64) NumPy's in-place multiply takes
    about 0.014 s on one core; this numba loop shares it across the cores.
    """
    factor = np.asarray(factor)
    while factor.ndim and factor.shape[0] == 1:
        factor = factor[0]
    lead = spectrum.ndim - factor.ndim
    if (spectrum.dtype.kind != "c" or not spectrum.flags.c_contiguous or lead < 0
            or spectrum.shape[lead:] != factor.shape
            or factor.dtype != spectrum.real.dtype):
        raise ValueError(f"`factor` ({factor.shape}, {factor.dtype}) does not fit the "
                         f"trailing axes of `spectrum` ({spectrum.shape}, {spectrum.dtype})")
    # numba's default threading layer aborts on concurrent parallel launches: through the
    # backends' launcher, which serialises them unless the layer is thread-safe
    from .backends._numba_kernels import _launch

    _launch(_multiply_real_rows, spectrum.reshape(-1, factor.size),
            np.ascontiguousarray(factor).reshape(-1), numba.get_num_threads())
    return spectrum


@numba.njit(parallel=True, cache=True, nogil=True)
def _multiply_real_rows(rows, factor, n_threads):
    """``rows[r, i] *= factor[i]``, parallel over rows when there are many, else within
    each row."""
    n_rows, n = rows.shape
    if n_rows >= 4 * n_threads:
        for r in numba.prange(n_rows):
            for i in range(n):
                rows[r, i] *= factor[i]
    else:
        for r in range(n_rows):
            for i in numba.prange(n):
                rows[r, i] *= factor[i]
