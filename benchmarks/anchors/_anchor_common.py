"""Shared CLI/timing/JSON helpers for the anchor runners (run_mirp.py, run_pyradiomics.py).

Must stay importable on Python 3.9 (PyRadiomics venv) and 3.11 (MIRP venv), and use only
the standard library: it is imported by scripts running inside the anchor venvs.
"""
import argparse
import json
import math
import os
import platform
import sys
import time

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "SITK_NUM_THREADS",
)


def parse_args(tool, configs, default_config, argv=None):
    p = argparse.ArgumentParser(
        description=f"Compute {tool} features on one image/mask case and write timings + features as JSON.")
    p.add_argument("--image", required=True, help="image NIfTI (.nii/.nii.gz)")
    p.add_argument("--mask", required=True, help="mask NIfTI (.nii/.nii.gz), ROI = voxels > 0 (label 1)")
    p.add_argument("--out", required=True, help="output JSON path")
    p.add_argument("--repeat", type=int, default=3,
                   help="timed repeats after one untimed-for-the-stats warm-up call (default 3; 0 = warm-up only)")
    p.add_argument("--config", default=default_config, choices=sorted(configs),
                   help=f"feature settings preset (default {default_config})")
    args = p.parse_args(argv)
    if args.repeat < 0:
        p.error("--repeat must be >= 0")
    for f in (args.image, args.mask):
        if not os.path.isfile(f):
            p.error(f"no such file: {f}")
    return args


def clean_value(v):
    """Feature value -> JSON-safe float (NaN/inf -> None); non-numeric -> str."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f) or math.isinf(f):
        return None
    return f


def _loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run_and_report(tool, version, config_name, config_desc, import_seconds, compute, args):
    """compute() -> dict name->value, doing the whole case (file reading included).

    Calls compute() once as warm-up (reported as first_call_seconds), then args.repeat
    timed times (reported as seconds). Features are taken from the last call.
    """
    load_before = _loadavg()
    t0 = time.perf_counter()
    features = compute()
    first = time.perf_counter() - t0
    print("[%s] first call: %.3f s (%d features)" % (tool, first, len(features)), file=sys.stderr)
    seconds = []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        features = compute()
        seconds.append(time.perf_counter() - t0)
        print("[%s] repeat %d/%d: %.3f s" % (tool, i + 1, args.repeat, seconds[-1]), file=sys.stderr)
    features = {k: clean_value(v) for k, v in features.items()}
    result = {
        "tool": tool,
        "version": version,
        "config": config_name,
        "config_description": config_desc,
        "image": os.path.abspath(args.image),
        "mask": os.path.abspath(args.mask),
        "import_seconds": import_seconds,
        "first_call_seconds": first,
        "seconds": seconds,
        "median_seconds": sorted(seconds)[len(seconds) // 2] if seconds else None,
        "n_features": len(features),
        "features": features,
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads_env": {k: os.environ[k] for k in THREAD_ENV_VARS if k in os.environ},
            # 1-min load average before the warm-up call and after the last repeat: a high
            # value means other processes competed for the CPUs during the measurement.
            "loadavg_1min_before": load_before,
            "loadavg_1min_after": _loadavg(),
        },
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1, sort_keys=False)
        fh.write("\n")
    print("[%s] wrote %s: %d features, first call %.3f s, repeats %s" % (
        tool, args.out, len(features), first, ", ".join(f"{s:.3f}" for s in seconds)), file=sys.stderr)
    return result
