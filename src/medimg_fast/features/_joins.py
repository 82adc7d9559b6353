"""Shared machinery of the chunk-mergeable run-length and zone partials.

Runs (``rlm``) and zones (``szm``, ``dzm``) cross chunk faces, so a block's partial result
holds, beside the counts of the runs and zones lying wholly inside its core, the pieces
that touch a core face and may continue in a neighbouring block.  Pieces are named by
*global* linear voxel indices, so two blocks' pieces meet where an index plus a
neighbour step equals another index.  This module holds what both families need: the
block's core in a zero-padded copy, global linear steps, the union of labels over
matched pairs (connected components), and the trimming of merged matrices to the
shape the whole-volume counters give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._texture import TextureCounts

__all__ = ["BlockCore", "block_core", "components", "linear_steps", "trim_counts"]


@dataclass(frozen=True)
class BlockCore:
    """A block's levels zero-padded by one voxel and where its core lies.

    Attributes
    ----------
    padded : (z, y, x) int32 array
        The block (core and halo) with one more ring of zeros, so every core voxel has
        all 26 neighbours in the array; a voxel outside the volume reads as level 0.
    bounds : (3, 2) int64 array
        ``[lo, hi)`` of the core in ``padded`` per axis.
    origin : (3,) int64 array
        Global index of the core's first voxel.
    shape : (3,) int64 array
        The global volume shape that linear voxel indices refer to.
    """

    padded: np.ndarray
    bounds: np.ndarray
    origin: np.ndarray
    shape: np.ndarray

    def pad_like(self, values) -> np.ndarray:
        """``values`` (shaped like the unpadded block) padded like :attr:`padded`."""
        return np.ascontiguousarray(np.pad(np.asarray(values, np.int32), 1))

    @property
    def core_shape(self) -> tuple[int, ...]:
        return tuple(int(b - a) for a, b in self.bounds)

    def boundary_voxels(self) -> int:
        """Number of core voxels on the core's faces (an upper bound of open pieces)."""
        n = self.core_shape
        inner = int(np.prod([max(s - 2, 0) for s in n]))
        return int(np.prod(n)) - inner


def block_core(levels, core, offset, shape) -> BlockCore:
    """:class:`BlockCore` of a block whose ``core`` slices hold the voxels it owns.

    ``offset`` is the global index of the block's element 0 (``BlockInfo.offset``) and
    ``shape`` the global volume shape.  The halo around the core (``BlockInfo.halo``
    voxels of the neighbours, zeros beyond the volume) tells which pieces continue.
    """
    levels = np.asarray(levels)
    bounds = np.array([c.indices(n)[:2] for c, n in zip(core, levels.shape)], np.int64)
    origin = np.asarray(offset, np.int64) + bounds[:, 0]
    padded = np.ascontiguousarray(np.pad(levels.astype(np.int32, copy=False), 1))
    return BlockCore(padded, bounds + 1, origin, np.asarray(shape, np.int64))


def linear_steps(offsets, shape) -> np.ndarray:
    """Steps ``(dz, dy, dx)`` as offsets of global C-order linear indices of ``shape``."""
    offsets = np.asarray(offsets, np.int64)
    _, ny, nx = (int(s) for s in shape)
    return (offsets[:, 0] * ny + offsets[:, 1]) * nx + offsets[:, 2]


def components(n: int, left, right) -> np.ndarray:
    """Component label ``0..k-1`` of each of ``n`` nodes joined by edges ``left[i]-right[i]``.

    Union-find over the matched pairs, as the connected components of the undirected
    graph (scipy.sparse.csgraph); labels come in order of each component's first node.
    """
    left = np.asarray(left, np.int64)
    if left.size == 0:
        return np.arange(n, dtype=np.int64)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(left.size, np.int8), (left, np.asarray(right, np.int64))),
                       shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # renumber by first occurrence so results do not depend on scipy's numbering
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.ravel()]


def _trim(m: np.ndarray, minimum: int) -> np.ndarray:
    used = np.flatnonzero(m.reshape(-1, m.shape[-1]).any(axis=0))
    width = max(int(used[-1]) + 1 if used.size else 0, minimum)
    if width <= m.shape[-1]:
        return m[..., :width]
    out = np.zeros(m.shape[:-1] + (width,), m.dtype)
    out[..., :m.shape[-1]] = m
    return out


def trim_counts(counts: TextureCounts | None, *, want_volume: bool, want_slices: bool,
                volume_min_width: int, keep_empty_volume: bool) -> TextureCounts:
    """Merged counts cut to the shapes of the whole-volume counters.

    Merged matrices are as wide as the widest block's; the whole-volume counters make
    each unit exactly as wide as its longest run / largest zone / largest distance
    (``volume_min_width`` at least) and leave out slices without counts.
    """
    counts = counts if counts is not None else TextureCounts()
    volume = None
    if want_volume and counts.volume is not None and (keep_empty_volume
                                                      or counts.volume.any()):
        volume = _trim(counts.volume, volume_min_width)
    slices = {}
    if want_slices:
        for z in sorted(counts.slices):
            m = counts.slices[z]
            if m.any():
                slices[int(z)] = _trim(m, 1)
    return TextureCounts(volume, slices)
