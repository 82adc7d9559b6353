"""CPU-side logic of the CUDA kernel loader: names, sources, launch plans, chunking,
Gaussian weights.  No GPU or CuPy needed."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _mf_testing import RecordingExecutor
from scipy import ndimage as ndi

from medimg_fast._shared.boundary import MODE_CODES, MODES, extend_index
from medimg_fast.backends import _cuda_kernels as ck
from medimg_fast.backends._cuda_kernels import KernelKey

SRC = Path(ck.__file__).resolve().parents[2]


def test_module_imports_without_cupy():
    code = ("import sys; sys.modules['cupy'] = None; "
            "import medimg_fast.backends._cuda_kernels as ck; print(ck.MAX_SHARED_BYTES)")
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "49152"


def test_sources_found_and_kernel_named_by_key():
    src = ck.kernel_source("sep_line")
    assert "MEDIMG_FAST_COMMON_CU" in src and "sep_line" in src
    key = KernelKey("sep_line", "float32", "reflect", "correlate", 17, 8)
    assert ck.name_expression(key) == (
        "medimg::sep_line<float, medimg::Reflect, medimg::Correlate, 17, 8>")
    assert key.short_name == "sep_line_f32_reflect_correlate_t17_p8"
    med = KernelKey("median_box", "float64", "wrap", ndim=3, radius=2)
    assert ck.name_expression(med) == "medimg::median_box<double, medimg::Wrap, 3, 2>"
    assert hash(key) != hash(med)


def test_mode_codes_in_the_header_match_python():
    src = ck.kernel_source("median_box")
    for name, code in MODE_CODES.items():
        assert f"struct {name.capitalize():<8} {{ static constexpr int code = {code}; }};" in src


@pytest.mark.parametrize("bad", [{"family": "nope"}, {"dtype": "int8"}, {"mode": "grid-wrap"},
                                 {"op": "median"}])
def test_kernel_key_rejects_bad_fields(bad):
    fields = {"family": "sep_line", "dtype": "float32", "mode": "reflect"}
    fields.update(bad)
    with pytest.raises(ValueError, match=f"`{next(iter(bad))}`"):
        KernelKey(**fields)


def test_line_view():
    assert ck.line_view((4, 5, 6), 0) == (1, 4, 30)
    assert ck.line_view((4, 5, 6), 1) == (4, 5, 6)
    assert ck.line_view((4, 5, 6), 2) == (20, 6, 1)


@pytest.mark.parametrize("itemsize", [4, 8])
@pytest.mark.parametrize("n_lines,n,taps", [(1, 1, 1), (7, 33, 5), (262144, 512, 17),
                                             (3, 1000, 129), (100, 37, 301)])
def test_plan_line_covers_the_array_and_fits_shared_memory(n_lines, n, taps, itemsize):
    plan = ck.plan_line(n_lines, n, taps, itemsize)
    bx, by, bz = plan.block
    assert bz == 1 and bx % 32 == 0 and bx * by <= 1024
    assert plan.grid[0] * by >= n_lines > (plan.grid[0] - 1) * by
    assert plan.grid[1] * bx * plan.per >= n > (plan.grid[1] - 1) * bx * plan.per
    assert plan.shared_bytes <= ck.MAX_SHARED_BYTES
    # The shared layout: every skewed index a thread touches lies inside its row.
    row_len = bx * plan.per + taps - 1
    row_stride = ck.skewed(row_len - 1, plan.per) + 1
    w = taps if ck.stages_weights("correlate", taps) else 0
    assert plan.shared_bytes == (w + by * row_stride) * itemsize


@pytest.mark.parametrize("per,itemsize", [(8, 4), (4, 4), (2, 4), (1, 4), (4, 8), (2, 8),
                                          (1, 8)])
def test_line_skew_makes_strided_reads_conflict_free(per, itemsize):
    # Lane t reads sample t*per + j.  32 banks of 4 bytes; 8-byte samples are served per
    # half warp (16 lanes over 16 bank pairs).  Each lane must hit its own bank (pair).
    lanes = 32 if itemsize == 4 else 16
    for j in range(per + 140):
        banks = {ck.skewed(t * per + j, per) % lanes for t in range(lanes)}
        assert len(banks) == lanes, j


@pytest.mark.parametrize("itemsize", [4, 8])
@pytest.mark.parametrize("outer,n,inner,taps", [(1, 30, 9, 5), (512, 512, 512, 17),
                                                 (1, 512, 262144, 129), (3, 7, 2, 65)])
def test_plan_strided_covers_the_array_and_fits_shared_memory(outer, n, inner, taps, itemsize):
    plan = ck.plan_strided(outer, n, inner, taps, itemsize)
    bi, bl, _ = plan.block
    assert plan.inner_blocks * bi >= inner > (plan.inner_blocks - 1) * bi
    assert plan.grid[0] == outer * plan.inner_blocks
    assert plan.grid[1] * bl * plan.per >= n > (plan.grid[1] - 1) * bl * plan.per
    assert plan.shared_bytes <= ck.MAX_SHARED_BYTES
    w = taps if ck.stages_weights("correlate", taps) else 0
    assert plan.shared_bytes == (w + (bl * plan.per + taps - 1) * bi) * itemsize


def test_taps_at_least_129_supported_in_every_direction():
    for itemsize in (4, 8):
        ck.plan_line(10, 300, 129, itemsize)
        ck.plan_strided(10, 300, 300, 129, itemsize)


def test_too_many_taps_raise_unsupported():
    with pytest.raises(ck.UnsupportedByKernels, match="taps"):
        ck.plan_strided(1, 100, 100, 2001, 8)
    assert issubclass(ck.UnsupportedByKernels, ValueError)


@pytest.mark.parametrize("shape", [(5, 7), (70, 33), (17, 9, 35), (512, 512, 512)])
@pytest.mark.parametrize("radius", [1, 2])
def test_plan_stencil(shape, radius):
    plan = ck.plan_stencil(shape, radius, 8)
    bx, by, _ = plan.block
    ny, nx = shape[-2:]
    assert plan.grid[0] * bx >= nx > (plan.grid[0] - 1) * bx
    assert plan.grid[1] * by >= ny > (plan.grid[1] - 1) * by
    ring = 1 if len(shape) == 2 else 2 * radius + 1
    if len(shape) == 3:
        assert plan.grid[2] * plan.slab >= shape[0] > (plan.grid[2] - 1) * plan.slab
    assert plan.shared_bytes == ring * (by + 2 * radius) * (bx + 2 * radius) * 8
    assert plan.shared_bytes <= ck.MAX_SHARED_BYTES


# -- chunking -----------------------------------------------------------------------------
def test_plan_chunk_shape_whole_when_it_fits():
    assert ck.plan_chunk_shape((64, 64, 64), 4, 10**9, 4) == (64, 64, 64)


@pytest.mark.parametrize("free", [10**6, 4 * 10**6, 3 * 10**7])
def test_plan_chunk_shape_fits_the_budget_and_is_maximal(free):
    shape, halo, itemsize, nbuf = (512, 512, 512), (8, 8, 8), 4, 4
    chunk = ck.plan_chunk_shape(shape, itemsize, free, halo, n_buffers=nbuf)

    def need(c):
        return np.prod([ci if ci == s else min(s, ci + 2 * h)
                        for ci, s, h in zip(c, shape, halo)]) * itemsize * nbuf

    assert need(chunk) <= 0.8 * free
    # Growing the axis being split would break the budget.
    axis = next(a for a in range(3) if chunk[a] < shape[a] and chunk[a] > 1 or a == 2)
    bigger = list(chunk)
    bigger[axis] += 1
    assert need(bigger) > 0.8 * free
    assert all(c == 1 for c in chunk[:axis]) and chunk[axis + 1:] == shape[axis + 1:]


def test_plan_chunk_shape_volume_larger_than_device_memory():
    # 2048^3 float32 is 32 GiB; with 8 GiB free it must still plan slabs.
    chunk = ck.plan_chunk_shape((2048, 2048, 2048), 4, 8 * 2**30, 12)
    assert chunk[1:] == (2048, 2048) and 1 <= chunk[0] < 2048


def test_plan_chunk_shape_errors():
    with pytest.raises(ValueError, match="no chunk"):
        ck.plan_chunk_shape((10, 10), 8, 100, 50)
    with pytest.raises(ValueError, match="`halo`"):
        ck.plan_chunk_shape((10, 10), 8, 10**6, (1, 2, 3))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunk", [(4, 50), (7, 9), (1, 1)])
def test_apply_chunked_equals_whole_array(mode, chunk, rng):
    image = rng.uniform(0.5, 2.0, (23, 50))
    reach = 9  # sigma 2, truncate 4: radius 8 per pass; halo one beyond it

    def fn(x):
        return ndi.gaussian_filter(x, 2.0, mode=mode, cval=0.7)

    whole = fn(image)
    got = ck.apply_chunked(image, fn, reach, mode, chunk_shape=chunk)
    np.testing.assert_array_equal(got, whole)


@pytest.mark.parametrize("mode", MODES)
def test_apply_chunked_two_pass_constant_semantics(mode, rng):
    # Sobel chains passes along different axes; chunk edges that are true array edges
    # must leave scipy's per-pass padding rule in charge.
    image = rng.uniform(0.5, 2.0, (19, 13, 11))

    def fn(x):
        return ndi.sobel(x, axis=0, mode=mode, cval=1.3)

    got = ck.apply_chunked(image, fn, 1, mode, chunk_shape=(5, 4, 11))
    np.testing.assert_array_equal(got, fn(image))


def test_chunk_slabs_wrap_reads_far_side():
    slabs = list(ck.chunk_slabs((10,), (4,), (2,), "wrap"))
    out_sl, src, crop = slabs[0]
    assert out_sl == (slice(0, 4),)
    np.testing.assert_array_equal(src[0], [8, 9, 0, 1, 2, 3, 4, 5])
    assert crop == (slice(2, 6),)
    # A wrapped index array is the boundary rule itself.
    np.testing.assert_array_equal(src[0], [extend_index(i, 10, MODE_CODES["wrap"])
                                           for i in range(-2, 6)])


# -- weights ------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma,order,truncate", list(itertools.product((0.7, 2.0, 5.3), (0, 1, 2, 3),
                                                                    (4.0, 2.5))))
def test_gaussian_weights_match_scipy(sigma, order, truncate):
    w = ck.gaussian_weights(sigma, order, truncate)
    radius = int(truncate * sigma + 0.5)
    assert w.size == 2 * radius + 1
    impulse = np.zeros(4 * radius + 3)
    impulse[impulse.size // 2] = 1.0
    ref = ndi.gaussian_filter1d(impulse, sigma, order=order, truncate=truncate, mode="constant")
    got = ndi.correlate1d(impulse, w, mode="constant")
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_gaussian_weights_reject_bad_sigma(bad):
    with pytest.raises(ValueError, match="`sigma`"):
        ck.gaussian_weights(bad)


# -- validation through a recording executor (no GPU) -----------------------------------
def test_primitives_validate_before_launching():
    ex = RecordingExecutor()
    img = np.ones((5, 6), np.float32)
    with pytest.raises(ValueError, match="`mode`"):
        ck._correlate1d(ex, img, [1.0], 0, "grid-wrap", 0.0)
    with pytest.raises(ValueError, match="`axis`"):
        ck._correlate1d(ex, img, [1.0], 2, "reflect", 0.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        ck._correlate1d(ex, img.astype(np.int16), [1.0], 0, "reflect", 0.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        ck._correlate1d(ex, np.ones((6, 5), np.float32).T, [1.0], 0, "reflect", 0.0)
    with pytest.raises(ck.UnsupportedByKernels, match="side"):
        ck._median_filter(ex, img, 7, "reflect", 0.0)
    with pytest.raises(ValueError, match="`size`"):
        ck._extremum_filter1d(ex, img, 0, 0, "reflect", 0.0, True)
    with pytest.raises(ValueError, match="`kind`"):
        ck._gradient_magnitude(ex, img, "scharr", (0, 1), "reflect", 0.0)
    with pytest.raises(ValueError, match="filter-bank filter"):
        ck._filter_bank(ex, img, [("bilateral", {})])
    assert ex.launches == []


def test_launch_arguments_follow_kernel_signatures():
    ex = RecordingExecutor()
    img = np.ones((6, 7, 40), np.float64)
    ck._correlate1d(ex, img, np.ones(5), 2, "wrap", 1.5)
    ck._correlate1d(ex, img, np.ones(5), 1, "wrap", 1.5)
    ck._gradient_magnitude(ex, img, "sobel", (0, 2), "constant", 0.0)
    ck._median_filter(ex, img, 5, "nearest", 0.0)
    line, strided, grad, med = ex.launches
    assert line.key.family == "sep_line" and [type(a) for a in line.args[3:]] == [
        np.int32, np.int32, np.float64]
    assert (int(line.args[3]), int(line.args[4])) == (42, 40)
    assert strided.key.family == "sep_strided"
    assert [int(a) for a in strided.args[3:7]] == [6, 7, 40, 2]
    assert int(grad.args[5]) == 0b101 and float(grad.args[6]) == 2.0
    assert med.key.radius == 2 and med.key.ndim == 3


def test_supports():
    img = np.ones((8, 8, 8), np.float32)
    assert ck.supports("median_filter", img, size=3)
    assert not ck.supports("median_filter", img, size=7)
    assert ck.supports("correlate1d", img, weights=np.ones(129), axis=0)
    assert not ck.supports("correlate1d", np.ones((4,) * 4, np.float32), weights=np.ones(3))
