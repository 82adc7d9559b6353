"""The CUDA kernels compile, and compute the right numbers, without a GPU.

* ``nvcc`` compiles every ``kernels/*.cu`` for sm_80 and sm_90 with the template
  instances the loader asks for (named by the loader's own ``name_expression``), and
  ptxas reports no local-memory stack frame (a register array indexed at run time
  would show one).
* The host emulation compiles the same kernel sources with the host C++ compiler
  behind a small CUDA shim (one OS thread per CUDA thread, a real barrier for
  ``__syncthreads``, the block's dynamic shared memory poisoned with NaN before each
  block), and runs the loader's launch plans through it.  The results are compared
  with scipy.ndimage in float64: tiling, halos, every boundary mode, the constant-mode
  rules of the fused gradient, the selection network and the filter-bank sequencing are
  all checked on the CPU.  What it cannot show (timing, NVRTC quirks, races that a
  GPU's scheduling would expose) is left to tests/gpu/test_cuda_kernels.py.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _mf_testing import RecordingExecutor, nonzero_image
from scipy import ndimage as ndi

from medimg_fast._shared.boundary import MODES
from medimg_fast.backends import _cuda_kernels as ck
from medimg_fast.backends._cuda_kernels import KernelKey, name_expression

KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def _instantiation(key: KernelKey) -> str:
    t = "float" if key.dtype == "float32" else "double"
    params = {
        "sep_line": f"const {t}*, {t}*, const {t}*, int, int, {t}",
        "sep_strided": f"const {t}*, {t}*, const {t}*, int, int, int, int, {t}",
        "gradient_magnitude": f"const {t}*, {t}*, int, int, int, int, {t}, {t}, int",
        "median_box": f"const {t}*, {t}*, int, int, int, {t}, int",
    }[key.family]
    return f"template __global__ void {name_expression(key)}({params});"


def _compile_keys() -> list[KernelKey]:
    keys = []
    for fam in ("sep_line", "sep_strided"):
        for mode in MODES:
            keys.append(KernelKey(fam, "float32", mode, "correlate", 17, 8))
        keys += [KernelKey(fam, "float64", "reflect", "correlate", 17, 4),
                 KernelKey(fam, "float32", "reflect", "correlate", 129, 8),
                 KernelKey(fam, "float64", "constant", "correlate", 129, 4),
                 KernelKey(fam, "float32", "nearest", "minimum", 5, 8),
                 KernelKey(fam, "float64", "wrap", "maximum", 41, 4)]
    for nd in (2, 3):
        for dtype in ("float32", "float64"):
            keys.append(KernelKey("gradient_magnitude", dtype, "constant", ndim=nd))
            for r in (1, 2):
                keys.append(KernelKey("median_box", dtype, "reflect", ndim=nd, radius=r))
        keys.append(KernelKey("gradient_magnitude", "float32", "mirror", ndim=nd))
    return keys


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on the PATH")
def test_nvcc_compiles_every_kernel_for_sm80_and_sm90(tmp_path):
    sources = sorted(p.name for p in KERNELS.glob("*.cu"))
    assert {"common.cu", "separable.cu", "gradient.cu", "median.cu"} <= set(sources)
    # Every source compiles on its own (the guarded include finds common.cu)...
    tu = [f'#include "{name}"' for name in sources]
    # ...and together with the instances the loader names.
    tu += [_instantiation(k) for k in _compile_keys()]
    (tmp_path / "all.cu").write_text("\n".join(tu) + "\n")
    cmd = ["nvcc", "-std=c++17", "-I", str(KERNELS), "-c", str(tmp_path / "all.cu"),
           "-o", str(tmp_path / "all.o"), "--threads", "0", "-Xptxas", "-v",
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    frames = re.findall(r"(\d+) bytes stack frame", res.stderr)
    assert len(frames) == 2 * len(_compile_keys()), res.stderr[-2000:]
    assert set(frames) == {"0"}, "a kernel uses local memory:\n" + res.stderr[-4000:]


# --------------------------------------------------------------------------------------
# Host emulation
# --------------------------------------------------------------------------------------
SHIM = r"""
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim, gridDim;
inline std::barrier<>* g_sync = nullptr;
inline void __syncthreads() { g_sync->arrive_and_wait(); }
template <typename T> inline T __ldg(const T* p) { return *p; }
using std::fma; using std::max; using std::min; using std::sqrt;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__
#define __align__(n)
#define __restrict__

namespace medimg { alignas(16) unsigned char smem_raw[1 << 17]; }
"""

EMULATE = r"""
template <typename... P, std::size_t... I>
std::tuple<P...> unpack(void** argv, std::index_sequence<I...>) {
    return std::tuple<P...>(*static_cast<P*>(argv[I])...);
}

