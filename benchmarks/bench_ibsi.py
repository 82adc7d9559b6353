"""IBSI-1 radiomics per case, side by side: medimg-fast, MIRP and PyRadiomics.

Cases, each a NIfTI image and mask read from disk on every call (reading included):

- ``ct_phantom``: the IBSI-1 CT radiomics phantom (204 x 201 x 60 voxels, ROI of 125,256
  voxels) from the shared data folder; skipped where it is absent (its licence keeps it out
  of the repository);
- ``synthetic``: a seeded CT-like volume of 2.05M voxels with a lobulated ROI of about 50,000
  voxels, written by ``benchmarks/anchors/make_synthetic_ct.py`` into a temporary folder.

Workloads:

- ``ibsi``: every IBSI family (morphology, local intensity, statistics, intensity histogram,
  IVH, GLCM, GLRLM, GLSZM, GLDZM, NGTDM, NGLDM) in 3-D, re-segmentation -1000..400 HU, fixed
  bin size 25 HU from -1000, IVH bins of 2.5 HU (IBSI configuration C without the
  interpolation), against MIRP with the same settings (``run_mirp.py``, config
  ``ibsi_c_nointerp``);
- ``pyradiomics_set``: the families of PyRadiomics' default feature classes (shape,
  first order, GLCM, GLRLM, GLSZM, GLDM, NGTDM: our ``morph stat ih cm rlm szm ngl ngt``),
  bin width 25, against PyRadiomics' default extractor (``run_pyradiomics.py``).  Its shape
  class has no Moran's I or Geary's C, so ours skips them too
  (``autocorrelation_max_voxels=0``); the ``ibsi`` workload computes them exactly (MIRP's
  default approximates them).

MIRP and PyRadiomics run in their own virtual environments (``benchmarks/anchors/
setup_anchors.sh``) as subprocesses that time repeated calls inside one process after a
warm-up call; their per-call median lands in ``extra_info`` of the anchor's benchmark entry,
and the ratio against ours is printed by ``python benchmarks/bench_ibsi.py``.  numba's
compilation is measured apart (``test_numba_compile``): a fresh process with an empty
cache, then a fresh process reusing the cache.

Run::

    bash benchmarks/anchors/setup_anchors.sh        # once: builds the anchor venvs
    .venv/bin/python -m pytest benchmarks/bench_ibsi.py --benchmark-only \\
        -o python_files='bench_*.py' --benchmark-columns=min,median,rounds
    .venv/bin/python benchmarks/bench_ibsi.py       # the same figures as a table
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ANCHORS = HERE / "anchors"
CT_DIR = HERE.parent / ".." / "shared" / "data" / "ibsi1_ct"
MIRP_PY = ANCHORS / ".venv-mirp" / "bin" / "python"
PYRAD_PY = ANCHORS / ".venv-pyradiomics" / "bin" / "python"

IBSI_SETTINGS = {"families": "all", "texture_dims": ["3D"], "bin_width": 25.0,
                 "reseg_range": [-1000, 400], "ivh_bin_width": 2.5}
PYRADIOMICS_SETTINGS = {"families": ["morph", "stat", "ih", "cm", "rlm", "szm", "ngl", "ngt"],
                        "texture_dims": ["3D"], "bin_width": 25.0,
                        "autocorrelation_max_voxels": 0}
WORKLOADS = {"ibsi": IBSI_SETTINGS, "pyradiomics_set": PYRADIOMICS_SETTINGS}


def synthetic_case(folder) -> tuple[Path, Path]:
    """Write the seeded synthetic case with our own interpreter (numpy + nibabel)."""
    folder = Path(folder)
    if not (folder / "image.nii.gz").is_file():
        subprocess.run([sys.executable, str(ANCHORS / "make_synthetic_ct.py"), "--out-dir",
                        str(folder)], check=True, capture_output=True)
    return folder / "image.nii.gz", folder / "mask.nii.gz"


def cases(tmp) -> dict[str, tuple[Path, Path]]:
    out = {}
    if (CT_DIR / "image.nii.gz").is_file():
        out["ct_phantom"] = (CT_DIR / "image.nii.gz", CT_DIR / "mask.nii.gz")
    out["synthetic"] = synthetic_case(Path(tmp) / "synthetic")
    return out


def extract_case(image_path, mask_path, settings):
    """One case as a user runs it: read both files, extract the features."""
    from medimg_fast.features import extract_features
    from medimg_fast.io import open_volume

    image = open_volume(image_path)
    mask = open_volume(mask_path)
    return extract_features(image.data.compute(), mask.data.compute() > 0,
                            spacing=image.spacing, settings=settings)


def run_anchor(tool, image_path, mask_path, repeat=3) -> dict:
    """The anchor's JSON result (per-call seconds after a warm-up call), or skip."""
    python = MIRP_PY if tool == "mirp" else PYRAD_PY
    if not python.is_file():
        pytest.skip(f"{tool} venv not built: run bash benchmarks/anchors/setup_anchors.sh")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run([str(python), str(ANCHORS / f"run_{tool}.py"), "--image",
                        str(image_path), "--mask", str(mask_path), "--out", str(out),
                        "--repeat", str(repeat)], check=True, capture_output=True)
        return json.loads(out.read_text())


