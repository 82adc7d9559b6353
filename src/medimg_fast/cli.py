"""``medimg-fast``: the command line, a thin layer over the public API.

Every command maps onto functions that can be called from Python:

=========  ==================================================================
info       :func:`medimg_fast.backends.available_backends` and versions
filter     :func:`medimg_fast.io.open_volume` -> a filter of
           :mod:`medimg_fast.filters` -> :func:`medimg_fast.io.save_volume`
features   :func:`medimg_fast.archive.process_archive`
train      :func:`medimg_fast.classify.train` and ``save_model``
predict    :func:`medimg_fast.classify.load_model` (after ``process_archive`` for a source)
run        :func:`medimg_fast.demo.run_study`
bench      the filters of each backend against scipy.ndimage
demo       :func:`medimg_fast.demo.run_demo`
=========  ==================================================================

Exit codes: 0 success (also when a reader of stdout such as ``head`` closes the pipe
early); 1 finished, but some volumes are in error; 2 usage or user error (missing file,
bad option, unknown filter), reported as one line on stderr with a hint; 3 an unexpected
internal error; 130 interrupted (SIGINT, Ctrl-C), 143 terminated (SIGTERM); finished
volumes are kept either way.  ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from ._shared.utils import one_line
from .config import SETTINGS_TABLE

__all__ = ["FILTER_NAMES", "UsageError", "build_parser", "main"]

PROG = "medimg-fast"
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143

#: Writers of the ``filter`` command by the output's ending.
OUTPUT_FORMATS = {".zarr": "zarr", ".ome.zarr": "zarr", ".nii": "nifti", ".nii.gz": "nifti",
                  ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that the run unwinds as on Ctrl-C."""

#: Filters the ``filter`` command offers: the public image filters of
#: :mod:`medimg_fast.filters` (``gaussian_kernel1d`` builds a kernel, it filters nothing).
FILTER_NAMES = (
    "gaussian_filter", "uniform_filter", "median_filter", "minimum_filter", "maximum_filter",
    "sobel", "prewitt", "laplace", "gaussian_laplace", "gaussian_gradient_magnitude",
    "gradient_magnitude", "difference_of_gaussians", "correlate", "convolve",
)

#: ``filter`` options and the keyword of the filter function each one fills.
_FILTER_PARAMS = ("sigma", "size", "low_sigma", "high_sigma", "axis", "order", "mode", "cval",
                  "truncate", "weights")

#: ``bench`` cases: (filter, keyword arguments, scipy.ndimage equivalent).
_BENCH_CASES = {
    "gaussian_filter": {"sigma": 2.0},
    "uniform_filter": {"size": 5},
    "median_filter": {"size": 3},
    "gaussian_laplace": {"sigma": 2.0},
    "sobel": {"axis": 0},
    "gradient_magnitude": {},
}


class UsageError(ValueError):
    """A command line the user has to correct; shown as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (one line) instead of printing the usage."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


_EPILOGS = {
    "main": """examples:
  medimg-fast info
  medimg-fast filter scan.nii.gz smooth.zarr --filter gaussian_filter --sigma 2
  medimg-fast features manifest.csv --out features/
  medimg-fast train features/features.parquet --label label --group subject --out model/
  medimg-fast predict model/ new_manifest.csv --out predictions.csv
  medimg-fast run manifest.csv --label label --out study/
  medimg-fast bench --size 64
  medimg-fast demo --out demo-output

Global options go before or after the command; any option can come from a TOML file
given with --config (command options in a table named after the command), and options
on the command line override it.  Exit codes: 0 ok, 1 some volumes failed, 2 usage error.""",
    "info": """examples:
  medimg-fast info
  medimg-fast info --json
  medimg-fast info RS.dcm              # the ROIs of a structure set (or a SEG's segments)
  medimg-fast info ct_series/          # what a volume is: shape, spacing, origin, modality""",
    "scan": """examples:
  medimg-fast scan /data/pacs_export --out manifest.csv
  medimg-fast scan /data/pacs_export --out study/manifest.csv --workers 2 --json

Reads DICOM headers only, groups files by series in any folder layout, pairs RTSTRUCT and
SEG files with the series they reference, and writes one row per image and ROI (path,
mask, roi, subject, modality, series_description, series_uid, label to fill in) and the
unusable files and series with the reason to errors.csv beside the manifest.""",
    "maps": """examples:
  medimg-fast maps ct.nii.gz gtv.nii.gz --out maps/ --families cm --radius 2 --bin-count 32
  medimg-fast maps ct_series/ RS.dcm --roi GTV-1 --out maps/ --config maps.toml
  medimg-fast maps ct.nii.gz gtv.nii.gz --out maps.zarr/ --format zarr --dims 2D

Writes one NIfTI (or Zarr) per feature with the image's geometry, NaN outside the ROI;
feature settings (discretisation, distances) come from --bin-* flags or [maps.settings].""",
    "filter": """examples:
  medimg-fast filter scan.nii.gz smooth.zarr --filter gaussian_filter --sigma 2
  medimg-fast filter ct_series/ edges.zarr --filter gradient_magnitude --backend numba
  medimg-fast filter big.zarr med.zarr --filter median_filter --size 3 --chunks 64 --memory-limit 1GiB
  medimg-fast filter scan.nii.gz log.zarr --filter gaussian_laplace --sigma 1.5 --physical

Input: NIfTI, a DICOM series (folder or file), Zarr/OME-Zarr, TIFF or .npy.  Output by its
ending: .zarr an OME-Zarr (Zarr v3) image written chunk by chunk; .nii/.nii.gz NIfTI;
.tif/.tiff TIFF; .npy NumPy; all but .npy keep the input's spacing.""",
    "features": """examples:
  medimg-fast features manifest.csv --out features/
  medimg-fast features /data/archive --out features/ --scheduler tcp://10.0.0.5:8786
  medimg-fast features manifest.csv --out features/ --bin-width 25 --window -1000 400

The manifest is a CSV with columns path[,label][,mask][,subject][,roi] (label only to
train); a folder is scanned for NIfTI files, DICOM series and Zarr stores.  Rerunning
resumes: finished volumes are kept.  Writes DIR/features.parquet (or .csv with --format
csv) and DIR/errors.csv, in the manifest's order, with per-volume timings; exit code 1
when some volumes failed.""",
    "train": """examples:
  medimg-fast train features/features.parquet --label label --out model/
  medimg-fast train features.csv --label diagnosis --group patient --model svm --out model/

Writes DIR/model.skops (skops, no pickle), DIR/model_card.json and DIR/metrics.json.""",
    "predict": """examples:
  medimg-fast predict model/ features/features.parquet --out predictions.csv
  medimg-fast predict model/ new_manifest.csv --out predictions.parquet

A features table (.parquet, or a .csv holding the model's feature columns) is used as is;
a manifest (label column optional) or folder is first run through feature extraction the
way the model's training features were made (settings, masks, window/resampling), or
refused with the reason.  The predictions keep the manifest's columns.""",
    "run": """examples:
  medimg-fast run manifest.csv --label label --out study/
  medimg-fast run manifest.csv --label label --group subject --model logistic_regression \\
      --out study/ --scheduler tcp://10.0.0.5:8786

Writes study/features/, study/model/ and study/report.html (with study/images/).""",
    "bench": """examples:
  medimg-fast bench
  medimg-fast bench --size 128 --repeat 5 --filters gaussian_filter median_filter
  medimg-fast bench --backends numba numpy --out bench-output --json

Prints megavoxels/s per filter and backend next to scipy.ndimage on the same volume,
writes OUT/bench.json and OUT/bench.png.""",
    "demo": """examples:
  medimg-fast demo --out demo-output
  medimg-fast demo --out demo-small --size small --quiet
  medimg-fast demo --out demo-output --scheduler tcp://10.0.0.5:8786

Builds a labelled synthetic CT archive (NIfTI, DICOM series and Zarr), summarises the real
scans shipped with pydicom and nibabel, extracts features, cross-validates a classifier and
writes OUT/report.html.""",
}


