"""The small interface every backend implements.

A backend receives arrays that are already validated, already cast to the working
dtype (float32 or float64, see :func:`medimg_fast._shared.utils.supported_float_type`)
and of its own array type (NumPy for ``numpy``/``numba``, CuPy for ``cupy``).  It returns
an array of the same dtype and shape.  Boundary modes are canonical names from
:mod:`medimg_fast._shared.boundary`.  Every public filter is composed from these
primitives in :mod:`medimg_fast.filters`, so a new backend only has to provide them.

Every primitive takes an optional destination ``out``: a writeable C-contiguous array of
the backend's type, of the image's shape and dtype, that does not overlap the image.  A
backend may write the result there and return ``out`` itself (``numba`` does), or ignore
it and return a new array (``numpy`` and ``cupy`` do); the caller copies the result into
its destination whenever the returned array is not ``out``
(:func:`medimg_fast.filters._dispatch.with_output`), so either choice is correct.

The arithmetic of each output voxel must depend only on its neighbourhood, never on
its position in the array, so that chunked and unchunked results are bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend works on this machine, and if not, why."""

    name: str
    available: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.available


class Backend:
    """Base class: the primitive operations of a backend."""

    #: Registry name ("numpy", "numba", "cupy").
    name: str = ""
    #: Whether the backend computes on a GPU (its arrays are CuPy arrays).
    on_gpu: bool = False

    # -- availability -------------------------------------------------------------
    def probe(self) -> str | None:
        """Return None when the backend works here, else a one-line reason."""
        raise NotImplementedError

    # -- array movement -----------------------------------------------------------
    @property
    def xp(self):
        """The array module (numpy or cupy)."""
        raise NotImplementedError

    def asarray(self, array):
        """Move/convert an array to this backend's array type (no copy when already there)."""
        return self.xp.asarray(array)

    # -- primitives ---------------------------------------------------------------
    def correlate1d(self, image, weights, axis: int, mode: str, cval: float, out=None):
        """1-D correlation along ``axis``; ``weights`` is a float64 NumPy vector whose
        centre tap is ``len(weights) // 2`` (scipy's origin 0)."""
        raise NotImplementedError

    def correlate_separable(self, image, passes, mode: str, cval: float, out=None):
        """1-D correlations applied in order: ``passes`` is a sequence of
        ``(axis, weights)``; each pass extends its own input (scipy's rule, which matters
        for ``constant``).  Backends may fuse the passes to save memory traffic, keeping
        each pass's arithmetic and its float rounding to the working dtype.  Only the
        last pass is offered ``out``."""
        for i, (axis, weights) in enumerate(passes):
            image = self.correlate1d(image, weights, axis, mode, cval,
                                     out=out if i == len(passes) - 1 else None)
        return image

    def separable_temporaries(self, ndim: int, passes) -> int:
        """Image-sized arrays :meth:`correlate_separable` holds at once besides its input
        and its result: here each pass but the last makes a new one, and the one before
        is freed once the next exists."""
        return max(min(len(passes) - 1, 2), 0)

    def correlate(self, image, weights, mode: str, cval: float, out=None):
        """N-D correlation with a float64 NumPy ``weights`` array of ``image.ndim`` dims,
        centred at ``shape // 2``."""
        raise NotImplementedError

    def rank_filter(self, image, footprint, rank: int, mode: str, cval: float, out=None):
        """Rank filter over a boolean NumPy ``footprint`` (``image.ndim`` dims, centred at
        ``shape // 2``); ``rank`` counts from 0 over the footprint's True elements
        (median: ``count // 2``)."""
        raise NotImplementedError

    def extremum_filter1d(self, image, size: int, axis: int, mode: str, cval: float,
                          maximum: bool, out=None):
        """Running minimum (or maximum) of ``size`` samples along ``axis``, window
        ``[i - size//2, i - size//2 + size)`` (scipy's origin 0)."""
        raise NotImplementedError

    def gradient_magnitude(self, image, kind: str, axes: tuple[int, ...], mode: str,
                           cval: float, out=None):
        """``sqrt(sum_a d_a^2)`` where ``d_a`` is scipy's ``sobel``/``prewitt`` along axis
        ``a`` (smoothing along every other axis of the array), for ``a`` in ``axes``.
        ``kind`` is "sobel" or "prewitt"."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
