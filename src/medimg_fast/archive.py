"""Batch processing of an imaging archive on Dask distributed: resumable, errors recorded.

:func:`process_archive` reads every volume of a manifest or folder, runs a small pipeline
(validation, optional intensity window, resampling, z-score normalisation, filters, feature
extraction) as one Dask task per volume, and collects one table row per volume.

Resumability
    Each finished volume's outcome is written to ``out_dir/parts/<key>.parquet`` (success) or
    ``out_dir/parts/<key>.error.json`` (a bad input), through a temporary file and an atomic
    rename, as soon as it completes.  The key hashes the input paths, their sizes and
    modification times, the row's label/subject and the pipeline configuration, so a rerun
    skips exactly the finished volumes and recomputes anything whose input or configuration
    changed.  The final tables are assembled from the parts and sorted by ``(path, mask)``, so
    an interrupted run followed by a rerun produces the same tables as one uninterrupted run.
    Infrastructure failures (a task whose workers kept dying) are reported but not stored, so
    a rerun retries them.

Bad input never stops the batch
    Unreadable, truncated or corrupt files, masks whose shape does not match, NaN/Inf voxels
    and wrong dimensionality each become a row of the errors table (path, stage, error type,
    message); the stage is one of ``read``, ``mask``, ``validate``, ``preprocess``,
    ``filter``, ``features`` or ``worker``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._shared.utils import one_line
from .io._volume import GeometryMismatchError

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

_META_COLUMNS = ("path", "mask", "label", "subject")
_ERROR_COLUMNS = ("path", "mask", "stage", "error_type", "message")
#: Volumes below this size are materialised as NumPy arrays for the pipeline; larger ones
#: stay Dask arrays and are processed chunk by chunk.
DEFAULT_IN_MEMORY_BYTES = 512 * 2**20


class ManifestError(ValueError):
    """A manifest CSV that lacks required columns or has empty paths."""


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
        Resample to this voxel size in mm ``(z, y, x)`` with :func:`scipy.ndimage.zoom`
        (image: order `resample_order`; mask: nearest neighbour).
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
    in_memory_bytes: int = DEFAULT_IN_MEMORY_BYTES

    def __post_init__(self):
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
        ``out_dir/features.parquet`` and ``out_dir/errors.csv``.
    """

    features: Any
    errors: Any
    n_succeeded: int
    n_failed: int
    n_skipped: int
    features_path: Path
    errors_path: Path

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


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def read_manifest(manifest) -> list:
    """Rows of a manifest CSV with columns ``path,label[,mask][,subject][,roi]``.

    Relative paths are taken relative to the manifest's folder.  ``roi`` selects what of the
    mask file is the mask (see :func:`medimg_fast.io.open_mask`): an RTSTRUCT ROI name or
    pattern, a SEG segment label or number, a label value; one image may appear in several
    rows with different ROIs, each its own result.
    """
    manifest = Path(manifest)
    base = manifest.resolve().parent
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise ManifestError(f"manifest {str(manifest)!r} lacks column(s) {missing}; "
                                f"expected path,label[,mask][,subject][,roi], got {columns}")
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
            ))
    return entries


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


def _resample(array, spacing, target, order):
    from scipy import ndimage

    factors = [s / t for s, t in zip(spacing, target)]
    if hasattr(array, "compute"):
        array = array.compute(scheduler="synchronous")
    if order == 0:
        source = array.astype(np.uint8) if array.dtype == bool else array
        out = ndimage.zoom(source, factors, order=0, mode="nearest", grid_mode=True)
        return out.astype(array.dtype)
    # grid_mode=True maps voxel edges onto voxel edges, so the field of view is kept.
    return ndimage.zoom(array.astype(np.float32), factors, order=order, mode="nearest",
                        grid_mode=True)


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


