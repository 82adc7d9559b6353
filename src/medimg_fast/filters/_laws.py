"""Laws texture kernels and texture energy (IBSI-2 section on Laws kernels)."""

from __future__ import annotations

import numbers

import numpy as np

from ._dispatch import apply_filter, as_array, common_options
from ._orientations import (
    Pool,
    check_flag,
    check_pooling,
    dims_axes,
    oriented_kernel_sets,
)

_LAWS_1D = {
    "L3": [1.0, 2.0, 1.0],
    "E3": [-1.0, 0.0, 1.0],
    "S3": [-1.0, 2.0, -1.0],
    "L5": [1.0, 4.0, 6.0, 4.0, 1.0],
    "E5": [-1.0, -2.0, 0.0, 2.0, 1.0],
    "S5": [-1.0, 0.0, 2.0, 0.0, -1.0],
    "W5": [-1.0, 2.0, 0.0, -2.0, 1.0],
    "R5": [1.0, -4.0, 6.0, -4.0, 1.0],
}


def laws_kernel1d(name: str) -> np.ndarray:
    """One of the 1-D Laws kernels L3 E3 S3 L5 E5 S5 W5 R5, scaled to unit L2 norm (IBSI-2).

    Examples
    --------
    >>> from medimg_fast.filters import laws_kernel1d
    >>> round(float((laws_kernel1d("E5") ** 2).sum()), 12)
    1.0
    """
    if not isinstance(name, str) or name.upper() not in _LAWS_1D:
        raise ValueError(f"a Laws kernel must be one of {sorted(_LAWS_1D)}, got {name!r}")
    k = np.array(_LAWS_1D[name.upper()])
    return k / np.sqrt((k * k).sum())


def parse_laws_kernel(kernel, n_axes: int) -> list[np.ndarray]:
    """The 1-D kernels of a name such as "E5L5S5" per filtered axis in array order.

    The name lists the kernels along x, y, z (IBSI and NIfTI order), i.e. the last,
    middle and first axis of a (z, y, x) array.
    """
    if not isinstance(kernel, str) or len(kernel) != 2 * n_axes:
        raise ValueError(f"`kernel` must name {n_axes} 1-D Laws kernels (x first, e.g. "
                         f"{'E5L5S5'[:2 * n_axes]!r}), got {kernel!r}")
    names = [kernel[i:i + 2] for i in range(0, len(kernel), 2)]
    for name in names:
        if name.upper() not in _LAWS_1D:
            raise ValueError(f"`kernel` {kernel!r}: {name!r} is not a Laws kernel; "
                             f"known: {sorted(_LAWS_1D)}")
    return [laws_kernel1d(n) for n in reversed(names)]


