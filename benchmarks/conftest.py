"""Benchmark fixtures: seeded, never-constant volumes and GPU synchronisation."""

from __future__ import annotations

import os

import numpy as np
import pytest

#: Edge of the cubic benchmark volume (the issue's figure is 256); override for a quick run.
BENCH_EDGE = int(os.environ.get("MEDIMG_FAST_BENCH_EDGE", "256"))


@pytest.fixture(scope="session")
def volume_f32():
    rng = np.random.default_rng(2024)
    # CT-like values: smooth structure plus noise, never all zeros
    return (rng.normal(40.0, 300.0, size=(BENCH_EDGE,) * 3)).astype(np.float32)