def run_pipeline(entry, config: PipelineConfig) -> dict:
    """Process one volume; return its feature row or raise :class:`_StageError`.

    This is the body of one Dask task: read, validate, preprocess, filter, extract features.
    """
    from .io import _select_volume, check_same_grid, open_mask, open_volume

    stage = "read"
    try:
        volume = open_volume(entry.path)
        if volume.data.ndim == 4 and config.volume_index is not None:
            _select_volume(volume, config.volume_index)
        data = volume.data
        if data.ndim != 3:
            stage = "validate"
            raise WrongDimensionalityError(
                f"expected a 3-D (z, y, x) volume, got {data.ndim}-D with shape "
                f"{tuple(data.shape)}" + ("; set volume_index= to pick one volume of a 4-D "
                                          "series" if data.ndim == 4 else ""))
        image = _materialise(data, config.in_memory_bytes)
        spacing = volume.spacing

        mask = None
        if entry.mask is not None:
            stage = "mask"
            mask_volume = open_mask(entry.mask, volume, roi=entry.roi)
            try:
                check_same_grid(volume, mask_volume)
            except GeometryMismatchError as exc:
                raise MaskMismatchError(str(exc)) from exc
            mask = _materialise(mask_volume.data, config.in_memory_bytes) != 0

        stage = "validate"
        if np.dtype(image.dtype).kind == "f":
            (n_bad,) = _compute_scalars((~np.isfinite(image)).sum())
            n_bad = int(n_bad)
            if n_bad:
                raise NonFiniteVoxelsError(f"{n_bad} NaN or infinite voxel(s) in "
                                           f"{int(np.prod(image.shape))}")

        stage = "preprocess"
        if config.window is not None:
            image = image.clip(*config.window)
        if config.target_spacing is not None:
            image = _resample(image, spacing, config.target_spacing, config.resample_order)
            if mask is not None:
                mask = _resample(mask, spacing, config.target_spacing, 0)
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

        stage = "filter"
        for spec in config.filters:
            image = _apply_filter(spec, image, config.backend)

        stage = "features"
        features = config.features
        if features is None:
            from .features import extract_features as features
        values = features(image, mask, spacing=tuple(spacing),
                          settings=config.feature_settings, backend=config.backend)
        if not isinstance(values, dict):
            raise TypeError(f"the feature step must return a dict, got {type(values).__name__}")
        return {str(k): (float(v) if isinstance(v, (int, float, np.number)) else v)
                for k, v in values.items()}
    except Exception as exc:  # every bad input becomes an error row; the batch goes on
        raise _StageError(stage, exc) from exc


