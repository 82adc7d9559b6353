"""DICOM-SEG round trips (mask -> highdicom file -> mask) on pydicom's 5-slice CT series:
binary and fractional, several segments, by number and label, and the errors."""

import numpy as np
import pydicom
import pytest
from _dicom_masks import CT5N, PHANTOM, ct_slices, truncate, write_seg

from medimg_fast.io import (
    CorruptVolumeError,
    MaskReadError,
    NotAnImageError,
    ReferenceMismatchError,
    RoiNotFoundError,
    list_segments,
    open_mask,
    open_volume,
    read_seg_mask,
)

pytest.importorskip("highdicom")


@pytest.fixture(scope="module")
def slices():
    return ct_slices()


@pytest.fixture(scope="module")
def image():
    return open_volume(CT5N)


@pytest.fixture(scope="module")
def masks():
    """Three overlapping segments; slice 0 and 4 empty in all, so those frames are omitted."""
    rng = np.random.default_rng(7)
    out = np.zeros((5, 16, 16, 3), bool)
    out[1:4, 3:12, 2:9, 0] = True
    out[2, 5:7, 10:15, 1] = True
    out[1:4, :, :, 2] = rng.random((3, 16, 16)) > 0.6
    return out


@pytest.fixture(scope="module")
def binary_seg(tmp_path_factory, slices, masks):
    path = tmp_path_factory.mktemp("seg") / "binary.dcm"
    return write_seg(path, slices, masks, ["Tumour", "Node", "noise"])


def test_binary_round_trip_by_number_and_label(binary_seg, image, masks):
    for number in (1, 2, 3):
        mask = read_seg_mask(binary_seg, image, segment=number)
        np.testing.assert_array_equal(np.asarray(mask.data), masks[..., number - 1])
        assert mask.data.dtype == bool and mask.shape == image.shape
        assert mask.spacing == image.spacing and mask.origin == image.origin
        assert mask.metadata["segment_number"] == number
        assert mask.metadata["segmentation_type"] == "BINARY"
    for label, number in (("Node", 2), ("node", 2), ("tum*", 1), ("3", 3)):
        np.testing.assert_array_equal(
            np.asarray(read_seg_mask(binary_seg, CT5N, segment=label).data),
            masks[..., number - 1])
    np.testing.assert_array_equal(np.asarray(open_mask(binary_seg, image, roi="Node").data),
                                  masks[..., 1])


def test_list_segments(binary_seg, masks):
    segments = list_segments(binary_seg)
    assert [(s["number"], s["label"]) for s in segments] == [
        (1, "Tumour"), (2, "Node"), (3, "noise")]
    # Empty frames are not stored: 3 slices hold segment 1, one holds segment 2.
    assert [s["n_frames"] for s in segments] == [3, 1, 3]


def test_unknown_segment_lists_the_segments(binary_seg, image):
    with pytest.raises(RoiNotFoundError, match=r"no segment matches roi='Liver'; segments: "
                                               r"1: 'Tumour', 2: 'Node', 3: 'noise'"):
        read_seg_mask(binary_seg, image, segment="Liver")
    with pytest.raises(RoiNotFoundError, match="holds 3 segments"):
        read_seg_mask(binary_seg, image)
    with pytest.raises(RoiNotFoundError, match="no segment matches roi=9"):
        read_seg_mask(binary_seg, image, segment=9)


def test_fractional_round_trip(tmp_path, slices, image):
    rng = np.random.default_rng(3)
    fractions = np.zeros((5, 16, 16, 2), np.float32)
    fractions[1:4, 2:14, 2:14, 0] = rng.random((3, 12, 12))
    fractions[2, 4:8, 4:8, 1] = 1.0
    path = write_seg(tmp_path / "fractional.dcm", slices, fractions, ["soft", "core"],
                     fractional=True)
    # Stored as round(f * 255): fractions come back to within half a step.
    soft = read_seg_mask(path, image, segment="soft", threshold=None)
    assert soft.data.dtype == np.float32
    np.testing.assert_allclose(np.asarray(soft.data), fractions[..., 0], atol=0.5 / 255 + 1e-6)
    assert soft.metadata["segmentation_type"] == "FRACTIONAL"
    stored = np.round(fractions[..., 0] * 255)
    np.testing.assert_array_equal(np.asarray(read_seg_mask(path, image, segment=1).data),
                                  stored / 255 >= np.float32(0.5))
    np.testing.assert_array_equal(
        np.asarray(read_seg_mask(path, image, segment=1, threshold=0.9).data),
        stored / 255 >= np.float32(0.9))
    core = np.asarray(open_mask(path, image, roi="core").data)
    np.testing.assert_array_equal(core, fractions[..., 1] >= 0.5)


