"""Helpers shared by test modules (imported as ``_mf_testing``; tests/ is on sys.path)."""

from __future__ import annotations

import numpy as np
import pytest

#: Backends whose tests run on the CPU of every machine (numba is a core dependency).
CPU_BACKENDS = ("numpy", "numba")


def backends_to_test():
    """CPU backends always (a broken one fails its test), cupy only with a GPU (marked)."""
    params = [pytest.param(name, id=name) for name in CPU_BACKENDS]
    params.append(pytest.param("cupy", id="cupy", marks=pytest.mark.gpu))
    return params


def to_host(array):
    """NumPy copy of a NumPy, CuPy or (computed) Dask result."""
    if hasattr(array, "compute"):
        array = array.compute()
    if hasattr(array, "get"):
        array = array.get()
    return np.asarray(array)