@pytest.fixture(scope="module")
def bench_cases(tmp_path_factory):
    return cases(tmp_path_factory.mktemp("ibsi_cases"))


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
@pytest.mark.parametrize("case", ["ct_phantom", "synthetic"])
def test_medimg_fast(benchmark, bench_cases, case, workload):
    if case not in bench_cases:
        pytest.skip(f"case {case!r} absent (the shared data folder is missing)")
    image, mask = bench_cases[case]
    extract_case(image, mask, WORKLOADS[workload])  # numba compiled or loaded from cache
    features = benchmark.pedantic(extract_case, args=(image, mask, WORKLOADS[workload]),
                                  rounds=5, iterations=1)
    benchmark.extra_info.update(case=case, workload=workload, n_features=len(features))


@pytest.mark.parametrize(("tool", "workload"), [("mirp", "ibsi"),
                                                ("pyradiomics", "pyradiomics_set")])
@pytest.mark.parametrize("case", ["ct_phantom", "synthetic"])
def test_anchor(benchmark, bench_cases, case, tool, workload):
    if case not in bench_cases:
        pytest.skip(f"case {case!r} absent (the shared data folder is missing)")
    image, mask = bench_cases[case]
    result = benchmark.pedantic(run_anchor, args=(tool, image, mask), rounds=1, iterations=1)
    benchmark.extra_info.update(
        case=case, workload=workload, tool=f"{result['tool']} {result['version']}",
        n_features=result["n_features"], seconds=result["seconds"],
        median_seconds=statistics.median(result["seconds"]),
        first_call_seconds=result["first_call_seconds"])


_COMPILE_SCRIPT = """
import sys, time
sys.path.insert(0, {bench!r})
from bench_ibsi import extract_case, IBSI_SETTINGS
t = time.perf_counter(); extract_case({image!r}, {mask!r}, IBSI_SETTINGS)
first = time.perf_counter() - t
t = time.perf_counter(); extract_case({image!r}, {mask!r}, IBSI_SETTINGS)
print(first, time.perf_counter() - t)
"""


def compile_seconds(image, mask) -> dict:
    """First-call cost in fresh processes: numba compiling into an empty cache, then
    loading that cache (the steady per-call time subtracted)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        code = _COMPILE_SCRIPT.format(bench=str(HERE), image=str(image), mask=str(mask))
        out = {}
        for name in ("empty_cache", "warm_cache"):
            proc = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                  capture_output=True, text=True)
            first, steady = (float(v) for v in proc.stdout.split())
            out[name] = first - steady
        return out


def test_numba_compile(benchmark, bench_cases):
    image, mask = bench_cases["synthetic"]
    result = benchmark.pedantic(compile_seconds, args=(image, mask), rounds=1, iterations=1)
    benchmark.extra_info.update(result)


def main():
    """Print the side-by-side table (the same measurements as the pytest entries)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, (image, mask) in cases(tmp).items():
            for workload, settings in WORKLOADS.items():
                extract_case(image, mask, settings)
                times = []
                for _ in range(5):
                    start = time.perf_counter()
                    extract_case(image, mask, settings)
                    times.append(time.perf_counter() - start)
                ours = statistics.median(times)
                tool = "mirp" if workload == "ibsi" else "pyradiomics"
                try:
                    anchor = run_anchor(tool, image, mask)
                except pytest.skip.Exception as exc:
                    rows.append((case, workload, ours, tool, None, str(exc)))
                    continue
                theirs = statistics.median(anchor["seconds"])
                rows.append((case, workload, ours, f"{anchor['tool']} {anchor['version']}",
                             theirs, f"{theirs / ours:.1f}x"))
        compiled = compile_seconds(*cases(tmp)["synthetic"])
    print(f"{'case':12} {'workload':16} {'ours (s)':>9}  {'anchor':18} {'anchor (s)':>10}  ratio")
    for case, workload, ours, tool, theirs, ratio in rows:
        theirs_text = "-" if theirs is None else f"{theirs:10.3f}"
        print(f"{case:12} {workload:16} {ours:9.3f}  {tool:18} {theirs_text:>10}  {ratio}")
    print(f"numba first call: {compiled['empty_cache']:.2f} s compiling into an empty cache, "
          f"{compiled['warm_cache']:.2f} s loading the cache")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    main()
