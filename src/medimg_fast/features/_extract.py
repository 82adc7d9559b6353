"""``extract_features``: every family, from per-block partials, for one volume."""

from __future__ import annotations

import numbers

import numpy as np

from ._glcm import directions_3d, glcm_aggregate
from ._histogram import Discretisation, histogram_features
from ._intensity import intensity_statistics, roi_moments
from ._kernels import kernels_for
from ._morphology import MorphPartial, morph_block, morphology_features
from ._partials import BlockGrid, _is_dask, add
from ._settings import FeatureSettings

__all__ = ["extract_features", "feature_names", "resolve_feature_backend"]


def resolve_feature_backend(backend) -> tuple[str, str]:
    """``(kernel backend, filter backend)`` for a ``backend`` argument.

    The counting kernels run on the CPU (``numba`` when it works, else ``numpy``); with
    ``backend="cupy"`` (or ``"auto"`` on a machine with a GPU) the filter bank runs on
    the GPU and the counting on the host.
    """
    from medimg_fast.backends import available_backends, resolve_backend

    if backend is None:
        backend = "auto"
    if not isinstance(backend, str):
        raise TypeError(f"`backend` must be a string, got {backend!r}")
    resolved = resolve_backend(backend).name
    if resolved in ("numba", "numpy"):
        return resolved, resolved
    kernel = "numba" if available_backends()["numba"].available else "numpy"
    return kernel, resolved


def _to_host(x):
    if type(x).__module__.split(".")[0] == "cupy":
        return x.get()
    return x


def _whole_compiled(grid, kernels) -> bool:
    """One NumPy block and the numba kernels: each family has a whole-volume compiled
    path (bit-identical to the block path)."""
    return kernels.name == "numba" and not grid.is_dask


