"""DICOM series (a folder of single-frame images) and single DICOM files through pydicom.

Slices are grouped by SeriesInstanceUID, ordered by ImagePositionPatient projected on the slice
normal (row cosines x column cosines), and rescaled with Rescale Slope/Intercept (Hounsfield
units for CT).  The slice spacing comes from the positions, not from SliceThickness, which
describes the slab a slice integrates over and can differ from the spacing.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np

from ._volume import (
    CorruptVolumeError,
    DicomSeriesError,
    MaskReadError,
    NotAnImageError,
    Volume,
    reorient_canonical,
)

# Positions are written with ~6 significant digits; 1 % of the spacing (and at least 1 um)
# separates rounding from a real gap or an unequal step.
_SPACING_RTOL = 1e-2
_SPACING_ATOL = 1e-3
_ORIENTATION_ATOL = 1e-4
# Mask objects: read onto an image with read_rtstruct_mask / read_seg_mask, never as images
# (a SEG has PixelData and Rows, so without this it would pass for a multi-frame image).
MASK_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT",
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
    "1.2.840.10008.5.1.4.1.1.66.7": "SEG",  # Label Map Segmentation Storage
}
_MASK_HOWTO = {
    "RTSTRUCT": "a structure set of planar contours, not an image; read it as a mask on its "
                "image with medimg_fast.io.read_rtstruct_mask(path, image, roi=...) or "
                "open_mask(path, image, roi=...); list its ROIs with list_rois(path)",
    "SEG": "a DICOM segmentation, not an image; read it as a mask on its image with "
           "medimg_fast.io.read_seg_mask(path, image, segment=...) or "
           "open_mask(path, image, roi=...); list its segments with list_segments(path)",
}


def is_dicom_file(path) -> bool:
    """True if `path` starts with the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_mask_dataset(path, kind: str):
    """The whole dataset of a DICOM mask file of ``kind`` ("RTSTRUCT" or "SEG"), checked.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    MaskReadError
        For a file that is not DICOM, or a DICOM object of another kind.
    CorruptVolumeError
        For a truncated or otherwise unreadable file.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    name = "DICOM-SEG" if kind == "SEG" else kind
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such {name} file: {str(path)!r}")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise MaskReadError(f"{path}: not a DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises EOFError/OSError/ValueError/... when truncated
        raise CorruptVolumeError(f"{path}: truncated or corrupt {name} "
                                 f"({type(exc).__name__}: {exc})") from exc
    check_complete(path, name)
    if mask_kind(ds) != kind:
        article = "a" if kind == "SEG" else "an"
        raise MaskReadError(f"{path}: not {article} {name} (SOP class "
                            f"{ds.get('SOPClassUID', 'unknown')}, modality "
                            f"{ds.get('Modality', 'unknown')})")
    return ds


def mask_kind(ds):
    """``"RTSTRUCT"``, ``"SEG"`` or None for a pydicom dataset, by SOP class, else Modality."""
    kind = MASK_SOP_CLASSES.get(str(ds.get("SOPClassUID", "")))
    if kind is None and str(ds.get("Modality", "")) in ("RTSTRUCT", "SEG"):
        kind = str(ds.Modality)
    return kind


def dicom_object_kind(path):
    """``"RTSTRUCT"``, ``"SEG"``, ``"image"`` or None (not DICOM, or no pixel data)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, defer_size="1 KB")
    except Exception:  # noqa: BLE001  not DICOM or a damaged header: not a mask object
        return None
    kind = mask_kind(ds)
    if kind is not None:
        return kind
    return "image" if "PixelData" in ds and "Rows" in ds else None


# Explicit VRs whose length field is 4 bytes (after 2 reserved bytes); all others have 2.
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_ITEM, _ITEM_END, _SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)
_UNDEFINED = 0xFFFFFFFF


class _Truncated(Exception):
    pass


