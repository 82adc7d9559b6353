"""The filter bank: intensity statistics of filter responses over the ROI.

Responses come from :mod:`medimg_fast.filters` (NumPy, Dask chunk-exact, or CuPy), with
sigmas given in millimetres and converted per axis with the voxel spacing; derivatives
are taken per millimetre, so anisotropic voxels give the same physical filter.
"""

from __future__ import annotations

__all__ = ["filter_response"]

_MODE = "reflect"
_TRUNCATE = 4.0


def _filters():
    try:
        from medimg_fast import filters
    except ImportError as exc:  # pragma: no cover - only while the package is incomplete
        raise ImportError(
            "the filter bank needs medimg_fast.filters, which could not be imported "
            f"({exc}); leave `filters` empty in the settings to skip it"
        ) from exc
    return filters


def _radius(spec, spacing):
    """The filter's reach in voxels along each axis: the halo depth the filters use
    themselves (``size // 2`` for the mean filter, the Gaussian radius computed as
    :func:`medimg_fast.filters.gaussian_filter` computes it, from the sigma in voxels)."""
    if spec.name == "mean":
        return [spec.size // 2] * len(spacing)
    from .._shared.gaussian import gaussian_radius

    return [gaussian_radius(float(spec.sigma_mm) / float(s), _TRUNCATE) for s in spacing]


def crop_for_filter(image, mask, spec, spacing, *, box=None):
    """Crop a NumPy image to the ROI bounding box plus the filter's reach.

    Voxels inside the box then see exactly the neighbourhood they would see in the
    whole image (the box stops at the image edge, where the boundary mode applies as
    before), so the ROI statistics are unchanged.  ``box`` (slices) is the ROI's
    bounding box when the caller knows it already.
    """
    radius = _radius(spec, spacing)
    if box is None:
        from ._partials import roi_bbox

        box = roi_bbox(mask)
    crop = tuple(slice(max(b.start - r, 0), min(b.stop + r, n))
                 for b, r, n in zip(box, radius, mask.shape))
    return image[crop], mask[crop]


def filter_response(image, spec, spacing, backend):
    """The response of one :class:`~._settings.FilterSpec` (same array kind as ``image``).

    Sigmas are in mm and derivatives per mm (the filters' ``spacing`` argument); the
    mean filter's size is in voxels.
    """
    f = _filters()
    spacing = tuple(float(s) for s in spacing)
    kw = {"mode": _MODE, "backend": backend}
    if spec.name == "mean":
        return f.uniform_filter(image, spec.size, **kw)
    kw.update(truncate=_TRUNCATE, spacing=spacing)
    if spec.name == "gaussian":
        return f.gaussian_filter(image, spec.sigma_mm, **kw)
    if spec.name == "log":
        return f.gaussian_laplace(image, spec.sigma_mm, **kw)
    if spec.name == "gradient_magnitude":
        return f.gaussian_gradient_magnitude(image, spec.sigma_mm, **kw)
    raise ValueError(f"unknown filter {spec.name!r}")  # FilterSpec validates; defensive
