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


def run_concurrently(work, inputs, *, rounds: int = 5):
    """Call ``work(x)`` for every input from its own thread, all started together,
    ``rounds`` times; return the last result of each thread (errors are re-raised)."""
    import threading

    results = [None] * len(inputs)
    errors = []
    start = threading.Barrier(len(inputs))

    def run(i):
        try:
            start.wait()
            for _ in range(rounds):
                results[i] = work(inputs[i])
        except Exception as exc:  # noqa: BLE001  (re-raised in the calling thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class _NaNFilledNumPy:
    """NumPy, except that ``empty``/``empty_like`` are filled with NaN.

    A recording executor launches nothing, so the loader's buffers are never written;
    NaN makes them deterministic (uninitialised memory can hold values whose host-side
    arithmetic warns) and makes any output a kernel failed to write fail comparisons.
    """

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float, **kwargs):
        return np.full(shape, np.nan, dtype=dtype, **kwargs)

    @staticmethod
    def empty_like(prototype, dtype=None, **kwargs):
        return np.full_like(prototype, np.nan, dtype=dtype, **kwargs)


class RecordingExecutor:
    """Runs the CUDA loader's orchestration on NumPy arrays, recording launches only
    (no GPU needed): the executor interface of ``medimg_fast.backends._cuda_kernels``."""

    xp = _NaNFilledNumPy()

    def __init__(self):
        self.launches = []

    def device_weights(self, weights, dtype):
        return weights.astype(dtype)

    def copy(self, src, dst):
        np.copyto(dst, src)

    def launch(self, launch):
        self.launches.append(launch)
