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
from dataclasses import dataclass, field

import numpy as np

from ._formulas import NV_RUN_VOXELS, emphasis_table
from ._joins import block_core, linear_steps, trim_counts
from ._texture import (
    TEXTURE_DIMS,
    TextureCounts,
    aggregate,
    check_level_range,
    check_levels,
    directions_3d,
)

__all__ = ["GLRLM_FEATURES", "RunPartial", "count_glrlm", "glrlm_aggregate", "glrlm_block",
           "glrlm_features"]

GLRLM_FEATURES = (
    "sre", "lre", "lgre", "hgre", "srlge", "srhge", "lrlge", "lrhge", "glnu",
    "glnu_norm", "rlnu", "rlnu_norm", "r_perc", "gl_var", "rl_var", "rl_entr",
)


@functools.lru_cache(maxsize=1)
def _numba_kernels():
    import numba

    @numba.njit(cache=True, nogil=True)
    def run_length_counts(padded, z0, z1, offsets, ng, max_len):
        """Runs per direction within the padded z-planes ``z0..z1 - 1``.

        ``padded`` is the level volume with one plane of zeros on every face, so a run
        always ends before the array does and ``v - d`` always exists; ``offsets`` are
        the directions as positive steps in the flattened array, and every run along
        them lies within the planes (the in-plane steps of one slice, or any steps
        over all planes ``1..nz``).  Returns the counts ``(n_directions, ng,
        max_len)`` and the longest run seen.

        One pass per direction over the ROI voxels in raster order carries the length
        of the run so far (``run[v] = run[v - d] + 1`` when ``v - d`` has the level of
        ``v``, else 1) and notes a run at its last voxel: branch-free, instead of
        walking each run from its first voxel, the same counts.

        ``run`` is a ring whose size is a power of two above the largest step, about a
        plane of int32 rather than a volume: ``run[v - d]`` was written in this pass and
        not overwritten since, and it is read only where ``v - d`` is in the ROI.  Each
        voxel writes its ``(level, length)`` cell at the end of a list that grows only
        where a run ends, and the list is counted after the pass.  Incrementing a cell
        at every voxel (a discard cell where no run ends) chained the increments of a
        run through one memory cell: the GLRLM of a 200k-voxel ROI took 44 ms that way,
        32 ms this way.
        """
        _, nyp, nxp = padded.shape
        flat = padded.ravel()
        nd = offsets.size
        roi = np.empty(max(z1 - z0, 0) * (nyp - 2) * (nxp - 2), np.int64)
        n = 0
        for z in range(z0, z1):
            for y in range(1, nyp - 1):
                base = (z * nyp + y) * nxp
                for x in range(1, nxp - 1):
                    if flat[base + x] != 0:
                        roi[n] = base + x
                        n += 1
        size = 1
        for k in range(nd):
            while size <= offsets[k]:
                size *= 2
        mask = size - 1
        run = np.zeros(size, np.int32)
        ends = np.empty(n + 1, np.int64)  # the cells of the runs that end, in order
        stride = max_len + 1
        out = np.zeros((nd, ng + 1, stride), np.int64)
        for k in range(nd):
            step = offsets[k]
            counts = out[k].ravel()
            n_ends = 0
            for i in range(n):
                v = roi[i]
                a = flat[v]
                r = run[(v - step) & mask] * np.int32(flat[v - step] == a) + np.int32(1)
                run[v & mask] = r
                ends[n_ends] = a * stride + r
                n_ends += flat[v + step] != a
            for e in range(n_ends):
                counts[ends[e]] += 1
        longest = 0
        for k in range(nd):
            for a in range(1, ng + 1):
                for j in range(longest + 1, max_len + 1):
                    if out[k, a, j] != 0:
                        longest = j
        return out[:, 1:, 1:], longest

    return run_length_counts


