"""The IBSI-1 image-processing chain: interpolation, mask binarisation, re-segmentation.

Arrays are ``(z, y, x)`` (any number of axes works; the IBSI diagnostic tags name axes 2, 1, 0
of a 3-D image ``x``, ``y``, ``z``) with ``spacing`` in mm in the same axis order.

The steps follow chapter 2 of the IBSI reference manual (Zwanenburg et al., arXiv:1612.07003,
"Image processing"), in its order:

1. interpolation of the image to a new voxel spacing on the *align grid centers* grid
   (:func:`ibsi_grid`, :func:`interpolate_image`), optionally rounding the intensities (CT);
2. interpolation of the ROI mask to the same grid and binarisation with a partial-volume
   threshold (:func:`interpolate_mask`), which gives the *morphological* mask;
3. re-segmentation of the ROI by intensity range and/or outliers (:func:`resegment`), which
   gives the *intensity* mask.

:func:`preprocess` runs the chain and, on request, the IBSI diagnostic values.

Inputs are NumPy arrays.  Dask arrays are computed to NumPy first (the chain needs the whole
ROI for its statistics and the interpolation is cheap next to feature extraction); CuPy arrays
are refused with a message saying so.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ._shared.utils import check_image

__all__ = [
    "IBSIGrid",
    "Preprocessed",
    "diagnostic_tags",
    "ibsi_grid",
    "interpolate_image",
    "interpolate_mask",
    "preprocess",
    "resegment",
]

# Extrapolation beyond the original grid (the IBSI grid overhangs it by up to half a new
# voxel): the manual (section "Interpolation grid dimensions") recommends padding with the
# boundary intensities, which is scipy's "nearest"; MIRP's interpolation uses the same mode.
_EXTRAPOLATION_MODE = "nearest"

# n_a * s_a / s_b is rounded to this many decimals before the ceiling, so that float noise in
# the spacings (0.977 mm stored as float32 in NIfTI is 0.97699999809...) cannot add a voxel.
_GRID_DECIMALS = 6

# Interpolated mask fractions are rounded to this many decimals before the comparison with the
# partial-volume threshold: a fraction that is 0.5 up to floating-point error (0.25 + 0.25
# computed as 0.49999999999) is 0.5.  MIRP does the same.
_MASK_DECIMALS = 6


# --------------------------------------------------------------------------------------------
# validation


def _as_numpy(array, name: str) -> np.ndarray:
    """NumPy view of an array argument: Dask is computed, CuPy is refused."""
    module = type(array).__module__.split(".")[0]
    if module == "dask":
        array = array.compute()
        module = type(array).__module__.split(".")[0]
    if module == "cupy":
        raise TypeError(
            f"`{name}` is a CuPy array; the preprocessing chain runs on NumPy for now: "
            f"pass `cupy.asnumpy({name})`"
        )
    check_image(array, name)
    return np.asarray(array)


def _check_real(value, name: str, *, positive: bool = False, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"`{name}` must be positive, got {value!r}")
    return float(value)


def _check_shape(shape) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"`shape` must be a sequence of integers, got {shape!r}") from None
    if not dims:
        raise ValueError(f"`shape` must have at least one axis, got {shape!r}")
    for n in dims:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"`shape` must contain integers, got {shape!r}")
        if n < 1:
            raise ValueError(f"`shape` entries must be at least 1, got {shape!r}")
    return tuple(int(n) for n in dims)


def _check_spacing(spacing, ndim: int, name: str = "spacing", *, allow_none: bool = False):
    """One positive finite spacing per axis (a scalar applies to every axis)."""
    if isinstance(spacing, (str, bytes)):
        raise TypeError(f"`{name}` must be a number or a sequence of numbers, got {spacing!r}")
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        values = (spacing,) * ndim
    else:
        try:
            values = tuple(spacing)
        except TypeError:
            raise TypeError(
                f"`{name}` must be a number or a sequence of numbers, got {spacing!r}"
            ) from None
        if len(values) != ndim:
            raise ValueError(
                f"`{name}` must have one value per axis ({ndim}), got {len(values)}: {spacing!r}"
            )
    out = []
    for v in values:
        if v is None and allow_none:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"`{name}` must contain real numbers, got {spacing!r}")
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"`{name}` must contain positive finite numbers, got {spacing!r}")
        out.append(float(v))
    return tuple(out)


def _check_order(order, name: str = "order") -> int:
    if isinstance(order, bool) or not isinstance(order, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer spline order 0-5, got {order!r}")
    if not 0 <= order <= 5:
        raise ValueError(f"`{name}` must be a spline order 0-5, got {order!r}")
    return int(order)


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {value!r}")
    return bool(value)


def _check_threshold(threshold, name: str = "threshold") -> float:
    threshold = _check_real(threshold, name)
    if not 0 < threshold <= 1:
        raise ValueError(f"`{name}` must be a partial-volume fraction in (0, 1], got {threshold!r}")
    return threshold


def _check_range(value, name: str = "range"):
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise TypeError(f"`{name}` must be a pair (low, high) or None, got {value!r}")
    try:
        pair = tuple(value)
    except TypeError:
        raise TypeError(f"`{name}` must be a pair (low, high) or None, got {value!r}") from None
    if len(pair) != 2:
        raise ValueError(f"`{name}` must be a pair (low, high), got {value!r}")
    low, high = pair
    for bound in pair:
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, numbers.Real)):
            raise TypeError(f"`{name}` bounds must be real numbers or None, got {value!r}")
        if bound is not None and math.isnan(bound):
            raise ValueError(f"`{name}` bounds must not be NaN (use None for an open end), "
                             f"got {value!r}")
    if low is not None and high is not None and low > high:
        raise ValueError(f"`{name}` must have low <= high, got {value!r}")
    return (None if low is None else float(low), None if high is None else float(high))


def _check_mask(mask, shape, name: str = "mask") -> np.ndarray:
    mask = _as_numpy(mask, name)
    if mask.shape != tuple(shape):
        raise ValueError(
            f"`{name}` must have the image's shape {tuple(shape)}, got shape {mask.shape}"
        )
    if mask.dtype == np.bool_:
        return mask.copy()  # a tenth of the time of ``!= 0``, the same array
    return mask != 0


# --------------------------------------------------------------------------------------------
# interpolation grid


@dataclass(frozen=True)
class IBSIGrid:
    """An IBSI *align grid centers* interpolation grid, per axis.

    Attributes
    ----------
    new_shape : tuple of int
        Number of voxels per axis of the new grid.
    new_spacing : tuple of float
        Voxel spacing (mm) per axis of the new grid.
    start : tuple of float
        Position of the new grid's voxel 0 in the old grid's voxel coordinates.
    step : tuple of float
        Distance between neighbouring new voxels in old voxel units (``s_b / s_a``).
    """

    new_shape: tuple[int, ...]
    new_spacing: tuple[float, ...]
    start: tuple[float, ...]
    step: tuple[float, ...]

    def coordinates(self) -> tuple[np.ndarray, ...]:
        """Per axis, the positions of the new voxels in old voxel coordinates.

        Returns
        -------
        tuple of ndarray
            ``start[i] + step[i] * arange(new_shape[i])`` for every axis ``i`` (float64).
        """
        return tuple(s0 + ds * np.arange(n, dtype=np.float64)
                     for s0, ds, n in zip(self.start, self.step, self.new_shape))

    def identity_axes(self) -> tuple[bool, ...]:
        """Per axis, whether the new grid is the old grid along it (nothing to interpolate)."""
        return tuple(s0 == 0.0 and ds == 1.0 for s0, ds in zip(self.start, self.step))


def ibsi_grid(shape, spacing, new_spacing) -> IBSIGrid:
    """The IBSI interpolation grid with grid centres aligned.

    Parameters
    ----------
    shape : sequence of int
        Voxels per axis of the original grid, ``(z, y, x)``.
    spacing : float or sequence of float
        Original voxel spacing (mm) per axis.
    new_spacing : float or sequence of (float or None)
        Desired voxel spacing (mm) per axis; ``None`` keeps that axis as it is (for slice-wise
        studies, ``(None, 2.0, 2.0)`` interpolates in-plane only).

    Returns
    -------
    IBSIGrid
        ``new_shape``, ``new_spacing``, and the grid's ``start`` and ``step`` in old voxel units.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If a shape entry is below 1, a spacing is not positive and finite, or the lengths differ.

    Notes
    -----
    IBSI reference manual, section 2.4 (interpolation grid dimensions and position). For one
    axis with ``n_a`` voxels of spacing ``s_a`` and desired spacing ``s_b``:

    .. math::

        n_b = \\lceil n_a s_a / s_b \\rceil, \\qquad
        x_{b,g} = \\frac{s_a (n_a - 1) - s_b (n_b - 1)}{2 s_a}, \\qquad
        s_{b,g} = s_b / s_a,

    so the new voxel ``k`` sits at old voxel coordinate ``x_{b,g} + k s_{b,g}`` and both grids
    share their centre ``(n_a - 1) / 2``.  The ceiling makes the new grid overhang the old one
    by less than one new voxel; :func:`interpolate_image` pads with the boundary intensities
    there, as the manual recommends.  ``n_a s_a / s_b`` is rounded to 6 decimals before the
    ceiling so that float noise in stored spacings cannot add a voxel.

    Examples
    --------
    The manual's example: a 4 x 4 grid of 3 mm voxels resampled to 2 mm.

    >>> g = ibsi_grid((4, 4), 3.0, 2.0)
    >>> g.new_shape, g.start, g.step   # doctest: +NORMALIZE_WHITESPACE
    ((6, 6), (-0.16666666666666666, -0.16666666666666666),
     (0.6666666666666666, 0.6666666666666666))
    >>> ibsi_grid((60, 201, 204), (3.0, 0.977, 0.977), (None, 2.0, 2.0)).new_shape
    (60, 99, 100)
    """
    dims = _check_shape(shape)
    old = _check_spacing(spacing, len(dims))
    new = _check_spacing(new_spacing, len(dims), "new_spacing", allow_none=True)
    new_shape, new_sp, start, step = [], [], [], []
    for n_a, s_a, s_b in zip(dims, old, new):
        if s_b is None or s_b == s_a:
            new_shape.append(n_a)
            new_sp.append(s_a)
            start.append(0.0)
            step.append(1.0)
            continue
        n_b = max(1, math.ceil(round(n_a * s_a / s_b, _GRID_DECIMALS)))
        new_shape.append(n_b)
        new_sp.append(s_b)
        start.append((s_a * (n_a - 1) - s_b * (n_b - 1)) / (2.0 * s_a))
        step.append(s_b / s_a)
    return IBSIGrid(tuple(new_shape), tuple(new_sp), tuple(start), tuple(step))


def _evaluate_on_grid(values: np.ndarray, grid: IBSIGrid, order: int) -> np.ndarray:
    """``values`` (float64) sampled at the grid's points, spline order ``order``.

    The grid is a tensor product of 1-D grids, so the map from new to old voxel coordinates is
    diagonal: ``ndimage.affine_transform`` with the steps as the matrix and the starts as the
    offset evaluates exactly the coordinates ``map_coordinates`` would be given, without
    materialising an (ndim, *new_shape) coordinate array.  Axes the grid leaves unchanged are
    looped over instead of interpolated, so that a cubic spline in-plane is not prefiltered
    (and re-evaluated, with rounding error) across slices.
    """
    identity = [same and n == n_old for same, n, n_old
                in zip(grid.identity_axes(), grid.new_shape, values.shape)]
    if all(identity):
        return values.copy()
    active = [ax for ax, same in enumerate(identity) if not same]
    passive = [ax for ax, same in enumerate(identity) if same]
    matrix = np.array([grid.step[ax] for ax in active])
    offset = np.array([grid.start[ax] for ax in active])
    out_shape = tuple(grid.new_shape[ax] for ax in active)
    if not passive:
        return ndi.affine_transform(values, matrix, offset=offset, output_shape=out_shape,
                                    output=np.float64, order=order, mode=_EXTRAPOLATION_MODE)
    moved = np.moveaxis(values, passive, range(len(passive)))
    stack = moved.reshape((-1,) + moved.shape[len(passive):])
    result = np.empty((stack.shape[0],) + out_shape, dtype=np.float64)
    for i, block in enumerate(stack):
        ndi.affine_transform(block, matrix, offset=offset, output_shape=out_shape,
                             output=result[i], order=order, mode=_EXTRAPOLATION_MODE)
    result = result.reshape(moved.shape[:len(passive)] + out_shape)
    return np.ascontiguousarray(np.moveaxis(result, range(len(passive)), passive))


def _interpolated_roi(roi: np.ndarray, grid: IBSIGrid, threshold: float) -> np.ndarray:
    """The ROI linearly interpolated to the grid and binarised at ``fraction >= threshold``.

    Only the new voxels that can see the ROI are evaluated: a new voxel whose old coordinate
    (clamped to the grid, as the "nearest" padding does) lies outside ``(lo - 1, hi + 1)`` of
    the ROI's bounding box along any axis has both linear neighbours outside the ROI, fraction
    0.  The rest is evaluated on the bounding box widened by one voxel, which holds every
    neighbour those voxels use, so the values are those of the whole-grid evaluation.
    """
    out = np.zeros(grid.new_shape, dtype=bool)
    if not roi.any():
        return out
    crop, target, sub_start = [], [], []
    for ax, (n_a, coords) in enumerate(zip(roi.shape, grid.coordinates())):
        other = tuple(a for a in range(roi.ndim) if a != ax)
        hit = np.flatnonzero(roi.any(axis=other))
        lo, hi = int(hit[0]), int(hit[-1])
        clamped = np.clip(coords, 0, n_a - 1)
        seen = np.flatnonzero((clamped > lo - 1) & (clamped < hi + 1))
        if seen.size == 0:
            return out
        c_lo, c_hi = max(lo - 1, 0), min(hi + 1, n_a - 1)
        k_lo, k_hi = int(seen[0]), int(seen[-1])
        crop.append(slice(c_lo, c_hi + 1))
        target.append(slice(k_lo, k_hi + 1))
        sub_start.append(grid.start[ax] + grid.step[ax] * k_lo - c_lo)
    sub_grid = IBSIGrid(tuple(t.stop - t.start for t in target), grid.new_spacing,
                        tuple(sub_start), grid.step)
    fraction = _evaluate_on_grid(roi[tuple(crop)].astype(np.float64), sub_grid, 1)
    out[tuple(target)] = np.round(fraction, _MASK_DECIMALS) >= round(threshold, _MASK_DECIMALS)
    return out


def interpolate_image(image, spacing, new_spacing, *, order=1, round_intensities=False):
    """Interpolate an image to a new voxel spacing on the IBSI grid.

    Parameters
    ----------
    image : array_like
        The image, ``(z, y, x)``; NumPy, or Dask (computed first).
    spacing : float or sequence of float
        Voxel spacing (mm) of ``image`` per axis.
    new_spacing : float or sequence of (float or None)
        Desired spacing per axis; ``None`` keeps an axis (in-plane interpolation).
    order : int, optional
        Spline order, as in ``scipy.ndimage``: 0 nearest neighbour, 1 (tri)linear (default),
        3 cubic B-spline (with the spline prefilter).
    round_intensities : bool, optional
        Round the interpolated intensities to the nearest integer (CT: Hounsfield units are
        integers).  Default False.

    Returns
    -------
    ndarray of float64
        The image on the :func:`ibsi_grid` grid.

    Raises
    ------
    TypeError
        If ``image`` is not a real numeric array, or an option has the wrong type.
    ValueError
        If a spacing is invalid or ``order`` is outside 0-5.

    Notes
    -----
    The values are exactly those of ``scipy.ndimage.map_coordinates(image, coords, order=order,
    mode="nearest")`` at the grid's coordinates: outside the original grid the boundary
    intensities are repeated (manual, "Interpolation grid dimensions"; MIRP uses the same
    mode).  The output is float64 whatever the input dtype (the manual asks for at least
    32-bit floats; float64 keeps the rounding to integers and the mask threshold free of
    float32 error), an exception to the package's dtype rule.  Rounding is half to even
    (``numpy.rint``); interpolated values land on exact halves only by coincidence.

    Examples
    --------
    >>> import numpy as np
    >>> interpolate_image(np.array([0.0, 3.0, 6.0, 9.0]), 3.0, 2.0)
    array([0. , 1.5, 3.5, 5.5, 7.5, 9. ])
    """
    image = _as_numpy(image, "image")
    order = _check_order(order)
    round_intensities = _check_bool(round_intensities, "round_intensities")
    grid = ibsi_grid(image.shape, spacing, new_spacing)
    out = _evaluate_on_grid(np.asarray(image, dtype=np.float64), grid, order)
    if round_intensities:
        np.rint(out, out=out)
    return out


def interpolate_mask(mask, spacing, new_spacing, *, threshold=0.5):
    """Interpolate a binary ROI mask to the IBSI grid and binarise it.

    Parameters
    ----------
    mask : array_like
        The ROI mask, ``(z, y, x)``; nonzero voxels are in the ROI.
    spacing : float or sequence of float
        Voxel spacing (mm) of ``mask`` per axis.
    new_spacing : float or sequence of (float or None)
        Desired spacing per axis; ``None`` keeps an axis.
    threshold : float, optional
        Partial-volume threshold ``delta`` in (0, 1]; default 0.5.

    Returns
    -------
    ndarray of bool
        The mask on the :func:`ibsi_grid` grid (the same grid as :func:`interpolate_image`).

    Raises
    ------
    TypeError
        If ``mask`` is not a numeric array or an option has the wrong type.
    ValueError
        If a spacing is invalid or ``threshold`` is outside (0, 1].

    Notes
    -----
    IBSI manual, "Partial volume effects in the ROI mask": the 0/1 mask is interpolated
    (trilinear, mode "nearest" like the image) and a voxel is in the new ROI when its fraction
    is at least the threshold, ``R_interp >= delta``.  Fractions are rounded to 6 decimals
    before the comparison so that a fraction of exactly ``delta`` up to float error counts.
    Only the new voxels near the ROI's bounding box are evaluated (the others have fraction
    0), which makes this several times faster than the image interpolation for a tumour-sized
    ROI.

    Examples
    --------
    >>> import numpy as np
    >>> interpolate_mask(np.array([0, 0, 1, 1]), 3.0, 2.0)
    array([False, False, False,  True,  True,  True])
    """
    mask = _as_numpy(mask, "mask")
    threshold = _check_threshold(threshold)
    grid = ibsi_grid(mask.shape, spacing, new_spacing)
    return _interpolated_roi(mask != 0, grid, threshold)


# --------------------------------------------------------------------------------------------
# re-segmentation


def resegment(image, mask, *, range=None, outliers_sigma=None):
    """Re-segment an ROI by intensity: the IBSI intensity mask.

    Parameters
    ----------
    image : array_like
        The (interpolated) image, ``(z, y, x)``.
    mask : array_like
        The ROI mask on the same grid (nonzero voxels are in the ROI): the morphological mask.
    range : (float or None, float or None), optional
        Keep ROI voxels with ``low <= x <= high``; ``None`` leaves that end open.  Default None
        (no range re-segmentation).
    outliers_sigma : float, optional
        Keep ROI voxels within ``mean ± outliers_sigma * sd`` of the ROI's intensities
        (population sd); the IBSI configurations use 3.  Default None (no outlier filtering).

    Returns
    -------
    ndarray of bool
        The intensity mask: the ROI voxels that pass every criterion.  The morphological mask
        stays ``mask`` itself: re-segmentation never changes it.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If the shapes differ, ``range`` is not an ordered pair, or ``outliers_sigma`` is not
        positive.

    Notes
    -----
    IBSI manual, section "Re-segmentation": range re-segmentation keeps the closed interval
    ``[a, b]`` (or the half-open ``[a, inf)``); outlier filtering keeps
    ``[mu - 3 sigma, mu + 3 sigma]`` with ``mu`` and ``sigma`` the mean and standard deviation
    of the ROI's grey levels.  The manual allows both at once without fixing an order; as in
    MIRP, ``mu`` and ``sigma`` are computed on the ROI as given (before the range is applied)
    and the voxel must lie in the intersection of both intervals.  An empty ROI gives an empty
    mask.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([-1000.0, -200.0, 0.0, 50.0, 900.0])
    >>> resegment(image, np.ones(5, bool), range=(-500, 400))
    array([False,  True,  True,  True, False])
    >>> resegment(image, np.ones(5, bool), range=(None, 0))
    array([ True,  True,  True, False, False])
    """
    image = _as_numpy(image, "image")
    roi = _check_mask(mask, image.shape)
    bounds = _check_range(range, "range")
    sigma = _check_real(outliers_sigma, "outliers_sigma", positive=True, allow_none=True)
    low, high = bounds if bounds is not None else (None, None)
    keep = roi.copy()
    if not keep.any():
        return keep
    values = image[roi].astype(np.float64)
    if sigma is not None:
        mean, sd = float(values.mean()), float(values.std())
        low = mean - sigma * sd if low is None else max(low, mean - sigma * sd)
        high = mean + sigma * sd if high is None else min(high, mean + sigma * sd)
    inside = np.ones(values.shape, dtype=bool)
    if low is not None:
        inside &= values >= low
    if high is not None:
        inside &= values <= high
    keep[roi] = inside
    return keep


# --------------------------------------------------------------------------------------------
# the chain


@dataclass(frozen=True, eq=False)
class Preprocessed:
    """The result of :func:`preprocess`.

    Attributes
    ----------
    image : ndarray of float64
        The interpolated (and possibly rounded) image.
    morph_mask : ndarray of bool
        The morphological mask: the interpolated, binarised ROI.
    int_mask : ndarray of bool
        The intensity mask: ``morph_mask`` after re-segmentation.
    spacing : tuple of float
        Voxel spacing (mm) of the three arrays, ``(z, y, x)``.
    diagnostics : dict or None
        The IBSI diagnostic values by tag when requested, else None.
    """

    image: np.ndarray
    morph_mask: np.ndarray
    int_mask: np.ndarray
    spacing: tuple[float, ...]
    diagnostics: dict | None = None


_AXIS_NAMES = ("x", "y", "z")  # IBSI names of the image's last, middle and first axes


def diagnostic_tags() -> list[str]:
    """The tags of :attr:`Preprocessed.diagnostics`, in their order (60 of them)."""
    image = np.zeros((1, 1, 1))
    roi = np.ones((1, 1, 1), dtype=bool)
    tags = []
    for stage in ("init", "interp"):
        tags += list(_image_diagnostics(image, (1.0, 1.0, 1.0), stage))
        tags += list(_roi_diagnostics(image, roi, roi, stage))
    tags += list(_roi_diagnostics(image, roi, roi, "reseg"))
    return tags


def _image_diagnostics(image: np.ndarray, spacing, stage: str) -> dict:
    out = {}
    for name, ax in zip(_AXIS_NAMES, (2, 1, 0)):
        out[f"img_dim_{name}_{stage}_img"] = int(image.shape[ax])
    for name, ax in zip(_AXIS_NAMES, (2, 1, 0)):
        out[f"vox_dim_{name}_{stage}_img"] = float(spacing[ax])
    out[f"mean_int_{stage}_img"] = float(image.mean())
    out[f"min_int_{stage}_img"] = float(image.min())
    out[f"max_int_{stage}_img"] = float(image.max())
    return out


def _bounding_box(mask: np.ndarray) -> tuple[int, ...]:
    """Extent in voxels of the mask's bounding box per axis (0 for an empty mask)."""
    extents = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        hit = np.flatnonzero(mask.any(axis=other))
        extents.append(int(hit[-1] - hit[0] + 1) if hit.size else 0)
    return tuple(extents)


