"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings

from medimg_fast import available_backends

# CI replays the same examples every run (a red build then always means a change, not a
# newly drawn example); local runs keep drawing fresh ones.  `HYPOTHESIS_PROFILE` overrides.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def _gpu_ready() -> bool:
    return available_backends()["cupy"].available


def pytest_collection_modifyitems(config, items):
    if _gpu_ready():
        return
    reason = available_backends()["cupy"].reason
    skip = pytest.mark.skip(reason=f"needs a CUDA device: {reason}")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


