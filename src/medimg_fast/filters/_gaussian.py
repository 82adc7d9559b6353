"""Gaussian filters and the filters built from Gaussian derivatives."""

from __future__ import annotations

import functools
import numbers

import numpy as np

from .._shared.boundary import MODE_CODES
from .._shared.gaussian import gaussian_kernel1d, gaussian_radius
from .._shared.utils import check_truncate, normalize_axes, per_axis
from ._dispatch import apply_filter, as_array, common_options, copy_block, scipy_output

#: sigmas at or below this are "no smoothing" along that axis, as in scipy.ndimage
_SIGMA_EPS = 1e-15


def _spacing(spacing, ndim: int, axes: tuple[int, ...]) -> tuple[float, ...]:
    """Voxel size along each filtered axis; ``spacing`` is per image axis or per filtered axis."""
    if spacing is None:
        return (1.0,) * len(axes)
    if isinstance(spacing, numbers.Real):
        return per_axis(spacing, len(axes), "spacing", allow_zero=False)
    spacing = tuple(spacing)
    if len(spacing) == ndim:
        spacing = tuple(spacing[a] for a in axes)
    return per_axis(spacing, len(axes), "spacing", allow_zero=False)


@functools.lru_cache(maxsize=256)
def _pass_weights(sigma_vox: float, order: int, radius: int, voxel: float) -> np.ndarray:
    """The weights of one Gaussian pass, read-only and shared between calls: building
    them took 45 of the 280 us a Gaussian of an 8^3 volume cost in all.  With a spacing,
    derivatives are per millimetre: d/dx_mm = (1/v) d/dx_voxel."""
    weights = gaussian_kernel1d(sigma_vox, order, radius) / voxel ** order
    weights.setflags(write=False)
    return weights


def gaussian_passes(ndim, sigma, order, truncate, axes, spacing, radius=None):
    """Validated per-axis Gaussian passes: a list of ``(axis, weights)`` and the halo depth.

    ``radius`` (per filtered axis, voxels) replaces ``int(truncate * sigma + 0.5)``, as
    scipy.ndimage's ``radius``."""
    axes = normalize_axes(axes, ndim)
    sigmas = per_axis(sigma, len(axes), "sigma")
    orders = per_axis(order, len(axes), "order", kind=numbers.Integral)
    truncate = check_truncate(truncate)
    radii = (None,) * len(axes) if radius is None else per_axis(
        radius, len(axes), "radius", kind=numbers.Integral)
    voxel = _spacing(spacing, ndim, axes)
    passes = []
    depth = [0] * ndim
    for axis, s, o, v, r in zip(axes, sigmas, orders, voxel, radii):
        s_vox = float(s) / float(v)
        if s_vox <= _SIGMA_EPS:
            continue
        r = gaussian_radius(s_vox, truncate) if r is None else int(r)
        passes.append((axis, _pass_weights(s_vox, int(o), r, float(v))))
        depth[axis] = r
    return passes, tuple(depth)


