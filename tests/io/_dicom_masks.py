"""Build RTSTRUCT and DICOM-SEG files on pydicom's 5-slice CT series from known masks.

Voxel indices go to patient coordinates straight from the CT headers (ImagePositionPatient,
ImageOrientationPatient, PixelSpacing), not through medimg_fast, so the reader is checked
against an independent geometry.
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
PHANTOM = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ibsi1_ct"


def ct_slices(folder=CT5N):
    """The CT datasets sorted inferior to superior (the array order of the series)."""
    datasets = [pydicom.dcmread(os.path.join(folder, f)) for f in sorted(os.listdir(folder))]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    return datasets


def index_to_lps(datasets, zyx):
    """LPS mm of continuous (z, y, x) indices, from the headers of the sorted slices."""
    zyx = np.atleast_2d(np.asarray(zyx, dtype=np.float64))
    first = np.array([float(v) for v in datasets[0].ImagePositionPatient])
    second = np.array([float(v) for v in datasets[1].ImagePositionPatient])
    iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    row_mm, col_mm = (float(v) for v in datasets[0].PixelSpacing)
    return (first + zyx[:, :1] * (second - first) + zyx[:, 2:3] * col_mm * iop[:3]
            + zyx[:, 1:2] * row_mm * iop[3:])


def write_rtstruct(path, datasets, rois, *, series_uid=None, frame_of_reference_uid=None):
    """An RTSTRUCT whose ROIs are ``(name, [(z, [(y, x), ...]), ...])`` polygons in voxels.

    A contour may instead be an ``(n, 3)`` LPS array, written as is.
    """
    ref = datasets[0]
    for_uid = frame_of_reference_uid or str(ref.FrameOfReferenceUID)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.PatientID = str(ref.get("PatientID", "test"))
    ds.StudyInstanceUID = ref.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = for_uid
    ds.StructureSetLabel = "test"

    series = Dataset()
    series.SeriesInstanceUID = series_uid or str(ref.SeriesInstanceUID)
    series.ContourImageSequence = Sequence()
    for image in datasets:
        item = Dataset()
        item.ReferencedSOPClassUID = image.SOPClassUID
        item.ReferencedSOPInstanceUID = image.SOPInstanceUID
        series.ContourImageSequence.append(item)
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study.ReferencedSOPInstanceUID = ref.StudyInstanceUID
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = for_uid
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])

    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    for number, (name, contours) in enumerate(rois, start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = for_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = [255, 0, 0]
        item.ContourSequence = Sequence()
        for contour in contours:
            if isinstance(contour, np.ndarray):
                points = contour
            else:
                z, yx = contour
                yx = np.asarray(yx, dtype=np.float64)
                points = index_to_lps(datasets, np.c_[np.full(len(yx), z), yx])
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(points)
            c.ContourData = [f"{v:.6f}" for v in points.ravel()]
            item.ContourSequence.append(c)
        ds.ROIContourSequence.append(item)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def write_seg(path, datasets, masks, labels, *, fractional=False):
    """A DICOM-SEG (highdicom) of ``masks`` (z, y, x, segment): bool, or fractions in [0, 1]."""
    import highdicom as hd

    algorithm = hd.AlgorithmIdentificationSequence(
        name="test", family=hd.sr.CodedConcept("123109", "DCM", "Manual Processing"),
        version="1")
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1, segment_label=label,
            segmented_property_category=hd.sr.CodedConcept("91723000", "SCT",
                                                           "Anatomical Structure"),
            segmented_property_type=hd.sr.CodedConcept("39607008", "SCT", "Lung"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm)
        for i, label in enumerate(labels)
    ]
    seg_type = (hd.seg.SegmentationTypeValues.FRACTIONAL if fractional
                else hd.seg.SegmentationTypeValues.BINARY)
    pixels = np.asarray(masks, dtype=np.float32 if fractional else bool)
    with warnings.catch_warnings():
        # The phantom's PatientName "PAT1" has one component; highdicom warns and copies it.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended "
                                "person name", category=UserWarning)
        seg = _segmentation(hd, datasets, pixels, seg_type, descriptions)
    seg.save_as(path)
    return Path(path)


def _segmentation(hd, datasets, pixels, seg_type, descriptions):
    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, segmentation_type=seg_type,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=2,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
        manufacturer_model_name="test", software_versions="1", device_serial_number="1",
        max_fractional_value=255)


def truncate(path, fraction=0.6):
    """Cut a file to `fraction` of its size, as an interrupted copy would."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    return Path(path)
