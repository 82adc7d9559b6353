"""The dtype rule and argument validation, in one place for the whole package."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np


def supported_float_type(dtype) -> np.dtype:
    """The output dtype of every filter and feature array: the package's one dtype rule.

    ``float64`` input stays ``float64``; every other supported dtype (integers of any
    width, ``bool``, ``float16``, ``float32``) gives ``float32``.

    The rank filters (median, minimum, maximum) follow it too, although their values are
    input values and scipy keeps an integer input's dtype: one rule for every filter keeps
    a pipeline's dtype predictable whatever its filters.  Their float32 results of integer
    inputs are exact, as scipy's, for values within +-2**24 (every 8- and 16-bit image,
    CT in HU); for 32- or 64-bit integers beyond that, pass ``image.astype(np.float64)``
    to keep them exact.

    Examples
    --------
    >>> supported_float_type(np.uint16)
    dtype('float32')
    >>> supported_float_type(np.float64)
    dtype('float64')
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "buif":
        raise TypeError(
            f"`image` must have a real numeric dtype (integer or float), got dtype {dtype}"
        )
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def destination_problem(out, image, dtype) -> str | None:
    """Why ``out`` cannot take a kernel's result for ``image`` in ``dtype`` (what it
    must be, and what it is), or None when it can: a writeable, C-contiguous NumPy
    array of the image's shape and that dtype that does not overlap the image (the
    kernels read neighbours of voxels they have already written)."""
    if not isinstance(out, np.ndarray) or out.shape != image.shape or out.dtype != dtype:
        return (f"a NumPy array of shape {image.shape} and dtype {np.dtype(dtype)}, got "
                f"{type(out).__name__} of shape {getattr(out, 'shape', None)} and dtype "
                f"{getattr(out, 'dtype', None)}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        return "C-contiguous and writeable"
    if np.may_share_memory(out, image):
        return "an array that does not overlap `image`"
    return None


def check_image(image, name: str = "image") -> None:
    """Validate an array-like image before any work is done (shape, dtype)."""
    shape = getattr(image, "shape", None)
    dtype = getattr(image, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(
            f"`{name}` must be a NumPy, Dask or CuPy array, got {type(image).__name__}"
        )
    if len(shape) == 0:
        raise ValueError(f"`{name}` must have at least one dimension, got a 0-d array")
    if any(s == 0 for s in shape):
        raise ValueError(f"`{name}` must not be empty, got shape {tuple(shape)}")
    supported_float_type(dtype)


def normalize_axes(axes, ndim: int) -> tuple[int, ...]:
    """Return the sorted, non-negative, unique axes to filter over (all axes when None)."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, numbers.Integral):
        axes = (axes,)
    try:
        axes = tuple(axes)
    except TypeError:
        raise TypeError(f"`axes` must be an int, a sequence of ints or None, got {axes!r}") from None
    out = []
    for a in axes:
        if not isinstance(a, numbers.Integral) or isinstance(a, bool):
            raise TypeError(f"`axes` must contain integers, got {axes!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"`axes` entry {a} is out of range for an array of {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"`axes` must not repeat an axis, got {axes!r}")
    if not out:
        raise ValueError("`axes` must name at least one axis, got an empty sequence")
    return tuple(sorted(out))


#: The Python types that pass ``per_axis``'s type check for each ``kind`` without it.
_PLAIN_NUMBERS = {numbers.Real: (float, int), numbers.Integral: (int,)}


def per_axis(value, naxes: int, name: str, *, kind=numbers.Real, allow_negative=False,
             allow_zero=True) -> tuple:
    """Broadcast a scalar or check a sequence to one value per filtered axis."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"`{name}` must be a number or a sequence of numbers, got {value!r}")
    if isinstance(value, Sequence) or (isinstance(value, np.ndarray) and value.ndim == 1):
        values = tuple(value)
        if len(values) != naxes:
            raise ValueError(
                f"`{name}` must have one value per filtered axis ({naxes}), "
                f"got {len(values)} values: {value!r}"
            )
    elif isinstance(value, np.ndarray) and value.ndim > 1:
        raise ValueError(f"`{name}` must be a scalar or a 1-D sequence, got shape {value.shape}")
    else:
        values = (value,) * naxes
    plain = _PLAIN_NUMBERS.get(kind, ())
    for v in values:
        # a plain float or int skips the ABC and NumPy calls, which were a third of a
        # small Gaussian's planning
        if type(v) not in plain and (isinstance(v, bool) or not isinstance(v, kind)):
            raise TypeError(f"`{name}` must contain {kind.__name__} values, got {value!r}")
        finite = math.isfinite(v) if type(v) is float else type(v) is int or np.isfinite(v)
        if not finite:
            raise ValueError(f"`{name}` must be finite, got {value!r}")
        if not allow_negative and v < 0:
            raise ValueError(f"`{name}` must be non-negative, got {value!r}")
        if not allow_zero and v == 0:
            raise ValueError(f"`{name}` must be positive, got {value!r}")
    return values


def check_cval(cval) -> float:
    if isinstance(cval, bool) or not isinstance(cval, numbers.Real):
        raise TypeError(f"`cval` must be a real number, got {cval!r}")
    return float(cval)


def check_truncate(truncate) -> float:
    if isinstance(truncate, bool) or not isinstance(truncate, numbers.Real):
        raise TypeError(f"`truncate` must be a real number, got {truncate!r}")
    if not np.isfinite(truncate) or truncate <= 0:
        raise ValueError(f"`truncate` must be a positive finite number, got {truncate!r}")
    return float(truncate)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type name when the message is empty)."""
    return " ".join(str(exc).split()) or type(exc).__name__