def _is_dask(x) -> bool:
    return type(x).__module__.split(".")[0] == "dask"


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
    differs or lies outside the image).  A Dask ``levels`` is counted chunk by chunk
    (:func:`glrlm_block` partials with a one-voxel halo, joined across chunk faces by
    :meth:`RunPartial.merge`): the same counts as for the whole array, never holding
    more than a chunk and the runs that cross faces in memory.

    Examples
    --------
    >>> lev = np.array([[[1, 1, 2, 0]]], dtype=np.int32)
    >>> c = count_glrlm(lev, 2, ["2D"])
    >>> c.slices[0][0]          # direction (0, 0, 1): a run 1-1 and a run 2
    array([[0, 1],
           [1, 0]])
    """
    if _is_dask(levels):
        return _count_glrlm_chunked(levels, ng, dims)
    levels, ng = check_levels(levels, ng, dims)
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
    if want_3d and not want_2d:
        # all 13 directions in one pass over the volume: the in-plane runs never leave
        # their slice, so these are the sums of the slices' counts below
        m, longest = kernel(padded, 1, nz + 1, np.ascontiguousarray(steps), ng,
                            max(nz, ny, nx, 1))
        return TextureCounts(np.ascontiguousarray(m[:, :, :max(longest, 1)]), {})
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


# -- chunk-mergeable partials -----------------------------------------------------
@functools.lru_cache(maxsize=1)
def _fragment_kernel():
    import numba

    @numba.njit(cache=True, nogil=True)
    def block_runs(padded, bounds, dirs, ng, max_len, origin, gshape, cap):
        """Runs of the core ``bounds`` of ``padded`` along each of ``dirs``.

        A run that reaches a core face and whose next voxel beyond it (read in the
        halo) has its level is *open* there: it continues in a neighbouring block.
        Closed runs are counted ``(n_directions, ng, max_len)``; open ones are returned
        as fragments (direction, level, length, global linear index of the first and
        last voxel, open-end bits: 1 at the start, 2 at the end).
        """
        z0, z1 = bounds[0, 0], bounds[0, 1]
        y0, y1 = bounds[1, 0], bounds[1, 1]
        x0, x1 = bounds[2, 0], bounds[2, 1]
        gy, gx = gshape[1], gshape[2]
        nd = dirs.shape[0]
        out = np.zeros((nd, ng, max_len), np.int64)
        f_dir = np.empty(cap, np.int64)
        f_level = np.empty(cap, np.int64)
        f_len = np.empty(cap, np.int64)
        f_start = np.empty(cap, np.int64)
        f_end = np.empty(cap, np.int64)
        f_open = np.empty(cap, np.int8)
        nf = 0
        for z in range(z0, z1):
            for y in range(y0, y1):
                for x in range(x0, x1):
                    a = padded[z, y, x]
                    if a == 0:
                        continue
                    for k in range(nd):
                        dz, dy, dx = dirs[k, 0], dirs[k, 1], dirs[k, 2]
                        pz, py, px = z - dz, y - dy, x - dx
                        prev_in = z0 <= pz < z1 and y0 <= py < y1 and x0 <= px < x1
                        same_prev = padded[pz, py, px] == a
                        if prev_in and same_prev:
                            continue  # not the first voxel of its run in this core
                        n = 1
                        cz, cy, cx = z, y, x
                        open_end = False
                        while True:
                            wz, wy, wx = cz + dz, cy + dy, cx + dx
                            if not (z0 <= wz < z1 and y0 <= wy < y1 and x0 <= wx < x1):
                                open_end = padded[wz, wy, wx] == a
                                break
                            if padded[wz, wy, wx] != a:
                                break
                            n += 1
                            cz, cy, cx = wz, wy, wx
                        open_start = (not prev_in) and same_prev
                        if open_start or open_end:
                            f_dir[nf] = k
                            f_level[nf] = a
                            f_len[nf] = n
                            f_start[nf] = (((z - z0 + origin[0]) * gy + y - y0 + origin[1]) * gx
                                           + x - x0 + origin[2])
                            f_end[nf] = (((cz - z0 + origin[0]) * gy + cy - y0 + origin[1]) * gx
                                         + cx - x0 + origin[2])
                            f_open[nf] = (1 if open_start else 0) + (2 if open_end else 0)
                            nf += 1
                        else:
                            out[k, a - 1, n - 1] += 1
        return (out, f_dir[:nf].copy(), f_level[:nf].copy(), f_len[:nf].copy(),
                f_start[:nf].copy(), f_end[:nf].copy(), f_open[:nf].copy())

    return block_runs


_FRAGMENT_FIELDS = ("direction", "level", "length", "start", "end", "open")
_N_DIRECTIONS = 13
_N_PLANE = 4  # directions_3d(1)[:4] are the in-plane directions, in directions_2d order


def _no_fragments() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, np.int8 if k == "open" else np.int64) for k in _FRAGMENT_FIELDS}


def _join_fragments(frags, steps):
    """Fragments joined end to start (``end + step == start``, same direction) into
    chains: ``(still open, closed)`` fragment sets of the joined runs."""
    n = frags["start"].size
    if n == 0:
        return frags, _no_fragments()
    direction, openness = frags["direction"], frags["open"]
    heads_open = np.flatnonzero(openness & 1)
    tails_open = np.flatnonzero(openness & 2)
    succ = np.full(n, -1, np.int64)
    if heads_open.size and tails_open.size:
        keys = frags["start"][heads_open] * _N_DIRECTIONS + direction[heads_open]
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        target = ((frags["end"][tails_open] + steps[direction[tails_open]]) * _N_DIRECTIONS
                  + direction[tails_open])
        pos = np.minimum(np.searchsorted(keys, target), keys.size - 1)
        hit = keys[pos] == target
        succ[tails_open[hit]] = heads_open[order[pos[hit]]]
    has_pred = np.zeros(n, bool)
    has_pred[succ[succ >= 0]] = True
    heads = np.flatnonzero(~has_pred)
    tail = heads.copy()
    total = frags["length"][heads].copy()
    nxt = succ[tail]
    while True:  # one step along every chain at a time: as many passes as blocks on a line
        step = np.flatnonzero(nxt >= 0)
        if step.size == 0:
            break
        tail[step] = nxt[step]
        total[step] += frags["length"][nxt[step]]
        nxt = succ[tail]
    joined = {
        "direction": direction[heads], "level": frags["level"][heads], "length": total,
        "start": frags["start"][heads], "end": frags["end"][tail],
        "open": ((openness[heads] & 1) | (openness[tail] & 2)).astype(np.int8),
    }
    closed = joined["open"] == 0
    return ({k: v[~closed] for k, v in joined.items()},
            {k: v[closed] for k, v in joined.items()})


def _run_matrices(frags, ng, want_2d, want_3d, plane_size) -> TextureCounts:
    """Counts of whole runs given as fragments (volume and per-slice units)."""
    counts = TextureCounts()
    if frags["start"].size == 0:
        return counts
    width = int(frags["length"].max())
    level0 = frags["level"] - 1
    length0 = frags["length"] - 1
    direction = frags["direction"]
    if want_3d:
        idx = (direction * ng + level0) * width + length0
        counts.volume = np.bincount(idx, minlength=_N_DIRECTIONS * ng * width).reshape(
            _N_DIRECTIONS, ng, width)
    if want_2d:
        sel = direction < _N_PLANE
        if sel.any():
            z_values, z_index = np.unique(frags["start"][sel] // plane_size,
                                          return_inverse=True)
            idx = ((z_index.ravel() * _N_PLANE + direction[sel]) * ng + level0[sel]) * width
            idx += length0[sel]
            m = np.bincount(idx, minlength=z_values.size * _N_PLANE * ng * width).reshape(
                z_values.size, _N_PLANE, ng, width)
            counts.slices = {int(z): m[i] for i, z in enumerate(z_values)}
    return counts


@dataclass
class RunPartial:
    """Run-length counts of a block, mergeable with its neighbours' across faces.

    Attributes
    ----------
    counts : TextureCounts
        Runs known whole: ``volume`` ``(13, ng, w)`` per direction of
        :func:`directions_3d` (when 3-D is asked), ``slices`` z -> ``(4, ng, w)`` (when
        2-D or 2.5D is asked); widths are not yet trimmed.
    fragments : dict of str to ndarray
        Runs that may continue in a block not merged yet: ``direction`` (index into
        :func:`directions_3d`), ``level``, ``length``, ``start``/``end`` (global C-order
        linear indices of the first and last voxel) and ``open`` (bit 1: the voxel
        before ``start`` has the run's level; bit 2: the voxel after ``end`` has).
    ng, dims, shape
        Number of levels, the texture dims asked, the global volume shape.
    """

    counts: TextureCounts
    fragments: dict = field(default_factory=_no_fragments)
    ng: int = 1
    dims: frozenset = frozenset(TEXTURE_DIMS)
    shape: tuple = (1, 1, 1)

    @property
    def _want(self):
        return "2D" in self.dims or "2.5D" in self.dims, "3D" in self.dims

    @staticmethod
    def merge(a: RunPartial | None, b: RunPartial | None) -> RunPartial | None:
        """Both blocks' counts, fragments meeting across a face joined into longer
        ones; runs closed at both ends move into the counts.  Exact and associative:
        a run is counted once, when its last fragment arrives, whatever the order."""
        if a is None:
            return b
        if b is None:
            return a
        frags = {k: np.concatenate([a.fragments[k], b.fragments[k]]) for k in _FRAGMENT_FIELDS}
        steps = linear_steps(directions_3d(1), a.shape)
        still_open, closed = _join_fragments(frags, steps)
        want_2d, want_3d = a._want
        counts = TextureCounts.merge(a.counts, b.counts)
        counts = TextureCounts.merge(counts, _run_matrices(
            closed, a.ng, want_2d, want_3d, a.shape[1] * a.shape[2]))
        return RunPartial(counts, still_open, a.ng, a.dims, a.shape)

    def finish(self) -> TextureCounts:
        """The counts of :func:`count_glrlm` for the merged region.

        Fragments still open (a run leaving the blocks merged) are counted as they are.
        """
        want_2d, want_3d = self._want
        rest = dict(self.fragments)
        rest["open"] = np.zeros_like(rest["open"])
        counts = TextureCounts.merge(self.counts, _run_matrices(
            rest, self.ng, want_2d, want_3d, self.shape[1] * self.shape[2]))
        if want_3d and counts.volume is None:
            counts.volume = np.zeros((_N_DIRECTIONS, self.ng, 1), np.int64)
        return trim_counts(counts, want_volume=want_3d, want_slices=want_2d,
                           volume_min_width=1, keep_empty_volume=True)


def glrlm_block(levels, ng, dims, *, core, offset, shape) -> RunPartial:
    """The :class:`RunPartial` of one block.

    Parameters
    ----------
    levels : (z, y, x) int array
        The block's grey levels (0 outside the ROI) with its halo: one voxel of the
        neighbouring blocks on every side that has a neighbour (zeros beyond the
        volume), or none (the block is then taken as the whole volume there).
    ng : int
    dims : collection of str
    core : tuple of slice
        The voxels the block owns (``BlockInfo.core``).
    offset : sequence of int
        Global index of ``levels[0, 0, 0]`` (``BlockInfo.offset``).
    shape : sequence of int
        The global volume shape.

    Returns
    -------
    RunPartial
        Runs of the core; a run that leaves the core towards a halo voxel of its level
        is kept as a fragment for :meth:`RunPartial.merge`.

    Examples
    --------
    >>> lev = np.array([[[1, 1, 1, 2]]], dtype=np.int32)
    >>> left = glrlm_block(lev[:, :, :3], 2, ["2D"], core=(slice(None),) * 2 + (slice(0, 2),),
    ...                    offset=(0, 0, 0), shape=lev.shape)
    >>> right = glrlm_block(lev[:, :, 1:], 2, ["2D"], core=(slice(None),) * 2 + (slice(1, 3),),
    ...                     offset=(0, 0, 1), shape=lev.shape)
    >>> RunPartial.merge(left, right).finish().slices[0][0]
    array([[0, 0, 1],
           [1, 0, 0]])
    """
    ng = int(ng)
    dims = frozenset(dims)
    shape = tuple(int(s) for s in shape)
    want_2d = "2D" in dims or "2.5D" in dims
    want_3d = "3D" in dims
    block = block_core(levels, core, offset, shape)
    padded, bounds, origin = block.padded, block.bounds, block.origin
    (z0, z1), (y0, y1), (x0, x1) = bounds
    core_levels = padded[z0:z1, y0:y1, x0:x1]
    check_level_range(core_levels, ng)
    partial = RunPartial(TextureCounts(), _no_fragments(), ng, dims, shape)
    if not (want_2d or want_3d):
        return partial
    kernel = _fragment_kernel()
    dirs = directions_3d(1)
    gshape = np.asarray(shape, np.int64)
    max_len = max(block.core_shape + (1,))
    pieces = []
    plane_dirs = np.ascontiguousarray(dirs[:_N_PLANE])
    plane_sum = np.zeros((_N_PLANE, ng, max_len), np.int64)
    for z in np.flatnonzero(core_levels.any(axis=(1, 2))):
        z_bounds = bounds.copy()
        z_bounds[0] = (z0 + z, z0 + z + 1)
        z_origin = origin + np.array([z, 0, 0])
        m, *frag = kernel(padded, z_bounds, plane_dirs, ng, max_len, z_origin, gshape,
                          _N_PLANE * (y1 - y0) * (x1 - x0))
        pieces.append(frag)
        plane_sum += m
        if want_2d:
            partial.counts.slices[int(z_origin[0])] = m
    if want_3d:
        out_dirs = np.ascontiguousarray(dirs[_N_PLANE:])
        m, *frag = kernel(padded, bounds, out_dirs, ng, max_len, origin, gshape,
                          2 * len(out_dirs) * block.boundary_voxels())
        frag[0] = frag[0] + _N_PLANE
        pieces.append(frag)
        partial.counts.volume = np.concatenate([plane_sum, m])
    if pieces:
        partial.fragments = {k: np.concatenate([p[i] for p in pieces])
                             for i, k in enumerate(_FRAGMENT_FIELDS)}
    return partial


def _count_glrlm_chunked(levels, ng, dims) -> TextureCounts:
    from ._partials import BlockGrid

    levels, ng = check_levels(levels, ng, dims, values=False)
    grid = BlockGrid(levels, levels > 0)

    def _block(block_levels, _mask, info):
        return glrlm_block(block_levels, ng, dims, core=info.core, offset=info.offset,
                           shape=grid.shape)

    return grid.reduce_blocks(_block, RunPartial.merge, halo=1).finish()


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
    # rlm_sre, rlm_lre, rlm_lgre, rlm_hgre, rlm_srlge, rlm_srhge, rlm_lrlge, rlm_lrhge,
    # rlm_glnu(_norm), rlm_rlnu(_norm), rlm_r_perc, rlm_gl_var, rlm_rl_var, rlm_rl_entr:
    # the formulas IBSI shares with the zone and dependence matrices
    m = np.asarray(matrix)
    if m.ndim != 2:
        raise ValueError(f"`matrix` must be 2-D (Ng, Nr), got shape {m.shape}")
    return dict(zip(GLRLM_FEATURES, _run_table(m[None], False)[0][0].tolist()))


def _run_table(stack, with_sum):
    values, counted = emphasis_table(stack, with_sum=with_sum, nv_mode=NV_RUN_VOXELS)
    return values[:, :len(GLRLM_FEATURES)], counted


def glrlm_aggregate(counts: TextureCounts, dims) -> dict[str, float]:
    """IBSI-tagged run length features ``rlm_{name}_{2D,2_5D,3D}_{avg,comb}`` of ``counts``.

    Examples
    --------
    >>> lev = np.array([[[1, 1, 2, 0]]], dtype=np.int32)
    >>> feats = glrlm_aggregate(count_glrlm(lev, 2, ["2D"]), ["2D"])
    >>> round(feats["rlm_r_perc_2D_comb"], 4)   # 11 runs over 4 x 3 voxels
    0.9167
    """
    return aggregate(counts, None, GLRLM_FEATURES, "rlm", dims, directional=True,
                     features_stack=_run_table)
