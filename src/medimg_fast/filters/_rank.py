"""Box and rank filters: uniform (mean), median, minimum, maximum."""

from __future__ import annotations

import numbers

import numpy as np

from .._shared.utils import normalize_axes, per_axis
from ._dispatch import apply_filter, as_array, common_options, copy_block, scipy_output


def _footprint(ndim: int, size, footprint, axes):
    """The full-rank boolean footprint and whether it is a full box."""
    axes = normalize_axes(axes, ndim)
    if footprint is not None and size is not None:
        raise ValueError("give either `size` or `footprint`, not both")
    if footprint is None:
        if size is None:
            raise ValueError("one of `size` or `footprint` is required")
        sizes = per_axis(size, len(axes), "size", kind=numbers.Integral, allow_zero=False)
        fp = np.ones(tuple(int(s) for s in sizes), dtype=bool)
        is_box = True
    else:
        fp = np.asarray(footprint)
        if fp.ndim != len(axes):
            raise ValueError(
                f"`footprint` must have {len(axes)} dimensions (one per filtered axis), "
                f"got shape {fp.shape}"
            )
        if fp.dtype.kind not in "bui":
            raise TypeError(f"`footprint` must be boolean, got dtype {fp.dtype}")
        fp = fp.astype(bool)
        if not fp.any():
            raise ValueError("`footprint` must contain at least one True element")
        is_box = bool(fp.all())
    full = np.ones(ndim, dtype=int)
    full[list(axes)] = fp.shape
    return fp.reshape(tuple(full)), is_box


@scipy_output
def uniform_filter(image, size=3, *, mode="reflect", cval=0.0, axes=None, backend="auto",
                   out=None):
    """Mean over a box of ``size`` voxels per filtered axis.

    Parameters
    ----------
    image : array (NumPy, Dask or CuPy)
    size : int or sequence of int
        Box length per filtered axis (positive).
    mode, cval, axes, backend
        As :func:`medimg_fast.gaussian_filter`.

    Returns
    -------
    array
        Same kind as ``image``; float32 (float64 for float64 input).

    Notes
    -----
    Separable: one 1-D correlation with ``size`` equal weights per axis; the window along
    an axis is ``[i - size//2, i - size//2 + size)``, as ``scipy.ndimage.uniform_filter``.

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import uniform_filter
    >>> uniform_filter(np.array([0.0, 3.0, 6.0]), 3, mode="nearest", backend="numpy")
    array([1., 3., 5.])
    """
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    axes = normalize_axes(axes, image.ndim)
    sizes = per_axis(size, len(axes), "size", kind=numbers.Integral, allow_zero=False)
    passes = [(a, np.full(int(s), 1.0 / int(s))) for a, s in zip(axes, sizes) if s > 1]
    depth = [0] * image.ndim
    for a, s in zip(axes, sizes):
        depth[a] = int(s) // 2

    def op(engine, block, out=None):
        if not passes:
            return copy_block(block, out)
        return engine.correlate_separable(block, passes, mode, cval, out=out)

    return apply_filter(image, op, tuple(depth), mode=mode, backend=backend, out=out)


def _rank_op(footprint, is_box, which, mode, cval):
    count = int(footprint.sum())
    rank = {"median": count // 2, "minimum": 0, "maximum": count - 1}[which]

    def op(engine, block, out=None):
        if which != "median" and is_box:  # min/max of a box is separable
            runs = [(axis, length) for axis, length in enumerate(footprint.shape) if length > 1]
            if not runs:
                return copy_block(block, out)
            for i, (axis, length) in enumerate(runs):
                block = engine.extremum_filter1d(block, length, axis, mode, cval,
                                                 which == "maximum",
                                                 out=out if i == len(runs) - 1 else None)
            return block
        return engine.rank_filter(block, footprint, rank, mode, cval, out=out)

    return op


def _rank_filter(which, image, size, footprint, mode, cval, axes, backend, out):
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    fp, is_box = _footprint(image.ndim, size, footprint, axes)
    depth = tuple(s // 2 for s in fp.shape)
    return apply_filter(image, _rank_op(fp, is_box, which, mode, cval), depth, mode=mode,
                        backend=backend, out=out)


_RANK_DOC = """{title}

    Parameters
    ----------
    image : array (NumPy, Dask or CuPy)
    size : int or sequence of int, optional
        Box length per filtered axis. Give ``size`` or ``footprint``, not both.
    footprint : array_like of bool, optional
        Neighbourhood, one dimension per filtered axis, centred at ``shape // 2``.
    mode, cval, axes, backend
        As :func:`medimg_fast.gaussian_filter`.

    Returns
    -------
    array
        Same kind as ``image``; float32 (float64 for float64 input).

    Notes
    -----
    {notes}

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import {name}
    >>> {name}(np.array([5.0, 1.0, 9.0, 3.0]), size=3, mode="nearest", backend="numpy")
    {example}
"""


def median_filter(image, size=None, footprint=None, *, mode="reflect", cval=0.0, axes=None,
                  backend="auto", out=None):
    return _rank_filter("median", image, size, footprint, mode, cval, axes, backend, out)


def minimum_filter(image, size=None, footprint=None, *, mode="reflect", cval=0.0, axes=None,
                   backend="auto", out=None):
    return _rank_filter("minimum", image, size, footprint, mode, cval, axes, backend, out)


def maximum_filter(image, size=None, footprint=None, *, mode="reflect", cval=0.0, axes=None,
                   backend="auto", out=None):
    return _rank_filter("maximum", image, size, footprint, mode, cval, axes, backend, out)


median_filter.__doc__ = _RANK_DOC.format(
    title="Median over a box or footprint.", name="median_filter",
    notes="The element of rank ``count // 2`` of the footprint's values, as "
          "``scipy.ndimage.median_filter`` (for an even count, the upper median).",
    example="array([5., 5., 3., 3.])")
minimum_filter.__doc__ = _RANK_DOC.format(
    title="Minimum over a box or footprint.", name="minimum_filter",
    notes="A box footprint is filtered as separable 1-D running minima.",
    example="array([1., 1., 1., 3.])")
maximum_filter.__doc__ = _RANK_DOC.format(
    title="Maximum over a box or footprint.", name="maximum_filter",
    notes="A box footprint is filtered as separable 1-D running maxima.",
    example="array([5., 9., 9., 9.])")

# scipy.ndimage's ``output=`` (after the docstrings above are set, so they document it)
median_filter = scipy_output(median_filter)
minimum_filter = scipy_output(minimum_filter)
maximum_filter = scipy_output(maximum_filter)
