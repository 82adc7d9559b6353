"""Batch processing of an imaging archive on Dask distributed: resumable, errors recorded.

:func:`process_archive` reads every volume of a manifest or folder, runs a small pipeline
(validation, optional intensity window, resampling, z-score normalisation, filters, feature
extraction) as one Dask task per volume, and collects one table row per volume.

Resumability
    Each finished volume's outcome is written to ``out_dir/parts/<key>.row.json`` (success) or
    ``out_dir/parts/<key>.error.json`` (a bad input), through a temporary file and an atomic
    rename, as soon as it completes.  The key hashes the input paths, their sizes and
    modification times, the row's label/subject/ROI and the pipeline configuration, so a
    rerun skips exactly the finished volumes and recomputes anything whose input or
    configuration changed.  The final tables are assembled from the parts in the manifest's
    order (a folder: sorted by path), so an interrupted run followed by a rerun produces the
    same tables as one uninterrupted run.  Small volumes are sent to the workers several per
    task (``batch_size``), so the scheduler's per-task cost is shared.
    Infrastructure failures (a task whose workers kept dying) are reported but not stored, so
    a rerun retries them.

Bad input never stops the batch
    Unreadable, truncated or corrupt files, masks whose shape does not match, NaN/Inf voxels
    and wrong dimensionality each become a row of the errors table (path, stage, error type,
    message); the stage is one of ``read``, ``mask``, ``validate``, ``preprocess``,
    ``filter``, ``features`` or ``worker``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._shared.utils import one_line
from .io._volume import GeometryMismatchError, VolumeReadError

__all__ = [
    "ArchiveResult",
    "ArchiveSourceNotFoundError",
    "ManifestError",
    "MaskMismatchError",
    "NonFiniteVoxelsError",
    "PipelineConfig",
    "WrongDimensionalityError",
    "process_archive",
    "read_manifest",
    "run_pipeline",
    "scan_archive",
]

logger = logging.getLogger("medimg_fast.archive")

_META_COLUMNS = ("path", "mask", "roi", "label", "subject", "series_uid")
#: Per-volume timings stored beside the features (and in the errors table): seconds per
#: stage of :func:`run_pipeline` (``time_write_s``: storing the volume's result on the
#: driver), the volume's size and its throughput.  ``time_*`` columns are never model
#: features.
TIMING_COLUMNS = ("time_read_s", "time_preprocess_s", "time_filter_s", "time_features_s",
                  "time_write_s", "time_total_s", "megavoxels", "megavoxels_per_s")
_ERROR_COLUMNS = ("path", "mask", "roi", "series_uid", "stage", "error_type", "message",
                  *TIMING_COLUMNS)
#: Volumes below this size are materialised as NumPy arrays for the pipeline; larger ones
#: stay Dask arrays and are processed chunk by chunk.
DEFAULT_IN_MEMORY_BYTES = 512 * 2**20


class ManifestError(ValueError):
    """A manifest CSV that lacks the ``path`` column, has empty paths, or gives one image
    (and mask and ROI) two different labels."""


class ArchiveSourceNotFoundError(FileNotFoundError):
    """The manifest or folder given to :func:`process_archive` does not exist."""


class WrongDimensionalityError(ValueError):
    """A volume that is not 3-D (e.g. a 4-D fMRI series given to a 3-D pipeline)."""


class NonFiniteVoxelsError(ValueError):
    """A volume containing NaN or infinite voxel values."""


class MaskMismatchError(GeometryMismatchError):
    """A mask whose voxel grid (shape, spacing, origin or direction) differs from its image's.

    A :class:`~medimg_fast.io.GeometryMismatchError`, hence a ValueError; the message names
    both geometries.
    """


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What :func:`process_archive` does to each volume, in this order.

    Parameters
    ----------
    window : (float, float), optional
        Clip intensities to ``[low, high]`` (e.g. ``(-1000, 400)`` HU for a lung window).
    target_spacing : (float, float, float), optional
        Resample to this voxel size in mm ``(z, y, x)`` on the IBSI grid
        (:mod:`medimg_fast.preprocessing`: image spline of order `resample_order`; mask
        linear, partial volume 0.5), before normalisation and filters.  For IBSI
        feature extraction alone, ``feature_settings`` ``resample_mm`` does the same
        inside :func:`~medimg_fast.features.extract_features`.
    resample_order : int
        Spline order for the image when resampling (1 = linear).
    normalize : {None, "zscore"}
        Subtract the mean and divide by the standard deviation (over the mask when there is one).
    filters : sequence
        Applied in order to the image.  Each entry is a callable ``f(image) -> image``, a name
        of a function in :mod:`medimg_fast.filters`, or a ``(name, kwargs)`` pair such as
        ``("gaussian_filter", {"sigma": 1.0})``.
    features : callable, optional
        ``f(image, mask=None, *, spacing=None, settings=None, backend="auto") -> dict`` of
        floats.  Default: :func:`medimg_fast.features.extract_features`.  Must be importable
        by the Dask workers (defined in a module, not an interactive session).
    feature_settings : dict, optional
        Passed as ``settings=`` to `features`.
    backend : str
        Passed to filters and features.
    volume_index : int, optional
        For 4-D inputs, the volume to process; without it 4-D inputs are reported as wrong
        dimensionality.
    units : {None, "stored", "suv"}
        ``"suv"``: PET DICOM series read as SUV body weight
        (:func:`medimg_fast.io.open_volume` ``units=``); a volume it cannot convert (not
        PET, a tag missing) is an error row naming the reason.
    in_memory_bytes : int
        Volumes smaller than this are loaded as NumPy arrays; larger ones stay Dask arrays so
        filters stream chunk by chunk.
    """

    window: tuple | None = None
    target_spacing: tuple | None = None
    resample_order: int = 1
    normalize: str | None = None
    filters: Sequence = ()
    features: Callable | None = None
    feature_settings: dict | None = None
    backend: str = "auto"
    volume_index: int | None = None
    units: str | None = None
    in_memory_bytes: int = DEFAULT_IN_MEMORY_BYTES

    def __post_init__(self):
        if self.units not in (None, "stored", "suv"):
            raise ValueError(f"`units` must be None, 'stored' or 'suv', got {self.units!r}")
        if self.window is not None:
            w = tuple(self.window)
            if len(w) != 2 or not all(np.isfinite(v) for v in w) or w[0] >= w[1]:
                raise ValueError(f"`window` must be (low, high) finite with low < high, "
                                 f"got {self.window!r}")
            object.__setattr__(self, "window", tuple(float(v) for v in w))
        if self.target_spacing is not None:
            t = tuple(self.target_spacing)
            if len(t) != 3 or not all(np.isfinite(v) and v > 0 for v in t):
                raise ValueError(f"`target_spacing` must be 3 positive numbers (z, y, x) in mm, "
                                 f"got {self.target_spacing!r}")
            object.__setattr__(self, "target_spacing", tuple(float(v) for v in t))
        if self.normalize not in (None, "zscore"):
            raise ValueError(f"`normalize` must be None or 'zscore', got {self.normalize!r}")
        if self.resample_order not in range(6):
            raise ValueError(f"`resample_order` must be an int in [0, 5], "
                             f"got {self.resample_order!r}")
        filters = tuple(self.filters)
        for f in filters:
            ok = callable(f) or isinstance(f, str) or (
                isinstance(f, tuple) and len(f) == 2 and isinstance(f[0], str)
                and isinstance(f[1], dict))
            if not ok:
                raise ValueError(f"`filters` entries must be callables, names or (name, kwargs) "
                                 f"pairs, got {f!r}")
        object.__setattr__(self, "filters", filters)
        if self.features is not None and not callable(self.features):
            raise TypeError(f"`features` must be callable, got {self.features!r}")

    def fingerprint(self) -> str:
        """A stable text identifying the configuration (callables by module and name)."""

        def describe(v):
            if callable(v) and not isinstance(v, type):
                return f"{getattr(v, '__module__', '?')}.{getattr(v, '__qualname__', repr(v))}"
            if isinstance(v, dict):
                return {str(k): describe(x) for k, x in sorted(v.items())}
            if isinstance(v, (tuple, list)):
                return [describe(x) for x in v]
            return v

        fields = {f.name: describe(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if self.features is None:
            fields["features"] = "medimg_fast.features.extract_features"
        return json.dumps(fields, sort_keys=True, default=repr)


@dataclasses.dataclass
class ArchiveResult:
    """What :func:`process_archive` returns.

    Attributes
    ----------
    features : pandas.DataFrame
        One row per succeeded volume: ``path, mask, label, subject`` then the features.
    errors : pandas.DataFrame
        One row per failed volume: ``path, mask, stage, error_type, message``.
    n_succeeded, n_failed : int
        Row counts of the two tables.
    n_skipped : int
        Volumes whose stored result was reused from an earlier run.
    features_path, errors_path : pathlib.Path
        ``out_dir/features.parquet`` and ``out_dir/errors.csv`` (``.csv`` tables with
        ``table_format="csv"``).
    warnings : list of str
        Things the user should know that did not stop the run (duplicate manifest rows).
    seconds_write : float
        Time spent writing parts and tables in this run (the driver's side).
    seconds_first_call : float or None
        The workers' first call of the pipeline on a tiny volume (JIT compilation, imports),
        made before the volumes so that their timings never include it; the slowest
        worker's, or None when nothing was computed or the feature step is user-supplied.
    """

    features: Any
    errors: Any
    n_succeeded: int
    n_failed: int
    n_skipped: int
    features_path: Path
    errors_path: Path
    warnings: list = dataclasses.field(default_factory=list)
    seconds_write: float = 0.0
    seconds_first_call: float | None = None

    def summary(self) -> str:
        return (f"{self.n_succeeded} succeeded, {self.n_failed} failed "
                f"({self.n_skipped} reused from an earlier run)")


@dataclasses.dataclass(frozen=True)
class _Entry:
    path: str
    label: Any = None
    mask: str | None = None
    subject: Any = None
    #: The ROI of an RTSTRUCT (name, glob pattern or number), the segment of a SEG (label or
    #: number) or the label value of a label-map image; None: the mask file's only ROI or
    #: its nonzero voxels.
    roi: str | None = None
    #: The DICOM series to read when the path's folder holds several (``scan`` writes it).
    series_uid: str | None = None
    #: ``path`` and ``mask`` as the manifest gives them (relative ones stay relative in the
    #: tables); ``path``/``mask`` above are resolved for reading.
    path_written: str | None = None
    mask_written: str | None = None

    def shown(self) -> dict:
        """``path`` and ``mask`` as the tables show them: as written in the manifest."""
        return {"path": self.path_written or self.path,
                "mask": self.mask_written if self.mask_written is not None else self.mask}


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def read_manifest(manifest) -> list:
    """Rows of a manifest CSV: ``path[,label][,mask][,subject][,roi][,series_uid]``.

    Relative paths are taken relative to the manifest's folder for reading; the tables keep
    them as written.  ``label`` is needed only
    to train a model; a manifest of new cases to predict may leave it out.  ``roi`` selects what of the
    mask file is the mask (see :func:`medimg_fast.io.open_mask`): an RTSTRUCT ROI name or
    pattern, a SEG segment label or number, a label value; one image may appear in several
    rows with different ROIs, each its own result.  ``series_uid`` picks one DICOM series
    of a folder that holds several (as :func:`medimg_fast.io.scan_dicom` writes it).
    """
    manifest = Path(manifest)
    base = manifest.resolve().parent
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("path",) if c not in columns]
        if missing:
            raise ManifestError(f"manifest {str(manifest)!r} lacks column(s) {missing}; "
                                f"expected path[,label][,mask][,subject][,roi], got {columns}")
        entries = []
        for lineno, row in enumerate(reader, start=2):
            row = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()
                   if k is not None}
            if not row.get("path"):
                raise ManifestError(f"manifest {str(manifest)!r} line {lineno}: empty path")

            def resolve(p):
                return str((base / p).resolve()) if p else None

            roi = row.get("roi") or None
            if roi is not None and not row.get("mask"):
                raise ManifestError(f"manifest {str(manifest)!r} line {lineno}: roi {roi!r} "
                                    "given without a mask")
            entries.append(_Entry(
                path=resolve(row["path"]),
                label=row.get("label") or None,
                mask=resolve(row.get("mask")),
                subject=row.get("subject") or None,
                roi=roi,
                series_uid=row.get("series_uid") or None,
                path_written=row["path"],
                mask_written=row.get("mask") or None,
            ))
    return entries


