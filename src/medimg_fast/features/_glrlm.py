"""IBSI grey level run length matrix (GLRLM) features, tag prefix ``rlm``.

A run is a maximal line of consecutive voxels of one grey level along a direction; the
matrix ``r[i - 1, j - 1]`` counts the runs of level ``i`` and length ``j``.  Runs are
broken by voxels outside the ROI (level 0) and by the image edges.  Each run is counted
once, at the voxel where it starts: ``level(v) != level(v - d)``.

Units (see :mod:`._texture`): 3-D, one matrix per each of the 13 directions of
:func:`directions_3d`; 2-D, one matrix per z-slice and each of the 4 in-plane directions
of :func:`directions_2d`.  A run along an in-plane direction never leaves its slice, so
the 3-D matrix of an in-plane direction is the sum of the slices' matrices: the kernel
counts the in-plane directions slice by slice and only the 9 out-of-plane directions
over the volume.

Definitions: IBSI reference manual (Zwanenburg et al., arXiv:1612.07003), section "Grey
level run length based features"; logarithms are base 2.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ._texture import TEXTURE_DIMS, TextureCounts, aggregate, directions_3d

__all__ = ["GLRLM_FEATURES", "count_glrlm", "glrlm_aggregate", "glrlm_features"]

GLRLM_FEATURES = (
    "sre", "lre", "lgre", "hgre", "srlge", "srhge", "lrlge", "lrhge", "glnu",
    "glnu_norm", "rlnu", "rlnu_norm", "r_perc", "gl_var", "rl_var", "rl_entr",
)


@functools.lru_cache(maxsize=1)
def _numba_kernels():
    import numba

    @numba.njit(cache=True, nogil=True)
    def run_length_counts(padded, z0, z1, offsets, ng, max_len):
        """Runs per direction that start at a voxel of padded z-planes ``z0..z1 - 1``.

        ``padded`` is the level volume with one plane of zeros on every face, so a run
        always ends before the array does and ``v - d`` always exists; ``offsets`` are
        the directions as steps in the flattened array.  Returns the counts
        ``(n_directions, ng, max_len)`` and the longest run seen.
        """
        _, nyp, nxp = padded.shape
        flat = padded.ravel()
        nd = offsets.size
        out = np.zeros((nd, ng, max_len), np.int64)
        longest = 0
        for z in range(z0, z1):
            for y in range(1, nyp - 1):
                base = (z * nyp + y) * nxp
                for x in range(1, nxp - 1):
                    v = base + x
                    a = flat[v]
                    if a == 0:
                        continue
                    for k in range(nd):
                        step = offsets[k]
                        if flat[v - step] == a:
                            continue  # not the first voxel of its run
                        n = 1
                        w = v + step
                        while flat[w] == a:
                            n += 1
                            w += step
                        out[k, a - 1, n - 1] += 1
                        longest = max(longest, n)
        return out, longest

    return run_length_counts


def _check_levels(levels, ng, dims):
    levels = np.asarray(levels)
    if levels.ndim != 3:
        raise ValueError(f"`levels` must be a 3-D (z, y, x) array, got {levels.ndim}-D")
    if levels.dtype.kind not in "iu":
        raise TypeError(f"`levels` must hold integer grey levels, got dtype {levels.dtype}")
    ng = int(ng)
    if ng < 1:
        raise ValueError(f"`ng` must be at least 1, got {ng!r}")
    unknown = set(dims) - set(TEXTURE_DIMS)
    if unknown:
        raise ValueError(f"`dims` must be a subset of {TEXTURE_DIMS}, got {sorted(dims)!r}")
    if levels.size and (levels.min() < 0 or levels.max() > ng):
        raise ValueError(f"`levels` must lie in 0..{ng} (0 outside the ROI), got "
                         f"{levels.min()}..{levels.max()}")
    return np.ascontiguousarray(levels, dtype=np.int32), ng


def count_glrlm(levels, ng, dims) -> TextureCounts:
    """Run length counts of a level volume per IBSI unit.

    Parameters
    ----------
    levels : (z, y, x) int array
        Discretised grey levels ``1..ng`` inside the ROI, 0 outside.
    ng : int
        Number of grey levels (matrix rows).
    dims : collection of str
        Which of ``"2D"``, ``"2.5D"``, ``"3D"`` the counts are for.

    Returns
    -------
    TextureCounts
        ``volume`` (when ``"3D"`` is asked): ``(13, ng, max_run)`` int64 counts, one
        matrix per direction of :func:`directions_3d`, row ``i - 1`` for level ``i``,
        column ``j - 1`` for run length ``j``; ``max_run`` is the longest run seen (at
        least 1).  ``slices`` (when ``"2D"`` or ``"2.5D"`` is asked): z index ->
        ``(4, ng, max_run_of_slice)`` for the 4 in-plane directions of
        :func:`directions_2d`, for every slice with ROI voxels.

    Raises
    ------
    ValueError
        If ``levels`` is not 3-D or out of ``0..ng``, ``ng < 1``, or ``dims`` has an
        unknown entry.
    TypeError
        If ``levels`` is not of an integer dtype.

    Notes
    -----
    Each run is counted once, at its first voxel ``v`` along ``d`` (``level(v - d)``
    differs or lies outside the image).  Runs crossing a chunk face are not joined
    here: the counts are those of the whole array given.

    Examples
    --------
    >>> lev = np.array([[[1, 1, 2, 0]]], dtype=np.int32)
    >>> c = count_glrlm(lev, 2, ["2D"])
    >>> c.slices[0][0]          # direction (0, 0, 1): a run 1-1 and a run 2
    array([[0, 1],
           [1, 0]])
    """
    levels, ng = _check_levels(levels, ng, dims)
    want_2d = "2D" in dims or "2.5D" in dims
    want_3d = "3D" in dims
    nz, ny, nx = levels.shape
    padded = np.pad(levels, 1)
    nyp, nxp = ny + 2, nx + 2
    dirs = directions_3d(1)
    steps = (dirs[:, 0] * nyp + dirs[:, 1]) * nxp + dirs[:, 2]
    in_plane = dirs[:, 0] == 0
    kernel = _numba_kernels()

    slices: dict[int, np.ndarray] = {}
    if want_2d or want_3d:  # the 3-D in-plane matrices are sums of the slices'
        plane_steps = np.ascontiguousarray(steps[in_plane])
        for z in np.flatnonzero(levels.any(axis=(1, 2))):
            m, longest = kernel(padded, int(z) + 1, int(z) + 2, plane_steps, ng, max(ny, nx))
            slices[int(z)] = m[:, :, :longest]
    volume = None
    if want_3d:
        out_steps = np.ascontiguousarray(steps[~in_plane])
        m, longest = kernel(padded, 1, nz + 1, out_steps, ng, max(nz, ny, nx, 1))
        longest = max([longest, 1] + [s.shape[2] for s in slices.values()])
        volume = np.zeros((len(dirs), ng, longest), np.int64)
        volume[~in_plane] = m[:, :, :longest]
        plane = volume[in_plane]
        for s in slices.values():
            plane[:, :, :s.shape[2]] += s
        volume[in_plane] = plane
    return TextureCounts(volume, slices if want_2d else {})


def glrlm_features(matrix) -> dict[str, float]:
    """The 16 IBSI run length features of one run length matrix.

    Parameters
    ----------
    matrix : (Ng, Nr) array
        Run counts ``r_ij``, row ``i - 1`` for grey level ``i``, column ``j - 1`` for run
        length ``j`` (one direction, or several merged by summation).

    Returns
    -------
    dict
        Feature name (without ``rlm_`` prefix and aggregation suffix) to value; NaN for
        every feature of an empty matrix.

    Notes
    -----
    ``Ns = sum r_ij`` is the number of runs and ``Nv = sum j r_ij`` the number of
    voxels; for a merged matrix ``Nv`` counts each voxel once per merged direction, as
    IBSI prescribes for run percentage.  ``p_ij = r_ij / Ns``.

    Examples
    --------
    >>> f = glrlm_features(np.array([[2, 1]]))   # two runs of length 1, one of length 2
    >>> f["sre"], f["r_perc"]
    (0.75, 0.75)
    """
    r = np.asarray(matrix, dtype=np.float64)
    ns = r.sum()
    if ns <= 0:
        return {k: math.nan for k in GLRLM_FEATURES}
    ng, nr = r.shape
    i = np.arange(1, ng + 1, dtype=np.float64)[:, None]
    j = np.arange(1, nr + 1, dtype=np.float64)[None, :]
    r_i = r.sum(axis=1)  # runs per grey level
    r_j = r.sum(axis=0)  # runs per run length
    i2 = i * i
    j2 = j * j
    nv = float((r * j).sum())
    p = r / ns
    mu_i = float((p * i).sum())
    mu_j = float((p * j).sum())
    nz = p[p > 0]
    return {
        "sre": float((r_j / j2[0]).sum() / ns),  # rlm_sre
        "lre": float((r_j * j2[0]).sum() / ns),  # rlm_lre
        "lgre": float((r_i / i2[:, 0]).sum() / ns),  # rlm_lgre
        "hgre": float((r_i * i2[:, 0]).sum() / ns),  # rlm_hgre
        "srlge": float((r / (i2 * j2)).sum() / ns),  # rlm_srlge
        "srhge": float((r * i2 / j2).sum() / ns),  # rlm_srhge
        "lrlge": float((r * j2 / i2).sum() / ns),  # rlm_lrlge
        "lrhge": float((r * i2 * j2).sum() / ns),  # rlm_lrhge
        "glnu": float((r_i * r_i).sum() / ns),  # rlm_glnu
        "glnu_norm": float((r_i * r_i).sum() / ns ** 2),  # rlm_glnu_norm
        "rlnu": float((r_j * r_j).sum() / ns),  # rlm_rlnu
        "rlnu_norm": float((r_j * r_j).sum() / ns ** 2),  # rlm_rlnu_norm
        "r_perc": float(ns / nv),  # rlm_r_perc
        "gl_var": float((p * (i - mu_i) ** 2).sum()),  # rlm_gl_var
        "rl_var": float((p * (j - mu_j) ** 2).sum()),  # rlm_rl_var
        "rl_entr": float(-(nz * np.log2(nz)).sum()),  # rlm_rl_entr
    }


def glrlm_aggregate(counts: TextureCounts, dims) -> dict[str, float]:
    """IBSI-tagged run length features ``rlm_{name}_{2D,2_5D,3D}_{avg,comb}`` of ``counts``.

    Examples
    --------
    >>> lev = np.array([[[1, 1, 2, 0]]], dtype=np.int32)
    >>> feats = glrlm_aggregate(count_glrlm(lev, 2, ["2D"]), ["2D"])
    >>> round(feats["rlm_r_perc_2D_comb"], 4)   # 11 runs over 4 x 3 voxels
    0.9167
    """
    return aggregate(counts, glrlm_features, GLRLM_FEATURES, "rlm", dims, directional=True)
