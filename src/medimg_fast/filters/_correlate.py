"""Generic N-D correlation and convolution."""

from __future__ import annotations

import numpy as np

from .._shared.utils import normalize_axes
from ._dispatch import apply_filter, as_array, common_options, scipy_output


def _check_weights(weights, ndim: int, axes: tuple[int, ...]) -> np.ndarray:
    weights = np.asarray(weights)
    if weights.dtype.kind not in "buif":
        raise TypeError(f"`weights` must be real numbers, got dtype {weights.dtype}")
    if weights.ndim != len(axes):
        raise ValueError(
            f"`weights` must have {len(axes)} dimensions (one per filtered axis), "
            f"got shape {weights.shape}"
        )
    if weights.size == 0:
        raise ValueError(f"`weights` must not be empty, got shape {weights.shape}")
    if not np.all(np.isfinite(weights)):
        raise ValueError("`weights` must be finite")
    full = np.ones(ndim, dtype=int)
    full[list(axes)] = weights.shape
    return weights.astype(np.float64).reshape(tuple(full))


@scipy_output
def correlate(image, weights, *, mode="reflect", cval=0.0, axes=None, backend="auto",
              out=None):
    """Multidimensional correlation: ``out[i] = sum_k weights[k] * image[i + k - c]``.

    Parameters
    ----------
    image : array (NumPy, Dask or CuPy)
    weights : array_like
        Correlation weights, one dimension per filtered axis, centred at ``shape // 2``.
    mode, cval : boundary handling, as in scipy.ndimage.
    axes : sequence of int, optional
        Axes the weights span (default all).
    backend : str, optional

    Returns
    -------
    array
        Same kind as ``image``; float32 (float64 for float64 input).

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import correlate
    >>> correlate(np.arange(5.0), [0, 0, 1], mode="nearest", backend="numpy")
    array([1., 2., 3., 4., 4.])
    """
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    axes = normalize_axes(axes, image.ndim)
    w = _check_weights(weights, image.ndim, axes)
    depth = tuple(s // 2 for s in w.shape)
    def op(engine, block, out=None):
        return engine.correlate(block, w, mode, cval, out=out)

    return apply_filter(image, op, depth, mode=mode, backend=backend, out=out)


@scipy_output
def convolve(image, weights, *, mode="reflect", cval=0.0, axes=None, backend="auto",
             out=None):
    """Multidimensional convolution, with scipy.ndimage's centring for even-sized weights.

    Notes
    -----
    Convolution is correlation with the weights flipped.  For an even length ``L``
    scipy centres the flipped kernel one sample earlier; prepending a zero tap makes the
    length odd with the same taps at the same offsets, so the origin-0 correlation of
    every backend reproduces it.

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import convolve
    >>> convolve(np.arange(5.0), [1, 0, 0], mode="nearest", backend="numpy")
    array([1., 2., 3., 4., 4.])
    """
    image = as_array(image)
    axes = normalize_axes(axes, image.ndim)
    w = np.asarray(weights)
    if w.ndim == len(axes) and w.size:
        w = w[(slice(None, None, -1),) * w.ndim]
        pad = [(1, 0) if s % 2 == 0 else (0, 0) for s in w.shape]
        w = np.pad(w, pad)
    # ``out`` (a destination the kernel can fill) goes on as correlate's ``output``
    return correlate(image, w, mode=mode, cval=cval, axes=axes, backend=backend, output=out)
