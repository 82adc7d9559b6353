"""The backend registry: availability with reasons, auto selection, env override, errors."""

from __future__ import annotations

import numpy as np
import pytest

import medimg_fast as mf
from medimg_fast.backends import (
    BackendUnavailableError,
    UnknownBackendError,
    available_backends,
    resolve_backend,
)


def test_every_backend_reports_availability_and_a_reason_when_unavailable():
    status = available_backends()
    assert set(status) == {"numpy", "numba", "cupy"}
    for name, s in status.items():
        assert s.name == name
        assert s.available or (isinstance(s.reason, str) and s.reason)


def test_cpu_backends_work_here():
    # numpy and numba are core dependencies: both must work on every supported machine.
    status = available_backends()
    assert status["numpy"].available
    assert status["numba"].available, status["numba"].reason


def test_auto_prefers_gpu_then_numba_then_numpy(monkeypatch):
    monkeypatch.delenv("MEDIMG_FAST_BACKEND", raising=False)
    expected = "cupy" if available_backends()["cupy"].available else "numba"
    assert resolve_backend("auto").name == expected


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_environment_variable_overrides_auto(monkeypatch, name):
    monkeypatch.setenv("MEDIMG_FAST_BACKEND", name)
    assert resolve_backend("auto").name == name
    # an explicit argument wins over the environment
    other = "numba" if name == "numpy" else "numpy"
    assert resolve_backend(other).name == other


def test_environment_variable_with_unknown_backend_is_an_error(monkeypatch):
    monkeypatch.setenv("MEDIMG_FAST_BACKEND", "fpga")
    with pytest.raises(UnknownBackendError, match="'fpga'"):
        mf.gaussian_filter(np.ones((3, 3)), 1.0)


def test_unknown_backend_is_a_value_error_listing_the_choices():
    with pytest.raises(ValueError, match=r"one of \['cupy', 'numba', 'numpy'\]"):
        resolve_backend("opencl")


def test_unavailable_backend_is_never_a_silent_fallback():
    status = available_backends()["cupy"]
    if status.available:
        pytest.skip("cupy works here")
    with pytest.raises(BackendUnavailableError) as info:
        resolve_backend("cupy")
    assert "cupy" in str(info.value) and status.reason in str(info.value)
    assert isinstance(info.value, ValueError)
