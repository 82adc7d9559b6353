"""The settings of a feature extraction: one documented, serialisable object."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["FAMILIES", "FILTER_NAMES", "FeatureSettings", "FilterSpec"]

#: The feature families :func:`extract_features` knows, in output order.
FAMILIES = ("stat", "ih", "cm", "morph")

#: Filters of the filter bank and the parameter each takes.
FILTER_NAMES = {
    "gaussian": "sigma_mm",
    "log": "sigma_mm",
    "gradient_magnitude": "sigma_mm",
    "mean": "size",
}


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
        below it are refused.
    families : tuple of str
        Families computed, any of ``"stat"`` (intensity statistics), ``"ih"``
        (intensity histogram), ``"cm"`` (3-D co-occurrence matrix), ``"morph"``
        (morphology).  The filter bank is on whenever ``filters`` is not empty.
    filters : tuple of FilterSpec or dict
        The filter bank: intensity statistics of each filter response over the ROI,
        named ``<prefix>_<stat tag>``, e.g. ``log_sigma1.0mm_stat_mean``.  Empty by
        default because each filter costs a pass over the whole image.
    glcm_distance : int
        Chebyshev distance of the co-occurrence neighbours (IBSI default 1).
    glcm_aggregations : tuple of str
        ``"3D_avg"`` (features per direction, averaged) and/or ``"3D_comb"``
        (the 13 direction matrices merged into one).
    autocorrelation_max_voxels : int
        Moran's I and Geary's C weigh every pair of ROI voxels; they are computed when
        the ROI has at most this many voxels, else reported as NaN.  The pair sums are
        evaluated exactly by FFT over the ROI's bounding box, O(B log B) in the box
        size (measured on 2 CPU cores: about 10 ms for a 10,000-voxel ball, 0.1 s for
        100,000 voxels, 0.45 s for 590,000), so raising the limit is affordable; the
        default keeps the cost of large ROIs out of every extraction.

    Examples
    --------
    >>> s = FeatureSettings(bin_width=1.0)
    >>> FeatureSettings.from_dict(s.to_dict()) == s
    True
    """

    bin_width: float | None = None
    bin_count: int | None = None
    bin_min: float | None = None
    families: tuple[str, ...] = FAMILIES
    filters: tuple[FilterSpec, ...] = ()
    glcm_distance: int = 1
    glcm_aggregations: tuple[str, ...] = ("3D_avg", "3D_comb")
    autocorrelation_max_voxels: int = 10_000
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
        if isinstance(fams, str):
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
        d = self.glcm_distance
        if not isinstance(d, numbers.Integral) or isinstance(d, bool) or d < 1:
            raise ValueError(f"`glcm_distance` must be a positive integer, got {d!r}")
        aggs = self.glcm_aggregations
        if isinstance(aggs, str):
            aggs = (aggs,)
        aggs = tuple(aggs)
        for a in aggs:
            if a not in ("3D_avg", "3D_comb"):
                raise ValueError(
                    f"`glcm_aggregations` entries must be '3D_avg' or '3D_comb', got {a!r}"
                )
        object.__setattr__(self, "glcm_aggregations", aggs)
        n = self.autocorrelation_max_voxels
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
            raise ValueError(
                f"`autocorrelation_max_voxels` must be a non-negative integer, got {n!r}"
            )

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
            "glcm_aggregations": list(self.glcm_aggregations),
            "autocorrelation_max_voxels": self.autocorrelation_max_voxels,
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
        for key in ("families", "filters", "glcm_aggregations"):
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
