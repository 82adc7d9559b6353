"""NIfTI-1/2 (``.nii``, ``.nii.gz``) through nibabel, read lazily from ``dataobj``."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ._volume import (
    CorruptVolumeError,
    Volume,
    canonical_axes,
    lazy_from_file,
    reorient_canonical,
)

# RAS (NIfTI) to LPS (DICOM): negate x and y.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
# Uncompressed files are memory-mapped, so slabs along the slowest on-disk axis (k) are cheap;
# gzip streams cannot seek, so a compressed volume is one chunk per time point.
_TARGET_CHUNK_BYTES = 64 * 2**20


def _load_image(path):
    """nibabel's image of ``path`` (see :func:`_load_image_raw`)."""
    return _load_image_raw(path)[0]


def _load_image_raw(path):
    """``(image, raw)``: nibabel's image of ``path`` and, for a ``.nii.gz``, the whole
    inflated stream (None for an uncompressed file, which nibabel memory-maps).  The
    stream is decompressed by ISA-L (:mod:`isal.igzip`, about 4x faster than the
    :mod:`gzip` stream nibabel reads: 24 against 87-120 ms for a 2.4M-voxel CT) and
    parsed from memory by nibabel, so the voxel values and their scaling are nibabel's
    either way."""
    import nibabel as nib

    if not str(path).endswith(".gz"):
        return nib.load(path), None
    try:
        from isal import igzip
    except ImportError:  # the isal wheel is a dependency; a source install may lack it
        return nib.load(path), None
    with open(path, "rb") as fh:
        raw = igzip.decompress(fh.read())
    return _image_of(raw), raw


