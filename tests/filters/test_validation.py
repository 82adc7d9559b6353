"""Bad arguments fail early with ValueError/TypeError naming the parameter and value."""

from __future__ import annotations

import numpy as np
import pytest

import medimg_fast as mf

IMAGE = np.ones((6, 7), dtype=np.float32)


@pytest.mark.parametrize("call,error,match", [
    (lambda: mf.gaussian_filter(IMAGE, -1.0), ValueError, r"`sigma` must be non-negative, got -1\.0"),
    (lambda: mf.gaussian_filter(IMAGE, [1.0, 2.0, 3.0]), ValueError, r"`sigma`.*2.*got 3 values"),
    (lambda: mf.gaussian_filter(IMAGE, "big"), TypeError, r"`sigma`.*'big'"),
    (lambda: mf.gaussian_filter(IMAGE, float("nan")), ValueError, r"`sigma` must be finite"),
    (lambda: mf.gaussian_filter(IMAGE, [1.0, float("inf")]), ValueError, r"`sigma` must be finite"),
    (lambda: mf.gaussian_filter(IMAGE, np.float32("nan")), ValueError, r"`sigma` must be finite"),
    (lambda: mf.gaussian_filter(IMAGE, True), TypeError, r"`sigma` must contain Real values"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, radius=2.0), TypeError, r"`radius`.*Integral"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, radius=True), TypeError, r"`radius`.*Integral"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, order=-1), ValueError, r"`order`.*-1"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, order=0.5), TypeError, r"`order`"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, mode="edge"), ValueError, r"`mode`.*'edge'"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, mode=3), TypeError, r"`mode`.*3"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, cval="x"), TypeError, r"`cval`.*'x'"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, truncate=0), ValueError, r"`truncate`.*0"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, axes=(0, 0)), ValueError, r"`axes`.*repeat"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, axes=5), ValueError, r"`axes` entry 5"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, spacing=(1.0, 0.0)), ValueError, r"`spacing` must be positive"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, spacing=(1.0, 1.0, 1.0, 1.0)), ValueError, r"`spacing`"),
    (lambda: mf.gaussian_filter(np.float32(3.0), 1.0), ValueError, r"`image` must have at least one dimension"),
    (lambda: mf.gaussian_filter(np.ones((0, 4)), 1.0), ValueError, r"`image` must not be empty.*\(0, 4\)"),
    (lambda: mf.gaussian_filter(np.array([["a"]]), 1.0), TypeError, r"`image`.*dtype <U1"),
    (lambda: mf.gaussian_filter(np.ones(3, dtype=complex), 1.0), TypeError, r"`image`.*complex128"),
    (lambda: mf.gaussian_filter("not an image", 1.0), TypeError, r"`image`.*str"),
    (lambda: mf.uniform_filter(IMAGE, 0), ValueError, r"`size` must be positive, got 0"),
    (lambda: mf.uniform_filter(IMAGE, 2.5), TypeError, r"`size`.*2\.5"),
    (lambda: mf.median_filter(IMAGE), ValueError, r"`size` or `footprint`"),
    (lambda: mf.median_filter(IMAGE, size=3, footprint=np.ones((3, 3))), ValueError, r"not both"),
    (lambda: mf.median_filter(IMAGE, footprint=np.ones((3, 3, 3), bool)), ValueError,
     r"`footprint` must have 2 dimensions.*\(3, 3, 3\)"),
    (lambda: mf.maximum_filter(IMAGE, footprint=np.zeros((3, 3), bool)), ValueError, r"`footprint`.*True"),
    (lambda: mf.correlate(IMAGE, np.ones(3)), ValueError, r"`weights` must have 2 dimensions.*\(3,\)"),
    (lambda: mf.correlate(IMAGE, np.full((3, 3), np.inf)), ValueError, r"`weights` must be finite"),
    (lambda: mf.sobel(IMAGE, axis=2), ValueError, r"`axis` 2"),
    (lambda: mf.sobel(IMAGE, axis=0, axes=(1,)), ValueError, r"`axis` 0.*`axes`"),
    (lambda: mf.difference_of_gaussians(IMAGE, 2.0, 1.0), ValueError, r"`high_sigma` must be >= `low_sigma`"),
    (lambda: mf.gaussian_filter(IMAGE, 1.0, backend="tpu"), ValueError, r"`backend`.*'tpu'"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_unavailable_backend_names_itself_and_the_reason():
    status = mf.available_backends()["cupy"]
    if status.available:
        pytest.skip("cupy works on this machine")
    with pytest.raises(mf.BackendUnavailableError, match=r"'cupy' cannot run here: .+"):
        mf.gaussian_filter(IMAGE, 1.0, backend="cupy")


def test_gaussian_weights_are_shared_read_only():
    """The passes' weights are built once and shared between calls (``_pass_weights``):
    a caller that tries to change them gets an error instead of changing later calls."""
    from medimg_fast.filters._gaussian import gaussian_passes

    (_axis, weights), *_ = gaussian_passes(2, 1.5, 0, 4.0, None, None)[0]
    assert weights is gaussian_passes(2, 1.5, 0, 4.0, None, None)[0][0][1]
    with pytest.raises(ValueError, match="read-only"):
        weights[0] = 1.0
