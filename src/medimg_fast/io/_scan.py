"""Scan a DICOM tree into a manifest: image series paired with their RTSTRUCTs and SEGs.

Every file under the folder is read once, headers only, in parallel worker processes (pydicom
parsing is pure Python, so threads would share one core).  Image files are grouped by
SeriesInstanceUID; each series is checked as :func:`~medimg_fast.io.open_volume` would
check it (one folder, one orientation, one size, evenly spaced slices, no file cut short);
structure sets and segmentations are paired with the series they reference.  The result has
one row per image series and ROI, and one error row per file or series that cannot be used.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import os
import time
from pathlib import Path

import numpy as np

__all__ = ["ERROR_COLUMNS", "MANIFEST_COLUMNS", "ROW_COLUMNS", "ScanResult", "scan_dicom"]

#: Columns of :attr:`ScanResult.rows`.
ROW_COLUMNS = ("path", "mask", "roi", "subject", "modality", "series_description",
               "series_uid", "n_slices")
#: Columns of the manifest CSV: the archive reads ``path,label[,mask][,subject][,roi]`` and
#: ignores the others; ``series_uid`` selects the series of a folder holding several.
MANIFEST_COLUMNS = ("path", "mask", "roi", "subject", "modality", "series_description",
                    "series_uid", "label")
ERROR_COLUMNS = ("path", "subject", "series_uid", "reason")

# Top-level tags read from every file.  The mask objects' sequences are read only from the
# files whose SOP class says they are masks (a second, full read of those few files).
_IMAGE_TAGS = ["SOPClassUID", "Modality", "PatientID", "StudyInstanceUID",
               "SeriesInstanceUID", "SeriesDescription", "FrameOfReferenceUID",
               "ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns",
               "NumberOfFrames"]
_MASK_TAGS = _IMAGE_TAGS + ["StructureSetROISequence", "ReferencedFrameOfReferenceSequence",
                            "SegmentSequence", "ReferencedSeriesSequence"]
# Enough for nearly every image header (vendors' private groups included); a longer header
# is read again from the file.
_PREFIX_BYTES = 16384
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")
_PIXEL_TAGS_BIG = (b"\x7f\xe0\x00\x10", b"\x7f\xe0\x00\x08", b"\x7f\xe0\x00\x09")
_DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"})
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR
# Common image storage SOP classes (CR, DX, MG, CT, MR, US, SC, XA, NM, PET, RT image and
# dose): one of them without Rows is a header cut short, not a non-image object.
_IMAGE_SOP_CLASSES = frozenset("1.2.840.10008.5.1.4.1.1." + suffix for suffix in (
    "1", "1.1", "1.2", "2", "2.1", "4", "4.1", "6.1", "3.1", "7", "12.1", "20", "128",
    "130", "481.1", "481.2"))
_IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
_EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
# Fewer files than this are read in this process: at ~0.2 ms a file, starting and feeding
# workers would cost more than they save.
_SERIAL_BELOW = 1000


@dataclasses.dataclass
class ScanResult:
    """What :func:`scan_dicom` found.

    Attributes
    ----------
    rows : list of dict
        One per image series and ROI (:data:`ROW_COLUMNS`): ``path`` is the folder holding
        the series' files, ``mask`` the RTSTRUCT or SEG file (``""`` for a series without
        one), ``roi`` the ROI name or segment label (its number when the name is empty or not
        unique in the file), ``subject`` the PatientID, ``n_slices`` the number of files.
    errors : list of dict
        One per unusable file, series or mask (:data:`ERROR_COLUMNS`), with the reason.
    skipped : list of dict
        Files that are not DICOM images or masks (``path``, ``reason``): text files, DICOMDIR,
        RT plans, reports...  They are not errors.
    n_files : int
        Files read.
    seconds : float
        Wall time of the scan.
    """

    rows: list
    errors: list
    skipped: list
    n_files: int
    seconds: float

    @property
    def files_per_second(self) -> float:
        return self.n_files / self.seconds if self.seconds > 0 else float("inf")

    def __repr__(self) -> str:
        return (f"ScanResult({len(self.rows)} rows, {len(self.errors)} errors, "
                f"{len(self.skipped)} skipped, {self.n_files} files in {self.seconds:.2f} s)")

    def to_manifest(self, path, errors_path=None) -> tuple:
        """Write the rows as a manifest CSV and the errors as a CSV beside it.

        Parameters
        ----------
        path : str or os.PathLike
            The manifest to write (conventionally ``manifest.csv``), with the columns
            :data:`MANIFEST_COLUMNS`; ``label`` is left empty for the user to fill in.
            Paths are absolute.
        errors_path : str or os.PathLike, optional
            Default: ``errors.csv`` in the manifest's folder.  Written even when empty, so a
            clean scan is told apart from one that was not run.

        Returns
        -------
        (pathlib.Path, pathlib.Path)
            The manifest and the errors file.
        """
        path = Path(path)
        errors_path = path.with_name("errors.csv") if errors_path is None else Path(errors_path)
        if errors_path.resolve() == path.resolve():
            raise ValueError(f"`errors_path` must differ from the manifest path, got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        errors_path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in self.rows:
                writer.writerow({**row, "label": ""})
        with open(errors_path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=ERROR_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.errors)
        return path, errors_path


def scan_dicom(folder, *, workers=None, progress=False) -> ScanResult:
    """Scan a DICOM tree of any layout into one row per image series and ROI.

    Parameters
    ----------
    folder : str or os.PathLike
        Searched recursively; hidden files and folders (names starting with ``.``) are
        skipped.  Series may share a folder (a PACS export) or lie in nested subfolders.
    workers : int, optional
        Worker processes reading headers; default: the CPUs this process may use (at most
        8).  1 reads in this process.
    progress : bool
        Show a tqdm progress bar (files read) on stderr.

    Returns
    -------
    ScanResult
        ``rows`` (one per image series and ROI, paired by the UIDs the masks reference),
        ``errors`` and ``skipped``; :meth:`ScanResult.to_manifest` writes them as CSV.

    Raises
    ------
    FileNotFoundError
        If `folder` does not exist.
    NotADirectoryError
        If it is a file.
    ValueError
        For a `workers` that is not a positive int.

    Notes
    -----
    ``path`` of a row is the folder that directly holds the series' files: it opens with
    ``open_volume(path)`` when the folder holds that one image series, and with
    ``open_volume(path, series_uid=row["series_uid"])`` whatever the folder holds (mask
    objects and other files in it are ignored).  The mask opens with
    ``open_mask(row["mask"], image, roi=row["roi"])``.

    A structure set is paired through the SeriesInstanceUIDs of its
    ReferencedFrameOfReferenceSequence > RTReferencedStudySequence > RTReferencedSeriesSequence
    (each ROI with the series of its ReferencedFrameOfReferenceUID), a SEG through its
    ReferencedSeriesSequence.  A mask that references no series is paired with the one image
    series in its FrameOfReferenceUID, if there is exactly one.  A series or a mask that cannot
    be used is an error row, never a row that would fail later: a file cut short (its pixel
    data shorter than the header says, or its element framing incomplete), missing or
    duplicated slices, unequal slice spacing, mixed orientations or sizes, a series spread
    over several folders, multi-frame images, a mask referencing a series that is not in the
    tree or that has an error.

    Only headers are read, from a 16 KiB prefix of each file: a walk over the element
    headers picks out the few tags needed (little-endian image files with ASCII text, the
    common case), and pydicom (``stop_before_pixels``, ``specific_tags``) reads every other
    file; both give the same records (tested on pydicom's test files).  About 5,000 files/s
    on one core, 7,000 to 10,000 on two (``tests/io/_scan_tree.py``).

    Examples
    --------
    >>> import tempfile
    >>> result = scan_dicom(tempfile.mkdtemp())
    >>> result.rows, result.errors
    ([], [])
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"no such folder: {str(root)!r}")
    if not root.is_dir():
        raise NotADirectoryError(f"{str(root)!r} is a file; scan_dicom takes a folder")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"`workers` must be a positive int or None, got {workers!r}")
    start = time.perf_counter()
    files = _walk(root.resolve())
    records = _read_all(files, workers=workers, progress=progress)
    rows, errors, skipped = _assemble(records)
    return ScanResult(rows=rows, errors=errors, skipped=skipped, n_files=len(files),
                      seconds=time.perf_counter() - start)


