"""IBSI local intensity features (``loc_peak_loc``, ``loc_peak_glob``).

The local mean of a voxel is the mean intensity of the image voxels whose centres lie
within a sphere of 1 cm^3 (radius ``(3 / (4 pi))^(1/3)`` cm, about 6.2 mm, in mm through
the voxel spacing) centred on it; voxels outside the image do not count (IBSI-1
reference manual, arXiv:1612.07003, section "Local intensity features").  The sphere
takes every image voxel, in the ROI or not.  ``loc_peak_loc`` is the local mean at the
ROI voxel of highest intensity (the largest local mean among ties);
``loc_peak_glob`` the largest local mean over the ROI.

The sphere is a stack of x-runs, one per (dz, dy) offset, so a local sum is a sum of row
segments, each a difference of prefix sums along x: a compiled loop over the ROI's image
rows (each run added along the row's ROI span at once; about 60 runs at CT spacings) over
the ROI's bounding box plus the sphere's reach.
Prefix sums of integer intensities (HU) are exact; of other values, within float64
rounding of the direct sum.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=1)
def _local_means_kernel():
    import numba

    @numba.njit(cache=True, nogil=True)
    def local_means(img, roi, rows):
        """Mean over the in-image voxels of each ROI voxel's sphere, in C order.

        ``rows[k] = (dz, dy, rx)``: the sphere's run ``dx in [-rx, rx]`` at that offset.
        """
        nz, ny, nx = img.shape
        prefix = np.zeros((nz, ny, nx + 1))
        for z in range(nz):
            for y in range(ny):
                acc = 0.0
                for x in range(nx):
                    acc += img[z, y, x]
                    prefix[z, y, x + 1] = acc
        n = 0
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    if roi[z, y, x]:
                        n += 1
        out = np.empty(n)
        total = np.empty(nx)
        count = np.empty(nx, np.int64)
        k = 0
        # per image row, the sphere's runs are added along the row's ROI span at once
        # (contiguous, vectorised loops); each voxel still sums its runs in the order of
        # ``rows``, so the means are those of a voxel-by-voxel loop
        for z in range(nz):
            for y in range(ny):
                x0 = -1
                x1 = -1
                for x in range(nx):
                    if roi[z, y, x]:
                        if x0 < 0:
                            x0 = x
                        x1 = x + 1
                if x0 < 0:
                    continue
                total[x0:x1] = 0.0
                count[x0:x1] = 0
                for r in range(rows.shape[0]):
                    zz = z + rows[r, 0]
                    yy = y + rows[r, 1]
                    if zz < 0 or zz >= nz or yy < 0 or yy >= ny:
                        continue
                    rx = rows[r, 2]
                    line = prefix[zz, yy]
                    # the run lies inside the image for x in [rx, nx - rx): no clipping
                    a = min(max(x0, rx), x1)
                    b = max(min(x1, nx - rx), a)
                    for x in range(x0, a):
                        lo = max(x - rx, 0)
                        hi = min(x + rx + 1, nx)
                        total[x] += line[hi] - line[lo]
                        count[x] += hi - lo
                    width = 2 * rx + 1
                    shift = np.uint64(rx)
                    for x in range(np.uint64(a), np.uint64(b)):
                        # unsigned indices: no negative-index wrap test, so the loop
                        # vectorises
                        lo = x - shift
                        total[x] += line[lo + np.uint64(width)] - line[lo]
                        count[x] += width
                    for x in range(b, x1):
                        lo = max(x - rx, 0)
                        hi = min(x + rx + 1, nx)
                        total[x] += line[hi] - line[lo]
                        count[x] += hi - lo
                for x in range(x0, x1):
                    if roi[z, y, x]:
                        out[k] = total[x] / count[x]
                        k += 1
        return out

    return local_means


def _sphere_rows(offsets) -> np.ndarray:
    """``(dz, dy, rx)`` per x-run of the sphere (its offsets are contiguous in x)."""
    rows = {}
    for dz, dy, dx in offsets:
        rows[(dz, dy)] = max(rows.get((dz, dy), 0), abs(int(dx)))
    return np.array([(dz, dy, rx) for (dz, dy), rx in sorted(rows.items())], np.int64)


def local_intensity_features(image, mask, spacing) -> dict[str, float]:
    """``loc_peak_loc`` and ``loc_peak_glob`` of a NumPy ``image`` and ROI ``mask``.

    ``image`` is the whole image (the sphere reaches outside the ROI); only the ROI's
    bounding box plus the sphere's reach is read.
    """
    image = np.asarray(image)
    mask = np.asarray(mask, bool)
    box = roi_bbox(mask)
    if box is None:
        raise ValueError("the ROI is empty: `mask` selects no voxel")
    off = sphere_offsets(spacing)
    reach = np.abs(off).max(axis=0)
    crop = tuple(slice(max(b.start - r, 0), min(b.stop + r, n))
                 for b, r, n in zip(box, reach, image.shape))
    # the crop ends at the image's faces or at least one reach past the ROI, so the runs
    # clipped to it hold exactly the in-image voxels of every ROI voxel's sphere
    img = np.ascontiguousarray(image[crop], np.float64)
    roi = np.ascontiguousarray(mask[crop])
    local = _local_means_kernel()(img, roi, _sphere_rows(off))
    values = img[roi]
    return {"loc_peak_loc": float(local[values == values.max()].max()),
            "loc_peak_glob": float(local.max())}
