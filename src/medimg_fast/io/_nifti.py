"""NIfTI-1/2 (``.nii``, ``.nii.gz``) through nibabel, read lazily from ``dataobj``."""

from __future__ import annotations

import numpy as np

from ._volume import CorruptVolumeError, Volume, lazy_from_file, reorient_canonical

# RAS (NIfTI) to LPS (DICOM): negate x and y.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
# Uncompressed files are memory-mapped, so slabs along the slowest on-disk axis (k) are cheap;
# gzip streams cannot seek, so a compressed volume is one chunk per time point.
_TARGET_CHUNK_BYTES = 64 * 2**20


def _load_image(path):
    """nibabel's image of ``path``; a ``.nii.gz`` is decompressed whole by ISA-L
    (:mod:`isal.igzip`, about 4x faster than the :mod:`gzip` stream nibabel reads: 24
    against 87-120 ms for a 2.4M-voxel CT) and parsed from memory by nibabel, so the
    voxel values and their scaling are nibabel's either way."""
    import nibabel as nib

    if not str(path).endswith(".gz"):
        return nib.load(path)
    try:
        from isal import igzip
    except ImportError:  # the isal wheel is a dependency; a source install may lack it
        return nib.load(path)
    with open(path, "rb") as fh:
        raw = igzip.decompress(fh.read())
    # sizeof_hdr is 348 for NIfTI-1 and 540 for NIfTI-2, in either byte order
    first = int.from_bytes(raw[:4], "little")
    if first in (540, int.from_bytes((540).to_bytes(4, "little"), "big")):
        return nib.Nifti2Image.from_bytes(raw)
    return nib.Nifti1Image.from_bytes(raw)


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
    import os

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
    slope, inter = img.dataobj.slope, img.dataobj.inter
    raw_dtype = img.get_data_dtype().newbyteorder("=")
    scaled = not (
        (slope is None or np.isnan(slope) or slope == 1)
        and (inter is None or np.isnan(inter) or inter == 0)
    )
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