def _task(entry, config):
    """The Dask task: never raises for bad input, returns an outcome dict instead."""
    start = time.perf_counter()
    try:
        row = run_pipeline(entry, config)
        return {"status": "ok", "features": row, "seconds": time.perf_counter() - start}
    except _StageError as err:
        exc = err.exc
        message = one_line(exc)
        return {"status": "error", "stage": err.stage, "error_type": type(exc).__name__,
                "message": message, "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------------------------------
# Parts: atomic per-volume results
# ---------------------------------------------------------------------------------------------

#: Written beside ``features.parquet`` (by the CLI and the demo) so that ``train`` records
#: the extraction settings in the model card and ``predict`` extracts new volumes the same way.
FEATURE_SETTINGS_FILE = "feature_settings.json"


def write_feature_settings(out_dir, settings) -> Path:
    """Write ``settings`` (any form :class:`FeatureSettings` accepts) as JSON in ``out_dir``."""
    from .features import FeatureSettings

    path = Path(out_dir) / FEATURE_SETTINGS_FILE
    text = json.dumps(FeatureSettings.coerce(settings).to_dict(), indent=2, sort_keys=True)
    path.write_text(text)
    return path


def _atomic_write_bytes(path: Path, payload: bytes):
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_part(parts_dir: Path, key: str, entry: _Entry, outcome: dict):
    import io as _io

    import pandas as pd

    meta = {"path": entry.path, "mask": entry.mask,
            "label": None if entry.label is None else str(entry.label),
            "subject": None if entry.subject is None else str(entry.subject)}
    if outcome["status"] == "ok":
        frame = pd.DataFrame([{**meta, **outcome["features"]}])
        buf = _io.BytesIO()
        frame.to_parquet(buf, index=False)
        _atomic_write_bytes(parts_dir / f"{key}.parquet", buf.getvalue())
    else:
        record = {**{k: meta[k] for k in ("path", "mask")},
                  **{k: outcome[k] for k in ("stage", "error_type", "message")}}
        _atomic_write_bytes(parts_dir / f"{key}.error.json", json.dumps(record).encode())


def _read_part(parts_dir: Path, key: str):
    """('ok', DataFrame) / ('error', dict) / None for a key with no stored result."""
    import pandas as pd

    ok, err = parts_dir / f"{key}.parquet", parts_dir / f"{key}.error.json"
    try:
        if ok.exists():
            return "ok", pd.read_parquet(ok)
        if err.exists():
            return "error", json.loads(err.read_text())
    except Exception:  # noqa: BLE001  an unreadable part (e.g. a disk fault) is recomputed
        return None
    return None


def _assemble(ok_frames, error_records):
    import pandas as pd

    if ok_frames:
        features = pd.concat(ok_frames, ignore_index=True, sort=False)
        feature_cols = [c for c in features.columns if c not in _META_COLUMNS]
        features = features[list(_META_COLUMNS) + feature_cols]
        features = features.sort_values(["path", "mask"], na_position="first", kind="stable")
        features = features.reset_index(drop=True)
    else:
        features = pd.DataFrame(columns=list(_META_COLUMNS))
    errors = pd.DataFrame(error_records, columns=list(_ERROR_COLUMNS))
    errors = errors.sort_values(["path", "mask"], na_position="first", kind="stable")
    return features, errors.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

def _connect(scheduler, n_workers, processes):
    """(client, cleanup) for None (a new LocalCluster), an address, or a Client."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        n = n_workers or max(1, os.cpu_count() or 1)
        # Worker processes listen on loopback only; thread workers talk in-process (inproc://),
        # for which distributed refuses a host.
        network = {"host": "127.0.0.1"} if processes else {}
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                               dashboard_address=None, **network)
        client = Client(cluster, set_as_default=False)

        def cleanup():
            client.close()
            cluster.close()

        return client, cleanup
    if isinstance(scheduler, str):
        if not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise ValueError(f"`scheduler` must be None, a Client or an address such as "
                             f"'tcp://127.0.0.1:8786', got {scheduler!r}")
        client = Client(scheduler, set_as_default=False)
        return client, client.close
    if isinstance(scheduler, Client):
        return scheduler, (lambda: None)
    raise TypeError(f"`scheduler` must be None, an address string or a distributed.Client, "
                    f"got {type(scheduler).__name__}")


class _Progress:
    def __init__(self, total, mode):
        self.total, self.done, self.bar = total, 0, None
        interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.log = mode == "auto" and not interactive
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

    def close(self):
        if self.bar is not None:
            self.bar.close()


def process_archive(source, out_dir, *, config: PipelineConfig | None = None, scheduler=None,
                    n_workers=None, processes=True, progress="auto",
                    retry_failed=False, **config_kwargs) -> ArchiveResult:
    """Run the pipeline on every volume of an archive; resumable, bad inputs recorded.

    Parameters
    ----------
    source : str or os.PathLike
        A manifest CSV (columns ``path,label[,mask][,subject]``) or a folder scanned
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
        "auto": a tqdm bar when stderr is a terminal, else one JSON log line per volume on the
        ``medimg_fast.archive`` logger (level INFO).  True: always the bar.  False: neither.
    retry_failed : bool
        Recompute volumes whose stored outcome is an error (default: reuse it).

    Returns
    -------
    ArchiveResult

    Raises
    ------
    ArchiveSourceNotFoundError
        If `source` does not exist (a FileNotFoundError).
    ManifestError
        If the manifest lacks the ``path`` or ``label`` column (a ValueError).
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

    entries = read_manifest(source) if source.is_file() else scan_archive(source)
    out_dir = Path(out_dir)
    parts_dir = out_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)

    fingerprint = config.fingerprint()
    keyed = {}
    for entry in entries:
        keyed.setdefault(_entry_key(entry, fingerprint), entry)  # identical rows run once

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

    transient = []
    if todo:
        client, cleanup = _connect(scheduler, n_workers, processes)
        bar = _Progress(len(todo), progress)
        try:
            futures = {}
            for key, entry in todo.items():
                future = client.submit(_task, entry, config, key=f"medimg-volume-{key}",
                                       pure=False)
                futures[future] = key
            for future in as_completed(futures, loop=client.loop):
                key = futures[future]
                entry = todo[key]
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001  KilledWorker, lost connection: not the input's fault
                    outcome = {"status": "error", "stage": "worker",
                               "error_type": type(exc).__name__,
                               "message": one_line(exc)}
                    transient.append(key)
                else:
                    _write_part(parts_dir, key, entry, outcome)
                bar.update(entry, outcome)
                stored = _read_part(parts_dir, key)
                if stored is not None and stored[0] == "ok":
                    ok_frames[key] = stored[1]
                elif stored is not None:
                    error_records[key] = stored[1]
                else:
                    error_records[key] = {"path": entry.path, "mask": entry.mask,
                                          **{k: outcome[k] for k in
                                             ("stage", "error_type", "message")}}
                future.release()
        finally:
            bar.close()
            cleanup()

    import pandas as pd

    features, errors = _assemble(list(ok_frames.values()), list(error_records.values()))
    features_path, errors_path = out_dir / "features.parquet", out_dir / "errors.csv"
    import io as _io

    buf = _io.BytesIO()
    features.to_parquet(buf, index=False)
    _atomic_write_bytes(features_path, buf.getvalue())
    _atomic_write_bytes(errors_path, errors.to_csv(index=False).encode())
    # Return exactly what is on disk (same dtypes whether rows were computed or reused).
    features = pd.read_parquet(features_path)
    result = ArchiveResult(features=features, errors=errors, n_succeeded=len(features),
                           n_failed=len(errors), n_skipped=n_skipped,
                           features_path=features_path, errors_path=errors_path)
    logger.info(json.dumps({"event": "archive_done", "succeeded": result.n_succeeded,
                            "failed": result.n_failed, "skipped": result.n_skipped,
                            "out_dir": str(out_dir)}))
    return result
