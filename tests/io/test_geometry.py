"""Image/mask grid checks across NIfTI, DICOM and OME-Zarr, open_mask, and manifests whose rows
name an ROI (several ROIs of one image, geometry mismatches as error rows)."""

import csv
import hashlib
import json
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from _archive_helpers import basic_features
from _dicom_masks import CT5N, ct_slices, write_rtstruct, write_seg

from medimg_fast.archive import (
    ManifestError,
    MaskMismatchError,
    PipelineConfig,
    _Entry,
    _entry_key,
    _StageError,
    _stat_signature,
    read_manifest,
    run_pipeline,
)
from medimg_fast.io import (
    GeometryMismatchError,
    VolumeReadError,
    check_same_grid,
    open_mask,
    open_volume,
    save_volume,
)

# NIfTI RAS affine of an LPS-aligned grid: 1.5 x 1.5 x 2 mm, origin LPS (-10, -20, 30).
AFFINE = np.array([[-1.5, 0, 0, 10.0], [0, -1.5, 0, 20.0], [0, 0, 2.0, 30.0], [0, 0, 0, 1]])


def _nifti(path, array, affine=AFFINE):
    nib.save(nib.Nifti1Image(np.asarray(array).transpose(2, 1, 0), affine), path)
    return path


@pytest.fixture
def image_and_mask(tmp_path, rng):
    image = rng.normal(0, 1, (6, 7, 8)).astype(np.float32)
    labels = np.zeros((6, 7, 8), np.uint8)
    labels[1:4, 2:5, 2:6] = 1
    labels[3:5, 4:6, 5:7] = 2
    return (_nifti(tmp_path / "image.nii.gz", image), _nifti(tmp_path / "labels.nii.gz", labels),
            image, labels)


def test_same_grid_passes_and_50_mm_shift_is_rejected(tmp_path, image_and_mask):
    image_path, mask_path, _, labels = image_and_mask
    image = open_volume(image_path)
    check_same_grid(image, open_volume(mask_path))
    shifted = AFFINE.copy()
    shifted[0, 3] -= 50.0  # RAS x - 50 is LPS x + 50
    mask = open_volume(_nifti(tmp_path / "shifted.nii.gz", labels, shifted))
    with pytest.raises(GeometryMismatchError) as info:
        check_same_grid(image, mask)
    message = str(info.value)
    assert "origin differs by 50 mm > 0.01 mm" in message
    assert "origin LPS (-10, -20, 30) mm" in message and "origin LPS (40, -20, 30) mm" in message
    assert message.count("spacing (z, y, x) (2, 1.5, 1.5) mm") == 2
    assert message.count("shape (z, y, x) (6, 7, 8)") == 2
    assert "image.nii.gz" in message and "shifted.nii.gz" in message
    assert issubclass(GeometryMismatchError, ValueError)
    check_same_grid(image, mask, tol_mm=60.0)


def test_each_geometry_field_is_compared(tmp_path, image_and_mask):
    image_path, _, _, labels = image_and_mask
    image = open_volume(image_path)
    cases = {
        "nudged": (AFFINE + _translation(1e-4), None),
        "spacing": (AFFINE @ np.diag([1.001, 1, 1, 1]), "spacing differs by up to 0.001"),
        "rotated": (_rotated_z(AFFINE, 0.01), "direction cosines differ by up to 0.01"),
        "shape": (AFFINE, "shape (6, 7, 7) != (6, 7, 8)"),
    }
    for name, (affine, problem) in cases.items():
        array = labels[:, :, :7] if name == "shape" else labels
        mask = open_volume(_nifti(tmp_path / f"{name}.nii.gz", array, affine))
        if problem is None:
            check_same_grid(image, mask)
            continue
        with pytest.raises(GeometryMismatchError, match=problem.replace("(", r"\(")
                           .replace(")", r"\)")):
            check_same_grid(image, mask)


def _translation(mm):
    out = np.zeros((4, 4))
    out[:3, 3] = mm
    return out


