"""Boundary extension rules, shared by the kernels and by the Dask halo padding.

The rules are those of ``scipy.ndimage`` filters (``mode=``), for an axis of
length ``n`` holding ``a b c d``:

=========  ===========================
reflect    ``d c b a | a b c d | d c b a``  (half-sample symmetric, period 2n)
mirror     ``d c b | a b c d | c b a``      (whole-sample symmetric, period 2n-2)
nearest    ``a a a | a b c d | d d d``
wrap       ``a b c d | a b c d | a b c d``  (periodic, period n)
constant   ``k k k | a b c d | k k k``      (``k = cval``)
=========  ===========================

Extensions wider than the axis repeat the pattern, exactly as scipy does, so a
halo may be deeper than the array (or chunk) is long.
"""

from __future__ import annotations

import numpy as np

MODES = ("reflect", "mirror", "nearest", "wrap", "constant")
#: scipy spells some modes twice; for filters the spellings mean the same thing.
MODE_ALIASES = {"grid-mirror": "reflect", "grid-wrap": "wrap", "grid-constant": "constant"}

REFLECT, MIRROR, NEAREST, WRAP, CONSTANT = range(5)
MODE_CODES = {name: code for code, name in enumerate(MODES)}


def normalize_mode(mode) -> str:
    """Return the canonical name of a boundary mode, or raise ValueError naming it."""
    if not isinstance(mode, str):
        raise TypeError(f"`mode` must be a string, one of {MODES}, got {mode!r}")
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODE_CODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}")
    return mode


def extend_index(i: int, n: int, mode_code: int) -> int:
    """Map a possibly out-of-range index ``i`` on an axis of length ``n`` into ``[0, n)``.

    Returns -1 for ``constant`` outside the axis (the caller substitutes ``cval``).
    Pure integer arithmetic, so it compiles unchanged with ``numba.njit``.
    """
    if 0 <= i < n:
        return i
    if mode_code == CONSTANT:
        return -1
    if mode_code == NEAREST:
        return 0 if i < 0 else n - 1
    if mode_code == WRAP:
        return i % n
    if mode_code == REFLECT:
        period = 2 * n
        i = i % period
        return i if i < n else period - 1 - i
    # MIRROR
    if n == 1:
        return 0
    period = 2 * n - 2
    i = i % period
    return i if i < n else period - i


def extension_indices(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source indices for the positions ``-before .. n + after - 1`` of an extended axis.

    ``-1`` marks a constant (``cval``) position.
    """
    code = MODE_CODES[normalize_mode(mode)]
    return np.array([extend_index(i, n, code) for i in range(-before, n + after)], dtype=np.intp)