def _global_parent(suppress: bool):
    parent = argparse.ArgumentParser(add_help=False)
    kw = {"default": argparse.SUPPRESS} if suppress else {}
    g = parent.add_argument_group("global options")
    g.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file",
                   **({"default": argparse.SUPPRESS} if suppress else {"default": None}))
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages",
                   **kw)
    g.add_argument("--json", action="store_true",
                   help="print a machine-readable JSON summary on stdout", **kw)
    g.add_argument("--debug", action="store_true", help="show tracebacks of errors", **kw)
    g.add_argument("--log-level", choices=["debug", "info", "warning", "error", "critical"],
                   type=str.lower, metavar="LEVEL",
                   help="level of the log on stderr, for medimg-fast and Dask's loggers "
                        "(default warning; error with --quiet)", **kw)
    g.add_argument("--log-file", metavar="FILE",
                   help="also write the log (per-volume JSON records at info) to FILE", **kw)
    return parent


def _add_cluster_options(g):
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask scheduler, e.g. tcp://host:8786 (default: a local "
                        "cluster on this machine)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="workers of the local cluster (default: one per core)")
    g.add_argument("--backend", default="auto", help="numba, numpy, cupy or auto (default)")
    g.add_argument("--dashboard", action="store_true",
                   help="start the local cluster's Dask dashboard (default: none)")


def _add_model_options(g):
    from .classify import MODELS

    g.add_argument("--model", default="random_forest", choices=MODELS,
                   help="classifier (default: random_forest)")
    g.add_argument("--cv", type=int, default=5, metavar="K", help="folds (default 5)")


def _add_archive_options(p):
    g = p.add_argument_group("feature extraction")
    _add_cluster_options(g)
    g.add_argument("--bin-width", type=float, metavar="W",
                   help="IBSI fixed bin size for discretisation (e.g. 25 HU)")
    g.add_argument("--bin-count", type=int, metavar="N",
                   help="IBSI fixed bin number (default 32 when no --bin-width)")
    g.add_argument("--bin-min", type=float, metavar="V",
                   help="lower edge of the first bin with --bin-width (e.g. -1000)")
    g.add_argument("--families", nargs="+", metavar="F",
                   help="feature families among stat ih cm morph loc ivh rlm szm dzm ngt "
                        "ngl, or all (default: stat ih cm morph)")
    g.add_argument("--texture-dims", nargs="+", choices=["2D", "2.5D", "3D"], metavar="D",
                   help="texture analysis in 2D (slice by slice), 2.5D and/or 3D "
                        "(default 3D)")
    g.add_argument("--reseg-range", nargs=2, type=_optional_float, metavar=("LOW", "HIGH"),
                   help="IBSI re-segmentation range ('none' for an open end)")
    g.add_argument("--diagnostics", action="store_true",
                   help="add the IBSI diagnostic values (dimensions, voxel counts per stage)")
    g.add_argument("--window", nargs=2, type=float, metavar=("LOW", "HIGH"),
                   help="clip intensities to [LOW, HIGH] first")
    g.add_argument("--target-spacing", nargs=3, type=float, metavar=("Z", "Y", "X"),
                   help="resample to this voxel size in mm")
    g.add_argument("--normalize", choices=["zscore"], help="intensity normalisation")
    g.add_argument("--volume-index", type=int, metavar="T",
                   help="for 4-D inputs, the volume to process")
    g.add_argument("--units", choices=["stored", "suv"],
                   help="suv: PET DICOM series as SUV body weight (decay-corrected dose)")
    g.add_argument("--retry-failed", action="store_true",
                   help="recompute volumes that failed in an earlier run")
    g.add_argument("--format", dest="table_format", choices=["parquet", "csv"],
                   default="parquet", help="features table format (default parquet)")


def _optional_float(text):
    if str(text).lower() == "none":
        return None
    return float(text)


_optional_float.__name__ = "float"


def _add_training_options(p, *, label_required):
    g = p.add_argument_group("training")
    g.add_argument("--label", metavar="COLUMN", default=None if label_required else "label",
                   help="the class column" + ("" if label_required else " (default: label)"))
    g.add_argument("--group", metavar="COLUMN",
                   help="subject column: folds never split a subject (run: 'subject' when "
                        "the table has it)")
    g.add_argument("--impute", action="store_true",
                   help="keep features that are NaN in some rows, filled with the training "
                        "median (default: drop them, with a warning naming them)")
    _add_model_options(g)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``medimg-fast`` (subcommands, options, help texts)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog=PROG, parents=[_global_parent(False)], formatter_class=fmt,
                     description="High-throughput medical image analysis: filters, "
                                 "radiomics features and classifiers, on CPU or GPU.",
                     epilog=_EPILOGS["main"])
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = [_global_parent(True)]

    def add(name, help_):
        return sub.add_parser(name, help=help_, description=help_, parents=common,
                              formatter_class=fmt, epilog=_EPILOGS[name])

    p = add("info", "versions, backends and whether each works here, GPU, CPU cores, Dask; "
                    "or what a file is (the ROIs of an RTSTRUCT, the segments of a SEG)")
    p.add_argument("path", metavar="PATH", nargs="?",
                   help="a volume, RTSTRUCT or SEG file to describe instead")

    p = add("scan", "scan a DICOM tree into a manifest of image series and their masks")
    p.add_argument("folder", metavar="DIR", help="the DICOM tree (any layout, nested folders)")
    p.add_argument("--out", metavar="FILE", help="the manifest CSV to write")
    p.add_argument("--errors", metavar="FILE",
                   help="the errors CSV (default: errors.csv beside the manifest)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes reading headers (default: one per core)")

    p = add("maps", "voxel-wise feature maps of one image and its ROI, a file per feature")
    p.add_argument("image", metavar="IMAGE", help="NIfTI, DICOM series, Zarr, TIFF or .npy")
    p.add_argument("mask", metavar="MASK", nargs="?",
                   help="the ROI: an image, RTSTRUCT or SEG (default: the whole image)")
    p.add_argument("--out", metavar="DIR", help="output folder")
    p.add_argument("--roi", help="the ROI name or segment of an RTSTRUCT/SEG mask")
    g = p.add_argument_group("window and features")
    g.add_argument("--radius", type=int, default=1, metavar="R",
                   help="window half-width in voxels: (2R+1)^D (default 1)")
    g.add_argument("--radius-mm", type=float, metavar="MM", help="window half-width in mm")
    g.add_argument("--dims", choices=["2D", "3D"], default="3D",
                   help="3D windows or in-plane (2D) windows (default 3D)")
    g.add_argument("--families", nargs="+", metavar="F",
                   help="among stat ih cm rlm ngt ngl (default: all of them)")
    g.add_argument("--whole-window", action="store_true",
                   help="count every voxel of the window, not only ROI voxels")
    g.add_argument("--bin-width", type=float, metavar="W", help="IBSI fixed bin size")
    g.add_argument("--bin-count", type=int, metavar="N", help="IBSI fixed bin number")
    g.add_argument("--bin-min", type=float, metavar="V", help="first bin edge with --bin-width")
    g.add_argument("--format", dest="map_format", choices=["nifti", "zarr"], default="nifti",
                   help="one .nii.gz (default) or .zarr per feature")
    g.add_argument("--backend", default="auto", help="numba or auto (default)")
    g.add_argument("--overwrite", action="store_true", help="replace existing map files")
    g.add_argument("--report", action="store_true",
                   help="also write OUT/report.html: the maps beside the image (one slice)")

    p = add("filter", "filter a volume (any readable format) into an image file")
    p.add_argument("input", metavar="IN", help="NIfTI, DICOM series, Zarr, TIFF or .npy")
    p.add_argument("output", metavar="OUT",
                   help="the image to write; its ending chooses the format: .zarr (OME-Zarr), "
                        ".nii/.nii.gz, .tif/.tiff or .npy")
    p.add_argument("--filter", dest="filter_name", metavar="NAME",
                   help=f"one of: {', '.join(FILTER_NAMES)}")
    g = p.add_argument_group("filter parameters (as in scipy.ndimage)")
    g.add_argument("--sigma", type=float, nargs="+", metavar="S",
                   help="Gaussian sigma: one value or one per axis (z y x), in voxels")
    g.add_argument("--size", type=int, nargs="+", metavar="N", help="window size(s) in voxels")
    g.add_argument("--low-sigma", type=float, nargs="+", metavar="S",
                   help="difference_of_gaussians: the smaller sigma")
    g.add_argument("--high-sigma", type=float, nargs="+", metavar="S",
                   help="difference_of_gaussians: the larger sigma")
    g.add_argument("--axis", type=int, metavar="A", help="sobel/prewitt: the axis")
    g.add_argument("--order", type=int, nargs="+", metavar="K",
                   help="gaussian_filter: derivative order(s)")
    g.add_argument("--mode", help="boundary mode (default reflect)")
    g.add_argument("--cval", type=float, help="value outside the image for mode=constant")
    g.add_argument("--truncate", type=float, help="Gaussian radius in sigmas (default 4)")
    g.add_argument("--weights", metavar="FILE.npy", help="correlate/convolve: the kernel")
    g.add_argument("--physical", action="store_true",
                   help="sigmas are in mm (converted with the volume's spacing)")
    g = p.add_argument_group("execution")
    g.add_argument("--backend", default="auto", help="numba, numpy, cupy or auto (default)")
    g.add_argument("--chunks", type=int, nargs="+", metavar="N",
                   help="process in chunks of this shape (one value or z y x)")
    g.add_argument("--volume-index", type=int, metavar="T", help="for 4-D inputs, the volume")
    g.add_argument("--memory-limit", metavar="SIZE",
                   help="memory budget such as 1GiB (default 2 GiB, or MEDIMG_FAST_MEMORY_BUDGET)"
                        "; the Zarr is written in steps of 1/32 of it")
    g.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")

    p = add("features", "radiomics features of an archive (manifest or folder)")
    p.add_argument("source", metavar="SOURCE", help="manifest CSV or folder")
    p.add_argument("--out", metavar="DIR", help="output folder")
    _add_archive_options(p)

    p = add("train", "cross-validate and fit a classifier on a features table")
    p.add_argument("features", metavar="FEATURES", help="features table (.parquet or .csv)")
    p.add_argument("--out", metavar="DIR", help="output folder for the model")
    _add_training_options(p, label_required=True)

    p = add("predict", "predict labels for a features table or an archive")
    p.add_argument("model", metavar="MODEL", help="model folder written by train/run")
    p.add_argument("source", metavar="FEATURES_OR_SOURCE",
                   help="features table, manifest CSV or folder")
    p.add_argument("--out", metavar="FILE", help="predictions (.csv or .parquet)")
    _add_archive_options(p)

    p = add("run", "features, training, evaluation and the HTML report in one go")
    p.add_argument("source", metavar="SOURCE", help="manifest CSV or folder")
    p.add_argument("--out", metavar="DIR", help="output folder")
    _add_training_options(p, label_required=False)
    _add_archive_options(p)

    p = add("bench", "filter throughput per backend against scipy.ndimage")
    p.add_argument("--size", type=int, default=64, metavar="N",
                   help="edge of the cubic float32 test volume (default 64)")
    p.add_argument("--repeat", type=int, default=3, metavar="R",
                   help="timed runs per case; the best counts (default 3)")
    p.add_argument("--filters", nargs="+", metavar="NAME", default=list(_BENCH_CASES),
                   help=f"among {', '.join(_BENCH_CASES)} (default: all)")
    p.add_argument("--backends", nargs="+", metavar="NAME",
                   help="backends to time (default: every available one)")
    p.add_argument("--out", metavar="DIR", default="bench-output",
                   help="folder for bench.json and bench.png (default bench-output)")

    p = add("demo", "the bundled default: synthetic archive -> features -> model -> report")
    p.add_argument("--out", metavar="DIR", default="demo-output",
                   help="output folder (default demo-output)")
    p.add_argument("--size", choices=["small", "medium", "large"], default="medium",
                   help="small: 24 volumes of 48-56^3; medium (default): 100 of 96-128^3; "
                        "large: 300 of 128-192^3")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic archive")
    _add_cluster_options(p)
    _add_model_options(p)
    return parser


