"""Masks of any format onto an image: :func:`open_mask`, and ROI/segment selection by name.

A mask is a boolean :class:`Volume`.  Image-like masks (NIfTI, Zarr, ``.npy``, TIFF, a DICOM
image series) keep their own geometry, which :func:`~medimg_fast.io.check_same_grid` compares
with the image's; RTSTRUCT contours and DICOM-SEG frames are placed on the image's grid by their
patient coordinates, so their result always has the image's geometry.
"""

from __future__ import annotations

import fnmatch
import numbers
from pathlib import Path

from ._volume import RoiNotFoundError, Volume, VolumeReadError

__all__ = ["open_mask", "select_named"]

_GLOB_CHARS = frozenset("*?[")


def select_named(items, wanted, *, what, path, name_key="name"):
    """The one item of `items` (dicts with ``number`` and `name_key`) that `wanted` selects.

    `wanted` is None (the file must hold exactly one item), an int (the item's number) or a
    string: an exact name, else the same name in another case, else a glob pattern
    (:func:`fnmatch.fnmatchcase` on case-folded text), else a number written as text.

    Raises
    ------
    RoiNotFoundError
        When nothing or several items match; the message lists every item of the file.
    """
    listing = ", ".join(f"{it['number']}: {it[name_key]!r}" for it in items) or "none"
    where = f"{path}: "
    if wanted is None:
        if len(items) == 1:
            return items[0]
        raise RoiNotFoundError(f"{where}holds {len(items)} {what}s, choose one with roi= "
                               f"(by name, glob pattern or number); {what}s: {listing}")
    if isinstance(wanted, numbers.Integral) and not isinstance(wanted, bool):
        found = [it for it in items if it["number"] == int(wanted)]
    elif isinstance(wanted, str):
        found = [it for it in items if it[name_key] == wanted]
        if not found:
            found = [it for it in items if it[name_key].casefold() == wanted.casefold()]
        if not found and _GLOB_CHARS & set(wanted):
            pattern = wanted.casefold()
            found = [it for it in items if fnmatch.fnmatchcase(it[name_key].casefold(), pattern)]
        if not found and wanted.strip().isdigit():
            found = [it for it in items if it["number"] == int(wanted)]
    else:
        raise TypeError(f"`roi` must be None, a name, a glob pattern or a number, "
                        f"got {wanted!r}")
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(f"{it['number']}: {it[name_key]!r}" for it in found)
        raise RoiNotFoundError(f"{where}roi={wanted!r} matches {len(found)} {what}s ({names}); "
                               f"give an exact name or a number")
    raise RoiNotFoundError(f"{where}no {what} matches roi={wanted!r}; {what}s: {listing}")


def open_mask(path, image_volume: Volume, roi=None) -> Volume:
    """Read a mask for `image_volume` from any supported file, as a boolean Volume.

    Parameters
    ----------
    path : str or os.PathLike
        An RTSTRUCT file, a DICOM-SEG file, a folder holding one of them (and no images), or
        any image format :func:`~medimg_fast.io.open_volume` reads (NIfTI, Zarr, ``.npy``,
        TIFF, a DICOM image series).
    image_volume : Volume
        The image the mask belongs to: the grid RTSTRUCT contours and SEG frames are placed
        on, and the series whose UIDs they must reference.
    roi : None, str or int
        RTSTRUCT: the ROI (name, case-insensitive name, glob pattern or number).  SEG: the
        segment (label or number).  Image masks: None (nonzero voxels are the mask) or an
        integer label value (voxels equal to it), for label maps.

    Returns
    -------
    Volume
        Boolean ``data`` of shape (z, y, x).  RTSTRUCT and SEG masks have the image's
        geometry; image masks keep their own (compare with
        :func:`~medimg_fast.io.check_same_grid`).  A fractional SEG is thresholded at 0.5.

    Raises
    ------
    RoiNotFoundError, ReferenceMismatchError, MaskReadError
        (all ValueError) for an ROI that is not there, a mask of another series, or contours
        or frames off the image grid.
    VolumeReadError
        For an image mask that is not 3-D or an `roi` that is not a label value.
    """
    from . import open_volume
    from ._dicom import dicom_object_kind, is_dicom_file, looks_like_dicom_folder

    p = Path(path)
    kind, target = None, p
    if p.is_file() and (p.name.lower().endswith(".dcm") or is_dicom_file(p)):
        kind = dicom_object_kind(p)
    elif p.is_dir() and looks_like_dicom_folder(p):
        kinds = {f: dicom_object_kind(f) for f in sorted(p.iterdir())
                 if f.is_file() and not f.name.startswith(".")}
        masks = {f: k for f, k in kinds.items() if k in ("RTSTRUCT", "SEG")}
        if masks and "image" not in kinds.values():
            if len(masks) > 1:
                listing = ", ".join(f"{f.name} ({k})" for f, k in masks.items())
                raise VolumeReadError(f"{p}: folder holds {len(masks)} mask objects "
                                      f"({listing}); give the file instead of the folder")
            (target, kind), = masks.items()
    if kind == "RTSTRUCT":
        from ._rtstruct import read_rtstruct_mask
        return read_rtstruct_mask(target, image_volume, roi=roi)
    if kind == "SEG":
        from ._seg import read_seg_mask
        return read_seg_mask(target, image_volume, segment=roi)

    volume = open_volume(p)
    if volume.data.ndim != 3:
        raise VolumeReadError(f"{p}: a mask must be 3-D (z, y, x), got shape {volume.shape}")
    if roi is None:
        volume.data = volume.data != 0
    else:
        label = roi
        if isinstance(roi, str) and roi.strip().lstrip("-").isdigit():
            label = int(roi)
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            raise VolumeReadError(f"{p}: roi={roi!r} for an image mask must be an integer label "
                                  "value (ROI names apply to RTSTRUCT and SEG files)")
        volume.data = volume.data == int(label)
        volume.metadata["label"] = int(label)
    return volume
