"""medimg-fast: a high-throughput array engine for medical image analysis.

Filters (scipy.ndimage names) on NumPy, Dask and CuPy arrays with numba/CuPy/SciPy
backends; lazy readers for NIfTI/DICOM/Zarr/TIFF; IBSI radiomics features; scikit-learn
classifiers.  Heavy subpackages (``io``, ``features``, ``archive``, ``classify``) load on
first use, so ``import medimg_fast`` needs only the core dependencies and no CuPy.
"""

from __future__ import annotations

import importlib

from .backends import BackendUnavailableError, available_backends
from .filters import (
    convolve,
    correlate,
    difference_of_gaussians,
    gabor_filter,
    gaussian_filter,
    gaussian_gradient_magnitude,
    gaussian_laplace,
    gradient_magnitude,
    laplace,
    laws_filter,
    maximum_filter,
    median_filter,
    minimum_filter,
    prewitt,
    simoncelli_filter,
    sobel,
    uniform_filter,
    wavelet_filter,
)

__version__ = "0.1.0"

_LAZY = {
    "open_volume": ("medimg_fast.io", "open_volume"),
    "save_volume": ("medimg_fast.io", "save_volume"),
    "Volume": ("medimg_fast.io", "Volume"),
    "extract_features": ("medimg_fast.features", "extract_features"),
    "process_archive": ("medimg_fast.archive", "process_archive"),
}
_SUBMODULES = ("io", "features", "archive", "classify", "filters", "backends", "chunking")

__all__ = [
    "BackendUnavailableError",
    "Volume",
    "__version__",
    "available_backends",
    "convolve",
    "correlate",
    "difference_of_gaussians",
    "extract_features",
    "gabor_filter",
    "gaussian_filter",
    "gaussian_gradient_magnitude",
    "gaussian_laplace",
    "gradient_magnitude",
    "laplace",
    "laws_filter",
    "maximum_filter",
    "median_filter",
    "minimum_filter",
    "open_volume",
    "prewitt",
    "process_archive",
    "save_volume",
    "simoncelli_filter",
    "sobel",
    "uniform_filter",
    "wavelet_filter",
]


def __getattr__(name):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    if name in _SUBMODULES:
        return importlib.import_module(f"medimg_fast.{name}")
    raise AttributeError(f"module 'medimg_fast' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
