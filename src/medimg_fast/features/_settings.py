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

#: Filters of the filter bank and the essential parameter each takes (the full list of
#: each filter's keys and their defaults is ``_FILTER_KEYS``).
FILTER_NAMES = {
    "gaussian": "sigma_mm",
    "log": "sigma_mm",
    "gradient_magnitude": "sigma_mm",
    "mean": "size",
    "laws": "kernel",
    "gabor": "sigma_mm",
    "wavelet": "family",
    "simoncelli": "level",
    "riesz": "order",
}

def _finite(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v) -> bool:
    return _finite(v) and v > 0


_REQUIRED = object()
_GAUSSIAN_KEYS = {"sigma_mm": _REQUIRED, "truncate": 4.0, "mode": "reflect", "dims": "3D"}
#: per filter, its keys and their defaults (``_REQUIRED``: no default)
_FILTER_KEYS = {
    "gaussian": _GAUSSIAN_KEYS,
    "log": {**_GAUSSIAN_KEYS, "convention": None},
    "gradient_magnitude": _GAUSSIAN_KEYS,
    "mean": {"size": _REQUIRED, "mode": "reflect", "dims": "3D"},
    "laws": {"kernel": _REQUIRED, "energy": False, "delta": 7, "rotation_invariant": False,
             "pooling": "max", "mode": "reflect", "dims": "3D"},
    "gabor": {"sigma_mm": _REQUIRED, "lambda_mm": _REQUIRED, "gamma": _REQUIRED,
              "theta_deg": _REQUIRED, "theta_step_deg": None, "response": "modulus",
              "rotation_invariant": False, "pooling": "mean", "truncate": 4.0,
              "mode": "reflect", "dims": "2D"},
    "wavelet": {"family": _REQUIRED, "set": _REQUIRED, "level": 1,
                "rotation_invariant": False, "pooling": "mean", "mode": "reflect",
                "dims": "3D"},
    "simoncelli": {"level": 1, "mode": "wrap", "dims": "3D"},
    "riesz": {"order": _REQUIRED, "of": None, "tensor_sigma_mm": None, "mode": "wrap",
              "dims": "3D"},
}
_CHOICES = {
    "dims": ("2D", "3D"),
    "pooling": ("max", "mean", "min"),
    "response": ("modulus", "real", "imaginary"),
    "convention": ("ibsi", "per_mm"),
}


def _check_filter_value(name: str, key: str, v):
    """The normalised value of one key of a filter spec, or ValueError naming both."""
    where = f"filter {name!r}: `{key}`"
    if key in ("sigma_mm", "lambda_mm", "gamma", "truncate"):
        if not _positive(v):
            raise ValueError(f"{where} must be a positive number, got {v!r}")
        return float(v)
    if key in ("size", "level"):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{where} must be a positive integer, got {v!r}")
        return int(v)
    if key == "delta":
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{where} must be a non-negative integer, got {v!r}")
        return int(v)
    if key in ("energy", "rotation_invariant"):
        if not isinstance(v, bool):
            raise ValueError(f"{where} must be true or false, got {v!r}")
        return v
    if key == "theta_deg":
        if not _finite(v):
            raise ValueError(f"{where} must be a finite number of degrees, got {v!r}")
        return float(v)
    if key == "theta_step_deg":
        if not _positive(v) or v > 360:
            raise ValueError(f"{where} must be a number of degrees in (0, 360], got {v!r}")
        return float(v)
    if key == "mode":
        from .._shared.boundary import MODE_ALIASES, MODES

        if not isinstance(v, str) or MODE_ALIASES.get(v, v) not in MODES:
            raise ValueError(f"{where} must be one of {MODES}, got {v!r}")
        return MODE_ALIASES.get(v, v)
    if key in _CHOICES:
        if v not in _CHOICES[key]:
            raise ValueError(f"{where} must be one of {_CHOICES[key]}, got {v!r}")
        return v
    if key in ("kernel", "family", "set"):
        if not isinstance(v, str) or not v:
            raise ValueError(f"{where} must be a non-empty string, got {v!r}")
        return v
    if key == "tensor_sigma_mm":
        if not _positive(v):
            raise ValueError(f"{where} must be a positive number (mm) or None, got {v!r}")
        return float(v)
    if key == "order":
        from ..filters._riesz import check_riesz_order

        try:
            return check_riesz_order(v, len(v) if hasattr(v, "__len__") else 3)
        except ValueError as exc:
            raise ValueError(f"filter {name!r}: {exc}") from None
    if key == "of":
        try:
            return FilterSpec.from_any(v)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where} must be a filter spec (the filter whose response is "
                             f"transformed), got {v!r}: {exc}") from None
    raise ValueError(f"{where} is not a filter key")  # pragma: no cover - keys are fixed


def _number(v) -> str:
    return repr(float(v))



