"""The filter bank: intensity statistics of filter responses over the ROI.

Responses come from :mod:`medimg_fast.filters` (NumPy, Dask chunk-exact, or CuPy), with
sigmas and wavelengths given in millimetres and converted per axis with the voxel
spacing.  The Gaussian filters take derivatives per millimetre, so anisotropic voxels
give the same physical filter; the IBSI-2 LoG (``convention="ibsi"``) takes them per
voxel, as the IBSI-2 reference maps do.
"""

from __future__ import annotations

__all__ = ["filter_response"]


def _filters():
    try:
        from medimg_fast import filters
    except ImportError as exc:  # pragma: no cover - only while the package is incomplete
        raise ImportError(
            "the filter bank needs medimg_fast.filters, which could not be imported "
            f"({exc}); leave `filters` empty in the settings to skip it"
        ) from exc
    return filters


def _spec(spec):
    from ._settings import FilterSpec

    return FilterSpec.from_any(spec)


def _axes(dims, ndim):
    from ..filters._orientations import dims_axes

    return dims_axes(dims, ndim)


def _radius(spec, spacing):
    """The filter's reach in voxels along each axis (the halo depth the filters use
    themselves), or None when the response at a voxel depends on the whole image
    (``simoncelli``, and ``wrap`` boundaries, which read the opposite face)."""
    p = spec.params
    ndim = len(spacing)
    if p["mode"] == "wrap" or spec.name == "simoncelli":
        return None
    if spec.name == "riesz":  # global, whatever its boundary mode
        return None
    # without an explicit `dims` the filters of earlier releases act on every axis
    axes = range(ndim) if spec.dims is None else _axes(p["dims"], ndim)
    if spec.name == "mean":
        return [spec.size // 2 if a in axes else 0 for a in range(ndim)]
    if spec.name in ("gaussian", "log", "gradient_magnitude"):
        from .._shared.gaussian import gaussian_radius

        return [gaussian_radius(p["sigma_mm"] / float(spacing[a]), p["truncate"])
                if a in axes else 0 for a in range(ndim)]
    if spec.name == "laws":
        from ..filters._laws import laws_depth

        return list(laws_depth(p["kernel"], p["energy"], p["delta"], p["dims"], ndim,
                               p["rotation_invariant"]))
    if spec.name == "gabor":
        from ..filters._gabor import gabor_plan

        return list(gabor_plan(ndim, p["sigma_mm"], p["lambda_mm"], p["gamma"],
                               p["theta_deg"], spacing, p["rotation_invariant"],
                               p["theta_step_deg"], p["dims"], p["truncate"])[1])
    from ..filters._wavelet import wavelet_plan

    return list(wavelet_plan(ndim, p["family"], p["set"], p["level"],
                             p["rotation_invariant"], p["dims"])[1])


def crop_for_filter(image, mask, spec, spacing, *, box=None):
    """Crop a NumPy image to the ROI bounding box plus the filter's reach.

    Voxels inside the box then see exactly the neighbourhood they would see in the
    whole image (the box stops at the image edge, where the boundary mode applies as
    before), so the ROI statistics are unchanged.  ``box`` (slices) is the ROI's
    bounding box when the caller knows it already.  Filters without a finite reach
    (:func:`_radius` None) get the whole image.
    """
    radius = _radius(_spec(spec), spacing)
    if radius is None:
        return image, mask
    if box is None:
        from ._partials import roi_bbox

        box = roi_bbox(mask)
    crop = tuple(slice(max(b.start - r, 0), min(b.stop + r, n))
                 for b, r, n in zip(box, radius, mask.shape))
    return image[crop], mask[crop]


def filter_response(image, spec, spacing=None, backend="auto"):
    """The response map of one filter spec (same array kind as ``image``).

    Parameters
    ----------
    image : array (NumPy, Dask or CuPy)
        A (z, y, x) volume (or a 2-D image for filters with ``dims="2D"``).
    spec : FilterSpec or dict
        E.g. ``{"name": "laws", "kernel": "E5L5S5", "energy": True, "mode": "constant"}``;
        see :class:`~medimg_fast.features.FilterSpec` for every key.
    spacing : float or sequence of float, optional
        Voxel size in mm per axis (default 1 mm).
    backend : str, optional
        "auto", "numpy", "numba" or "cupy".

    Returns
    -------
    array
        float32 (float64 for float64 input).

    Notes
    -----
    Sigmas and wavelengths are in mm; the mean filter's size, the Laws energy ``delta``
    and wavelet taps are in voxels.  ``log`` with ``convention="per_mm"`` is
    :func:`medimg_fast.filters.gaussian_laplace` with ``spacing`` (per mm^2); with
    ``convention="ibsi"`` it is the same filter with ``sigma_mm / spacing`` voxels and
    no ``spacing`` (IBSI-2, map 2_a).  ``riesz`` computes the response of its ``of``
    spec (or takes the image) and applies :func:`medimg_fast.filters.riesz_transform`
    with the voxel ``spacing`` of the filtered axes (directions in physical space, the
    structure-tensor window ``tensor_sigma_mm`` in mm).

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast.features import filter_response
    >>> image = np.zeros((5, 5, 5)); image[2, 2, 2] = 1.0
    >>> out = filter_response(image, {"name": "mean", "size": 3, "mode": "constant"})
    >>> round(float(out.sum()), 6)
    1.0
    """
    f = _filters()
    spec = _spec(spec)
    p = spec.params
    ndim = len(image.shape)
    if spacing is None:
        spacing = (1.0,) * ndim
    elif not hasattr(spacing, "__len__"):
        spacing = (float(spacing),) * ndim
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim:
        raise ValueError(f"`spacing` must have one value per image axis ({ndim}), "
                         f"got {spacing!r}")
    kw = {"mode": p["mode"], "backend": backend}
    name = spec.name
    if name == "laws":
        return f.laws_filter(image, p["kernel"], energy=p["energy"], delta=p["delta"],
                             rotation_invariant=p["rotation_invariant"],
                             pooling=p["pooling"], dims=p["dims"], **kw)
    if name == "gabor":
        return f.gabor_filter(image, sigma_mm=p["sigma_mm"], lambda_mm=p["lambda_mm"],
                              gamma=p["gamma"], theta_deg=p["theta_deg"], spacing=spacing,
                              response=p["response"],
                              rotation_invariant=p["rotation_invariant"],
                              theta_step_deg=p["theta_step_deg"], pooling=p["pooling"],
                              dims=p["dims"], truncate=p["truncate"], **kw)
    if name == "wavelet":
        return f.wavelet_filter(image, p["family"], p["set"], p["level"],
                                rotation_invariant=p["rotation_invariant"],
                                pooling=p["pooling"], dims=p["dims"], **kw)
    if name == "simoncelli":
        return f.simoncelli_filter(image, p["level"], dims=p["dims"], **kw)
    if name == "riesz":
        inner = image if p["of"] is None else filter_response(image, p["of"], spacing,
                                                              backend)
        riesz_spacing = tuple(spacing[a] for a in _axes(p["dims"], ndim))
        return f.riesz_transform(inner, p["order"], spacing=riesz_spacing,
                                 tensor_sigma=p["tensor_sigma_mm"], dims=p["dims"], **kw)
    # without an explicit `dims` the filters of earlier releases act on every axis
    axes = tuple(range(ndim)) if spec.dims is None else _axes(p["dims"], ndim)
    if name == "mean":
        return f.uniform_filter(image, spec.size, axes=axes, **kw)
    kw.update(truncate=p["truncate"], axes=axes)
    if name == "log" and p["convention"] == "ibsi":
        sigma_voxels = tuple(p["sigma_mm"] / spacing[a] for a in axes)
        return f.gaussian_laplace(image, sigma_voxels, **kw)
    kw.update(spacing=spacing)
    if name == "gaussian":
        return f.gaussian_filter(image, p["sigma_mm"], **kw)
    if name == "log":
        return f.gaussian_laplace(image, p["sigma_mm"], **kw)
    if name == "gradient_magnitude":
        return f.gaussian_gradient_magnitude(image, p["sigma_mm"], **kw)
    raise ValueError(f"unknown filter {name!r}")  # FilterSpec validates; defensive