@scipy_output
def gaussian_filter(image, sigma, *, order=0, mode="reflect", cval=0.0, truncate=4.0,
                    axes=None, spacing=None, backend="auto", radius=None, out=None):
    """Multidimensional Gaussian filter (or Gaussian derivative).

    Parameters
    ----------
    image : array (NumPy, Dask or CuPy)
        Input image, 1-D or more, dtype uint8/uint16/int16/int32/float32/float64.
    sigma : float or sequence of float
        Standard deviation of the Gaussian per filtered axis, in voxels, or in
        millimetres when ``spacing`` is given. Non-negative; 0 leaves an axis unfiltered.
    order : int or sequence of int, optional
        Derivative order per axis (0 smooths, 1 and 2 differentiate).
    mode : {"reflect", "nearest", "mirror", "constant", "wrap"}, optional
        Boundary extension at the faces of the image (scipy.ndimage semantics).
    cval : float, optional
        Value outside the image for ``mode="constant"``.
    truncate : float, optional
        Kernel half-width in standard deviations: the radius is
        ``int(truncate * sigma + 0.5)`` voxels.
    radius : int or sequence of int, optional
        The kernel radius in voxels per filtered axis, instead of ``truncate`` (as
        scipy.ndimage's ``radius``).
    axes : int or sequence of int, optional
        Axes to filter over (default all); e.g. ``axes=(1, 2)`` filters each slice of a
        (z, y, x) volume in 2-D.
    spacing : float or sequence of float, optional
        Voxel size in mm, per image axis (or per filtered axis); ``sigma`` is then in mm.
    backend : str, optional
        "auto", "numpy", "numba" or "cupy".

    Returns
    -------
    array
        Same kind as ``image``; dtype float64 for float64 input, float32 otherwise.

    Raises
    ------
    ValueError
        Negative sigma, a sequence of the wrong length, unknown mode, empty image.
    TypeError
        Non-numeric image dtype or parameter types.

    Notes
    -----
    Separable: one 1-D correlation per axis with the sampled, normalised Gaussian
    (:func:`gaussian_kernel1d`), in axis order, as ``scipy.ndimage.gaussian_filter``.

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import gaussian_filter
    >>> image = np.zeros((5, 5), dtype=np.uint8); image[2, 2] = 100
    >>> out = gaussian_filter(image, 1.0, backend="numpy")
    >>> out.dtype, round(float(out.sum()), 3)
    (dtype('float32'), 100.0)
    """
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    passes, depth = gaussian_passes(image.ndim, sigma, order, truncate, axes, spacing, radius)

    def op(engine, block, out=None):
        if not passes:
            return copy_block(block, out)
        return engine.correlate_separable(block, passes, mode, cval, out=out)

    return apply_filter(image, op, depth, mode=mode, backend=backend, out=out,
                        temporaries=lambda engine: engine.separable_temporaries(
                            image.ndim, passes))


def _derivative_terms(ndim, sigma, truncate, axes, spacing, derivative_order, radius=None):
    """For each filtered axis, the Gaussian passes of the derivative along that axis."""
    axes = normalize_axes(axes, ndim)
    terms = []
    depth = (0,) * ndim
    for i in range(len(axes)):
        orders = [0] * len(axes)
        orders[i] = derivative_order
        passes, d = gaussian_passes(ndim, sigma, orders, truncate, axes, spacing, radius)
        terms.append(passes)
        depth = tuple(max(a, b) for a, b in zip(depth, d))
    return terms, depth


def _fused_laplace_kernels(ndim, terms):
    """``(smooth, second)`` per axis when the Laplacian of Gaussian of a 3-D image can run
    as the numba backend's fused sweep (every axis filtered, symmetric kernels), else
    None.  ``terms[a]`` are the passes of the term differentiated along axis ``a``."""
    if ndim != 3 or len(terms) != 3 or any(
            tuple(axis for axis, _ in passes) != (0, 1, 2) for passes in terms):
        return None
    second = tuple(terms[a][a][1] for a in range(3))
    smooth = tuple(terms[(a + 1) % 3][a][1] for a in range(3))
    # the two terms that smooth along an axis must smooth alike to share that pass
    if not all(np.array_equal(terms[(a + 2) % 3][a][1], smooth[a]) for a in range(3)):
        return None
    symmetric = all(w.size % 2 == 1 and np.array_equal(w, w[::-1]) and w.size == v.size
                    for w, v in zip(smooth + second, second + smooth))
    return (smooth, second) if symmetric else None


@scipy_output
def gaussian_laplace(image, sigma, *, mode="reflect", cval=0.0, truncate=4.0, axes=None,
                     spacing=None, backend="auto", radius=None):
    """Laplacian of Gaussian: the sum over axes of the second Gaussian derivative.

    Parameters and returns as :func:`gaussian_filter` (without ``order``).

    Notes
    -----
    ``sum_a G_sigma * d^2/dx_a^2``, each term a full separable Gaussian filter with order 2
    along ``a``, summed in axis order as ``scipy.ndimage.gaussian_laplace``.
    With ``spacing``, sigma is in mm and the derivatives are per mm (the result is per
    mm^2).  The IBSI-2 LoG (reference map 2_a) is instead this filter with sigma
    converted to voxels and *no* ``spacing``: ``gaussian_laplace(image,
    sigma_mm / voxel_mm)``, i.e. per voxel^2; the filter bank's
    ``{"name": "log", ..., "convention": "ibsi"}`` computes that one.

    On the numba backend a 3-D image filtered along every axis runs as one fused sweep
    of seven 1-D passes (:mod:`medimg_fast.backends._numba_log`):
    ``G_x [G_y G''_z + G''_y G_z] + G''_x [G_y G_z]``, the same sum grouped otherwise,
    equal to the nine-pass form to float rounding.

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import gaussian_laplace
    >>> image = np.zeros((9, 9)); image[4, 4] = 1.0
    >>> float(gaussian_laplace(image, 1.5, backend="numpy")[4, 4]) < 0
    True
    """
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    terms, depth = _derivative_terms(image.ndim, sigma, truncate, axes, spacing, 2, radius)
    fused = _fused_laplace_kernels(image.ndim, terms)

    def op(engine, block):
        if fused is not None and engine.name == "numba":
            from ..backends._numba_log import gaussian_laplace_3d

            return gaussian_laplace_3d(block, *fused, MODE_CODES[mode], cval)
        total = None
        for passes in terms:
            term = engine.correlate_separable(block, passes, mode, cval) if passes else block * 0
            total = term if total is None else total + term
        return total

    return apply_filter(image, op, depth, mode=mode, backend=backend)


