"""The settings of a feature extraction: one documented, serialisable object."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DEFAULT_FAMILIES", "FAMILIES", "FILTER_NAMES", "FeatureSettings", "FilterSpec"]

#: The feature families :func:`extract_features` knows, in output order: intensity
#: statistics, intensity histogram, co-occurrence, morphology, local intensity,
#: intensity-volume histogram, run length, size zone, distance zone, neighbourhood grey
#: tone difference, neighbouring grey level dependence.
FAMILIES = ("stat", "ih", "cm", "morph", "loc", "ivh", "rlm", "szm", "dzm", "ngt", "ngl")

#: The families computed when ``families`` is not given (those of the first releases).
DEFAULT_FAMILIES = ("stat", "ih", "cm", "morph")

#: The texture families and whether they are directional (``_avg``/``_comb`` tags).
TEXTURE_FAMILIES = {"cm": True, "rlm": True, "szm": False, "dzm": False, "ngt": False,
                    "ngl": False}

_DIMS = ("2D", "2.5D", "3D")

#: Filters of the filter bank and the parameter each takes.
FILTER_NAMES = {
    "gaussian": "sigma_mm",
    "log": "sigma_mm",
    "gradient_magnitude": "sigma_mm",
    "mean": "size",
}


def _finite(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v) -> bool:
    return _finite(v) and v > 0


@dataclass(frozen=True)
class FilterSpec:
    """One filter of the filter bank.

    Parameters
    ----------
    name : {"gaussian", "log", "gradient_magnitude", "mean"}
        ``gaussian``: Gaussian smoothing; ``log``: Laplacian of Gaussian;
        ``gradient_magnitude``: Gaussian gradient magnitude; ``mean``: mean (box) filter.
    sigma_mm : float, optional
        Standard deviation of the Gaussian in millimetres (all but ``mean``).
    size : int, optional
        Edge length of the cubic mean-filter neighbourhood in voxels (``mean`` only).
    """

    name: str
    sigma_mm: float | None = None
    size: int | None = None

    def __post_init__(self):
        if self.name not in FILTER_NAMES:
            raise ValueError(
                f"`filters[].name` must be one of {sorted(FILTER_NAMES)}, got {self.name!r}"
            )
        if FILTER_NAMES[self.name] == "sigma_mm":
            if self.size is not None:
                raise ValueError(f"filter {self.name!r} takes `sigma_mm`, not `size`")
            s = self.sigma_mm
            if (not isinstance(s, numbers.Real) or isinstance(s, bool) or not math.isfinite(s)
                    or s <= 0):
                raise ValueError(
                    f"filter {self.name!r} needs a positive `sigma_mm`, got {s!r}"
                )
            object.__setattr__(self, "sigma_mm", float(s))
        else:
            if self.sigma_mm is not None:
                raise ValueError(f"filter {self.name!r} takes `size`, not `sigma_mm`")
            n = self.size
            if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
                raise ValueError(f"filter 'mean' needs a positive integer `size`, got {n!r}")
            object.__setattr__(self, "size", int(n))

    @property
    def prefix(self) -> str:
        """The feature-name prefix, e.g. ``log_sigma1.0mm``."""
        if self.name == "mean":
            return f"mean_size{self.size}"
        return f"{self.name}_sigma{self.sigma_mm!r}mm"

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_any(cls, spec) -> FilterSpec:
        if isinstance(spec, FilterSpec):
            return spec
        if not isinstance(spec, Mapping):
            raise TypeError(
                f"each entry of `filters` must be a FilterSpec or a dict, got {spec!r}"
            )
        unknown = set(spec) - {"name", "sigma_mm", "size"}
        if unknown:
            raise ValueError(f"unknown key(s) in a `filters` entry: {sorted(unknown)}")
        if "name" not in spec:
            raise ValueError(f"a `filters` entry needs a 'name', got {dict(spec)!r}")
        return cls(**spec)


@dataclass(frozen=True)
class FeatureSettings:
    """How :func:`~medimg_fast.features.extract_features` computes features.

    Every field has a default; an instance round-trips through :meth:`to_dict` /
    :meth:`from_dict` (and JSON), so the settings of a study can be stored with its
    features and its model.

    Parameters
    ----------
    bin_width : float, optional
        IBSI *fixed bin size* discretisation: grey level
        ``floor((x - x_min) / bin_width) + 1`` with ``x_min = bin_min`` or, when
        ``bin_min`` is None, the ROI minimum.  Exclusive with ``bin_count``.
    bin_count : int, optional
        IBSI *fixed bin number* discretisation into ``bin_count`` levels between the
        ROI minimum and maximum (``bin_min`` is then not allowed).  When neither
        ``bin_width`` nor ``bin_count`` is given, ``bin_count=32`` is used.
    bin_min : float, optional
        Lower edge of the first bin for ``bin_width`` (e.g. -1000 for CT in HU); values
        below it are refused.  When None and ``reseg_range`` has a lower end, fixed bin
        size starts there, as IBSI prescribes; else at the ROI minimum.
    families : tuple of str or "all"
        Families computed, any of ``"stat"`` (intensity statistics), ``"ih"``
        (intensity histogram), ``"cm"`` (co-occurrence matrix), ``"morph"``
        (morphology), ``"loc"`` (local intensity peaks), ``"ivh"`` (intensity-volume
        histogram), ``"rlm"`` (run length), ``"szm"`` (size zone), ``"dzm"`` (distance
        zone), ``"ngt"`` (neighbourhood grey tone difference), ``"ngl"`` (neighbouring
        grey level dependence); ``"all"`` for every one.  Default: the first four.  The
        filter bank is on whenever ``filters`` is not empty.
    texture_dims : tuple of str
        Spatial dimensions of the texture families, any of ``"2D"`` (slice by slice
        along z of a ``(z, y, x)`` volume), ``"2.5D"`` (slices merged) and ``"3D"``.
    resample_mm : (z, y, x), optional
        Interpolate to this voxel spacing in mm on the IBSI grid (centres aligned); an
        entry None keeps that axis (``(None, 2, 2)``: in-plane only, for 2-D studies).
    resample_order : {1, 3}
        Image interpolation: 1 linear, 3 cubic spline.  The mask is always linear.
    round_intensities : bool
        Round interpolated intensities to integers (CT in HU).
    mask_threshold : float
        Partial-volume threshold of the interpolated mask: voxels with a value of at
        least this are in the ROI.
    reseg_range : (low, high), optional
        Re-segmentation: keep ROI voxels with ``low <= x <= high``; None for an open end.
        Applies to the intensity mask; morphology keeps the (interpolated) mask.
    reseg_outliers_sigma : float, optional
        Re-segmentation: keep ROI voxels within mean +- this many standard deviations.
    ivh_bin_width, ivh_bin_count : optional
        Discretisation of the intensity-volume histogram, apart from the texture's:
        fixed bin size (from the lower end of ``reseg_range`` or the ROI minimum) or
        fixed bin number; neither: integer intensities (such as HU) as they are, other
        intensities a fixed bin number of 1000.
    filters : tuple of FilterSpec or dict
        The filter bank: intensity statistics of each filter response over the ROI,
        named ``<prefix>_<stat tag>``, e.g. ``log_sigma1.0mm_stat_mean``.  Empty by
        default because each filter costs a pass over the whole image.
    glcm_distance : int
        Chebyshev distance of the co-occurrence neighbours (IBSI default 1).
    glcm_aggregations : tuple of str, optional
        Restrict the co-occurrence and run-length aggregations to these tags, among
        ``2D_avg, 2D_comb, 2_5D_avg, 2_5D_comb, 3D_avg, 3D_comb`` (``_avg``: features
        per direction, averaged; ``_comb``: directions merged); None: every aggregation
        of ``texture_dims``.
    ngldm_distance : int
        Chebyshev distance of the neighbourhood of the dependence matrix (IBSI default 1).
    ngldm_alpha : int
        Coarseness of the dependence matrix: neighbours within this many grey levels
        depend (IBSI default 0).
    diagnostics : bool
        Add the IBSI diagnostic values (image and ROI dimensions, voxel counts, mean,
        minimum and maximum intensity at each processing stage: ``img_dim_x_init_img``,
        ``int_mask_vox_count_reseg_roi``, ...).
    autocorrelation_max_voxels : int, optional
        Moran's I and Geary's C weigh every pair of ROI voxels.  The pair sums are
        evaluated exactly by FFT over the ROI's bounding box, O(B log B) in the box
        size (measured on 2 CPU cores: about 10 ms for a 10,000-voxel ball, 0.1 s for
        100,000 voxels, 0.45 s for 590,000).  None (the default): computed whenever the
        FFT's work arrays for the ROI's bounding box fit the memory budget
        (``MEDIMG_FAST_MEMORY_BUDGET``, 2 GiB by default), else NaN; a number: computed
        for ROIs of at most that many voxels, else NaN.

    Examples
    --------
    >>> s = FeatureSettings(bin_width=1.0)
    >>> FeatureSettings.from_dict(s.to_dict()) == s
    True
    """

    bin_width: float | None = None
    bin_count: int | None = None
    bin_min: float | None = None
    families: tuple[str, ...] = DEFAULT_FAMILIES
    filters: tuple[FilterSpec, ...] = ()
    glcm_distance: int = 1
    glcm_aggregations: tuple[str, ...] | None = None
    autocorrelation_max_voxels: int | None = None
    texture_dims: tuple[str, ...] = ("3D",)
    resample_mm: tuple | None = None
    resample_order: int = 1
    round_intensities: bool = False
    mask_threshold: float = 0.5
    reseg_range: tuple | None = None
    reseg_outliers_sigma: float | None = None
    ivh_bin_width: float | None = None
    ivh_bin_count: int | None = None
    ngldm_distance: int = 1
    ngldm_alpha: int = 0
    diagnostics: bool = False
    _version: int = field(default=1, repr=False, compare=False)

    def __post_init__(self):
        bw, bc, bm = self.bin_width, self.bin_count, self.bin_min
        if bw is not None and bc is not None:
            raise ValueError(
                f"give either `bin_width` or `bin_count`, not both (got {bw!r} and {bc!r})"
            )
        if bw is not None:
            if (not isinstance(bw, numbers.Real) or isinstance(bw, bool)
                    or not math.isfinite(bw) or bw <= 0):
                raise ValueError(f"`bin_width` must be a positive number, got {bw!r}")
            object.__setattr__(self, "bin_width", float(bw))
        if bc is not None:
            if not isinstance(bc, numbers.Integral) or isinstance(bc, bool) or bc < 1:
                raise ValueError(f"`bin_count` must be a positive integer, got {bc!r}")
            object.__setattr__(self, "bin_count", int(bc))
        if bm is not None:
            if bw is None:
                raise ValueError(
                    f"`bin_min` applies to fixed bin size only: set `bin_width` too "
                    f"(got bin_min={bm!r})"
                )
            if not isinstance(bm, numbers.Real) or isinstance(bm, bool) or not math.isfinite(bm):
                raise ValueError(f"`bin_min` must be a finite number, got {bm!r}")
            object.__setattr__(self, "bin_min", float(bm))
        fams = self.families
        if fams == "all":
            fams = FAMILIES
        elif isinstance(fams, str):
            fams = (fams,)
        fams = tuple(fams)
        for f in fams:
            if f not in FAMILIES:
                raise ValueError(f"`families` entries must be among {FAMILIES}, got {f!r}")
        object.__setattr__(self, "families", fams)
        if isinstance(self.filters, (Mapping, FilterSpec, str)):
            raise TypeError(f"`filters` must be a list of filter specs, got {self.filters!r}")
        object.__setattr__(self, "filters",
                           tuple(FilterSpec.from_any(s) for s in self.filters))
        for name in ("glcm_distance", "ngldm_distance"):
            d = getattr(self, name)
            if not isinstance(d, numbers.Integral) or isinstance(d, bool) or d < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {d!r}")
        a = self.ngldm_alpha
        if not isinstance(a, numbers.Integral) or isinstance(a, bool) or a < 0:
            raise ValueError(f"`ngldm_alpha` must be a non-negative integer, got {a!r}")
        dims = self.texture_dims
        if isinstance(dims, str):
            dims = (dims,)
        dims = tuple(dims)
        if not dims or any(d not in _DIMS for d in dims):
            raise ValueError(f"`texture_dims` must be a non-empty subset of {_DIMS}, "
                             f"got {self.texture_dims!r}")
        object.__setattr__(self, "texture_dims", tuple(d for d in _DIMS if d in dims))
        aggs = self.glcm_aggregations
        if aggs is not None:
            if isinstance(aggs, str):
                aggs = (aggs,)
            aggs = tuple(aggs)
            allowed = [f"{d.replace('.', '_')}_{k}" for d in self.texture_dims
                       for k in ("avg", "comb")]
            for agg in aggs:
                if agg not in allowed:
                    raise ValueError(
                        f"`glcm_aggregations` entries must be among {allowed} (the "
                        f"aggregations of texture_dims={self.texture_dims}), got {agg!r}"
                    )
            object.__setattr__(self, "glcm_aggregations", aggs)
        self._check_processing()
        self._check_ivh()
        n = self.autocorrelation_max_voxels
        if n is not None and (not isinstance(n, numbers.Integral) or isinstance(n, bool)
                              or n < 0):
            raise ValueError(
                f"`autocorrelation_max_voxels` must be a non-negative integer, got {n!r}"
            )

    def _check_processing(self):
        r = self.resample_mm
        if r is not None:
            if isinstance(r, (str, numbers.Number)) or len(tuple(r)) != 3:
                raise ValueError(f"`resample_mm` must be three numbers (z, y, x) in mm, an "
                                 f"entry None keeping that axis, got {r!r}")
            r = tuple(r)
            for v in r:
                if v is not None and not _positive(v):
                    raise ValueError(f"`resample_mm` entries must be positive numbers or "
                                     f"None, got {r!r}")
            r = tuple(None if v is None else float(v) for v in r)
            object.__setattr__(self, "resample_mm", None if r == (None,) * 3 else r)
        if self.resample_order not in (1, 3) or isinstance(self.resample_order, bool):
            raise ValueError(f"`resample_order` must be 1 (linear) or 3 (cubic spline), "
                             f"got {self.resample_order!r}")
        for name in ("round_intensities", "diagnostics"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be true or false, got "
                                 f"{getattr(self, name)!r}")
        t = self.mask_threshold
        if not _positive(t) or t > 1:
            raise ValueError(f"`mask_threshold` must be a number in (0, 1], got {t!r}")
        object.__setattr__(self, "mask_threshold", float(t))
        rr = self.reseg_range
        if rr is not None:
            if isinstance(rr, (str, numbers.Number)) or len(tuple(rr)) != 2:
                raise ValueError(f"`reseg_range` must be (low, high), None for an open end, "
                                 f"got {rr!r}")
            lo, hi = tuple(rr)
            for v in (lo, hi):
                if v is not None and not _finite(v):
                    raise ValueError(f"`reseg_range` ends must be finite numbers or None, "
                                     f"got {rr!r}")
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"`reseg_range` must have low <= high, got {rr!r}")
            rr = (None if lo is None else float(lo), None if hi is None else float(hi))
            object.__setattr__(self, "reseg_range", None if rr == (None, None) else rr)
        k = self.reseg_outliers_sigma
        if k is not None:
            if not _positive(k):
                raise ValueError(f"`reseg_outliers_sigma` must be a positive number, got {k!r}")
            object.__setattr__(self, "reseg_outliers_sigma", float(k))

    def _check_ivh(self):
        bw, bc = self.ivh_bin_width, self.ivh_bin_count
        if bw is not None and bc is not None:
            raise ValueError(f"give either `ivh_bin_width` or `ivh_bin_count`, not both "
                             f"(got {bw!r} and {bc!r})")
        if bw is not None:
            if not _positive(bw):
                raise ValueError(f"`ivh_bin_width` must be a positive number, got {bw!r}")
            object.__setattr__(self, "ivh_bin_width", float(bw))
        if bc is not None:
            if not isinstance(bc, numbers.Integral) or isinstance(bc, bool) or bc < 1:
                raise ValueError(f"`ivh_bin_count` must be a positive integer, got {bc!r}")
            object.__setattr__(self, "ivh_bin_count", int(bc))

    @property
    def texture_aggregations(self) -> dict[str, tuple[str, ...]]:
        """Per texture family, the tag suffixes computed (``3D_avg``, ``2D``, ...)."""
        out = {}
        for fam, directional in TEXTURE_FAMILIES.items():
            tags = []
            for d in self.texture_dims:
                base = d.replace(".", "_")
                tags += [f"{base}_avg", f"{base}_comb"] if directional else [base]
            if directional and self.glcm_aggregations is not None:
                tags = [t for t in tags if t in self.glcm_aggregations]
            out[fam] = tuple(tags)
        return out

    @property
    def bin_origin(self) -> float | None:
        """Where fixed bin size starts: ``bin_min``, else the lower re-segmentation end."""
        if self.bin_min is not None:
            return self.bin_min
        if self.reseg_range is not None:
            return self.reseg_range[0]
        return None

    @property
    def effective_bin_count(self) -> int | None:
        """``bin_count``, or 32 when neither ``bin_width`` nor ``bin_count`` is set."""
        if self.bin_width is None and self.bin_count is None:
            return 32
        return self.bin_count

    def to_dict(self) -> dict:
        """A plain, JSON-serialisable dict of every field."""
        return {
            "bin_width": self.bin_width,
            "bin_count": self.bin_count,
            "bin_min": self.bin_min,
            "families": list(self.families),
            "filters": [f.to_dict() for f in self.filters],
            "glcm_distance": self.glcm_distance,
            "glcm_aggregations": (None if self.glcm_aggregations is None
                                  else list(self.glcm_aggregations)),
            "autocorrelation_max_voxels": self.autocorrelation_max_voxels,
            "texture_dims": list(self.texture_dims),
            "resample_mm": None if self.resample_mm is None else list(self.resample_mm),
            "resample_order": self.resample_order,
            "round_intensities": self.round_intensities,
            "mask_threshold": self.mask_threshold,
            "reseg_range": None if self.reseg_range is None else list(self.reseg_range),
            "reseg_outliers_sigma": self.reseg_outliers_sigma,
            "ivh_bin_width": self.ivh_bin_width,
            "ivh_bin_count": self.ivh_bin_count,
            "ngldm_distance": self.ngldm_distance,
            "ngldm_alpha": self.ngldm_alpha,
            "diagnostics": self.diagnostics,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureSettings:
        """Build settings from a plain dict; an unknown key raises ValueError naming it."""
        if not isinstance(data, Mapping):
            raise TypeError(f"`settings` must be a FeatureSettings or a dict, got {data!r}")
        known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown setting(s) {unknown}; known settings are {sorted(known)}"
            )
        kwargs = dict(data)
        for key in ("families", "filters", "glcm_aggregations", "texture_dims", "resample_mm",
                    "reseg_range"):
            if key in kwargs and isinstance(kwargs[key], list):
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    @classmethod
    def coerce(cls, settings) -> FeatureSettings:
        """``None`` -> defaults; a dict -> :meth:`from_dict`; an instance as is."""
        if settings is None:
            return cls()
        if isinstance(settings, cls):
            return settings
        return cls.from_dict(settings)
