"""GPU benchmarks: our kernels against cupyx.scipy.ndimage in the same run.

Run on a CUDA machine with ``pytest benchmarks/bench_gpu.py --benchmark-only``.  Each
case times the median of CUDA-event measurements after warm-up (compilation excluded)
and records extras: megavoxels/s, effective bandwidth per separable pass, and its
fraction of the measured device-to-device copy bandwidth.  Float32 throughout.
"""

from __future__ import annotations

import numpy as np
import pytest

from medimg_fast.backends import _cuda_kernels as ck

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
cndi = pytest.importorskip("cupyx.scipy.ndimage")

try:
    _HAVE_DEVICE = cupy.cuda.runtime.getDeviceCount() > 0
except cupy.cuda.runtime.CUDARuntimeError:
    _HAVE_DEVICE = False
if not _HAVE_DEVICE:
    pytest.skip("no CUDA device", allow_module_level=True)

WARMUP, REPEATS = 3, 20


def _event_ms(fn, repeats=REPEATS):
    for _ in range(WARMUP):
        fn()
    cupy.cuda.get_current_stream().synchronize()
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    return float(np.median(times))


def _volume(n, seed=0):
    rng = cupy.random.default_rng(seed)
    return rng.uniform(0.5, 1.5, (n, n, n), dtype=cupy.float32)


@pytest.fixture(scope="module")
def copy_bandwidth():
    """Device-to-device copy bandwidth, bytes read plus written per second."""
    a = _volume(512)
    b = cupy.empty_like(a)
    ms = _event_ms(lambda: cupy.copyto(b, a))
    return 2 * a.nbytes / (ms * 1e-3)


def _time_pair(benchmark, ours, theirs, nbytes_per_pass, passes, copy_bw, label):
    t_ours = _event_ms(ours)
    t_theirs = _event_ms(theirs)
    benchmark.pedantic(ours, rounds=5, warmup_rounds=1)
    cupy.cuda.get_current_stream().synchronize()
    pass_bw = nbytes_per_pass * passes / (t_ours * 1e-3)  # mean over the passes
    benchmark.extra_info.update({
        "case": label, "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
        "ours_ms": t_ours, "cupyx_ms": t_theirs, "speedup": t_theirs / t_ours,
        "pass_bandwidth_GBps": pass_bw / 1e9, "copy_bandwidth_GBps": copy_bw / 1e9,
        "fraction_of_copy": pass_bw / copy_bw,
    })
    print(f"\n{label}: ours {t_ours:.3f} ms, cupyx {t_theirs:.3f} ms, "
          f"x{t_theirs / t_ours:.2f}, pass {pass_bw / 1e9:.0f} GB/s "
          f"({100 * pass_bw / copy_bw:.0f}% of copy {copy_bw / 1e9:.0f} GB/s)")


def test_gaussian_sigma2_512(benchmark, copy_bandwidth):
    x = _volume(512)
    w = ck.gaussian_weights(2.0)
    bank = [("gaussian", {"sigma": 2.0})]
    out = cupy.empty((1,) + x.shape, x.dtype)
    _time_pair(benchmark, lambda: ck.filter_bank(x, bank, out=out),
               lambda: cndi.gaussian_filter(x, 2.0), 2 * x.nbytes, 3, copy_bandwidth,
               f"gaussian sigma 2, 512^3 ({w.size} taps)")


def test_uniform5_512(benchmark, copy_bandwidth):
    x = _volume(512)
    out = cupy.empty((1,) + x.shape, x.dtype)
    _time_pair(benchmark, lambda: ck.filter_bank(x, [("uniform", {"size": 5})], out=out),
               lambda: cndi.uniform_filter(x, 5), 2 * x.nbytes, 3, copy_bandwidth,
               "uniform 5, 512^3")


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_single_pass_bandwidth(benchmark, copy_bandwidth, axis):
    x = _volume(512)
    w = ck.gaussian_weights(2.0)
    _time_pair(benchmark, lambda: ck.correlate1d(x, w, axis, "reflect", 0.0),
               lambda: cndi.correlate1d(x, cupy.asarray(w), axis=axis), 2 * x.nbytes, 1,
               copy_bandwidth, f"correlate1d 17 taps axis {axis}, 512^3")


def test_median3_256(benchmark, copy_bandwidth):
    x = _volume(256)
    _time_pair(benchmark, lambda: ck.median_filter(x, 3, "reflect", 0.0),
               lambda: cndi.median_filter(x, 3), 2 * x.nbytes, 1, copy_bandwidth,
               "median 3^3, 256^3")


def test_gradient_magnitude_512(benchmark, copy_bandwidth):
    x = _volume(512)

    def theirs():
        return cupy.sqrt(sum(cndi.sobel(x, axis=a) ** 2 for a in range(3)))

    _time_pair(benchmark, lambda: ck.gradient_magnitude(x, "sobel", (0, 1, 2), "reflect", 0.0),
               theirs, 2 * x.nbytes, 1, copy_bandwidth, "sobel gradient magnitude, 512^3")


def test_end_to_end_filter_bank_512_from_host(benchmark):
    host = cupy.asnumpy(_volume(512))
    pinned = cupy.cuda.alloc_pinned_memory(host.nbytes)
    src = np.frombuffer(pinned, host.dtype, host.size).reshape(host.shape)
    src[...] = host
    specs = [("gaussian", {"sigma": 2.0}), ("uniform", {"size": 5}),
             ("gradient_magnitude", {}), ("gaussian_laplace", {"sigma": 1.0})]
    dev = cupy.empty(host.shape, host.dtype)
    out = cupy.empty((len(specs),) + host.shape, host.dtype)
    result = np.empty(out.shape, out.dtype)

    def run():
        dev.set(src)
        ck.filter_bank(dev, specs, out=out)
        out.get(out=result)

    ms = _event_ms(run, repeats=5)
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    mvox = host.size / 1e6 / (ms * 1e-3)
    benchmark.extra_info.update({"case": "host->device->bank(4)->host, 512^3", "ms": ms,
                                 "megavoxels_per_s": mvox})
    print(f"\nend to end 512^3, 4 responses: {ms:.1f} ms, {mvox:.0f} Mvoxel/s")
