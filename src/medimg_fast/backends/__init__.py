"""Backend registry: one name, one object with the primitives of :class:`Backend`.

``numpy``  scipy.ndimage on the CPU, the reference and the fallback that always works.
``numba``  numba-compiled CPU kernels, parallel over cores.
``cupy``   CuPy on a CUDA GPU (optional extra ``gpu``).

``backend="auto"`` picks cupy when a CUDA device works, else numba, else numpy; the
environment variable ``MEDIMG_FAST_BACKEND`` overrides that choice.  Asking for a
backend that cannot run raises :class:`BackendUnavailableError` with the reason: there
is never a silent fallback.
"""

from __future__ import annotations

import functools
import os

from ._base import Backend, BackendStatus
from ._cupy import CupyBackend
from ._numba import NumbaBackend
from ._numpy import NumpyBackend

__all__ = [
    "AUTO_ORDER",
    "ENV_VAR",
    "Backend",
    "BackendStatus",
    "BackendUnavailableError",
    "UnknownBackendError",
    "available_backends",
    "get_backend",
    "resolve_backend",
]

ENV_VAR = "MEDIMG_FAST_BACKEND"
#: The order in which ``backend="auto"`` tries backends.
AUTO_ORDER = ("cupy", "numba", "numpy")

_REGISTRY: dict[str, Backend] = {
    b.name: b for b in (NumpyBackend(), NumbaBackend(), CupyBackend())
}


class UnknownBackendError(ValueError):
    """A backend name that is not registered."""


class BackendUnavailableError(ValueError):
    """A registered backend that cannot run on this machine; the message says why."""


@functools.cache
def _status(name: str) -> BackendStatus:
    reason = _REGISTRY[name].probe()
    return BackendStatus(name, reason is None, reason)


def available_backends() -> dict[str, BackendStatus]:
    """Each registered backend and whether it works here (and if not, why).

    Examples
    --------
    >>> status = available_backends()
    >>> status["numpy"].available
    True
    """
    return {name: _status(name) for name in _REGISTRY}


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``; raises if unknown or not usable here."""
    if not isinstance(name, str):
        raise TypeError(f"`backend` must be a string, got {name!r}")
    if name not in _REGISTRY:
        raise UnknownBackendError(
            f"`backend` must be one of {sorted(_REGISTRY)} or 'auto', got {name!r}"
        )
    status = _status(name)
    if not status.available:
        raise BackendUnavailableError(f"backend {name!r} cannot run here: {status.reason}")
    return _REGISTRY[name]


def resolve_backend(name: str = "auto", *, on_gpu: bool | None = None) -> Backend:
    """Resolve ``"auto"`` (or an explicit name) to a usable backend.

    ``on_gpu`` is the kind of array being filtered, when known: CuPy arrays need the
    ``cupy`` backend and NumPy arrays a CPU backend unless ``cupy`` is asked for
    explicitly (then chunks are moved to the device and back).
    """
    if name is None:
        name = "auto"
    if name == "auto":
        env = os.environ.get(ENV_VAR, "").strip()
        if env and env != "auto":
            name = env
    if name == "auto":
        if on_gpu:
            return get_backend("cupy")
        for candidate in AUTO_ORDER:
            if _status(candidate).available:
                return _REGISTRY[candidate]
        raise BackendUnavailableError("no backend is available")  # numpy always is
    backend = get_backend(name)
    if on_gpu and not backend.on_gpu:
        raise ValueError(
            f"the image is a CuPy (GPU) array but `backend` is {name!r}, a CPU backend; "
            "use backend='cupy' or move the array to the host with cupy.asnumpy()"
        )
    return backend
