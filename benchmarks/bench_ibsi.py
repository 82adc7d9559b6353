"""IBSI-1 radiomics per case, side by side: medimg-fast, MIRP and PyRadiomics.

Cases, each a NIfTI image and mask read from disk on every call (reading included):

- ``ct_phantom``: the IBSI-1 CT radiomics phantom (204 x 201 x 60 voxels, ROI of 125,256
  voxels) from the shared data folder; skipped where it is absent (its licence keeps it out
  of the repository);
- ``synthetic``: a seeded CT-like volume of 2.05M voxels with a lobulated ROI of about 50,000
  voxels, written by ``benchmarks/anchors/make_synthetic_ct.py`` into a temporary folder;
- ``synthetic_20k`` and ``synthetic_200k``: the same image with a smaller and a larger ROI
  (about 20,000 and 200,000 voxels): the tumour ROI cut by, or joined with, an ellipsoid
  around its centre (:func:`resized_roi_case`).

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

Ours reads a case with :func:`extract_features_from_files` (with these settings the mask
first, then the image only on the ROI's bounding box: a ``.nii.gz`` is inflated up to the
box's last slab, on a thread while the mask is read); the table's ``arrays`` column times
the same features from both volumes read whole (``open_volume(...).data.compute()``), in
the same run: the values are identical, bit for bit.

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
    .venv/bin/python benchmarks/bench_ibsi.py ct_phantom,synthetic_200k pyradiomics_set
        # some cases (comma-separated) and workloads only; "--no-compile" skips the
        # numba compile measurement
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


#: ROI sizes of the resized synthetic cases: (name, ellipsoid radii in mm (x, y, z),
#: whether the ellipsoid cuts the tumour ROI (intersection) or extends it (union))
RESIZED_ROIS = (("synthetic_20k", (21.0, 21.0, 22.0), "cut"),
                ("synthetic_200k", (44.0, 42.0, 52.0), "extend"))
#: the tumour's centre in make_synthetic_ct.py, voxel index (x, y, z) of its NIfTI arrays
_TUMOUR_CENTRE_XYZ = (92, 78, 40)


def resized_roi_case(folder, synthetic, radii_mm, mode) -> tuple[Path, Path]:
    """The synthetic image with its tumour ROI cut by (``"cut"``) or joined with
    (``"extend"``) an ellipsoid of ``radii_mm`` around the tumour's centre, limited to
    the body (HU above -950): a deterministic ROI of another size on the same image."""
    import nibabel as nib
    import numpy as np

    folder = Path(folder)
    image_path, mask_path = synthetic
    out_mask = folder / "mask.nii.gz"
    if not out_mask.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        mask_img = nib.load(mask_path)
        spacing = np.asarray(mask_img.header.get_zooms()[:3], np.float64)
        roi = np.asanyarray(mask_img.dataobj) > 0
        image = np.asanyarray(nib.load(image_path).dataobj)
        grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in
                              zip(roi.shape, _TUMOUR_CENTRE_XYZ, spacing)], indexing="ij")
        inside = sum((g / r) ** 2 for g, r in zip(grids, radii_mm)) <= 1.0
        new_roi = roi & inside if mode == "cut" else (roi | inside) & (image > -950)
        out = nib.Nifti1Image(new_roi.astype(np.uint8), mask_img.affine)
        out.header.set_xyzt_units("mm")
        nib.save(out, out_mask)
    return Path(image_path), out_mask


def cases(tmp) -> dict[str, tuple[Path, Path]]:
    out = {}
    if (CT_DIR / "image.nii.gz").is_file():
        out["ct_phantom"] = (CT_DIR / "image.nii.gz", CT_DIR / "mask.nii.gz")
    out["synthetic"] = synthetic_case(Path(tmp) / "synthetic")
    for name, radii, mode in RESIZED_ROIS:
        out[name] = resized_roi_case(Path(tmp) / name, out["synthetic"], radii, mode)
    return out


def extract_case(image_path, mask_path, settings):
    """One case as a user runs it: read both files, extract the features
    (:func:`extract_features_from_files`: with these settings the image is read only on
    the ROI's bounding box)."""
    from medimg_fast.features._extract import extract_features_from_files

    return extract_features_from_files(image_path, mask_path, settings=settings)


def extract_case_arrays(image_path, mask_path, settings):
    """The same features from both volumes read whole into arrays first (the values are
    identical; the difference is the cost of reading the whole image)."""
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


CASES = ["ct_phantom", "synthetic", "synthetic_20k", "synthetic_200k"]


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
@pytest.mark.parametrize("case", CASES)
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
@pytest.mark.parametrize("case", CASES)
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


def main(argv=None):
    """Print the side-by-side table (the same measurements as the pytest entries).

    ``argv``: optional comma-separated case names, then workload names, and
    ``--no-compile`` to skip the numba compile measurement."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with_compile = "--no-compile" not in argv
    argv = [a for a in argv if a != "--no-compile"]
    want_cases = argv[0].split(",") if argv else None
    want_workloads = argv[1].split(",") if len(argv) > 1 else list(WORKLOADS)
    rows = []
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        all_cases = cases(tmp)
        for case, (image, mask) in all_cases.items():
            if want_cases is not None and case not in want_cases:
                continue
            for workload in want_workloads:
                settings = WORKLOADS[workload]
                extract_case(image, mask, settings)
                extract_case_arrays(image, mask, settings)
                times, array_times = [], []
                for _ in range(5):  # interleaved: both paths see the same machine load
                    start = time.perf_counter()
                    extract_case(image, mask, settings)
                    times.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    extract_case_arrays(image, mask, settings)
                    array_times.append(time.perf_counter() - start)
                ours = statistics.median(times)
                arrays = statistics.median(array_times)
                tool = "mirp" if workload == "ibsi" else "pyradiomics"
                try:
                    anchor = run_anchor(tool, image, mask)
                except pytest.skip.Exception as exc:
                    rows.append((case, workload, ours, min(times), arrays, tool, None, None,
                                 str(exc)))
                    continue
                theirs = statistics.median(anchor["seconds"])
                rows.append((case, workload, ours, min(times), arrays,
                             f"{anchor['tool']} {anchor['version']}", theirs,
                             min(anchor["seconds"]),
                             f"{theirs / ours:.1f}x (arrays {theirs / arrays:.1f}x)"))
        compiled = compile_seconds(*all_cases["synthetic"]) if with_compile else None
    # medians (the ratio) and, on a shared machine, the fastest call beside them
    # "arrays": both volumes read whole first (extract_case_arrays), same run
    print(f"{'case':15} {'workload':16} {'ours (s)':>9} {'min':>6} {'arrays':>7}  "
          f"{'anchor':18} {'anchor (s)':>10} {'min':>7}  ratio")
    for case, workload, ours, ours_min, arrays, tool, theirs, theirs_min, ratio in rows:
        theirs_text = "-" if theirs is None else f"{theirs:10.3f} {theirs_min:7.3f}"
        print(f"{case:15} {workload:16} {ours:9.3f} {ours_min:6.3f} {arrays:7.3f}  "
              f"{tool:18} {theirs_text:>18}  {ratio}")
    if compiled is not None:
        print(f"numba first call: {compiled['empty_cache']:.2f} s compiling into an empty "
              f"cache, {compiled['warm_cache']:.2f} s loading the cache")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    main()
