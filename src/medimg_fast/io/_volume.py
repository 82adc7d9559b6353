"""The one :class:`Volume` type every reader returns, its errors and the axis convention.

Axis and coordinate convention (the same for every format)
----------------------------------------------------------
``Volume.data`` is indexed ``(z, y, x)`` (a leading time axis ``(t, z, y, x)`` only for 4-D
NIfTI/OME-Zarr inputs).  World coordinates are patient coordinates in millimetres in the DICOM
*LPS* convention (x towards the patient's Left, y towards Posterior, z towards Superior), the
convention of DICOM and ITK.  NIfTI's RAS coordinates are converted by negating x and y.

Every reader reorients the array to the *closest canonical* orientation: after reading, array
axis 0 (``z``) points as nearly as possible along +S, axis 1 (``y``) along +P and axis 2
(``x``) along +L.  For a standard axial DICOM series (ImageOrientationPatient ``1,0,0,0,1,0``)
this is exactly the stored order (slices sorted inferior to superior, rows, columns); for a NIfTI
file it is ``data[i, j, k]`` flipped where needed and transposed to ``(k, j, i)``.  Because both
go through the same rule, a DICOM series and the same scan written as NIfTI read identically.

``spacing[a]`` is the voxel size along array axis ``a`` (so in ``(z, y, x)`` order), ``origin`` is
the LPS position ``(x, y, z)`` of the centre of voxel ``(0, 0, 0)`` and column ``a`` of
``direction`` is the LPS unit vector of array axis ``a``.  ``Volume.affine`` combines them:
``world = origin + direction @ (index * spacing)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = [
    "CorruptVolumeError",
    "DicomSeriesError",
    "GeometryMismatchError",
    "MaskReadError",
    "NotAnImageError",
    "ReferenceMismatchError",
    "RoiNotFoundError",
    "UnsupportedFormatError",
    "Volume",
    "VolumeNotFoundError",
    "VolumeReadError",
]


class VolumeReadError(ValueError):
    """A file or folder that exists but cannot be read as a volume."""


class VolumeNotFoundError(FileNotFoundError):
    """The path given to :func:`~medimg_fast.io.open_volume` does not exist."""


class UnsupportedFormatError(VolumeReadError):
    """A path whose format is not one of NIfTI, DICOM, Zarr, TIFF or ``.npy``."""


class CorruptVolumeError(VolumeReadError):
    """Pixel data that is truncated or otherwise cannot be decoded."""


class DicomSeriesError(VolumeReadError):
    """A DICOM folder that is not one consistent series (mixed series, missing or duplicated
    slices, unequal spacing, inconsistent geometry, no image objects)."""


class NotAnImageError(DicomSeriesError):
    """A DICOM mask object (RTSTRUCT, SEG) given where an image was expected; the message says
    how to read it as a mask."""


class MaskReadError(VolumeReadError):
    """An RTSTRUCT or DICOM-SEG that cannot be turned into a mask on the given image grid."""


class RoiNotFoundError(MaskReadError):
    """An ROI or segment name, pattern or number that selects nothing (or several) in a mask
    file; the message lists what the file holds."""


class ReferenceMismatchError(MaskReadError):
    """A mask object that references another series or frame of reference than the image."""


class GeometryMismatchError(ValueError):
    """Two volumes that should share a voxel grid (an image and its mask) do not."""


@dataclasses.dataclass(eq=False)
class Volume:
    """A lazily read image volume with its geometry.

    Attributes
    ----------
    data : dask.array.Array
        The voxels, ``(z, y, x)`` order (``(t, z, y, x)`` for 4-D inputs); nothing is read
        from disk until it is computed.
    spacing : tuple of float
        Voxel size in mm along the three spatial axes, ``(z, y, x)`` order.
    origin : tuple of float
        LPS position in mm, ``(x, y, z)``, of the centre of voxel ``(0, 0, 0)``.
    direction : numpy.ndarray
        3 x 3; column ``a`` is the LPS unit vector of spatial array axis ``a``.
    modality : str or None
        DICOM modality (``"CT"``, ``"MR"``, ...) when the format records it.
    source : str
        The path the volume was read from.
    metadata : dict
        Format-specific details (``format``, scaling, files, units, ...).
    """

    data: Any
    spacing: tuple
    origin: tuple = (0.0, 0.0, 0.0)
    direction: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(3))
    modality: str | None = None
    source: str = ""
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if len(self.spacing) != 3:
            raise ValueError(f"`spacing` must have 3 values (z, y, x), got {self.spacing!r}")
        if len(self.origin) != 3:
            raise ValueError(f"`origin` must have 3 values (x, y, z), got {self.origin!r}")

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def affine(self) -> np.ndarray:
        """4 x 4 matrix mapping a homogeneous ``(z, y, x, 1)`` index to LPS ``(x, y, z, 1)`` mm."""
        out = np.eye(4)
        out[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        out[:3, 3] = self.origin
        return out

    def __repr__(self) -> str:
        return (
            f"Volume(shape={self.shape}, dtype={self.data.dtype}, spacing={self.spacing}, "
            f"modality={self.modality!r}, source={self.source!r})"
        )


def canonical_axes(spacing, direction) -> tuple[tuple[bool, ...], list[int]]:
    """How :func:`reorient_canonical` moves the three array axes of this geometry:
    ``(flipped, new_order)``, whether each stored axis is reversed, and the stored axis
    that becomes each canonical axis (``(z, y, x)`` order)."""
    world, flipped = _world_axes(spacing, direction)
    # World axis w (x, y, z) becomes array axis 2 - w so the array reads (z, y, x).
    new_order = [0, 0, 0]
    for a in range(3):
        new_order[2 - world[a]] = a
    return flipped, new_order


#: Largest off-axis component of a direction cosine taken as axis-aligned.
_ALIGNED_TOL = 1e-6


def _world_axes(spacing, direction):
    """``(world, flipped)``: the world axis (0, 1, 2 for x, y, z) each stored axis runs
    closest to, and whether it runs against it.

    An axis-aligned ``direction`` (every off-axis component within ``_ALIGNED_TOL``, as
    in most scans) is read off directly; nibabel's ``io_orientation`` (an SVD, about
    0.2 ms) resolves an oblique one, and gives the same answer for an aligned one."""
    d = np.asarray(direction, dtype=np.float64)
    world = np.argmax(np.abs(d), axis=0)
    off_axis = np.abs(d)
    off_axis[world, range(3)] = 0.0
    if len(set(world.tolist())) == 3 and off_axis.max() <= _ALIGNED_TOL:
        return [int(w) for w in world], tuple(bool(d[world[a], a] < 0) for a in range(3))
    from nibabel.orientations import io_orientation

    affine = np.eye(4)
    affine[:3, :3] = d * np.asarray(spacing, dtype=np.float64)[None, :]
    # io_orientation picks, for each array axis, the world axis it runs closest to; it
    # resolves oblique acquisitions by SVD, so every axis gets a distinct world axis.
    ornt = io_orientation(affine)
    return [int(ornt[a, 0]) for a in range(3)], tuple(bool(ornt[a, 1] < 0) for a in range(3))


def reorient_canonical(data, spacing, origin, direction):
    """Flip and transpose the last three axes of `data` to the closest (S, P, L) orientation.

    Returns ``(data, spacing, origin, direction)`` describing the same voxels in the world.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64)
    direction = np.array(direction, dtype=np.float64)
    flipped, new_order = canonical_axes(spacing, direction)
    lead = data.ndim - 3
    shape = data.shape[lead:]
    for a in range(3):
        if flipped[a]:
            data = data[(slice(None),) * (lead + a) + (slice(None, None, -1),)]
            origin = origin + direction[:, a] * spacing[a] * (shape[a] - 1)
            direction[:, a] = -direction[:, a]
    if new_order != [0, 1, 2]:
        data = data.transpose(tuple(range(lead)) + tuple(lead + a for a in new_order))
    return data, tuple(spacing[new_order]), tuple(origin), direction[:, new_order]


class LazyFileArray:
    """A picklable array-like that reads a region of a file only when indexed.

    Dask keeps this object (a path and a reader function, not the voxels) in its graph, so
    graphs stay small when shipped to distributed workers.
    """

    def __init__(self, path, shape, dtype, read_region):
        self.path = str(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self._read_region = read_region

    def __getitem__(self, index):
        out = self._read_region(self.path, index)
        return np.asarray(out, dtype=self.dtype)


def lazy_from_file(path, shape, dtype, read_region, chunks, name_prefix):
    """A Dask array over :class:`LazyFileArray`, named by path, size and modification time."""
    import os

    import dask.array as da
    from dask.base import tokenize

    st = os.stat(path)
    token = tokenize(str(path), st.st_size, st.st_mtime_ns, shape, str(np.dtype(dtype)), chunks)
    return da.from_array(
        LazyFileArray(path, shape, dtype, read_region),
        chunks=chunks,
        name=f"{name_prefix}-{token}",
        meta=np.empty((0,) * len(shape), dtype=dtype),
        asarray=False,
        lock=False,
    )