def _roi_diagnostics(image, int_mask, morph_mask, stage: str) -> dict:
    out = {}
    for name, ax in zip(_AXIS_NAMES, (2, 1, 0)):
        out[f"int_mask_dim_{name}_{stage}_roi"] = int(int_mask.shape[ax])
    int_bb, morph_bb = _bounding_box(int_mask), _bounding_box(morph_mask)
    for name, ax in zip(_AXIS_NAMES, (2, 1, 0)):
        out[f"int_mask_bb_dim_{name}_{stage}_roi"] = int_bb[ax]
    for name, ax in zip(_AXIS_NAMES, (2, 1, 0)):
        out[f"morph_mask_bb_dim_{name}_{stage}_roi"] = morph_bb[ax]
    out[f"int_mask_vox_count_{stage}_roi"] = int(np.count_nonzero(int_mask))
    out[f"morph_mask_vox_count_{stage}_roi"] = int(np.count_nonzero(morph_mask))
    values = image[int_mask]
    empty = values.size == 0
    out[f"int_mask_mean_int_{stage}_roi"] = math.nan if empty else float(values.mean())
    out[f"int_mask_min_int_{stage}_roi"] = math.nan if empty else float(values.min())
    out[f"int_mask_max_int_{stage}_roi"] = math.nan if empty else float(values.max())
    return out


