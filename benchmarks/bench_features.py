"""Feature extraction throughput: medimg-fast (numba, numpy) against a plain baseline.

A 128^3 float32 volume with an ellipsoidal ROI of about 30 % of the voxels, all
families (intensity statistics, intensity histogram, 3-D GLCM both aggregations,
morphology, and a filter bank of Gaussian, LoG x2, gradient magnitude and mean
filters).  The baseline is what one writes with the usual tools: scipy.ndimage
filters in float64, NumPy/SciPy statistics, a NumPy 3-D co-occurrence count per
direction (``np.bincount`` of level pairs: the same counts as ``np.histogram2d``,
about 4x faster, so the baseline is not inflated), scikit-image marching cubes, SciPy
convex hull and ``scipy.spatial.distance.pdist`` for the maximum diameter.

Run::

    PYTHONPATH=src python -m pytest benchmarks/bench_features.py --benchmark-only \
        --benchmark-columns=min,mean,rounds
    PYTHONPATH=src python benchmarks/bench_features.py     # prints the table
"""

from __future__ import annotations

import time

import numpy as np
import pytest

SHAPE = (128, 128, 128)
SPACING = (1.0, 1.0, 1.0)
FILTERS = [{"name": "gaussian", "sigma_mm": 1.0}, {"name": "log", "sigma_mm": 1.0},
           {"name": "log", "sigma_mm": 2.0}, {"name": "gradient_magnitude", "sigma_mm": 1.0},
           {"name": "mean", "size": 3}]
# Moran's I and Geary's C (computed by default since they fit the memory budget) are left out:
# the baseline has nothing like them; benchmarks/bench_ibsi.py times them against MIRP
SETTINGS = {"bin_count": 32, "filters": FILTERS, "autocorrelation_max_voxels": 0}


def make_volume(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 20.0, SHAPE).astype(np.float32)
    idx = np.indices(SHAPE, dtype=np.float32)
    radii = (56.0, 54.0, 50.0)
    mask = sum(((i - 63.5) / r) ** 2 for i, r in zip(idx, radii)) <= 1.0
    image += 30.0 * mask  # a brighter lesion
    return image, mask


def _stats_numpy(x):
    import scipy.stats

    p10, p25, p50, p75, p90 = np.percentile(x, [10, 25, 50, 75, 90])
    inside = x[(x >= p10) & (x <= p90)]
    return [x.mean(), x.var(), scipy.stats.skew(x), scipy.stats.kurtosis(x), p50, x.min(),
            p10, p90, x.max(), p75 - p25, np.ptp(x), np.abs(x - x.mean()).mean(),
            np.abs(inside - inside.mean()).mean(), np.abs(x - p50).mean(),
            x.std() / x.mean(), (p75 - p25) / (p75 + p25), np.sum(x * x),
            np.sqrt(np.mean(x * x))]


def baseline(image, mask, filters=FILTERS):
    """Straightforward extraction with scipy.ndimage, NumPy, scikit-image, SciPy."""
    import scipy.ndimage as ndi
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist
    from skimage.measure import marching_cubes, mesh_surface_area

    from medimg_fast.features._glcm import directions_3d, glcm_aggregate
    from medimg_fast.features._histogram import histogram_features

    img = image.astype(np.float64)
    out = []
    x = img[mask]
    out += _stats_numpy(x)
    ng = 32
    levels = np.clip(np.floor(ng * (img - x.min()) / np.ptp(x)) + 1, 1, ng).astype(np.int64)
    levels[~mask] = 0
    out += list(histogram_features(np.bincount(levels[mask], minlength=ng + 1)[1:]).values())
    counts = np.zeros((13, ng, ng))
    n = np.array(levels.shape)
    for k, d in enumerate(directions_3d(1)):
        src = tuple(slice(max(0, -s), m - max(0, s)) for s, m in zip(d, n))
        dst = tuple(slice(max(0, s), m - max(0, -s)) for s, m in zip(d, n))
        a, b = levels[src].ravel(), levels[dst].ravel()
        ok = (a > 0) & (b > 0)
        counts[k] = np.bincount((a[ok] - 1) * ng + (b[ok] - 1),
                                minlength=ng * ng).reshape(ng, ng)
    out += list(glcm_aggregate(counts).values())
    verts, faces, _, _ = marching_cubes(np.pad(mask, 1).astype(np.float32), 0.5,
                                        spacing=SPACING)
    area = mesh_surface_area(verts, faces)
    tri = verts[faces].astype(np.float64)
    vol = abs(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6
    hull = ConvexHull(verts)
    hv = verts[hull.vertices].astype(np.float64)
    diam = pdist(hv).max()
    pos = np.argwhere(mask).astype(np.float64)
    eig = np.linalg.eigvalsh(np.cov(pos.T))
    out += [vol, area, hull.volume, hull.area, diam, *eig,
            *ndi.center_of_mass(np.where(mask, img, 0.0))]
    for f in filters:
        if f["name"] == "gaussian":
            r = ndi.gaussian_filter(img, f["sigma_mm"])
        elif f["name"] == "log":
            r = ndi.gaussian_laplace(img, f["sigma_mm"])
        elif f["name"] == "gradient_magnitude":
            r = ndi.gaussian_gradient_magnitude(img, f["sigma_mm"])
        else:
            r = ndi.uniform_filter(img, f["size"])
        out += _stats_numpy(r[mask])
    return out


def ours(image, mask, backend, settings=SETTINGS):
    from medimg_fast.features import extract_features

    return extract_features(image, mask, spacing=SPACING, settings=settings, backend=backend)


def _backends():
    from medimg_fast import available_backends

    return [b for b in ("numba", "numpy", "cupy") if available_backends()[b].available]


@pytest.fixture(scope="module")
def volume():
    return make_volume()


@pytest.mark.parametrize("backend", ["baseline", *_backends()])
def test_feature_extraction(benchmark, volume, backend):
    image, mask = volume
    if backend == "baseline":
        fn = lambda: baseline(image, mask)
    else:
        ours(image, mask, backend)  # compile / warm up
        fn = lambda: ours(image, mask, backend)
    benchmark.extra_info["voxels"] = int(image.size)
    benchmark.extra_info["roi_fraction"] = float(mask.mean())
    benchmark.pedantic(fn, rounds=3, iterations=1)
    t = benchmark.stats.stats.min
    benchmark.extra_info["mvox_per_s"] = image.size / t / 1e6
    benchmark.extra_info["volumes_per_s"] = 1.0 / t


def main():
    image, mask = make_volume()
    print(f"volume {SHAPE}, ROI {mask.mean():.1%} of voxels")
    configs = {"all families + filter bank": (FILTERS, SETTINGS),
               "IBSI families, no filter bank": ([], {**SETTINGS, "filters": []})}
    for title, (filters, settings) in configs.items():
        rows = {}
        for name in ["baseline", *_backends()]:
            if name == "baseline":
                fn = lambda filters=filters: baseline(image, mask, filters)
            else:
                fn = lambda name=name, s=settings: ours(image, mask, name, s)
            fn()
            rows[name] = min(_timed(fn) for _ in range(3))
        base = rows["baseline"]
        print(f"\n{title}")
        print(f"{'backend':10s} {'s/volume':>9s} {'Mvox/s':>8s} {'volumes/s':>10s} {'speed-up':>9s}")
        for name, t in rows.items():
            print(f"{name:10s} {t:9.3f} {image.size / t / 1e6:8.2f} {1 / t:10.3f} "
                  f"{base / t:8.1f}x")


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