@scipy_output
def gaussian_gradient_magnitude(image, sigma, *, mode="reflect", cval=0.0, truncate=4.0,
                                axes=None, spacing=None, backend="auto", radius=None):
    """Gradient magnitude with Gaussian derivatives: ``sqrt(sum_a (G_sigma * d/dx_a)^2)``.

    Parameters and returns as :func:`gaussian_filter` (without ``order``).

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import gaussian_gradient_magnitude
    >>> ramp = np.tile(np.arange(8.0), (8, 1))
    >>> round(float(gaussian_gradient_magnitude(ramp, 1.0, backend="numpy")[4, 4]), 2)
    1.0
    """
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    terms, depth = _derivative_terms(image.ndim, sigma, truncate, axes, spacing, 1, radius)

    def op(engine, block):
        total = None
        for passes in terms:
            term = engine.correlate_separable(block, passes, mode, cval) if passes else block * 0
            term *= term
            total = term if total is None else total + term
        return engine.xp.sqrt(total, out=total)

    return apply_filter(image, op, depth, mode=mode, backend=backend)


def difference_of_gaussians(image, low_sigma, high_sigma=None, *, mode="reflect", cval=0.0,
                            truncate=4.0, axes=None, spacing=None, backend="auto"):
    """Band-pass filter: ``G_low_sigma * image - G_high_sigma * image``.

    Parameters
    ----------
    image : array
    low_sigma : float or sequence of float
        Standard deviation of the narrower Gaussian (voxels, or mm with ``spacing``).
    high_sigma : float or sequence of float, optional
        Of the wider Gaussian; default ``1.6 * low_sigma`` (as scikit-image). Must not be
        smaller than ``low_sigma`` on any axis.
    mode, cval, truncate, axes, spacing, backend
        As :func:`gaussian_filter`.

    Returns
    -------
    array
        Same kind as ``image``, float32 (float64 for float64 input).

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast import difference_of_gaussians
    >>> flat = np.full((16, 16), 7.0)
    >>> float(abs(difference_of_gaussians(flat, 1.0, backend="numpy")).max())
    0.0
    """
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    n_axes = len(normalize_axes(axes, image.ndim))
    low = per_axis(low_sigma, n_axes, "low_sigma")
    if high_sigma is None:
        high = tuple(1.6 * s for s in low)
    else:
        high = per_axis(high_sigma, n_axes, "high_sigma")
    if any(h < lo for h, lo in zip(high, low)):
        raise ValueError(
            f"`high_sigma` must be >= `low_sigma` on every axis, got high_sigma={high_sigma!r}"
            f" and low_sigma={low_sigma!r}"
        )
    low_passes, d_low = gaussian_passes(image.ndim, low, 0, truncate, axes, spacing)
    high_passes, d_high = gaussian_passes(image.ndim, high, 0, truncate, axes, spacing)
    depth = tuple(max(a, b) for a, b in zip(d_low, d_high))

    def op(engine, block):
        narrow = engine.correlate_separable(block, low_passes, mode, cval) if low_passes else block
        wide = engine.correlate_separable(block, high_passes, mode, cval) if high_passes else block
        return narrow - wide

    return apply_filter(image, op, depth, mode=mode, backend=backend)