def deduplicate(entries, source="manifest") -> tuple:
    """``(unique entries, warnings)``: exact duplicate rows are kept once and reported.

    Raises
    ------
    ManifestError
        If one image (with the same mask and ROI) has two different labels or subjects.
    """
    seen, unique, duplicates = {}, [], {}
    for entry in entries:
        ident = (entry.path, entry.series_uid, entry.mask, entry.roi)
        first = seen.get(ident)
        if first is None:
            seen[ident] = entry
            unique.append(entry)
        elif first == entry:
            duplicates[ident] = duplicates.get(ident, 1) + 1
        else:
            what = "labels" if first.label != entry.label else "subjects"
            raise ManifestError(
                f"{source}: {entry.path!r}" + (f" (mask {entry.mask!r})" if entry.mask else "")
                + (f" (roi {entry.roi!r})" if entry.roi else "")
                + f" appears with two different {what}: {first.label!r}/{first.subject!r} "
                f"and {entry.label!r}/{entry.subject!r}; one image cannot be both")
    warnings = []
    if duplicates:
        names = [os.path.basename(ident[0]) for ident in list(duplicates)[:5]]
        more = "" if len(duplicates) <= 5 else f" and {len(duplicates) - 5} more"
        warnings.append(f"{source}: {sum(duplicates.values()) - len(duplicates)} exact "
                        f"duplicate row(s) of {len(duplicates)} volume(s) were processed once: "
                        f"{', '.join(names)}{more}")
    return unique, warnings


