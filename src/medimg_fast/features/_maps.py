"""Voxel-wise radiomics feature maps: every feature of a sliding window, exact by chunks.

``feature_maps(image, mask, radius=2)`` computes, for every ROI voxel, the features of
the window of ``(2 r + 1)^D`` voxels centred on it, and returns one map per feature
(NaN outside the ROI).  The map at a voxel *is* :func:`extract_features` of that
voxel's window crop: the window is the crop, the voxels that count are the crop's ROI
(``masked_window``, PyRadiomics' ``maskedKernel``) or all of its in-image voxels, and
the grey levels are the global ones (discretised once over the whole ROI, as
PyRadiomics does), so the number of grey levels ``Ng`` of the formulas is the global
one.  Nothing outside the window is read, so the halo of a chunk is the window's
half-width: a Dask image is processed with :func:`dask.array.map_overlap`-style
overlaps (outside the image: level 0, not counted) and equals the unchunked maps bit
for bit.

Families
--------
``stat``
    The 18 intensity statistics of the window's counted voxels.
``ih``
    The 23 intensity-histogram features of the window's grey levels (histogram slid
    along x).
``cm``
    The 25 GLCM features, 13 directions (4 in-plane with ``dims="2D"``), averaged
    (``_avg``) and merged (``_comb``); one window matrix per direction, slid along x
    (the entering plane's pairs added, the leaving plane's removed).  A pair counts
    when both its voxels lie in the window, as in a crop.

``rlm``
    The 16 GLRLM features, 13 directions (4 with ``dims="2D"``), averaged and merged;
    a run is maximal within the window (cut by its faces, as in a crop).  Runs along
    a direction with ``dx = 0`` lie in one x-plane and slide with the window; the
    others are cut by the moving x faces and are counted anew per window.
``ngt``
    The 5 NGTDM features; a voxel's neighbourhood (distance 1, as
    :func:`extract_features` counts it) holds the counted voxels *of the window*.
``ngl``
    The 17 NGLDM features (``ngldm_distance``, ``ngldm_alpha``), neighbours within the
    window.

The neighbourhood of a voxel near a window face is cut by the window, so NGTDM's
``|i - A_k|`` and NGLDM's dependence of a voxel are not one value per image voxel:
they are recomputed per row of windows from the row's slab (whose y and z faces are
fixed along the row), and per window at its x faces (see :mod:`._maps_kernels`).

Not provided: ``szm``/``dzm``: a zone of the ROI is cut by the window into
pieces that are not zones of the image, so the window's "zones" depend on where the
window falls rather than on the texture; the distance zones also need the distance to
the ROI edge, which the window's cut faces would change.  They are refused with the
reason.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

from ._extract import _check_inputs, _is_dask, _needs_processing, resolve_feature_backend
from ._glcm import GLCM_FEATURES
from ._glrlm import GLRLM_FEATURES
from ._histogram import IH_TAGS, Discretisation
from ._intensity import STAT_TAGS
from ._ngldm import NGLDM_FEATURES
from ._ngtdm import NGTDM_FEATURES
from ._partials import roi_bbox
from ._settings import FeatureSettings
from ._texture import directions_2d, directions_3d

__all__ = ["MAP_FAMILIES", "feature_maps", "map_feature_names", "write_feature_maps"]

#: The families :func:`feature_maps` computes, in output order (that of
#: :func:`extract_features`).
MAP_FAMILIES = ("stat", "ih", "cm", "rlm", "ngt", "ngl")

_NOT_IN_WINDOW = {
    "szm": "zones are connected regions of the ROI; a window cuts them into pieces that "
           "are not zones of the image",
    "dzm": "zones are cut by the window and their distance to the ROI edge changes at "
           "the window's faces",
    "morph": "morphology describes the whole ROI's shape, not a window's",
    "loc": "the local intensity peak is itself a 1 cm^3 window feature",
    "ivh": "the intensity-volume histogram is not part of the maps yet",
}

#: Rows of at least this many centre voxels use the multi-threaded kernels.
_PARALLEL_MIN = 256


def _radii(radius, radius_mm, spacing, dims):
    if radius_mm is not None:
        if (not isinstance(radius_mm, numbers.Real) or isinstance(radius_mm, bool)
                or not math.isfinite(radius_mm) or radius_mm <= 0):
            raise ValueError(f"`radius_mm` must be a positive number, got {radius_mm!r}")
        r = [math.floor(radius_mm / s + 1e-9) for s in spacing]
        if max(r[1:] if dims == "2D" else r) < 1:
            raise ValueError(f"`radius_mm`={radius_mm!r} is smaller than every voxel "
                             f"spacing {spacing!r}: the window would be one voxel")
    else:
        if not isinstance(radius, numbers.Integral) or isinstance(radius, bool) or radius < 1:
            raise ValueError(f"`radius` must be a positive integer (voxels), got {radius!r}")
        r = [int(radius)] * 3
    if dims == "2D":
        r[0] = 0
    return tuple(r)


def _resolve_families(families, settings):
    if families is None:
        fams = tuple(f for f in MAP_FAMILIES if f in settings.families)
        if not fams:
            raise ValueError(f"`settings.families` {settings.families} has no family "
                             f"with maps; maps exist for {MAP_FAMILIES}")
        return fams
    if isinstance(families, str):
        families = (families,)
    fams = tuple(families)
    for f in fams:
        if f not in MAP_FAMILIES:
            why = _NOT_IN_WINDOW.get(f, "unknown family")
            raise ValueError(f"`families` entries must be among {MAP_FAMILIES}, got {f!r} "
                             f"({why})")
    return tuple(f for f in MAP_FAMILIES if f in fams)


def _cm_aggregations(settings, dims):
    tags = [f"{dims}_avg", f"{dims}_comb"]
    if settings.glcm_aggregations is not None:
        tags = [t for t in tags if t in settings.glcm_aggregations]
    return tags


def map_feature_names(settings=None, *, dims="3D", families=None) -> list[str]:
    """The names :func:`feature_maps` returns, in order.

    Examples
    --------
    >>> map_feature_names(families=["cm"])[:2]
    ['cm_joint_max_3D_avg', 'cm_joint_avg_3D_avg']
    """
    settings = FeatureSettings.coerce(settings)
    names = []
    for fam in _resolve_families(families, settings):
        if fam == "stat":
            names += list(STAT_TAGS)
        elif fam == "ih":
            names += list(IH_TAGS)
        elif fam == "ngt":
            names += [f"ngt_{n}_{dims}" for n in NGTDM_FEATURES]
        elif fam == "ngl":
            names += [f"ngl_{n}_{dims}" for n in NGLDM_FEATURES]
        else:  # the directional families: cm, rlm
            base = GLCM_FEATURES if fam == "cm" else GLRLM_FEATURES
            names += [f"{fam}_{n}_{a}" for a in _cm_aggregations(settings, dims)
                      for n in base]
    return names


class _Plan:
    """Everything a block needs: radii, discretisation, directions, what to compute."""

    def __init__(self, radii, disc, dims, families, settings, dtype):
        self.radii = radii
        self.disc = disc
        self.dirs = (directions_2d if dims == "2D" else directions_3d)(settings.glcm_distance)
        # GLRLM: unit steps, those with dx = 0 first (their runs slide with the window)
        rlm = (directions_2d if dims == "2D" else directions_3d)(1)
        self.rlm_dirs = np.ascontiguousarray(np.concatenate([rlm[rlm[:, 2] == 0],
                                                             rlm[rlm[:, 2] != 0]]))
        self.rlm_fixed = int(np.count_nonzero(rlm[:, 2] == 0))
        self.ngl_distance = int(settings.ngldm_distance)
        self.ngl_alpha = int(settings.ngldm_alpha)
        self.families = families
        aggs = _cm_aggregations(settings, dims)
        self.want_avg = any(a.endswith("_avg") for a in aggs)
        self.want_comb = any(a.endswith("_comb") for a in aggs)
        self.dtype = dtype
        self.sizes = {"stat": len(STAT_TAGS), "ih": len(IH_TAGS),
                      "cm": len(GLCM_FEATURES) * len(aggs),
                      "rlm": len(GLRLM_FEATURES) * len(aggs),
                      "ngt": len(NGTDM_FEATURES), "ngl": len(NGLDM_FEATURES)}
        self.n_out = sum(self.sizes[f] for f in families)
        w = (2 * radii[0] + 1) * (2 * radii[1] + 1) * (2 * radii[2] + 1)
        # largest count a window matrix can hold: every window voxel pairs in every
        # direction, twice (symmetric), all directions merged
        self.max_count = 2 * w * (len(self.dirs) + 1) + 1

    def block(self, values, levels, centres):
        """``(n_out, *centres.shape)`` maps of a haloed block (see
        :mod:`._maps_kernels`)."""
        from ._formulas import log2_table
        from ._maps_kernels import compiled, compiled_texture

        glcm_maps, stat_maps, ih_maps = compiled()
        rz, ry, rx = self.radii
        want = tuple(n + 2 * r for n, r in zip(centres.shape, self.radii))
        if levels.shape != want or values.shape != want:  # the kernels do not check bounds
            raise ValueError(f"a haloed block must have shape {want}, got {levels.shape}")
        out = np.full((self.n_out,) + centres.shape, np.nan, dtype=np.float64)
        centres = np.ascontiguousarray(centres, dtype=np.bool_)
        if not centres.any():
            return out.astype(self.dtype, copy=False)
        par = int(np.count_nonzero(centres) >= _PARALLEL_MIN)
        levels = np.ascontiguousarray(levels, dtype=np.int32)
        ng = self.disc.n_levels
        at = 0
        for fam in self.families:
            part = out[at:at + self.sizes[fam]]
            at += self.sizes[fam]
            if fam == "stat":
                stat_maps[par](np.ascontiguousarray(values, dtype=np.float64), levels,
                               centres, rz, ry, rx, part)
            elif fam == "ih":
                ih_maps[par](levels, centres, rz, ry, rx, ng, part)
            elif fam == "cm":
                log2i = log2_table(self.max_count)
                glcm_maps[par](levels, centres, self.dirs, rz, ry, rx, ng, self.want_avg,
                               self.want_comb, log2i, part)
            else:
                ngt_maps, ngl_maps, rlm_maps = compiled_texture()
                if fam == "rlm":
                    rlm_maps[par](levels, centres, self.rlm_dirs, self.rlm_fixed, rz, ry, rx,
                                  ng, self.want_avg, self.want_comb, part)
                elif fam == "ngt":
                    ngt_maps[par](levels, centres, rz, ry, rx, ng, part)
                else:
                    ngl_maps[par](levels, centres, rz, ry, rx, ng, self.ngl_distance,
                                  self.ngl_alpha, part)
        return out.astype(self.dtype, copy=False)


def _discretise(plan, image, counted):
    from ._kernels import kernels_for

    return plan.disc.apply(kernels_for("numba"), image, counted)


def feature_maps(image, mask=None, *, spacing=None, settings=None, radius=1, radius_mm=None,
                 masked_window=True, dims="3D", families=None, backend="auto",
                 dtype=np.float64):
    """Voxel-wise feature maps: the features of a sliding window around every ROI voxel.

    Parameters
    ----------
    image : ndarray, dask.array.Array or cupy.ndarray, 2-D or 3-D
        Intensities ``(z, y, x)``.  A Dask image is processed chunk by chunk with a halo
        of the window's half-width, and the maps are lazy Dask arrays with its chunks.
    mask : array of bool, optional
        The ROI (maps are computed at its voxels); None: the whole image.
    spacing : float or sequence of float, optional
        Voxel size in mm (for ``radius_mm``); default 1.
    settings : FeatureSettings or dict, optional
        Discretisation (``bin_width``/``bin_min`` or ``bin_count``, applied once over
        the whole ROI), ``glcm_distance``, ``glcm_aggregations`` (also GLRLM's, as in
        :func:`extract_features`), ``ngldm_distance``, ``ngldm_alpha`` and, when
        ``families`` is None, the families.  Image processing (resampling,
        re-segmentation) is not applied to maps and is refused.
    radius : int
        Window half-width in voxels: the window is ``(2 radius + 1)^D``.
    radius_mm : float, optional
        Half-width in mm instead: ``floor(radius_mm / spacing)`` voxels per axis.
    masked_window : bool
        True: only ROI voxels in the window count (PyRadiomics ``maskedKernel``);
        False: every in-image voxel of the window counts (discretised with the
        global discretisation, clipped to its levels).
    dims : {"3D", "2D"}
        "3D": cubic windows, 13 GLCM/GLRLM directions (tags ``_3D_avg``/``_3D_comb``,
        ``_3D`` for ``ngt``/``ngl``); "2D": in-plane windows ``1 x (2r+1)^2``, 4
        directions and in-plane neighbourhoods (tags ``_2D_avg``/``_2D_comb``, ``_2D``).
    families : sequence of {"stat", "ih", "cm", "rlm", "ngt", "ngl"}, optional
        Default: those of ``settings.families``.
    backend : {"auto", "numba", "cupy"}
        The maps run on the numba kernels (a CuPy image is copied to the host);
        ``"numpy"`` is refused: there is no uncompiled version.
    dtype : {numpy.float64, numpy.float32}
        Type of the maps (float32 halves their memory).

    Returns
    -------
    dict of str to array
        Feature name (IBSI tag as :func:`extract_features` names it, e.g.
        ``stat_mean``, ``ih_entropy``, ``cm_contrast_3D_avg``) to a map of the image's
        shape, NaN outside the ROI (and where a feature is undefined in a window, e.g.
        GLCM features of a window without a neighbour pair).  NumPy for NumPy input,
        Dask (lazy, one graph for all maps: compute them together) for Dask input.

    Raises
    ------
    ValueError
        Bad radius, dims, families, settings, backend; empty ROI.

    Notes
    -----
    ``maps[name][v] == extract_features(image[W], mask[W], settings=...)[name]`` for the
    window ``W`` of voxel ``v``, when the crop is discretised like the whole ROI and
    ``Ng`` is the global number of levels (the tests check this).  Sliding-window
    kernels: :mod:`._maps_kernels`.  Zone families are not defined per window (see
    the module notes).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.arange(64, dtype=float).reshape(4, 4, 4)
    >>> m = feature_maps(img, img > 20, settings={"bin_count": 8}, families=["stat"])
    >>> bool(np.isnan(m["stat_mean"][0, 0, 0])), float(m["stat_min"][1, 1, 1])
    (True, 21.0)
    >>> float(m["stat_max"][2, 2, 2])
    63.0
    """
    settings = FeatureSettings.coerce(settings)
    spacing = _check_inputs(image, mask, spacing)
    if dims not in ("2D", "3D"):
        raise ValueError(f"`dims` must be '2D' or '3D', got {dims!r}")
    if not isinstance(masked_window, bool):
        raise TypeError(f"`masked_window` must be true or false, got {masked_window!r}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"`dtype` must be float32 or float64, got {dtype!r}")
    if backend == "numpy":
        raise ValueError("`backend`='numpy': feature maps have compiled kernels only; "
                         "use 'numba' or 'auto'")
    kernel_name, _ = resolve_feature_backend(backend)
    if kernel_name != "numba":
        raise ValueError(f"`backend`={backend!r}: feature maps need numba, which is not "
                         "available")
    if _needs_processing(settings):
        raise ValueError("feature maps do not apply image processing (resample_mm, "
                         "reseg_range, round_intensities, reseg_outliers_sigma, "
                         "diagnostics): preprocess the image first")
    fams = _resolve_families(families, settings)
    squeeze = image.ndim == 2
    if squeeze:
        if dims == "3D" and radius_mm is None:
            dims = "2D"  # one slice: the window is in-plane
        image = image[None]
        mask = None if mask is None else mask[None]
        spacing = (1.0,) + spacing
    radii = _radii(radius, radius_mm, spacing, dims)
    image = _host(image)
    mask = _host(mask)
    is_dask = _is_dask(image) or _is_dask(mask)
    if is_dask:
        maps = _dask_maps(image, mask, settings, radii, dims, fams, masked_window,
                          np.dtype(dtype))
    else:
        maps = _numpy_maps(np.asarray(image), mask, settings, radii, dims, fams,
                           masked_window, np.dtype(dtype))
    names = map_feature_names(settings, dims=dims, families=fams)
    if squeeze:
        return {n: m[0] for n, m in zip(names, maps)}
    return {n: m for n, m in zip(names, maps)}


def _host(x):
    if x is not None and type(x).__module__.split(".")[0] == "cupy":
        return x.get()
    return x


def _numpy_maps(image, mask, settings, radii, dims, fams, masked, dtype):
    mask = np.ones(image.shape, bool) if mask is None else np.asarray(mask, bool)
    box = roi_bbox(mask)
    if box is None:
        raise ValueError("the ROI is empty: `mask` selects no voxel")
    roi = image[mask]
    disc = Discretisation.from_settings(settings, float(roi.min()), float(roi.max()))
    plan = _Plan(radii, disc, dims, fams, settings, dtype)
    # the ROI's box plus the window's reach, zero-padded where that leaves the image
    outer = tuple(slice(max(b.start - r, 0), min(b.stop + r, n))
                  for b, r, n in zip(box, radii, image.shape))
    pad = tuple((o.start - (b.start - r), (b.stop + r) - o.stop)
                for b, r, o in zip(box, radii, outer))
    img = image[outer]
    counted = mask[outer] if masked else np.ones(img.shape, bool)
    levels = np.pad(_discretise(plan, img, counted), pad)
    values = np.pad(np.asarray(img, np.float64), pad)
    core = plan.block(values, levels, mask[box])
    out = np.full((plan.n_out,) + image.shape, np.nan, dtype=dtype)
    out[(slice(None),) + box] = core
    return list(out)


def _dask_maps(image, mask, settings, radii, dims, fams, masked, dtype):
    import dask
    import dask.array as da

    image = image if _is_dask(image) else da.from_array(np.asarray(image))
    if mask is None:
        mask = da.ones(image.shape, dtype=bool, chunks=image.chunks)
    elif not _is_dask(mask):
        mask = da.from_array(np.asarray(mask, bool), chunks=image.chunks)
    # a chunk must hold the halo it lends its neighbours (dask's overlap would otherwise
    # rechunk the haloed arrays alone and unpair their blocks from the mask's)
    chunks = tuple(da.overlap.ensure_minimum_chunksize(max(r, 1), c) if min(c) < r else c
                   for r, c in zip(radii, image.chunks))
    image = image.rechunk(chunks)
    mask = mask.astype(bool).rechunk(chunks)
    n_roi, vmin, vmax = dask.compute(mask.sum(), da.where(mask, image, np.inf).min(),
                                     da.where(mask, image, -np.inf).max())
    if n_roi == 0:
        raise ValueError("the ROI is empty: `mask` selects no voxel")
    disc = Discretisation.from_settings(settings, float(vmin), float(vmax))
    plan = _Plan(radii, disc, dims, fams, settings, dtype)
    counted = mask if masked else da.ones(image.shape, dtype=bool, chunks=image.chunks)
    levels = da.map_blocks(lambda i, m: _discretise(plan, i, m), image, counted,
                           dtype=np.int32)
    depth = dict(enumerate(radii))
    # outside the image: level 0 (not counted) and value 0 (never read)
    levels_h = da.overlap.overlap(levels, depth=depth, boundary=0)
    values_h = da.overlap.overlap(image.astype(np.float64), depth=depth, boundary=0)

    def _block(values, levels, centres):
        return plan.block(values, levels, centres)

    stacked = da.map_blocks(_block, values_h, levels_h, mask, dtype=dtype,
                            chunks=((plan.n_out,),) + mask.chunks, new_axis=0,
                            meta=np.empty((0, 0, 0, 0), dtype))
    return [stacked[i] for i in range(plan.n_out)]


def write_feature_maps(maps, out_dir, like_volume=None, *, format="nifti", overwrite=False):
    """Write one file per map, with the image's geometry, so the maps open in any viewer.

    Parameters
    ----------
    maps : dict of str to array
        As :func:`feature_maps` returns (NumPy or Dask; Dask maps are computed together,
        one chunk at a time for Zarr).
    out_dir : str or os.PathLike
        Folder to write into (created if missing): ``<name>.nii.gz`` or ``<name>.zarr``.
    like_volume : medimg_fast.io.Volume, optional
        The image the maps were computed on: spacing, origin and direction of the
        output; default 1 mm voxels at the origin, identity direction.
    format : {"nifti", "zarr"}
        NIfTI (float32, read whole into memory per map) or OME-Zarr via
        :func:`medimg_fast.io.save_volume` (chunk by chunk, for maps larger than memory).
    overwrite : bool
        Replace existing files.

    Returns
    -------
    dict of str to pathlib.Path
        Feature name to the file written.
    """
    import pathlib

    if format not in ("nifti", "zarr"):
        raise ValueError(f"`format` must be 'nifti' or 'zarr', got {format!r}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if like_volume is not None:
        spacing = tuple(like_volume.spacing)
        origin = tuple(like_volume.origin)
        direction = np.asarray(like_volume.direction, np.float64)
    else:
        # array axes (z, y, x) along LPS z, y, x: the orientation open_volume returns
        spacing, origin, direction = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3)[:, ::-1]
    written = {}
    if format == "zarr":
        from medimg_fast.io import save_volume

        for name, m in maps.items():
            path = out_dir / f"{name}.zarr"
            written[name] = save_volume(m, path, spacing=spacing, origin=origin,
                                        direction=direction, overwrite=overwrite)
        return written
    import nibabel as nib

    names = list(maps)
    arrays = [maps[n] for n in names]
    if any(_is_dask(a) for a in arrays):
        import dask

        arrays = list(dask.compute(*arrays))
    # index (z, y, x) -> LPS mm, then LPS -> RAS (NIfTI's frame)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(spacing)[None, :]
    lps[:3, 3] = origin
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    for name, arr in zip(names, arrays):
        path = out_dir / f"{name}.nii.gz"
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        data = np.asarray(arr, dtype=np.float32)
        if data.ndim == 2:
            data = data[None]
        img = nib.Nifti1Image(data, ras)
        img.header.set_xyzt_units("mm")
        tmp = path.with_name(path.name + ".tmp.nii.gz")
        nib.save(img, os.fspath(tmp))
        os.replace(tmp, path)
        written[name] = path
    return written
