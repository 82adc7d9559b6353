"""Voxel-grid comparison and world-to-index mapping for :class:`Volume` geometries.

Every reader fills ``spacing``, ``origin`` and ``direction`` from its own metadata (NIfTI
affine, DICOM ImagePositionPatient/ImageOrientationPatient/PixelSpacing, OME-Zarr scale plus the
``medimg_fast`` attribute), all in LPS millimetres, so one comparison covers every pairing of
formats.
"""

from __future__ import annotations

import numpy as np

from ._volume import GeometryMismatchError, Volume

__all__ = ["check_same_grid", "describe_grid", "world_to_index"]


def _fmt(values, digits=6):
    return "(" + ", ".join(f"{float(v):.{digits}g}" for v in values) + ")"


def describe_grid(volume: Volume) -> str:
    """One line naming a volume's spatial shape, spacing, origin and direction."""
    direction = "[" + ", ".join(_fmt(col, 4) for col in volume.direction.T) + "]"
    return (f"shape (z, y, x) {tuple(int(s) for s in volume.shape[-3:])}, "
            f"spacing (z, y, x) {_fmt(volume.spacing)} mm, origin LPS {_fmt(volume.origin)} mm, "
            f"direction (axis columns z, y, x) {direction}")


def check_same_grid(image_volume: Volume, mask_volume: Volume, *, tol_mm=0.01,
                    spacing_rtol=1e-4, direction_atol=1e-4) -> None:
    """Raise unless two volumes lie on the same voxel grid in patient space.

    Parameters
    ----------
    image_volume, mask_volume : Volume
        The volumes to compare; only the three spatial axes of a 4-D volume are compared.
    tol_mm : float
        Largest distance in mm between the two origins (centres of voxel ``(0, 0, 0)``).
        The default, 0.01 mm, absorbs the rounding of positions stored as text (DICOM) or
        float32 (NIfTI) and is far below any voxel size.
    spacing_rtol : float
        Largest relative difference of each voxel size.
    direction_atol : float
        Largest absolute difference of each direction cosine.

    Raises
    ------
    GeometryMismatchError
        (a ValueError) naming what differs and both geometries (shape, spacing, origin,
        direction).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> image = Volume(da.zeros((2, 3, 4)), spacing=(2.0, 1.0, 1.0))
    >>> check_same_grid(image, Volume(da.zeros((2, 3, 4)), spacing=(2.0, 1.0, 1.0)))
    >>> shifted = Volume(da.zeros((2, 3, 4)), spacing=(2.0, 1.0, 1.0), origin=(50.0, 0, 0))
    >>> check_same_grid(image, shifted)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medimg_fast.io._volume.GeometryMismatchError: mask grid differs from image grid (origin ...
    """
    for name, value in (("tol_mm", tol_mm), ("spacing_rtol", spacing_rtol),
                        ("direction_atol", direction_atol)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"`{name}` must be a non-negative number, got {value!r}")
    problems = []
    image_shape, mask_shape = tuple(image_volume.shape[-3:]), tuple(mask_volume.shape[-3:])
    if image_shape != mask_shape:
        problems.append(f"shape {mask_shape} != {image_shape}")
    a, b = np.asarray(image_volume.spacing), np.asarray(mask_volume.spacing)
    rel = np.abs(a - b) / np.maximum(np.abs(a), np.finfo(float).tiny)
    if np.any(rel > spacing_rtol):
        problems.append(f"spacing differs by up to {rel.max():.3g} relative > {spacing_rtol:g}")
    shift = float(np.linalg.norm(np.subtract(image_volume.origin, mask_volume.origin)))
    if shift > tol_mm:
        problems.append(f"origin differs by {shift:.4g} mm > {tol_mm:g} mm")
    cosines = float(np.max(np.abs(image_volume.direction - mask_volume.direction)))
    if cosines > direction_atol:
        problems.append(f"direction cosines differ by up to {cosines:.3g} > {direction_atol:g}")
    if problems:
        raise GeometryMismatchError(
            f"mask grid differs from image grid ({'; '.join(problems)}): "
            f"image {image_volume.source or '<in memory>'!s}: {describe_grid(image_volume)}; "
            f"mask {mask_volume.source or '<in memory>'!s}: {describe_grid(mask_volume)}"
        )


def world_to_index(volume: Volume, points_lps) -> np.ndarray:
    """Continuous ``(z, y, x)`` voxel indices of LPS points (mm), shape ``(n, 3)``.

    The inverse of ``world = origin + direction @ (index * spacing)``; integer values are
    voxel centres.
    """
    points = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    linear = volume.direction * np.asarray(volume.spacing)[None, :]
    return np.linalg.solve(linear, (points - np.asarray(volume.origin)).T).T
