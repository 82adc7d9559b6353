"""The bundled default study: a synthetic labelled CT archive and the whole pipeline on it.

:func:`generate_archive` writes seeded, CT-like volumes in Hounsfield units (body, fat,
lungs, spine, liver, and a lesion with its mask) as NIfTI, a few as DICOM series and a few
as Zarr, plus a manifest ``path,label,mask,subject``.  The two classes differ only in the
*spatial structure* of the lesion texture: ``smooth`` lesions carry low-frequency blotches,
``speckled`` lesions fine-grained speckle, with the same distribution of mean intensity,
amplitude and size.  First-order statistics therefore barely separate the classes, while
co-occurrence (texture) features do; the tests check both.

:func:`run_study` is the pipeline of ``medimg-fast run``: features over the archive
(:func:`medimg_fast.archive.process_archive`), cross-validated training
(:func:`medimg_fast.classify.train`) and the HTML report (:mod:`medimg_fast.report`).
:func:`run_demo` is ``medimg-fast demo``: generate, summarise the real scans shipped with
pydicom and nibabel, then :func:`run_study`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from ._shared.utils import one_line

__all__ = [
    "DEMO_FEATURE_SETTINGS",
    "DEMO_SIZES",
    "DemoSize",
    "StudyResult",
    "generate_archive",
    "real_scan_paths",
    "run_demo",
    "run_study",
    "summarise_real_scans",
    "synthetic_ct",
]

CLASSES = ("smooth", "speckled")
#: Texture scale of the lesion per class: the sigma (voxels) of the Gaussian that smooths its
#: white noise is drawn from a normal ``(mean, sd)``, clipped to [0.4, 2.5].  The classes
#: overlap, so a classifier does well but not perfectly (the demo's CV AUC is about 0.85).
TEXTURE_SIGMA = {"smooth": (1.3, 0.25), "speckled": (0.8, 0.25)}
#: CT display window for soft tissue and the lesion: level 40 HU, width 400 HU
SOFT_TISSUE_WINDOW = (-160.0, 240.0)


@dataclasses.dataclass(frozen=True)
class DemoSize:
    """How large a demo archive is.

    Parameters
    ----------
    n_volumes : int
        Volumes in the archive (half per class).
    shape_range : (int, int)
        Each axis length is drawn uniformly from this closed range.
    n_dicom, n_zarr : int
        How many of the volumes are written as a DICOM series / a Zarr store instead of NIfTI.
    """

    n_volumes: int
    shape_range: tuple
    n_dicom: int
    n_zarr: int


#: ``--size`` presets; ``medium`` is the default of ``medimg-fast demo``.
DEMO_SIZES = {
    "small": DemoSize(24, (48, 56), 2, 2),
    "medium": DemoSize(100, (96, 128), 3, 3),
    "large": DemoSize(300, (128, 192), 6, 6),
}

#: Feature settings of the demo: IBSI fixed bin size of 10 HU suits CT; no filter bank, so
#: every feature is an IBSI tag.
DEMO_FEATURE_SETTINGS = {"bin_width": 10.0, "families": ["stat", "ih", "cm", "morph"]}


# ---------------------------------------------------------------------------------------------
# Synthetic CT volumes
# ---------------------------------------------------------------------------------------------

def _ellipsoid(grid, centre, radii):
    z, y, x = grid
    return (((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
            + ((x - centre[2]) / radii[2]) ** 2) <= 1.0


def synthetic_ct(rng, shape, label):
    """One CT-like volume in HU and its lesion mask.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (int, int, int)
        ``(z, y, x)``.
    label : {"smooth", "speckled"}

    Returns
    -------
    hu : ndarray of int16
        Air -1000, fat about -100, lungs about -820, soft tissue about 40, spine about 450,
        liver about 60, the lesion at a random mean of 20..70 HU, and Gaussian noise (12 HU).
    mask : ndarray of uint8
        The lesion.

    Notes
    -----
    Anatomy is placed in normalised coordinates (-1..1 along each axis), so it scales with
    the grid.  The lesion texture is white noise smoothed by a Gaussian of 2.0 voxels
    (``smooth``) or 0.6 voxels (``speckled``), rescaled to zero mean and unit standard
    deviation over the lesion, times an amplitude of 25..40 HU; the lesion mean, amplitude
    and radii come from the same distributions in both classes.
    """
    from scipy import ndimage

    if label not in CLASSES:
        raise ValueError(f"`label` must be one of {CLASSES}, got {label!r}")
    shape = tuple(int(s) for s in shape)
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    grid = np.meshgrid(*axes, indexing="ij", sparse=True)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    squash = rng.uniform(0.85, 1.0)
    body = _ellipsoid(grid, (0, 0, 0), (1.2, 0.75 * squash, 0.92))
    hu[body] = -100.0
    muscle = _ellipsoid(grid, (0, 0, 0), (1.2, 0.68 * squash, 0.85))
    hu[muscle] = 40.0
    for side in (-1, 1):
        lung = _ellipsoid(grid, (-0.45, -0.1, side * 0.45), (0.5, 0.45 * squash, 0.3))
        hu[lung] = -820.0
    spine = ((grid[1] - 0.45 * squash) / 0.12) ** 2 + (grid[2] / 0.12) ** 2 <= 1.0
    hu[spine & muscle] = 450.0
    liver_c = (0.35, -0.05, -0.3)
    liver_r = (0.45, 0.45 * squash, 0.42)
    liver = _ellipsoid(grid, liver_c, liver_r)
    hu[liver] = 60.0

    # The lesion sits inside the liver; its size is drawn independently of the class.
    radii = rng.uniform(0.13, 0.2, size=3)
    offset = rng.uniform(-0.35, 0.35, size=3) * (np.asarray(liver_r) - radii)
    centre = np.asarray(liver_c) + offset
    lesion = _ellipsoid(grid, centre, radii)
    idx = np.nonzero(lesion)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
    mean_sigma, sd_sigma = TEXTURE_SIGMA[label]
    sigma = float(np.clip(rng.normal(mean_sigma, sd_sigma), 0.4, 2.5))
    texture = ndimage.gaussian_filter(rng.standard_normal(
        tuple(s.stop - s.start for s in box)).astype(np.float32), sigma, mode="reflect")
    inside = lesion[box]
    values = texture[inside]
    texture = (texture - values.mean()) / values.std()
    lesion_hu = rng.uniform(20.0, 70.0) + rng.uniform(25.0, 40.0) * texture
    region = hu[box]
    region[inside] = lesion_hu[inside]

    hu += rng.normal(0.0, 12.0, size=shape).astype(np.float32)
    np.clip(hu, -1024, 3071, out=hu)
    return np.rint(hu).astype(np.int16), lesion.astype(np.uint8)


def _nifti_affine(spacing):
    # The io convention reads NIfTI data[i, j, k] as (z, y, x) = (k, j, i) after reorienting
    # to (S, P, L); RAS axes (-x, -y, +z) are L, P, S, so this affine round-trips exactly.
    sz, sy, sx = spacing
    return np.diag([-sx, -sy, sz, 1.0])


def write_nifti(array, path, spacing):
    """Write a ``(z, y, x)`` array as NIfTI so that ``open_volume(path).data`` equals it."""
    import nibabel as nib

    image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)),
                            _nifti_affine(spacing))
    image.header.set_xyzt_units("mm")
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    nib.save(image, str(path))
    return Path(path)


def write_dicom_series(hu, folder, spacing, *, patient_id="DEMO", seed=0):
    """Write a ``(z, y, x)`` HU array as an axial CT series (one file per slice).

    Stored values are ``HU + 1024`` as unsigned 16-bit with RescaleIntercept -1024, slices
    at ImagePositionPatient ``(0, 0, k * spacing_z)``, orientation ``1,0,0,0,1,0``, explicit
    VR little endian, so ``open_volume(folder).data`` equals `hu`.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sz, sy, sx = (float(s) for s in spacing)
    entropy = [seed, abs(hash(patient_id)) % (2**31)]
    study_uid = generate_uid(entropy_srcs=[f"study-{e}" for e in entropy])
    series_uid = generate_uid(entropy_srcs=[f"series-{e}" for e in entropy])
    frame_uid = generate_uid(entropy_srcs=[f"frame-{e}" for e in entropy])
    stored = (hu.astype(np.int32) + 1024).clip(0, 65535).astype(np.uint16)
    for k in range(hu.shape[0]):
        sop_uid = generate_uid(entropy_srcs=[f"sop-{e}-{k}" for e in entropy])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.PatientID = patient_id
        ds.PatientName = f"Synthetic^{patient_id}"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, round(k * sz, 6)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [sy, sx]
        ds.SliceThickness = sz
        ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        ds.save_as(folder / f"slice{k:04d}.dcm", enforce_file_format=True)
    return folder