def _walk_elements(buf, pos, explicit, endian, nested):
    """Skip data elements from `pos`; a nested item ends at its delimiter, the top level at EOF."""
    import struct

    n = len(buf)
    while pos < n or nested:
        if pos + 8 > n:
            raise _Truncated(pos)
        tag = struct.unpack_from(endian + "HH", buf, pos)
        if tag == _ITEM_END:
            return pos + 8
        vr = bytes(buf[pos + 4:pos + 6]) if explicit else None
        if explicit and vr in _LONG_VRS:
            if pos + 12 > n:
                raise _Truncated(pos)
            (length,) = struct.unpack_from(endian + "L", buf, pos + 8)
            pos += 12
        elif explicit:
            (length,) = struct.unpack_from(endian + "H", buf, pos + 6)
            pos += 8
        else:
            (length,) = struct.unpack_from(endian + "L", buf, pos + 4)
            pos += 8
        if length == _UNDEFINED:
            # A sequence, or encapsulated pixel data; UN content is implicit VR little endian.
            inner_explicit = explicit and vr != b"UN"
            pos = _walk_items(buf, pos, inner_explicit, endian if inner_explicit else "<")
        elif pos + length > n:
            raise _Truncated(pos)
        else:
            pos += length
    return pos


def _walk_items(buf, pos, explicit, endian):
    import struct

    while True:
        if pos + 8 > len(buf):
            raise _Truncated(pos)
        group, element, length = struct.unpack_from(endian + "HHL", buf, pos)
        pos += 8
        if (group, element) == _SEQUENCE_END:
            return pos
        if (group, element) != _ITEM:
            raise _Truncated(pos)
        if length == _UNDEFINED:
            pos = _walk_elements(buf, pos, explicit, endian, nested=True)
        elif pos + length > len(buf):
            raise _Truncated(pos)
        else:
            pos += length


def check_complete(path, what="DICOM"):
    """Raise :class:`CorruptVolumeError` if the file's element framing ends before its data.

    pydicom reads a file cut short without complaint: sequences simply end early, so a
    truncated structure set would lose contours silently.  This walks the element headers
    (lengths, items, delimiters) without decoding values and checks that every element and
    every undefined-length sequence is complete.  Deflated transfer syntaxes are not
    checked.
    """
    import mmap

    with open(path, "rb") as fh:
        try:
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise CorruptVolumeError(f"{path}: empty file, not a {what}") from None
    try:
        import struct

        pos = 132 if buf[128:132] == b"DICM" else 0
        syntax = "1.2.840.10008.1.2"  # implicit VR little endian, when there is no file meta
        # The file meta group (0002) is explicit VR little endian whatever the transfer syntax.
        while pos + 8 <= len(buf) and struct.unpack_from("<H", buf, pos)[0] == 0x0002:
            element = struct.unpack_from("<H", buf, pos + 2)[0]
            vr = bytes(buf[pos + 4:pos + 6])
            if vr in _LONG_VRS:
                (length,), start = struct.unpack_from("<L", buf, pos + 8), pos + 12
            else:
                (length,), start = struct.unpack_from("<H", buf, pos + 6), pos + 8
            if element == 0x0010:
                syntax = bytes(buf[start:start + length]).decode("ascii", "replace")
                syntax = syntax.strip("\x00 ")
            pos = start + length
        if syntax in ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"):  # deflated
            return
        explicit = syntax != "1.2.840.10008.1.2"
        endian = ">" if syntax == "1.2.840.10008.1.2.2" else "<"
        _walk_elements(buf, pos, explicit, endian, nested=False)
    except _Truncated as exc:
        raise CorruptVolumeError(
            f"{path}: truncated or corrupt {what}: the data stops at byte {exc.args[0]} of "
            f"{len(buf)} inside an element or sequence (the file was cut short)"
        ) from None
    finally:
        buf.close()