@dataclass(frozen=True)
class FilterSpec:
    """One filter of the filter bank: a name and the keys of that filter.

    Unset keys (None) take the filter's default; :meth:`to_dict` writes only the keys
    that were set, so the settings of earlier releases read and write unchanged.

    Parameters
    ----------
    name : {"gaussian", "log", "gradient_magnitude", "mean", "laws", "gabor", "wavelet", "simoncelli", "riesz"}
        ``gaussian``: Gaussian smoothing; ``log``: Laplacian of Gaussian;
        ``gradient_magnitude``: Gaussian gradient magnitude; ``mean``: mean (box) filter;
        ``laws``: :func:`medimg_fast.filters.laws_filter`; ``gabor``:
        :func:`medimg_fast.filters.gabor_filter`; ``wavelet``:
        :func:`medimg_fast.filters.wavelet_filter`; ``simoncelli``:
        :func:`medimg_fast.filters.simoncelli_filter`; ``riesz``:
        :func:`medimg_fast.filters.riesz_transform` of the image or of another
        filter's response.
    sigma_mm : float
        Standard deviation of the Gaussian in millimetres (``gaussian``, ``log``,
        ``gradient_magnitude``), of the Gabor envelope (``gabor``).
    size : int
        Edge length of the mean-filter neighbourhood in voxels (``mean``).
    truncate : float, optional
        Gaussian (and Gabor) kernel half-width in standard deviations; default 4.
    mode : str, optional
        Boundary mode, one of reflect, nearest, mirror, constant, wrap (constant is
        zero); default "reflect" ("wrap" for ``simoncelli``).
    dims : {"3D", "2D"}, optional
        "2D": slice by slice along z of a (z, y, x) volume; default "3D" ("2D" for
        ``gabor``, whose "3D" pools the three orthogonal planes).
    convention : {"ibsi", "per_mm"}, optional
        ``log`` only.  "per_mm": the second derivatives per mm^2
        (:func:`medimg_fast.filters.gaussian_laplace` with ``spacing``, the filter
        bank's original meaning).  "ibsi": IBSI-2's LoG, ``sigma_mm`` converted to voxels
        and the derivatives per voxel (no ``1/spacing**2``), the default.  The two agree
        for 1 mm voxels; "per_mm" adds ``_permm`` to the feature prefix.
    kernel, energy, delta, rotation_invariant, pooling
        ``laws``: as :func:`medimg_fast.filters.laws_filter` (defaults: no energy,
        delta 7, no rotation invariance, max pooling).
    lambda_mm, gamma, theta_deg, theta_step_deg, response
        ``gabor``: as :func:`medimg_fast.filters.gabor_filter` (response default
        "modulus", pooling default "mean").
    family, set, level
        ``wavelet``: as :func:`medimg_fast.filters.wavelet_filter`; ``level`` also
        for ``simoncelli`` (default 1); wavelet pooling default "mean".
    order, of, tensor_sigma_mm
        ``riesz``: ``order`` is the Riesz component, one non-negative integer per
        filtered axis in array order ((z, y, x) for "3D", (y, x) for "2D"; IBSI's
        x-first ``(l_x, l_y, l_z)`` is ``[l_z, l_y, l_x]``), total order >= 1; ``of``
        the spec of the filter whose response is transformed (``log``: Riesz-LoG,
        ``simoncelli``, ``wavelet``, ``gabor``, ...), None for the image itself.
        ``tensor_sigma_mm``: align the component to the local dominant orientation,
        with a structure-tensor window of this many mm (``order`` then counts along the
        local frame, dominant orientation first; see
        :func:`~medimg_fast.filters.riesz_transform`), None (default) for the grid
        axes.  ``mode`` (default "wrap") and ``dims`` are the Riesz stage's; the prefix
        is ``riesz_z<n_z>y<n_y>x<n_x>`` (``_aligned<sigma>mm``) then the inner
        filter's prefix, e.g. ``riesz_z1y0x0_log_sigma3.0mm_constant``.

    Examples
    --------
    >>> FilterSpec(name="log", sigma_mm=1.0).prefix
    'log_sigma1.0mm'
    >>> FilterSpec.from_any({"name": "laws", "kernel": "E5L5S5", "energy": True,
    ...                      "rotation_invariant": True, "mode": "constant"}).prefix
    'laws_E5L5S5_energy7_rotmax_constant'
    """

    name: str
    sigma_mm: float | None = None
    size: int | None = None
    truncate: float | None = None
    mode: str | None = None
    dims: str | None = None
    convention: str | None = None
    kernel: str | None = None
    energy: bool | None = None
    delta: int | None = None
    rotation_invariant: bool | None = None
    pooling: str | None = None
    lambda_mm: float | None = None
    gamma: float | None = None
    theta_deg: float | None = None
    theta_step_deg: float | None = None
    response: str | None = None
    family: str | None = None
    set: str | None = None
    level: int | None = None
    order: tuple[int, ...] | None = None
    of: FilterSpec | None = None
    tensor_sigma_mm: float | None = None

    def __post_init__(self):
        if self.name not in FILTER_NAMES:
            raise ValueError(
                f"`filters[].name` must be one of {sorted(FILTER_NAMES)}, got {self.name!r}"
            )
        keys = _FILTER_KEYS[self.name]
        for f in dataclasses.fields(self):
            if f.name == "name":
                continue
            value = getattr(self, f.name)
            if f.name not in keys:
                if value is not None:
                    raise ValueError(
                        f"filter {self.name!r} does not take `{f.name}` (got {value!r}); "
                        f"it takes {', '.join(f'`{k}`' for k in keys)}"
                    )
                continue
            if value is None:
                if keys[f.name] is _REQUIRED:
                    kind = "positive " if f.name in ("sigma_mm", "lambda_mm", "gamma") else ""
                    raise ValueError(f"filter {self.name!r} needs a {kind}`{f.name}`, got None")
                continue
            object.__setattr__(self, f.name, _check_filter_value(self.name, f.name, value))
        self._check_combinations()

    def _check_combinations(self):
        p = self.params
        if self.name == "laws":
            from ..filters._laws import parse_laws_kernel

            try:
                parse_laws_kernel(p["kernel"], 3 if p["dims"] == "3D" else 2)
            except ValueError as exc:
                raise ValueError(f"filter 'laws': {exc}") from None
        if self.name == "wavelet":
            from ..filters._wavelet import _check_set, wavelet_taps

            try:
                _check_set(p["set"], 3 if p["dims"] == "3D" else 2)
                wavelet_taps(p["family"])
            except ValueError as exc:
                raise ValueError(f"filter 'wavelet': {exc}") from None
        if self.name == "riesz":
            n_axes = 3 if p["dims"] == "3D" else 2
            if len(p["order"]) != n_axes:
                raise ValueError(f"filter 'riesz': `order` must have {n_axes} entries for "
                                 f"dims={p['dims']!r} (array order), got {list(p['order'])!r}")
        if self.name == "gabor":
            if p["rotation_invariant"] and p["theta_step_deg"] is None:
                raise ValueError("filter 'gabor': `rotation_invariant` true needs "
                                 "`theta_step_deg`, got None")
            if not p["rotation_invariant"] and p["theta_step_deg"] is not None:
                raise ValueError(f"filter 'gabor': `theta_step_deg` applies with "
                                 f"`rotation_invariant` true only, got "
                                 f"{p['theta_step_deg']!r}")

    @property
    def params(self) -> dict:
        """Every key of this filter with its effective value (defaults filled in)."""
        out = {}
        for key, default in _FILTER_KEYS[self.name].items():
            value = getattr(self, key)
            out[key] = default if value is None else value
        if self.name == "log" and out["convention"] is None:
            out["convention"] = "ibsi"
        return out

    @property
    def prefix(self) -> str:
        """The feature-name prefix, unique per response: e.g. ``log_sigma1.0mm``,
        ``laws_E5L5S5_energy7_rotmax_constant``; keys at their defaults add nothing."""
        p = self.params
        keys = _FILTER_KEYS[self.name]
        if self.name == "mean":
            parts = [f"mean_size{p['size']}"]
        elif self.name in ("gaussian", "log", "gradient_magnitude"):
            parts = [f"{self.name}_sigma{p['sigma_mm']!r}mm"]
            if self.name == "log" and p["convention"] == "per_mm":
                parts.append("permm")
        elif self.name == "laws":
            parts = [f"laws_{p['kernel']}"]
            if p["energy"]:
                parts.append(f"energy{p['delta']}")
        elif self.name == "gabor":
            parts = [(f"gabor_sigma{p['sigma_mm']!r}mm_lambda{p['lambda_mm']!r}mm"
                      f"_gamma{p['gamma']!r}_theta{p['theta_deg']!r}")]
            if p["rotation_invariant"]:
                parts.append(f"step{p['theta_step_deg']!r}")
            if p["response"] != "modulus":
                parts.append(p["response"])
        elif self.name == "wavelet":
            parts = [f"wavelet_{p['family']}_{p['set']}_level{p['level']}"]
        elif self.name == "riesz":
            names = "zyx" if len(p["order"]) == 3 else "yx"
            parts = ["riesz_" + "".join(f"{a}{n}" for a, n in zip(names, p["order"]))]
            if p["tensor_sigma_mm"] is not None:
                parts.append(f"aligned{p['tensor_sigma_mm']!r}mm")
        else:
            parts = [f"simoncelli_level{p['level']}"]
        if p.get("rotation_invariant"):
            parts.append(f"rot{p['pooling']}")
        if "truncate" in keys and p["truncate"] != keys["truncate"]:
            parts.append(f"truncate{p['truncate']!r}")
        if p["mode"] != keys["mode"]:
            parts.append(p["mode"])
        if p["dims"] != keys["dims"]:
            parts.append(p["dims"])
        if self.name == "riesz" and p["of"] is not None:
            parts.append(p["of"].prefix)
        return "_".join(parts)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if getattr(self, f.name) is not None}
        if "order" in out:
            out["order"] = list(out["order"])
        if "of" in out:
            out["of"] = out["of"].to_dict()
        return out

    @classmethod
    def from_any(cls, spec) -> FilterSpec:
        if isinstance(spec, FilterSpec):
            return spec
        if not isinstance(spec, Mapping):
            raise TypeError(
                f"each entry of `filters` must be a FilterSpec or a dict, got {spec!r}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown key(s) in a `filters` entry: {sorted(unknown)}; "
                             f"known keys: {sorted(known)}")
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
