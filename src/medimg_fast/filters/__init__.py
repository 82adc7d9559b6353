"""N-D image filters with scipy.ndimage's names and meanings, on every backend.

Every filter takes a NumPy, Dask or CuPy array and returns the same kind; Dask inputs
are filtered chunk by chunk with halos and give exactly the unchunked result.  Output
dtype: float64 for float64 input, float32 for everything else.
"""

from ._correlate import convolve, correlate
from ._edges import gradient_magnitude, laplace, prewitt, sobel
from ._gaussian import (
    difference_of_gaussians,
    gaussian_filter,
    gaussian_gradient_magnitude,
    gaussian_kernel1d,
    gaussian_laplace,
)
from ._rank import maximum_filter, median_filter, minimum_filter, uniform_filter

__all__ = [
    "convolve",
    "correlate",
    "difference_of_gaussians",
    "gaussian_filter",
    "gaussian_gradient_magnitude",
    "gaussian_kernel1d",
    "gaussian_laplace",
    "gradient_magnitude",
    "laplace",
    "maximum_filter",
    "median_filter",
    "minimum_filter",
    "prewitt",
    "sobel",
    "uniform_filter",
]
