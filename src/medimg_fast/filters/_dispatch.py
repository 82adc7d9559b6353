"""Dispatch on the array type: one filter body for NumPy, Dask and CuPy inputs.

A public filter validates its arguments, then hands :func:`apply_filter` an ``op``
(``op(backend, array) -> array`` on one block in the working dtype) and the halo depth
of every axis.  This module decides where the work runs:

* NumPy in, NumPy out (chunked through Dask when larger than the memory budget);
* Dask in, lazy Dask out, exact across chunks (:func:`medimg_fast.chunking.map_with_halo`);
* CuPy in, CuPy out; a NumPy-backed Dask array with ``backend="cupy"`` moves each chunk
  to the device once and brings the result back.

scipy.ndimage's ``output=`` array (:func:`scipy_output`): where a NumPy image is filtered
whole on a CPU backend and ``output`` can take the kernel's writes
(:func:`direct_output`), the filter's ``op`` gets it as ``out`` and the backend may write
its result there; the result is copied into ``output`` only when it is another array.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from .. import chunking
from .._shared.boundary import extension_indices, normalize_mode
from .._shared.utils import (
    check_cval,
    check_image,
    destination_problem,
    supported_float_type,
)
from ..backends import resolve_backend


def _is_dask(x) -> bool:
    return type(x).__module__.startswith("dask.") and hasattr(x, "_meta")


def _is_cupy(x) -> bool:
    return type(x).__module__.startswith("cupy")


def array_kind(image) -> str:
    """"numpy", "cupy", "dask-numpy" or "dask-cupy"."""
    if _is_dask(image):
        return "dask-cupy" if _is_cupy(image._meta) else "dask-numpy"
    return "cupy" if _is_cupy(image) else "numpy"


def as_array(image, name: str = "image"):
    """Accept array-likes (lists) as NumPy arrays; validate shape and dtype."""
    is_array = hasattr(image, "shape") and hasattr(image, "dtype")
    if not is_array and (isinstance(image, (list, tuple))
                         or (np.isscalar(image) and not isinstance(image, (str, bytes)))):
        image = np.asarray(image)
    check_image(image, name)
    return image


def copy_block(block, out=None):
    """``block`` copied (an op's identity), into ``out`` when given."""
    if out is None:
        return block.copy()
    out[...] = block
    return out


def common_options(mode, cval):
    return normalize_mode(mode), check_cval(cval)


def apply_filter(image, op, depth, *, mode: str, backend: str = "auto", out=None,
                 temporaries=None):
    """Run ``op`` over ``image`` on the chosen backend; return the same kind of array.

    Parameters
    ----------
    image : numpy.ndarray, dask.array.Array or cupy.ndarray
        Validated input.
    op : callable
        ``op(backend, block) -> block``: the filter on one block already in the working
        dtype, C-contiguous, on the backend's device.
    depth : tuple of int
        How far (voxels) each output voxel reaches along each axis.
    mode : str
        Boundary rule at the faces of the whole array (``op`` applies it, with its cval).
    backend : str
        A registry name or "auto".
    out : numpy.ndarray, optional
        A destination from :func:`direct_output`.  Where ``image`` is a NumPy array
        filtered whole on a CPU backend, ``op`` is called as ``op(backend, block,
        out=out)`` and may return ``out`` filled; a NumPy array larger than the memory
        budget is filtered block by block into ``out``
        (:func:`medimg_fast.chunking.filter_numpy_in_chunks`); for Dask and CuPy images
        ``out`` is not used (the caller copies the result).  ``op`` must accept ``out``
        when one is given.
    temporaries : callable, optional
        ``temporaries(engine) -> int``: how many arrays of the image's size and working
        dtype ``op`` holds at once besides its block and its result.  A NumPy image on a
        CPU backend is then filtered whole while those, and a converted copy of the
        image where its dtype or layout is not the working one, fit the memory budget:
        the result is made whole either way, so blocks would bound only those.  Without
        it, the input, the output and two temporaries must fit.
    """
    kind = array_kind(image)
    on_gpu = kind in ("cupy", "dask-cupy")
    engine = resolve_backend(backend, on_gpu=on_gpu)
    dtype = supported_float_type(image.dtype)

    def block_function(block, out=None):
        block = engine.asarray(block)
        block = engine.xp.ascontiguousarray(block, dtype=dtype)
        result = op(engine, block) if out is None else op(engine, block, out=out)
        if engine.on_gpu and not on_gpu:  # host chunk filtered on the device
            result = result.get()
        return result

    if kind == "numpy":
        image = np.asarray(image)
        budget = chunking.memory_budget()
        held = _volumes_held(image, dtype, engine, temporaries)
        if image.size * dtype.itemsize * held > budget and image.ndim > 0:
            # each block into the result (``out`` when given); an op that takes ``out``
            # writes every block into one scratch block
            takes_out = not engine.on_gpu and "out" in inspect.signature(op).parameters
            return chunking.filter_numpy_in_chunks(
                image, block_function, depth, mode=mode, dtype=dtype, budget=budget,
                out=out, reuse=takes_out,
            )
        return block_function(image, out=None if engine.on_gpu else out)
    if kind == "cupy":
        return block_function(image)

    meta = image._meta.astype(dtype)
    if engine.on_gpu and not on_gpu:
        meta = np.empty((0,) * image.ndim, dtype=dtype)
    return chunking.map_with_halo(
        image.astype(dtype), block_function, depth, mode=mode, dtype=dtype, meta=meta,
    )


def _volumes_held(image, dtype, engine, temporaries) -> int:
    """Arrays of the image's size in ``dtype`` that filtering a NumPy ``image`` whole
    holds, for the memory budget (see :func:`apply_filter`)."""
    if temporaries is None or engine.on_gpu:
        return 4  # input, output and two temporaries of the working dtype
    converted = image.dtype != dtype or not image.flags.c_contiguous
    return int(temporaries(engine)) + int(converted)


_OUTPUT_DOC = """    output : dtype or array, optional
        As scipy.ndimage's ``output``: a dtype to return the result in (cast as NumPy
        ``astype`` casts, e.g. float to integer truncates), or an array of the result's
        shape to fill and return (NumPy or CuPy images; not for Dask, whose result is
        lazy).  Default: the package's dtype rule.
"""


def direct_output(output, image):
    """``output`` when a kernel may write a filter's result into it directly, else None.

    That is a writeable, C-contiguous NumPy array of the image's shape in the working
    dtype (:func:`supported_float_type`), where the image is a NumPy array it does not
    overlap: the kernels read neighbours of voxels they have already written, so
    ``output=image`` (or any view of it) takes the copy path, which gives scipy's values.
    Whether the image is then filtered whole is :func:`apply_filter`'s decision.
    """
    if not isinstance(image, np.ndarray):
        return None
    try:
        dtype = supported_float_type(image.dtype)
    except TypeError:  # the filter reports it
        return None
    return None if destination_problem(output, image, dtype) else output


def with_output(result, output, image):
    """``result`` in scipy's ``output`` form: None (unchanged), a dtype, or an array
    (filled, unless the filter has already written ``result`` into it)."""
    if output is None:
        return result
    is_array = (not isinstance(output, (type, np.dtype, str)) and hasattr(output, "shape")
                and hasattr(output, "dtype"))
    if is_array:
        if _is_dask(image) or _is_dask(output):
            raise TypeError("`output` as an array needs a NumPy or CuPy image; a Dask result "
                            "is lazy: give a dtype, or store it with .store()")
        if tuple(output.shape) != tuple(result.shape):
            raise ValueError(f"`output` must have the result's shape {tuple(result.shape)}, "
                             f"got {tuple(output.shape)}")
        if _is_cupy(output) != _is_cupy(result):
            raise TypeError("`output` must be the same kind of array as the image "
                            f"({type(result).__name__}), got {type(output).__name__}")
        if result is not output:
            _fill(output, result)
        return output
    try:
        dtype = np.dtype(output)
    except TypeError:
        raise TypeError(f"`output` must be None, a dtype or an array, got {output!r}") from None
    return result.astype(dtype)


def _fill(output, result):
    """The copy of a result into the caller's ``output`` (one place, which the tests watch)."""
    output[...] = result


def scipy_output(func):
    """Give a filter scipy.ndimage's keyword ``output=`` (see :func:`with_output`).

    A ``func`` with a keyword ``out`` (not public: the wrapper's signature drops it) is
    handed :func:`direct_output`'s destination and passes it on to :func:`apply_filter`.
    """
    sig = inspect.signature(func)
    takes_out = "out" in sig.parameters

    @functools.wraps(func)
    def wrapper(image, *args, output=None, **kwargs):
        if "out" in kwargs:
            raise TypeError(f"{func.__name__}() got an unexpected keyword argument 'out' "
                            "(scipy.ndimage's name is `output`)")
        if takes_out:
            kwargs["out"] = direct_output(output, image)
        return with_output(func(image, *args, **kwargs), output, image)

    params = [p for p in sig.parameters.values() if p.name != "out"]
    params.append(inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY, default=None))
    wrapper.__signature__ = sig.replace(parameters=params)
    if func.__doc__ and "\n    Returns\n" in func.__doc__:
        wrapper.__doc__ = func.__doc__.replace("\n    Returns\n",
                                               "\n" + _OUTPUT_DOC + "\n    Returns\n", 1)
    return wrapper