def scan_archive(folder) -> list:
    """Volumes under `folder`, recursively: NIfTI files, DICOM series folders, Zarr stores.

    A folder directly holding DICOM files is one entry (one series); a Zarr store is one
    entry and is not descended into.  Entries are sorted by path.
    """
    from .io._dicom import is_dicom_file
    from .io._zarr import is_zarr_store

    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        keep = []
        for d in dirs:
            full = os.path.join(root, d)
            if d.startswith("."):
                continue
            if is_zarr_store(full):
                found.append(os.path.abspath(full))
            else:
                keep.append(d)
        dirs[:] = keep
        dicom_here = False
        for f in sorted(files):
            if f.startswith("."):
                continue
            full = os.path.join(root, f)
            if f.lower().endswith((".nii", ".nii.gz")):
                found.append(os.path.abspath(full))
            elif not dicom_here and (f.lower().endswith(".dcm") or is_dicom_file(full)):
                dicom_here = True
        if dicom_here:
            found.append(os.path.abspath(root))
    return [_Entry(path=p) for p in sorted(found)]


def _stat_signature(path) -> list:
    """(size, mtime_ns) of a file, or summed over a folder's files (DICOM series, Zarr store)."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return ["missing"]
    if not os.path.isdir(path):
        return [st.st_size, st.st_mtime_ns]
    size, mtime, count = 0, st.st_mtime_ns, 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                s = os.stat(os.path.join(root, f))
            except OSError:
                continue
            size += s.st_size
            mtime = max(mtime, s.st_mtime_ns)
            count += 1
    return [size, mtime, count]


def _entry_key(entry: _Entry, fingerprint: str) -> str:
    fields = [entry.path, _stat_signature(entry.path), entry.mask, _stat_signature(entry.mask),
              str(entry.label), str(entry.subject), fingerprint]
    if entry.roi is not None:  # appended only when set, so rows without an ROI keep their keys
        fields.append(["roi", str(entry.roi)])
    if entry.series_uid is not None:
        fields.append(["series_uid", str(entry.series_uid)])
    blob = json.dumps(fields, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# The per-volume pipeline (runs on a worker)
# ---------------------------------------------------------------------------------------------

class _StageError(Exception):
    def __init__(self, stage, exc):
        super().__init__(stage)
        self.stage, self.exc = stage, exc


def _materialise(data, limit):
    """NumPy for small volumes; a Dask array (streamed) for large ones."""
    if data.nbytes <= limit:
        return np.asarray(data.compute(scheduler="synchronous"))
    return data


def _compute_scalars(*xs):
    """Values of NumPy scalars or Dask reductions (the latter in one pass over the data)."""
    if any(hasattr(x, "compute") for x in xs):
        import dask

        return dask.compute(*xs, scheduler="synchronous")
    return xs


def _apply_filter(spec, image, backend):
    if callable(spec):
        return spec(image)
    from . import filters as filters_module

    name, kwargs = (spec, {}) if isinstance(spec, str) else spec
    func = getattr(filters_module, name, None)
    if func is None:
        raise ValueError(f"`filters` names unknown filter {name!r}")
    kwargs = dict(kwargs)
    kwargs.setdefault("backend", backend)
    return func(image, **kwargs)


def run_pipeline(entry, config: PipelineConfig, *, timings=None) -> dict:
    """Process one volume; return its feature row or raise :class:`_StageError`.

    This is the body of one Dask task: read, validate, preprocess, filter, extract features.
    When `timings` is a dict it receives the seconds of each stage (``read`` covers the
    mask and the validation too) and the volume's ``megavoxels``.  The mask is opened and
    its grid checked first (a NIfTI or other image mask lazily: its header); a NIfTI
    pair whose features read only the ROI's box (:func:`_reads_roi_box`) is then read
    there by the feature step, and ``read`` covers the headers and the grid check.
    """
    from .io import _select_volume, check_same_grid, open_mask, open_volume

    timings = {} if timings is None else timings
    clock = [time.perf_counter()]

    def lap(name):
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - clock[0]
        clock[0] = now

    stage = "read"
    try:
        volume = open_volume(entry.path, series_uid=entry.series_uid, units=config.units)
        if volume.data.ndim == 4 and config.volume_index is not None:
            _select_volume(volume, config.volume_index)
        data = volume.data
        if data.ndim != 3:
            stage = "validate"
            raise WrongDimensionalityError(
                f"expected a 3-D (z, y, x) volume, got {data.ndim}-D with shape "
                f"{tuple(data.shape)}" + ("; set volume_index= to pick one volume of a 4-D "
                                          "series" if data.ndim == 4 else ""))
        timings["megavoxels"] = float(np.prod(data.shape)) / 1e6
        mask_volume = None
        if entry.mask is not None:
            stage = "mask"
            mask_volume = open_mask(entry.mask, volume, roi=entry.roi)  # lazy for images
            try:
                check_same_grid(volume, mask_volume)
            except GeometryMismatchError as exc:
                raise MaskMismatchError(str(exc)) from exc
        if _reads_roi_box(entry, config, volume):
            lap("read")
            stage = "features"
            from .features._extract import features_on_roi_box

            try:
                values = features_on_roi_box(entry.path, entry.mask,
                                             settings=config.feature_settings,
                                             backend=config.backend, nonzero=True)
            except VolumeReadError:
                stage = "read"  # a file that cannot be read, as the whole read says
                raise
            if values is not None:
                lap("features")
                return _feature_row(values)
            stage = "read"
        image = _materialise(data, config.in_memory_bytes)
        spacing = volume.spacing

        mask = None
        if mask_volume is not None:
            stage = "mask"
            mask = _materialise(mask_volume.data, config.in_memory_bytes) != 0

        stage = "validate"
        if np.dtype(image.dtype).kind == "f":
            (n_bad,) = _compute_scalars((~np.isfinite(image)).sum())
            n_bad = int(n_bad)
            if n_bad:
                raise NonFiniteVoxelsError(f"{n_bad} NaN or infinite voxel(s) in "
                                           f"{int(np.prod(image.shape))}")

        lap("read")
        stage = "preprocess"
        if config.window is not None:
            image = image.clip(*config.window)
        if config.target_spacing is not None:
            from .preprocessing import interpolate_image, interpolate_mask

            image = interpolate_image(image, spacing, config.target_spacing,
                                      order=config.resample_order).astype(np.float32)
            if mask is not None:
                mask = interpolate_mask(mask, spacing, config.target_spacing)
                if mask.shape != image.shape:
                    raise MaskMismatchError(f"resampled mask shape {mask.shape} differs from "
                                            f"image shape {image.shape}")
            spacing = config.target_spacing
        if config.normalize == "zscore":
            values = (image[mask] if mask is not None else image).astype(np.float64)
            mean, std = (float(x) for x in _compute_scalars(values.mean(), values.std()))
            if std == 0:
                raise ValueError("z-score normalisation of a constant image (std = 0)")
            image = ((image - mean) / std).astype(np.float32)

        lap("preprocess")
        stage = "filter"
        for spec in config.filters:
            image = _apply_filter(spec, image, config.backend)

        lap("filter")
        stage = "features"
        features = config.features
        if features is None:
            from .features import extract_features as features
        values = features(image, mask, spacing=tuple(spacing),
                          settings=config.feature_settings, backend=config.backend)
        if not isinstance(values, dict):
            raise TypeError(f"the feature step must return a dict, got {type(values).__name__}")
        lap("features")
        return _feature_row(values)
    except Exception as exc:  # every bad input becomes an error row; the batch goes on
        lap({"mask": "read", "validate": "read"}.get(stage, stage))
        raise _StageError(stage, exc) from exc


def _feature_row(values) -> dict:
    return {str(k): (float(v) if isinstance(v, (int, float, np.number)) else v)
            for k, v in values.items()}


def _reads_roi_box(entry, config: PipelineConfig, volume) -> bool:
    """Whether a case's features can come from the ROI's box of a NIfTI pair
    (:func:`medimg_fast.features._extract.features_on_roi_box`, the same values): the
    default feature step on an image stored as integers (no voxel to check for NaN;
    finite scaling keeps them finite), with no pipeline step that sees the whole image
    (window, resampling, normalisation, filters) and an image mask of nonzero voxels."""
    nifti = (".nii", ".nii.gz")
    meta = volume.metadata or {}
    stored = np.dtype(meta.get("stored_dtype", volume.data.dtype))
    # (a NaN slope or intercept is no scaling)
    finite = not any(v is not None and np.isinf(v)
                     for v in (meta.get("scl_slope"), meta.get("scl_inter")))
    return (config.features is None and config.window is None
            and config.target_spacing is None and config.normalize is None
            and not config.filters and config.units in (None, "stored")
            and config.volume_index is None and entry.mask is not None
            and entry.roi is None and entry.series_uid is None
            and str(entry.path).endswith(nifti) and str(entry.mask).endswith(nifti)
            and stored.kind in "biu" and finite)


def _timing_row(timings, seconds):
    row = {f"time_{s}_s": float(timings.get(s, 0.0))
           for s in ("read", "preprocess", "filter", "features")}
    row["time_total_s"] = float(seconds)
    mvox = timings.get("megavoxels", math.nan)
    row["megavoxels"] = float(mvox)
    row["megavoxels_per_s"] = float(mvox / seconds) if seconds > 0 else math.nan
    return row


def _task(entry, config):
    """The Dask task: never raises for bad input, returns an outcome dict instead."""
    start = time.perf_counter()
    timings = {}
    try:
        row = run_pipeline(entry, config, timings=timings)
        seconds = time.perf_counter() - start
        return {"status": "ok", "features": row, "seconds": seconds,
                "timings": _timing_row(timings, seconds)}
    except _StageError as err:
        exc = err.exc
        message = one_line(exc)
        seconds = time.perf_counter() - start
        return {"status": "error", "stage": err.stage, "error_type": type(exc).__name__,
                "message": message, "seconds": seconds,
                "timings": _timing_row(timings, seconds)}


def _warm_up(config):
    """Run the default pipeline once on a tiny volume in this process: JIT compilation
    (numba, CUDA) and first imports, timed apart so that no volume's timings carry them.
    Seconds, or None when the pipeline has a user-supplied feature step (which may have
    side effects on made-up data)."""
    if config.features is not None:
        return None
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 1.0, (8, 8, 8)).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[2:6, 2:6, 2:6] = True
    with contextlib.suppress(Exception):  # the real volumes report real errors
        from .features import extract_features

        for spec in config.filters:
            image = _apply_filter(spec, image, config.backend)
        extract_features(image, mask, spacing=(1.0, 1.0, 1.0),
                         settings=config.feature_settings, backend=config.backend)
    return time.perf_counter() - start


def _task_batch(items, config):
    """Several volumes in one Dask task: one scheduling round trip for all of them."""
    return [(key, _task(entry, config)) for key, entry in items]


# ---------------------------------------------------------------------------------------------
# Parts: atomic per-volume results
# ---------------------------------------------------------------------------------------------

#: Written beside ``features.parquet`` (by the CLI and the demo) so that ``train`` records
#: the extraction settings in the model card and ``predict`` extracts new volumes the same way.
FEATURE_SETTINGS_FILE = "feature_settings.json"


#: Beside it: the :class:`PipelineConfig` options (window, resampling, normalisation) the
#: features were made with, which ``predict`` must repeat.
PIPELINE_OPTIONS_FILE = "pipeline_options.json"


def write_feature_settings(out_dir, settings, pipeline_options=None) -> Path:
    """Write ``settings`` (any form :class:`FeatureSettings` accepts) as JSON in ``out_dir``,
    and `pipeline_options` (a dict of :class:`PipelineConfig` fields) beside it."""
    from .features import FeatureSettings

    path = Path(out_dir) / FEATURE_SETTINGS_FILE
    text = json.dumps(FeatureSettings.coerce(settings).to_dict(), indent=2, sort_keys=True)
    path.write_text(text)
    options = {k: (list(v) if isinstance(v, tuple) else v)
               for k, v in (pipeline_options or {}).items()}
    (Path(out_dir) / PIPELINE_OPTIONS_FILE).write_text(json.dumps(options, indent=2,
                                                                  sort_keys=True))
    return path


def read_extraction(folder):
    """``(settings, pipeline_options)`` written by :func:`write_feature_settings` in
    `folder`; None for a file that is not there."""
    folder = Path(folder)
    out = []
    for name in (FEATURE_SETTINGS_FILE, PIPELINE_OPTIONS_FILE):
        f = folder / name
        out.append(json.loads(f.read_text()) if f.is_file() else None)
    return tuple(out)


def _atomic_write_bytes(path: Path, payload: bytes):
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_part(parts_dir: Path, key: str, entry: _Entry, outcome: dict) -> dict:
    """Store one volume's outcome as a small JSON file (atomically); return the record as it
    reads back.  JSON, not one-row Parquet: about 0.5 ms a volume instead of about 20 ms
    (write and read back), which on a small archive was most of the batch's own cost."""
    meta = {**entry.shown(),
            "roi": None if entry.roi is None else str(entry.roi),
            "label": None if entry.label is None else str(entry.label),
            "subject": None if entry.subject is None else str(entry.subject),
            "series_uid": entry.series_uid}
    timings = outcome.get("timings") or {}
    if outcome["status"] == "ok":
        record, name = {**meta, **outcome["features"], **timings}, f"{key}.row.json"
    else:
        record = {**{k: meta[k] for k in ("path", "mask", "roi", "series_uid")},
                  **{k: outcome[k] for k in ("stage", "error_type", "message")}, **timings}
        name = f"{key}.error.json"
    start = time.perf_counter()
    _atomic_write_bytes(parts_dir / name, json.dumps(record, default=float).encode())
    # the store's own time (encoding and the atomic write, on the driver), kept with it
    record["time_write_s"] = time.perf_counter() - start
    payload = json.dumps(record, default=float).encode()
    _atomic_write_bytes(parts_dir / name, payload)
    return json.loads(payload)