# Options a command cannot run without; checked after the config file is merged in, so
# they may come from either place.
_REQUIRED = {"filter": ("filter_name",), "features": ("out",), "train": ("label", "out"),
             "predict": ("out",), "run": ("out",), "scan": ("out",), "maps": ("out",)}
_GLOBAL = ("quiet", "json", "debug")
#: Global options with a value (not flags).
_GLOBAL_VALUES = ("log_level", "log_file")


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _option_actions(subparser):
    """Option name (``--bin-width`` -> ``bin_width``) -> action, for the options (not the
    positionals) a config file may set."""
    return {a.option_strings[-1].lstrip("-").replace("-", "_"): a for a in subparser._actions
            if a.option_strings and a.dest not in ("help", "config", *_GLOBAL,
                                                   *_GLOBAL_VALUES)}


def _convert(action, value, where):
    flag = action.option_strings[-1]

    def one(v):
        # TOML values are typed: take them as the command line would, never coerce silently
        # (``workers = 1.5`` is not 1).
        kind = getattr(action.type, "__name__", None)
        if kind == "int" and (isinstance(v, bool) or not isinstance(v, int)):
            raise UsageError(f"{where}: {flag} expects int, got {v!r}")
        if kind == "float" and not (isinstance(v, (int, float)) and not isinstance(v, bool)) \
                and not (action.type is _optional_float and str(v).lower() == "none"):
            raise UsageError(f"{where}: {flag} expects float, got {v!r}")
        if action.type is None and not isinstance(v, str) and not isinstance(v, bool):
            raise UsageError(f"{where}: {flag} expects a string, got {v!r}")
        if action.type is not None and not isinstance(v, bool):
            try:
                v = action.type(v)
            except (TypeError, ValueError):
                raise UsageError(f"{where}: {flag} expects {action.type.__name__}, got {v!r}")
        elif action.type is not None or (action.type is None and isinstance(v, bool)):
            raise UsageError(f"{where}: {flag} expects a value, got {v!r}")
        if action.choices is not None and v not in action.choices:
            raise UsageError(f"{where}: {flag} must be one of {list(action.choices)}, "
                             f"got {v!r}")
        return v

    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UsageError(f"{where}: {flag} must be true or false, got {value!r}")
        return value
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if isinstance(action.nargs, int) and len(values) != action.nargs:
            raise UsageError(f"{where}: {flag} needs {action.nargs} values, got {value!r}")
        return [one(v) for v in values]
    if isinstance(value, (list, dict)):
        raise UsageError(f"{where}: {flag} takes one value, got {value!r}")
    return one(value)


#: Commands that extract features and so take a ``[command.settings]`` table.
_SETTINGS_COMMANDS = ("features", "predict", "run", "demo", "maps")


def _config_names(command, subparser):
    names = set(_option_actions(subparser)) | set(_GLOBAL)
    if command in _SETTINGS_COMMANDS:
        names.add(SETTINGS_TABLE)
    return names


def parse_args(argv=None):
    """Parse `argv`, merging the ``--config`` file under the command-line options."""
    from .config import load_config

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        raise UsageError("no command given; commands: info, filter, features, train, "
                         "predict, run, bench, demo (see 'medimg-fast --help')")
    sub = _subparsers(parser)[args.command]
    for name in _GLOBAL:
        if not hasattr(args, name):
            setattr(args, name, False)
    for name in _GLOBAL_VALUES:
        if not hasattr(args, name):
            setattr(args, name, None)
    settings_table = None
    if getattr(args, "config", None):
        actions = _option_actions(sub)
        options = load_config(args.config, args.command, global_options=set(_GLOBAL),
                              command_options={n: _config_names(n, p)
                                               for n, p in _subparsers(parser).items()})
        where = f"config file {args.config!r}"
        defaults = {}
        settings_table = options.pop(SETTINGS_TABLE, None)
        for name, value in options.items():
            if name in _GLOBAL:
                if not isinstance(value, bool):
                    raise UsageError(f"{where}: {name} must be true or false, got {value!r}")
                defaults[name] = value
            else:
                defaults[actions[name].dest] = _convert(actions[name], value, where)
        # Re-parse with the file's values as defaults: what the command line gives wins.
        global_defaults = {k: v for k, v in defaults.items() if k in _GLOBAL}
        parser.set_defaults(**global_defaults)
        sub.set_defaults(**defaults)
        cli = args
        args = parser.parse_args(argv)
        for name in _GLOBAL:
            given = getattr(cli, name, False)
            setattr(args, name, bool(given) or bool(defaults.get(name, False)))
        for name in _GLOBAL_VALUES:
            setattr(args, name, getattr(cli, name, None))
    args.settings_table = settings_table
    for dest in _REQUIRED.get(args.command, ()):
        if getattr(args, dest, None) is None:
            action = next(a for a in _option_actions(sub).values() if a.dest == dest)
            raise UsageError(f"{args.command}: the option {action.option_strings[-1]} is "
                             f"required (on the command line or in --config)")
    return args


# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------

def _interactive(args) -> bool:
    return not args.quiet and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def _emit(args, summary, human_lines):
    if args.json:
        print(json.dumps(_jsonable(summary), indent=2, sort_keys=True))
    elif not args.quiet:
        for line in human_lines:
            print(line)


def _warn(args, warnings):
    """Warnings go to stderr (also under --json, whose summary lists them too)."""
    if args.quiet:
        return
    for w in warnings:
        print(f"{PROG}: warning: {w}", file=sys.stderr)


#: Loggers of the Dask machinery that print on their own (port in use, worker restarts,
#: "Couldn't gather keys"): set to the level asked.
_DASK_LOGGERS = ("distributed", "dask", "tornado", "bokeh", "asyncio")


def _setup_logging(args):
    """``--log-level`` / ``--log-file`` / ``--quiet``: handlers on stderr (and the file) for
    medimg-fast and Dask's loggers, at the level asked."""
    name = args.log_level or ("error" if args.quiet else "warning")
    level = getattr(logging, name.upper())
    # Worker processes read their log levels from the Dask config in the environment.
    os.environ["DASK_LOGGING__DISTRIBUTED"] = name
    if args.command in _SETTINGS_COMMANDS:
        # distributed configures its loggers when first imported: import it first, so that
        # what is set here is what stays.
        import distributed  # noqa: F401

    def handlers():
        fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s")
        out = [logging.StreamHandler(sys.stderr)]
        out[0].setLevel(level)
        if args.log_file:
            Path(args.log_file).parent.mkdir(parents=True, exist_ok=True)
            out.append(logging.FileHandler(args.log_file, encoding="utf-8"))
        for h in out:
            h.setFormatter(fmt)
        return out

    ours = logging.getLogger("medimg_fast")
    ours.setLevel(min(level, logging.INFO) if args.log_file else level)
    ours.handlers[:] = handlers()
    ours.propagate = False
    for dask_name in _DASK_LOGGERS:
        logger = logging.getLogger(dask_name)
        logger.setLevel(level)
        logger.handlers[:] = handlers()  # their own: distributed may reset its handlers' levels
        logger.propagate = False


def _jsonable(value):
    from .demo import _jsonable as convert

    return convert(value)


class _DaskProgress:
    """A tqdm bar over the tasks of a Dask computation on a local scheduler."""

    def __init__(self, enabled, desc):
        self.enabled, self.desc, self.callback = enabled, desc, None

    def __enter__(self):
        if not self.enabled:
            return self
        from dask.callbacks import Callback
        from tqdm.auto import tqdm

        desc = self.desc

        class _Bar(Callback):
            def _start_state(self, dsk, state):
                self.bar = tqdm(total=sum(len(state[k]) for k in
                                          ("ready", "waiting", "running", "finished")),
                                desc=desc, unit="task", leave=False)

            def _posttask(self, key, result, dsk, state, worker_id):
                self.bar.update(1)

            def _finish(self, dsk, state, errored):
                self.bar.close()

        self.callback = _Bar()
        self.callback.__enter__()
        return self

    def __exit__(self, *exc):
        if self.callback is not None:
            self.callback.__exit__(*exc)
        return False


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