def extend_half(xp, block, axes, mode, cval):
    """``block`` extended by ``n // 2`` voxels on both sides of each of ``axes`` by the
    boundary ``mode`` (for the frequency-domain filters: their circular transform then
    sees the mode's neighbours), and the slices of the original voxels."""
    crop = [slice(None)] * block.ndim
    for a in axes:
        n = block.shape[a]
        pad = n // 2
        idx = extension_indices(n, pad, pad, mode)
        ext = xp.take(block, xp.asarray(np.maximum(idx, 0)), axis=a)
        if mode == "constant":
            outside = xp.asarray((idx < 0).reshape([-1 if j == a else 1
                                                    for j in range(block.ndim)]))
            ext = xp.where(outside, xp.asarray(cval, dtype=block.dtype), ext)
        block = ext
        crop[a] = slice(pad, pad + n)
    return block, tuple(crop)


def apply_global(image, kind, axes, dtype, block_function):
    """``block_function`` of the whole of ``axes``: NumPy/CuPy directly; a Dask array
    rechunked to one chunk along ``axes`` and returned in its own chunks."""
    if kind in ("numpy", "cupy"):
        return block_function(image if kind == "cupy" else np.asarray(image))
    whole = image.rechunk({a: -1 for a in axes})
    meta = image._meta.astype(dtype)
    result = whole.map_blocks(block_function, dtype=dtype, meta=meta)
    return result.rechunk(image.chunks)
