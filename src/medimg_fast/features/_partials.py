"""Per-block partial results that merge exactly, and the block grid that produces them.

A feature family is computed as ``finalise(reduce(merge, map(partial, blocks)))``.  The
partials are sums, counts, minima/maxima, fixed-bin histograms and co-occurrence counts
(merged by addition, exact in integers and associative up to float64 rounding for
sums), central moments (merged with the pairwise update of Pébay 2008, stable in
float64) and mesh pieces.  A NumPy image is one block; a Dask image is one block per
chunk, each mapped with :func:`dask.delayed` and merged on the host, so the whole volume
is never in memory at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["BlockGrid", "BlockInfo", "Moments", "merge_all"]


def _is_dask(x) -> bool:
    return type(x).__module__.split(".")[0] == "dask"


@dataclass(frozen=True)
class BlockInfo:
    """Where a block lies: ``offset`` is the global index of the block's element 0;
    ``core`` the slices of the block that it owns (the rest is halo); ``first`` whether
    it touches the low edge of the volume along each axis; ``halo`` the halo width
    actually present on each side (0 for a NumPy image)."""

    offset: tuple[int, ...]
    core: tuple[slice, ...]
    first: tuple[bool, ...]
    halo: int


def roi_bbox(mask) -> tuple[slice, ...] | None:
    """The bounding box of the True voxels of a NumPy ``mask`` (None when there are none)."""
    box = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


class BlockGrid:
    """An image and its ROI mask, NumPy (one block) or Dask (a block per chunk).

    Parameters
    ----------
    image : ndarray or dask.array.Array
    mask : ndarray or dask.array.Array of bool, optional
        The ROI; None means the whole volume.  A Dask mask is rechunked like the image;
        a NumPy mask with a Dask image is wrapped with the image's chunks.
    """

    def __init__(self, image, mask=None):
        self.is_dask = _is_dask(image) or _is_dask(mask)
        if self.is_dask:
            import dask.array as da

            image = image if _is_dask(image) else da.from_array(np.asarray(image))
            if mask is None:
                mask = da.ones(image.shape, dtype=bool, chunks=image.chunks)
            elif not _is_dask(mask):
                mask = da.from_array(np.asarray(mask), chunks=image.chunks)
            mask = mask.astype(bool).rechunk(image.chunks)
        self.shape = tuple(int(s) for s in image.shape)
        self.origin = (0,) * len(self.shape)
        if not self.is_dask:
            image = np.asarray(image)
            if mask is None:
                mask = np.ones(image.shape, dtype=bool)
            else:
                mask = np.asarray(mask, bool)
                # every family depends only on the ROI and its direct neighbours:
                # work on the bounding box (offsets keep positions global)
                box = roi_bbox(mask)
                if box is None:
                    raise ValueError("the ROI is empty: `mask` selects no voxel")
                image, mask = image[box], mask[box]
                self.origin = tuple(b.start for b in box)
        self.image = image
        self.mask = mask
        self._values = None

    @classmethod
    def from_box(cls, image, mask, origin, shape):
        """The grid :class:`BlockGrid` makes of a whole NumPy volume of ``shape``, from
        its part ``image``/``mask`` starting at voxel ``origin`` that holds the whole
        ROI (the voxels outside it are never read by any family)."""
        mask = np.asarray(mask, bool)
        box = roi_bbox(mask)
        if box is None:
            raise ValueError("the ROI is empty: `mask` selects no voxel")
        grid = cls.__new__(cls)
        grid.is_dask = False
        grid.shape = tuple(int(s) for s in shape)
        grid.origin = tuple(int(o) + b.start for o, b in zip(origin, box))
        grid.image = np.asarray(image)[box]
        grid.mask = mask[box]
        grid._values = None
        return grid

    # -- ROI values ------------------------------------------------------------------
    def values(self) -> np.ndarray:
        """The ROI intensities as float64 (NumPy image only; cached)."""
        if self._values is None:
            self._values = np.ascontiguousarray(self.image[self.mask], dtype=np.float64)
        return self._values

    def reduce_values(self, func, merge):
        """``merge`` over blocks of ``func(roi_values_of_block)``."""
        if not self.is_dask:
            return func(self.values())
        import dask

        @dask.delayed(pure=True)
        def _one(img, msk):
            return func(np.ascontiguousarray(img[msk], dtype=np.float64))

        img_blocks = self.image.to_delayed().ravel()
        msk_blocks = self.mask.to_delayed().ravel()
        parts = dask.compute(*[_one(i, m) for i, m in zip(img_blocks, msk_blocks)])
        return merge_all(parts, merge)

    def roi_box_arrays(self, *, with_origin=False):
        """The image and mask on the ROI's bounding box as NumPy arrays (a Dask image's
        box is read into memory), and with ``with_origin`` the box's global origin."""
        if not self.is_dask:
            out = (np.asarray(self.image), np.asarray(self.mask))
            origin = np.asarray(self.origin)
        else:
            image, mask, box = dask_roi_box(self.image, self.mask, with_box=True)
            out = (image, mask)
            origin = np.array([b.start for b in box])
        return (*out, origin) if with_origin else out

    # -- blocks with a halo --------------------------------------------------------
    def reduce_blocks(self, func, merge, *, halo=0):
        """``merge`` over blocks of ``func(image_block, mask_block, info)``.

        Dask blocks carry ``halo`` voxels of their neighbours on each side (outside the
        volume: image 0, mask False); a NumPy image is one block without halo, and
        ``func`` must treat indices outside the block as outside the ROI.
        """
        if not self.is_dask:
            nd = len(self.shape)
            info = BlockInfo(self.origin, (slice(None),) * nd, (True,) * nd, 0)
            return func(self.image, self.mask, info)
        import dask
        import dask.array as da

        image, mask = self.image, self.mask
        chunks = image.chunks
        if halo:
            # dask would rechunk inside overlap() when a chunk is thinner than the halo;
            # do it here so that the block offsets below are those of the real blocks
            from dask.array.overlap import ensure_minimum_chunksize

            chunks = tuple(ensure_minimum_chunksize(halo, c) for c in chunks)
            if chunks != image.chunks:
                image, mask = image.rechunk(chunks), mask.rechunk(chunks)
            depth = {ax: halo for ax in range(len(self.shape))}
            mask = da.overlap.overlap(mask, depth=depth, boundary=False)
            image = da.overlap.overlap(image, depth=depth, boundary=0)
        starts = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
        msk_blocks = mask.to_delayed()
        img_blocks = image.to_delayed()
        call = dask.delayed(func, pure=True)
        parts = []
        for idx in np.ndindex(*msk_blocks.shape):
            offset = tuple(int(starts[a][i]) - halo for a, i in enumerate(idx))
            size = tuple(int(chunks[a][i]) for a, i in enumerate(idx))
            info = BlockInfo(
                offset=offset,
                core=tuple(slice(halo, halo + s) for s in size),
                first=tuple(i == 0 for i in idx),
                halo=halo,
            )
            parts.append(call(img_blocks[idx], msk_blocks[idx], info))
        return merge_all(dask.compute(*parts), merge)