def _walk(root: Path) -> list:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                     if not f.startswith("."))
    return files


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _read_all(files, *, workers, progress) -> list:
    from tqdm.auto import tqdm

    class _Bar(tqdm):
        # No monitor thread: the workers are forked, and forking a threaded process is unsafe.
        monitor_interval = 0

    workers = min(_available_cpus(), 8) if workers is None else workers
    bar = _Bar(total=len(files), unit="file", desc="scan", disable=not progress)
    try:
        if workers == 1 or len(files) < _SERIAL_BELOW:
            records = []
            for i in range(0, len(files), 64):
                batch = files[i:i + 64]
                records.extend(_read_batch(batch))
                bar.update(len(batch))
            return records
        import concurrent.futures as cf
        import multiprocessing as mp
        import threading

        # fork starts workers in milliseconds and needs no `if __name__ == "__main__"` guard
        # in the caller's script; it is safe only while this process runs one thread (a
        # forked child inherits the other threads' locks), else forkserver, else spawn.
        methods = mp.get_all_start_methods()
        if "fork" in methods and threading.active_count() == 1:
            context = mp.get_context("fork")
        elif "forkserver" in methods:
            context = mp.get_context("forkserver")
        else:
            context = mp.get_context("spawn")
        size = max(16, min(256, len(files) // (workers * 8) or 1))
        batches = [files[i:i + size] for i in range(0, len(files), size)]
        results = [None] * len(batches)
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_read_batch, b): i for i, b in enumerate(batches)}
            for future in cf.as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                bar.update(len(batches[i]))
        return [r for batch in results for r in batch]
    finally:
        bar.close()