def _check_inputs(image, mask, spacing):
    shape = getattr(image, "shape", None)
    if shape is None or getattr(image, "dtype", None) is None:
        raise TypeError(f"`image` must be a NumPy, Dask or CuPy array, got {type(image).__name__}")
    if len(shape) not in (2, 3):
        raise ValueError(f"`image` must be 2-D or 3-D, got shape {tuple(shape)}")
    if np.dtype(image.dtype).kind not in "buif":
        raise TypeError(f"`image` must have a real numeric dtype, got {image.dtype}")
    if mask is not None:
        mshape = getattr(mask, "shape", None)
        if mshape is None:
            raise TypeError(f"`mask` must be an array or None, got {type(mask).__name__}")
        if tuple(mshape) != tuple(shape):
            raise ValueError(
                f"`mask` must have the shape of `image` {tuple(shape)}, got {tuple(mshape)}"
            )
    if spacing is None:
        spacing = (1.0,) * len(shape)
    elif isinstance(spacing, numbers.Real):
        spacing = (float(spacing),) * len(shape)
    spacing = tuple(spacing)
    if len(spacing) != len(shape) or not all(
            isinstance(s, numbers.Real) and np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(
            f"`spacing` must be {len(shape)} positive numbers (mm per voxel), got {spacing!r}"
        )
    return tuple(float(s) for s in spacing)


def extract_features(image, mask=None, *, spacing=None, settings=None, backend="auto"):
    """IBSI radiomics features of one volume, computed from mergeable per-block partials.

    Parameters
    ----------
    image : ndarray, dask.array.Array or cupy.ndarray, 2-D or 3-D
        Intensities.  A 2-D image is treated as a volume of one slice.  A Dask array is
        processed chunk by chunk (each family from per-chunk partials merged exactly).
    mask : array of bool, optional
        The region of interest, same shape as ``image``; None means the whole volume.
    spacing : float or sequence of float, optional
        Voxel size in millimetres along each axis of ``image`` (default 1.0).
        Morphology is in mm/mm^2/mm^3 and filter sigmas are converted with it.
    settings : FeatureSettings or dict, optional
        Discretisation, families, filter bank (see :class:`FeatureSettings`).
    backend : {"auto", "numba", "numpy", "cupy"}
        ``numba``/``numpy`` select the counting kernels (same results to float64
        rounding); ``cupy`` runs the filter bank on the GPU (counting on the host).

    Returns
    -------
    dict of str to float
        Feature name (IBSI tag, e.g. ``stat_mean``, ``cm_joint_max_3D_avg``,
        ``morph_volume``; filter bank ``<filter>_<params>_<stat tag>``) to value.

    Raises
    ------
    ValueError
        Empty ROI, mismatched shapes, bad spacing, unknown settings or backend.

    Notes
    -----
    Every family is a merge of per-block partials: moments (Pébay's update), exact
    quantiles by multi-pass selection (see :mod:`._intensity`), fixed-bin grey-level
    histograms, co-occurrence counts with a halo of ``glcm_distance`` voxels so each
    neighbour pair is counted once, and marching-cubes pieces on cells owned by each
    block (see :mod:`._morphology`).  Chunked and unchunked results agree to float64
    rounding.  The discretisation needs the ROI minimum/maximum first, so a Dask
    image is read several times (once per pass) instead of being held in memory.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.arange(27, dtype=float).reshape(3, 3, 3)
    >>> f = extract_features(img, img > 4, settings={"bin_width": 5.0, "families": ["stat"]})
    >>> float(f["stat_mean"])
    15.5
    """
    settings = FeatureSettings.coerce(settings)
    spacing = _check_inputs(image, mask, spacing)
    kernel_name, filter_backend = resolve_feature_backend(backend)
    kernels = kernels_for(kernel_name)
    if image.ndim == 2:
        image = image[None]
        mask = None if mask is None else mask[None]
        spacing = (1.0,) + spacing
    image_host = _to_host(image)
    mask_host = _to_host(mask)
    out: dict[str, float] = {}
    grid = BlockGrid(image_host, mask_host)
    fams = settings.families
    fast = _whole_compiled(grid, kernels)
    if fast and "stat" in fams:
        # one block: moments and statistics in a few compiled passes (bit-identical)
        from ._stats_fast import roi_statistics

        mom, stats = roi_statistics(grid.image, grid.mask)
        out.update(stats)
    else:  # the moments alone (discretisation, morphology) unless statistics are asked
        mom = roi_moments(grid, kernels)
        if "stat" in fams:
            out.update(intensity_statistics(grid, kernels, mom))
    morph = None
    if "morph" in fams and fast:
        # the compiled morphology is serial and releases the GIL: it runs on the other
        # core while this thread counts texture and runs the filter bank (same results)
        import concurrent.futures

        pool = concurrent.futures.ThreadPoolExecutor(1)
        morph = pool.submit(_morphology, grid, mom, spacing, settings, kernels)
        pool.shutdown(wait=False)
    if "ih" in fams or "cm" in fams:
        out.update(_texture(grid, kernels, mom, settings))
    if "morph" in fams and morph is None:
        out.update(_morphology(grid, mom, spacing, settings, kernels))
    if settings.filters:
        box = None if grid.is_dask or mask is None else tuple(
            slice(o, o + n) for o, n in zip(grid.origin, grid.image.shape))
        bank = _filter_bank(image, mask, spacing, settings, kernels, filter_backend, box)
    else:
        bank = {}
    if morph is not None:
        out.update(morph.result())  # the serial path's order: morphology, then the bank
    out.update(bank)
    return {k: float(v) for k, v in out.items()}


def _texture(grid, kernels, mom, settings):
    disc = Discretisation.from_settings(settings, mom.min, mom.max)
    ng = disc.n_levels
    want_cm = "cm" in settings.families
    dirs = directions_3d(settings.glcm_distance)

    def _block(image, mask, info):
        levels = disc.apply(kernels, image, mask)
        hist = np.bincount(levels[info.core].ravel(), minlength=ng + 1)[1:]
        if not want_cm:
            return (hist,)
        return hist, kernels.glcm(levels, info.core, dirs, ng)

    if want_cm and _whole_compiled(grid, kernels):
        # one block: discretise, histogram and count all directions in one compiled call
        parts = kernels.texture_whole(grid.image, grid.mask, disc.lo, disc.scale_num,
                                      disc.scale_den, ng, dirs)
    else:
        parts = grid.reduce_blocks(_block, add,
                                   halo=settings.glcm_distance if want_cm else 0)
    out = {}
    if "ih" in settings.families:
        out.update(histogram_features(parts[0]))
    if want_cm:
        out.update(glcm_aggregate(parts[1], settings.glcm_aggregations))
    return out


def _morphology(grid, mom, spacing, settings, kernels):
    spacing_arr = np.asarray(spacing, np.float64)
    # a fixed reference point near the volume's centre keeps the signed-volume terms small
    ref_mm = np.floor(np.asarray(grid.shape) / 2.0) * spacing_arr
    gather = mom.n <= settings.autocorrelation_max_voxels
    if _whole_compiled(grid, kernels):
        # one block: count cell configurations instead of building the mesh
        from ._morph_fast import max_diameter, morph_whole

        part = morph_whole(grid.image, grid.mask, grid.origin, spacing=spacing_arr,
                           ref_mm=ref_mm, gather_samples=gather)
        return morphology_features(part, spacing_arr, max_diameter=max_diameter)

    def _block(image, mask, info):
        return morph_block(image, mask, info, spacing=spacing_arr, ref_mm=ref_mm,
                           gather_samples=gather)

    part = grid.reduce_blocks(_block, MorphPartial.merge, halo=1)
    return morphology_features(part, spacing_arr)


def _filter_bank(image, mask, spacing, settings, kernels, filter_backend, box=None):
    from ._filterbank import crop_for_filter, filter_response

    out = {}
    for spec in settings.filters:
        img, msk = image, mask
        if (not _is_dask(image) and mask is not None and not _is_dask(mask)
                and type(image).__module__.split(".")[0] != "cupy"):
            img, msk = crop_for_filter(np.asarray(image), np.asarray(mask, bool), spec, spacing,
                                       box=box)
        response = _to_host(filter_response(img, spec, spacing, filter_backend))
        msk = _to_host(msk)
        if kernels.name == "numba" and not _is_dask(response) and not _is_dask(msk):
            from ._stats_fast import roi_statistics

            if msk is None:
                msk = np.ones(response.shape, dtype=bool)
            stats = roi_statistics(response, msk)[1]
        else:
            stats = intensity_statistics(BlockGrid(response, msk), kernels)
        for tag, value in stats.items():
            out[f"{spec.prefix}_{tag}"] = value
    return out


def feature_names(settings=None) -> list[str]:
    """The names :func:`extract_features` returns for ``settings``, in output order.

    Examples
    --------
    >>> feature_names({"families": ["stat"]})[:2]
    ['stat_mean', 'stat_var']
    """
    from ._glcm import GLCM_FEATURES
    from ._histogram import IH_TAGS
    from ._intensity import STAT_TAGS
    from ._morphology import MORPH_TAGS

    settings = FeatureSettings.coerce(settings)
    names: list[str] = []
    if "stat" in settings.families:
        names += STAT_TAGS
    if "ih" in settings.families:
        names += IH_TAGS
    if "cm" in settings.families:
        for agg in ("3D_avg", "3D_comb"):
            if agg in settings.glcm_aggregations:
                names += [f"cm_{n}_{agg}" for n in GLCM_FEATURES]
    if "morph" in settings.families:
        names += MORPH_TAGS
    for spec in settings.filters:
        names += [f"{spec.prefix}_{t}" for t in STAT_TAGS]
    return names
