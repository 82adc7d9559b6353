"""RTSTRUCT contours rasterised onto their image: round trips on pydicom's CT series, holes,
several contours per slice, every error, and the IBSI CT phantom against its NIfTI mask."""

import re
import shutil

import nibabel as nib
import numpy as np
import pytest
from _dicom_masks import (
    CT5N,
    PHANTOM,
    ct_slices,
    index_to_lps,
    truncate,
    write_rtstruct,
)
from matplotlib.path import Path as MplPath

from medimg_fast.io import (
    CorruptVolumeError,
    MaskReadError,
    NotAnImageError,
    ReferenceMismatchError,
    RoiNotFoundError,
    check_same_grid,
    list_rois,
    open_mask,
    open_volume,
    read_rtstruct_mask,
)
from medimg_fast.io._rtstruct import fill_polygons_even_odd


def _rect(y0, y1, x0, x1):
    """A rectangle whose edges lie between voxel centres: it holds rows y0..y1, cols x0..x1."""
    return [(y0 - 0.5, x0 - 0.5), (y0 - 0.5, x1 + 0.5), (y1 + 0.5, x1 + 0.5),
            (y1 + 0.5, x0 - 0.5)]


@pytest.fixture(scope="module")
def slices():
    return ct_slices()


@pytest.fixture(scope="module")
def image():
    return open_volume(CT5N)


def test_holes_islands_and_several_contours_per_slice(tmp_path, slices, image):
    # Slice 1: a ring (outer square with a hole) with an island in the hole, and a separate
    # square beside it.  Slice 3: one square.  Edges between centres: the expected mask is
    # plain slicing, with no boundary convention involved.
    contours = [(1, _rect(2, 11, 2, 11)), (1, _rect(4, 9, 4, 9)), (1, _rect(6, 7, 6, 7)),
                (1, _rect(1, 3, 13, 14)), (3, _rect(5, 8, 5, 10))]
    expected = np.zeros((5, 16, 16), bool)
    expected[1, 2:12, 2:12] = True
    expected[1, 4:10, 4:10] = False
    expected[1, 6:8, 6:8] = True
    expected[1, 1:4, 13:15] = True
    expected[3, 5:9, 5:11] = True
    path = write_rtstruct(tmp_path / "rs.dcm", slices, [("Tumour", contours),
                                                        ("Other", [(0, _rect(0, 1, 0, 1))])])
    mask = read_rtstruct_mask(path, image, roi="Tumour")
    np.testing.assert_array_equal(np.asarray(mask.data), expected)
    assert mask.data.dtype == bool
    assert mask.shape == image.shape and mask.spacing == image.spacing
    assert mask.origin == image.origin
    np.testing.assert_array_equal(mask.direction, image.direction)
    assert mask.metadata["roi_name"] == "Tumour" and mask.metadata["n_contours"] == 5
    assert mask.metadata["reference_uids_checked"] is True
    # The same by series path and through open_mask.
    np.testing.assert_array_equal(np.asarray(read_rtstruct_mask(path, CT5N, roi=1).data),
                                  expected)
    np.testing.assert_array_equal(np.asarray(open_mask(path, image, roi="tumour").data),
                                  expected)


def test_free_polygons_match_an_independent_point_in_polygon(tmp_path, slices, image, rng):
    # Star-shaped polygons with random radii: the reference is matplotlib's Path on the
    # voxel centres (vertices off the centres, so the boundary convention cannot differ).
    contours, expected = [], np.zeros((5, 16, 16), bool)
    centres = np.stack(np.meshgrid(np.arange(16), np.arange(16), indexing="ij"), -1)
    for z in range(5):
        angles = np.linspace(0, 2 * np.pi, 23, endpoint=False)
        radius = rng.uniform(2.0, 7.0, angles.size)
        yx = np.c_[7.3 + radius * np.sin(angles), 7.6 + radius * np.cos(angles)]
        contours.append((z, yx))
        expected[z] = MplPath(yx).contains_points(centres.reshape(-1, 2)).reshape(16, 16)
    path = write_rtstruct(tmp_path / "rs.dcm", slices, [("star", contours)])
    mask = np.asarray(read_rtstruct_mask(path, image).data)
    np.testing.assert_array_equal(mask, expected)
    assert mask.sum() > 100


