"""Edge filters: Sobel, Prewitt, Laplace and the Sobel gradient magnitude."""

from __future__ import annotations

import numbers

import numpy as np

from .._shared.utils import normalize_axes
from ..backends._numpy import edge_derivative, separable_gradient_magnitude
from ._dispatch import apply_filter, as_array, common_options, scipy_output

_SECOND_DERIVATIVE = np.array([1.0, -2.0, 1.0])


def _check_axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"`axis` must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"`axis` {axis} is out of range for an array of {ndim} dimensions")
    return int(axis) % ndim


def _edge(kind, image, axis, mode, cval, axes, backend, out):
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    axis = _check_axis(axis, image.ndim)
    axes = normalize_axes(axes, image.ndim)
    if axis not in axes:
        raise ValueError(f"`axis` {axis} must be one of the filtered `axes` {axes}")
    depth = tuple(1 if a in axes else 0 for a in range(image.ndim))
    def op(engine, block, out=None):
        return edge_derivative(engine, block, kind, axis, axes, mode, cval, out=out)

    return apply_filter(image, op, depth, mode=mode, backend=backend, out=out)


@scipy_output
def sobel(image, axis=-1, *, mode="reflect", cval=0.0, axes=None, backend="auto", out=None):
    """Sobel derivative along ``axis``: ``[-1, 0, 1]`` along it, ``[1, 2, 1]`` along the others.

    Parameters
    ----------
    image : array (NumPy, Dask or CuPy)
    axis : int, optional
        Axis of the derivative.
    mode, cval, backend
        As :func:`medimg_fast.gaussian_filter`.
    axes : sequence of int, optional
        Axes to smooth along (default all): ``axes=(1, 2)`` gives 2-D Sobel per slice.

    Returns
    -------
    array
        Same kind as ``image``; float32 (float64 for float64 input); not normalised, as
        ``scipy.ndimage.sobel``.

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import sobel
    >>> ramp = np.tile(np.arange(5.0), (5, 1))
    >>> float(sobel(ramp, axis=1, backend="numpy")[2, 2])
    8.0
    """
    return _edge("sobel", image, axis, mode, cval, axes, backend, out)


@scipy_output
def prewitt(image, axis=-1, *, mode="reflect", cval=0.0, axes=None, backend="auto",
            out=None):
    """Prewitt derivative along ``axis``: ``[-1, 0, 1]`` along it, ``[1, 1, 1]`` along the others.

    Parameters and returns as :func:`sobel`.

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import prewitt
    >>> ramp = np.tile(np.arange(5.0), (5, 1))
    >>> float(prewitt(ramp, axis=1, backend="numpy")[2, 2])
    6.0
    """
    return _edge("prewitt", image, axis, mode, cval, axes, backend, out)


@scipy_output
def laplace(image, *, mode="reflect", cval=0.0, axes=None, backend="auto"):
    """Discrete Laplacian: the sum over axes of ``[1, -2, 1]``.

    Parameters
    ----------
    image : array (NumPy, Dask or CuPy)
    mode, cval, axes, backend
        As :func:`medimg_fast.gaussian_filter`.

    Returns
    -------
    array
        Same kind as ``image``; float32 (float64 for float64 input).

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import laplace
    >>> laplace(np.array([0.0, 0.0, 1.0, 0.0, 0.0]), backend="numpy")
    array([ 0.,  1., -2.,  1.,  0.])
    """
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    axes = normalize_axes(axes, image.ndim)
    depth = tuple(1 if a in axes else 0 for a in range(image.ndim))

    def op(engine, block):
        total = None
        for axis in axes:
            term = engine.correlate1d(block, _SECOND_DERIVATIVE, axis, mode, cval)
            total = term if total is None else total + term
        return total

    return apply_filter(image, op, depth, mode=mode, backend=backend)


@scipy_output
def gradient_magnitude(image, *, mode="reflect", cval=0.0, axes=None, backend="auto",
                       out=None):
    """Sobel gradient magnitude: ``sqrt(sum_a sobel(image, a)^2)`` over the filtered axes.

    Parameters
    ----------
    image : array (NumPy, Dask or CuPy)
    mode, cval, axes, backend
        As :func:`medimg_fast.gaussian_filter`. With ``axes``, derivatives and smoothing
        are taken over those axes only (slice-wise 2-D gradients of a volume).

    Returns
    -------
    array
        Same kind as ``image``; float32 (float64 for float64 input).

    Notes
    -----
    Over all axes, the CPU and GPU backends evaluate this in one fused pass (one read of
    each input voxel); the result equals composing ``scipy.ndimage.sobel`` per axis.

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import gradient_magnitude
    >>> ramp = np.tile(np.arange(5.0), (5, 1))
    >>> float(gradient_magnitude(ramp, backend="numpy")[2, 2])
    8.0
    """
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    axes = normalize_axes(axes, image.ndim)
    depth = tuple(1 if a in axes else 0 for a in range(image.ndim))

    def op(engine, block, out=None):
        if len(axes) == block.ndim:
            return engine.gradient_magnitude(block, "sobel", axes, mode, cval, out=out)
        # composed from 1-D passes: a new array, which the caller copies into ``out``
        return separable_gradient_magnitude(engine, block, "sobel", axes, mode, cval,
                                            smooth_axes=axes)

    return apply_filter(image, op, depth, mode=mode, backend=backend, out=out)
