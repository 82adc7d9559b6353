"""TIFF stacks through tifffile (read lazily, page by page) and ``.npy`` files (memory-mapped)."""

from __future__ import annotations

import numpy as np

from ._volume import CorruptVolumeError, Volume, VolumeReadError, lazy_from_file

_UNIT_TO_MM = {"mm": 1.0, "millimeter": 1.0, "cm": 10.0, "um": 1e-3, "micron": 1e-3,
               "\u00b5m": 1e-3, "\\u00B5m": 1e-3, "micrometer": 1e-3, "nm": 1e-6, "m": 1e3}
# Page axes tifffile may report for a stack of 2-D images.
_STACK_AXES = set("ZQIT")


def _read_tiff_region(path, index):
    import tifffile
    import zarr

    try:
        with tifffile.imread(path, aszarr=True) as store:
            return np.asarray(zarr.open(store, mode="r")[index])
    except Exception as exc:
        raise CorruptVolumeError(f"{path}: TIFF pixel data unreadable ({exc})") from exc


def read_tiff(path) -> Volume:
    import tifffile

    path = str(path)
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            shape, dtype, axes = tuple(series.shape), np.dtype(series.dtype), series.axes
            ij = tf.imagej_metadata or {}
            page = series.pages[0]
            xres = page.tags.get("XResolution")
            yres = page.tags.get("YResolution")
            xres = xres.value if xres is not None else None
            yres = yres.value if yres is not None else None
    except Exception as exc:
        raise CorruptVolumeError(f"{path}: not a readable TIFF file ({exc})") from exc
    squeezed = [(a, n) for a, n in zip(axes, shape) if not (n == 1 and a not in "YX")]
    letters = "".join(a for a, _ in squeezed)
    if any(a not in _STACK_AXES | {"Y", "X"} for a in letters) or letters.count("Y") != 1:
        raise VolumeReadError(
            f"{path}: TIFF axes {axes!r} (shape {shape}) are not a greyscale 2-D image or "
            "3-D stack; colour or multi-channel TIFF is not supported"
        )
    if len([a for a in letters if a in _STACK_AXES]) > 1:
        raise VolumeReadError(f"{path}: TIFF with axes {axes!r} has more than one stack axis")

    chunks = tuple(1 if a not in "YX" else n for a, n in zip(axes, shape))
    data = lazy_from_file(path, shape, dtype, _read_tiff_region, chunks, "tiff")
    data = data.reshape(tuple(n for _, n in squeezed))
    if data.ndim == 2:
        data = data[None]

    unit = ij.get("unit")
    to_mm = _UNIT_TO_MM.get(unit, None) if unit else None

    def pixel_size(res):
        if res is None or to_mm is None:
            return 1.0
        num, den = res
        return den / num * to_mm if num else 1.0

    z = float(ij.get("spacing", 1.0)) * to_mm if (to_mm and "spacing" in ij) else 1.0
    spacing = (z, pixel_size(yres), pixel_size(xres))
    metadata = {"format": "tiff", "tiff_axes": axes, "unit": unit,
                "spacing_known": to_mm is not None}
    return Volume(data=data, spacing=spacing, source=path, metadata=metadata)


def _read_npy_region(path, index):
    try:
        return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False)[index])
    except Exception as exc:
        raise CorruptVolumeError(f"{path}: .npy data unreadable ({exc})") from exc


def read_npy(path) -> Volume:
    import dask.array as da

    path = str(path)
    try:
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise CorruptVolumeError(f"{path}: not a readable .npy file ({exc})") from exc
    shape, dtype = mm.shape, mm.dtype
    del mm
    if len(shape) not in (2, 3, 4):
        raise VolumeReadError(f"{path}: .npy array of shape {shape} is not 2-D, 3-D or 4-D")
    chunks = da.core.normalize_chunks("auto", shape, limit=64 * 2**20, dtype=dtype)
    data = lazy_from_file(path, shape, dtype, _read_npy_region, chunks, "npy")
    if data.ndim == 2:
        data = data[None]
    return Volume(data=data, spacing=(1.0, 1.0, 1.0), source=path,
                  metadata={"format": "npy", "spacing_known": False})