def test_fill_polygons_boundary_convention_and_self_intersection():
    # Centres on the lower edges are inside, on the upper edges outside, so two squares that
    # share an edge split its voxels between them and their union is the big square.
    left = np.array([[1, 1], [1, 4], [5, 4], [5, 1]])
    right = np.array([[1, 4], [1, 7], [5, 7], [5, 4]])
    both = np.array([[1, 1], [1, 7], [5, 7], [5, 1]])
    a = fill_polygons_even_odd([left], (8, 8))
    b = fill_polygons_even_odd([right], (8, 8))
    assert not np.any(a & b)
    np.testing.assert_array_equal(a | b, fill_polygons_even_odd([both], (8, 8)))
    expected = np.zeros((8, 8), bool)
    expected[1:5, 1:4] = True
    np.testing.assert_array_equal(a, expected)
    # A self-intersecting bow tie (vertices off the centres' lines): each lobe is inside.
    bow = np.array([[0.37, 0.21], [6.81, 6.63], [6.73, 0.29], [0.41, 6.87]])
    filled = fill_polygons_even_odd([bow], (8, 8))
    centres = np.stack(np.meshgrid(np.arange(8), np.arange(8), indexing="ij"), -1)
    reference = MplPath(bow).contains_points(centres.reshape(-1, 2)).reshape(8, 8)
    np.testing.assert_array_equal(filled, reference)
    # Polygons reaching outside the grid are clipped.
    big = fill_polygons_even_odd([np.array([[-5, -5], [-5, 20], [20, 20], [20, -5]])], (4, 6))
    assert big.all()


def test_same_mask_on_a_reoriented_nifti_copy(tmp_path, slices, image):
    # The series written as NIfTI with rows stored bottom-up (as dcm2niix does): the reader
    # reorients it, and the contours map through the NIfTI's own affine to the same voxels.
    hu = np.asarray(image.data, dtype=np.float32)
    row_mm, col_mm = image.spacing[1:]
    iop = np.array([float(v) for v in slices[0].ImageOrientationPatient])
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * col_mm
    lps[:3, 1] = -iop[3:] * row_mm
    lps[:3, 2] = np.cross(iop[:3], iop[3:]) * image.spacing[0]
    lps[:3, 3] = np.array(image.origin) + iop[3:] * row_mm * 15
    nii = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu.transpose(2, 1, 0)[:, ::-1, :], np.diag([-1, -1, 1, 1]) @ lps),
             nii)
    path = write_rtstruct(tmp_path / "rs.dcm", slices,
                          [("a", [(2, _rect(1, 6, 3, 12)), (2, _rect(3, 4, 5, 6))])])
    on_dicom = read_rtstruct_mask(path, image)
    on_nifti = read_rtstruct_mask(path, nii)
    np.testing.assert_array_equal(np.asarray(on_nifti.data), np.asarray(on_dicom.data))
    assert on_nifti.metadata["reference_uids_checked"] is False  # NIfTI has no UIDs


def test_list_rois_and_selection(tmp_path, slices, image):
    path = write_rtstruct(tmp_path / "rs.dcm", slices, [
        ("GTV-1", [(1, _rect(2, 4, 2, 4))]),
        ("gtv-2", [(2, _rect(5, 8, 5, 8)), (3, _rect(5, 8, 5, 8))]),
        ("Lung_L", [(0, _rect(0, 2, 0, 2))]),
    ])
    rois = list_rois(path)
    assert [(r["number"], r["name"], r["n_contours"]) for r in rois] == [
        (1, "GTV-1", 1), (2, "gtv-2", 2), (3, "Lung_L", 1)]
    assert {r["referenced_series_uid"] for r in rois} == {str(slices[0].SeriesInstanceUID)}
    counts = {roi: int(np.asarray(read_rtstruct_mask(path, image, roi=roi).data).sum())
              for roi in ("GTV-1", "GTV-2", "lung*", 2, "3")}
    assert counts == {"GTV-1": 9, "GTV-2": 32, "lung*": 9, 2: 32, "3": 9}
    with pytest.raises(RoiNotFoundError, match=r"matches 2 ROIs \(1: 'GTV-1', 2: 'gtv-2'\)"):
        read_rtstruct_mask(path, image, roi="gtv*")
    with pytest.raises(RoiNotFoundError, match="holds 3 ROIs"):
        read_rtstruct_mask(path, image)


def test_unknown_roi_lists_the_names(tmp_path, slices, image):
    path = write_rtstruct(tmp_path / "rs.dcm", slices, [("GTV-1", [(1, _rect(2, 4, 2, 4))]),
                                                        ("Heart", [(1, _rect(8, 9, 8, 9))])])
    with pytest.raises(RoiNotFoundError,
                       match=r"no ROI matches roi='Liver'; ROIs: 1: 'GTV-1', 2: 'Heart'"):
        read_rtstruct_mask(path, image, roi="Liver")
    assert issubclass(RoiNotFoundError, ValueError)


@pytest.mark.parametrize("z, where", [(1.5, "between"), (7.0, "beyond")])
def test_contour_off_every_slice(tmp_path, slices, image, z, where):
    path = write_rtstruct(tmp_path / "rs.dcm", slices, [("a", [(1, _rect(2, 4, 2, 4)),
                                                               (z, _rect(2, 4, 2, 4))])])
    z_mm = float(index_to_lps(slices, [[z, 3, 3]])[0, 2])
    first, last = (float(slices[i].ImagePositionPatient[2]) for i in (0, -1))
    with pytest.raises(MaskReadError, match=r"contour 1 of ROI 'a' at z = .* mm matches no "
                                            r"slice of the image") as info:
        read_rtstruct_mask(path, image)
    found = re.search(r"at z = (\S+) mm .*slices from (\S+) to (\S+) mm every (\S+) mm",
                      str(info.value))
    numbers = [float(v) for v in found.groups()]
    assert numbers == pytest.approx([z_mm, first, last, 2.5], abs=6e-3)  # 4 digits


