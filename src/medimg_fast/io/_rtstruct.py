"""DICOM RT Structure Sets: list the ROIs, rasterise one onto its image's voxel grid.

An RTSTRUCT stores each ROI as planar contours, polygons whose vertices are patient (LPS)
coordinates in mm.  Rasterising maps every vertex through the image's geometry to continuous
``(z, y, x)`` voxel indices, assigns each contour to the slice whose plane it lies in, and
marks the voxels whose centres fall inside by the even-odd rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._geometry import world_to_index
from ._volume import (
    CorruptVolumeError,
    MaskReadError,
    ReferenceMismatchError,
    Volume,
)

__all__ = ["fill_polygons_even_odd", "list_rois", "read_rtstruct_mask"]

#: Vertex coordinates this close (in voxels) to a voxel centre count as on it, so that a
#: vertex written as 4.9999999 and one written as 5.0000001 rasterise alike.
_SNAP_VOXELS = 1e-6


def _read_structure_set(path):
    """The RTSTRUCT at `path` parsed into plain Python: ROIs, their contours and references."""
    from ._dicom import read_mask_dataset

    ds = read_mask_dataset(path, "RTSTRUCT")
    path = Path(path)
    try:
        series_by_for = {}
        for ref in ds.get("ReferencedFrameOfReferenceSequence", []):
            uids = [str(series.SeriesInstanceUID)
                    for study in ref.get("RTReferencedStudySequence", [])
                    for series in study.get("RTReferencedSeriesSequence", [])]
            series_by_for[str(ref.FrameOfReferenceUID)] = uids
        contours = {}
        for item in ds.ROIContourSequence:  # Type 1: absent only when the file was cut short
            polygons = []
            for c in item.get("ContourSequence", []):
                points = np.asarray([float(v) for v in c.ContourData], dtype=np.float64)
                n = int(c.get("NumberOfContourPoints", points.size // 3) or 0)
                if points.size != 3 * n or n == 0:
                    raise ValueError(f"contour has {points.size} coordinates for "
                                     f"NumberOfContourPoints={n}")
                polygons.append((str(c.get("ContourGeometricType", "CLOSED_PLANAR")),
                                 points.reshape(-1, 3)))
            contours[int(item.ReferencedROINumber)] = polygons
        rois = []
        for r in ds.StructureSetROISequence:
            number = int(r.ROINumber)
            for_uid = str(r.get("ReferencedFrameOfReferenceUID", ""))
            rois.append({
                "number": number,
                "name": str(r.get("ROIName", "")),
                "n_contours": len(contours.get(number, [])),
                "frame_of_reference_uid": for_uid,
                "referenced_series_uid": (series_by_for.get(for_uid) or [""])[0],
                "referenced_series_uids": series_by_for.get(for_uid, []),
            })
    except Exception as exc:  # a structure set cut short loses sequence items or values
        raise CorruptVolumeError(f"{path}: truncated or corrupt RTSTRUCT, its ROI and contour "
                                 f"sequences are incomplete ({type(exc).__name__}: {exc})") from exc
    return rois, contours


def list_rois(path) -> list:
    """The ROIs of an RTSTRUCT file.

    Returns
    -------
    list of dict
        One per ROI of StructureSetROISequence: ``number`` (ROINumber), ``name`` (ROIName),
        ``n_contours``, ``referenced_series_uid`` (the first SeriesInstanceUID referenced for
        the ROI's frame of reference, ``""`` when none), ``referenced_series_uids`` (all of
        them) and ``frame_of_reference_uid``.

    Raises
    ------
    CorruptVolumeError
        For a truncated or otherwise unreadable file (a ValueError).
    MaskReadError
        For a file that is not an RTSTRUCT.
    """
    rois, _ = _read_structure_set(path)
    return rois


def fill_polygons_even_odd(polygons, shape) -> np.ndarray:
    """Voxel centres of a 2-D grid inside a set of polygons, by the even-odd rule.

    Parameters
    ----------
    polygons : sequence of (n, 2) arrays
        Vertices as continuous ``(row, column)`` indices; integers are pixel centres.  Each
        polygon is closed implicitly (last vertex to first).
    shape : (int, int)
        Rows and columns of the grid.

    Returns
    -------
    numpy.ndarray of bool
        True where a ray from the pixel centre crosses the polygons' edges an odd number of
        times: inside one polygon, or in a hole of a polygon inside another, and so on.

    Notes
    -----
    Scan-line crossing count (the even-odd rule; Foley et al., *Computer Graphics*, 3.6):
    for every edge and every pixel row ``r`` with ``min(y0, y1) <= r < max(y0, y1)``
    (half-open, so a vertex on a row is counted once), the crossing at column ``x`` toggles
    every pixel with centre ``>= x``.  The toggles of all polygons go into one array and a
    cumulative sum along the rows gives the parity, so several contours of a slice combine
    as an exclusive or and their holes need no special case.  A centre exactly on a left or
    bottom (lower-index) edge is inside, on a right or top edge outside, so two polygons that
    share an edge never both claim the pixels on it.  Cost: O(crossings + pixels).

    Examples
    --------
    >>> square = np.array([[1, 1], [1, 4], [4, 4], [4, 1]])
    >>> hole = np.array([[2, 2], [2, 3], [3, 3], [3, 2]])
    >>> fill_polygons_even_odd([square, hole], (6, 6)).astype(int)
    array([[0, 0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0, 0],
           [0, 1, 0, 1, 0, 0],
           [0, 1, 1, 1, 0, 0],
           [0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0]])
    """
    n_rows, n_cols = (int(s) for s in shape)
    toggles = np.zeros((n_rows, n_cols + 1), dtype=np.int32)
    for vertices in polygons:
        vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
        nearest = np.round(vertices)
        vertices = np.where(np.abs(vertices - nearest) < _SNAP_VOXELS, nearest, vertices)
        y0, x0 = vertices[:, 0], vertices[:, 1]
        y1, x1 = np.roll(y0, -1), np.roll(x0, -1)
        first = np.maximum(np.ceil(np.minimum(y0, y1)), 0).astype(np.int64)
        stop = np.minimum(np.ceil(np.maximum(y0, y1)), n_rows).astype(np.int64)
        counts = np.maximum(stop - first, 0)
        total = int(counts.sum())
        if total == 0:
            continue
        edge = np.repeat(np.arange(counts.size), counts)
        starts = np.cumsum(counts) - counts
        rows = first[edge] + (np.arange(total) - starts[edge])
        # Horizontal edges have counts == 0, so the slope below never divides by zero.
        slope = (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
        x = x0[edge] + (rows - y0[edge]) * slope
        cols = np.clip(np.ceil(x - _SNAP_VOXELS), 0, n_cols).astype(np.int64)
        np.add.at(toggles, (rows, cols), 1)
    return (np.cumsum(toggles[:, :n_cols], axis=1) & 1).astype(bool)


def _check_reference(path, roi, image):
    """Raise unless the ROI references the image's frame of reference and series."""
    image_for = str(image.metadata.get("frame_of_reference_uid", "") or "")
    image_series = str(image.metadata.get("series_instance_uid", "") or "")
    roi_for = roi["frame_of_reference_uid"]
    if image_for and roi_for and roi_for != image_for:
        raise ReferenceMismatchError(
            f"{path}: ROI {roi['name']!r} is drawn in frame of reference {roi_for}, but the "
            f"image {image.source} has FrameOfReferenceUID {image_for}; the structure set "
            "belongs to another scan"
        )
    series = roi["referenced_series_uids"]
    if image_series and series and image_series not in series:
        raise ReferenceMismatchError(
            f"{path}: the structure set references series {', '.join(series)}, but the "
            f"image {image.source} is series {image_series}; the structure set belongs to "
            "another series"
        )
    return bool(image_for or image_series)


