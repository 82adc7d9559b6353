"""IBSI neighbouring grey level dependence matrix (NGLDM) features, tag prefix ``ngl``.

For each ROI voxel of grey level ``i`` the dependence ``k`` is the number of its
neighbours within Chebyshev distance ``distance`` (26-neighbourhood in 3-D, the 8
in-plane neighbours in 2-D for ``distance=1``) that lie in the ROI and differ from ``i``
by at most ``alpha``.  The matrix ``s[i - 1, k]`` counts the voxels of level ``i`` and
dependence ``k``; IBSI's dependence index is ``j = k + 1``.  The family is not
directional: one matrix per unit (the volume, or one z-slice).

Counting is chunk-exact: a block counts only the voxels of its core and looks
``distance`` voxels into its halo for their neighbours, so the per-block counts add up
to the counts of the whole volume.  A 3-D neighbourhood contains the in-plane one, so
the 2-D and 3-D dependences of a voxel come from one visit.

Definitions: IBSI reference manual (Zwanenburg et al., arXiv:1612.07003), section
"Neighbouring grey level dependence based features"; logarithms are base 2.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from ._formulas import NV_COUNTS, emphasis_table
from ._texture import (
    TextureCounts,
    aggregate,
    check_level_range,
    check_levels,
)

__all__ = ["NGLDM_FEATURES", "count_ngldm", "ngldm_aggregate", "ngldm_features"]

NGLDM_FEATURES = (
    "lde", "hde", "lgce", "hgce", "ldlge", "ldhge", "hdlge", "hdhge", "glnu", "glnu_norm",
    "dcnu", "dcnu_norm", "dc_perc", "gl_var", "dc_var", "dc_entr", "dc_energy",
)


@functools.lru_cache(maxsize=1)
def _numba_kernels():
    import numba

    @numba.njit(cache=True, nogil=True)
    def add_dependent(k, row, flat, start, offsets, m0, m1, alpha):
        """``k[x] +=`` how many of the neighbours ``offsets[m0:m1]`` of the row
        ``row = flat[start:start + len(row)]`` are dependent: one neighbour at a time
        over the whole row, a loop without branches (SIMD)."""
        n = row.size
        for m in range(m0, m1):
            nb = flat[start + offsets[m]:start + offsets[m] + n]
            for x in range(n):
                b = nb[x]
                k[x] += (b != 0) & (abs(b - row[x]) <= alpha)

    @numba.njit(cache=True, nogil=True)
    def count_row(counts, row, k):
        for x in range(row.size):
            if row[x] != 0:
                counts[row[x] - 1, k[x]] += 1

    @numba.njit(cache=True, nogil=True)
    def dependence_counts(padded, pad, bounds, offsets, n_in_plane, ng, alpha, want_2d,
                          want_3d):
        """Dependence counts of the core voxels ``bounds`` (unpadded coordinates).

        ``padded`` is the level volume with ``pad`` planes of zeros on every face, so
        every neighbour exists; ``offsets`` are the neighbour steps in the flattened
        array, the ``n_in_plane`` in-plane ones first.  Returns the per-slice counts
        ``(n_core_slices, ng, n_in_plane + 1)`` (empty unless ``want_2d``) and the 3-D
        counts ``(ng, n_offsets + 1)``.  A row of voxels at a time: the in-plane
        dependences (the 2-D counts), then the others (the 3-D counts).
        """
        _, nyp, nxp = padded.shape
        flat = padded.ravel()
        n_off = offsets.size
        z0, z1 = bounds[0, 0], bounds[0, 1]
        x0, x1 = bounds[2, 0], bounds[2, 1]
        per_slice = np.zeros((z1 - z0 if want_2d else 0, ng, n_in_plane + 1), np.int64)
        volume = np.zeros((ng, n_off + 1), np.int64)
        k = np.empty(max(x1 - x0, 0), np.int32)
        for z in range(z0, z1):
            for y in range(bounds[1, 0], bounds[1, 1]):
                start = ((z + pad) * nyp + y + pad) * nxp + pad + x0
                row = flat[start:start + k.size]
                k[:] = 0
                add_dependent(k, row, flat, start, offsets, 0, n_in_plane, alpha)
                if want_2d:
                    count_row(per_slice[z - z0], row, k)
                if want_3d:
                    add_dependent(k, row, flat, start, offsets, n_in_plane, n_off, alpha)
                    count_row(volume, row, k)
        return per_slice, volume

    return dependence_counts


def _neighbour_offsets(distance):
    """``(dz, dy, dx)`` of the Chebyshev ball without its centre, in-plane ones first."""
    r = range(-distance, distance + 1)
    ball = [d for d in itertools.product(r, r, r) if d != (0, 0, 0)]
    return np.array([d for d in ball if d[0] == 0] + [d for d in ball if d[0] != 0],
                    dtype=np.int64)


def count_ngldm(levels, ng, dims, *, distance=1, alpha=0, core=None) -> TextureCounts:
    """Neighbouring grey level dependence counts of a level volume per IBSI unit.

    Parameters
    ----------
    levels : (z, y, x) int array
        Discretised grey levels ``1..ng`` inside the ROI, 0 outside.
    ng : int
        Number of grey levels (matrix rows).
    dims : collection of str
        Which of ``"2D"``, ``"2.5D"``, ``"3D"`` the counts are for.
    distance : int, optional
        Chebyshev radius of the neighbourhood (IBSI ``delta``), at least 1.
    alpha : int, optional
        Coarseness: a neighbour is dependent when its level differs by at most
        ``alpha``; at least 0.
    core : tuple of 3 slices, optional
        The voxels of ``levels`` that are counted (step 1); the rest is a halo of at
        least ``distance`` voxels that only serves as neighbours, so the counts of
        blocks that tile a volume add up to the counts of the volume.  Default: every
        voxel.

    Returns
    -------
    TextureCounts
        ``volume`` (when ``"3D"`` is asked): ``(1, ng, (2 * distance + 1) ** 3)`` int64
        counts, row ``i - 1`` for level ``i``, column ``k`` for dependence ``k``
        (IBSI ``j = k + 1``).  ``slices`` (when ``"2D"`` or ``"2.5D"`` is asked): z index
        -> ``(1, ng, (2 * distance + 1) ** 2)`` in-plane counts for every slice with ROI
        voxels in the core.  The z index is that of ``levels``, not of the core: a
        caller counting a block adds the block's z offset.

    Raises
    ------
    ValueError
        If ``levels`` is not 3-D or out of ``0..ng``, ``ng < 1``, ``dims`` has an
        unknown entry, ``distance < 1``, ``alpha < 0``, or ``core`` is not three slices
        of step 1.
    TypeError
        If ``levels`` is not of an integer dtype.

    Notes
    -----
    Neighbours outside the array count as outside the ROI.  The matrices have a column
    for every possible dependence, so matrices of different blocks add without padding.

    Examples
    --------
    >>> lev = np.array([[[1, 1, 2]]], dtype=np.int32)
    >>> count_ngldm(lev, 2, ["2D"]).slices[0][0][:, :3]
    array([[0, 2, 0],
           [1, 0, 0]])
    """
    levels, ng = check_levels(levels, ng, dims, values=False)
    levels = np.asarray(levels)
    if int(distance) != distance or distance < 1:
        raise ValueError(f"`distance` must be an integer of at least 1, got {distance!r}")
    if int(alpha) != alpha or alpha < 0:
        raise ValueError(f"`alpha` must be a non-negative integer, got {alpha!r}")
    if core is None:
        core = (slice(None),) * 3
    if (len(core) != 3 or not all(isinstance(c, slice) for c in core)
            or any(c.indices(n)[2] != 1 for c, n in zip(core, levels.shape))):
        raise ValueError(f"`core` must be a tuple of 3 slices of step 1, got {core!r}")
    check_level_range(levels, ng)
    distance = int(distance)
    want_2d = "2D" in dims or "2.5D" in dims
    want_3d = "3D" in dims
    bounds = np.array([c.indices(n)[:2] for c, n in zip(core, levels.shape)], np.int64)
    bounds[:, 1] = np.maximum(bounds[:, 0], bounds[:, 1])  # an empty core, not a negative one
    padded = np.pad(np.ascontiguousarray(levels, dtype=np.int32), distance)
    nyp, nxp = padded.shape[1:]
    offsets = _neighbour_offsets(distance)
    steps = (offsets[:, 0] * nyp + offsets[:, 1]) * nxp + offsets[:, 2]
    n_in_plane = int(np.count_nonzero(offsets[:, 0] == 0))
    per_slice, volume = _numba_kernels()(padded, distance, bounds, steps, n_in_plane, ng,
                                         int(alpha), want_2d, want_3d)
    slices = {int(bounds[0, 0] + z): per_slice[z][None]
              for z in range(per_slice.shape[0]) if per_slice[z].any()}
    return TextureCounts(volume[None] if want_3d else None, slices)


def ngldm_features(matrix) -> dict[str, float]:
    """The 17 IBSI dependence features of one dependence matrix.

    Parameters
    ----------
    matrix : (Ng, Nd) array
        Dependence counts ``s_ij``, row ``i - 1`` for grey level ``i``, column ``j - 1``
        for dependence ``j - 1`` (one unit, or several merged by summation).

    Returns
    -------
    dict
        Feature name (without ``ngl_`` prefix and aggregation suffix) to value; NaN for
        every feature of an empty matrix.

    Notes
    -----
    ``Ns = sum s_ij`` is the number of neighbourhoods, ``p_ij = s_ij / Ns``.  Every ROI
    voxel has a neighbourhood, so ``Nv = Ns`` and dependence count percentage is 1.

    Examples
    --------
    >>> f = ngldm_features(np.array([[0, 2], [1, 0]]))
    >>> f["lde"], f["lgce"]
    (0.5, 0.75)
    """
    # ngl_lde, ngl_hde, ngl_lgce, ngl_hgce, ngl_ldlge, ngl_ldhge, ngl_hdlge, ngl_hdhge,
    # ngl_glnu(_norm), ngl_dcnu(_norm), ngl_dc_perc, ngl_gl_var, ngl_dc_var, ngl_dc_entr:
    # the formulas IBSI shares with the run and zone matrices (one neighbourhood per
    # voxel: Nv = Ns), then ngl_dc_energy
    m = np.asarray(matrix)
    if m.ndim != 2:
        raise ValueError(f"`matrix` must be 2-D (Ng, Nd), got shape {m.shape}")
    return dict(zip(NGLDM_FEATURES, _dependence_table(m[None], False)[0][0].tolist()))


def _dependence_table(stack, with_sum):
    return emphasis_table(stack, with_sum=with_sum, nv_mode=NV_COUNTS)


def ngldm_aggregate(counts: TextureCounts, dims) -> dict[str, float]:
    """IBSI-tagged dependence features ``ngl_{name}_{2D,2_5D,3D}`` of ``counts``.

    Examples
    --------
    >>> lev = np.array([[[1, 1, 2]]], dtype=np.int32)
    >>> ngldm_aggregate(count_ngldm(lev, 2, ["3D"]), ["3D"])["ngl_dc_perc_3D"]
    1.0
    """
    return aggregate(counts, None, NGLDM_FEATURES, "ngl", dims, directional=False,
                     features_stack=_dependence_table)
