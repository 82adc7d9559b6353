"""N-D image filters with scipy.ndimage's names and meanings, on every backend.

Every filter takes a NumPy, Dask or CuPy array and returns the same kind; Dask inputs
are filtered chunk by chunk with halos and give exactly the unchunked result.  Output
dtype: float64 for float64 input, float32 for everything else.

The IBSI-2 convolutional filters (Laws, Gabor, separable and Simoncelli wavelets) follow
the IBSI-2 reference manual (Depeursinge et al., arXiv:2006.05470); their options
``dims="2D"`` filter each axial (y, x) slice of a (z, y, x) volume on its own.
"""

from ._correlate import convolve, correlate
from ._edges import gradient_magnitude, laplace, prewitt, sobel
from ._gabor import gabor_filter, gabor_kernel
from ._gaussian import (
    difference_of_gaussians,
    gaussian_filter,
    gaussian_gradient_magnitude,
    gaussian_kernel1d,
    gaussian_laplace,
)
from ._laws import laws_filter, laws_kernel1d
from ._rank import maximum_filter, median_filter, minimum_filter, uniform_filter
from ._riesz import riesz_transform
from ._wavelet import simoncelli_filter, wavelet_filter

__all__ = [
    "convolve",
    "correlate",
    "difference_of_gaussians",
    "gabor_filter",
    "gabor_kernel",
    "gaussian_filter",
    "gaussian_gradient_magnitude",
    "gaussian_kernel1d",
    "gaussian_laplace",
    "gradient_magnitude",
    "laplace",
    "laws_filter",
    "laws_kernel1d",
    "maximum_filter",
    "median_filter",
    "minimum_filter",
    "prewitt",
    "riesz_transform",
    "simoncelli_filter",
    "sobel",
    "uniform_filter",
    "wavelet_filter",
]
