"""Build small PET and CT DICOM series with pydicom, with known activity, dose and times.

The activity concentration of every voxel (Bq/mL) is returned beside the files, in array order
(slices inferior to superior), so SUV can be checked by hand, not through medimg_fast.
"""

import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PET_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.128"
F18_HALF_LIFE_S = 6586.2


def write_pet_series(folder, *, n_slices=4, shape=(6, 5), patient_id="PET01",
                     series_time="110000", series_date="20240101",
                     injection_time="100000", injection_datetime=None,
                     acquisition_time=None, dose_bq=370e6, half_life_s=F18_HALF_LIFE_S,
                     weight_kg="70", units="BQML", decay_correction="START", omit=(),
                     omit_radiopharmaceutical=(), study_uid=None, frame_of_reference_uid=None,
                     series_uid=None, seed=0, prefix="PT"):
    """Write a PET series; returns ``(paths, activity_bq_ml)`` with activity ``(z, y, x)``.

    Each slice has its own RescaleSlope (as GE writes them).  `omit` drops top-level
    keywords, `omit_radiopharmaceutical` keywords of the RadiopharmaceuticalInformationSequence
    item (``"RadiopharmaceuticalInformationSequence"`` in `omit` drops the sequence).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    rows, columns = shape
    paths, activity = [], []
    for i in range(n_slices):
        stored = rng.integers(0, 4000, size=shape, dtype=np.uint16)
        slope = 0.5 + 0.25 * i
        activity.append(stored.astype(np.float64) * slope)

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = PET_SOP_CLASS
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = PET_SOP_CLASS
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "PT"
        ds.PatientID = patient_id
        ds.PatientName = f"Test^{patient_id}"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.SeriesDescription = "PET WB"
        ds.SeriesDate = series_date
        ds.SeriesTime = series_time
        ds.AcquisitionDate = series_date
        ds.AcquisitionTime = acquisition_time or series_time
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [-10.0, -12.0, 4.0 * i - 30.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [4.0, 4.0]
        ds.SliceThickness = 4.0
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = "0"
        ds.Units = units
        ds.DecayCorrection = decay_correction
        ds.CorrectedImage = ["ATTN", "DECY"]
        ds.PatientWeight = weight_kg
        item = Dataset()
        item.Radiopharmaceutical = "Fluorodeoxyglucose"
        item.RadionuclideTotalDose = f"{dose_bq:g}"
        item.RadionuclideHalfLife = f"{half_life_s:g}"
        item.RadiopharmaceuticalStartTime = injection_time
        if injection_datetime is not None:
            item.RadiopharmaceuticalStartDateTime = injection_datetime
        for keyword in omit_radiopharmaceutical:
            if keyword in item:
                delattr(item, keyword)
        ds.RadiopharmaceuticalInformationSequence = Sequence([item])
        for keyword in omit:
            if keyword in ds:
                delattr(ds, keyword)
        ds.PixelData = stored.tobytes()
        path = folder / f"{prefix}{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths, np.stack(activity)


CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")


def write_ct_copy(folder, *, patient_id, series_uid=None, study_uid=None,
                  frame_of_reference_uid=None, drop=(), prefix="CT", orientation=None):
    """Copy pydicom's 5-slice CT series with new UIDs; returns the new datasets (sorted by z).

    `drop` leaves out slices by index (sorted inferior to superior): a missing slice.
    `orientation` maps a slice index to another ImageOrientationPatient.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    datasets = [pydicom.dcmread(os.path.join(CT5N, f)) for f in sorted(os.listdir(CT5N))]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    out = []
    for i, ds in enumerate(datasets):
        if i in drop:
            continue
        ds.PatientID = patient_id
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = "CT chest"
        if orientation and i in orientation:
            ds.ImageOrientationPatient = orientation[i]
        ds.filename = str(folder / f"{prefix}{i:03d}.dcm")
        ds.save_as(ds.filename, enforce_file_format=True)
        out.append(ds)
    return out
