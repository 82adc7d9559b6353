"""What the IBSI-2 filters share: spatial dims, convolution taps, rotations and pooling.

IBSI-2 (Depeursinge et al., arXiv:2006.05470) defines its filters as *convolutions*;
the engine correlates.  A convolution kernel ``k`` becomes correlation taps by flipping
it; an even-length kernel first gets a zero appended, so that the result is
``scipy.ndimage.convolve1d`` with scipy's centring (the convention of the IBSI-2
reference maps, measured on maps 3_a_1 and 5_a_1).

Rotation invariance over the 90-degree rotations of the grid (24 in 3-D, 4 in 2-D, the
right-handed signed permutations of the axes) and pooling of the responses live here.
"""

from __future__ import annotations

import itertools

import numpy as np

#: how "2D"/"3D" map to the filtered axes of a (z, y, x) volume
DIMS = ("2D", "3D")
POOLINGS = ("max", "mean", "min")


def dims_axes(dims, ndim: int) -> tuple[int, ...]:
    """The filtered axes: "3D" all three of a (z, y, x) volume; "2D" the last two (each
    axial slice on its own, a (y, x) image as a whole)."""
    if dims not in DIMS:
        raise ValueError(f"`dims` must be one of {DIMS}, got {dims!r}")
    if dims == "3D":
        if ndim != 3:
            raise ValueError(f'`dims="3D"` needs a 3-D (z, y, x) image, got {ndim} dimensions')
        return (0, 1, 2)
    if ndim not in (2, 3):
        raise ValueError(f'`dims="2D"` needs a 2-D or 3-D image, got {ndim} dimensions')
    return (ndim - 2, ndim - 1)


def check_pooling(pooling) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}")
    return pooling


def check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {value!r}")
    return bool(value)


def odd_convolution_kernel(kernel) -> np.ndarray:
    """The kernel with a zero appended when its length is even (scipy's centring)."""
    kernel = np.asarray(kernel, dtype=np.float64)
    return np.append(kernel, 0.0) if kernel.size % 2 == 0 else kernel


def dilate(kernel: np.ndarray, factor: int) -> np.ndarray:
    """A trous upsampling of an odd kernel: ``factor - 1`` zeros between taps, same centre."""
    if factor == 1:
        return kernel
    out = np.zeros((kernel.size - 1) * factor + 1)
    out[::factor] = kernel
    return out


def rotations(n: int):
    """The right-handed rotations of the n-D grid by multiples of 90 degrees, as
    ``(permutation, signs)``: output axis ``a`` takes the kernel of axis
    ``permutation[a]``, flipped where ``signs[a]`` is -1.  24 in 3-D, 4 in 2-D."""
    for perm in itertools.permutations(range(n)):
        parity = np.linalg.det(np.eye(n)[list(perm)])
        for signs in itertools.product((1, -1), repeat=n):
            if round(parity * np.prod(signs)) == 1:
                yield perm, signs


def oriented_kernel_sets(kernels: list[np.ndarray], rotation_invariant: bool):
    """Each distinct rotation of a separable set of odd convolution kernels (one per
    filtered axis); one set when ``rotation_invariant`` is False.

    Duplicates (a symmetric kernel, equal kernels on two axes) are dropped: the 24
    rotations form a group, so every distinct set occurs equally often among them and
    the mean over distinct sets is the mean over all rotations.
    """
    if not rotation_invariant:
        return [list(kernels)]
    seen, out = set(), []
    for perm, signs in rotations(len(kernels)):
        oriented = [kernels[p][::s] for p, s in zip(perm, signs)]
        key = tuple(tuple(np.round(k, 15)) for k in oriented)
        if key not in seen:
            seen.add(key)
            out.append(oriented)
    return out


class Pool:
    """Running max/min/mean of responses, keeping one accumulator block."""

    def __init__(self, xp, pooling: str):
        self.xp, self.pooling, self.count, self.value = xp, pooling, 0, None

    def add(self, response):
        self.count += 1
        if self.value is None:
            self.value = response
        elif self.pooling == "max":
            self.xp.maximum(self.value, response, out=self.value)
        elif self.pooling == "min":
            self.xp.minimum(self.value, response, out=self.value)
        else:
            self.value += response

    def result(self):
        if self.pooling == "mean" and self.count > 1:
            self.value /= self.value.dtype.type(self.count)
        return self.value
