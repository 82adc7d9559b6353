"""Voxel-wise feature maps (issue 13): throughput per family, growth with radius and ROI
size, and PyRadiomics' voxel-based GLCM side by side.

    .venv/bin/python -m pytest benchmarks/bench_maps.py --benchmark-only -s

Each case prints and records (``extra_info``) voxels per second.  The PyRadiomics case
runs ``anchors/run_pyradiomics_maps.py`` in its own venv on a small ROI (skipped when
the venv is missing), times our maps on the same ROI and settings, and compares the 23
GLCM features both define, map by map.
"""

from __future__ import annotations

import math
import os
import pathlib
import subprocess
import time

import numpy as np
import pytest

from medimg_fast.features import feature_maps

_PYRAD = pathlib.Path(__file__).parent / "anchors" / ".venv-pyradiomics" / "bin" / "python"

#: PyRadiomics GLCM feature -> IBSI tag (``cm_<tag>_3D_avg``): the definitions agree
#: (symmetric GLCM, distance 1, features per direction averaged); MCC has no IBSI tag.
PYRADIOMICS_GLCM = {
    "Autocorrelation": "auto_corr", "JointAverage": "joint_avg", "ClusterProminence":
    "clust_prom", "ClusterShade": "clust_shade", "ClusterTendency": "clust_tend",
    "Contrast": "contrast", "Correlation": "corr", "DifferenceAverage": "diff_avg",
    "DifferenceEntropy": "diff_entr", "DifferenceVariance": "diff_var", "JointEnergy":
    "energy", "JointEntropy": "joint_entr", "Imc1": "info_corr1", "Imc2": "info_corr2",
    "Idm": "inv_diff_mom", "Idmn": "inv_diff_mom_norm", "Id": "inv_diff", "Idn":
    "inv_diff_norm", "InverseVariance": "inv_var", "MaximumProbability": "joint_max",
    "SumEntropy": "sum_entr", "SumSquares": "joint_var", "SumAverage": "sum_avg",
}


def ct_case(n_roi: int, seed: int = 0):
    """CT-like HU volume (smooth structure plus noise, integer) and an ellipsoid ROI of
    about ``n_roi`` voxels in its middle."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    edge = math.ceil((n_roi * 6 / math.pi) ** (1 / 3) * 1.3) + 8
    shape = (max(edge // 2, 12), edge, edge)
    smooth = gaussian_filter(rng.normal(0, 1, shape), 3) * 1500
    image = np.round(smooth + rng.normal(40, 60, shape))
    axes = np.array(shape) / 2
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    dist = sum(((g - c) / c) ** 2 for g, c in zip(grid, axes))
    # scale the ellipsoid to hold n_roi voxels
    order = np.sort(dist.ravel())
    mask = dist <= order[min(n_roi, order.size) - 1]
    return image, mask


def _settings(image, mask, levels=32):
    lo, hi = float(image[mask].min()), float(image[mask].max())
    width = math.ceil((hi - lo) / levels * 1.0001)
    bin_min = math.floor(lo / width) * width  # PyRadiomics' bin edges
    return {"bin_width": float(width), "bin_min": float(bin_min)}


def _run(benchmark, image, mask, fams, radius, **kw):
    settings = {**_settings(image, mask), "families": fams}
    feature_maps(image[:8, :8, :8], mask[:8, :8, :8] | True, settings={"bin_count": 4,
                 "families": fams}, radius=radius)  # compile outside the timing
    maps = benchmark.pedantic(feature_maps, args=(image, mask),
                              kwargs={"settings": settings, "radius": radius,
                                      "dtype": np.float32, **kw},
                              rounds=1, iterations=1)
    sec = benchmark.stats.stats.min
    n = int(mask.sum())
    benchmark.extra_info.update({"roi_voxels": n, "seconds": sec, "voxels_per_s": n / sec,
                                 "n_maps": len(maps)})
    print(f"\n{'+'.join(fams)} r={radius} roi={n}: {sec:.2f} s, {n / sec:,.0f} voxels/s")
    return maps


def test_glcm_100k_radius2(benchmark):
    """The issue's target: 100,000 ROI voxels, radius 2, 32 levels, all GLCM features
    (3D_avg and 3D_comb): at most 20 s on 2 cores."""
    image, mask = ct_case(100_000)
    _run(benchmark, image, mask, ["cm"], 2)
    assert benchmark.stats.stats.min < 20.0


@pytest.mark.parametrize("family", ["stat", "ih", "cm", "rlm", "ngt", "ngl"])
def test_family_throughput(benchmark, family):
    """Voxels per second of each family alone, radius 2, 32 levels, 30,000 ROI voxels."""
    image, mask = ct_case(30_000, seed=1)
    _run(benchmark, image, mask, [family], 2)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_glcm_radius_growth(benchmark, radius):
    image, mask = ct_case(30_000, seed=2)
    _run(benchmark, image, mask, ["cm"], radius)


@pytest.mark.parametrize("n_roi", [12_500, 25_000, 50_000])
def test_glcm_roi_growth(benchmark, n_roi):
    image, mask = ct_case(n_roi, seed=3)
    _run(benchmark, image, mask, ["cm"], 2)


@pytest.mark.skipif(not _PYRAD.exists(), reason="PyRadiomics venv missing "
                    "(benchmarks/anchors/setup_anchors.sh pyradiomics)")
def test_pyradiomics_side_by_side(benchmark, tmp_path):
    n_roi = int(os.environ.get("MEDIMG_FAST_BENCH_PYRAD_ROI", "3000"))
    image, mask = ct_case(n_roi, seed=4)
    settings = _settings(image, mask)
    np.save(tmp_path / "img.npy", image)
    np.save(tmp_path / "mask.npy", mask)
    script = pathlib.Path(__file__).parent / "anchors" / "run_pyradiomics_maps.py"
    subprocess.run([str(_PYRAD), str(script), "--image", str(tmp_path / "img.npy"), "--mask",
                    str(tmp_path / "mask.npy"), "--bin-width", str(settings["bin_width"]),
                    "--radius", "2", "--out", str(tmp_path / "pr.npz")], check=True)
    pr = np.load(tmp_path / "pr.npz")
    maps = _run(benchmark, image, mask, ["cm"], 2)
    ours = benchmark.stats.stats.min
    t0 = time.perf_counter()
    maps = feature_maps(image, mask, settings={**settings, "families": ["cm"]}, radius=2)
    ours = min(ours, time.perf_counter() - t0)
    ratio = float(pr["seconds"]) / ours
    worst = {}
    for pyr, tag in PYRADIOMICS_GLCM.items():
        a, b = pr[f"glcm_{pyr}"][mask], maps[f"cm_{tag}_3D_avg"][mask]
        both = np.isfinite(a) & np.isfinite(b)
        assert np.array_equal(np.isfinite(a), np.isfinite(b)), pyr
        worst[pyr] = float(np.max(np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), 1.0)))
    benchmark.extra_info.update({"pyradiomics_seconds": float(pr["seconds"]),
                                 "ours_seconds": ours, "speedup": ratio,
                                 "max_rel_diff": worst})
    print(f"PyRadiomics {float(pr['seconds']):.2f} s, ours {ours:.4f} s: {ratio:.0f}x; "
          f"largest relative difference {max(worst.values()):.1e}")
    for pyr, d in worst.items():
        assert d < 1e-9, (pyr, d)
