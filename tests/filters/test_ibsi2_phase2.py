"""IBSI-2 phase 2: intensity statistics of filter responses in the IBSI-1 CT phantom's ROI,
against MIRP (which implements the IBSI-2 filters and passes the phase-1 maps).

IBSI-2 publishes no phase-2 values in the shared data, so the reference is MIRP 2.7 run in
its own venv (``benchmarks/anchors/run_mirp_filters.py``) with the same processing:
2-D configurations without interpolation; 3-D ones on a 1 mm isotropic cubic-spline grid
(ROI linear, partial volume 0.5); re-segmentation -1000..400 HU; the filter on the
processed image; ``stat_*`` of the response in the re-segmented ROI.  MIRP rounds the
interpolated CT intensities to integers, so we do too (``round_intensities=True``).

The comparison runs only with ``MEDIMG_FAST_ANCHOR_TESTS=1`` (MIRP takes about a minute),
the MIRP venv built (``benchmarks/anchors/setup_anchors.sh``) and the CT phantom present
(its licence keeps it out of the repository); otherwise it skips and says which is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CT_DIR = ROOT / ".." / "shared" / "data" / "ibsi1_ct"
ANCHORS = ROOT / "benchmarks" / "anchors"
MIRP_PY = ANCHORS / ".venv-mirp" / "bin" / "python"

#: MIRP's configuration name (run_mirp_filters.CONFIGS) -> our filter spec.  Boundary:
#: MIRP's default "mirror" is scipy's (and our) "mirror"; MIRP's Simoncelli filter is the
#: FFT of the unpadded grid, our "wrap".
OUR_SPECS = {
    "mean_2d": {"name": "mean", "size": 5, "mode": "mirror", "dims": "2D"},
    "log_3d": {"name": "log", "sigma_mm": 1.5, "truncate": 4.0, "mode": "mirror",
               "dims": "3D"},
    "laws_3d": {"name": "laws", "kernel": "E5L5S5", "energy": True, "delta": 7,
                "rotation_invariant": True, "pooling": "max", "mode": "mirror",
                "dims": "3D"},
    "gabor_2d": {"name": "gabor", "sigma_mm": 5.0, "lambda_mm": 2.0, "gamma": 1.5,
                 "theta_deg": 0.0, "theta_step_deg": 22.5, "rotation_invariant": True,
                 "pooling": "mean", "response": "modulus", "mode": "mirror", "dims": "2D"},
    "wavelet_3d": {"name": "wavelet", "family": "db3", "set": "LLH", "level": 1,
                   "rotation_invariant": True, "pooling": "mean", "mode": "mirror",
                   "dims": "3D"},
    "simoncelli_3d": {"name": "simoncelli", "level": 2, "mode": "wrap", "dims": "3D"},
}

COMPARED = ("stat_mean", "stat_var", "stat_min", "stat_max", "stat_p10", "stat_median",
            "stat_p90")

#: Relative tolerance per configuration (of max(|MIRP value|, the response's spread in the
#: ROI, sqrt(var))): the filters agree to round-off, so what is left is the interpolated
#: image (both tools' cubic B-splines, rounded to integers) and float32 accumulation;
#: measured differences are in the report of the phase-2 comparison.
TOLERANCE = {"mean_2d": 1e-6, "log_3d": 5e-4, "laws_3d": 1e-5, "gabor_2d": 1e-4,
             "wavelet_3d": 1e-5, "simoncelli_3d": 1e-2}


def load_ct():
    """The CT phantom as (z, y, x) arrays and the spacing in mm (z, y, x)."""
    nib = pytest.importorskip("nibabel")
    image_nii = nib.load(CT_DIR / "image.nii.gz")
    image = np.asarray(image_nii.dataobj, dtype=np.float32).transpose(2, 1, 0)
    mask = np.asarray(nib.load(CT_DIR / "mask.nii.gz").dataobj).transpose(2, 1, 0) > 0
    spacing = tuple(float(s) for s in image_nii.header.get_zooms()[:3][::-1])
    return image, mask, spacing


def our_settings(name, *, round_intensities=True):
    spec = OUR_SPECS[name]
    settings = {"families": [], "filters": [spec], "reseg_range": [-1000, 400],
                "round_intensities": round_intensities}
    if spec["dims"] == "3D":
        settings.update(resample_mm=[1.0, 1.0, 1.0], resample_order=3)
    return settings


def our_features(name, image, mask, spacing, *, round_intensities=True):
    """``stat_*`` of the response of configuration ``name`` after the IBSI-2 processing."""
    from medimg_fast.features import extract_features

    out = extract_features(image, mask, spacing=spacing,
                           settings=our_settings(name, round_intensities=round_intensities))
    stats = {}
    for key, value in out.items():
        if "_stat_" in key:
            stats["stat_" + key.split("_stat_", 1)[1]] = value
    return stats


def _mirp_or_skip():
    if os.environ.get("MEDIMG_FAST_ANCHOR_TESTS") != "1":
        pytest.skip("anchor comparison off: set MEDIMG_FAST_ANCHOR_TESTS=1 (runs MIRP, ~1 min)")
    if not MIRP_PY.is_file():
        pytest.skip(f"MIRP venv not built at {MIRP_PY}: bash benchmarks/anchors/setup_anchors.sh")
    if not (CT_DIR / "image.nii.gz").is_file():
        pytest.skip(f"IBSI-1 CT phantom not found at {CT_DIR} (non-commercial licence: "
                    "not in the repository)")


@pytest.fixture(scope="module")
def mirp_result(tmp_path_factory):
    _mirp_or_skip()
    out = tmp_path_factory.mktemp("mirp") / "mirp_filters.json"
    subprocess.run([str(MIRP_PY), str(ANCHORS / "run_mirp_filters.py"),
                    "--image", str(CT_DIR / "image.nii.gz"),
                    "--mask", str(CT_DIR / "mask.nii.gz"), "--out", str(out),
                    "--configs", ",".join(OUR_SPECS), "--repeat", "0"],
                   check=True, capture_output=True, timeout=1800)
    return json.loads(out.read_text())["configs"]


@pytest.fixture(scope="module")
def ct_phantom():
    _mirp_or_skip()
    return load_ct()


@pytest.mark.parametrize("name", sorted(OUR_SPECS))
def test_response_statistics_match_mirp(name, mirp_result, ct_phantom):
    ours = our_features(name, *ct_phantom)
    theirs = mirp_result[name]["features"]
    scale = max(abs(theirs["stat_max"] - theirs["stat_min"]), np.sqrt(theirs["stat_var"]))
    failures = []
    for tag in COMPARED:
        # variance is compared relative to itself, the others relative to the ROI's spread
        ref = theirs[tag]
        bound = TOLERANCE[name] * (abs(ref) if tag == "stat_var" else max(abs(ref), scale))
        if not abs(ours[tag] - ref) <= bound:
            failures.append(f"{tag}: ours {ours[tag]:.6g}, MIRP {ref:.6g}")
    assert not failures, f"{name}: " + "; ".join(failures)


def test_skips_without_opt_in(monkeypatch):
    """Without the opt-in the comparison skips with a reason (it never fails silently)."""
    monkeypatch.delenv("MEDIMG_FAST_ANCHOR_TESTS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="MEDIMG_FAST_ANCHOR_TESTS"):
        _mirp_or_skip()


# -- the phase-2 Gabor (sigma 5 voxels) goes through the FFT path ------------------------

_GABOR_2D = {"sigma_mm": 5.0, "lambda_mm": 2.0, "gamma": 1.5, "theta_deg": 0.0,
                 "rotation_invariant": True, "theta_step_deg": 22.5}


@pytest.mark.parametrize("mode", ["mirror", "constant", "wrap"])
@pytest.mark.parametrize("response", ["modulus", "real"])
def test_fft_gabor_equals_scipy_direct_convolution(mode, response):
    """The FFT path (kernels of >= 1024 taps) against scipy.ndimage.convolve in float64
    with the kernels of all 16 orientations; float32 FFT: within 2e-6 of the range."""
    from scipy import ndimage as ndi

    from medimg_fast.filters import gabor_filter, gabor_kernel

    image = np.random.default_rng(5).normal(size=(2, 47, 52))
    parts = []
    for k in range(16):
        kernel = gabor_kernel(5.0, 2.0, 1.5, 22.5 * k)
        assert kernel.size >= 1024
        re = ndi.convolve(image, kernel.real[None], mode=mode)
        im = ndi.convolve(image, kernel.imag[None], mode=mode)
        parts.append(np.hypot(re, im) if response == "modulus" else re)
    reference = np.mean(parts, axis=0)
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 2e-6)):
        out = gabor_filter(image.astype(dtype), response=response, pooling="mean", mode=mode,
                           backend="numpy", **_GABOR_2D)
        assert out.dtype == dtype
        span = reference.max() - reference.min()
        assert np.abs(out - reference).max() <= rtol * span


def test_fft_gabor_dask_chunks_equal_unchunked():
    da = pytest.importorskip("dask.array")
    from medimg_fast.filters import gabor_filter

    image = np.random.default_rng(6).normal(size=(6, 40, 44)).astype(np.float32)
    whole = gabor_filter(image, mode="mirror", backend="numba", **_GABOR_2D)
    for chunks in ((2, 40, 44), (3, 13, 17)):
        lazy = gabor_filter(da.from_array(image, chunks=chunks), mode="mirror",
                            backend="numba", **_GABOR_2D)
        assert lazy.chunks == da.from_array(image, chunks=chunks).chunks
        np.testing.assert_array_equal(lazy.compute(), whole)
