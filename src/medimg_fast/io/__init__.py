"""Lazy readers for NIfTI, DICOM, Zarr/OME-Zarr, TIFF and ``.npy``, an atomic Zarr writer, and
masks from any of these or from RTSTRUCT and DICOM-SEG, with a check that a mask fits its image;
PET SUV conversion (``open_volume(..., units="suv")``) and :func:`scan_dicom`, which turns a DICOM
tree into a manifest of image series paired with their masks.

Every reader returns a :class:`Volume` whose ``data`` is a Dask array in ``(z, y, x)`` order,
reoriented to the closest canonical orientation in LPS patient coordinates (see
:mod:`medimg_fast.io._volume` for the full convention).  Nothing is read until computed.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np

from ._geometry import check_same_grid
from ._mask import open_mask
from ._rtstruct import list_rois, read_rtstruct_mask
from ._scan import ScanResult, scan_dicom
from ._seg import list_segments, read_seg_mask
from ._suv import SuvError
from ._volume import (
    CorruptVolumeError,
    DicomSeriesError,
    GeometryMismatchError,
    MaskReadError,
    NotAnImageError,
    ReferenceMismatchError,
    RoiNotFoundError,
    UnsupportedFormatError,
    Volume,
    VolumeNotFoundError,
    VolumeReadError,
)

__all__ = [
    "CorruptVolumeError",
    "DicomSeriesError",
    "GeometryMismatchError",
    "MaskReadError",
    "NotAnImageError",
    "ReferenceMismatchError",
    "RoiNotFoundError",
    "ScanResult",
    "SuvError",
    "UnsupportedFormatError",
    "Volume",
    "VolumeNotFoundError",
    "VolumeReadError",
    "check_same_grid",
    "detect_format",
    "list_rois",
    "list_segments",
    "open_mask",
    "open_volume",
    "read_rtstruct_mask",
    "read_seg_mask",
    "save_volume",
    "scan_dicom",
]

_FORMATS = ("nifti", "dicom", "zarr", "tiff", "npy")
_UNITS = (None, "stored", "suv")


def detect_format(path) -> str:
    """The format name (``nifti``, ``dicom``, ``zarr``, ``tiff`` or ``npy``) of `path`.

    Raises
    ------
    VolumeNotFoundError
        If `path` does not exist.
    UnsupportedFormatError
        If `path` is none of the supported formats.
    """
    from ._dicom import is_dicom_file, looks_like_dicom_folder
    from ._zarr import is_zarr_store

    p = Path(path)
    if not p.exists():
        raise VolumeNotFoundError(f"no such file or folder: {str(p)!r}")
    name = p.name.lower()
    if p.is_dir():
        if is_zarr_store(p):
            return "zarr"
        if looks_like_dicom_folder(p):
            return "dicom"
        raise UnsupportedFormatError(
            f"{str(p)!r} is a folder that is neither a Zarr store nor a DICOM series folder"
        )
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".dcm") or is_dicom_file(p):
        return "dicom"
    raise UnsupportedFormatError(
        f"{str(p)!r}: unsupported format (expected .nii, .nii.gz, .tif, .tiff, .npy, a DICOM "
        "file or series folder, or a Zarr store)"
    )


def open_volume(path, *, format=None, series_uid=None, volume_index=None,
                chunks=None, units=None) -> Volume:
    """Open an image volume lazily.

    Parameters
    ----------
    path : str or os.PathLike
        A NIfTI file (``.nii``/``.nii.gz``), a DICOM file or a folder holding one DICOM series
        (not searched recursively), a Zarr v2/v3 array or OME-Zarr image, a TIFF stack or a
        ``.npy`` file.
    format : {None, "nifti", "dicom", "zarr", "tiff", "npy"}
        Skip format detection.
    series_uid : str, optional
        For a DICOM folder holding several series, the SeriesInstanceUID to read.
    volume_index : int, optional
        For a 4-D input (``(t, z, y, x)``, e.g. fMRI NIfTI), select one 3-D volume.  By default
        the 4-D array is returned; 3-D pipelines refuse it with a clear error.
    chunks : tuple of int, optional
        Chunk shape of ``data`` (of the stored array, before ``volume_index``).  By default
        each reader picks one: for Zarr, whole multiples of the store's chunks of about
        8 MiB (a store chunk is never split, so never decoded twice).
    units : {None, "stored", "suv"}
        ``None``/``"stored"``: the stored values (after DICOM rescale slope/intercept).
        ``"suv"``: a PET DICOM series converted from Bq/mL to SUV body weight, float32 (see
        :func:`medimg_fast.io._suv.to_suv` for the formula and the tags it reads);
        ``metadata["suv"]`` records the dose, weight and decay time used.

    Returns
    -------
    Volume
        ``data`` is a Dask array in ``(z, y, x)`` order (``(t, z, y, x)`` for 4-D inputs);
        2-D images become one-slice volumes ``(1, y, x)``.  ``spacing`` is in mm, ``(z, y, x)``.
        TIFF without ImageJ units and ``.npy`` files report spacing 1.0 and
        ``metadata["spacing_known"] = False``.

    Raises
    ------
    VolumeNotFoundError
        (a FileNotFoundError) if `path` does not exist.
    UnsupportedFormatError, DicomSeriesError, CorruptVolumeError
        (all ValueError) for an unknown format, an inconsistent DICOM series or unreadable
        data.
    NotAnImageError
        (a DicomSeriesError) for an RTSTRUCT or DICOM-SEG (or a folder holding only such
        objects): read those with :func:`open_mask`, :func:`read_rtstruct_mask` or
        :func:`read_seg_mask`.  Pixel data is decoded lazily, so a truncated file may raise
        :class:`CorruptVolumeError` only when ``data`` is computed.
    SuvError
        (a VolumeReadError) for ``units="suv"`` on an input that is not PET DICOM, or whose
        header lacks a value SUV needs (the message names the tag).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "v.npy")
    >>> np.save(path, np.zeros((4, 5, 6), np.int16))
    >>> open_volume(path).data.shape
    (4, 5, 6)
    """
    if format is None:
        format = detect_format(path)
    elif format not in _FORMATS:
        raise ValueError(f"`format` must be one of {_FORMATS} or None, got {format!r}")
    elif not Path(path).exists():
        raise VolumeNotFoundError(f"no such file or folder: {str(path)!r}")
    if units not in _UNITS:
        raise ValueError(f"`units` must be one of {_UNITS}, got {units!r}")
    if units == "suv" and format != "dicom":
        raise SuvError(f"{str(path)!r}: units='suv' needs a PET DICOM series (the dose, times "
                       f"and weight are in its header), got a {format} input")
    if series_uid is not None and format != "dicom":
        raise ValueError(f"`series_uid` applies to DICOM only, got it for a {format} input")

    if format == "nifti":
        from ._nifti import read_nifti
        volume = read_nifti(path)
    elif format == "dicom":
        from ._dicom import read_dicom
        volume = read_dicom(path, series_uid=series_uid)
    elif format == "zarr":
        from ._zarr import read_zarr
        volume = read_zarr(path, chunks=chunks)
    elif format == "tiff":
        from ._tiff import read_tiff
        volume = read_tiff(path)
    else:
        from ._tiff import read_npy
        volume = read_npy(path)

    if units == "suv":
        from ._suv import to_suv
        volume = to_suv(volume)
    if chunks is not None and format != "zarr":
        volume.data = volume.data.rechunk(chunks)
    if volume.data.ndim not in (3, 4):
        raise VolumeReadError(
            f"{str(path)!r}: data of shape {volume.shape} is not a 3-D (z, y, x) or 4-D "
            "(t, z, y, x) volume"
        )
    if volume_index is not None:
        _select_volume(volume, volume_index, source=path)
    return volume


def _select_volume(volume: Volume, volume_index, *, source=None) -> Volume:
    """Keep one 3-D volume of a 4-D ``(t, z, y, x)`` :class:`Volume`, in place; returns it."""
    if isinstance(volume_index, bool) or not isinstance(volume_index, numbers.Integral):
        raise TypeError(f"`volume_index` must be an int or None, got {volume_index!r}")
    if volume.data.ndim != 4:
        raise ValueError(
            f"`volume_index` selects a volume of a 4-D input, but "
            f"{str(source or volume.source)!r} is 3-D with shape {volume.shape}"
        )
    n = volume.shape[0]
    if not -n <= volume_index < n:
        raise ValueError(f"`volume_index` must be in [{-n}, {n - 1}] for {n} volumes, "
                         f"got {volume_index}")
    volume.data = volume.data[volume_index]
    volume.metadata["volume_index"] = int(volume_index) % n
    volume.metadata.pop("time_axis", None)
    return volume


def save_volume(volume_or_array, path, *, spacing=None, origin=None, direction=None,
                chunks=None, overwrite=False, compression_level=3, scheduler=None,
                codec="lz4"):
    """Write a volume or array as an OME-Zarr v0.5 image (Zarr v3, compressed), atomically.

    Parameters
    ----------
    volume_or_array : Volume, numpy.ndarray or dask.array.Array
        3-D ``(z, y, x)`` or 4-D ``(t, z, y, x)`` voxels.  A Dask array is written chunk by
        chunk, so it never has to fit in memory.
    path : str or os.PathLike
        The store to create (conventionally ending in ``.zarr``).
    spacing : sequence of 3 floats, optional
        Voxel size in mm, ``(z, y, x)``.  Taken from the Volume when one is given, else 1.0.
    origin, direction : optional
        LPS geometry (see :class:`Volume`); default from the Volume, else zero and identity.
    chunks : tuple of int, optional
        Chunk shape of the store; default: slabs of whole planes of about 2 MiB (for Dask
        input, aligned with its chunks: divisors of large blocks, whole small ones).
    overwrite : bool
        Replace an existing store (the old one is removed only after the new one is in place).
    compression_level : int
        1 (fast) to 22 (small): Blosc's clevel (at most 9) for ``"lz4"``, the Zstandard
        level for ``"zstd"``.
    scheduler : optional
        Dask scheduler for writing Dask input (default: the current default scheduler).
    codec : {"lz4", "zstd"}
        ``"lz4"``: Blosc LZ4 with byte shuffle (the default: as small as zstd on CT data,
        several times faster; ``benchmarks/bench_out_of_core.py codecs``); ``"zstd"``:
        Zstandard without shuffle.

    Returns
    -------
    pathlib.Path
        The written store.

    Notes
    -----
    The store is built in a hidden folder beside `path` (``.<name>.partial-<random>``) and
    renamed to `path` only when complete, so a run killed mid-write never leaves a partial
    store at `path`.  Spacing is recorded as the OME-Zarr ``scale`` transform; the LPS origin
    and direction (which OME-Zarr cannot express) go in the group attribute ``medimg_fast``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "v.zarr")
    >>> _ = save_volume(np.ones((2, 3, 4), np.float32), path, spacing=(2.5, 0.5, 0.5))
    >>> open_volume(path).spacing
    (2.5, 0.5, 0.5)
    """
    import dask.array as da

    from ._zarr import write_ome_zarr

    if isinstance(volume_or_array, Volume):
        vol = volume_or_array
        data = vol.data
        spacing = vol.spacing if spacing is None else spacing
        origin = vol.origin if origin is None else origin
        direction = vol.direction if direction is None else direction
        modality, source = vol.modality, vol.source
    elif isinstance(volume_or_array, (np.ndarray, da.Array)):
        data = volume_or_array
        modality, source = None, ""
    else:
        raise TypeError(
            "`volume_or_array` must be a Volume, a NumPy array or a Dask array, got "
            f"{type(volume_or_array).__name__}"
        )
    if data.ndim not in (3, 4):
        raise ValueError(f"`volume_or_array` must be 3-D (z, y, x) or 4-D (t, z, y, x), "
                         f"got shape {tuple(data.shape)}")
    if np.dtype(data.dtype).kind not in "buif":
        raise TypeError(f"`volume_or_array` must have a numeric dtype, got {data.dtype}")
    spacing = (1.0, 1.0, 1.0) if spacing is None else tuple(spacing)
    if len(spacing) != 3 or not all(
        isinstance(s, numbers.Real) and np.isfinite(s) and s > 0 for s in spacing
    ):
        raise ValueError(f"`spacing` must be 3 positive finite numbers (z, y, x), "
                         f"got {spacing!r}")
    origin = (0.0, 0.0, 0.0) if origin is None else tuple(float(o) for o in origin)
    if len(origin) != 3:
        raise ValueError(f"`origin` must have 3 values (x, y, z), got {origin!r}")
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    if direction.shape != (3, 3):
        raise ValueError(f"`direction` must be 3 x 3, got shape {direction.shape}")
    if chunks is not None:
        chunks = tuple(chunks)
        if len(chunks) != data.ndim or not all(
            isinstance(c, numbers.Integral) and c > 0 for c in chunks
        ):
            raise ValueError(f"`chunks` must be {data.ndim} positive ints, got {chunks!r}")
    if not isinstance(compression_level, numbers.Integral) or not 1 <= compression_level <= 22:
        raise ValueError(f"`compression_level` must be an int in [1, 22], "
                         f"got {compression_level!r}")
    return write_ome_zarr(data, path, spacing=spacing, origin=origin, direction=direction,
                          modality=modality, source=source, chunks=chunks,
                          overwrite=overwrite, compression_level=int(compression_level),
                          scheduler=scheduler, codec=codec)
