"""The filter bank: intensity statistics of filter responses over the ROI.

Responses come from :mod:`medimg_fast.filters` (NumPy, Dask chunk-exact, or CuPy), with
sigmas given in millimetres and converted per axis with the voxel spacing; derivatives
are taken per millimetre, so anisotropic voxels give the same physical filter.
"""

from __future__ import annotations

import numpy as np

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
    if spec.name == "mean":
        return [spec.size // 2 + 1] * len(spacing)
    return [int(_TRUNCATE * spec.sigma_mm / s + 0.5) + 1 for s in spacing]


def crop_for_filter(image, mask, spec, spacing):
    """Crop a NumPy image to the ROI bounding box plus the filter's reach.

    Voxels inside the box then see exactly the neighbourhood they would see in the
    whole image (the box stops at the image edge, where the boundary mode applies as
    before), so the ROI statistics are unchanged.
    """
    radius = _radius(spec, spacing)
    box = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        lo = max(int(hit[0]) - radius[ax], 0)
        hi = min(int(hit[-1]) + 1 + radius[ax], mask.shape[ax])
        box.append(slice(lo, hi))
    box = tuple(box)
    return image[box], mask[box]


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