def _iter_progress(iterable, total, desc, progress):
    if progress:
        from tqdm.auto import tqdm
        return tqdm(iterable, total=total, desc=desc, unit="vol")
    return iterable


def generate_archive(out_dir, *, size="medium", n_volumes=None, shape_range=None, seed=0,
                     progress=False):
    """Write a labelled synthetic archive and its manifest.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Receives ``nifti/``, ``dicom/``, ``zarr/``, ``masks/`` and ``manifest.csv``.
    size : {"small", "medium", "large"}
        A preset of :data:`DEMO_SIZES`.
    n_volumes, shape_range : optional
        Override the preset.
    seed : int
        The archive is a deterministic function of the seed and the sizes.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``manifest`` (Path), ``n_volumes``, ``megavoxels``, ``seconds``, ``formats``
        (count per format).

    Notes
    -----
    Volumes come in pairs sharing a ``subject`` and a label (a scan and its follow-up), so
    an honest evaluation must group folds by subject.
    """
    if size not in DEMO_SIZES:
        raise ValueError(f"`size` must be one of {sorted(DEMO_SIZES)}, got {size!r}")
    preset = DEMO_SIZES[size]
    n_volumes = preset.n_volumes if n_volumes is None else int(n_volumes)
    if n_volumes < 4:
        raise ValueError(f"`n_volumes` must be at least 4, got {n_volumes}")
    lo, hi = preset.shape_range if shape_range is None else tuple(shape_range)
    if not 16 <= lo <= hi:
        raise ValueError(f"`shape_range` must be (low, high) with 16 <= low <= high, "
                         f"got {(lo, hi)!r}")
    out_dir = Path(out_dir)
    for sub in ("nifti", "dicom", "zarr", "masks"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # Spread the DICOM and Zarr volumes over both classes.
    order = rng.permutation(n_volumes)
    n_dicom = min(preset.n_dicom, n_volumes // 4)
    n_zarr = min(preset.n_zarr, n_volumes // 4)
    fmt = {int(i): "dicom" for i in order[:n_dicom]}
    fmt.update({int(i): "zarr" for i in order[n_dicom:n_dicom + n_zarr]})

    start = time.perf_counter()
    rows, voxels, counts = [], 0, {"nifti": 0, "dicom": 0, "zarr": 0}
    for i in _iter_progress(range(n_volumes), n_volumes, "generate", progress):
        subject = i // 2
        label = CLASSES[subject % 2]
        vol_rng = np.random.default_rng([seed, i])
        shape = tuple(int(s) for s in vol_rng.integers(lo, hi + 1, size=3))
        # About 350 mm across in-plane and 250 mm head to foot, whatever the grid.
        spacing = (round(250.0 / shape[0], 4), round(350.0 / shape[1], 4),
                   round(350.0 / shape[2], 4))
        hu, mask = synthetic_ct(vol_rng, shape, label)
        voxels += hu.size
        name = f"case{i:03d}"
        kind = fmt.get(i, "nifti")
        if kind == "dicom":
            image_path = write_dicom_series(hu, out_dir / "dicom" / name, spacing,
                                            patient_id=f"S{subject:03d}", seed=seed)
            mask_path = write_nifti(mask, out_dir / "masks" / f"{name}_mask.nii.gz", spacing)
        elif kind == "zarr":
            from .io import save_volume
            image_path = save_volume(hu, out_dir / "zarr" / f"{name}.zarr", spacing=spacing,
                                     overwrite=True)
            mask_path = save_volume(mask, out_dir / "masks" / f"{name}_mask.zarr",
                                    spacing=spacing, overwrite=True)
        else:
            image_path = write_nifti(hu, out_dir / "nifti" / f"{name}.nii.gz", spacing)
            mask_path = write_nifti(mask, out_dir / "masks" / f"{name}_mask.nii.gz", spacing)
        counts[kind] += 1
        rows.append({"path": os.path.relpath(image_path, out_dir), "label": label,
                     "mask": os.path.relpath(mask_path, out_dir), "subject": f"S{subject:03d}"})
    manifest = out_dir / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "mask", "subject"])
        writer.writeheader()
        writer.writerows(rows)
    return {"manifest": manifest, "n_volumes": n_volumes, "megavoxels": voxels / 1e6,
            "seconds": time.perf_counter() - start, "formats": counts}


# ---------------------------------------------------------------------------------------------
# Real scans shipped with pydicom and nibabel
# ---------------------------------------------------------------------------------------------

def real_scan_paths():
    """``{name: path}`` of the sample scans shipped in the installed pydicom and nibabel.

    Found at run time through the packages, never by fixed paths; missing ones are left out.
    """
    paths = {}
    try:
        from pydicom.data import get_testdata_file
        for name in ("CT_small.dcm", "MR_small.dcm", "MR_truncated.dcm"):
            p = get_testdata_file(name)
            if p:
                paths[name] = p
        ct5n = get_testdata_file("dicomdirtests/98892001/CT5N")
        if ct5n and os.path.isdir(ct5n):
            paths["CT5N series"] = ct5n
    except ImportError:
        pass
    try:
        import nibabel
        data = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data")
        for name in ("anatomical.nii", "example4d.nii.gz"):
            if os.path.exists(os.path.join(data, name)):
                paths[name] = os.path.join(data, name)
    except ImportError:
        pass
    return paths


def summarise_real_scans(*, sigma_mm=1.0, backend="auto", image_dir=None):
    """Read each shipped scan, smooth it with a Gaussian of `sigma_mm`, and summarise.

    Returns
    -------
    rows : list of dict
        ``name, format, shape, spacing_mm, modality, min, mean, max, smoothed_std,
        seconds, status`` per scan; a scan that cannot be read (``MR_truncated.dcm``) gets
        ``status`` ``"error: <type>: <message>"`` and the others are still summarised.
    images : list of dict
        When `image_dir` is given, ``{"title", "path"}`` of a PNG per readable scan
        (middle slice, original and smoothed).
    """
    from . import filters
    from .io import detect_format, open_volume

    rows, images = [], []
    for name, path in real_scan_paths().items():
        row = {"name": name, "format": "", "shape": "", "spacing_mm": "", "modality": "",
               "min": math.nan, "mean": math.nan, "max": math.nan, "smoothed_std": math.nan,
               "seconds": math.nan, "status": "ok"}
        start = time.perf_counter()
        try:
            row["format"] = detect_format(path)
            vol = open_volume(path)
            data = vol.data
            if data.ndim == 4:  # an fMRI series: summarise its first volume
                data = data[0]
            image = np.asarray(data.compute(), dtype=np.float32)
            sigma = tuple(sigma_mm / s for s in vol.spacing)
            smoothed = filters.gaussian_filter(image, sigma, backend=backend)
            row.update(shape="x".join(str(s) for s in vol.shape),
                       spacing_mm="x".join(f"{s:.3g}" for s in vol.spacing),
                       modality=vol.modality or "", min=float(image.min()),
                       mean=float(image.mean()), max=float(image.max()),
                       smoothed_std=float(smoothed.std()))
            if image_dir is not None:
                from .report import save_slices_png
                z = image.shape[0] // 2
                png = save_slices_png(
                    Path(image_dir) / f"real_{_slug(name)}.png",
                    [("original", image[z]), (f"Gaussian {sigma_mm:g} mm", smoothed[z])],
                    title=name)
                images.append({"title": name, "path": png})
        except Exception as exc:  # noqa: BLE001  (a broken sample such as MR_truncated is reported)
            row["status"] = f"error: {type(exc).__name__}: {one_line(exc)[:160]}"
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    return rows, images


def _slug(text):
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


# ---------------------------------------------------------------------------------------------
# The study: features -> training -> report
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class StudyResult:
    """What :func:`run_study` produced.

    Attributes
    ----------
    archive : medimg_fast.archive.ArchiveResult
    training : medimg_fast.classify.TrainResult or None
        None when too few volumes succeeded to cross-validate.
    metrics : dict
        Cross-validated metrics (empty without training).
    report : pathlib.Path or None
    model_path : pathlib.Path or None
        The model folder (``model.skops``, ``model_card.json``, ``metrics.json``).
    stages : list of dict
        ``stage, seconds, volumes, megavoxels`` per stage: the throughput table.
    warnings : list of str
        The archive's and the training's warnings (also in the report and model card).
    """

    archive: object
    training: object
    metrics: dict
    report: Path | None
    model_path: Path | None
    stages: list
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.archive.n_failed else 0

    def summary(self) -> dict:
        return {
            "succeeded": int(self.archive.n_succeeded),
            "failed": int(self.archive.n_failed),
            "skipped": int(self.archive.n_skipped),
            "features": str(self.archive.features_path),
            "errors": str(self.archive.errors_path),
            "model": None if self.model_path is None else str(self.model_path),
            "report": None if self.report is None else str(self.report),
            "metrics": _jsonable(self.metrics),
            "stages": _jsonable(self.stages),
            "reused": int(self.archive.n_skipped),
            "warnings": list(self.warnings),
        }


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def feature_columns(table, exclude=()):
    """The numeric feature columns of a features table (metadata and timings left out)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    from .archive import TIMING_COLUMNS

    meta = {"path", "mask", "roi", "label", "subject", *TIMING_COLUMNS, *exclude}
    return [c for c in table.columns if c not in meta and is_numeric_dtype(table[c].dtype)
            and not is_bool_dtype(table[c].dtype)]


def _usable_features(table, columns, *, impute=False):
    """``(kept, dropped)``: columns constant over the finite rows carry no information;
    columns with NaN or infinite values in some rows are dropped unless `impute` (the
    model's pipeline then fills them with the training-fold median).  ``dropped`` maps
    ``"constant"`` and ``"non-finite"`` to column names."""
    values = table[columns].to_numpy(dtype=np.float64)
    finite_mask = np.isfinite(values)
    finite = finite_mask.all(axis=0)
    clean = np.where(finite_mask, values, np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            spread = np.nanmax(clean, axis=0) - np.nanmin(clean, axis=0)
    varying = np.nan_to_num(spread, nan=0.0) > 0
    kept, dropped = [], {"constant": [], "non-finite": []}
    for c, ok_finite, ok_vary in zip(columns, finite, varying):
        if not ok_vary:
            dropped["constant"].append(c)
        elif not ok_finite and not impute:
            dropped["non-finite"].append(c)
        else:
            kept.append(c)
    return kept, dropped


#: Column names that look like a subject / patient identifier (compared in lower case).
_SUBJECT_LIKE = ("subject", "subject_id", "patient", "patient_id", "patientid", "participant",
                 "participant_id", "mrn", "case_id", "individual")


def _subject_like_columns(table, label):
    return [c for c in table.columns if str(c).lower() in _SUBJECT_LIKE and c != label
            and table[c].notna().any()]


def extraction_provenance(table, settings=None, pipeline_options=None):
    """How a features table was made, for the model card: ``masked`` (True, False or
    ``"mixed"``), the counts, the feature settings and the pipeline options."""
    n = len(table)
    n_masked = int(table["mask"].notna().sum()) if "mask" in table.columns else 0
    masked = True if n and n_masked == n else False if n_masked == 0 else "mixed"
    return {"masked": masked, "n_rows": n, "n_masked": n_masked,
            "settings": settings, "pipeline": dict(pipeline_options or {})}


def train_from_table(table, *, label="label", group=None, model="random_forest", cv=5,
                     out_dir=None, feature_settings=None, impute=False, pipeline_options=None):
    """Cross-validated training on a features table with :func:`medimg_fast.classify.train`.

    Feature columns are the numeric columns other than the metadata, the timings, `label`
    and `group`, less those that are constant (no information) and, unless `impute`, those
    that are NaN or infinite in some rows; with `impute` such columns are kept and the
    model's pipeline fills them with the training-fold median.  `cv` is lowered to what
    the smallest class (or the number of subjects) allows.

    ``training.warnings`` lists what to check before trusting the metrics: near-perfect
    CV (with the features that carry it), a subject-like column while CV is not grouped,
    and dropped features (named, with their count).

    Returns
    -------
    training : medimg_fast.classify.TrainResult
    model_dir : pathlib.Path or None
        ``out_dir`` (``model.skops``, ``model_card.json``, ``metrics.json``) when given.
    """
    from . import classify

    if label not in table.columns:
        raise ValueError(f"`label` column {label!r} is not in the features table; "
                         f"its columns include {list(table.columns[:6])}")
    if group is not None and group not in table.columns:
        raise ValueError(f"`group` column {group!r} is not in the features table; "
                         f"its columns include {list(table.columns[:6])}")
    if table[label].isna().any():
        n = int(table[label].isna().sum())
        raise ValueError(f"{n} row(s) of the features table have no {label!r}: training "
                         "needs a label for every row (predict unlabelled cases instead)")
    columns, dropped = _usable_features(
        table, feature_columns(table, exclude=(label, group or "")), impute=impute)
    if not columns:
        raise ValueError("the features table has no usable numeric feature column")
    labels = table[label].astype(str).to_numpy()
    groups = None if group is None else table[group].astype(str).to_numpy()
    names, counts = np.unique(labels, return_counts=True)
    if len(names) < 2:
        raise ValueError(f"training needs at least two classes in column {label!r}, "
                         f"got {names.tolist()}")
    n_splits = min(int(cv), int(counts.min()))
    if groups is not None:
        n_splits = min(n_splits, len(set(groups)))
    if n_splits < 2:
        raise ValueError(f"too few volumes per class to cross-validate: "
                         f"{dict(zip(names.tolist(), counts.tolist()))}")
    training = classify.train(table[columns], labels, model=model, groups=groups,
                              cv=n_splits, settings=feature_settings)
    warnings = list(training.warnings)
    if group is None:
        like = _subject_like_columns(table, label)
        if like:
            per = table[like[0]].astype(str)
            repeated = int((per.value_counts() > 1).sum())
            warnings.append(
                f"column {like[0]!r} looks like a subject identifier ({repeated} of "
                f"{per.nunique()} value(s) on several rows) but cross-validation is not "
                f"grouped: rows of one subject in training and test folds inflate the "
                f"metrics; pass --group {like[0]} (group={like[0]!r})")
    for reason, cols in dropped.items():
        if not cols:
            continue
        shown = ", ".join(cols[:10]) + (f" and {len(cols) - 10} more" if len(cols) > 10 else "")
        hint = ("" if reason == "constant" else
                "; pass --impute (impute=True) to keep them, filled with the training "
                "median")
        warnings.append(f"{len(cols)} {reason} feature(s) dropped: {shown}{hint}")
    training.warnings = warnings
    settings = training.settings
    training.provenance = {
        "label_column": label, "group_column": group,
        "dropped_features": {k: list(v) for k, v in dropped.items()},
        "imputed": bool(impute),
        "extraction": extraction_provenance(table, settings, pipeline_options),
        "training_rows": classify.row_fingerprints(table, columns),
    }
    model_dir = None
    if out_dir is not None:
        model_dir = classify.save_model(training, out_dir)
        (Path(model_dir) / "metrics.json").write_text(
            json.dumps(_jsonable(training.metrics), indent=2))
    return training, model_dir


def run_study(source, out_dir, *, label="label", group=None, model="random_forest", cv=5,
              feature_settings=None, scheduler=None, n_workers=None, backend="auto",
              progress="auto", extra_stages=(), real_scans=None, real_images=(),
              examples=None, title="medimg-fast study", pipeline_options=None, megavoxels=None,
              impute=False, table_format="parquet", dashboard=False, command_line=None):
    """Features, cross-validated training and the HTML report for one archive.

    Parameters
    ----------
    source : str or os.PathLike
        A manifest CSV or a folder (see :func:`medimg_fast.archive.process_archive`).
    out_dir : str or os.PathLike
        Receives ``features/`` (``features.parquet``, ``errors.csv``), ``model/``
        (``model.skops``, ``metrics.json``) and ``report.html`` with ``images/``.
    label, group : str
        Column of the features table holding the class, and the subject column for grouped
        folds (``"subject"`` is used when present and `group` is None).
    model, cv :
        Passed to :func:`medimg_fast.classify.train`.
    feature_settings : dict or FeatureSettings, optional
    scheduler, n_workers, backend, progress :
        Passed to :func:`~medimg_fast.archive.process_archive`.
    extra_stages, real_scans, real_images, examples, title :
        Extra report content (the demo adds its generation stage and the real scans).
    megavoxels : float, optional
        Total size of the archive, when known, for the throughput table.
    pipeline_options : dict, optional
        More :class:`~medimg_fast.archive.PipelineConfig` fields (window, normalize, ...).
    impute : bool
        Keep features that are NaN in some rows (median-imputed) instead of dropping them.
    table_format, dashboard :
        Passed to :func:`~medimg_fast.archive.process_archive`.
    command_line : str, optional
        Shown in the report (how it was made).

    Returns
    -------
    StudyResult
    """
    from .archive import process_archive, write_feature_settings
    from .report import write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = list(extra_stages)
    settings = feature_settings
    if hasattr(settings, "to_dict"):
        settings = settings.to_dict()
    start = time.perf_counter()
    archive = process_archive(source, out_dir / "features", scheduler=scheduler,
                              n_workers=n_workers, progress=progress,
                              feature_settings=settings, backend=backend,
                              table_format=table_format, dashboard=dashboard,
                              **(pipeline_options or {}))
    seconds = time.perf_counter() - start
    write_feature_settings(out_dir / "features", settings, pipeline_options)
    table = archive.features
    if megavoxels is None and "megavoxels" in table.columns:
        megavoxels = float(table["megavoxels"].sum())  # as read, before any resampling
    n_computed = int(archive.n_succeeded + archive.n_failed - archive.n_skipped)
    stages.append({"stage": f"read + features of {n_computed} volume(s) (Dask, wall time)",
                   "seconds": seconds, "volumes": n_computed,
                   "megavoxels": math.nan if megavoxels is None else megavoxels})
    if "time_total_s" in table.columns and len(table):
        # The workers' own seconds per stage, summed over the volumes (reused ones too).
        for column, name in (("time_read_s", "read"), ("time_preprocess_s", "preprocess"),
                             ("time_filter_s", "filter"), ("time_features_s", "features")):
            if column in table.columns:
                stages.append({"stage": f"  {name}: sum over {len(table)} volume(s), "
                                        "on the workers",
                               "seconds": float(table[column].sum()), "volumes": len(table),
                               "megavoxels": float(table["megavoxels"].sum())})

    training = metrics = model_path = None
    columns, train_note = [], None
    if group is None and "subject" in table.columns and table["subject"].notna().all():
        group = "subject"
    try:
        start = time.perf_counter()
        training, model_path = train_from_table(
            table, label=label, group=group, model=model, cv=cv, out_dir=out_dir / "model",
            feature_settings=settings, impute=impute, pipeline_options=pipeline_options)
        metrics, columns = training.metrics, training.feature_names
        stages.append({"stage": f"training ({model}, {cv}-fold CV)",
                       "seconds": time.perf_counter() - start, "volumes": len(table),
                       "megavoxels": math.nan})
    except ValueError as exc:
        if archive.n_succeeded >= 4 and label in table.columns:
            raise
        train_note = f"no model trained: {exc}"

    warnings = list(archive.warnings) + list(getattr(training, "warnings", None) or [])
    report = write_report(out_dir / "report.html", title=title, source=str(source),
                          features=table, errors=archive.errors, training=training,
                          metrics=metrics or {}, feature_names=columns, label=label,
                          stages=stages, real_scans=real_scans, real_images=real_images,
                          examples=examples, note=train_note, warnings=warnings,
                          settings={"feature settings": settings,
                                    "pipeline": pipeline_options or {}},
                          command_line=command_line,
                          groups=(None if group is None or training is None
                                  else table[group].astype(str).to_numpy()))
    return StudyResult(archive=archive, training=training, metrics=metrics or {},
                       report=report, model_path=model_path, stages=stages,
                       warnings=warnings)


def example_responses(volume_path, mask_path=None, *, backend="auto", with_roi=False):
    """Filter responses on the middle lesion slice of one volume, for the report.

    Returns ``(panels, seconds_per_filter)``: panels are ``(title, 2-D array)`` and the timing
    covers each 3-D filter on the whole volume; with `with_roi` also the ROI's slice (or
    None) and the slice index.
    """
    from . import filters
    from .io import open_volume

    vol = open_volume(volume_path)
    image = np.asarray(vol.data.compute(), dtype=np.float32)
    z = image.shape[0] // 2
    mask = None
    if mask_path is not None:
        mask = np.asarray(open_volume(mask_path).data.compute()) != 0
        if mask.any():
            z = int(np.round(np.nonzero(mask)[0].mean()))
    sigma = tuple(1.5 / s for s in vol.spacing)
    bank = [
        ("Gaussian 1.5 mm", lambda a: filters.gaussian_filter(a, sigma, backend=backend)),
        ("LoG 1.5 mm", lambda a: filters.gaussian_laplace(a, sigma, backend=backend)),
        ("gradient magnitude", lambda a: filters.gradient_magnitude(a, backend=backend)),
        ("median 3x3x3", lambda a: filters.median_filter(a, size=3, backend=backend)),
    ]
    panels, timings = [("original", image[z], SOFT_TISSUE_WINDOW)], []
    for name, func in bank:
        func(image[:8, :8, :8])  # JIT compilation is not throughput
        start = time.perf_counter()
        out = func(image)
        timings.append({"filter": name, "seconds": time.perf_counter() - start,
                        "megavoxels": image.size / 1e6})
        response = np.asarray(out)[z]
        # smoothed intensities stay in HU: show them in the same window as the original
        panels.append((name, response, SOFT_TISSUE_WINDOW) if name.startswith(("Gaussian",
                      "median")) else (name, response))
    if with_roi:
        return panels, timings, (None if mask is None else mask[z]), z
    return panels, timings


def run_demo(out_dir, *, size="medium", seed=0, n_workers=None, scheduler=None,
             backend="auto", progress=True, model="random_forest", cv=5, dashboard=False,
             command_line=None):
    """``medimg-fast demo``: generate the synthetic archive and run the whole study on it.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Receives ``archive/`` (the generated volumes and ``manifest.csv``), ``features/``,
        ``model/``, ``report.html`` and ``images/``.
    size : {"small", "medium", "large"}
        See :data:`DEMO_SIZES`.
    seed : int
    n_workers, scheduler, backend :
        Passed to :func:`medimg_fast.archive.process_archive`.
    progress : bool or "auto"
        True: progress bars on the long stages; "auto": the archive's progress lines when
        stderr is not a terminal (see :func:`~medimg_fast.archive.process_archive`).
    dashboard, command_line :
        Passed to :func:`run_study`.

    Returns
    -------
    StudyResult
    """
    from .report import save_slices_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = out_dir / "images"
    images.mkdir(exist_ok=True)
    gen = generate_archive(out_dir / "archive", size=size, seed=seed, progress=progress is True)
    stages = [{"stage": "generate + write archive", "seconds": gen["seconds"],
               "volumes": gen["n_volumes"], "megavoxels": gen["megavoxels"]}]

    start = time.perf_counter()
    real_rows, real_images = summarise_real_scans(backend=backend, image_dir=images)
    stages.append({"stage": "real scans: read + Gaussian", "seconds": time.perf_counter() - start,
                   "volumes": len(real_rows), "megavoxels": math.nan})

    examples = []
    with open(gen["manifest"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for cls in CLASSES:
        row = next(r for r in rows if r["label"] == cls and r["path"].startswith("nifti"))
        base = Path(gen["manifest"]).parent
        panels, timings, roi, z = example_responses(base / row["path"], base / row["mask"],
                                                     backend=backend, with_roi=True)
        png = save_slices_png(images / f"example_{cls}.png", panels, roi=roi, slice_index=z,
                              title=f"{row['path']} (class {cls}; ROI outlined in red)")
        examples.append({"title": f"class {cls}: {row['path']}", "path": png})
        for t in timings:
            stages.append({"stage": f"filter: {t['filter']} on {Path(row['path']).name}",
                           "seconds": t["seconds"], "volumes": 1,
                           "megavoxels": t["megavoxels"]})

    return run_study(gen["manifest"], out_dir, label="label", group="subject", model=model,
                     cv=cv, feature_settings=DEMO_FEATURE_SETTINGS, scheduler=scheduler,
                     n_workers=n_workers, backend=backend,
                     progress="auto" if progress == "auto" else bool(progress),
                     extra_stages=stages,
                     real_scans=real_rows, real_images=real_images, examples=examples,
                     title=f"medimg-fast demo ({size}, seed {seed})",
                     megavoxels=gen["megavoxels"], dashboard=dashboard,
                     command_line=command_line)
