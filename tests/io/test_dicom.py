"""DICOM reading checked against pydicom's own modality LUT and the raw headers."""

import os
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medimg_fast.io import CorruptVolumeError, DicomSeriesError, open_volume

try:
    from pydicom.pixels import apply_modality_lut
except ImportError:  # pydicom < 3
    from pydicom.pixel_data_handlers.util import apply_modality_lut

DICOMDIR_TESTS = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests")
CT5N = os.path.join(DICOMDIR_TESTS, "98892001", "CT5N")
CT2N = os.path.join(DICOMDIR_TESTS, "98892001", "CT2N")


def _reference_series(folder):
    """Slices sorted by z of ImagePositionPatient (the series is axial), in HU, with headers."""
    datasets = [pydicom.dcmread(os.path.join(folder, f)) for f in os.listdir(folder)]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    hu = np.stack([apply_modality_lut(ds.pixel_array, ds) for ds in datasets])
    return datasets, hu


def test_ct_series_hu_spacing_origin():
    datasets, hu = _reference_series(CT5N)
    vol = open_volume(CT5N)
    assert vol.modality == "CT"
    assert vol.shape == hu.shape == (5, 16, 16)
    np.testing.assert_array_equal(np.asarray(vol.data, dtype=np.float64), hu)
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    row_mm, col_mm = (float(v) for v in datasets[0].PixelSpacing)
    assert vol.spacing == pytest.approx((z[1] - z[0], row_mm, col_mm), rel=1e-6)
    assert vol.spacing[0] == pytest.approx(2.5, rel=1e-5)
    assert vol.origin == pytest.approx(tuple(float(v) for v in datasets[0].ImagePositionPatient))
    assert vol.metadata["series_instance_uid"] == datasets[0].SeriesInstanceUID


def test_single_file_ct_and_mr():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    vol = open_volume(path)
    assert vol.shape == (1, int(ds.Rows), int(ds.Columns))
    np.testing.assert_array_equal(np.asarray(vol.data[0], dtype=np.float64),
                                  apply_modality_lut(ds.pixel_array, ds))
    assert vol.spacing == pytest.approx(
        (float(ds.SliceThickness), *(float(v) for v in ds.PixelSpacing)))

    mr_path = get_testdata_file("MR_small.dcm")
    mr = pydicom.dcmread(mr_path)
    vol = open_volume(mr_path)
    assert vol.modality == "MR"
    assert vol.data.dtype == mr.pixel_array.dtype  # no rescale tags: stored values unchanged
    np.testing.assert_array_equal(np.asarray(vol.data[0]), mr.pixel_array)


def test_truncated_file_is_reported():
    vol = open_volume(get_testdata_file("MR_truncated.dcm"))
    with pytest.raises(CorruptVolumeError, match="MR_truncated.dcm: DICOM pixel data unreadable"):
        vol.data.compute()
    assert issubclass(CorruptVolumeError, ValueError)


@pytest.mark.parametrize("flip_rows", [False, True])
def test_series_and_nifti_copy_read_identically(tmp_path, flip_rows):
    datasets, hu = _reference_series(CT5N)
    ds0 = datasets[0]
    iop = np.array([float(v) for v in ds0.ImageOrientationPatient])
    row_cos, col_cos = iop[:3], iop[3:]
    row_mm, col_mm = (float(v) for v in ds0.PixelSpacing)
    dz = float(datasets[1].ImagePositionPatient[2]) - float(ds0.ImagePositionPatient[2])
    lps = np.eye(4)
    # NIfTI index (i, j, k) = (column, row, slice), the usual DICOM-to-NIfTI layout.
    lps[:3, 0] = row_cos * col_mm
    lps[:3, 1] = col_cos * row_mm
    lps[:3, 2] = np.cross(row_cos, col_cos) * dz
    lps[:3, 3] = [float(v) for v in ds0.ImagePositionPatient]
    array = hu.astype(np.float32).transpose(2, 1, 0)
    if flip_rows:  # store rows bottom-up, as dcm2niix does, and fix the affine to match
        array = array[:, ::-1, :]
        lps[:3, 3] = lps[:3, 3] + lps[:3, 1] * (array.shape[1] - 1)
        lps[:3, 1] = -lps[:3, 1]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(array, affine), path)

    a, b = open_volume(CT5N), open_volume(path)
    np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
    assert b.spacing == pytest.approx(a.spacing, rel=1e-6)
    assert b.origin == pytest.approx(a.origin, abs=1e-4)
    np.testing.assert_allclose(b.direction, a.direction, atol=1e-6)


def _copy_series(tmp_path, names=None):
    dst = tmp_path / "series"
    dst.mkdir()
    for f in names or sorted(os.listdir(CT5N)):
        shutil.copy(os.path.join(CT5N, f), dst / f)
    return dst


def test_missing_slice(tmp_path):
    datasets, _ = _reference_series(CT5N)
    middle = os.path.basename(datasets[2].filename)
    folder = _copy_series(tmp_path, [f for f in os.listdir(CT5N) if f != middle])
    with pytest.raises(DicomSeriesError, match="1 missing slice"):
        open_volume(folder)


def test_duplicate_slice(tmp_path):
    folder = _copy_series(tmp_path)
    first = min(os.listdir(folder))
    shutil.copy(folder / first, folder / "copy_of_first")
    with pytest.raises(DicomSeriesError, match="duplicated slice"):
        open_volume(folder)


def test_unequal_spacing(tmp_path):
    folder = _copy_series(tmp_path)
    datasets, _ = _reference_series(folder)
    ds = datasets[2]
    ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 0.7
    ds.save_as(ds.filename)
    with pytest.raises(DicomSeriesError, match="unequal slice spacing"):
        open_volume(folder)


def test_mixed_series_and_series_uid(tmp_path):
    folder = _copy_series(tmp_path)
    other = min(os.listdir(CT2N))
    shutil.copy(os.path.join(CT2N, other), folder / "other_series")
    with pytest.raises(DicomSeriesError, match="mixed series, 2 SeriesInstanceUIDs"):
        open_volume(folder)
    uid = pydicom.dcmread(os.path.join(CT5N, os.listdir(CT5N)[0])).SeriesInstanceUID
    vol = open_volume(folder, series_uid=uid)
    assert vol.shape == (5, 16, 16)


def test_non_image_objects_are_ignored_and_listed(tmp_path):
    folder = _copy_series(tmp_path)
    shutil.copy(os.path.join(DICOMDIR_TESTS, "DICOMDIR"), folder / "DICOMDIR")
    (folder / "notes.txt").write_text("not dicom")
    vol = open_volume(folder)
    assert vol.shape == (5, 16, 16)
    ignored = {os.path.basename(k): v for k, v in vol.metadata["ignored_files"].items()}
    assert ignored["notes.txt"] == "not a DICOM file"
    assert ignored["DICOMDIR"].startswith("non-image DICOM object")


def test_folder_without_images(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    shutil.copy(os.path.join(DICOMDIR_TESTS, "DICOMDIR"), folder / "DICOMDIR.dcm")
    with pytest.raises(DicomSeriesError, match="no DICOM image objects"):
        open_volume(folder)
