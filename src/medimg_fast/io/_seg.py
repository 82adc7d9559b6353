"""DICOM Segmentation objects (binary, fractional, label map): segments onto their image's grid.

highdicom parses the object (segment descriptions, segmentation type, the per-frame functional
groups) and decodes the frames, including 1-bit packed binary frames; placing the frames is
done here, by their patient coordinates, because the target is the *image's* grid, not the
one the SEG would define by itself: a SEG usually omits empty frames, so its own frames
cover only the slices the segment touches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._geometry import world_to_index
from ._volume import CorruptVolumeError, MaskReadError, ReferenceMismatchError, Volume

__all__ = ["list_segments", "read_seg_mask"]

#: Largest distance, in voxels, of a frame's pixel centres from the image's voxel centres.
#: Positions are copied from the source images, so only text rounding separates them.
_GRID_TOLERANCE_VOXELS = 0.1


def _read_seg(path):
    import highdicom as hd

    from ._dicom import read_mask_dataset

    ds = read_mask_dataset(path, "SEG")
    path = Path(path)
    try:
        return hd.seg.Segmentation.from_dataset(ds, copy=False)
    except Exception as exc:  # highdicom raises AttributeError/ValueError/... for a damaged one
        raise CorruptVolumeError(f"{path}: truncated or corrupt DICOM-SEG "
                                 f"({type(exc).__name__}: {exc})") from exc


def _segments(seg):
    return [{"number": int(s.SegmentNumber), "label": str(s.get("SegmentLabel", "")),
             "algorithm_type": str(s.get("SegmentAlgorithmType", ""))}
            for s in seg.SegmentSequence]


def list_segments(path) -> list:
    """The segments of a DICOM-SEG file.

    Returns
    -------
    list of dict
        One per item of SegmentSequence: ``number`` (SegmentNumber), ``label``
        (SegmentLabel), ``algorithm_type``, and ``n_frames`` (frames stored for the segment;
        for a label map, the frames of the whole map).

    Raises
    ------
    CorruptVolumeError
        For a truncated or otherwise unreadable file (a ValueError).
    MaskReadError
        For a file that is not a DICOM-SEG.
    """
    seg = _read_seg(path)
    items = _segments(seg)
    counts = {}
    labelmap = seg.segmentation_type.value == "LABELMAP"
    for frame in seg.get("PerFrameFunctionalGroupsSequence", []):
        if labelmap:
            break
        number = _segment_of_frame(path, seg, frame)
        counts[number] = counts.get(number, 0) + 1
    for it in items:
        it["n_frames"] = int(seg.NumberOfFrames) if labelmap else counts.get(it["number"], 0)
    return items


def _functional(path, seg, frame, name):
    """A functional group item of one frame: per-frame if present there, else shared."""
    if name in frame:
        return frame[name].value[0]
    shared = seg.SharedFunctionalGroupsSequence[0]
    if name in shared:
        return shared[name].value[0]
    raise CorruptVolumeError(f"{path}: frame lacks {name} (neither per-frame nor shared)")


def _segment_of_frame(path, seg, frame):
    # Shared instead of per-frame when every frame holds the same segment (one-segment SEGs).
    item = _functional(path, seg, frame, "SegmentIdentificationSequence")
    return int(item.ReferencedSegmentNumber)


def _check_reference(path, seg, image):
    image_for = str(image.metadata.get("frame_of_reference_uid", "") or "")
    image_series = str(image.metadata.get("series_instance_uid", "") or "")
    seg_for = str(seg.get("FrameOfReferenceUID", "") or "")
    if image_for and seg_for and seg_for != image_for:
        raise ReferenceMismatchError(
            f"{path}: the segmentation is in frame of reference {seg_for}, but the image "
            f"{image.source} has FrameOfReferenceUID {image_for}; it belongs to another scan"
        )
    series = [str(s.SeriesInstanceUID) for s in seg.get("ReferencedSeriesSequence", [])]
    if image_series and series and image_series not in series:
        raise ReferenceMismatchError(
            f"{path}: the segmentation references series {', '.join(series)}, but the image "
            f"{image.source} is series {image_series}; it belongs to another series"
        )
    return bool(image_for or image_series)


def read_seg_mask(path, reference_volume_or_series_path, segment=None, *,
                  threshold=0.5) -> Volume:
    """Read one segment of a DICOM-SEG onto its image's voxel grid.

    Parameters
    ----------
    path : str or os.PathLike
        The DICOM-SEG file.
    reference_volume_or_series_path : Volume, str or os.PathLike
        The segmented image: a Volume, or a path for :func:`~medimg_fast.io.open_volume`.
        The result gets its shape, spacing, origin and direction.
    segment : None, int or str
        SegmentNumber, or SegmentLabel (exact, other case, or a glob pattern).  None takes
        the only segment of a SEG with one.
    threshold : float or None
        For a FRACTIONAL SEG: voxels whose fraction (stored value / MaximumFractionalValue)
        is at least `threshold` are the mask.  None returns the fractions as float32 in
        [0, 1] instead.  Ignored for BINARY and LABELMAP SEGs.

    Returns
    -------
    Volume
        Boolean ``data`` (z, y, x) (float32 fractions when `threshold` is None for a
        fractional SEG) with the reference's geometry; ``modality`` is ``"SEG"``;
        ``metadata`` records the segment (``segment_number``, ``segment_label``) and the
        segmentation type.  Slices with no stored frame are empty.

    Raises
    ------
    RoiNotFoundError
        When `segment` selects no segment or several; the message lists the segments.
    ReferenceMismatchError
        When the SEG's FrameOfReferenceUID or referenced series is not the image's.
    MaskReadError
        For a frame whose pixels do not fall on the image's voxel centres (another
        orientation, spacing or position) or fall outside the image.
    CorruptVolumeError
        For a truncated or unreadable file.
    All are ValueError subclasses.

    Notes
    -----
    Each stored frame's pixel ``(r, c)`` lies at ``P + c * dc * u + r * dr * v`` (``P``
    its ImagePositionPatient, ``u`` and ``v`` the row and column direction cosines, ``dc``
    and ``dr`` the column and row spacing).  Mapped through the inverse of the image's
    affine these must be voxel centres (within 0.1 voxel); frames of any orientation or
    order that satisfy this are placed, anything else is refused.
    """
    import dask.array as da

    from . import open_volume
    from ._mask import select_named

    if threshold is not None and not (np.isfinite(threshold) and 0 < threshold <= 1):
        raise ValueError(f"`threshold` must be in (0, 1] or None, got {threshold!r}")
    image = reference_volume_or_series_path
    if not isinstance(image, Volume):
        image = open_volume(image)
    seg = _read_seg(path)
    chosen = select_named(_segments(seg), segment, what="segment", path=path, name_key="label")
    checked = _check_reference(path, seg, image)
    seg_type = seg.segmentation_type.value
    fractional = seg_type == "FRACTIONAL"
    scale = float(seg.get("MaximumFractionalValue", 255) or 255) if fractional else 1.0

    shape = tuple(int(s) for s in image.shape[-3:])
    out = np.zeros(shape, dtype=np.float32 if fractional else bool)
    rows, columns = int(seg.Rows), int(seg.Columns)
    r, c = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    n_placed = 0
    try:
        frames = list(seg.PerFrameFunctionalGroupsSequence)
    except AttributeError as exc:
        raise CorruptVolumeError(f"{path}: DICOM-SEG without PerFrameFunctionalGroupsSequence")\
            from exc
    for i, frame in enumerate(frames):
        if seg_type != "LABELMAP" and _segment_of_frame(path, seg, frame) != chosen["number"]:
            continue
        position = np.array([float(v) for v in
                             _functional(path, seg, frame, "PlanePositionSequence")
                             .ImagePositionPatient])
        iop = np.array([float(v) for v in
                        _functional(path, seg, frame, "PlaneOrientationSequence")
                        .ImageOrientationPatient])
        row_mm, col_mm = (float(v) for v in
                          _functional(path, seg, frame, "PixelMeasuresSequence").PixelSpacing)
        origin, step_c, step_r = world_to_index(
            image, [position, position + iop[:3] * col_mm, position + iop[3:] * row_mm])
        step_c, step_r = step_c - origin, step_r - origin
        index = (origin[:, None, None] + step_c[:, None, None] * c
                 + step_r[:, None, None] * r)
        nearest = np.round(index)
        off = float(np.max(np.abs(index - nearest)))
        if off > _GRID_TOLERANCE_VOXELS:
            raise MaskReadError(
                f"{path}: frame {i + 1} (position {position.tolist()} mm) does not lie on the "
                f"image's voxel grid (off by up to {off:.3g} voxels): the segmentation was "
                f"made on another geometry than {image.source}"
            )
        nearest = nearest.astype(np.int64)
        if np.any(nearest < 0) or np.any(nearest >= np.array(shape)[:, None, None]):
            raise MaskReadError(
                f"{path}: frame {i + 1} (position {position.tolist()} mm) reaches outside the "
                f"image {image.source} of shape {shape}"
            )
        try:
            pixels = np.asarray(seg.get_stored_frame(i + 1))
        except Exception as exc:
            raise CorruptVolumeError(f"{path}: DICOM-SEG frame {i + 1} pixel data unreadable "
                                     f"({type(exc).__name__}: {exc})") from exc
        if seg_type == "LABELMAP":
            values = pixels == chosen["number"]
        elif fractional:
            values = pixels.astype(np.float32) / np.float32(scale)
        else:
            values = pixels != 0
        target = (nearest[0], nearest[1], nearest[2])
        out[target] = np.maximum(out[target], values)
        n_placed += 1

    if fractional and threshold is not None:
        out = out >= np.float32(threshold)
    chunks = image.data.chunksize[-3:] if hasattr(image.data, "chunksize") else "auto"
    metadata = {
        "format": "seg",
        "segment_number": chosen["number"],
        "segment_label": chosen["label"],
        "segmentation_type": seg_type,
        "n_frames": n_placed,
        "threshold": threshold if fractional else None,
        "frame_of_reference_uid": str(seg.get("FrameOfReferenceUID", "")),
        "reference_uids_checked": checked,
        "reference": image.source,
    }
    return Volume(data=da.from_array(out, chunks=chunks), spacing=image.spacing,
                  origin=image.origin, direction=image.direction, modality="SEG",
                  source=str(path), metadata=metadata)
