"""Fixtures shared by the whole suite."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_fast import available_backends


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


