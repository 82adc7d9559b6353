"""Filter throughput, every backend side by side with scipy.ndimage and dask-image.

Each case records its voxel count in ``extra_info`` so ``benchmarks/report.py`` can turn
the timings into megavoxels/s and ratios against the baselines measured in the same run.
The memory-bandwidth ceiling (a large copy) and the compute ceiling (a float32 GEMM: its
"Mvox/s" column reads as millions of multiply-adds per second; a Gaussian of ``taps`` taps
per axis needs ``3 * taps`` per voxel) are measured in the same run.  For the ceilings
beside each filter, with the spread over rounds, a load test and the scaling with size,
see ``benchmarks/bench_ceilings.py``.

Run: ``make bench`` (or ``pytest benchmarks/bench_filters.py --benchmark-only``).
"""

from __future__ import annotations

import os

import dask
import dask.array as da
import numpy as np
import pytest
from scipy import ndimage as ndi

import medimg_fast as mf

CORES = os.cpu_count() or 1
BACKENDS = [name for name, status in mf.available_backends().items() if status.available]


def scipy_gradient_magnitude(x):
    """scipy.ndimage's gradient magnitude: the root of the summed squared Sobel responses."""
    total = ndi.sobel(x, axis=0) ** 2
    for axis in range(1, x.ndim):
        total += ndi.sobel(x, axis=axis) ** 2
    return np.sqrt(total)


def _dask_image(name):
    from dask_image import ndfilters

    def run(x):
        lazy = da.from_array(x, chunks=tuple(max(1, s // 2) for s in x.shape))
        if name == "gaussian":
            out = ndfilters.gaussian_filter(lazy, sigma=2.0)
        elif name == "uniform":
            out = ndfilters.uniform_filter(lazy, size=5)
        elif name == "median":
            out = ndfilters.median_filter(lazy, size=3)
        else:
            out = da.sqrt(sum(ndfilters.sobel(lazy, axis=a) ** 2 for a in range(x.ndim)))
        with dask.config.set(scheduler="threads", num_workers=CORES):
            return out.compute()

    return run


FILTERS = {
    "gaussian": (lambda x, b: mf.gaussian_filter(x, 2.0, backend=b),
                 lambda x: ndi.gaussian_filter(x, 2.0)),
    "uniform": (lambda x, b: mf.uniform_filter(x, 5, backend=b),
                lambda x: ndi.uniform_filter(x, 5)),
    "median": (lambda x, b: mf.median_filter(x, size=3, backend=b),
               lambda x: ndi.median_filter(x, size=3)),
    "gradient_magnitude": (lambda x, b: mf.gradient_magnitude(x, backend=b),
                           scipy_gradient_magnitude),
}


def _record(benchmark, volume, filter_name, implementation):
    benchmark.group = f"filter:{filter_name}"
    benchmark.extra_info.update(
        voxels=int(volume.size), filter=filter_name, implementation=implementation,
        shape=list(volume.shape), dtype=str(volume.dtype), cores=CORES,
    )


@pytest.mark.parametrize("implementation", [*BACKENDS, "scipy.ndimage", "dask-image"])
@pytest.mark.parametrize("filter_name", sorted(FILTERS))
def test_filter_throughput(benchmark, volume_f32, filter_name, implementation):
    ours, scipy_call = FILTERS[filter_name]
    if implementation == "scipy.ndimage":
        call = scipy_call
    elif implementation == "dask-image":
        call = _dask_image(filter_name)
    elif implementation == "cupy":
        import cupy

        device_volume = cupy.asarray(volume_f32)

        def call(_):
            out = ours(device_volume, "cupy")
            cupy.cuda.Device().synchronize()
            return out
    else:
        def call(x):
            return ours(x, implementation)
    call(volume_f32)  # warm-up: compilation, caches, thread pools
    _record(benchmark, volume_f32, filter_name, implementation)
    benchmark.pedantic(call, args=(volume_f32,), rounds=3, iterations=1)


def test_memory_bandwidth_ceiling(benchmark, volume_f32):
    """A plain copy of the volume: no filter can stream its data faster than this."""
    out = np.empty_like(volume_f32)
    np.copyto(out, volume_f32)
    _record(benchmark, volume_f32, "copy", "numpy.copyto")
    benchmark.pedantic(np.copyto, args=(out, volume_f32), rounds=5, iterations=1)


def test_compute_ceiling(benchmark):
    """float32 GEMM of two 4096^2 matrices: the cores' multiply-add rate (BLAS, FMA)."""
    rng = np.random.default_rng(0)
    a = rng.random((4096, 4096), dtype=np.float32)
    b = rng.random((4096, 4096), dtype=np.float32)
    np.dot(a, b)
    benchmark.group = "filter:gemm"
    # "voxels" = multiply-adds, so report.py's Mvox/s reads as M multiply-adds/s
    benchmark.extra_info.update(voxels=4096 ** 3, filter="gemm (multiply-adds)",
                                implementation="numpy.dot float32", shape=[4096, 4096],
                                dtype="float32", cores=CORES)
    benchmark.pedantic(np.dot, args=(a, b), rounds=3, iterations=1)