def test_wrong_series_and_frame_of_reference(tmp_path, binary_seg, image, slices):
    ds = pydicom.dcmread(binary_seg)
    ds.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4.5"
    ds.save_as(tmp_path / "other_series.dcm")
    with pytest.raises(ReferenceMismatchError) as info:
        read_seg_mask(tmp_path / "other_series.dcm", image, segment=1)
    assert "1.2.3.4.5" in str(info.value) and str(slices[0].SeriesInstanceUID) in str(info.value)

    ds = pydicom.dcmread(binary_seg)
    ds.FrameOfReferenceUID = "1.2.3.4.6"
    ds.save_as(tmp_path / "other_for.dcm")
    with pytest.raises(ReferenceMismatchError) as info:
        read_seg_mask(tmp_path / "other_for.dcm", image, segment=1)
    assert "1.2.3.4.6" in str(info.value)
    assert str(slices[0].FrameOfReferenceUID) in str(info.value)


def test_frame_off_the_image_grid(tmp_path, binary_seg, image):
    ds = pydicom.dcmread(binary_seg)
    position = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    position.ImagePositionPatient = [float(v) + d for v, d in
                                     zip(position.ImagePositionPatient, (0.2, 0.0, 0.0))]
    ds.save_as(tmp_path / "shifted.dcm")
    with pytest.raises(MaskReadError, match="frame 1 .* does not lie on the image's voxel grid"):
        read_seg_mask(tmp_path / "shifted.dcm", image, segment=1)


@pytest.mark.parametrize("fraction", [0.4, 0.8, 0.98])
def test_truncated_seg(tmp_path, binary_seg, image, fraction):
    path = tmp_path / "seg.dcm"
    path.write_bytes(binary_seg.read_bytes())
    truncate(path, fraction)
    with pytest.raises(CorruptVolumeError, match="seg.dcm: truncated or corrupt DICOM-SEG"):
        read_seg_mask(path, image, segment=1)


def test_open_volume_on_a_seg_says_how_to_read_it(binary_seg):
    with pytest.raises(NotAnImageError,
                       match=r"SEG mask object \(segments: 'Tumour', 'Node', 'noise'\).*"
                             r"read_seg_mask"):
        open_volume(binary_seg)


@pytest.mark.skipif(not (PHANTOM / "dicom" / "image").is_dir(),
                    reason=f"IBSI-1 CT phantom not found at {PHANTOM} (not redistributable)")
def test_round_trip_on_the_ibsi_ct_phantom(tmp_path):
    series = PHANTOM / "dicom" / "image"
    image = open_volume(series)
    expected = np.asarray(open_volume(PHANTOM / "mask.nii.gz").data) != 0
    path = write_seg(tmp_path / "gtv.dcm", ct_slices(series), expected[..., None], ["GTV-1"])
    mask = read_seg_mask(path, image)
    np.testing.assert_array_equal(np.asarray(mask.data), expected)
    assert mask.metadata["n_frames"] == 26  # only the slices the tumour touches are stored


def test_label_map_seg(tmp_path, slices, image):
    import highdicom as hd
    from _dicom_masks import _segmentation

    labels = np.zeros((5, 16, 16), np.uint8)
    labels[1:3, 2:6, 2:6] = 1
    labels[2:4, 8:12, 8:14] = 2
    descriptions = [hd.seg.SegmentDescription(
        segment_number=i + 1, segment_label=label,
        segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
        segmented_property_type=hd.sr.CodedConcept("39607008", "SCT", "Lung"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for i, label in enumerate(["left", "right"])]
    _segmentation(hd, slices, labels, hd.seg.SegmentationTypeValues.LABELMAP,
                  descriptions).save_as(tmp_path / "labelmap.dcm")
    for segment, value in (("left", 1), (2, 2)):
        mask = read_seg_mask(tmp_path / "labelmap.dcm", image, segment=segment)
        assert mask.metadata["segmentation_type"] == "LABELMAP"
        np.testing.assert_array_equal(np.asarray(mask.data), labels == value)