def _nifti_version(head) -> int | None:
    """1 or 2 from the first bytes of a NIfTI header (``sizeof_hdr`` is 348 for NIfTI-1
    and 540 for NIfTI-2, in either byte order), None for neither."""
    sizes = {int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")}
    return 2 if 540 in sizes else 1 if 348 in sizes else None


def _image_of(raw):
    """The NIfTI-1 or NIfTI-2 image held in the bytes ``raw``."""
    import nibabel as nib

    if _nifti_version(raw) == 2:
        return nib.Nifti2Image.from_bytes(raw)
    return nib.Nifti1Image.from_bytes(raw)


def _is_scaled(slope, inter) -> bool:
    """Whether nibabel scales the stored voxels (a NaN or unset slope or intercept is
    no scaling)."""
    return not ((slope is None or np.isnan(slope) or slope == 1)
                and (inter is None or np.isnan(inter) or inter == 0))


def _read_nifti_region(path, index):
    try:
        proxy = _load_image(path).dataobj
        if all(isinstance(i, slice) and i == slice(None) for i in index):
            # the whole array: nibabel's slicing would copy it once more
            return np.asanyarray(proxy)
        return np.asanyarray(proxy[index])
    except (OSError, EOFError, ValueError) as exc:
        raise CorruptVolumeError(f"{path}: NIfTI voxel data unreadable ({exc})") from exc


def _read_nifti_reoriented(path, shape, dtype, spacing, origin, direction):
    """The whole 3-D volume of ``path``, reoriented by :func:`reorient_canonical` with
    the file's geometry and made C-contiguous (the one task of a compressed volume)."""
    data = np.asarray(_read_nifti_region(path, (slice(None),) * len(shape)), dtype=dtype)
    data = data.reshape(shape + (1,) * (3 - len(shape)))
    data = reorient_canonical(data, spacing, origin, direction)[0]
    return np.ascontiguousarray(data)


def _whole_volume_array(path, stored_shape, dtype, spacing, origin, direction):
    """A one-chunk Dask array of the reoriented volume, read, reoriented and made
    contiguous by one task: a gzip stream is decompressed whole anyway, and one task
    instead of a read, a reshape, flips and a transpose keeps Dask's graph overhead
    (graph building, optimisation, scheduling) to a few hundred microseconds."""
    import dask.array as da
    from dask.base import tokenize

    shape3 = tuple(stored_shape) + (1,) * (3 - len(stored_shape))
    # the reoriented shape, from a zero-strided stand-in of the voxels
    probe = np.broadcast_to(np.zeros((), dtype), shape3)
    out_shape = reorient_canonical(probe, spacing, origin, direction)[0].shape
    st = os.stat(path)
    token = tokenize(str(path), st.st_size, st.st_mtime_ns, tuple(stored_shape),
                     str(np.dtype(dtype)), spacing.tolist(), origin.tolist(),
                     direction.tolist())
    name = f"nifti-{token}"
    task = (_read_nifti_reoriented, str(path), tuple(stored_shape), np.dtype(dtype),
            spacing, origin, direction)
    return da.Array({(name, 0, 0, 0): task}, name, chunks=tuple((n,) for n in out_shape),
                    meta=np.empty((0, 0, 0), dtype=dtype))


def _geometry(img, path):
    """``(dtype, raw_dtype, slope, inter, affine, spacing, direction, origin)`` of a
    nibabel NIfTI image: the voxel dtype after scaling, the stored one, the scaling,
    the affine in mm and the LPS geometry of the stored array axes."""
    slope, inter = img.dataobj.slope, img.dataobj.inter
    raw_dtype = img.get_data_dtype().newbyteorder("=")
    scaled = _is_scaled(slope, inter)
    dtype = (
        (np.float64 if raw_dtype == np.float64 else np.float32) if scaled else raw_dtype
    )
    dtype = np.dtype(dtype)

    affine = np.asarray(img.affine, dtype=np.float64)
    header = img.header
    xyz_unit = header.get_xyzt_units()[0] if hasattr(header, "get_xyzt_units") else "unknown"
    # An unset unit ("unknown") is taken as mm, as nibabel and most tools do.
    affine[:3, :] *= {"meter": 1000.0, "micron": 1e-3}.get(xyz_unit, 1.0)
    lin = _RAS_TO_LPS @ affine[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    if np.any(spacing == 0):
        raise CorruptVolumeError(f"{path}: NIfTI affine has a zero-length axis: {affine.tolist()}")
    direction = lin / spacing[None, :]
    origin = _RAS_TO_LPS @ affine[:3, 3]
    return dtype, raw_dtype, slope, inter, affine, spacing, direction, origin


def read_nifti(path) -> Volume:
    import nibabel as nib

    path = str(path)
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several unrelated types for a bad header
        raise CorruptVolumeError(f"{path}: not a readable NIfTI file ({exc})") from exc
    shape = img.shape
    if len(shape) < 2 or len(shape) > 4:
        raise CorruptVolumeError(
            f"{path}: NIfTI data of {len(shape)} dimensions {shape} is not supported "
            "(2-D, 3-D or 4-D expected)"
        )
    shape = tuple(shape) + (1,) * (3 - len(shape)) if len(shape) < 3 else tuple(shape)
    dtype, raw_dtype, slope, inter, affine, spacing, direction, origin = _geometry(img, path)
    header = img.header

    if path.endswith(".gz") and len(img.shape) <= 3:
        data = _whole_volume_array(path, img.shape, dtype, spacing, origin, direction)
        probe = np.broadcast_to(np.zeros((), dtype), shape)
        _, spacing, origin, direction = reorient_canonical(probe, spacing, origin, direction)
    else:
        if path.endswith(".gz"):
            chunks = shape[:3] + (1,) * (len(shape) - 3)
        else:
            slab = max(1, _TARGET_CHUNK_BYTES // max(1, shape[0] * shape[1] * dtype.itemsize))
            chunks = (shape[0], shape[1], min(shape[2], slab)) + (1,) * (len(shape) - 3)
        data = lazy_from_file(path, img.shape, dtype, _read_nifti_region,
                              chunks[: len(img.shape)], "nifti")
        if data.ndim < 3:
            data = data.reshape(shape)
        if data.ndim == 4:
            data = data.transpose(3, 0, 1, 2)
        data, spacing, origin, direction = reorient_canonical(data, spacing, origin,
                                                              direction)

    metadata = {
        "format": "nifti",
        "stored_shape": tuple(int(s) for s in img.shape),
        "stored_dtype": str(raw_dtype),
        "scl_slope": None if slope is None else float(slope),
        "scl_inter": None if inter is None else float(inter),
        "orientation_codes": "".join(nib.aff2axcodes(affine)),
        "xyzt_units": header.get_xyzt_units() if hasattr(header, "get_xyzt_units") else None,
    }
    if data.ndim == 4:
        metadata["time_axis"] = 0
        metadata["time_step"] = float(header.get_zooms()[3])
    return Volume(data=data, spacing=spacing, origin=origin, direction=direction,
                  modality=None, source=path, metadata=metadata)


# -- an image on the bounding box of a mask --------------------------------------------
@dataclass
class RoiRegion:
    """An image and its ROI on the ROI's bounding box (plus a margin), as
    :func:`read_nifti` and ``mask > 0`` would give them after cropping.

    ``image`` and ``mask`` are C-contiguous ``(z, y, x)`` arrays (the canonical
    orientation of :func:`read_nifti`, the image in its dtype, the mask bool); ``origin``
    is the box's first voxel index in the whole canonical volume of ``shape``;
    ``spacing`` is the image's (canonical) voxel size in mm; ``early`` what the
    ``on_mask`` callable of :func:`read_nifti_roi` returned (None without one);
    ``margin`` the voxels the box was widened by on each side (before clipping)."""

    image: np.ndarray
    mask: np.ndarray
    origin: tuple
    shape: tuple
    spacing: tuple
    early: object = None
    margin: int = 0


def _nifti_prefix(path, stop_fn, inflater=None):
    """``(image, raw)``: a nibabel image of ``path`` and its inflated bytes (None for a
    memory-mapped file).  With ``inflater`` (a :class:`_PrefixInflater` already inflating
    ``path``'s stream) the bytes reach at least ``stop_fn(header_bytes)`` (None: all of
    them): gzip cannot seek, but it can stop, so the slabs past the last one asked for
    are never decompressed.  Without one (an uncompressed file, or no ISA-L) the file is
    read as :func:`_load_image_raw` reads it."""
    if inflater is not None:
        raw = inflater.result(stop_fn)
        return _image_of(raw), raw
    return _load_image_raw(path)


#: Bytes of the stream that hold any NIfTI header: NIfTI-2's 540 and the 4 bytes of
#: the extension flag (what a stop function is given).
_HEADER_BYTES = 544


class _PrefixInflater:
    """A gzip stream inflated by ISA-L on a worker thread while the caller works out how
    much of it is needed: :meth:`want` tells it where to stop (``stop_fn(header)``;
    None: the whole stream), :meth:`result` then gives the bytes up to there, as
    :func:`_nifti_prefix` would.  Reading the mask of a pair overlaps the image's
    inflation this way.

    The worker inflates into buffers of doubling size and, once the stop is known, in
    one call up to it: ISA-L's reader releases the GIL for each call, and the worker
    needs the GIL back only between calls (inflating in steps of 64 KiB of input, each
    step waited up to the interpreter's switch interval for the GIL while the caller
    ran Python code: the image of a CT took twice as long to reach its box).
    """

    _FIRST_STEP = 1 << 19  # bytes inflated before the first look at the stop

    def __init__(self, packed):
        import threading

        self._packed = packed
        self._stop_fn = None
        self._closed = False
        self._asked = threading.Event()
        self._raw = None
        self._error = None
        self._thread = threading.Thread(target=self._run, name="medimg-inflate",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def of(cls, path):
        """The inflater of ``path``'s stream, or None (not gzip, or an ISA-L without its
        GIL-free reader)."""
        if not str(path).endswith(".gz"):
            return None
        try:
            from isal import isal_zlib
        except ImportError:
            return None
        if not hasattr(isal_zlib, "_GzipReader"):
            return None
        import mmap

        # mapped, not read: the worker starts on the page cache at once (reading the
        # 2.4 MB stream of a CT first took 0.3-1.8 ms of the critical path)
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return None  # nothing to map: the whole read reports the empty file
            return cls(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))

    def _run(self):
        from isal.isal_zlib import _GzipReader

        view = memoryview(self._packed)  # a buffer: the reader inflates it without Python
        reader = None
        try:
            reader = _GzipReader(view)
            parts, n, step, eof, head = [], 0, self._FIRST_STEP, False, b""
            while True:
                if self._asked.is_set() and (n >= _HEADER_BYTES or eof):
                    if self._closed:
                        return
                    stop = self._stop_fn(head) if self._stop_fn is not None else None
                    if stop is None:
                        parts.append(reader.readall())  # the whole stream
                    elif stop > n and not eof:
                        part = _fill(reader, stop - n)
                        n += len(part)
                        parts.append(part)
                    if stop is None or n >= stop:
                        self._raw = b"".join(parts)
                    return  # (a stream shorter than the stop: result() reports it)
                if eof:
                    self._asked.wait()  # all inflated: the stop decides what is kept
                    continue
                try:
                    part = _fill(reader, step)
                    eof = len(part) < step
                except EOFError:
                    # a stream cut short (its end may still hold the box): what it holds,
                    # inflated again without the reader, which lost this step's bytes
                    from isal import isal_zlib

                    part = isal_zlib.decompressobj(31).decompress(view)[n:]
                    eof = True
                n += len(part)
                parts.append(part)
                if len(head) < _HEADER_BYTES:
                    head = (head + part)[:_HEADER_BYTES]
                step *= 2
        except Exception as exc:  # noqa: BLE001 (raised in the caller's thread by result())
            self._error = exc.with_traceback(None)  # (its frames would hold the reader)
        finally:
            del reader  # it holds the map's buffer: the map closes once both are gone
            view.release()

    def want(self, stop_fn):
        """Inflate up to ``stop_fn(header)`` (None: the whole stream) and no further;
        the first stop given is the one kept."""
        if not self._asked.is_set():
            self._stop_fn = stop_fn
            self._asked.set()

    def close(self):
        """Stop inflating (the stream is not needed after all)."""
        self._closed = True
        self._asked.set()

    def result(self, stop_fn):
        self.want(stop_fn)
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            if self._raw is None:  # a stream shorter than its header said: read whole
                from isal import igzip

                self._raw = igzip.decompress(self._packed[:])  # bytes, not the map
        finally:
            self._packed.close()
        return self._raw


def _fill(reader, size):
    """Up to ``size`` inflated bytes from ``reader`` (fewer only at the stream's end)."""
    buf = bytearray(size)
    with memoryview(buf) as view:
        got = 0
        while got < size:
            with view[got:] as rest:
                n = reader.readinto(rest)
            if n == 0:
                break
            got += n
    if got < size:
        del buf[got:]
    return buf


def _stored_voxels(img, raw, index, dtype):
    """The voxels ``index`` of the stored array of ``img`` in ``dtype``, as
    :func:`read_nifti` reads them: through nibabel's proxy (its scaling), or for
    unscaled data straight from the inflated bytes ``raw`` (the same values without
    nibabel's per-slab reads)."""
    unscaled = not _is_scaled(img.dataobj.slope, img.dataobj.inter)
    offset = int(img.dataobj.offset)
    shape = tuple(int(n) for n in img.shape)
    k_stop = index[2].stop
    count = shape[0] * shape[1] * k_stop
    stored = img.get_data_dtype()
    if raw is not None and unscaled and offset + count * stored.itemsize <= len(raw):
        voxels = np.frombuffer(raw, dtype=stored, count=count, offset=offset)
        return np.asarray(voxels.reshape(shape[:2] + (k_stop,), order="F")[index], dtype=dtype)
    return np.asarray(np.asanyarray(img.dataobj[index]), dtype=dtype)


def _stored_bbox(roi, margin):
    """Per stored axis ``(start, stop)`` of the True voxels of the Fortran-ordered 3-D
    ``roi`` widened by ``margin`` (clipped to the array); None for an empty ``roi``."""
    ni, nj, nk = roi.shape
    # the slabs first (one pass over the contiguous slabs), then rows and columns on
    # the slabs that hold the ROI
    hit_k = np.flatnonzero(roi.reshape((ni * nj, nk), order="F").any(axis=0))
    if hit_k.size == 0:
        return None
    plane = roi[:, :, hit_k[0]:hit_k[-1] + 1].any(axis=2)
    hit_i = np.flatnonzero(plane.any(axis=1))
    hit_j = np.flatnonzero(plane.any(axis=0))
    return [(max(0, int(h[0]) - margin), min(n, int(h[-1]) + 1 + margin))
            for h, n in zip((hit_i, hit_j, hit_k), roi.shape)]


def _data_end(stored_shape, k_stop):
    """``stop_fn`` for :func:`_nifti_prefix`: the byte after the last voxel of slab
    ``k_stop - 1`` of a 3-D volume of ``stored_shape`` (None when the header is not one
    nibabel parses, or not of that shape)."""
    def stop(head):
        import io

        import nibabel as nib

        version = _nifti_version(head)
        if version is None:
            return None
        hdr_cls = nib.Nifti2Header if version == 2 else nib.Nifti1Header
        try:
            hdr = hdr_cls.from_fileobj(io.BytesIO(head), check=False)
        except Exception:  # noqa: BLE001 (nibabel raises unrelated types; read it whole)
            return None
        if tuple(int(n) for n in hdr.get_data_shape()) != tuple(stored_shape):
            return None
        offset = int(hdr.get_data_offset())
        if offset < hdr_cls.sizeof_hdr + 4:  # an odd header: the whole stream
            return None
        slab = int(stored_shape[0]) * int(stored_shape[1]) * hdr.get_data_dtype().itemsize
        return offset + int(k_stop) * slab
    return stop


def _read_mask(mask_path, nonzero=False):
    """``(mask > 0 on the stored axes, spacing, direction)`` of a 3-D mask file (``mask
    != 0`` when ``nonzero``), or ``(None, None, None)`` for another number of
    dimensions."""
    try:
        mask_img, mask_raw = _nifti_prefix(mask_path, None)
    except Exception as exc:  # nibabel raises several unrelated types for a bad header
        raise CorruptVolumeError(f"{mask_path}: not a readable NIfTI file ({exc})") from exc
    stored_shape = tuple(int(n) for n in mask_img.shape)
    if len(stored_shape) != 3:
        return None, None, None
    m_dtype, _, _, _, _, m_spacing, m_direction, _ = _geometry(mask_img, mask_path)
    whole = tuple(slice(0, n) for n in stored_shape)
    try:
        voxels = _stored_voxels(mask_img, mask_raw, whole, m_dtype)
        mask_stored = voxels != 0 if nonzero else voxels > 0
    except (OSError, EOFError, ValueError) as exc:
        raise CorruptVolumeError(f"{mask_path}: NIfTI voxel data unreadable ({exc})") from exc
    if not mask_stored.any():
        raise ValueError(f"the ROI is empty: {mask_path} has no voxel "
                         f"{'!= 0' if nonzero else '> 0'}")
    return mask_stored, m_spacing, m_direction


def _canonical_box(stored, box, stored_shape, spacing, axes):
    """``(array, origin, shape, spacing)``: the stored-axes crop ``stored`` of the
    stored box ``box`` in the canonical orientation ``axes`` (of
    :func:`canonical_axes`; C-contiguous), the box's first canonical voxel index, the
    canonical volume shape and spacing."""
    flipped, new_order = axes
    flip = tuple(slice(None, None, -1) if f else slice(None) for f in flipped)
    array = np.ascontiguousarray(stored[flip].transpose(new_order))
    origin = tuple(stored_shape[a] - box[a][1] if flipped[a] else box[a][0]
                   for a in new_order)
    shape = tuple(stored_shape[a] for a in new_order)
    return array, origin, shape, tuple(np.asarray(spacing, np.float64)[new_order])


def read_nifti_roi(image_path, mask_path, *, margin=0, margin_mm=0.0, on_mask=None,
                   nonzero=False) -> RoiRegion | None:
    """The image of ``image_path`` and the ROI ``mask > 0`` of ``mask_path`` on the
    ROI's bounding box widened by ``margin`` voxels, reading no more of the image than
    that box needs.

    ``margin_mm`` widens it by at least that many millimetres along every axis at the
    mask file's voxel size (``ceil(margin_mm / smallest spacing)`` voxels, when more
    than ``margin``); the region's ``margin`` says how many voxels were used.
    ``nonzero``: the ROI is ``mask != 0`` (as :func:`medimg_fast.io.open_mask` reads an
    image mask) instead of ``mask > 0``.

    ``on_mask(mask, origin, shape, spacing)``, when given, is called with the region's
    mask, origin, volume shape and spacing as the mask file gives them, while the image
    is still being inflated on another thread (work that needs the mask alone runs
    then); its result is the region's ``early``.  The image's spacing may differ from
    the mask's: the caller compares them.

    The values are those of :func:`read_nifti` (nibabel's scaling, the same dtype and
    canonical orientation) cropped to the box: the mask is read whole, its box found on
    the stored axes, and a compressed image is inflated only up to the box's last slab.
    Returns None (the caller reads both volumes whole) when the pair is not two 3-D
    volumes of one stored shape and orientation.

    Raises
    ------
    ValueError
        When the mask selects no voxel.
    CorruptVolumeError
        An unreadable file.
    """
    image_path, mask_path = str(image_path), str(mask_path)
    if margin < 0:
        raise ValueError(f"`margin` must be non-negative, got {margin!r}")
    if not margin_mm >= 0:
        raise ValueError(f"`margin_mm` must be non-negative, got {margin_mm!r}")
    # the image's stream starts inflating now, on another thread, while the mask is read
    # and its box found
    try:
        inflater = _PrefixInflater.of(image_path)
    except OSError as exc:
        raise CorruptVolumeError(f"{image_path}: not a readable NIfTI file ({exc})") from exc
    try:  # everything that needs the mask alone, while the image inflates
        mask_stored, m_spacing, m_direction = _read_mask(mask_path, nonzero)
        if mask_stored is None:  # not a 3-D mask: the caller reads both volumes whole
            if inflater is not None:
                inflater.close()
            return None
        if margin_mm > 0:
            margin = max(int(margin), math.ceil(margin_mm / float(np.min(m_spacing))))
        box = _stored_bbox(mask_stored, int(margin))
        stored_shape = mask_stored.shape
        index = tuple(slice(a, b) for a, b in box)
        mask_axes = canonical_axes(m_spacing, m_direction)
        image_end = _data_end(stored_shape, box[2][1])
        if inflater is not None:
            inflater.want(image_end)  # no further than the box's last slab
        roi, r_origin, r_shape, r_spacing = _canonical_box(mask_stored[index], box,
                                                           stored_shape, m_spacing, mask_axes)
        early = None if on_mask is None else on_mask(roi, r_origin, r_shape, r_spacing)
    except BaseException:
        if inflater is not None:
            inflater.close()
        raise
    try:
        img, img_raw = _nifti_prefix(image_path, image_end, inflater)
    except Exception as exc:  # nibabel raises several unrelated types for a bad header
        raise CorruptVolumeError(f"{image_path}: not a readable NIfTI file ({exc})") from exc
    if tuple(int(n) for n in img.shape) != stored_shape:
        return None
    dtype, _, _, _, _, spacing, direction, _ = _geometry(img, image_path)
    axes = canonical_axes(spacing, direction)
    if axes != mask_axes:
        return None
    try:
        image_stored = _stored_voxels(img, img_raw, index, dtype)
    except (OSError, EOFError, ValueError) as exc:
        raise CorruptVolumeError(f"{image_path}: NIfTI voxel data unreadable ({exc})") from exc
    image, c_origin, c_shape, c_spacing = _canonical_box(image_stored, box, stored_shape,
                                                         spacing, axes)
    return RoiRegion(image=image, mask=roi, origin=c_origin, shape=c_shape, spacing=c_spacing,
                     early=early, margin=int(margin))