def _read_batch(paths) -> list:
    import warnings

    with warnings.catch_warnings():
        # pydicom warns on each odd value (a DS with too many digits, a VR mismatch...); a
        # scan of a whole archive reports what blocks reading, not every oddity.
        warnings.simplefilter("ignore")
        return [_read_one_safely(p) for p in paths]


def _read_one_safely(path) -> dict:
    try:
        return _read_one(path)
    except Exception as exc:  # noqa: BLE001  a value pydicom cannot convert: one error row
        return {"path": path, "kind": "error",
                "reason": f"unreadable DICOM header ({type(exc).__name__}: {exc})"}


def _text(ds, keyword):
    value = ds.get(keyword, None)
    return "" if value is None else str(value).strip()


def _floats(ds, keyword):
    value = ds.get(keyword, None)
    if value is None or value == "":
        return None
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return ()


def _read_one(path) -> dict:
    """The header record of one file: ``kind`` is image, RTSTRUCT, SEG, other, not_dicom or
    error, with the fields the grouping needs."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from ._dicom import MASK_SOP_CLASSES

    record = {"path": path}
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as fh:
            prefix = fh.read(_PREFIX_BYTES)
    except OSError as exc:
        return {**record, "kind": "error", "reason": f"cannot read the file ({exc})"}
    if size == 0:
        return {**record, "kind": "not_dicom", "reason": "empty file"}
    fast = _fast_image_header(prefix)
    if fast is not None and fast["sop_class"] not in MASK_SOP_CLASSES \
            and fast["modality"] not in ("RTSTRUCT", "SEG"):
        at, pixel_header, syntax = fast.pop("pixel_at"), fast.pop("pixel_header"), \
            fast.pop("syntax")
        fast.pop("sop_class")
        record.update(fast, kind="image")
        truncated = _pixel_data_short(path, syntax, size, at, pixel_header)
        if truncated:
            record.update(kind="error", reason=truncated)
        return record
    buffer = io.BytesIO(prefix)
    try:
        ds = pydicom.dcmread(buffer, stop_before_pixels=True, specific_tags=_IMAGE_TAGS)
    except InvalidDicomError:
        return {**record, "kind": "not_dicom", "reason": "not a DICOM file"}
    except Exception:  # noqa: BLE001  the prefix may end inside an element: read the file
        ds = None
    # stop_before_pixels leaves the position at the pixel element's tag; pydicom reads a
    # prefix that ends early without complaint, so reaching that tag is the proof of a
    # complete header.
    at = buffer.tell() if ds is not None else None
    pixel_header = prefix[at:at + 12] if at is not None else b""
    reached = pixel_header[:4] in _PIXEL_TAGS or pixel_header[:4] in _PIXEL_TAGS_BIG
    if ds is None or (not reached and size > len(prefix)):
        try:
            with open(path, "rb") as fh:
                ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=_IMAGE_TAGS)
                at = fh.tell()
                pixel_header = fh.read(12)
        except InvalidDicomError:
            return {**record, "kind": "not_dicom", "reason": "not a DICOM file"}
        except Exception as exc:  # noqa: BLE001  pydicom raises many kinds on damaged files
            return {**record, "kind": "error",
                    "reason": f"unreadable DICOM header ({type(exc).__name__}: {exc})"}

    sop_class = _text(ds, "SOPClassUID")
    modality = _text(ds, "Modality")
    record.update(subject=_text(ds, "PatientID"), series_uid=_text(ds, "SeriesInstanceUID"),
                  frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"), modality=modality,
                  series_description=_text(ds, "SeriesDescription"))
    kind = MASK_SOP_CLASSES.get(sop_class)
    if kind is None and modality in ("RTSTRUCT", "SEG"):
        kind = modality
    if kind is not None:
        return _read_mask(path, kind, record)
    if "Rows" not in ds:
        from ._dicom import check_complete
        from ._volume import CorruptVolumeError

        # A header cut short reads as an object without Rows: tell the two apart (non-image
        # objects are few, so walking their elements costs little).
        try:
            check_complete(path)
        except CorruptVolumeError as exc:
            return {**record, "kind": "error", "reason": str(exc).split(": ", 1)[-1]}
        meta_class = str(ds.file_meta.get("MediaStorageSOPClassUID", ""))
        if (sop_class or meta_class) in _IMAGE_SOP_CLASSES:
            return {**record, "kind": "error",
                    "reason": f"incomplete image header: no Rows (0028,0010) or pixel data in "
                              f"its {size} bytes (truncated?)"}
        if not sop_class and meta_class != _MEDIA_STORAGE_DIRECTORY:
            # Type 1 in every IOD but DICOMDIR's: a file cut between two elements lacks it.
            return {**record, "kind": "error",
                    "reason": f"incomplete DICOM: no SOPClassUID (0008,0016) in its {size} "
                              "bytes (truncated?)"}
        what = sop_class or meta_class or "unknown"
        return {**record, "kind": "other", "reason": f"non-image DICOM object (SOP class {what},"
                f" modality {modality or 'unknown'})"}

    record.update(kind="image", rows=int(ds.Rows), columns=int(ds.get("Columns", 0) or 0),
                  frames=int(ds.get("NumberOfFrames", 1) or 1),
                  position=_floats(ds, "ImagePositionPatient"),
                  orientation=_floats(ds, "ImageOrientationPatient"))
    syntax = str(ds.file_meta.get("TransferSyntaxUID", _IMPLICIT_VR_LITTLE_ENDIAN))
    truncated = _pixel_data_short(path, syntax, size, at, pixel_header)
    if truncated:
        record.update(kind="error", reason=truncated)
    return record


# The fast path: a walk over the top-level element headers of the prefix (lengths only, no
# values decoded but the few tags wanted), about four times faster than pydicom's reader.
# It handles only the common case, a complete little-endian image header with ASCII text;
# anything else (big endian, deflate, no preamble, non-ASCII text, mask objects, a header
# longer than the prefix, a framing surprise) returns None and goes through pydicom.
_FAST_TAGS = {
    0x00080016: "sop_class", 0x00080060: "modality", 0x00100020: "subject",
    0x0020000E: "series_uid", 0x0008103E: "series_description",
    0x00200052: "frame_of_reference_uid", 0x00200032: "position", 0x00200037: "orientation",
    0x00280010: "rows", 0x00280011: "columns", 0x00280008: "frames",
}
_FAST_SYNTAX_REFUSED = _DEFLATED | {_EXPLICIT_VR_BIG_ENDIAN}
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_PIXEL_TAG_VALUES = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


def _fast_image_header(buf):
    """The image fields of a header in `buf` (a file prefix), or None to use pydicom."""
    import struct

    if len(buf) < 144 or buf[128:132] != b"DICM":
        return None
    unpack_tag, unpack_u2, unpack_u4 = (struct.Struct("<HH").unpack_from,
                                        struct.Struct("<H").unpack_from,
                                        struct.Struct("<L").unpack_from)
    pos, syntax, n = 132, None, len(buf)
    try:
        while pos + 8 <= n and unpack_u2(buf, pos)[0] == 0x0002:  # file meta: explicit LE
            element = unpack_u2(buf, pos + 2)[0]
            if buf[pos + 4:pos + 6] in _LONG_VRS:
                length, start = unpack_u4(buf, pos + 8)[0], pos + 12
            else:
                length, start = unpack_u2(buf, pos + 6)[0], pos + 8
            if element == 0x0010:
                syntax = buf[start:start + length].decode("ascii").strip("\x00 ")
            pos = start + length
        if syntax is None or syntax in _FAST_SYNTAX_REFUSED:
            return None
        explicit = syntax != _IMPLICIT_VR_LITTLE_ENDIAN
        found = {}
        while True:
            if pos + 8 > n:
                return None  # the header goes on past the prefix
            group, element = unpack_tag(buf, pos)
            tag = group << 16 | element
            if tag in _PIXEL_TAG_VALUES:
                break
            if explicit:
                vr = buf[pos + 4:pos + 6]
                if vr in _LONG_VRS:
                    if pos + 12 > n:
                        return None
                    length, start = unpack_u4(buf, pos + 8)[0], pos + 12
                else:
                    length, start = unpack_u2(buf, pos + 6)[0], pos + 8
            else:
                length, start = unpack_u4(buf, pos + 4)[0], pos + 8
            if length == 0xFFFFFFFF:
                from ._dicom import _walk_items

                inner = explicit and vr != b"UN"
                pos = _walk_items(buf, start, inner, "<")
                continue
            pos = start + length
            if pos > n:
                return None
            key = _FAST_TAGS.get(tag)
            if key is not None:
                found[key] = buf[start:pos]
        pixel_header = buf[pos:pos + 12]
        fields = {}
        for key in ("sop_class", "modality", "subject", "series_uid", "series_description",
                    "frame_of_reference_uid"):
            raw = found.get(key, b"")
            if max(raw, default=0) > 0x7F:
                return None  # another character set: pydicom decodes it
            fields[key] = raw.decode("ascii").strip("\x00").strip()
        if "rows" not in found or len(found["rows"]) != 2:
            return None
        fields["rows"] = unpack_u2(found["rows"], 0)[0]
        columns = found.get("columns", b"")
        fields["columns"] = unpack_u2(columns, 0)[0] if len(columns) == 2 else 0
        frames = found.get("frames", b"").decode("ascii").strip("\x00 ")
        fields["frames"] = int(frames) if frames else 1
        for key in ("position", "orientation"):
            text = found.get(key, b"").decode("ascii").strip("\x00 ")
            try:
                fields[key] = tuple(float(v) for v in text.split("\\")) if text else None
            except ValueError:
                fields[key] = ()
    except Exception:  # noqa: BLE001  any surprise: pydicom reads the file instead
        return None
    fields.update(pixel_at=pos, pixel_header=pixel_header, syntax=syntax)
    return fields


def _pixel_data_short(path, syntax, size, at, pixel_header):
    """Why the pixel data of a file is cut short, or None.

    The pixel element's header gives its length; a file shorter than the element's end was
    cut short.  Encapsulated (compressed) data has no length: its items are walked instead.
    """
    import struct

    if syntax in _DEFLATED:
        return None  # positions in a deflated stream say nothing about the file's length
    big = syntax == _EXPLICIT_VR_BIG_ENDIAN
    if len(pixel_header) < 8 or pixel_header[:4] not in (_PIXEL_TAGS_BIG if big
                                                         else _PIXEL_TAGS):
        return f"truncated: the file ends after {size} bytes, before its pixel data"
    # The VR field, not the transfer syntax, decides: some files declare explicit VR and
    # are written implicit (pydicom reads them by looking, too).
    if pixel_header[4:6] in (b"OB", b"OW", b"OD", b"OF", b"OL", b"OV", b"UN"):
        if len(pixel_header) < 12:
            return f"truncated: the file ends after {size} bytes, inside its pixel data header"
        (length,), header = struct.unpack_from(">L" if big else "<L", pixel_header, 8), 12
    else:
        (length,), header = struct.unpack_from(">L" if big else "<L", pixel_header, 4), 8
    if length == 0xFFFFFFFF:
        # Encapsulated (compressed) frames: items of defined length up to a sequence
        # delimiter; walk them from the pixel element on.
        from ._dicom import _Truncated, _walk_items

        with open(path, "rb") as fh:
            data = fh.read()
        try:
            _walk_items(data, at + header, True, ">" if big else "<")
        except _Truncated as exc:
            return (f"truncated: a compressed pixel data item at byte {exc.args[0]} runs past "
                    f"the end of the file ({size} bytes)")
        return None
    end = at + header + length
    if size < end:
        return (f"truncated: the file has {size} bytes, its pixel data needs {end} (the file "
                "was cut short)")
    return None


def _read_mask(path, kind, record) -> dict:
    """The ROIs or segments of a mask object and the series it references."""
    import pydicom

    from ._dicom import check_complete
    from ._volume import CorruptVolumeError

    record["kind"] = kind
    try:
        check_complete(path, kind)
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_MASK_TAGS)
        if kind == "RTSTRUCT":
            series_by_for = {}
            for ref in ds.get("ReferencedFrameOfReferenceSequence", []):
                uids = [str(s.SeriesInstanceUID)
                        for study in ref.get("RTReferencedStudySequence", [])
                        for s in study.get("RTReferencedSeriesSequence", [])]
                series_by_for.setdefault(str(ref.get("FrameOfReferenceUID", "")), []).extend(uids)
            items = [{"number": int(r.ROINumber), "name": str(r.get("ROIName", "")).strip(),
                      "frame_of_reference_uid": str(r.get("ReferencedFrameOfReferenceUID", ""))}
                     for r in ds.get("StructureSetROISequence", [])]
            record.update(items=items, series_by_for=series_by_for)
        else:
            items = [{"number": int(s.SegmentNumber), "name": str(s.get("SegmentLabel", "")).strip(),
                      "frame_of_reference_uid": record["frame_of_reference_uid"]}
                     for s in ds.get("SegmentSequence", [])]
            series = [str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])]
            record.update(items=items,
                          series_by_for={record["frame_of_reference_uid"]: series})
    except CorruptVolumeError as exc:
        return {**record, "kind": "error", "reason": str(exc).split(": ", 1)[-1]}
    except Exception as exc:  # noqa: BLE001  a damaged mask object is an error row, not a crash
        return {**record, "kind": "error",
                "reason": f"unreadable {kind} ({type(exc).__name__}: {exc})"}
    return record


def _assemble(records):
    errors, skipped = [], []
    series_files = collections.defaultdict(list)
    series_damaged = collections.defaultdict(list)
    masks = []
    for r in records:
        kind = r["kind"]
        if kind == "image":
            series_files[r["series_uid"]].append(r)
        elif kind in ("RTSTRUCT", "SEG"):
            masks.append(r)
        elif kind in ("not_dicom", "other"):
            skipped.append({"path": r["path"], "reason": r["reason"]})
        elif r.get("series_uid") and r.get("modality") not in ("RTSTRUCT", "SEG"):
            series_damaged[r["series_uid"]].append(r)  # reported with its series
        else:
            errors.append(_error(r["path"], r, r["reason"]))

    good = {}
    for uid in sorted(set(series_files) | set(series_damaged)):
        files = series_files.get(uid, [])
        damaged = series_damaged.get(uid, [])
        first = (files or damaged)[0]
        folder = os.path.dirname(first["path"])
        if damaged:
            bad = damaged[0]
            more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
            errors.append(_error(folder, first, f"{len(damaged)} of its "
                                 f"{len(files) + len(damaged)} files damaged: "
                                 f"{os.path.basename(bad['path'])}: {bad['reason']}{more}"))
            continue
        problem = _series_problem(files)
        if problem:
            errors.append(_error(folder, first, problem))
            continue
        good[uid] = {"path": folder, "subject": first["subject"], "modality": first["modality"],
                     "series_description": first["series_description"], "series_uid": uid,
                     "n_slices": len(files),
                     "frame_of_reference_uid": first["frame_of_reference_uid"]}
    known = set(series_files) | set(series_damaged)

    paired = collections.defaultdict(list)
    for m in masks:
        for uid, items in _mask_targets(m, good, errors):
            if uid in good:
                paired[uid].append((m, items))
            elif uid in known:
                errors.append(_error(m["path"], m, f"{m['kind']} references series {uid}, "
                                     "which has errors (see its row); not paired"))
            else:
                errors.append(_error(m["path"], m, f"{m['kind']} references series {uid}, "
                                     "which is not in the scanned tree"))

    rows = []
    for uid, series in good.items():
        base = {k: series[k] for k in ROW_COLUMNS if k in series}
        if not paired.get(uid):
            rows.append({**base, "mask": "", "roi": ""})
            continue
        for m, items in paired[uid]:
            names = collections.Counter(it["name"] for it in m["items"])
            for it in items:
                roi = it["name"] if it["name"] and names[it["name"]] == 1 else str(it["number"])
                rows.append({**base, "mask": m["path"], "roi": roi})
    rows = [{k: row[k] for k in ROW_COLUMNS} for row in rows]
    rows.sort(key=lambda row: (row["subject"], row["path"], row["series_uid"], row["mask"],
                               row["roi"]))
    errors.sort(key=lambda e: (e["subject"], e["path"], e["reason"]))
    skipped.sort(key=lambda s: s["path"])
    return rows, errors, skipped


def _error(path, record, reason):
    return {"path": path, "subject": record.get("subject", ""),
            "series_uid": record.get("series_uid", ""), "reason": reason}


def _mask_targets(mask, good, errors):
    """``[(series_uid, items), ...]``: the series a mask's ROIs or segments are drawn on."""
    items = mask["items"]
    what = "ROIs" if mask["kind"] == "RTSTRUCT" else "segments"
    if not items:
        errors.append(_error(mask["path"], mask, f"{mask['kind']} holds no {what}"))
        return []
    by_for = mask["series_by_for"]
    everything = list(dict.fromkeys(u for uids in by_for.values() for u in uids))
    targets = collections.defaultdict(list)
    for it in items:
        uids = by_for.get(it["frame_of_reference_uid"]) or everything
        if not uids:
            for_uid = it["frame_of_reference_uid"] or mask["frame_of_reference_uid"]
            same = [u for u, s in good.items() if for_uid and s["frame_of_reference_uid"] == for_uid]
            if len(same) != 1:
                found = (f"{len(same)} image series share its FrameOfReferenceUID "
                         f"({', '.join(same)})" if same else
                         "no image series has its FrameOfReferenceUID")
                errors.append(_error(mask["path"], mask, f"{mask['kind']} references no image "
                                     f"series and {found}; cannot pair it"))
                return []
            uids = same
        for uid in uids:
            targets[uid].append(it)
    return list(targets.items())