def dask_roi_box(image, mask, *, margin=0, with_box=False):
    """NumPy ``image[box], mask[box]`` for the bounding box of a Dask (or NumPy) ``mask``
    widened by ``margin`` voxels per axis (clipped to the volume).

    One pass over the mask finds the box; only the box is then read.
    """
    import dask
    import dask.array as da

    mask = mask if _is_dask(mask) else da.from_array(np.asarray(mask))
    nd = mask.ndim
    hits = dask.compute(*[mask.astype(bool).any(axis=tuple(a for a in range(nd) if a != ax))
                          for ax in range(nd)])
    margin = np.broadcast_to(np.asarray(margin, np.int64), (nd,))
    box = []
    for ax, hit in enumerate(hits):
        where = np.flatnonzero(hit)
        if where.size == 0:
            raise ValueError("the ROI is empty: `mask` selects no voxel")
        box.append(slice(max(int(where[0]) - int(margin[ax]), 0),
                         min(int(where[-1]) + 1 + int(margin[ax]), mask.shape[ax])))
    box = tuple(box)
    img = image[box]
    img, msk = dask.compute(img, mask[box]) if _is_dask(img) else (img, mask[box].compute())
    out = (np.asarray(img), np.asarray(msk, bool))
    return (*out, box) if with_box else out


def merge_all(parts, merge):
    """Left fold of ``merge`` over ``parts`` in block order (deterministic)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    return functools.reduce(merge, parts)


def add(a, b):
    """Merge by addition (counts, histograms, sums); works on tuples of arrays too."""
    if isinstance(a, tuple):
        return tuple(add(x, y) for x, y in zip(a, b))
    return a + b


@dataclass(frozen=True)
class Moments:
    """Count, mean, central moment sums M2..M4, min, max and sum of squares of a sample.

    ``merge`` is the exact pairwise update of Pébay (2008), "Formulas for robust,
    one-pass parallel computation of covariances and arbitrary-order statistical
    moments", Sandia report SAND2008-6212, eqs. 2.1-2.3.
    """

    n: int
    mean: float
    m2: float
    m3: float
    m4: float
    min: float
    max: float
    sumsq: float

    @classmethod
    def of(cls, n, mean, m2, m3, m4, vmin, vmax, sumsq):
        return cls(int(n), float(mean), float(m2), float(m3), float(m4), float(vmin),
                   float(vmax), float(sumsq))

    @staticmethod
    def merge(a: Moments | None, b: Moments | None) -> Moments | None:
        if a is None or a.n == 0:
            return b
        if b is None or b.n == 0:
            return a
        n = a.n + b.n
        d = b.mean - a.mean
        dn = d / n
        mean = a.mean + b.n * dn
        m2 = a.m2 + b.m2 + d * dn * a.n * b.n
        m3 = (a.m3 + b.m3 + d * dn * dn * a.n * b.n * (a.n - b.n)
              + 3.0 * dn * (a.n * b.m2 - b.n * a.m2))
        m4 = (a.m4 + b.m4
              + d * dn * dn * dn * a.n * b.n * (a.n * a.n - a.n * b.n + b.n * b.n)
              + 6.0 * dn * dn * (a.n * a.n * b.m2 + b.n * b.n * a.m2)
              + 4.0 * dn * (a.n * b.m3 - b.n * a.m3))
        return Moments(n, mean, m2, m3, m4, min(a.min, b.min), max(a.max, b.max),
                       a.sumsq + b.sumsq)
