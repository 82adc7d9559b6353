"""IBSI intensity-volume histogram (``ivh_*``), from mergeable per-block counts.

The IVH has its own discretisation (IBSI-1 reference manual, arXiv:1612.07003, section
"Intensity-volume histogram features"), set apart from the texture's:

- none: the grey levels are the integers from the lower to the upper end of the
  intensity range (CT in HU);
- fixed bin size ``w``: bins ``floor((x - lo) / w) + 1`` from the lower end ``lo`` of the
  range, represented by their centres ``lo + (i - 1/2) w``;
- fixed bin number ``N``: the texture's fixed bin number formula, levels ``1..N``.

Without ``ivh_bin_width``/``ivh_bin_count``, integer intensities are used as they are and
other intensities take a fixed bin number of :data:`DEFAULT_BIN_COUNT` (MIRP's choice
for images without a natural integer scale, such as MR).

The intensity range is the re-segmentation range where it has ends, else the ROI
minimum/maximum.  With ``gamma_i`` the intensity fraction of level ``i`` (0 at the
lowest level, 1 at the highest) and ``nu_i`` the fraction of the ROI volume with a
level of at least ``i``: ``V_x`` is the largest ``nu_i`` with ``gamma_i >= x`` and
``I_x`` the lowest level with ``nu_i <= x`` (past the highest level when there is none).
Counts per level are a fixed-bin histogram, so per-block counts add up exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_BIN_COUNT", "IVH_TAGS", "IvhBins", "ivh_features"]

#: Fixed bin number of the IVH of non-integer intensities when the settings give none.
DEFAULT_BIN_COUNT = 1000

IVH_TAGS = ("ivh_v10", "ivh_v90", "ivh_i10", "ivh_i90", "ivh_diff_v10_v90",
            "ivh_diff_i10_i90", "ivh_auc")


@dataclass(frozen=True)
class IvhBins:
    """The IVH grey levels: ``index = floor(scale * (x - lo)) `` in ``[0, n - 1]`` and the
    level value of each index, ``values[index]``."""

    lo: float
    scale: float
    n: int
    values: np.ndarray
    #: the intensity reported when no level has ``nu <= x``: one step past the top
    beyond: float

    @classmethod
    def from_settings(cls, settings, vmin: float, vmax: float, *,
                      integer_valued: bool = True) -> IvhBins:
        """The bins of ``settings`` for ROI values in ``[vmin, vmax]``; ``integer_valued``
        says whether every ROI value is an integer (then no discretisation is needed)."""
        rng = settings.reseg_range or (None, None)
        lo = vmin if rng[0] is None else rng[0]
        hi = vmax if rng[1] is None else rng[1]
        count = settings.ivh_bin_count
        if count is None and settings.ivh_bin_width is None and not integer_valued:
            count = DEFAULT_BIN_COUNT
        if count is not None:
            n = count
            span = vmax - vmin
            scale = n / span if span > 0 else 0.0
            values = np.arange(1, n + 1, dtype=np.float64)
            return cls(vmin, scale, n, values, n + 1.0)
        if settings.ivh_bin_width is not None:
            w = settings.ivh_bin_width
            n = math.ceil((hi - lo) / w) + 1
            values = lo + (np.arange(1, n + 1) - 0.5) * w
            return cls(lo, 1.0 / w, n, values, float(values[-1] + w))
        if not (float(lo).is_integer() and float(hi).is_integer()):
            raise ValueError(
                f"the intensity-volume histogram without discretisation needs integer "
                f"intensities (such as HU), got a range {lo!r}..{hi!r}: set `ivh_bin_width` "
                f"or `ivh_bin_count`"
            )
        n = int(hi - lo) + 1
        return cls(lo, 1.0, n, lo + np.arange(n, dtype=np.float64), hi + 1.0)

    def counts(self, values: np.ndarray) -> np.ndarray:
        """Per-level counts of ROI ``values`` (float64); the blocks' counts add up."""
        if values.size and self.scale == 0.0:
            idx = np.zeros(values.size, np.int64)
        else:
            idx = np.floor((values - self.lo) * self.scale).astype(np.int64)
        if idx.size and (idx.min() < -1 or idx.max() > self.n):
            # more than one bin outside: values outside the stated range
            raise ValueError(
                f"ROI intensities {values.min()!r}..{values.max()!r} lie outside the "
                f"intensity-volume histogram's range starting at {self.lo!r}"
            )
        np.clip(idx, 0, self.n - 1, out=idx)
        return np.bincount(idx, minlength=self.n)


def ivh_features(counts: np.ndarray, bins: IvhBins) -> dict[str, float]:
    """The IBSI IVH features from per-level counts (``counts[k]`` for ``bins.values[k]``)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    if n == 0:
        raise ValueError("the ROI is empty: `mask` selects no voxel")
    g = bins.values
    span = g[-1] - g[0]
    gamma = (g - g[0]) / span if span > 0 else np.zeros_like(g)
    # fraction of the volume at or above each level
    nu = 1.0 - np.concatenate([[0.0], np.cumsum(counts)[:-1]]) / n

    def v_at(x):  # ivh_v<x>: volume fraction at intensity fraction x
        sel = gamma >= x
        return float(nu[sel].max()) if sel.any() else 0.0

    def i_at(x):  # ivh_i<x>: intensity at volume fraction x
        sel = nu <= x
        return float(g[sel].min()) if sel.any() else bins.beyond

    v10, v90, i10, i90 = v_at(0.10), v_at(0.90), i_at(0.10), i_at(0.90)
    # trapezoidal area under nu(gamma) (IBSI gives no reference value for it)
    auc = float(np.sum((nu[1:] + nu[:-1]) * np.diff(gamma)) / 2.0) if span > 0 else math.nan
    return {"ivh_v10": v10, "ivh_v90": v90, "ivh_i10": i10, "ivh_i90": i90,
            "ivh_diff_v10_v90": v10 - v90, "ivh_diff_i10_i90": i10 - i90, "ivh_auc": auc}