def read_rtstruct_mask(path, reference_volume_or_series_path, roi=None, *,
                       slice_tolerance=0.25) -> Volume:
    """Rasterise one ROI of an RTSTRUCT onto its image's voxel grid.

    Parameters
    ----------
    path : str or os.PathLike
        The RTSTRUCT file.
    reference_volume_or_series_path : Volume, str or os.PathLike
        The image the contours were drawn on: a Volume, or a path for
        :func:`~medimg_fast.io.open_volume` (a DICOM series folder, or any format with the
        same geometry).  The mask gets its shape, spacing, origin and direction.
    roi : None, str or int
        The ROI: its exact ROIName, the same name in another case, a glob pattern
        (``"GTV*"``, matched case-insensitively) or its ROINumber.  None takes the only ROI
        of a file with one.
    slice_tolerance : float
        Largest distance, as a fraction of the voxel size, of a contour from the plane of
        the slice it is assigned to (and its largest extent out of that plane).

    Returns
    -------
    Volume
        Boolean ``data`` (z, y, x) with the reference's geometry; ``modality`` is
        ``"RTSTRUCT"``; ``metadata`` records the ROI (``roi_name``, ``roi_number``), the
        contours used and skipped and whether the UIDs could be checked.

    Raises
    ------
    RoiNotFoundError
        When `roi` selects no ROI or several; the message lists the ROIs of the file.
    ReferenceMismatchError
        When the ROI's FrameOfReferenceUID or the referenced SeriesInstanceUID is not the
        image's (checked when the reference is DICOM and records them).
    MaskReadError
        For a contour that is not planar along an image axis or lies on no slice (the
        message gives its position and the slice positions' range).
    CorruptVolumeError
        For a truncated or unreadable file.
    All are ValueError subclasses.

    Notes
    -----
    Vertices are mapped to voxel indices with the inverse of the reference's affine; each
    contour belongs to the slice along the image axis on which it is flat.  Voxel centres
    inside the slice's contours by the even-odd rule are set
    (:func:`fill_polygons_even_odd`): an inner contour is a hole, a contour inside a hole an
    island.  This is rasterisation by centre sampling; a voxel cut by the contour is in the
    mask exactly when its centre is inside.
    """
    import dask.array as da

    from . import open_volume
    from ._mask import select_named

    if not (np.isfinite(slice_tolerance) and 0 < slice_tolerance < 0.5):
        raise ValueError(f"`slice_tolerance` must be in (0, 0.5), got {slice_tolerance!r}")
    image = reference_volume_or_series_path
    if not isinstance(image, Volume):
        image = open_volume(image)
    rois, contours = _read_structure_set(path)
    chosen = select_named(rois, roi, what="ROI", path=path)
    checked = _check_reference(path, chosen, image)

    shape = tuple(int(s) for s in image.shape[-3:])
    mask = np.zeros(shape, dtype=bool)
    by_slice, skipped = {}, {}
    for i, (kind, points) in enumerate(contours.get(chosen["number"], [])):
        if kind != "CLOSED_PLANAR":
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        index = world_to_index(image, points)
        extent = np.ptp(index, axis=0)
        axis = int(np.argmin(extent))
        if extent[axis] > slice_tolerance:
            raise MaskReadError(
                f"{path}: contour {i} of ROI {chosen['name']!r} is not flat along any image "
                f"axis (it spans at least {extent[axis]:.3g} voxels out of plane)"
            )
        level = float(index[:, axis].mean())
        k = int(np.round(level))
        if abs(level - k) > slice_tolerance or not 0 <= k < shape[axis]:
            normal = image.direction[:, axis]
            where = float(np.mean(points @ normal))
            first = float(np.dot(image.origin, normal))
            last = first + image.spacing[axis] * (shape[axis] - 1)
            name = "z" if axis == 0 else f"position along image axis {axis}"
            raise MaskReadError(
                f"{path}: contour {i} of ROI {chosen['name']!r} at {name} = {where:.4g} mm "
                f"matches no slice of the image (slices from {min(first, last):.4g} to "
                f"{max(first, last):.4g} mm every {image.spacing[axis]:.4g} mm; tolerance "
                f"{slice_tolerance * image.spacing[axis]:.3g} mm)"
            )
        in_plane = [a for a in range(3) if a != axis]
        by_slice.setdefault((axis, k), []).append(index[:, in_plane])
    for (axis, k), polygons in by_slice.items():
        in_plane = [s for a, s in enumerate(shape) if a != axis]
        where = [slice(None)] * 3
        where[axis] = k
        mask[tuple(where)] ^= fill_polygons_even_odd(polygons, in_plane)

    chunks = image.data.chunksize[-3:] if hasattr(image.data, "chunksize") else "auto"
    metadata = {
        "format": "rtstruct",
        "roi_name": chosen["name"],
        "roi_number": chosen["number"],
        "n_contours": chosen["n_contours"],
        "n_slices_with_contours": len(by_slice),
        "skipped_contours": skipped,
        "referenced_series_uid": chosen["referenced_series_uid"],
        "frame_of_reference_uid": chosen["frame_of_reference_uid"],
        "reference_uids_checked": checked,
        "reference": image.source,
    }
    return Volume(data=da.from_array(mask, chunks=chunks), spacing=image.spacing,
                  origin=image.origin, direction=image.direction, modality="RTSTRUCT",
                  source=str(path), metadata=metadata)
