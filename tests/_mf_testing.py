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


def nonzero_image(shape, dtype, seed):
    """Random values in +-[0.5, 1.5]: never zero, mixed signs, so an output a kernel did
    not write (zero-initialised memory) cannot pass a comparison."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)).astype(dtype)


def draw_interior_block(draw, shape, halo):
    """Hypothesis: a sub-block ``[(lo, hi), ...]`` of ``shape`` whose ``halo`` (``(before,
    after)`` per axis) lies inside the array; examples where none fits are rejected."""
    from hypothesis import assume
    from hypothesis import strategies as st

    block = []
    for n, (before, after) in zip(shape, halo):
        assume(n - before - after >= 1)
        lo = draw(st.integers(before, n - after - 1))
        hi = draw(st.integers(lo + 1, n - after))
        block.append((lo, hi))
    return block


def padded_and_interior(full, block, halo):
    """``(block of full with its halo, the slices of the block inside it)``."""
    padded = full[tuple(slice(lo - b, hi + a) for (lo, hi), (b, a) in zip(block, halo))]
    interior = tuple(slice(b, b + hi - lo) for (lo, hi), (b, _) in zip(block, halo))
    return padded, interior


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


#: IBSI-2's 1-D Laws kernels as the manual lists them (not normalised).
LAWS_1D = {"L3": [1, 2, 1], "E3": [-1, 0, 1], "S3": [-1, 2, -1], "L5": [1, 4, 6, 4, 1],
           "E5": [-1, -2, 0, 2, 1], "S5": [-1, 0, 2, 0, -1], "W5": [-1, 2, 0, -2, 1],
           "R5": [1, -4, 6, -4, 1]}


def laws_outer(name):
    """The N-D Laws kernel in array order (z, y, x) from a name listed x first: the
    explicit outer product of the 1-D kernels, each of unit L2 norm."""
    names = [name[i:i + 2] for i in range(0, len(name), 2)][::-1]
    out = np.ones(())
    for n in names:
        v = np.array(LAWS_1D[n], float)
        out = np.multiply.outer(out, v / np.linalg.norm(v))
    return out


def rotations_90(kernel):
    """The 24 (3-D) or 4 (2-D) proper 90-degree rotations of an array: compositions of
    np.rot90 over the coordinate planes, told apart by their action on a probe array
    that no rotation but the identity leaves unchanged."""
    planes = [(0, 1), (1, 2)] if kernel.ndim == 3 else [(0, 1)]
    probe = np.arange(24.0).reshape((2, 3, 4) if kernel.ndim == 3 else (4, 6))
    found = {(probe.shape, probe.tobytes()): kernel}
    frontier = [(probe, kernel)]
    while frontier:
        nxt = []
        for p0, k0 in frontier:
            for axes in planes:
                p1, k1 = np.rot90(p0, axes=axes), np.rot90(k0, axes=axes)
                key = (p1.shape, np.ascontiguousarray(p1).tobytes())
                if key not in found:
                    found[key] = np.ascontiguousarray(k1)
                    nxt.append((p1, k1))
        frontier = nxt
    return list(found.values())