template <typename... P>
void emulate(void (*kernel)(P...), dim3 grid, dim3 block, unsigned shared_bytes, void** argv) {
    auto args = unpack<P...>(argv, std::index_sequence_for<P...>{});
    const unsigned nthreads = block.x * block.y * block.z;
    const long nblocks = (long)grid.x * grid.y * grid.z;
    long b = 0;
    gridDim = grid;
    blockDim = block;
    auto start_block = [&]() {
        blockIdx = dim3{unsigned(b % grid.x), unsigned((b / grid.x) % grid.y),
                        unsigned(b / ((long)grid.x * grid.y))};
        // Unwritten shared memory reads as NaN, and so does anything past the launch's bytes.
        std::memset(medimg::smem_raw, 0xFF, sizeof(medimg::smem_raw));
    };
    start_block();
    std::barrier<> sync(nthreads);
    auto on_block_end = [&]() noexcept { if (++b < nblocks) start_block(); };
    std::barrier<decltype(on_block_end)> end(nthreads, on_block_end);
    g_sync = &sync;
    (void)shared_bytes;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < nthreads; ++t) {
        pool.emplace_back([&, t]() {
            threadIdx = dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            while (b < nblocks) {
                std::apply(kernel, args);
                end.arrive_and_wait();
            }
        });
    }
    for (auto& th : pool) th.join();
}
"""


def _emulation_keys_for(cases) -> list[KernelKey]:
    keys = []
    ex = RecordingExecutor()
    for fn in cases:
        fn(ex)
    for launch in ex.launches:
        if launch.key not in keys:
            keys.append(launch.key)
    return keys


class _HostExecutor(RecordingExecutor):
    """Runs each launch through the emulation library."""

    def __init__(self, lib, keys):
        super().__init__()
        self.lib = lib
        self.index = {k: i for i, k in enumerate(keys)}

    def launch(self, launch):
        holders = []
        for a in launch.args:
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous
                holders.append(ctypes.c_void_p(a.ctypes.data))
            elif isinstance(a, np.int32):
                holders.append(ctypes.c_int32(int(a)))
            elif isinstance(a, np.float32):
                holders.append(ctypes.c_float(float(a)))
            elif isinstance(a, np.float64):
                holders.append(ctypes.c_double(float(a)))
            else:
                raise TypeError(f"unexpected kernel argument {a!r}")
        argv = (ctypes.c_void_p * len(holders))(
            *[ctypes.cast(ctypes.pointer(h), ctypes.c_void_p) for h in holders])
        assert launch.shared_bytes <= ck.MAX_SHARED_BYTES
        getattr(self.lib, f"launch_{self.index[launch.key]}")(
            *launch.grid, *launch.block, launch.shared_bytes, argv)
        self.launches.append(launch)


# Shapes cross tile boundaries (64-sample line segments, 32 x 8 stencil tiles, 16-plane
# slabs) and are not multiples of the blocks.
SHAPE3 = (18, 11, 37)
SHAPE2 = (21, 70)


def _case_correlate(mode, axis, taps, dtype, shape):
    def run(ex):
        img = nonzero_image(shape, dtype, 1 + taps + axis)
        w = np.random.default_rng(taps).uniform(-1, 1, taps)
        got = ck._correlate1d(ex, img, w, axis, mode, 0.75)
        return got, ndi.correlate1d(img.astype(np.float64), w, axis=axis, mode=mode, cval=0.75)
    return run


def _case_extremum(mode, axis, size, maximum, shape):
    def run(ex):
        img = nonzero_image(shape, np.float64, 7 + size)
        got = ck._extremum_filter1d(ex, img, size, axis, mode, -0.25, maximum)
        f = ndi.maximum_filter1d if maximum else ndi.minimum_filter1d
        return got, f(img, size, axis=axis, mode=mode, cval=-0.25)
    return run


def _case_gradient(mode, kind, axes, shape):
    def run(ex):
        img = nonzero_image(shape, np.float64, 11)
        got = ck._gradient_magnitude(ex, img, kind, axes, mode, 0.6)
        f = ndi.sobel if kind == "sobel" else ndi.prewitt
        ref = np.sqrt(sum(f(img, axis=a, mode=mode, cval=0.6) ** 2 for a in axes))
        return got, ref
    return run


def _case_median(mode, size, shape, dtype=np.float64):
    def run(ex):
        img = nonzero_image(shape, dtype, 13 + size)
        got = ck._median_filter(ex, img, size, mode, 0.3)
        return got, ndi.median_filter(img.astype(np.float64), size=size, mode=mode, cval=0.3)
    return run


def _case_bank(shape):
    specs = [("gaussian", {"sigma": 1.5}),
             ("gaussian", {"sigma": (1.0, 0.0, 2.0)[: len(shape)], "order": 1, "mode": "wrap"}),
             ("uniform", {"size": 5, "mode": "constant", "cval": 0.5}),
             ("gaussian_laplace", {"sigma": 1.0, "mode": "nearest"}),
             {"filter": "difference_of_gaussians", "low_sigma": 1.0, "high_sigma": 2.0},
             ("gradient_magnitude", {"kind": "prewitt", "mode": "mirror"}),
             ("median", {"size": 3}),
             ("maximum", {"size": 3, "mode": "constant", "cval": -2.0})]

    def run(ex):
        img = nonzero_image(shape, np.float64, 17)
        got = ck._filter_bank(ex, img, specs)
        ref = [ndi.gaussian_filter(img, 1.5),
               ndi.gaussian_filter(img, (1.0, 0.0, 2.0)[: len(shape)], order=1, mode="wrap"),
               ndi.uniform_filter(img, 5, mode="constant", cval=0.5),
               ndi.gaussian_laplace(img, 1.0, mode="nearest"),
               ndi.gaussian_filter(img, 1.0) - ndi.gaussian_filter(img, 2.0),
               np.sqrt(sum(ndi.prewitt(img, axis=a, mode="mirror") ** 2
                           for a in range(img.ndim))),
               ndi.median_filter(img, 3),
               ndi.maximum_filter(img, 3, mode="constant", cval=-2.0)]
        return got, np.stack(ref)
    return run


CASES = {}
for _mode in MODES:
    CASES[f"corr-line-{_mode}"] = _case_correlate(_mode, 2, 7, np.float64, SHAPE3)
    CASES[f"corr-strided-ax0-{_mode}"] = _case_correlate(_mode, 0, 7, np.float64, SHAPE3)
    CASES[f"corr-2d-ax0-{_mode}"] = _case_correlate(_mode, 0, 4, np.float64, SHAPE2)
    CASES[f"grad3-{_mode}"] = _case_gradient(_mode, "sobel", (0, 1, 2), SHAPE3)
    CASES[f"grad2-{_mode}"] = _case_gradient(_mode, "prewitt", (0, 1), SHAPE2)
    CASES[f"median3-{_mode}"] = _case_median(_mode, 3, SHAPE3)
    CASES[f"median2x5-{_mode}"] = _case_median(_mode, 5, SHAPE2)
CASES["corr-line-long-taps-beyond-axis"] = _case_correlate("reflect", 1, 41, np.float64, (5, 9))
CASES["corr-strided-long-taps"] = _case_correlate("mirror", 1, 41, np.float64, (4, 30, 9))
CASES["corr-line-float32"] = _case_correlate("reflect", 1, 17, np.float32, SHAPE2)
CASES["max-line"] = _case_extremum("nearest", 2, 4, True, SHAPE3)
CASES["min-strided"] = _case_extremum("constant", 1, 5, False, SHAPE3)
CASES["grad3-subset-constant"] = _case_gradient("constant", "sobel", (0, 2), SHAPE3)
CASES["median5-3d"] = _case_median("wrap", 5, (9, 10, 35))
CASES["median3-float32"] = _case_median("mirror", 3, SHAPE3, np.float32)
CASES["bank-3d"] = _case_bank((17, 9, 35))
CASES["bank-2d"] = _case_bank(SHAPE2)


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no host C++ compiler (g++) to emulate the kernels")
    keys = _emulation_keys_for(CASES.values())
    src = [SHIM]
    src += [f'#include "{KERNELS / n}"' for n in ("separable.cu", "gradient.cu", "median.cu")]
    src.append(EMULATE)
    for i, key in enumerate(keys):
        src.append(
            f'extern "C" void launch_{i}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, '
            f"unsigned by, unsigned bz, unsigned shared, void** argv) {{ emulate(&{name_expression(key)}, "
            f"dim3{{gx, gy, gz}}, dim3{{bx, by, bz}}, shared, argv); }}")
    d = tmp_path_factory.mktemp("emulation")
    (d / "emu.cpp").write_text("\n".join(src) + "\n")
    lib = d / "libemu.so"
    # Without -ffp-contract=off the compiler may fuse or not; either is what a GPU does too.
    cmd = ["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-Wno-unknown-pragmas",
           "-I", str(KERNELS), str(d / "emu.cpp"), "-o", str(lib)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    return _HostExecutor(ctypes.CDLL(str(lib)), keys)


@pytest.mark.parametrize("case", sorted(CASES))
def test_emulated_kernel_matches_scipy(host_lib, case):
    got, ref = CASES[case](host_lib)
    assert got.shape == ref.shape
    assert np.isfinite(got).all(), "some outputs were not written (or read poisoned shared memory)"
    # float64 kernels against float64 scipy: only summation order differs.
    rtol = 2e-6 if got.dtype == np.float32 else 1e-12
    scale = np.abs(ref).max()
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)