def _read_part(parts_dir: Path, key: str):
    """('ok', dict) / ('error', dict) / None for a key with no stored result."""
    ok, err = parts_dir / f"{key}.row.json", parts_dir / f"{key}.error.json"
    legacy = parts_dir / f"{key}.parquet"  # parts of runs before the JSON parts
    try:
        if ok.exists():
            return "ok", json.loads(ok.read_text())
        if legacy.exists():
            import pandas as pd

            return "ok", pd.read_parquet(legacy).iloc[0].to_dict()
        if err.exists():
            return "error", json.loads(err.read_text())
    except Exception:  # noqa: BLE001  an unreadable part (e.g. a disk fault) is recomputed
        return None
    return None


def _assemble(ok_frames, error_records):
    """The two tables, rows in the order given (the manifest's, or the folder scan's), so a
    resumed run and an uninterrupted one give the same tables."""
    import pandas as pd

    if ok_frames:
        features = pd.DataFrame.from_records(ok_frames)
        for c in _META_COLUMNS:  # parts written before a column existed
            if c not in features.columns:
                features[c] = None
        last = [c for c in TIMING_COLUMNS if c in features.columns]
        feature_cols = [c for c in features.columns if c not in _META_COLUMNS and c not in last]
        features = features[list(_META_COLUMNS) + feature_cols + last]
        features = features.reset_index(drop=True)
    else:
        features = pd.DataFrame(columns=list(_META_COLUMNS))
    errors = pd.DataFrame(error_records, columns=list(_ERROR_COLUMNS))
    return features, errors.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