def _mask_summary(ds, kind):
    """The ROI names or segment labels of a mask object, for error messages."""
    try:
        if kind == "RTSTRUCT":
            names = [str(r.get("ROIName", "")) for r in ds.get("StructureSetROISequence", [])]
            return f"ROIs: {', '.join(repr(n) for n in names) or 'none'}"
        labels = [str(s.get("SegmentLabel", "")) for s in ds.get("SegmentSequence", [])]
        return f"segments: {', '.join(repr(n) for n in labels) or 'none'}"
    except Exception:  # noqa: BLE001  a damaged header: the message just says less
        return "contents unreadable"


def _stored_dtype(ds) -> np.dtype:
    bits = int(ds.get("BitsAllocated", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if bits not in (8, 16, 32):
        raise DicomSeriesError(f"{ds.filename}: BitsAllocated={bits} is not supported")
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def _rescale(ds):
    slope = ds.get("RescaleSlope", None)
    intercept = ds.get("RescaleIntercept", None)
    if slope is None and intercept is None:
        return None
    return float(slope if slope is not None else 1.0), float(intercept or 0.0)


def _read_slice(path, rows, columns, rescale, dtype):
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises ValueError/OSError/... for damaged pixel data
        raise CorruptVolumeError(f"{path}: DICOM pixel data unreadable ({exc})") from exc
    if pixels.shape != (rows, columns):
        raise CorruptVolumeError(
            f"{path}: pixel data has shape {pixels.shape}, header says ({rows}, {columns})"
        )
    if rescale is not None:
        slope, intercept = rescale
        # float64 arithmetic, then one rounding to the output dtype (float32 holds every
        # 16-bit value times an integer slope exactly).
        pixels = pixels.astype(np.float64) * slope + intercept
    return pixels.astype(dtype, copy=False)[None]


def _header(path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # defer_size keeps PixelData on disk but still lists it, so non-image objects are seen.
        ds = pydicom.dcmread(path, defer_size="1 KB")
    except InvalidDicomError:
        return None, "not a DICOM file"
    except Exception as exc:  # noqa: BLE001  pydicom raises many kinds on corrupt headers
        return None, f"unreadable DICOM header ({type(exc).__name__}: {exc})"
    kind = mask_kind(ds)
    if kind is not None:
        return None, (f"DICOM {kind} mask object ({_mask_summary(ds, kind)}): "
                      f"{_MASK_HOWTO[kind]}")
    if "PixelData" not in ds or "Rows" not in ds:
        return None, f"non-image DICOM object (SOP class {ds.get('SOPClassUID', 'unknown')})"
    return ds, None


def _float_tuple(value, n, what, path):
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != n:
        raise DicomSeriesError(f"{path}: {what} must have {n} values, got {value!r}")
    return out


def read_dicom(path, *, series_uid=None) -> Volume:
    """Read a DICOM series from a folder (not recursive) or a single DICOM file."""
    import dask
    import dask.array as da

    path = Path(path)
    if path.is_dir():
        candidates = sorted(
            p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
        )
    else:
        candidates = [path]

    headers, ignored = [], {}
    for f in candidates:
        ds, reason = _header(str(f))
        if ds is None:
            ignored[str(f)] = reason
        else:
            headers.append(ds)
    if not headers:
        masks = [(f, r) for f, r in ignored.items() if r.startswith("DICOM ") and " mask " in r]
        if masks and len(masks) == len(ignored):
            f, reason = masks[0]
            where = f"{path}" if not path.is_dir() else f"{path}: no images, only {Path(f).name}"
            more = f" (and {len(masks) - 1} more mask object(s))" if len(masks) > 1 else ""
            raise NotAnImageError(f"{where}: {reason}{more}")
        detail = "; ".join(f"{Path(k).name}: {v}" for k, v in list(ignored.items())[:3])
        raise DicomSeriesError(
            f"{path}: no DICOM image objects found (subfolders are not searched)"
            + (f" [{detail}]" if detail else "")
        )

    by_series = collections.defaultdict(list)
    for ds in headers:
        by_series[str(ds.get("SeriesInstanceUID", "<missing SeriesInstanceUID>"))].append(ds)
    if series_uid is not None:
        if series_uid not in by_series:
            raise DicomSeriesError(
                f"{path}: no series with SeriesInstanceUID {series_uid!r}; found "
                f"{sorted(by_series)}"
            )
        slices = by_series[series_uid]
    elif len(by_series) > 1:
        listing = ", ".join(f"{uid} ({len(v)} files)" for uid, v in sorted(by_series.items()))
        raise DicomSeriesError(
            f"{path}: mixed series, {len(by_series)} SeriesInstanceUIDs in one folder: "
            f"{listing}; pass series_uid= to choose one"
        )
    else:
        slices = next(iter(by_series.values()))

    first = slices[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise DicomSeriesError(
            f"{first.filename}: multi-frame DICOM (NumberOfFrames={first.NumberOfFrames}) "
            "is not supported; convert it to single-frame files or NIfTI"
        )
    rows, columns = int(first.Rows), int(first.Columns)
    if int(first.get("SamplesPerPixel", 1)) != 1:
        raise DicomSeriesError(
            f"{first.filename}: SamplesPerPixel={first.SamplesPerPixel}; only greyscale "
            "images are supported"
        )
    for ds in slices:
        if (int(ds.Rows), int(ds.Columns)) != (rows, columns):
            raise DicomSeriesError(
                f"{path}: slices differ in size: {first.filename} is {rows}x{columns}, "
                f"{ds.filename} is {int(ds.Rows)}x{int(ds.Columns)}"
            )

    if "ImageOrientationPatient" in first:
        iop = np.array(_float_tuple(first.ImageOrientationPatient, 6,
                                    "ImageOrientationPatient", first.filename))
    elif len(slices) == 1:
        iop = np.array([1.0, 0, 0, 0, 1, 0])
    else:
        raise DicomSeriesError(f"{first.filename}: ImageOrientationPatient missing")
    for ds in slices[1:]:
        other = np.array(_float_tuple(ds.get("ImageOrientationPatient"), 6,
                                      "ImageOrientationPatient", ds.filename))
        if not np.allclose(other, iop, atol=_ORIENTATION_ATOL):
            raise DicomSeriesError(
                f"{path}: slices differ in ImageOrientationPatient ({first.filename}: "
                f"{iop.tolist()}, {ds.filename}: {other.tolist()})"
            )
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)

    spacing_tag = first.get("PixelSpacing", None) or first.get("ImagerPixelSpacing", None)
    pixel_spacing = (
        _float_tuple(spacing_tag, 2, "PixelSpacing", first.filename) if spacing_tag else None
    )
    for ds in slices[1:]:
        tag = ds.get("PixelSpacing", None) or ds.get("ImagerPixelSpacing", None)
        other = _float_tuple(tag, 2, "PixelSpacing", ds.filename) if tag else None
        if other != pixel_spacing and not (
            other and pixel_spacing and np.allclose(other, pixel_spacing, rtol=1e-5)
        ):
            raise DicomSeriesError(
                f"{path}: slices differ in PixelSpacing ({first.filename}: {pixel_spacing}, "
                f"{ds.filename}: {other})"
            )
    metadata = {"format": "dicom", "ignored_files": ignored}
    if pixel_spacing is None:
        pixel_spacing = (1.0, 1.0)
        metadata["pixel_spacing_missing"] = True

    if len(slices) > 1:
        positions = []
        for ds in slices:
            if "ImagePositionPatient" not in ds:
                raise DicomSeriesError(f"{ds.filename}: ImagePositionPatient missing")
            positions.append(_float_tuple(ds.ImagePositionPatient, 3,
                                          "ImagePositionPatient", ds.filename))
        positions = np.array(positions)
        along = positions @ normal
        order = np.argsort(along, kind="stable")
        slices = [slices[i] for i in order]
        positions, along = positions[order], along[order]
        steps = np.diff(along)
        slice_spacing = float(np.median(steps))
        tol = max(_SPACING_ATOL, _SPACING_RTOL * abs(slice_spacing))
        dup = np.flatnonzero(steps <= tol)
        if dup.size:
            i = dup[0]
            raise DicomSeriesError(
                f"{path}: duplicated slice at position {along[i]:.4g} mm along the normal "
                f"({Path(slices[i].filename).name} and {Path(slices[i + 1].filename).name}); "
                f"{dup.size} duplicate(s) in {len(slices)} files"
            )
        bad = np.flatnonzero(np.abs(steps - slice_spacing) > tol)
        if bad.size:
            ratios = steps[bad] / slice_spacing
            if np.allclose(ratios, np.round(ratios), atol=_SPACING_RTOL) and np.all(ratios > 1.5):
                n_missing = int(np.sum(np.round(ratios) - 1))
                i = bad[0]
                raise DicomSeriesError(
                    f"{path}: {n_missing} missing slice(s); first gap of {steps[i]:.4g} mm "
                    f"after position {along[i]:.4g} mm where the spacing is "
                    f"{slice_spacing:.4g} mm"
                )
            raise DicomSeriesError(
                f"{path}: unequal slice spacing: steps range from {steps.min():.4g} to "
                f"{steps.max():.4g} mm (median {slice_spacing:.4g} mm)"
            )
        origin = positions[0]
    else:
        ds = slices[0]
        slice_spacing = float(
            ds.get("SpacingBetweenSlices", None) or ds.get("SliceThickness", None) or 1.0
        )
        origin = np.array(
            _float_tuple(ds.ImagePositionPatient, 3, "ImagePositionPatient", ds.filename)
            if "ImagePositionPatient" in ds else (0.0, 0.0, 0.0)
        )

    rescales = [_rescale(ds) for ds in slices]
    stored = _stored_dtype(first)
    if any(r is not None for r in rescales):
        dtype = np.dtype(np.float32)
        rescales = [r if r is not None else (1.0, 0.0) for r in rescales]
    else:
        dtype = stored
    reader = dask.delayed(_read_slice, pure=True)
    data = da.concatenate([
        da.from_delayed(reader(str(ds.filename), rows, columns, r, dtype),
                        shape=(1, rows, columns), dtype=dtype)
        for ds, r in zip(slices, rescales)
    ], axis=0)

    # Array axes: 0 = slices (along the normal), 1 = rows (column cosines),
    # 2 = columns (row cosines).  PixelSpacing is (row spacing, column spacing).
    direction = np.stack([normal, col_cos, row_cos], axis=1)
    spacing = (abs(slice_spacing), pixel_spacing[0], pixel_spacing[1])
    data, spacing, origin, direction = reorient_canonical(data, spacing, origin, direction)
    metadata.update({
        "files": [str(ds.filename) for ds in slices],
        "series_instance_uid": str(first.get("SeriesInstanceUID", "")),
        "frame_of_reference_uid": str(first.get("FrameOfReferenceUID", "")),
        "study_instance_uid": str(first.get("StudyInstanceUID", "")),
        "sop_instance_uids": [str(ds.get("SOPInstanceUID", "")) for ds in slices],
        "rescale": rescales[0] if len(set(rescales)) == 1 else rescales,
        "stored_dtype": str(stored),
        "slice_thickness": float(first.SliceThickness) if "SliceThickness" in first else None,
    })
    modality = str(first.get("Modality", "")) or None
    if modality == "PT":
        from ._suv import pet_header

        # Kept so units="suv" needs no second read of the headers.
        metadata["pet"] = pet_header(slices)
    return Volume(data=data, spacing=spacing, origin=origin, direction=direction,
                  modality=modality, source=str(path), metadata=metadata)


def looks_like_dicom_folder(path) -> bool:
    """True if a folder directly holds at least one file with the DICOM preamble."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return False
    return any(e.is_file() and is_dicom_file(e.path) for e in entries)
