"""``extract_features``: every family, from per-block partials, for one volume."""

from __future__ import annotations

import functools
import numbers
import threading
from dataclasses import dataclass

import numpy as np

from ._glcm import glcm_aggregate
from ._histogram import Discretisation, histogram_features
from ._intensity import intensity_statistics, roi_moments
from ._kernels import kernels_for
from ._morphology import (
    MorphPartial,
    _moran_geary,
    autocorrelation_fits,
    intensity_morphology,
    morph_block,
    morphology_features,
    roi_samples,
)
from ._partials import BlockGrid, _is_dask, add
from ._settings import TEXTURE_FAMILIES, FeatureSettings
from ._texture import TextureCounts, directions_2d, directions_3d

__all__ = ["extract_features", "extract_features_from_files", "feature_names",
           "resolve_feature_backend"]


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
        Intensities, ``(z, y, x)``.  A 2-D image is treated as a volume of one slice.  A
        Dask array is processed chunk by chunk (each family from per-chunk partials
        merged exactly).
    mask : array of bool, optional
        The region of interest, same shape as ``image``; None means the whole volume.
    spacing : float or sequence of float, optional
        Voxel size in millimetres along each axis of ``image`` (default 1.0).
        Morphology is in mm/mm^2/mm^3 and filter sigmas are converted with it.
    settings : FeatureSettings or dict, optional
        Image processing (interpolation, re-segmentation), discretisation, families,
        texture dimensions, filter bank (see :class:`FeatureSettings`).
    backend : {"auto", "numba", "numpy", "cupy"}
        ``numba``/``numpy`` select the counting kernels of the first families (same
        results to float64 rounding; the run-length, zone and dependence matrices are
        counted by compiled kernels on both); ``cupy`` runs the filter bank on the GPU
        (counting on the host).

    Returns
    -------
    dict of str to float
        Feature name (IBSI tag, e.g. ``stat_mean``, ``cm_joint_max_3D_avg``,
        ``rlm_sre_2D_comb``, ``morph_volume``; filter bank
        ``<filter>_<params>_<stat tag>``; with ``diagnostics`` the IBSI diagnostic
        values such as ``int_mask_vox_count_reseg_roi``) to value.

    Raises
    ------
    ValueError
        Empty ROI, mismatched shapes, bad spacing, unknown settings or backend.

    Notes
    -----
    The IBSI image-processing chain of :mod:`medimg_fast.preprocessing` runs first when
    the settings ask for it (interpolation on the IBSI grid, rounding, mask
    interpolation with a partial-volume threshold, re-segmentation): morphology then
    uses the interpolated mask, every other family the re-segmented intensity mask.

    Every family is a merge of per-block partials: moments (Pébay's update), exact
    quantiles by multi-pass selection (see :mod:`._intensity`), fixed-bin grey-level and
    intensity-volume histograms, co-occurrence, grey tone difference and dependence
    counts with a halo of the neighbourhood distance so each voxel is counted once, and
    marching-cubes pieces on cells owned by each block (see :mod:`._morphology`).
    Runs and zones cross chunk faces: a block keeps the runs and zones it closes as
    counts and those touching its faces as fragments, which merging joins across faces
    (union-find of zones, including across edges and corners), and the distance zones'
    edge distances are exact separable L1 sweeps over the Dask volume.  Chunked and
    unchunked results agree to float64 rounding (integer counts exactly).  The
    discretisation needs the ROI minimum/maximum first, so a Dask image is read several
    times (once per pass) instead of being held in memory.

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
    image = _to_host(image)
    mask = _to_host(mask)
    out: dict[str, float] = {}
    morph_mask = mask
    if _needs_processing(settings):
        pre = _preprocess(image, mask, spacing, settings)
        image, mask, morph_mask, spacing = pre.image, pre.int_mask, pre.morph_mask, pre.spacing
        out.update(pre.diagnostics or {})
    grid = BlockGrid(image, mask)
    morph_grid = grid
    if morph_mask is not mask and ("morph" in settings.families
                                   or "dzm" in settings.families):
        morph_grid = BlockGrid(image, morph_mask)
    return _extract_grid(grid, morph_grid, (image, mask), spacing, settings, kernels,
                         filter_backend, out)


def _box_suffices(settings) -> bool:
    """Whether these settings read no voxel outside the ROI's bounding box, widened by
    the local-intensity sphere when asked: no interpolation (its grid is the whole
    volume's), no diagnostics (they describe the whole image), no filter bank (filters
    see the whole image and its boundary).  Rounding and re-segmentation act on each
    voxel, or on the ROI's intensities alone, so they run on the box."""
    return not (settings.resample_mm or settings.diagnostics or settings.filters)


def extract_features_from_files(image_path, mask_path, *, settings=None, backend="auto"):
    """:func:`extract_features` of an image file and its mask file (the voxels > 0).

    Parameters
    ----------
    image_path, mask_path : str or os.PathLike
        Any format :func:`medimg_fast.io.open_volume` reads; the mask on the image's grid.
    settings, backend
        As :func:`extract_features`.

    Returns
    -------
    dict of str to float
        Exactly ``extract_features(open_volume(image_path).data.compute(),
        open_volume(mask_path).data.compute() > 0, spacing=open_volume(image_path).spacing,
        ...)``.

    Notes
    -----
    When the settings read nothing outside the ROI's bounding box (no interpolation,
    diagnostics or filter bank; rounding and re-segmentation act voxel by voxel and on
    the ROI's intensities; the local intensity's sphere widens the box by its radius)
    and both files are 3-D NIfTI volumes of one grid, the mask is read first and the
    image only on that box (:func:`medimg_fast.io._nifti.read_nifti_roi`: a ``.nii.gz``
    is inflated only up to the box's last slab, and no whole-volume copy is made); the
    mask's morphology is computed while the image is inflated.  Every family then runs
    on the box with the whole volume's origin and shape, so every value is the one of
    the whole-volume call.  Other inputs are read whole.
    """
    from medimg_fast.io import open_volume

    settings = FeatureSettings.coerce(settings)
    out = features_on_roi_box(image_path, mask_path, settings=settings, backend=backend)
    if out is not None:
        return out
    image = open_volume(image_path)
    mask = open_volume(mask_path)
    return extract_features(image.data.compute(), mask.data.compute() > 0,
                            spacing=image.spacing, settings=settings, backend=backend)


def features_on_roi_box(image_path, mask_path, *, settings, backend="auto", nonzero=False):
    """:func:`extract_features_from_files` read on the ROI's box, or None where that
    does not apply (see its Notes): the caller then reads both volumes whole.
    ``nonzero``: the ROI is the mask's voxels ``!= 0`` instead of ``> 0``."""
    import os

    from medimg_fast.io._nifti import read_nifti_roi

    from ._local import SPHERE_RADIUS_MM

    settings = FeatureSettings.coerce(settings)
    paths = (os.fspath(image_path), os.fspath(mask_path))
    if not (_box_suffices(settings) and all(p.endswith((".nii", ".nii.gz"))
                                            and os.path.isfile(p) for p in paths)):
        return None
    kernel_name, filter_backend = resolve_feature_backend(backend)
    kernels = kernels_for(kernel_name)
    fams = settings.families

    def shape_first(mask, origin, shape, spacing):
        # the morphology of the mask while the image is inflated on another thread
        # (re-segmentation keeps the morphological mask: it is this one)
        if "morph" not in fams or kernels.name != "numba":
            return None
        grid = BlockGrid.from_box(mask, mask, origin, shape)
        return spacing, _morph_shape(grid, spacing)

    region = read_nifti_roi(*paths, margin_mm=SPHERE_RADIUS_MM if "loc" in fams else 0.0,
                            on_mask=shape_first, nonzero=nonzero)
    if region is None or ("loc" in fams and np.floor(
            SPHERE_RADIUS_MM / np.asarray(region.spacing)).max() > region.margin):
        return None  # (the image's voxels are smaller than the mask file's said)
    spacing = _check_inputs(region.image, region.mask, region.spacing)
    shape = None
    if region.early is not None and region.early[0] == spacing:
        shape = region.early[1]
    image, mask = region.image, region.mask
    morph_mask = mask
    if _needs_processing(settings):
        pre = _preprocess(image, mask, spacing, settings)
        image, mask, morph_mask = pre.image, pre.int_mask, pre.morph_mask
    grid = BlockGrid.from_box(image, mask, region.origin, region.shape)
    morph_grid = grid
    if morph_mask is not mask:
        morph_grid = BlockGrid.from_box(image, morph_mask, region.origin, region.shape)
    return _extract_grid(grid, morph_grid, (image, mask), spacing, settings, kernels,
                         filter_backend, {}, morph_shape=shape)


def _extract_grid(grid, morph_grid, volume, spacing, settings, kernels, filter_backend, out,
                  morph_shape=None):
    """Every family of ``settings`` on ``grid`` (the intensity mask), added to ``out``.

    ``morph_grid``: the grid of the morphological mask (``grid`` itself when the masks
    are one); ``volume``: the ``(image, mask)`` arrays the local intensity and the filter
    bank read (the whole volume, or a box that holds what they read);
    ``morph_shape``: the :func:`_morph_shape` of ``morph_grid``, already computed (the
    morphology then needs only the intensities, and the texture families get both
    threads)."""
    image, mask = volume
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
    morph = autocorr = None
    with_autocorr = "morph" in fams and autocorrelation_fits(
        mom.n, grid.image.shape, settings.autocorrelation_max_voxels)
    # with the mask's morphology done, what is left of it is short unless Moran's I
    # and Geary's C are due: the texture families then get both threads, the other
    # one once it is done with the morphology
    short_morph = morph_shape is not None and not with_autocorr
    if "morph" in fams and fast:
        if with_autocorr:
            # Moran's I and Geary's C (the longest task of a large ROI) first, on a
            # worker of their own
            autocorr = _workers().submit(_autocorrelation, grid, spacing)
        # the compiled morphology is serial and releases the GIL: it runs on a
        # worker while this thread counts texture and runs the filter bank
        morph = _workers().submit(_morphology, morph_grid, grid, spacing, settings,
                                  kernels, morph_shape, autocorr=autocorr is None)
    texture = {}
    if "ih" in fams or any(f in fams for f in TEXTURE_FAMILIES):
        distance_grid = morph_grid if "dzm" in fams and morph_grid is not grid else None
        texture = _texture(grid, kernels, mom, settings, distance_grid,
                           parallel=short_morph)
    out.update({k: v for k, v in texture.items() if k.startswith(("ih_", "cm_"))})
    # local intensity and the IVH while the morphology (Moran's I, Geary's C) may still
    # run on the other thread; reported after it, in the serial path's order
    rest = {}
    if "loc" in fams:
        rest.update(_local_intensity(image, mask, spacing))
    if "ivh" in fams:
        rest.update(_ivh(grid, mom, settings))
    if "morph" in fams and morph is None:
        out.update(_morphology(morph_grid, grid, spacing, settings, kernels, morph_shape))
    if morph is not None:
        out.update(morph.result())
    if autocorr is not None:
        out["morph_moran_i"], out["morph_geary_c"] = autocorr.result()
    out.update(rest)
    out.update({k: v for k, v in texture.items() if not k.startswith(("ih_", "cm_"))})
    if settings.filters:
        box = None if grid.is_dask or mask is None else tuple(
            slice(o, o + n) for o, n in zip(grid.origin, grid.image.shape))
        out.update(_filter_bank(image, mask, spacing, settings, kernels, filter_backend, box))
    return {k: float(v) for k, v in out.items()}


def _needs_processing(settings) -> bool:
    return bool(settings.resample_mm or settings.reseg_range or settings.round_intensities
                or settings.reseg_outliers_sigma or settings.diagnostics)


def _preprocess(image, mask, spacing, settings):
    """The IBSI image-processing chain on NumPy arrays (a Dask input is read whole)."""
    from medimg_fast.preprocessing import preprocess

    image = np.asarray(image.compute() if _is_dask(image) else image)
    if mask is None:
        mask = np.ones(image.shape, dtype=bool)
    mask = np.asarray(mask.compute() if _is_dask(mask) else mask, dtype=bool)
    return preprocess(
        image, mask, spacing, resample_mm=settings.resample_mm,
        resample_order=settings.resample_order,
        round_intensities=settings.round_intensities, mask_threshold=settings.mask_threshold,
        reseg_range=settings.reseg_range, reseg_outliers_sigma=settings.reseg_outliers_sigma,
        diagnostics=settings.diagnostics)


# -- texture -------------------------------------------------------------------------
@dataclass
class _TextureParts:
    """Additive per-block texture partials: the grey-level histogram and the counts of
    the families whose neighbourhoods a halo covers."""

    hist: np.ndarray
    counts: dict  # family -> TextureCounts

    @staticmethod
    def merge(a, b):
        counts = dict(a.counts)
        for fam, c in b.counts.items():
            counts[fam] = TextureCounts.merge(counts.get(fam), c)
        return _TextureParts(a.hist + b.hist, counts)


def _shift_slices(counts: TextureCounts, dz: int) -> TextureCounts:
    return TextureCounts(counts.volume, {z + dz: m for z, m in counts.slices.items()})


def _glcm_counts(kernels, levels, core, settings, ng, volume=None) -> TextureCounts:
    """Co-occurrence counts of the voxels in ``core``: 13 directions over the block, and
    the 4 in-plane directions per slice (slice keys relative to the block)."""
    dims = settings.texture_dims
    if volume is None and "3D" in dims:
        volume = kernels.glcm(levels, core, directions_3d(settings.glcm_distance), ng)
    slices = {}
    if "2D" in dims or "2.5D" in dims:
        dirs = directions_2d(settings.glcm_distance)
        z0, z1, _ = core[0].indices(levels.shape[0])
        for z in range(z0, z1):
            plane = (slice(z, z + 1),) + tuple(core[1:])
            if not levels[plane].any():
                continue
            slices[z] = kernels.glcm(levels, plane, dirs, ng)
    return TextureCounts(volume if "3D" in dims else None, slices)


def _additive_counts(kernels, levels, core, settings, ng, glcm_volume=None, *,
                     families=None) -> dict:
    """Co-occurrence, grey tone difference and dependence counts of the voxels in
    ``core`` (of ``families``, default those of the settings)."""
    fams = settings.families if families is None else families
    dims = settings.texture_dims
    counts = {}
    if "cm" in fams:
        counts["cm"] = _glcm_counts(kernels, levels, core, settings, ng, glcm_volume)
    if "ngt" in fams:
        from ._ngtdm import count_ngtdm

        counts["ngt"] = count_ngtdm(levels, ng, dims, distance=1, core=core)
    if "ngl" in fams:
        from ._ngldm import count_ngldm

        counts["ngl"] = count_ngldm(levels, ng, dims, distance=settings.ngldm_distance,
                                    alpha=settings.ngldm_alpha, core=core)
    return counts


def _joined_counts(levels, settings, ng, distance_levels=None, *, block=None,
                   families=None) -> dict:
    """Run-length and zone matrices of a whole level volume, or the partials of a block.

    Whole volume (``block`` None): the ROI's bounding box as one block.
    ``distance_levels``: levels on the morphological mask's box, whose mask the
    distance zones measure edge distances in, when it differs from the intensity mask.

    Block (``block=(info, shape, distances)``: its :class:`BlockInfo`, the global volume
    shape, the global ``(planar, volume)`` edge distances on the block): ``{"rlm":
    RunPartial, "zones": ZonePartial}`` for the families asked, merged across chunk
    faces by their ``merge`` and turned into counts by their ``finish``."""
    fams = settings.families if families is None else families
    dims = settings.texture_dims
    if block is not None:
        info, shape, distances = block
        parts = {}
        if "rlm" in fams:
            from ._glrlm import glrlm_block

            parts["rlm"] = glrlm_block(levels, ng, dims, core=info.core, offset=info.offset,
                                       shape=shape)
        zone_fams = [f for f in ("szm", "dzm") if f in fams]
        if zone_fams:
            from ._glszm import zone_block

            parts["zones"] = zone_block(levels, ng, dims, core=info.core, offset=info.offset,
                                        shape=shape, families=zone_fams, distances=distances)
        return parts
    counts = {}
    if "rlm" in fams:
        from ._glrlm import count_glrlm

        counts["rlm"] = count_glrlm(levels, ng, dims)
    zone_fams = [f for f in ("szm", "dzm") if f in fams]
    if zone_fams:
        from ._glszm import count_zone_families

        if distance_levels is None:  # one labelling of the zones for both families
            counts.update(count_zone_families(levels, ng, dims, families=zone_fams))
        elif "dzm" in fams:
            # the levels on the morphological mask's box hold the same zones as
            # ``levels`` (zero outside the intensity mask either way): one labelling,
            # the edge distances measured in the morphological mask
            counts.update(count_zone_families(distance_levels[0], ng, dims,
                                              families=zone_fams,
                                              distance_mask=distance_levels[1]))
        else:
            counts.update(count_zone_families(levels, ng, dims, families=["szm"]))
    return counts


def _distance_levels(grid, distance_grid, disc, kernels):
    """Intensity-mask levels and the morphological mask, both on the morphological
    mask's bounding box (which holds the intensity mask: re-segmentation only removes
    voxels)."""
    image, morph, origin = distance_grid.roi_box_arrays(with_origin=True)
    _, roi, roi_origin = grid.roi_box_arrays(with_origin=True)
    int_mask = np.zeros(morph.shape, dtype=bool)
    at = tuple(slice(o, o + n) for o, n in zip(roi_origin - origin, roi.shape))
    int_mask[at] = roi
    levels = np.ascontiguousarray(disc.apply(kernels, image, int_mask))
    return levels, morph


def _texture(grid, kernels, mom, settings, distance_grid=None, *, parallel=False):
    """The intensity histogram and texture families of ``grid``; ``parallel``: count
    them on two threads whatever the ROI's size (the other core is otherwise idle)."""
    disc = Discretisation.from_settings(settings, mom.min, mom.max)
    ng = disc.n_levels
    fams = settings.families
    additive = [f for f in ("cm", "ngt", "ngl") if f in fams]
    joined = [f for f in ("rlm", "szm", "dzm") if f in fams]
    halo = max([settings.glcm_distance if "cm" in fams else 0,
                1 if "ngt" in fams else 0,
                settings.ngldm_distance if "ngl" in fams else 0])
    if not grid.is_dask:
        # one block: the whole ROI's bounding box
        core = (slice(None),) * 3
        volume = None
        if "cm" in fams and "3D" in settings.texture_dims and _whole_compiled(grid, kernels):
            # discretise, histogram and count all 3-D directions in one compiled call
            hist, volume, levels = kernels.texture_whole(
                grid.image, grid.mask, disc.lo, disc.scale_num, disc.scale_den, ng,
                directions_3d(settings.glcm_distance))
        else:
            levels = disc.apply(kernels, grid.image, grid.mask)
            hist = np.bincount(levels.ravel(), minlength=ng + 1)[1:]
        if additive or joined:
            levels = np.ascontiguousarray(levels)
        dist = None
        if joined and distance_grid is not None:
            dist = _distance_levels(grid, distance_grid, disc, kernels)
        # the longest first (run lengths, then zones), so that two threads finish
        # about together
        tasks = []
        if "rlm" in joined:
            tasks.append(functools.partial(_joined_counts, levels, settings, ng, dist,
                                           families=("rlm",)))
        zones = tuple(f for f in ("szm", "dzm") if f in joined)
        if zones:
            tasks.append(functools.partial(_joined_counts, levels, settings, ng, dist,
                                           families=zones))
        tasks += [functools.partial(_additive_counts, kernels, levels, core, settings, ng,
                                    volume, families=(f,)) for f in additive]
        # each family's formulas right after its counts, on the same thread: the
        # formulas of one family overlap the counting of another
        aggs = settings.texture_aggregations

        def counted_with_formulas(task):
            counts = task()
            return counts, {fam: _FAMILY_FEATURES[fam](c, aggs[fam])
                            for fam, c in counts.items()}

        results = _run_tasks([functools.partial(counted_with_formulas, t) for t in tasks],
                             parallel=kernels.name == "numba"
                             and (parallel or grid.mask.size >= _PARALLEL_FAMILIES_MIN))
        counts, formulas = {}, {}
        for family_counts, family_formulas in results:
            counts.update(family_counts)
            formulas.update(family_formulas)
        return _texture_features(hist, counts, settings, formulas)
    else:
        source, unpack = grid, None
        if joined:
            # runs and zones cross chunk faces: per-block partials joined across faces
            # (one-voxel halo); the global edge distances of the distance zones travel
            # with the levels, packed into one array
            import dask.array as da

            from ._glszm import LevelDistanceCode, edge_distance_maps

            levels = da.map_blocks(lambda i, m: disc.apply(kernels, i, m), grid.image,
                                   grid.mask, dtype=np.int32)
            code = LevelDistanceCode.for_shape(ng, grid.shape)
            planar = volume = None
            if "dzm" in fams:
                dmask = grid.mask if distance_grid is None else distance_grid.mask
                planar, volume = edge_distance_maps(dmask.rechunk(grid.image.chunks))
            source = BlockGrid(code.pack(levels, planar, volume), grid.mask)
            unpack = code.unpack

        def _block(image, mask, info):
            if unpack is None:
                levels, distances = disc.apply(kernels, image, mask), None
            else:
                levels, *distances = unpack(image)
            hist = np.bincount(levels[info.core].ravel(), minlength=ng + 1)[1:]
            part = _TextureParts(hist, {})
            if additive:
                counts = _additive_counts(kernels, levels, info.core, settings, ng)
                part = _TextureParts(hist, {f: _shift_slices(c, info.offset[0])
                                            for f, c in counts.items()})
            if not joined:
                return part
            return part, _joined_counts(levels, settings, ng,
                                        block=(info, grid.shape, distances))

        def _merge(a, b):
            return (_TextureParts.merge(a[0], b[0]),
                    {k: type(p).merge(p, b[1][k]) for k, p in a[1].items()})

        if not joined:
            parts = source.reduce_blocks(_block, _TextureParts.merge,
                                         halo=halo if additive else 0)
            counts = dict(parts.counts)
        else:
            parts, joined_parts = source.reduce_blocks(_block, _merge, halo=max(halo, 1))
            counts = dict(parts.counts)
            if "rlm" in joined_parts:
                counts["rlm"] = joined_parts["rlm"].finish()
            if "zones" in joined_parts:
                counts.update(joined_parts["zones"].finish())
    return _texture_features(parts.hist, counts, settings)


#: ROI boxes of at least this many voxels count their texture families on two threads
#: (the compiled kernels release the GIL); smaller ones are done before a thread starts.
_PARALLEL_FAMILIES_MIN = 1 << 16


def _run_tasks(tasks, *, parallel: bool) -> list:
    """The results of ``tasks`` in their order, on two threads when ``parallel`` (this
    one and a worker of :func:`_workers`, each taking the next task when done with
    one): the same numbers either way.  With both workers busy this thread runs them
    all."""
    if not (parallel and len(tasks) > 1):
        return [task() for task in tasks]
    import itertools

    results = [None] * len(tasks)
    order = itertools.count()
    lock = threading.Lock()
    failed = []

    def drain():
        while not failed:
            with lock:
                i = next(order)
            if i >= len(tasks):
                return
            try:
                results[i] = tasks[i]()
            except BaseException:
                failed.append(True)  # the other thread takes no new task
                raise

    helper = _workers().submit(drain)
    try:
        drain()
    finally:
        # a helper still queued behind busy workers has nothing left to do
        if not helper.cancel():
            helper.result()  # (its error, or this thread's, reaches the caller)
    return results


_WORKERS = None
_WORKERS_LOCK = threading.Lock()


def _workers():
    """Two worker threads kept for the whole process (a new pool after a fork): starting
    threads for each ROI cost a millisecond of a 20 ms case."""
    import concurrent.futures
    import os

    global _WORKERS
    with _WORKERS_LOCK:
        if _WORKERS is None or _WORKERS[0] != os.getpid():
            _WORKERS = (os.getpid(), concurrent.futures.ThreadPoolExecutor(
                2, thread_name_prefix="medimg-features"))
        return _WORKERS[1]


def _texture_features(hist, counts, settings, formulas=None) -> dict[str, float]:
    """The intensity histogram and texture features in the families' order;
    ``formulas``: the features of some families, already evaluated."""
    out = {}
    if "ih" in settings.families:
        out.update(histogram_features(hist))
    aggs = settings.texture_aggregations
    for fam in TEXTURE_FAMILIES:
        if fam not in counts:
            continue
        if formulas is not None and fam in formulas:
            out.update(formulas[fam])
        else:
            out.update(_FAMILY_FEATURES[fam](counts[fam], aggs[fam]))
    return out


def _cm_features(counts, aggs):
    return glcm_aggregate(counts, aggs)


def _rlm_features(counts, aggs):
    from ._glrlm import glrlm_aggregate

    return _keep(glrlm_aggregate(counts, _dims_of(aggs)), aggs)


def _szm_features(counts, aggs):
    from ._glszm import glszm_aggregate

    return glszm_aggregate(counts, _dims_of(aggs))


def _dzm_features(counts, aggs):
    from ._glszm import gldzm_aggregate

    return gldzm_aggregate(counts, _dims_of(aggs))


def _ngt_features(counts, aggs):
    from ._ngtdm import ngtdm_aggregate

    return ngtdm_aggregate(counts, _dims_of(aggs))


def _ngl_features(counts, aggs):
    from ._ngldm import ngldm_aggregate

    return ngldm_aggregate(counts, _dims_of(aggs))


_FAMILY_FEATURES = {"cm": _cm_features, "rlm": _rlm_features, "szm": _szm_features,
                    "dzm": _dzm_features, "ngt": _ngt_features, "ngl": _ngl_features}


def _dims_of(aggs) -> set[str]:
    """``{"2D", "2.5D"}`` from tag suffixes such as ``("2D_avg", "2_5D")``."""
    return {a.replace("_avg", "").replace("_comb", "").replace("_", ".") for a in aggs}


def _keep(features, aggs):
    return {k: v for k, v in features.items() if any(k.endswith("_" + a) for a in aggs)}


# -- morphology, local intensity, intensity-volume histogram ------------------------
def _reference_mm(grid, spacing):
    """A fixed reference point near the volume's centre: it keeps the signed-volume
    terms small."""
    return np.floor(np.asarray(grid.shape) / 2.0) * np.asarray(spacing, np.float64)


def _morph_shape(grid, spacing):
    """The mask's part of the compiled morphology of a one-block ``grid``
    (:func:`._morph_fast.morph_shape`)."""
    from ._morph_fast import morph_shape

    return morph_shape(grid.mask, grid.origin, spacing=np.asarray(spacing, np.float64),
                       ref_mm=_reference_mm(grid, spacing))


def _morphology(grid, int_grid, spacing, settings, kernels, shape=None, *, autocorr=True):
    """Morphology of ``grid``'s (morphological) mask; the intensity-weighted features
    (integrated intensity, Moran's I, Geary's C) over ``int_grid``'s intensity mask.
    ``shape``: :func:`_morph_shape` of ``grid``, when already computed; ``autocorr``:
    False when Moran's I and Geary's C are computed apart (:func:`_autocorrelation`;
    they are then NaN here)."""
    mom = roi_moments(grid, kernels)
    spacing_arr = np.asarray(spacing, np.float64)
    ref_mm = _reference_mm(grid, spacing_arr)
    max_voxels = settings.autocorrelation_max_voxels if autocorr else 0
    # a Dask grid is not cropped to the ROI: its whole shape bounds the box.  With a
    # re-segmented intensity mask, intensity_morphology computes Moran's I and Geary's C
    # over that mask: samples of the morphological mask would only be discarded
    gather = int_grid is grid and autocorrelation_fits(mom.n, grid.image.shape, max_voxels)
    if _whole_compiled(grid, kernels):
        # one block: count cell configurations instead of building the mesh
        from ._morph_fast import max_diameter, with_intensities

        if shape is None:
            shape = _morph_shape(grid, spacing_arr)
        part = with_intensities(shape, grid.image, grid.mask, grid.origin,
                                gather_samples=gather)
        out = morphology_features(part, spacing_arr, max_diameter=max_diameter)
    else:
        def _block(image, mask, info):
            return morph_block(image, mask, info, spacing=spacing_arr, ref_mm=ref_mm,
                               gather_samples=gather)

        part = grid.reduce_blocks(_block, MorphPartial.merge, halo=1)
        out = morphology_features(part, spacing_arr)
    if int_grid is not grid:
        out.update(intensity_morphology(grid, int_grid, out["morph_volume"], spacing_arr,
                                        max_voxels=max_voxels))
    return out


def _autocorrelation(int_grid, spacing):
    """Moran's I and Geary's C over a one-block ``int_grid``'s intensity mask (the
    values :func:`_morphology` computes from the same samples)."""
    idx, values = roi_samples(int_grid.image, int_grid.mask, int_grid.origin)
    return _moran_geary(idx, values, np.asarray(spacing, np.float64))


def _local_intensity(image, mask, spacing):
    from ._local import local_intensity_features

    if mask is None:
        mask = np.ones(image.shape, dtype=bool)
    if _is_dask(image) or _is_dask(mask):
        # the spheres reach about 6 mm around the ROI: read its box with that margin
        from ._local import sphere_offsets
        from ._partials import dask_roi_box

        reach = np.abs(sphere_offsets(spacing)).max(axis=0)
        image, mask = dask_roi_box(image, mask, margin=reach)
    return local_intensity_features(image, mask, spacing)


def _ivh(grid, mom, settings):
    from ._ivh import IvhBins, ivh_features

    integer_valued = True
    if settings.ivh_bin_width is None and settings.ivh_bin_count is None:
        integer_valued = bool(grid.reduce_values(lambda v: bool(np.all(v == np.rint(v))),
                                                 lambda a, b: a and b))
    bins = IvhBins.from_settings(settings, mom.min, mom.max, integer_valued=integer_valued)
    return ivh_features(grid.reduce_values(bins.counts, add), bins)


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
    >>> feature_names({"families": ["rlm"], "texture_dims": ["2D"]})[:2]
    ['rlm_sre_2D_avg', 'rlm_lre_2D_avg']
    """
    from ._histogram import IH_TAGS
    from ._intensity import STAT_TAGS
    from ._ivh import IVH_TAGS
    from ._local import LOC_TAGS
    from ._morphology import MORPH_TAGS

    settings = FeatureSettings.coerce(settings)
    fams = settings.families
    aggs = settings.texture_aggregations
    names: list[str] = []
    if settings.diagnostics:
        from medimg_fast.preprocessing import diagnostic_tags

        names += diagnostic_tags()

    def texture(fam):
        base = _family_feature_names(fam)
        return [f"{fam}_{n}_{a}" for a in aggs[fam] for n in base]

    if "stat" in fams:
        names += STAT_TAGS
    if "ih" in fams:
        names += IH_TAGS
    if "cm" in fams:
        names += texture("cm")
    if "morph" in fams:
        names += MORPH_TAGS
    if "loc" in fams:
        names += LOC_TAGS
    if "ivh" in fams:
        names += IVH_TAGS
    for fam in ("rlm", "szm", "dzm", "ngt", "ngl"):
        if fam in fams:
            names += texture(fam)
    for spec in settings.filters:
        names += [f"{spec.prefix}_{t}" for t in STAT_TAGS]
    return names


def _family_feature_names(fam: str) -> tuple[str, ...]:
    if fam == "cm":
        from ._glcm import GLCM_FEATURES as names
    elif fam == "rlm":
        from ._glrlm import GLRLM_FEATURES as names
    elif fam == "szm":
        from ._glszm import GLSZM_FEATURES as names
    elif fam == "dzm":
        from ._glszm import GLDZM_FEATURES as names
    elif fam == "ngt":
        from ._ngtdm import NGTDM_FEATURES as names
    else:
        from ._ngldm import NGLDM_FEATURES as names
    return names