def _describe_path(args):
    """``info PATH``: the ROIs of an RTSTRUCT, the segments of a SEG, or a volume's grid."""
    from .io import NotAnImageError, list_rois, list_segments, open_volume

    path = Path(args.path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
    try:
        volume = open_volume(path)
    except NotAnImageError:
        volume = None
    if volume is not None:
        summary = {"path": str(path), "kind": "volume", "shape": list(volume.data.shape),
                   "dtype": str(volume.data.dtype), "spacing": list(volume.spacing),
                   "origin": list(volume.origin), "modality": volume.modality,
                   "format": volume.metadata.get("format")}
        lines = [(f"{path}: {summary['format']} volume {'x'.join(map(str, summary['shape']))} "
                 f"{summary['dtype']}, spacing {tuple(round(s, 4) for s in volume.spacing)} mm "
                 f"(z, y, x), modality {volume.modality or 'unknown'}")]
        _emit(args, summary, lines)
        return EXIT_OK
    try:
        rois = list_rois(path)
        kind, label = "rtstruct", "ROI"
    except (ValueError, OSError):
        rois = list_segments(path)
        kind, label = "seg", "segment"
    summary = {"path": str(path), "kind": kind, "rois": rois}
    lines = [(f"{path}: {'structure set' if kind == 'rtstruct' else 'DICOM-SEG'} with "
             f"{len(rois)} {label}(s)")]
    for r in rois:
        extra = (f"{r.get('n_contours')} contour(s)" if kind == "rtstruct"
                 else f"{r.get('n_frames')} frame(s)")
        lines.append(f"  {r.get('number')}: {r.get('name') or r.get('label')!s}  {extra}")
    _emit(args, summary, lines)
    return EXIT_OK


def cmd_scan(args):
    from .io import scan_dicom

    folder = Path(args.folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"DICOM folder not found: {str(folder)!r}")
    result = scan_dicom(folder, workers=args.workers, progress=_interactive(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest, errors = result.to_manifest(out, args.errors)
    series = len({r["series_uid"] for r in result.rows})
    summary = {"manifest": str(manifest), "errors": str(errors), "rows": len(result.rows),
               "series": series, "n_errors": len(result.errors), "files": result.n_files,
               "skipped": len(result.skipped), "seconds": result.seconds,
               "files_per_second": result.files_per_second}
    _emit(args, summary, [
        (f"scanned {result.n_files} files in {result.seconds:.2f} s "
        f"({result.files_per_second:.0f} files/s): {series} image series, "
        f"{len(result.rows)} manifest row(s), {len(result.errors)} error(s), "
        f"{len(result.skipped)} non-image file(s) skipped"),
        (f"wrote {manifest} and {errors}; fill in the label column, then run "
        f"'medimg-fast features {manifest} --out features/'")])
    return EXIT_OK


def cmd_maps(args):
    import numpy as np

    from .features import FeatureSettings, feature_maps, write_feature_maps
    from .io import open_mask, open_volume

    image = open_volume(args.image)
    mask = None
    if args.mask is not None:
        mask = open_mask(args.mask, image, roi=args.roi).data
    elif args.roi is not None:
        raise UsageError("maps: --roi needs a MASK")
    settings = dict(getattr(args, "settings_table", None) or {})
    for key in ("bin_width", "bin_count", "bin_min"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    try:
        settings = FeatureSettings.from_dict(settings)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"maps: feature settings: {exc}") from exc
    start = time.perf_counter()
    maps = feature_maps(image.data, mask, spacing=image.spacing, settings=settings,
                        radius=args.radius, radius_mm=args.radius_mm,
                        masked_window=not args.whole_window, dims=args.dims,
                        families=args.families, backend=args.backend, dtype=np.float32)
    written = write_feature_maps(maps, args.out, image, format=args.map_format,
                                 overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    report = None
    if args.report:
        from .report import write_maps_report

        report = write_maps_report(
            Path(args.out) / "report.html", np.asarray(image.data),
            {k: np.asarray(v) for k, v in maps.items()},
            roi=None if mask is None else np.asarray(mask), settings=settings.to_dict())
    summary = {"out": str(args.out), "n_maps": len(maps), "seconds": seconds,
               "features": sorted(maps), "settings": settings.to_dict(),
               "report": None if report is None else str(report)}
    _emit(args, summary, [f"wrote {len(maps)} feature map(s) to {args.out} in {seconds:.1f} s"
                          + (f" ({len(written)} files)" if hasattr(written, "__len__") else "")
                          + ("" if report is None else f"; report {report}")])
    return EXIT_OK


def cmd_info(args):
    if getattr(args, "path", None):
        return _describe_path(args)
    import importlib.metadata as md
    import platform

    from . import __version__
    from .backends import AUTO_ORDER, available_backends, resolve_backend

    versions = {"python": platform.python_version(), "medimg-fast": __version__}
    for pkg in ("numpy", "scipy", "numba", "dask", "distributed", "zarr", "nibabel", "pydicom",
                "tifffile", "scikit-learn", "scikit-image", "pandas", "pyarrow", "skops",
                "matplotlib", "tqdm", "cupy-cuda12x", "cupy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            if not pkg.startswith("cupy"):
                versions[pkg] = None
    backends = {name: {"available": s.available, "reason": s.reason}
                for name, s in available_backends().items()}
    try:
        auto = resolve_backend("auto").name
    except ValueError as exc:
        auto = f"none ({exc})"
    gpu = _gpu_info(backends.get("cupy", {}))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    summary = {"versions": versions, "backends": backends, "auto_backend": auto,
               "auto_order": list(AUTO_ORDER), "gpu": gpu,
               "cpu": {"cores_usable": cores, "cores_total": os.cpu_count(),
                       "machine": platform.machine(), "system": platform.system()},
               "dask": _dask_info()}
    lines = [(f"medimg-fast {__version__} on Python {versions['python']} "
             f"({platform.system()} {platform.machine()})"), "", "backends:"]
    for name, b in backends.items():
        state = "available" if b["available"] else f"unavailable: {b['reason']}"
        lines.append(f"  {name:<6} {state}")
    lines.append(f"  auto -> {auto} (order {', '.join(AUTO_ORDER)}; override with "
                 "MEDIMG_FAST_BACKEND)")
    lines.append("")
    lines.append("gpu: " + (f"{gpu['name']}, {gpu['memory_gib']:.1f} GiB" if gpu.get("name")
                            else f"none ({gpu.get('reason')})"))
    lines.append(f"cpu: {cores} usable core(s) of {os.cpu_count()}")
    d = summary["dask"]
    lines.append(f"dask: scheduler {d['scheduler']}; feature extraction runs on "
                 f"{d['archive_scheduler']}")
    lines.append("")
    lines.append("versions:")
    lines.extend(f"  {k:<14} {v if v is not None else 'not installed'}"
                 for k, v in versions.items())
    _emit(args, summary, lines)
    return EXIT_OK


def _gpu_info(cupy_status):
    if not cupy_status.get("available"):
        return {"name": None, "memory_gib": None,
                "reason": cupy_status.get("reason") or "cupy backend unavailable"}
    try:
        import cupy

        device = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        free, total = cupy.cuda.runtime.memGetInfo()
        return {"name": name, "memory_gib": total / 2**30, "free_gib": free / 2**30,
                "reason": None}
    except Exception as exc:  # noqa: BLE001  (a driver problem is reported by `info`)
        return {"name": None, "memory_gib": None, "reason": f"{type(exc).__name__}: {exc}"}


def _dask_info():
    import dask

    configured = dask.config.get("scheduler", None)
    address = os.environ.get("DASK_SCHEDULER_ADDRESS") or dask.config.get(
        "scheduler-address", None)
    client = None
    try:
        from distributed import default_client
        client = default_client().scheduler.address
    except (ImportError, ValueError):
        pass
    scheduler = client or configured or "threads (dask.array default)"
    archive = (f"the scheduler at {address}" if address
               else "a LocalCluster started per run (or --scheduler tcp://host:port)")
    return {"scheduler": scheduler, "configured": configured, "address": address,
            "client": client, "archive_scheduler": archive}


def _filter_function(name):
    from . import filters

    if name not in FILTER_NAMES:
        close = difflib.get_close_matches(name, FILTER_NAMES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(f"unknown filter {name!r}; {hint}choose from: "
                         f"{', '.join(FILTER_NAMES)}")
    return getattr(filters, name)


def _scalar_or_tuple(values):
    if values is None:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def filter_kwargs(func, name, args, spacing):
    """Keyword arguments for filter `func` from the ``filter`` command's options."""
    import inspect

    import numpy as np

    params = inspect.signature(func).parameters
    given = {}
    for key in _FILTER_PARAMS:
        value = getattr(args, key, None)
        if value is None:
            continue
        if key not in params:
            takes = [p for p in params if p in _FILTER_PARAMS]
            raise UsageError(f"--{key.replace('_', '-')} does not apply to filter {name!r} "
                             f"(it takes: {', '.join('--' + t.replace('_', '-') for t in takes)})")
        if key == "weights":
            if not Path(value).is_file():
                raise UsageError(f"--weights file not found: {value!r}")
            value = np.load(value, allow_pickle=False)
        elif isinstance(value, list):
            value = _scalar_or_tuple(value)
        given[key] = value
    for key, p in params.items():
        if key == "image" or p.default is not inspect.Parameter.empty:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if key not in given:
            raise UsageError(f"filter {name!r} needs --{key.replace('_', '-')}")
    if args.physical:
        if "spacing" not in params:
            raise UsageError(f"--physical applies to Gaussian filters, not {name!r}")
        given["spacing"] = tuple(float(s) for s in spacing)
    given["backend"] = args.backend
    return given


def output_format(path):
    """The writer for `path` by its ending (see :data:`OUTPUT_FORMATS`); UsageError naming
    the endings otherwise."""
    name = str(path).rstrip("/\\").lower()
    for ending in sorted(OUTPUT_FORMATS, key=len, reverse=True):
        if name.endswith(ending):
            return OUTPUT_FORMATS[ending]
    raise UsageError(f"cannot tell the output format of {str(path)!r}; end it in one of "
                     f"{', '.join(OUTPUT_FORMATS)}")


def _nifti_affine(spacing, origin, direction):
    """RAS affine of a NIfTI holding our ``(z, y, x)`` array as is: LPS world =
    ``origin + direction @ (index * spacing)`` (direction columns: the z, y, x axes)."""
    import numpy as np

    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = lps_to_ras @ np.asarray(direction, float) @ np.diag(
        [float(v) for v in spacing])
    affine[:3, 3] = lps_to_ras @ np.asarray(origin, float)
    return affine


def _write_output(result, out, fmt, volume, overwrite):
    """Write the filtered array in `fmt`; returns the path.  Zarr streams chunk by chunk;
    the other formats hold the whole result in memory."""
    import numpy as np

    from .io import save_volume

    spacing = tuple(float(v) for v in volume.spacing[-3:])
    if fmt == "zarr":
        return save_volume(result, out, spacing=spacing, origin=volume.origin,
                           direction=volume.direction, overwrite=overwrite)
    array = np.asarray(result.compute() if hasattr(result, "compute") else result)
    if hasattr(array, "get") and not isinstance(array, np.ndarray):
        array = array.get()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial{''.join(out.suffixes)}")
    if fmt == "nifti":
        import nibabel as nib

        image = nib.Nifti1Image(np.ascontiguousarray(array),
                                _nifti_affine(spacing, volume.origin, volume.direction))
        image.header.set_xyzt_units("mm")
        image.set_qform(image.affine, code=1)
        image.set_sform(image.affine, code=1)
        nib.save(image, str(tmp))
    elif fmt == "tiff":
        import tifffile

        # ImageJ hyperstacks hold uint8, uint16 or float32, with the spacing in mm.
        if array.dtype not in (np.uint8, np.uint16, np.float32):
            array = array.astype(np.float32)
        tifffile.imwrite(tmp, array, imagej=True,
                         resolution=(1.0 / spacing[2], 1.0 / spacing[1]),
                         metadata={"spacing": spacing[0], "unit": "mm", "axes": "ZYX"})
    else:  # npy: no geometry
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    if out.is_dir():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def sigma_spacing_warnings(kwargs, spacing):
    """Warnings for Gaussian sigmas (in voxels) below one voxel along an axis whose voxels
    are coarser than the sigma asked in mm would suggest: the filter then barely smooths
    along that axis."""
    warnings = []
    for key in ("sigma", "low_sigma", "high_sigma"):
        value = kwargs.get(key)
        if value is None:
            continue
        sigmas = [float(value)] * 3 if not isinstance(value, (tuple, list)) else \
            [float(v) for v in value]
        if len(sigmas) != 3:
            continue
        given_mm = "spacing" in kwargs
        for axis, name in enumerate("zyx"):
            sigma_mm = sigmas[axis] if given_mm else sigmas[axis] * float(spacing[axis])
            if 0 < sigma_mm < float(spacing[axis]):
                warnings.append(
                    f"--{key.replace('_', '-')} {sigmas[axis]:g}"
                    f"{' mm' if given_mm else ' voxel(s)'} along axis {axis} ({name}) is "
                    f"{sigma_mm:.3g} mm, smaller than the voxel spacing there "
                    f"({float(spacing[axis]):.3g} mm): the filter hardly acts along {name}")
    return warnings


#: Results up to this size are computed in memory before writing, so that the filter's
#: throughput is measured without the write; larger ones stream into the Zarr store.
_PERSIST_LIMIT_BYTES = 1 << 30


def cmd_filter(args):
    from .io import open_volume

    func = _filter_function(args.filter_name)
    kwargs = filter_kwargs(func, args.filter_name, args, (1.0, 1.0, 1.0))  # validate first
    out = Path(args.output)
    fmt = output_format(out)
    if out.exists() and not args.overwrite:
        raise UsageError(f"{str(out)!r} exists; pass --overwrite to replace it")
    if args.memory_limit is not None:
        from .chunking import MEMORY_BUDGET_ENV, parse_size

        try:
            os.environ[MEMORY_BUDGET_ENV] = str(parse_size(args.memory_limit))
        except ValueError as exc:
            raise UsageError(f"--memory-limit: {exc}") from None
    volume = open_volume(args.input, volume_index=args.volume_index)
    data = volume.data
    if args.chunks:
        chunks = args.chunks[0] if len(args.chunks) == 1 else tuple(args.chunks)
        if isinstance(chunks, tuple) and len(chunks) != data.ndim:
            raise UsageError(f"--chunks needs 1 or {data.ndim} values, got {args.chunks}")
        data = data.rechunk(chunks)
    if args.physical:
        kwargs["spacing"] = tuple(float(s) for s in volume.spacing[-3:])
    warnings = sigma_spacing_warnings(kwargs, volume.spacing[-3:])
    _warn(args, warnings)
    total_start = time.perf_counter()
    # First call on a tiny block: JIT compilation (numba, CUDA) is timed apart, never as
    # throughput.
    import numpy as np

    start = time.perf_counter()
    tiny = np.zeros(tuple(min(8, s) for s in data.shape), dtype=data.dtype)
    try:
        func(tiny, **kwargs)
    except (ValueError, TypeError):
        pass  # a kernel larger than the tiny block: the real call reports real errors
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = func(data, **kwargs)
    streamed = fmt == "zarr" and getattr(result, "nbytes", 0) > _PERSIST_LIMIT_BYTES
    if streamed:
        # Too large to hold: the Zarr writer streams, so filter and write are one pass.
        with _DaskProgress(_interactive(args), args.filter_name):
            written = _write_output(result, out, fmt, volume, args.overwrite)
        compute_write = time.perf_counter() - start
        filter_seconds, write_seconds = compute_write, math.nan
    else:
        with _DaskProgress(_interactive(args), args.filter_name):
            result = result.persist(scheduler="threads") if hasattr(result, "persist") \
                else result
        filter_seconds = time.perf_counter() - start
        t = time.perf_counter()
        written = _write_output(result, out, fmt, volume, args.overwrite)
        write_seconds = time.perf_counter() - t
    total = time.perf_counter() - total_start
    voxels = math.prod(data.shape)
    mvox_s = voxels / 1e6 / filter_seconds if filter_seconds > 0 else math.nan
    summary = {"input": str(args.input), "output": str(written), "format": fmt,
               "filter": args.filter_name,
               "parameters": {k: v for k, v in kwargs.items() if k != "backend"},
               "backend": args.backend, "shape": list(data.shape),
               "dtype": str(result.dtype), "spacing": list(volume.spacing),
               "seconds": total, "seconds_compile": compile_seconds,
               "seconds_filter": filter_seconds, "seconds_write": write_seconds,
               "megavoxels_per_s": mvox_s, "warnings": warnings}
    what = "filter + streamed write" if streamed else "filter"
    timing = (f"{what} {filter_seconds:.2f} s ({mvox_s:.1f} megavoxels/s)"
              + ("" if streamed else f", write {write_seconds:.2f} s")
              + f", first-call compilation {compile_seconds:.2f} s; total {total:.2f} s")
    _emit(args, summary, [(f"wrote {written} ({fmt}; {args.filter_name}, shape "
                          f"{'x'.join(map(str, data.shape))}, {result.dtype})"),
                          f"  {timing}"])
    return EXIT_OK


def _feature_settings(args):
    """Feature settings from the config file's ``[command.settings]`` table, overridden by
    the command-line flags; None when neither gives any."""
    settings = dict(getattr(args, "settings_table", None) or {})
    flags = {}
    for key in ("bin_width", "bin_count", "bin_min"):
        if getattr(args, key, None) is not None:
            flags[key] = getattr(args, key)
    if getattr(args, "families", None):
        flags["families"] = (args.families[0] if args.families == ["all"]
                             else list(args.families))
    if getattr(args, "texture_dims", None):
        flags["texture_dims"] = list(args.texture_dims)
    if getattr(args, "reseg_range", None):
        flags["reseg_range"] = [None if v is None else v for v in args.reseg_range]
    if getattr(args, "diagnostics", False):
        flags["diagnostics"] = True
    if ("bin_width" in flags or "bin_count" in flags) and "bin_min" not in flags:
        # a flag's discretisation replaces the file's whole
        for key in ("bin_width", "bin_count", "bin_min"):
            settings.pop(key, None)
    settings.update(flags)
    if not settings:
        return None
    from .features import FeatureSettings

    try:
        return FeatureSettings.from_dict(settings).to_dict()  # validates before any work
    except (TypeError, ValueError) as exc:
        where = "feature settings"
        if getattr(args, "config", None):
            where += f" (config file {args.config!r} and flags)"
        raise UsageError(f"{where}: {exc}") from exc


def _pipeline_options(args):
    options = {}
    if args.window is not None:
        options["window"] = tuple(args.window)
    if args.target_spacing is not None:
        options["target_spacing"] = tuple(args.target_spacing)
    if args.normalize is not None:
        options["normalize"] = args.normalize
    if args.volume_index is not None:
        options["volume_index"] = args.volume_index
    if getattr(args, "units", None) is not None:
        options["units"] = args.units
    return options


def _progress_mode(args):
    return False if args.quiet else "auto"


def _archive_summary(result):
    return {"succeeded": result.n_succeeded, "failed": result.n_failed,
            "skipped": result.n_skipped, "reused": result.n_skipped,
            "features": str(result.features_path), "errors": str(result.errors_path),
            "warnings": list(result.warnings), "seconds_write": result.seconds_write,
            "seconds_first_call": result.seconds_first_call}


def _run_features(args, source, out_dir, settings, pipeline_options=None):
    from .archive import process_archive

    if not Path(source).exists():
        raise FileNotFoundError(f"archive source not found: {str(source)!r}")
    options = _pipeline_options(args) if pipeline_options is None else pipeline_options
    result = process_archive(source, out_dir, scheduler=args.scheduler, n_workers=args.workers,
                             progress=_progress_mode(args), retry_failed=args.retry_failed,
                             feature_settings=settings, backend=args.backend,
                             dashboard=args.dashboard, table_format=args.table_format,
                             **options)
    _warn(args, result.warnings)
    return result


def cmd_features(args):
    start = time.perf_counter()
    settings = _feature_settings(args)
    result = _run_features(args, args.source, args.out, settings)
    from .archive import write_feature_settings

    write_feature_settings(args.out, settings, _pipeline_options(args))
    summary = {**_archive_summary(result), "seconds": time.perf_counter() - start}
    lines = [f"features: {result.summary()}", f"  table:  {result.features_path}",
             f"  errors: {result.errors_path}"]
    if result.seconds_first_call is not None:
        lines.append(f"  first call on the workers (compilation, imports; not in the "
                     f"per-volume timings): {result.seconds_first_call:.2f} s")
    if result.n_failed:
        lines.append(f"  {result.n_failed} volume(s) failed: see {result.errors_path}")
    _emit(args, summary, lines)
    return EXIT_SOME_FAILED if result.n_failed else EXIT_OK


def _read_table(path):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features table not found: {str(path)!r}")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    raise UsageError(f"{str(path)!r}: a features table must be .parquet or .csv")


def cmd_train(args):
    from .demo import train_from_table

    table = _read_table(args.features)
    from .archive import read_extraction

    settings, pipeline_options = read_extraction(Path(args.features).parent)
    start = time.perf_counter()
    training, model_dir = train_from_table(table, label=args.label, group=args.group,
                                           model=args.model, cv=args.cv, out_dir=args.out,
                                           feature_settings=settings, impute=args.impute,
                                           pipeline_options=pipeline_options)
    m = training.metrics
    summary = {"model": str(model_dir), "model_name": training.model_name,
               "n_features": len(training.feature_names), "classes": training.classes,
               "metrics": m, "seconds": time.perf_counter() - start,
               "warnings": list(training.warnings),
               "dropped_features": training.provenance.get("dropped_features")}
    _warn(args, training.warnings)
    _emit(args, summary, [
        (f"trained {training.model_name} on {m.get('n_samples')} rows, "
        f"{len(training.feature_names)} features; {m.get('cv')}-fold CV"
        f"{' grouped by ' + args.group if args.group else ''}:"),
        (f"  accuracy {m['accuracy']:.3f} +/- {m['accuracy_std']:.3f}, balanced accuracy "
        f"{m['balanced_accuracy']:.3f}, ROC AUC {m['roc_auc']:.3f}"),
        f"  model: {model_dir}"])
    return EXIT_OK


def _features_input(model, source):
    """The features table of `source` if it is one, else None (a source to extract)."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".parquet":
        return _read_table(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        import pandas as pd

        header = list(pd.read_csv(path, nrows=0).columns)
        if set(model.feature_names) <= set(header):
            return _read_table(path)
    return None


def _normalised_options(options):
    return {k: (list(v) if isinstance(v, (tuple, list)) else v)
            for k, v in (options or {}).items()}


def _extraction_plan(args, model, source):
    """``(settings, pipeline_options)`` to extract `source` the way the model's training
    features were made; UsageError (with the reason) where that is impossible."""
    from .archive import read_manifest, scan_archive
    from .features import FeatureSettings

    card = model.card
    extraction = card.get("extraction") or {}
    trained = card.get("settings")
    given = _feature_settings(args)
    if (given is not None and trained is not None and FeatureSettings.coerce(given).to_dict()
            != FeatureSettings.coerce(trained).to_dict()):
            raise UsageError("the feature settings given differ from those the model was "
                             f"trained with ({json.dumps(trained, sort_keys=True)}): features "
                             "made otherwise are not what the model learnt from; leave the "
                             "settings out to use the model's")
    settings = trained if given is None else given
    options = _pipeline_options(args)
    if extraction.get("pipeline") is not None:
        recorded = _normalised_options(extraction["pipeline"])
        if options and _normalised_options(options) != recorded:
            raise UsageError(f"the preprocessing given ({_normalised_options(options)}) differs "
                             f"from the model's training features ({recorded}); leave those "
                             "options out to use the model's")
        options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in recorded.items()}
    masked = extraction.get("masked")
    path = Path(source)
    entries = read_manifest(path) if path.is_file() else scan_archive(path)
    without = [e for e in entries if e.mask is None]
    n_train = extraction.get("n_rows")
    if masked is True and without:
        raise UsageError(
            f"the model was trained on features of masked ROIs ({extraction.get('n_masked')} "
            f"of {n_train} training rows had a mask), but {len(without)} of the "
            f"{len(entries)} volume(s) of {str(source)!r} have none (e.g. "
            f"{without[0].path!r}); features of whole volumes would be of another kind: "
            "give a manifest with a mask column")
    if masked is False and len(without) < len(entries):
        raise UsageError(
            f"the model was trained on features of whole volumes (no masks), but "
            f"{len(entries) - len(without)} volume(s) of {str(source)!r} have a mask; "
            "remove the mask column or train on masked features")
    return settings, options


def _manifest_extras(source, table):
    """Columns of the manifest that the features table lacks, aligned to its rows."""
    import csv

    path = Path(source)
    if not (path.is_file() and path.suffix.lower() == ".csv"):
        return {}
    base = path.resolve().parent
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or []) if c is not None]
        extra = [c for c in columns
                 if c not in ("path", "mask", "roi", "label", "subject", "series_uid")]
        if not extra:
            return {}
        by_key = {}
        for row in reader:
            row = {k.strip(): (v.strip() if isinstance(v, str) else v)
                   for k, v in row.items() if k is not None}

            def resolve(p):
                return str((base / p).resolve()) if p else None

            rest = (row.get("roi") or None, row.get("series_uid") or None)
            # tables show paths as written in the manifest (older tables: resolved)
            by_key.setdefault((row.get("path") or None, row.get("mask") or None, *rest), row)
            by_key.setdefault((resolve(row.get("path")), resolve(row.get("mask")), *rest), row)

    def text(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)

    def column(name):
        return table[name] if name in table else [None] * len(table)

    keys = [(text(p), text(m), text(r), text(u)) for p, m, r, u in zip(
        table["path"], column("mask"), column("roi"), column("series_uid"))]
    return {c: [by_key.get(k, {}).get(c) for k in keys] for c in extra}


def cmd_predict(args):
    import numpy as np
    import pandas as pd

    from .classify import load_model, row_fingerprints

    if not Path(args.model).is_dir():
        raise FileNotFoundError(f"model folder not found: {args.model!r} (train writes one "
                                "with model.skops and model_card.json)")
    model = load_model(args.model)
    if not Path(args.source).exists():
        raise FileNotFoundError(f"features table or archive not found: {args.source!r}")
    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"--out must end in .csv or .parquet, got {str(out)!r}")
    table, archive = _features_input(model, args.source), None
    if table is None:
        settings, options = _extraction_plan(args, model, args.source)
        archive = _run_features(args, args.source, out.with_name(out.stem + "-features"),
                                settings, options)
        table = archive.features
    warnings = []
    if len(table):
        # Only the model's columns: metadata (path, subject) is text, not features.
        wanted = set(model.feature_names)
        features = table[[c for c in table.columns if c in wanted]]
        labels, proba = model.predict(features)
        seen = set(model.card.get("training_rows") or ())
        if seen and not set(model.feature_names) - set(features.columns):
            overlap = sum(f in seen for f in row_fingerprints(features, model.feature_names))
            if overlap:
                warnings.append(
                    f"{overlap} of the {len(table)} row(s) to predict are rows the model was "
                    "trained on: their predictions are not out-of-sample estimates (the "
                    "cross-validated metrics of `train` are)")
    else:
        labels, proba = np.array([]), np.zeros((0, len(model.card["classes"])))
    result = pd.DataFrame({c: table[c].to_numpy() for c in ("path", "mask", "roi", "label",
                                                            "subject", "series_uid")
                           if c in table.columns and (c == "path" or table[c].notna().any())})
    for c, values in _manifest_extras(args.source, table).items():
        result[c] = values
    result["predicted"] = labels
    for k, c in enumerate(model.card["classes"]):
        result[f"probability_{c}"] = proba[:, k]
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        result.to_parquet(out, index=False)
    else:
        result.to_csv(out, index=False)
    counts = result["predicted"].astype(str).value_counts().to_dict()
    _warn(args, warnings)
    summary = {"predictions": str(out), "n": len(result), "counts": counts,
               "warnings": warnings}
    lines = [f"wrote {len(result)} prediction(s) to {out}: "
             + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))]
    if archive is not None:
        summary["archive"] = _archive_summary(archive)
        if archive.n_failed:
            lines.append(f"  {archive.n_failed} volume(s) failed: see {archive.errors_path}")
    _emit(args, summary, lines)
    return EXIT_SOME_FAILED if archive is not None and archive.n_failed else EXIT_OK


def _study_lines(result, what):
    a = result.archive
    lines = [f"{what}: {a.summary()}", f"  features: {a.features_path}"]
    if result.metrics:
        m = result.metrics
        lines.append(f"  CV accuracy {m['accuracy']:.3f} +/- {m['accuracy_std']:.3f}, "
                     f"balanced accuracy {m['balanced_accuracy']:.3f}, ROC AUC "
                     f"{m['roc_auc']:.3f} ({m.get('cv')}-fold"
                     f"{', grouped' if m.get('grouped') else ''})")
    if result.model_path is not None:
        lines.append(f"  model:    {result.model_path}")
    lines.append(f"  report:   {result.report}")
    if a.n_failed:
        lines.append(f"  {a.n_failed} volume(s) failed: see {a.errors_path}")
    return lines


def _command_line():
    import shlex

    return shlex.join([PROG, *sys.argv[1:]])


def cmd_run(args):
    from .demo import run_study

    if not Path(args.source).exists():
        raise FileNotFoundError(f"archive source not found: {args.source!r}")
    start = time.perf_counter()
    result = run_study(args.source, args.out, label=args.label, group=args.group,
                       model=args.model, cv=args.cv, feature_settings=_feature_settings(args),
                       scheduler=args.scheduler, n_workers=args.workers, backend=args.backend,
                       progress=_progress_mode(args), pipeline_options=_pipeline_options(args),
                       title=f"medimg-fast run: {Path(args.source).name}",
                       impute=args.impute, table_format=args.table_format,
                       dashboard=args.dashboard, command_line=_command_line())
    summary = {**result.summary(), "seconds": time.perf_counter() - start}
    _warn(args, result.warnings)
    _emit(args, summary, _study_lines(result, "run"))
    return result.exit_code


def cmd_demo(args):
    from .demo import run_demo

    start = time.perf_counter()
    result = run_demo(args.out, size=args.size, seed=args.seed, n_workers=args.workers,
                      scheduler=args.scheduler, backend=args.backend,
                      progress=_interactive(args) or _progress_mode(args), model=args.model,
                      cv=args.cv, dashboard=args.dashboard, command_line=_command_line())
    seconds = time.perf_counter() - start
    summary = {**result.summary(), "seconds": seconds, "size": args.size}
    _warn(args, result.warnings)
    _emit(args, summary, _study_lines(result, f"demo ({args.size})")
          + [f"  total {seconds:.1f} s"])
    return result.exit_code


def _scipy_reference(name, image, kwargs):
    import numpy as np
    from scipy import ndimage

    if name == "gradient_magnitude":
        image = image.astype(np.float32)
        return np.sqrt(sum(ndimage.sobel(image, axis=a) ** 2 for a in range(image.ndim)))
    return getattr(ndimage, name)(image, **kwargs)


def cmd_bench(args):
    import numpy as np

    from . import filters
    from .backends import available_backends
    from .report import save_bar_png

    if args.size < 8:
        raise UsageError(f"--size must be at least 8, got {args.size}")
    if args.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {args.repeat}")
    unknown = [f for f in args.filters if f not in _BENCH_CASES]
    if unknown:
        raise UsageError(f"unknown --filters {unknown}; choose from {list(_BENCH_CASES)}")
    status = available_backends()
    backends = args.backends or [n for n, s in status.items() if s.available]
    for b in backends:
        if b not in status:
            raise UsageError(f"unknown backend {b!r}; choose from {sorted(status)}")
        if not status[b].available:
            raise UsageError(f"backend {b!r} cannot run here: {status[b].reason}")
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 100.0, (args.size,) * 3).astype(np.float32)
    mvox = image.size / 1e6

    def best_of(func):
        func()  # warm-up: JIT compilation and caches are not throughput
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = func()
            if hasattr(out, "get") and not isinstance(out, np.ndarray):
                out = out.get()
            times.append(time.perf_counter() - t)
        return min(times), out

    rows = []
    cases = [(f, b) for f in args.filters for b in ["scipy.ndimage", *backends]]
    iterator = cases
    if _interactive(args):
        from tqdm.auto import tqdm
        iterator = tqdm(cases, desc="bench", unit="case", leave=False)
    reference = {}
    for name, backend in iterator:
        kwargs = _BENCH_CASES[name]
        if backend == "scipy.ndimage":
            seconds, out = best_of(lambda n=name, k=kwargs: _scipy_reference(n, image, k))
            reference[name] = np.asarray(out, dtype=np.float64)
        else:
            func = getattr(filters, name)
            seconds, out = best_of(lambda f=func, k=kwargs, b=backend: f(image, **k, backend=b))
        diff = float(np.max(np.abs(np.asarray(out, dtype=np.float64) - reference[name])))
        rows.append({"filter": name, "backend": backend, "seconds": seconds,
                     "megavoxels_per_s": mvox / seconds, "max_abs_diff_vs_scipy": diff})
    for r in rows:
        base = next(x for x in rows if x["filter"] == r["filter"]
                    and x["backend"] == "scipy.ndimage")
        r["speedup_vs_scipy"] = base["seconds"] / r["seconds"]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"shape": list(image.shape), "dtype": "float32", "repeat": args.repeat,
            "cpu_cores": os.cpu_count(), "backends": backends}
    (out_dir / "bench.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    png = save_bar_png(out_dir / "bench.png", [f"{r['filter']} [{r['backend']}]" for r in rows],
                       [r["megavoxels_per_s"] for r in rows], xlabel="megavoxels/s",
                       title=f"filter throughput, {args.size}^3 float32")
    header = f"{'filter':<20} {'backend':<14} {'Mvox/s':>9} {'vs scipy':>9} {'max|diff|':>10}"
    lines = [f"bench: {args.size}^3 float32, best of {args.repeat}", header,
             "-" * len(header)]
    lines += [f"{r['filter']:<20} {r['backend']:<14} {r['megavoxels_per_s']:>9.1f} "
              f"{r['speedup_vs_scipy']:>8.2f}x {r['max_abs_diff_vs_scipy']:>10.2e}" for r in rows]
    lines += [f"wrote {out_dir / 'bench.json'} and {png}"]
    _emit(args, {"meta": meta, "results": rows, "json": str(out_dir / "bench.json"),
                 "png": str(png)}, lines)
    return EXIT_OK


_COMMANDS = {"info": cmd_info, "filter": cmd_filter, "features": cmd_features,
             "train": cmd_train, "predict": cmd_predict, "run": cmd_run, "bench": cmd_bench,
             "demo": cmd_demo, "scan": cmd_scan, "maps": cmd_maps}


def _raise_terminated(signum, frame):
    raise Terminated()


def _stdout_gone():
    # The reader (``| head``) has gone: point stdout at /dev/null so that the interpreter's
    # final flush does not fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv=None) -> int:
    """Run ``medimg-fast`` with `argv` (default ``sys.argv[1:]``); return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    import threading

    previous_term = None
    if threading.current_thread() is threading.main_thread():
        previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        args = parse_args(argv)
        debug = debug or args.debug
        _setup_logging(args)
        return _COMMANDS[args.command](args)
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_OK
    except KeyboardInterrupt as exc:
        # Finished volumes are already stored as parts: a rerun resumes from them.
        for name in _DASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        terminated = isinstance(exc, Terminated)
        print(f"{PROG}: {'terminated' if terminated else 'interrupted'}; finished volumes "
              "are kept, rerun to resume", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
            ValueError, TypeError) as exc:
        # The API validates its inputs with these, naming the parameter and the value.
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (rerun with --debug for the traceback)"
        print(f"{PROG}: error: {one_line(exc)}{hint}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001  (the last resort: one line, exit code 3)
        if debug:
            traceback.print_exc()
        hint = "" if debug else "; rerun with --debug for the traceback"
        print(f"{PROG}: internal error: {type(exc).__name__}: {one_line(exc)}{hint}",
              file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