def preprocess(image, mask, spacing, *, resample_mm=None, resample_order=1,
               round_intensities=False, mask_threshold=0.5, reseg_range=None,
               reseg_outliers_sigma=None, diagnostics=False) -> Preprocessed:
    """Run the IBSI-1 image-processing chain on an image and its ROI mask.

    Parameters
    ----------
    image : array_like
        The image, ``(z, y, x)``; NumPy, or Dask (computed first).
    mask : array_like
        The ROI mask, same shape; nonzero voxels are in the ROI.
    spacing : float or sequence of float
        Voxel spacing (mm) per axis, ``(z, y, x)``.
    resample_mm : float or sequence of (float or None), optional
        New voxel spacing (mm) per axis; ``None`` entries keep an axis (``(None, 2, 2)``:
        in-plane, for 2-D studies).  Default None: no interpolation.
    resample_order : int, optional
        Spline order of the image interpolation (1 trilinear, 3 tricubic spline); default 1.
        The mask is always interpolated linearly.
    round_intensities : bool, optional
        Round the image to integers after interpolation (CT).  Default False.
    mask_threshold : float, optional
        Partial-volume threshold of the interpolated mask, in (0, 1]; default 0.5.
    reseg_range : (float or None, float or None), optional
        Range re-segmentation ``[low, high]`` (None: open end); default None.
    reseg_outliers_sigma : float, optional
        Outlier re-segmentation at ``mean ± k sd``; default None.
    diagnostics : bool, optional
        Also compute the IBSI diagnostic values (default False).

    Returns
    -------
    Preprocessed
        ``image``, ``morph_mask``, ``int_mask``, ``spacing`` and ``diagnostics`` (a dict by
        IBSI tag, or None).

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If the shapes differ or an option is out of range.

    Notes
    -----
    The order is the manual's: interpolate the image, round it, interpolate and binarise the
    mask (the morphological mask), re-segment (the intensity mask).  See
    :func:`interpolate_image`, :func:`interpolate_mask` and :func:`resegment`.  Rounding is
    applied even without interpolation when asked for.

    The diagnostic values use the tags of the IBSI-1 reference data, in which ``x``, ``y``,
    ``z`` are axes 2, 1, 0: ``img_dim_{x,y,z}_{init,interp}_img``,
    ``vox_dim_{x,y,z}_{init,interp}_img``, ``{mean,min,max}_int_{init,interp}_img``, and for
    the ROI at each of ``init`` (input mask on the input image), ``interp`` (interpolated
    mask on the interpolated image) and ``reseg`` (after re-segmentation; the morphological
    mask is the interpolated one): ``int_mask_dim_*``, ``int_mask_bb_dim_*``,
    ``morph_mask_bb_dim_*``, ``int_mask_vox_count``, ``morph_mask_vox_count`` and
    ``int_mask_{mean,min,max}_int``, each with the suffix ``_{stage}_roi``.  Bounding-box
    dimensions are in voxels; intensities of an empty ROI are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(4 * 4 * 4, dtype=float).reshape(4, 4, 4)
    >>> out = preprocess(image, image > 20, (3.0, 3.0, 3.0), resample_mm=2.0,
    ...                  round_intensities=True, reseg_range=(None, 50), diagnostics=True)
    >>> out.image.shape, out.spacing
    ((6, 6, 6), (2.0, 2.0, 2.0))
    >>> out.diagnostics["img_dim_x_interp_img"], out.diagnostics["max_int_interp_img"]
    (6, 63.0)
    """
    image = _as_numpy(image, "image")
    roi = _check_mask(mask, image.shape)
    old_spacing = _check_spacing(spacing, image.ndim)
    order = _check_order(resample_order, "resample_order")
    round_intensities = _check_bool(round_intensities, "round_intensities")
    threshold = _check_threshold(mask_threshold, "mask_threshold")
    bounds = _check_range(reseg_range, "reseg_range")
    sigma = _check_real(reseg_outliers_sigma, "reseg_outliers_sigma", positive=True,
                        allow_none=True)
    diagnostics = _check_bool(diagnostics, "diagnostics")
    grid = ibsi_grid(image.shape, old_spacing,
                     (None,) * image.ndim if resample_mm is None else resample_mm)

    diag = {}
    if diagnostics:
        diag.update(_image_diagnostics(image, old_spacing, "init"))
        diag.update(_roi_diagnostics(image, roi, roi, "init"))

    if all(grid.identity_axes()):
        # nothing to interpolate: one float64 copy of the image, and the mask's fractions
        # are its 0/1 values (``1 >= threshold > 0``), the ROI itself
        new_image = np.array(image, dtype=np.float64)
        morph_mask = roi
    else:
        new_image = _evaluate_on_grid(np.asarray(image, dtype=np.float64), grid, order)
        morph_mask = _interpolated_roi(roi, grid, threshold)
    if round_intensities:
        np.rint(new_image, out=new_image)
    int_mask = resegment(new_image, morph_mask, range=bounds, outliers_sigma=sigma)

    if diagnostics:
        diag.update(_image_diagnostics(new_image, grid.new_spacing, "interp"))
        diag.update(_roi_diagnostics(new_image, morph_mask, morph_mask, "interp"))
        diag.update(_roi_diagnostics(new_image, int_mask, morph_mask, "reseg"))
    return Preprocessed(new_image, morph_mask, int_mask, grid.new_spacing,
                        diag if diagnostics else None)
