"""Gabor filters in the image plane (IBSI-2 section on Gabor filters)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._shared.utils import check_truncate, per_axis
from ._dispatch import apply_filter, array_kind, as_array, common_options
from ._orientations import Pool, check_flag, check_pooling, dims_axes

RESPONSES = ("modulus", "real", "imaginary")


def _positive(value, name: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"`{name}` must be a positive number, got {value!r}")
    return float(value)


def _angle(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number of degrees, got {value!r}")
    return float(value)


def gabor_kernel(sigma_mm, lambda_mm, gamma, theta_deg, *, spacing=1.0, truncate=4.0):
    """The complex IBSI-2 Gabor kernel on a (rows, columns) = (y, x) grid.

    Parameters
    ----------
    sigma_mm : float
        Standard deviation of the Gaussian envelope along the wave, in mm.
    lambda_mm : float
        Wavelength of the complex sinusoid, in mm.
    gamma : float
        Spatial aspect ratio: the envelope's standard deviation across the wave is
        ``sigma_mm / gamma``.
    theta_deg : float
        Orientation of the wave in degrees, from the x axis (columns) towards the y axis
        (rows, which point down the image), as :func:`skimage.filters.gabor_kernel`.
    spacing : float or (float, float), optional
        Pixel size in mm along (y, x).
    truncate : float, optional
        Half-extent in envelope standard deviations: the kernel covers the bounding box
        of the ellipse at ``truncate`` standard deviations (outside it the envelope is
        below ``exp(-truncate**2 / 2)``).

    Returns
    -------
    numpy.ndarray of complex128, odd shape (rows, columns)

    Notes
    -----
    ``h(x, y) = exp(-(u**2 + gamma**2 v**2) / (2 sigma**2)) exp(2j pi u / lambda)`` with
    ``u = x cos(theta) + y sin(theta)`` and ``v = -x sin(theta) + y cos(theta)`` in mm.
    Unnormalised, as IBSI-2 (its reference map 4_a_1 of an impulse of 255 peaks at 255):
    :func:`skimage.filters.gabor_kernel` with ``sigma_x = sigma``,
    ``sigma_y = sigma / gamma`` and ``frequency = 1 / lambda`` (in pixels) is this kernel
    times ``1 / (2 pi sigma_x sigma_y)``, on a box of its own size (scikit-image's box,
    ``max`` instead of ``hypot`` of the two terms, can cut the rotated ellipse short).

    Examples
    --------
    >>> from medimg_fast.filters import gabor_kernel
    >>> k = gabor_kernel(2.0, 4.0, 1.0, 0.0)
    >>> k.shape, complex(k[k.shape[0] // 2, k.shape[1] // 2])
    ((17, 17), (1+0j))
    """
    sigma = _positive(sigma_mm, "sigma_mm")
    wavelength = _positive(lambda_mm, "lambda_mm")
    gamma = _positive(gamma, "gamma")
    theta = math.radians(_angle(theta_deg, "theta_deg"))
    truncate = check_truncate(truncate)
    sy, sx = per_axis(spacing, 2, "spacing", allow_zero=False)
    sigma_u, sigma_v = sigma, sigma / gamma
    c, s = math.cos(theta), math.sin(theta)
    # half-widths of the bounding box of the ellipse at `truncate` standard deviations
    x0 = max(math.ceil(truncate * math.hypot(sigma_u * c, sigma_v * s) / sx - 1e-9), 1)
    y0 = max(math.ceil(truncate * math.hypot(sigma_u * s, sigma_v * c) / sy - 1e-9), 1)
    y, x = np.mgrid[-y0:y0 + 1, -x0:x0 + 1].astype(np.float64)
    x *= sx
    y *= sy
    u = x * c + y * s
    v = -x * s + y * c
    envelope = np.exp(-(u * u + gamma * gamma * v * v) / (2.0 * sigma * sigma))
    return envelope * np.exp(2j * np.pi * u / wavelength)


def _planes(dims, ndim):
    """(row axis, column axis) of each plane filtered: the axial plane, or all three."""
    axes = dims_axes(dims, ndim)
    if dims == "2D":
        return [axes]
    return [(1, 2), (0, 2), (0, 1)]


def _thetas(theta_deg, rotation_invariant, theta_step_deg):
    theta = _angle(theta_deg, "theta_deg")
    if not rotation_invariant:
        if theta_step_deg is not None:
            raise ValueError(f"`theta_step_deg` applies with rotation_invariant=True only, "
                             f"got theta_step_deg={theta_step_deg!r}")
        return [theta]
    if theta_step_deg is None:
        raise ValueError("rotation_invariant=True needs `theta_step_deg`, got None")
    step = _positive(theta_step_deg, "theta_step_deg")
    if step > 360:
        raise ValueError(f"`theta_step_deg` must be at most 360, got {theta_step_deg!r}")
    n = math.floor(360.0 / step + 1e-9)
    return [theta + k * step for k in range(n)]


def _image_spacing(spacing, ndim):
    if spacing is None:
        return (1.0,) * ndim
    return per_axis(spacing, ndim, "spacing", allow_zero=False)


def gabor_plan(image_ndim, sigma_mm, lambda_mm, gamma, theta_deg, spacing, rotation_invariant,
               theta_step_deg, dims, truncate):
    """The correlation weights (real, imaginary) of every plane and angle, and the halo."""
    spacing = _image_spacing(spacing, image_ndim)
    thetas = _thetas(theta_deg, rotation_invariant, theta_step_deg)
    depth = [0] * image_ndim
    weights = []
    for rows, cols in _planes(dims, image_ndim):
        for theta in thetas:
            k = gabor_kernel(sigma_mm, lambda_mm, gamma, theta,
                             spacing=(spacing[rows], spacing[cols]), truncate=truncate)
            k = k[::-1, ::-1]  # convolution = correlation with the flipped kernel
            shape = [1] * image_ndim
            shape[rows], shape[cols] = k.shape
            weights.append((np.ascontiguousarray(k.real).reshape(shape),
                            np.ascontiguousarray(k.imag).reshape(shape)))
            depth[rows] = max(depth[rows], k.shape[0] // 2)
            depth[cols] = max(depth[cols], k.shape[1] // 2)
    return weights, tuple(depth)


def gabor_filter(image, *, sigma_mm, lambda_mm, gamma, theta_deg, spacing=None,
                 response="modulus", rotation_invariant=False, theta_step_deg=None,
                 pooling="mean", mode="reflect", cval=0.0, dims="2D", truncate=4.0,
                 backend="auto"):
    """Gabor filter response in the axial plane (or pooled over the three orthogonal planes).

    Parameters
    ----------
    image : array (NumPy, Dask or CuPy)
        A (z, y, x) volume or a (y, x) image.
    sigma_mm, lambda_mm, gamma, theta_deg, truncate
        The kernel, as :func:`gabor_kernel`.
    spacing : float or sequence of float, optional
        Voxel size in mm per image axis (default 1 mm).
    response : {"modulus", "real", "imaginary"}, optional
        Which part of the complex response is returned.
    rotation_invariant : bool, optional
        Pool over the orientations ``theta_deg + k * theta_step_deg`` covering 360 degrees.
    theta_step_deg : float, optional
        Orientation step; required with ``rotation_invariant``.
    pooling : {"mean", "max", "min"}, optional
        How responses of several orientations or planes are pooled.
    mode, cval, backend
        As :func:`medimg_fast.gaussian_filter`.
    dims : {"2D", "3D"}, optional
        "2D": the kernel acts in each axial (y, x) slice.  "3D": responses in the three
        orthogonal planes (y, x), (z, x), (z, y), with the first axis of each plane as
        the kernel's rows, pooled (IBSI-2's 3-D Gabor).

    Returns
    -------
    array
        Same kind as ``image``; float32 (float64 for float64 input).

    Notes
    -----
    The complex response is the 2-D convolution of each plane with :func:`gabor_kernel`
    (real and imaginary parts as two real correlations with the flipped kernel); the
    chosen part is taken per orientation and plane, then pooled.  The kernel of
    ``theta + 180`` is the conjugate of that of ``theta``, so its response is the
    conjugate response and is not computed again.

    Kernels of at least ``FFT_MIN_TAPS`` (1024) taps, such as IBSI-2's sigma of 5
    voxels, are applied in the Fourier domain: each plane is extended by the largest
    kernel radius with ``mode``, transformed once, and each orientation costs one
    product and one inverse transform (single precision for float32 input, so the
    response agrees with the direct sum to about 1e-6 of its range).  A Dask input is
    then rechunked to whole planes (``"2D"``: the z chunks stay; ``"3D"``: one block), so
    every block is transformed as the unchunked array would be and the result is the
    same, voxel for voxel.

    Examples
    --------
    >>> import numpy as np
    >>> from medimg_fast.filters import gabor_filter
    >>> image = np.zeros((1, 21, 21)); image[0, 10, 10] = 1.0
    >>> out = gabor_filter(image, sigma_mm=2.0, lambda_mm=4.0, gamma=1.0, theta_deg=0.0,
    ...                    mode="constant", backend="numpy")
    >>> round(float(out[0, 10, 10]), 6)
    1.0
    """
    image = as_array(image)
    mode, cval = common_options(mode, cval)
    if response not in RESPONSES:
        raise ValueError(f"`response` must be one of {RESPONSES}, got {response!r}")
    rotation_invariant = check_flag(rotation_invariant, "rotation_invariant")
    pooling = check_pooling(pooling)
    weights, depth = gabor_plan(image.ndim, sigma_mm, lambda_mm, gamma, theta_deg, spacing,
                                rotation_invariant, theta_step_deg, dims, truncate)
    planes = [(rows, cols) for rows, cols in _planes(dims, image.ndim)
              for _ in range(len(weights) // len(_planes(dims, image.ndim)))]
    terms = _conjugate_pairs(weights)
    use_fft = max(w[0].size for w in weights) >= FFT_MIN_TAPS

    def part(xp, real, imag, negate_imag):
        if response == "real":
            return real
        if response == "imaginary":
            return -imag if negate_imag else imag
        return xp.hypot(real, imag)

    def op_direct(engine, block):
        xp = engine.xp
        pool = Pool(xp, pooling)
        cache = {}
        for j, (real_w, imag_w) in enumerate(weights):
            source, negate = terms[j]
            if source != j:  # theta + 180: the conjugate kernel, the conjugate response
                pool.add(part(xp, *cache[source], negate))
                continue
            real = engine.correlate(block, real_w, mode, cval) if response != "imaginary" \
                else None
            imag = engine.correlate(block, imag_w, mode, cval) if response != "real" else None
            cache[j] = (real, imag)
            pool.add(part(xp, real, imag, False).copy() if j in _sources(terms) else
                     part(xp, real, imag, False))
        return pool.result()

    def op_fft(engine, block):
        xp = engine.xp
        plane_list = list(dict.fromkeys(planes))
        free, slabs = 0, [slice(None)]
        if len(plane_list) == 1 and block.ndim == 3:
            # one plane: transform a slab of slices at a time, so that the spectrum and
            # its products stay in cache (the transforms of a slice do not depend on
            # the slab's size, so neither does the result)
            (rows, cols), = plane_list
            free = 3 - rows - cols
            plane_size = block.shape[rows] * block.shape[cols]
            step = max(1, (1 << 20) // max(plane_size, 1))
            slabs = [slice(i, i + step) for i in range(0, block.shape[free], step)]
        kernel_spectra = {}
        out = xp.empty(block.shape, dtype=block.dtype)
        for slab in slabs:
            index = [slice(None)] * block.ndim
            index[free] = slab
            sub = block[tuple(index)]
            responses = {}
            for plane in plane_list:
                own = [j for j, p in enumerate(planes) if p == plane and terms[j][0] == j]
                for j, r in zip(own, _fft_responses(engine, sub, plane, own, weights, mode,
                                                    cval, kernel_spectra)):
                    responses[j] = r
            pool = Pool(xp, pooling)
            for j in range(len(weights)):
                source, negate = terms[j]
                r = responses[source]
                if response == "modulus":
                    value = xp.abs(r)
                elif response == "real":
                    value = r.real.copy()
                else:
                    value = -r.imag if negate else r.imag.copy()
                pool.add(xp.asarray(value, dtype=block.dtype))
            out[tuple(index)] = pool.result()
        return out

    if not use_fft:
        return apply_filter(image, op_direct, depth, mode=mode, backend=backend)
    kind = array_kind(image)
    if kind in ("numpy", "cupy"):
        return apply_filter(image, op_fft, depth, mode=mode, backend=backend)
    # Dask: each block spans the filtered planes whole, so every block's transform is
    # the unchunked one (slice by slice for "2D": the z chunks stay)
    axes = sorted({a for plane in planes for a in plane})
    whole = image.rechunk({a: -1 for a in axes})
    return apply_filter(whole, op_fft, depth, mode=mode, backend=backend).rechunk(image.chunks)


#: kernels of at least this many taps are applied through the FFT (an IBSI-2 Gabor of
#: sigma 5 voxels has about 1,300 taps per orientation; the direct sum costs that many
#: multiply-adds per voxel, the FFT about 5 log2 of the plane's size)
FFT_MIN_TAPS = 1024


def _sources(terms):
    return {source for j, (source, _) in enumerate(terms) if source != j}


def _conjugate_pairs(weights):
    """``[(source, negate_imag)]`` per kernel: the kernel of ``theta + 180`` degrees is
    the complex conjugate of that of ``theta`` (``u -> -u`` under an even envelope), so
    its response is the conjugate response: same modulus and real part, imaginary part
    negated.  One correlation serves both (half the work of a 360-degree sweep)."""
    out = []
    for j, (real_j, imag_j) in enumerate(weights):
        match = (j, False)
        for i, (source, _) in enumerate(out):
            real_i, imag_i = weights[i]
            if source != i or real_i.shape != real_j.shape:
                continue
            scale = max(float(np.abs(real_i).max()), float(np.abs(imag_i).max()), 1.0)
            if (np.allclose(real_i, real_j, rtol=0, atol=1e-12 * scale)
                    and np.allclose(imag_i, -imag_j, rtol=0, atol=1e-12 * scale)):
                match = (i, True)
                break
        out.append(match)
    return out


def _fft_responses(engine, block, plane, indices, weights, mode, cval, kernel_spectra):
    """Complex responses of ``block`` to the (correlation) kernels ``weights[i]`` for
    ``i`` in ``indices``, all in one plane, by FFT.

    The block is extended by the largest kernel's radius with ``mode`` (as the direct
    correlation would see it) and transformed once; each kernel is a product in the
    Fourier domain and one inverse transform.  The extended plane is transformed at a
    fast length >= its size, so the circular convolution never wraps into the kept part.
    ``kernel_spectra`` caches the kernels' transforms between calls.
    """
    from .._shared.boundary import extension_indices

    xp = engine.xp
    if xp is not np:  # CuPy
        fft, kw = xp.fft, {}
    rows, cols = plane
    complex_dtype = np.complex64 if block.dtype == np.float32 else np.complex128
    kernel_weights = [weights[i] for i in indices]
    radius = [max(w[0].shape[a] // 2 for w in kernel_weights) for a in (rows, cols)]
    ext, keep = block, [slice(None)] * block.ndim
    for a, r in zip((rows, cols), radius):
        n = ext.shape[a]
        idx = extension_indices(n, r, r, mode)
        taken = xp.take(ext, xp.asarray(np.maximum(idx, 0)), axis=a)
        if mode == "constant":
            outside = xp.asarray((idx < 0).reshape([-1 if j == a else 1
                                                    for j in range(block.ndim)]))
            taken = xp.where(outside, block.dtype.type(cval), taken)
        ext = taken
        keep[a] = slice(r, r + n)
    from scipy.fft import next_fast_len

    shape = [next_fast_len(ext.shape[a]) for a in (rows, cols)]
    if xp is np:
        # ducc0 (``_fft``: about 20% faster than scipy.fft on IBSI-2 Gabor planes), in
        # place in one zero-padded array.  Planes of the trailing axes are transformed
        # one at a time, so a slice's response does not depend on the slab (or Dask
        # block) around it; the other planes occur only with the three orthogonal
        # planes, whose block is the whole volume, and are transformed in one call
        from .. import _fft

        per_plane = (rows, cols) == (block.ndim - 2, block.ndim - 1)
        padded = list(ext.shape)
        padded[rows], padded[cols] = shape
        spectrum = np.zeros(padded, complex_dtype)
        spectrum[tuple(slice(0, n) for n in ext.shape)] = ext
        _fft.fftn_inplace(spectrum, (rows, cols), per_plane=per_plane)
    else:
        spectrum = fft.fft2(ext.astype(complex_dtype), s=shape, axes=(rows, cols), **kw)
    out = []
    for i in indices:
        key = (i, tuple(shape))
        if key not in kernel_spectra:
            real_w, imag_w = weights[i]
            # correlation weights -> the convolution kernel, centred on index 0
            k = (real_w + 1j * imag_w).squeeze()[::-1, ::-1]
            grid = np.zeros(shape, dtype=np.complex128)
            ky, kx = k.shape
            grid[:ky, :kx] = k
            grid = np.roll(grid, (-(ky // 2), -(kx // 2)), axis=(0, 1))
            bshape = [1] * block.ndim
            bshape[rows], bshape[cols] = shape
            kernel_spectra[key] = xp.asarray(
                np.fft.fft2(grid).astype(complex_dtype).reshape(bshape))
        if xp is np:
            full = _fft.fftn_inplace(spectrum * kernel_spectra[key], (rows, cols),
                                     inverse=True, per_plane=per_plane)
        else:
            full = fft.ifft2(spectrum * kernel_spectra[key], axes=(rows, cols), **kw)
        out.append(full[tuple(keep)])
    return out