def _rotated_z(affine, radians):
    """The grid turned about the patient's z axis (an oblique acquisition)."""
    c, s = np.cos(radians), np.sin(radians)
    out = affine.copy()
    out[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    return out


def test_dicom_nifti_and_zarr_geometries_feed_the_check(tmp_path):
    dicom = open_volume(CT5N)
    zarr_same = save_volume(dicom, tmp_path / "same.zarr")
    check_same_grid(dicom, open_volume(zarr_same))
    zarr_shifted = save_volume(dicom, tmp_path / "shifted.zarr",
                               origin=np.add(dicom.origin, (0.0, 50.0, 0.0)))
    with pytest.raises(GeometryMismatchError, match="origin differs by 50 mm"):
        check_same_grid(dicom, open_volume(zarr_shifted))

    # The series as NIfTI (affine from the headers) lies on the DICOM's own grid.
    slices = ct_slices()
    iop = np.array([float(v) for v in slices[0].ImageOrientationPatient])
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * dicom.spacing[2]
    lps[:3, 1] = iop[3:] * dicom.spacing[1]
    lps[:3, 2] = np.cross(iop[:3], iop[3:]) * dicom.spacing[0]
    lps[:3, 3] = [float(v) for v in slices[0].ImagePositionPatient]
    nifti = _nifti(tmp_path / "ct.nii.gz", np.asarray(dicom.data), np.diag([-1, -1, 1, 1]) @ lps)
    check_same_grid(dicom, open_volume(nifti))

    # A copy of the series moved 50 mm along the patient's z does not.
    moved = tmp_path / "moved"
    shutil.copytree(CT5N, moved)
    for f in moved.iterdir():
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 50.0
        ds.save_as(f)
    with pytest.raises(GeometryMismatchError, match="origin differs by 50 mm"):
        check_same_grid(dicom, open_volume(moved))


def test_open_mask_for_image_masks(tmp_path, image_and_mask):
    image_path, mask_path, _, labels = image_and_mask
    image = open_volume(image_path)
    np.testing.assert_array_equal(np.asarray(open_mask(mask_path, image).data), labels != 0)
    np.testing.assert_array_equal(np.asarray(open_mask(mask_path, image, roi="2").data),
                                  labels == 2)
    np.testing.assert_array_equal(np.asarray(open_mask(mask_path, image, roi=1).data),
                                  labels == 1)
    with pytest.raises(VolumeReadError, match="must be an integer label value"):
        open_mask(mask_path, image, roi="GTV")
    np.save(tmp_path / "mask.npy", labels)
    assert open_mask(tmp_path / "mask.npy", image).data.dtype == bool
    four_d = tmp_path / "4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 7, 6, 2), np.uint8), AFFINE), four_d)
    with pytest.raises(VolumeReadError, match="a mask must be 3-D"):
        open_mask(four_d, image)


def _write_manifest(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_manifest_roi_column_and_two_rois_of_one_image(tmp_path):
    slices = ct_slices()
    rect = [(1.5, 1.5), (1.5, 9.5), (7.5, 9.5), (7.5, 1.5)]
    small = [(8.5, 8.5), (8.5, 12.5), (12.5, 12.5), (12.5, 8.5)]
    write_rtstruct(tmp_path / "rs.dcm", slices, [("GTV-1", [(1, rect), (2, rect)]),
                                                 ("Node", [(3, small)])])
    masks = np.zeros((5, 16, 16, 2), bool)
    masks[1:3, 2:8, 2:10, 0] = True
    masks[3, 9:13, 9:13, 1] = True
    write_seg(tmp_path / "seg.dcm", slices, masks, ["GTV-1", "Node"])
    shutil.copytree(CT5N, tmp_path / "ct")
    manifest = _write_manifest(tmp_path / "manifest.csv", [
        {"path": "ct", "label": "1", "mask": "rs.dcm", "roi": "GTV-1"},
        {"path": "ct", "label": "1", "mask": "rs.dcm", "roi": "node"},
        {"path": "ct", "label": "1", "mask": "seg.dcm", "roi": "2"},
        {"path": "ct", "label": "1", "mask": "", "roi": ""},
    ])
    entries = read_manifest(manifest)
    assert [e.roi for e in entries] == ["GTV-1", "node", "2", None]
    keys = {_entry_key(e, "config") for e in entries}
    assert len(keys) == 4  # two ROIs of one mask file are two results

    config = PipelineConfig(features=basic_features)
    rows = [run_pipeline(e, config) for e in entries]
    image = np.asarray(open_volume(CT5N).data, dtype=np.float64)
    assert [r["voxels"] for r in rows] == [96, 16, 16, image.size]
    assert rows[0]["mean"] == pytest.approx(image[masks[..., 0]].mean(), rel=1e-12)
    assert rows[1] == rows[2]  # the same voxels from the RTSTRUCT and from the SEG

    _write_manifest(tmp_path / "bad.csv", [{"path": "ct", "label": "1", "mask": "",
                                           "roi": "GTV-1"}])
    with pytest.raises(ManifestError, match="line 2: roi 'GTV-1' given without a mask"):
        read_manifest(tmp_path / "bad.csv")


def test_entry_key_without_roi_is_unchanged(tmp_path, image_and_mask):
    # Runs made before the roi column existed resume: their keys do not move.
    image_path, mask_path, _, _ = image_and_mask
    entry = _Entry(path=str(image_path), label="1", mask=str(mask_path), subject="s")
    blob = json.dumps([entry.path, _stat_signature(entry.path), entry.mask,
                       _stat_signature(entry.mask), "1", "s", "config"], default=str)
    assert _entry_key(entry, "config") == hashlib.sha256(blob.encode()).hexdigest()[:32]


def test_shifted_mask_is_an_error_row_naming_both_geometries(tmp_path, image_and_mask):
    image_path, _, _, labels = image_and_mask
    shifted = AFFINE.copy()
    shifted[2, 3] += 50.0
    mask_path = _nifti(tmp_path / "shifted.nii.gz", labels, shifted)
    entry = _Entry(path=str(image_path), label="1", mask=str(mask_path))
    with pytest.raises(_StageError) as info:
        run_pipeline(entry, PipelineConfig(features=basic_features))
    assert info.value.stage == "mask"
    exc = info.value.exc
    assert type(exc) is MaskMismatchError and isinstance(exc, GeometryMismatchError)
    assert "origin differs by 50 mm" in str(exc)
    assert "origin LPS (-10, -20, 30) mm" in str(exc) and "origin LPS (-10, -20, 80) mm" in str(exc)


def test_bad_dicom_masks_are_error_rows_and_the_batch_goes_on(tmp_path):
    """A mislabelled ROI, a structure set of another series and a truncated RTSTRUCT: one
    clear error row each, the good rows succeed (a real Dask cluster on 127.0.0.1)."""
    from _dicom_masks import truncate

    from medimg_fast.archive import process_archive

    slices = ct_slices()
    rect = [(1.5, 1.5), (1.5, 9.5), (7.5, 9.5), (7.5, 1.5)]
    write_rtstruct(tmp_path / "rs.dcm", slices, [("GTV-1", [(1, rect), (2, rect)])])
    write_rtstruct(tmp_path / "other.dcm", slices, [("GTV-1", [(1, rect)])],
                   series_uid=pydicom.uid.generate_uid())
    write_rtstruct(tmp_path / "cut.dcm", slices, [("GTV-1", [(1, rect)])])
    truncate(tmp_path / "cut.dcm")
    shutil.copytree(CT5N, tmp_path / "ct")
    manifest = _write_manifest(tmp_path / "manifest.csv", [
        {"path": "ct", "label": "1", "mask": "rs.dcm", "roi": "GTV-1"},
        {"path": "ct", "label": "1", "mask": "rs.dcm", "roi": "Lung"},
        {"path": "ct", "label": "0", "mask": "other.dcm", "roi": "GTV-1"},
        {"path": "ct", "label": "0", "mask": "cut.dcm", "roi": "GTV-1"},
    ])
    result = process_archive(manifest, tmp_path / "out", features=basic_features,
                             n_workers=1, processes=False, progress=False)
    assert result.n_succeeded == 1 and result.n_failed == 3
    errors = {r["mask"].rsplit("/", 1)[-1] + ":" + r["roi"]: r
              for _, r in result.errors.iterrows()}
    assert errors["rs.dcm:Lung"]["error_type"] == "RoiNotFoundError"
    assert "GTV-1" in errors["rs.dcm:Lung"]["message"]  # names the ROIs that are there
    assert errors["other.dcm:GTV-1"]["error_type"] == "ReferenceMismatchError"
    assert errors["cut.dcm:GTV-1"]["error_type"] == "CorruptVolumeError"
    assert {r["stage"] for r in errors.values()} == {"mask"}


def test_manifest_series_uid_and_suv_units(tmp_path):
    """Two series in one folder picked by the series_uid column (as scan writes it); PET
    read as SUV with units='suv', and a CT with units='suv' an error row naming why."""
    from _pet_series import write_pet_series

    from medimg_fast.archive import process_archive

    shared = tmp_path / "pacs"
    _paths, _ = write_pet_series(shared, series_uid="1.2.3.4.1", prefix="PTA")
    write_pet_series(shared, series_uid="1.2.3.4.2", prefix="PTB", seed=7, dose_bq=200e6)
    for ds in ct_slices():
        ds.save_as(shared / f"CT_{ds.SOPInstanceUID}.dcm")
    ct_uid = str(ct_slices()[0].SeriesInstanceUID)
    manifest = _write_manifest(tmp_path / "manifest.csv", [
        {"path": "pacs", "label": "1", "mask": "", "roi": "", "series_uid": "1.2.3.4.1"},
        {"path": "pacs", "label": "0", "mask": "", "roi": "", "series_uid": "1.2.3.4.2"},
        {"path": "pacs", "label": "0", "mask": "", "roi": "", "series_uid": ct_uid},
    ])
    result = process_archive(manifest, tmp_path / "out", features=basic_features,
                             n_workers=1, processes=False, progress=False, units="suv")
    assert result.n_succeeded == 2 and result.n_failed == 1
    table = result.features.set_index("series_uid")
    for uid in ("1.2.3.4.1", "1.2.3.4.2"):
        suv = open_volume(shared, series_uid=uid, units="suv")
        assert table.loc[uid, "mean"] == pytest.approx(
            float(np.asarray(suv.data, dtype=np.float64).mean()), rel=1e-12)
    error = result.errors.iloc[0]
    assert error["series_uid"] == ct_uid and error["error_type"] == "SuvError"
    assert "CT" in error["message"]