def laws_depth(kernel, energy, delta, dims, ndim, rotation_invariant=False):
    """The halo of :func:`laws_filter`: kernel radius (the longest kernel's on every axis
    when rotations move kernels between axes), plus ``delta`` for the energy map."""
    axes = dims_axes(dims, ndim)
    radii = [k.size // 2 for k in parse_laws_kernel(kernel, len(axes))]
    if rotation_invariant:
        radii = [max(radii)] * len(radii)
    depth = [0] * ndim
    for a, r in zip(axes, radii):
        depth[a] = r + (int(delta) if energy else 0)
    return tuple(depth)


def _signed_kernel_sets(sets):
    """Group kernel sets equal up to the sign of their product: the 24 rotations of an
    antisymmetric kernel (E5, W5, E3) include its flip, ``-k``, whose response is the
    negated response, so one correlation serves both (halving the 3-D passes of E5L5S5).
    Returns ``[(kernels, signs)]``: the response of ``kernels`` enters the pool once per
    sign, negated for -1 (a pair is max-pooled as ``|r|``)."""
    groups = {}
    for ks in sets:
        canonical, sign = [], 1.0
        for k in ks:
            first = k[np.flatnonzero(np.round(k, 15))[0]]
            canonical.append(k if first > 0 else -k)
            sign *= 1.0 if first > 0 else -1.0
        key = tuple(tuple(np.round(k, 15)) for k in canonical)
        groups.setdefault(key, (canonical, []))[1].append(sign)
    return list(groups.values())


def _fused_tree(pass_sets, n_axes):
    """The permutation responses of ``pass_sets`` as the tree of the fused numba sweep:
    ``(z_kernels, pairs, groups)`` (see :func:`medimg_fast.backends._numba_laws.laws_pool`),
    or None when a kernel is not a 3- or 5-tap (anti)symmetric Laws kernel."""
    def key(k):
        return tuple(np.round(k, 15))

    z_kernels, pairs, groups = [], [], []
    z_index, pair_index = {}, {}
    for passes, signs in pass_sets:
        ks = [k for _, k in passes]
        for k in ks:
            c = k.size // 2
            if k.size not in (3, 5) or not (np.array_equal(k[:c], k[::-1][:c])
                                             or np.array_equal(k[:c], -k[::-1][:c])):
                return None
        kz = ks[0] if n_axes == 3 else np.ones(1)
        ky, kx = ks[-2], ks[-1]
        zi = z_index.setdefault(key(kz), len(z_kernels))
        if zi == len(z_kernels):
            z_kernels.append(kz)
        pi = pair_index.setdefault((zi, key(ky)), len(pairs))
        if pi == len(pairs):
            pairs.append((zi, ky))
        groups.append((pi, kx, [int(s) for s in signs]))
    return z_kernels, pairs, groups


def _numba_laws_op(engine, block, fused, has_z, pooling, count, energy, box, mode, cval):
    """The fused numba sweep: pooled response (its ``|.|`` for the energy map), then
    the energy box (the backend's fused separable sweep, as on the generic path)."""
    from .._shared.boundary import MODE_CODES
    from ..backends import _numba_laws

    z_kernels, pairs, groups = fused
    code = {"max": _numba_laws.POOL_MAX, "min": _numba_laws.POOL_MIN,
            "mean": _numba_laws.POOL_MEAN}[pooling]
    response = _numba_laws.laws_pool(block, has_z, z_kernels, pairs, groups, code, count,
                                     energy, MODE_CODES[mode], cval)
    if not energy or not box:
        return response
    return engine.correlate_separable(response, box, mode, cval)


def _check_delta(delta) -> int:
    if isinstance(delta, bool) or not isinstance(delta, numbers.Integral) or delta < 0:
        raise ValueError(f"`delta` must be a non-negative integer, got {delta!r}")
    return int(delta)


def laws_filter(image, kernel="E5L5S5", *, energy=False, delta=7, rotation_invariant=False,
                pooling="max", mode="reflect", cval=0.0, dims="3D", backend="auto"):
    """Laws texture filter: a separable product of 1-D Laws kernels, or its energy map.

    Parameters
    ----------
    image : array (NumPy, Dask or CuPy)
        A (z, y, x) volume (or a (y, x) image with ``dims="2D"``).
    kernel : str
        1-D kernels along x, y (and z), e.g. ``"E5L5S5"``: E5 along x (last axis),
        L5 along y, S5 along z (first axis). Kernels: L3 E3 S3 L5 E5 S5 W5 R5.
    energy : bool, optional
        Return the texture energy map: the mean of ``|response|`` over a
        ``(2 delta + 1)`` box per filtered axis.
    delta : int, optional
        Chebyshev radius of the energy window in voxels.
    rotation_invariant : bool, optional
        Pool the responses of the kernel rotated by every right-handed 90-degree
        rotation of the grid (24 in 3-D, 4 in 2-D).
    pooling : {"max", "mean", "min"}, optional
        How rotated responses are pooled.
    mode, cval, backend
        As :func:`medimg_fast.gaussian_filter`; ``mode`` also extends the response for
        the energy window.
    dims : {"3D", "2D"}, optional
        "2D" filters each axial (y, x) slice on its own.

    Returns
    -------
    array
        Same kind as ``image``; float32 (float64 for float64 input).

    Notes
    -----
    IBSI-2: each 1-D kernel is scaled to unit L2 norm; the response is the
    *convolution* of the image with the outer product of the kernels
    (``scipy.ndimage.convolve``), computed as one 1-D pass per axis.  With rotation
    invariance the rotated responses are pooled first, and the energy map is computed
    from the pooled response (the order of IBSI-2 and its reference map 3_a_3).

    Every rotated response is +-1 times one of at most 6 (2 in 2-D) axis permutations of
    the separable kernel, since a flipped Laws kernel is itself or its negation; those
    are computed once each, and with the numba backend in one sweep that shares the
    first passes between permutations and pools as it goes (bit-identical to pooling
    the separate responses).

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast.filters import laws_filter
    >>> image = np.zeros((7, 7, 7)); image[3, 3, 3] = 1.0
    >>> out = laws_filter(image, "L3L3L3", mode="constant", backend="numpy")
    >>> round(float(out[3, 3, 3]), 4)  # (2 / sqrt(6)) ** 3
    0.5443
    """
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    energy = check_flag(energy, "energy")
    rotation_invariant = check_flag(rotation_invariant, "rotation_invariant")
    pooling = check_pooling(pooling)
    delta = _check_delta(delta)
    axes = dims_axes(dims, image.ndim)
    kernels = parse_laws_kernel(kernel, len(axes))
    sets = _signed_kernel_sets(oriented_kernel_sets(kernels, rotation_invariant))
    # convolution = correlation with the flipped (odd) kernels
    pass_sets = [([(a, k[::-1].copy()) for a, k in zip(axes, ks)], signs)
                 for ks, signs in sets]
    box = [(a, np.full(2 * delta + 1, 1.0 / (2 * delta + 1))) for a in axes] if delta else []
    depth = laws_depth(kernel, energy, delta, dims, image.ndim, rotation_invariant)

    count = sum(len(signs) for _, signs in sets)
    # one kernel set is one separable sweep, which the generic path already runs fused
    # (measured faster than the pooling sweep for it)
    fused = _fused_tree(pass_sets, len(axes)) if len(pass_sets) > 1 else None

    def op(engine, block):
        if engine.name == "numba" and fused is not None and block.ndim in (2, 3):
            return _numba_laws_op(engine, block, fused, len(axes) == 3, pooling, count,
                                  energy, box, mode, cval)
        xp = engine.xp
        pool = Pool(xp, pooling)
        for passes, signs in pass_sets:
            r = engine.correlate_separable(block, passes, mode, cval)
            if len(signs) == 2 and pooling != "mean":
                # the pooled pair {r, -r}: max |r|, min -|r|
                r = xp.abs(r, out=r)
                pool.add(r if pooling == "max" else xp.negative(r, out=r))
            else:
                for sign in signs:
                    pool.add(r if sign > 0 else -r)
        response = pool.result()
        if not energy:
            return response
        response = engine.xp.abs(response, out=response)
        return engine.correlate_separable(response, box, mode, cval) if box else response

    return apply_filter(image, op, depth, mode=mode, backend=backend)