def test_wrong_referenced_series_or_frame_of_reference(tmp_path, slices, image):
    other_series = write_rtstruct(tmp_path / "a.dcm", slices, [("a", [(1, _rect(2, 4, 2, 4))])],
                                  series_uid="1.2.3.4.5")
    with pytest.raises(ReferenceMismatchError) as info:
        read_rtstruct_mask(other_series, image)
    assert "1.2.3.4.5" in str(info.value)
    assert str(slices[0].SeriesInstanceUID) in str(info.value)

    other_for = write_rtstruct(tmp_path / "b.dcm", slices, [("a", [(1, _rect(2, 4, 2, 4))])],
                               frame_of_reference_uid="1.2.3.4.6")
    with pytest.raises(ReferenceMismatchError) as info:
        read_rtstruct_mask(other_for, image)
    assert "1.2.3.4.6" in str(info.value)
    assert str(slices[0].FrameOfReferenceUID) in str(info.value)


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.95, 0.99])
def test_truncated_rtstruct(tmp_path, slices, image, fraction):
    contours = [(z, _rect(2, 9, 3, 11)) for z in range(5)]
    path = write_rtstruct(tmp_path / "rs.dcm", slices, [("a", contours), ("b", contours)])
    truncate(path, fraction)
    with pytest.raises(CorruptVolumeError, match="rs.dcm: truncated or corrupt RTSTRUCT"):
        read_rtstruct_mask(path, image, roi="b")


def test_open_volume_on_an_rtstruct_says_how_to_read_it(tmp_path, slices):
    path = write_rtstruct(tmp_path / "rs.dcm", slices, [("GTV-1", [(1, _rect(2, 4, 2, 4))])])
    with pytest.raises(NotAnImageError, match=r"RTSTRUCT.*ROIs: 'GTV-1'.*read_rtstruct_mask"):
        open_volume(path)
    folder = tmp_path / "series"
    shutil.copytree(CT5N, folder)
    shutil.copy(path, folder / "rs.dcm")
    assert open_volume(folder).shape == (5, 16, 16)  # beside images it is ignored, as before


_PHANTOM_REASON = f"IBSI-1 CT phantom not found at {PHANTOM} (not redistributable)"


@pytest.mark.skipif(not (PHANTOM / "dicom" / "mask").is_dir(), reason=_PHANTOM_REASON)
def test_ibsi_ct_phantom_contours_equal_the_nifti_mask():
    series = PHANTOM / "dicom" / "image"
    rtstruct = PHANTOM / "dicom" / "mask" / "DCM_RS_00060.dcm"
    assert [(r["name"], r["n_contours"]) for r in list_rois(rtstruct)] == [("GTV-1", 26)]
    image = open_volume(series)
    mask = read_rtstruct_mask(rtstruct, image, roi="GTV-1")
    reference = open_volume(PHANTOM / "mask.nii.gz")
    rasterised = np.asarray(mask.data)
    expected = np.asarray(reference.data) != 0
    # Voxel for voxel: 125256 voxels, 0 different.  No vertex of these contours lies within
    # 5e-4 voxels of a voxel centre, so the boundary convention plays no part here.
    assert int(rasterised.sum()) == int(expected.sum()) == 125256
    assert int(np.count_nonzero(rasterised != expected)) == 0
    # The folder holding only the RTSTRUCT works through open_mask too.
    np.testing.assert_array_equal(
        np.asarray(open_mask(PHANTOM / "dicom" / "mask", image, roi="gtv*").data), expected)


@pytest.mark.skipif(not (PHANTOM / "dicom" / "mask").is_dir(), reason=_PHANTOM_REASON)
def test_ibsi_ct_phantom_dicom_pair_gives_the_nifti_pair_features():
    from medimg_fast.features import extract_features

    settings = {"families": "all", "texture_dims": ["2D", "3D"], "bin_width": 25.0,
                "reseg_range": [-500, 400]}
    dicom = open_volume(PHANTOM / "dicom" / "image")
    dicom_mask = open_mask(PHANTOM / "dicom" / "mask" / "DCM_RS_00060.dcm", dicom,
                           roi="GTV-1")
    nifti = open_volume(PHANTOM / "image.nii.gz")
    nifti_mask = open_mask(PHANTOM / "mask.nii.gz", nifti)
    check_same_grid(dicom, nifti)  # the same grid in patient space
    from_dicom = extract_features(np.asarray(dicom.data), np.asarray(dicom_mask.data),
                                  spacing=dicom.spacing, settings=settings)
    from_nifti = extract_features(np.asarray(nifti.data), np.asarray(nifti_mask.data),
                                  spacing=nifti.spacing, settings=settings)
    assert from_dicom.keys() == from_nifti.keys()
    np.testing.assert_allclose([from_dicom[k] for k in from_nifti], list(from_nifti.values()),
                               rtol=1e-12, atol=1e-9)
