"""Sampled Gaussian kernels, shared by the filters and the CUDA kernel loader."""

from __future__ import annotations

import numpy as np
from numpy.polynomial import hermite_e


def gaussian_radius(sigma: float, truncate: float) -> int:
    """Half-width of a Gaussian kernel, as scipy.ndimage computes it."""
    return int(truncate * float(sigma) + 0.5)


def gaussian_kernel1d(sigma: float, order: int, radius: int) -> np.ndarray:
    """Correlation weights of a sampled Gaussian (or its ``order``-th derivative).

    Notes
    -----
    The Gaussian ``g(x) = exp(-x^2 / (2 sigma^2))`` is sampled at ``x = -radius..radius``
    and normalised to unit sum.  Its ``n``-th derivative is
    ``(-1/sigma)^n He_n(x/sigma) g(x)`` with ``He_n`` the probabilists' Hermite
    polynomial.  The weights are returned in correlation order (reversed), so that
    correlating with them convolves with the derivative, as scipy.ndimage does.
    """
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * (x / sigma) ** 2)
    phi /= phi.sum()
    if order:
        coefficients = np.zeros(order + 1)
        coefficients[order] = 1.0
        phi = phi * (-1.0 / sigma) ** order * hermite_e.hermeval(x / sigma, coefficients)
    return phi[::-1].copy()