def _silence_dask_logging():
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _children_ignore_sigint(active):
    """Start worker processes with SIGINT ignored: a Ctrl-C in the terminal reaches the
    whole process group, and workers that die of it print their own tracebacks and make
    the nanny log restarts.  The driver alone handles the interrupt and closes them."""
    import signal
    import threading

    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _connect(scheduler, n_workers, processes, dashboard=False):
    """(client, cleanup) for None (a new LocalCluster), an address, or a Client."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        n = n_workers or max(1, os.cpu_count() or 1)
        # Worker processes listen on loopback only; thread workers talk in-process (inproc://),
        # for which distributed refuses a host.
        network = {"host": "127.0.0.1"} if processes else {}
        # No dashboard unless asked: it needs a free port (8787) and logs when it is taken.
        address = (dashboard if isinstance(dashboard, str) else ":0") if dashboard else None
        with _children_ignore_sigint(processes):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                                   dashboard_address=address, **network)
        client = Client(cluster, set_as_default=False)
        if dashboard:
            logger.warning(json.dumps({"event": "dashboard", "link": client.dashboard_link}))

        def cleanup(interrupted=False):
            if interrupted:
                # Our own workers would log each task cancelled by the shutdown.
                with contextlib.suppress(Exception):  # a worker already gone is fine
                    client.run(_silence_dask_logging, wait=True)
            client.close()
            cluster.close()

        return client, cleanup
    if isinstance(scheduler, str):
        if not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise ValueError(f"`scheduler` must be None, a Client or an address such as "
                             f"'tcp://127.0.0.1:8786', got {scheduler!r}")
        client = Client(scheduler, set_as_default=False)
        return client, (lambda interrupted=False: client.close())
    if isinstance(scheduler, Client):
        return scheduler, (lambda interrupted=False: None)
    raise TypeError(f"`scheduler` must be None, an address string or a distributed.Client, "
                    f"got {type(scheduler).__name__}")


class _Progress:
    """A tqdm bar in a terminal; elsewhere (nohup, CI, a pipe) one line per volume on stderr
    and a JSON record per volume on the ``medimg_fast.archive`` logger."""

    def __init__(self, total, mode, stream=None):
        self.total, self.done, self.bar = total, 0, None
        self.stream = sys.stderr if stream is None else stream
        interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log = mode == "auto" and not interactive
        self.start = time.perf_counter()
        if mode is True or (mode == "auto" and interactive):
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, unit="vol", desc="archive")

    def update(self, entry, outcome):
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.log:
            record = {"event": "volume", "done": self.done, "total": self.total,
                      "path": entry.path, "status": outcome["status"],
                      "seconds": round(outcome.get("seconds", 0.0), 3)}
            if outcome["status"] != "ok":
                record.update(stage=outcome.get("stage"), error_type=outcome.get("error_type"))
            logger.info(json.dumps(record))
            status = "ok" if outcome["status"] == "ok" else (
                f"error at {outcome.get('stage')}: {outcome.get('error_type')}")
            elapsed = time.perf_counter() - self.start
            line = (f"archive: [{self.done}/{self.total}] {status} {entry.path}"
                    + (f" roi={entry.roi}" if entry.roi else "")
                    + f" ({outcome.get('seconds', 0.0):.2f} s; {elapsed:.0f} s elapsed)")
            try:
                print(line, file=self.stream, flush=True)
            except (BrokenPipeError, ValueError):  # a closed pipe: progress is optional
                self.log = False

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _auto_batch_size(n_todo, n_workers):
    # Enough tasks to keep every worker busy and balance uneven volumes (about 4 per worker),
    # few enough that the scheduler's per-task cost (~5-10 ms round trip) is shared.
    return max(1, min(16, n_todo // max(1, 4 * n_workers)))


def process_archive(source, out_dir, *, config: PipelineConfig | None = None, scheduler=None,
                    n_workers=None, processes=True, progress="auto",
                    retry_failed=False, dashboard=False, table_format="parquet",
                    batch_size=None, **config_kwargs) -> ArchiveResult:
    """Run the pipeline on every volume of an archive; resumable, bad inputs recorded.

    Parameters
    ----------
    source : str or os.PathLike
        A manifest CSV (columns ``path[,label][,mask][,subject][,roi]``) or a folder scanned
        recursively for NIfTI files, DICOM series folders and Zarr stores.
    out_dir : str or os.PathLike
        Receives ``features.parquet``, ``errors.csv`` and ``parts/`` (per-volume results that
        make a rerun resume).
    config : PipelineConfig, optional
        The pipeline; alternatively pass its fields as keyword arguments.
    scheduler : None, str or distributed.Client
        None starts a ``LocalCluster`` on 127.0.0.1 (one single-threaded worker per core, or
        `n_workers`) and closes it at the end; an address (``"tcp://host:port"``) connects to
        an existing scheduler; a Client is used as is and left open.
    n_workers : int, optional
        Workers of the LocalCluster started when `scheduler` is None.
    processes : bool
        Whether that LocalCluster uses worker processes (True) or threads.
    progress : {"auto", True, False}
        "auto": a tqdm bar when stderr is a terminal, else one line per volume on stderr and
        one JSON record per volume on the ``medimg_fast.archive`` logger (level INFO).
        True: always the bar.  False: neither.
    retry_failed : bool
        Recompute volumes whose stored outcome is an error (default: reuse it).
    dashboard : bool or str
        Start the LocalCluster's dashboard (True: on a free port; a string: that address,
        e.g. ``":8787"``); default none.
    table_format : {"parquet", "csv"}
        Format of the features table (``features.parquet`` or ``features.csv``).
    batch_size : int, optional
        Volumes per Dask task (default: about four tasks per worker, at most 16 volumes
        each), so that small volumes do not pay the scheduler's per-task cost each.

    Returns
    -------
    ArchiveResult
        Rows in the manifest's order (a folder: sorted by path), each with its ``time_*``
        columns (seconds per stage) and ``megavoxels_per_s``.

    Raises
    ------
    ArchiveSourceNotFoundError
        If `source` does not exist (a FileNotFoundError).
    ManifestError
        If the manifest lacks the ``path`` column or gives one image two labels (a
        ValueError).
    """
    from distributed import as_completed

    source = Path(source)
    if not source.exists():
        raise ArchiveSourceNotFoundError(f"archive source not found: {str(source)!r}")
    if config is None:
        config = PipelineConfig(**config_kwargs)
    elif config_kwargs:
        raise TypeError(f"pass either `config` or pipeline keyword arguments, not both "
                        f"(got {sorted(config_kwargs)})")
    if progress not in ("auto", True, False):
        raise ValueError(f"`progress` must be 'auto', True or False, got {progress!r}")
    if table_format not in ("parquet", "csv"):
        raise ValueError(f"`table_format` must be 'parquet' or 'csv', got {table_format!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}")

    entries = read_manifest(source) if source.is_file() else scan_archive(source)
    entries, warnings = deduplicate(entries, f"manifest {source.name!r}")
    for w in warnings:
        logger.warning(json.dumps({"event": "warning", "message": w}))
    out_dir = Path(out_dir)
    parts_dir = out_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)

    fingerprint = config.fingerprint()
    keyed = {}
    for entry in entries:
        keyed.setdefault(_entry_key(entry, fingerprint), entry)

    ok_frames, error_records, todo = {}, {}, {}
    for key, entry in keyed.items():
        stored = _read_part(parts_dir, key)
        if stored is None or (retry_failed and stored[0] == "error"):
            todo[key] = entry
        elif stored[0] == "ok":
            ok_frames[key] = stored[1]
        else:
            error_records[key] = stored[1]
    n_skipped = len(keyed) - len(todo)

    seconds_write, first_call = 0.0, None
    if todo:
        client, cleanup = _connect(scheduler, n_workers, processes, dashboard)
        bar = _Progress(len(todo), progress)
        interrupted = False
        try:
            warm = [v for v in client.run(_warm_up, config).values() if v is not None]
            first_call = max(warm) if warm else None
            n_live = max(1, sum(client.nthreads().values()) or 1)
            size = batch_size or _auto_batch_size(len(todo), n_live)
            items = list(todo.items())
            futures = {}
            for start in range(0, len(items), size):
                batch = items[start:start + size]
                future = client.submit(_task_batch, batch, config,
                                       key=f"medimg-volumes-{batch[0][0]}-{len(batch)}",
                                       pure=False)
                futures[future] = [k for k, _ in batch]
            for future in as_completed(futures, loop=client.loop):
                keys = futures[future]
                try:
                    outcomes = future.result()
                except Exception as exc:  # noqa: BLE001  KilledWorker, lost connection: not the input's fault
                    failed = {"status": "error", "stage": "worker",
                              "error_type": type(exc).__name__, "message": one_line(exc)}
                    outcomes = [(k, dict(failed, transient=True)) for k in keys]
                for key, outcome in outcomes:
                    entry = todo[key]
                    if not outcome.get("transient"):
                        t = time.perf_counter()
                        record = _write_part(parts_dir, key, entry, outcome)
                        seconds_write += time.perf_counter() - t
                        (ok_frames if outcome["status"] == "ok" else error_records)[key] = record
                        bar.update(entry, outcome)
                        continue
                    bar.update(entry, outcome)
                    error_records[key] = {
                        **entry.shown(), "roi": entry.roi,
                        "series_uid": entry.series_uid,
                        **{k: outcome.get(k) for k in ("stage", "error_type", "message")},
                        **(outcome.get("timings") or {})}
                future.release()
        except BaseException:
            interrupted = True
            raise
        finally:
            bar.close()
            if interrupted:
                # Closing a cluster under an interrupt makes distributed log every task it
                # cancels and every worker it stops: none of that is the user's business.
                _silence_dask_logging()
            cleanup(interrupted)

    import pandas as pd

    order = list(keyed)
    features, errors = _assemble([ok_frames[k] for k in order if k in ok_frames],
                                 [error_records[k] for k in order if k in error_records])
    features_path = out_dir / f"features.{table_format}"
    errors_path = out_dir / "errors.csv"
    t = time.perf_counter()
    if table_format == "parquet":
        import io as _io

        buf = _io.BytesIO()
        features.to_parquet(buf, index=False)
        _atomic_write_bytes(features_path, buf.getvalue())
    else:
        _atomic_write_bytes(features_path, features.to_csv(index=False).encode())
    _atomic_write_bytes(errors_path, errors.to_csv(index=False).encode())
    seconds_write += time.perf_counter() - t
    # Return exactly what is on disk (same dtypes whether rows were computed or reused).
    if table_format == "parquet":
        features = pd.read_parquet(features_path)
    else:
        features = pd.read_csv(features_path)
    result = ArchiveResult(features=features, errors=errors, n_succeeded=len(features),
                           n_failed=len(errors), n_skipped=n_skipped,
                           features_path=features_path, errors_path=errors_path,
                           warnings=warnings, seconds_write=seconds_write,
                           seconds_first_call=first_call)
    logger.info(json.dumps({"event": "archive_done", "succeeded": result.n_succeeded,
                            "failed": result.n_failed, "skipped": result.n_skipped,
                            "out_dir": str(out_dir)}))
    return result