def _series_problem(files):
    """Why a series cannot be read as one volume (as the DICOM reader would refuse it), or
    None.  The tolerances are the reader's."""
    from ._dicom import _ORIENTATION_ATOL, _SPACING_ATOL, _SPACING_RTOL

    folders = sorted({os.path.dirname(f["path"]) for f in files})
    if len(folders) > 1:
        listing = ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else "")
        return (f"the series' {len(files)} files lie in {len(folders)} folders ({listing}); "
                "open_volume reads a series from one folder")
    frames = max(f["frames"] for f in files)
    if frames > 1:
        return (f"multi-frame DICOM (NumberOfFrames={frames}) is not supported by open_volume; "
                "convert it to single-frame files or NIfTI")
    sizes = sorted({(f["rows"], f["columns"]) for f in files})
    if len(sizes) > 1:
        return f"slices differ in size: {', '.join(f'{r}x{c}' for r, c in sizes)}"
    if len(files) == 1:
        return None
    names = [os.path.basename(f["path"]) for f in files]
    missing = [n for n, f in zip(names, files) if not f["orientation"]]
    if missing:
        return f"ImageOrientationPatient missing or invalid in {len(missing)} file(s) ({missing[0]})"
    orientations = np.array([f["orientation"] for f in files], dtype=np.float64)
    if orientations.shape[1] != 6:
        return "ImageOrientationPatient does not have 6 values"
    differ = np.flatnonzero(np.any(np.abs(orientations - orientations[0]) > _ORIENTATION_ATOL,
                                   axis=1))
    if differ.size:
        i = differ[0]
        return (f"mixed orientations: {names[0]} has ImageOrientationPatient "
                f"{orientations[0].round(4).tolist()}, {names[i]} has "
                f"{orientations[i].round(4).tolist()} ({differ.size} of {len(files)} files "
                "differ from the first)")
    missing = [n for n, f in zip(names, files) if not f["position"] or len(f["position"]) != 3]
    if missing:
        return f"ImagePositionPatient missing or invalid in {len(missing)} file(s) ({missing[0]})"
    positions = np.array([f["position"] for f in files], dtype=np.float64)
    normal = np.cross(orientations[0, :3], orientations[0, 3:])
    along = np.sort(positions @ normal)
    steps = np.diff(along)
    spacing = float(np.median(steps))
    tol = max(_SPACING_ATOL, _SPACING_RTOL * abs(spacing))
    dup = np.flatnonzero(steps <= tol)
    if dup.size:
        return (f"{dup.size} duplicated slice position(s), first at {along[dup[0]]:.4g} mm "
                f"along the slice normal, in {len(files)} files")
    bad = np.flatnonzero(np.abs(steps - spacing) > tol)
    if bad.size:
        ratios = steps[bad] / spacing
        if np.allclose(ratios, np.round(ratios), atol=_SPACING_RTOL) and np.all(ratios > 1.5):
            n_missing = int(np.sum(np.round(ratios) - 1))
            return (f"{n_missing} missing slice(s): a gap of {steps[bad[0]]:.4g} mm after "
                    f"position {along[bad[0]]:.4g} mm where the spacing is {spacing:.4g} mm")
        return (f"unequal slice spacing: steps from {steps.min():.4g} to {steps.max():.4g} mm "
                f"(median {spacing:.4g} mm)")
    return None
