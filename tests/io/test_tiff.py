"""TIFF stacks and .npy files, and format detection errors."""

import numpy as np
import pytest
import tifffile

from medimg_fast.io import UnsupportedFormatError, VolumeReadError, open_volume


def test_imagej_stack_values_and_spacing(tmp_path):
    data = np.random.default_rng(0).integers(0, 4000, (6, 7, 9)).astype(np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.25, 1 / 0.5),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    vol = open_volume(path)
    assert vol.data.numblocks == (6, 1, 1)  # one page per chunk, read on demand
    np.testing.assert_array_equal(np.asarray(vol.data), data)
    # ImageJ: XResolution is pixels per unit; um -> mm.
    assert vol.spacing == pytest.approx((2.0e-3, 0.5e-3, 0.25e-3))
    np.testing.assert_array_equal(np.asarray(vol.data[2:4, 1:3]), data[2:4, 1:3])


def test_plain_tiff_page_and_rgb_rejected(tmp_path):
    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    tifffile.imwrite(tmp_path / "page.tiff", image)
    vol = open_volume(tmp_path / "page.tiff")
    assert vol.shape == (1, 4, 5) and vol.spacing == (1.0, 1.0, 1.0)
    assert vol.metadata["spacing_known"] is False
    np.testing.assert_array_equal(np.asarray(vol.data[0]), image)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((4, 5, 3), np.uint8), photometric="rgb")
    with pytest.raises(VolumeReadError, match="colour or multi-channel"):
        open_volume(tmp_path / "rgb.tif")


def test_npy_memory_mapped(tmp_path):
    data = np.random.default_rng(1).normal(size=(5, 6, 7))
    np.save(tmp_path / "v.npy", data)
    vol = open_volume(tmp_path / "v.npy")
    np.testing.assert_array_equal(np.asarray(vol.data), data)
    assert vol.metadata["spacing_known"] is False
    np.save(tmp_path / "bad.npy", np.zeros(5))
    with pytest.raises(VolumeReadError, match="not 2-D, 3-D or 4-D"):
        open_volume(tmp_path / "bad.npy")


def test_unsupported_format(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="unsupported format"):
        open_volume(tmp_path / "notes.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(UnsupportedFormatError, match="neither a Zarr store nor a DICOM"):
        open_volume(tmp_path / "folder")
    with pytest.raises(ValueError, match="`format` must be one of"):
        open_volume(tmp_path / "notes.txt", format="png")
