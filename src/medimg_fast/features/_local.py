"""IBSI local intensity features (``loc_peak_loc``, ``loc_peak_glob``).

The local mean of a voxel is the mean intensity of the image voxels whose centres lie
within a sphere of 1 cm^3 (radius ``(3 / (4 pi))^(1/3)`` cm, about 6.2 mm, in mm through
the voxel spacing) centred on it; voxels outside the image do not count (IBSI-1
reference manual, arXiv:1612.07003, section "Local intensity features").  The sphere
takes every image voxel, in the ROI or not.  ``loc_peak_loc`` is the local mean at the
ROI voxel of highest intensity (the largest local mean among ties);
``loc_peak_glob`` the largest local mean over the ROI.

The local means are one correlation of the image with the sphere, divided by the count
of in-image voxels under it, over the ROI's bounding box plus the sphere's reach: an FFT
correlation (exact to float64 rounding, about 1e-12 relative) for the global peak, and
direct sums at the few maximum-intensity voxels for the local peak.
"""

from __future__ import annotations

import math

import numpy as np

from ._partials import roi_bbox

__all__ = ["LOC_TAGS", "SPHERE_RADIUS_MM", "local_intensity_features", "sphere_offsets"]

LOC_TAGS = ("loc_peak_loc", "loc_peak_glob")

#: Radius of a sphere of 1 cm^3, in mm.
SPHERE_RADIUS_MM = (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0) * 10.0


def sphere_offsets(spacing) -> np.ndarray:
    """Integer voxel offsets ``(k, 3)`` whose centres lie within the 1 cm^3 sphere."""
    spacing = np.asarray(spacing, np.float64)
    reach = np.floor(SPHERE_RADIUS_MM / spacing).astype(int)
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")
    off = np.stack([g.ravel() for g in grids], axis=1)
    dist = np.sqrt(((off * spacing) ** 2).sum(axis=1))
    return off[dist <= SPHERE_RADIUS_MM]


def local_intensity_features(image, mask, spacing) -> dict[str, float]:
    """``loc_peak_loc`` and ``loc_peak_glob`` of a NumPy ``image`` and ROI ``mask``.

    ``image`` is the whole image (the sphere reaches outside the ROI); only the ROI's
    bounding box plus the sphere's reach is read.
    """
    from scipy.signal import fftconvolve

    image = np.asarray(image)
    mask = np.asarray(mask, bool)
    box = roi_bbox(mask)
    if box is None:
        raise ValueError("the ROI is empty: `mask` selects no voxel")
    off = sphere_offsets(spacing)
    reach = np.abs(off).max(axis=0)
    crop = tuple(slice(max(b.start - r, 0), min(b.stop + r, n))
                 for b, r, n in zip(box, reach, image.shape))
    img = np.asarray(image[crop], np.float64)
    roi = mask[crop]
    kernel = np.zeros(tuple(2 * reach + 1))
    kernel[tuple((off + reach).T)] = 1.0
    # the crop ends at the image's faces or at least one reach past the ROI, so padding
    # it with zeros counts exactly the in-image voxels of every ROI voxel's sphere
    sums = fftconvolve(img, kernel, mode="same")
    counts = fftconvolve(np.ones_like(img), kernel, mode="same")
    local = sums[roi] / np.rint(counts[roi])
    values = img[roi]
    peak = values.max()
    # the local peak from direct sums at the few maximum-intensity voxels (no FFT error)
    best = -math.inf
    for centre in np.argwhere(roi & (img == peak)):
        pos = off + centre
        inside = np.all((pos >= 0) & (pos < np.array(img.shape)), axis=1)
        best = max(best, float(img[tuple(pos[inside].T)].mean()))
    return {"loc_peak_loc": best, "loc_peak_glob": float(local.max())}
