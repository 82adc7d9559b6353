"""Compiled sliding-window kernels of the voxel-wise feature maps (numba).

Every kernel takes a *haloed* block: ``levels`` (grey levels, 0 where a voxel does not
count: outside the ROI with a masked window, outside the image always) and, for the
intensity statistics, ``values`` with the same shape; ``centres`` (bool) marks the voxels
of the block's core whose window is computed; the core is ``levels[rz:-rz, ry:-ry,
rx:-rx]`` for the window half-widths ``(rz, ry, rx)``.  Nothing beyond the window is
read, so a block needs a halo of exactly the window's half-width.

The work is split by *row* (one ``(z, y)`` line of the core): a row keeps its window's
matrices and slides them along x, adding the pairs (or voxels) of the entering plane
and removing those of the leaving plane; a gap of more than one window between two
centres of a row tears the window down and rebuilds it.  The counts are integers, so a
window's matrix does not depend on where the sweep started, and the features of a
voxel are a fixed sequence of float operations on that matrix: chunked and unchunked
maps are bit-identical.  A CUDA version is a translation: one thread per row segment,
one thread block per tile of rows, the window matrices in shared or local memory.

The formulas from a window's matrix to its features are those of the extraction, the
compiled functions of :mod:`._formulas` (one definition of each family's formulas).
"""

from __future__ import annotations

import functools

import numpy as np

from ._formulas import (
    EMPHASIS_NFEAT,
    GLCM_NFEAT,
    NGT_NFEAT,
    NV_COUNTS,
    NV_RUN_VOXELS,
    compiled_formulas,
)

__all__ = ["GLCM_NFEAT", "IH_NFEAT", "NGL_NFEAT", "NGT_NFEAT", "RLM_NFEAT", "STAT_NFEAT",
           "compiled", "compiled_texture"]

STAT_NFEAT = 18
IH_NFEAT = 23


@functools.lru_cache(maxsize=1)
def compiled():
    """``(glcm_maps, stat_maps, ih_maps)``, compiled on first use (cached on disk); each
    map kernel as ``(serial, parallel)``."""
    import numba

    _glcm_formulas = compiled_formulas().glcm

    @numba.njit(cache=True, nogil=True, inline="always")
    def _add_pair(cnt, marg, tot, k, a, b, s):
        cnt[k, a, b] += s
        cnt[k, b, a] += s
        marg[k, a] += s
        marg[k, b] += s
        tot[k] += 2 * s

    @numba.njit(cache=True, nogil=True)
    def _update_plane(lev, dirs, plane, xlo, xhi, zlo, zhi, ylo, yhi, s, cnt, marg, tot,
                      comb):
        """Add (``s=+1``) or remove (``s=-1``) every pair of the window ``[zlo, zhi] x
        [ylo, yhi] x [xlo, xhi]`` that has an end in x-plane ``plane``: pairs inside the
        plane once (``dx == 0``), pairs leaving it in both orientations."""
        nd = dirs.shape[0]
        for z in range(zlo, zhi + 1):
            for y in range(ylo, yhi + 1):
                a = lev[z, y, plane]
                if a == 0:
                    continue
                for k in range(nd):
                    dz = dirs[k, 0]
                    dy = dirs[k, 1]
                    dx = dirs[k, 2]
                    # the pair (v, v + d) with v in the plane
                    qz = z + dz
                    qy = y + dy
                    qx = plane + dx
                    if zlo <= qz <= zhi and ylo <= qy <= yhi and xlo <= qx <= xhi:
                        b = lev[qz, qy, qx]
                        if b != 0:
                            _add_pair(cnt, marg, tot, k, a - 1, b - 1, s)
                            if comb:
                                _add_pair(cnt, marg, tot, nd, a - 1, b - 1, s)
                    if dx == 0:
                        continue
                    # the pair (v - d, v): its other end on another plane
                    qz = z - dz
                    qy = y - dy
                    qx = plane - dx
                    if zlo <= qz <= zhi and ylo <= qy <= yhi and xlo <= qx <= xhi:
                        b = lev[qz, qy, qx]
                        if b != 0:
                            _add_pair(cnt, marg, tot, k, a - 1, b - 1, s)
                            if comb:
                                _add_pair(cnt, marg, tot, nd, a - 1, b - 1, s)

    def _glcm_maps(lev, centres, dirs, rz, ry, rx, ng, want_avg, want_comb, log2i, out):
        """GLCM maps of the core of ``lev``: ``out[f, z, y, x]`` (NaN where not a centre);
        features ``0..24`` averaged over directions (``want_avg``), then ``25..49`` (or
        ``0..24``) of the merged matrix (``want_comb``)."""
        cz, cy, cx = centres.shape
        nd = dirs.shape[0]
        comb_at = GLCM_NFEAT if want_avg else 0
        for row in numba.prange(cz * cy):
            z = row // cy
            y = row % cy
            first = -1
            for x in range(cx):
                if centres[z, y, x]:
                    first = x
                    break
            if first < 0:
                continue
            # state of this row's window: per-direction counts, the merged counts last
            cnt = np.zeros((nd + 1, ng, ng), np.int32)
            marg = np.zeros((nd + 1, ng), np.int64)
            tot = np.zeros(nd + 1, np.int64)
            present = np.empty(ng, np.int64)
            pdiff = np.empty(ng, np.int64)
            psum = np.empty(2 * ng + 1, np.int64)
            res = np.empty(GLCM_NFEAT)
            acc = np.empty(GLCM_NFEAT)
            # window of centre x (core index): padded z in [z, z + 2rz], y in [y, y + 2ry],
            # x in [x, x + 2rx]
            zlo, zhi, ylo, yhi = z, z + 2 * rz, y, y + 2 * ry
            cur = -1
            for x in range(first, cx):
                if not centres[z, y, x]:
                    continue
                if cur >= 0 and x - cur <= 2 * rx + 1:
                    for xx in range(cur + 1, x + 1):
                        _update_plane(lev, dirs, xx - 1, xx - 1, xx - 1 + 2 * rx, zlo, zhi,
                                      ylo, yhi, -1, cnt, marg, tot, want_comb)
                        _update_plane(lev, dirs, xx + 2 * rx, xx, xx + 2 * rx, zlo, zhi,
                                      ylo, yhi, 1, cnt, marg, tot, want_comb)
                else:
                    if cur >= 0:  # tear down the old window, plane by plane
                        for p in range(cur, cur + 2 * rx + 1):
                            _update_plane(lev, dirs, p, p, cur + 2 * rx, zlo, zhi, ylo, yhi,
                                          -1, cnt, marg, tot, want_comb)
                    for p in range(x, x + 2 * rx + 1):
                        _update_plane(lev, dirs, p, x, p, zlo, zhi, ylo, yhi, 1, cnt, marg,
                                      tot, want_comb)
                cur = x
                if want_avg:
                    used = 0
                    for f in range(GLCM_NFEAT):
                        acc[f] = 0.0
                    for k in range(nd):
                        if tot[k] == 0:
                            continue
                        _glcm_formulas(cnt[k], marg[k], tot[k], ng, log2i, present, pdiff,
                                       psum, res)
                        used += 1
                        for f in range(GLCM_NFEAT):
                            acc[f] += res[f]
                    for f in range(GLCM_NFEAT):
                        out[f, z, y, x] = acc[f] / used if used > 0 else np.nan
                if want_comb:
                    if tot[nd] == 0:
                        for f in range(GLCM_NFEAT):
                            out[comb_at + f, z, y, x] = np.nan
                    else:
                        _glcm_formulas(cnt[nd], marg[nd], tot[nd], ng, log2i, present,
                                       pdiff, psum, res)
                        for f in range(GLCM_NFEAT):
                            out[comb_at + f, z, y, x] = res[f]

    glcm_maps = (numba.njit(cache=True, nogil=True)(_glcm_maps),
                 numba.njit(cache=True, nogil=True, parallel=True)(_glcm_maps))

    @numba.njit(cache=True, nogil=True)
    def _lerp_quantile(v, n, q):
        """NumPy's type-7 quantile of the sorted ``v[:n]`` (its lerp arithmetic)."""
        h = (n - 1) * q
        j = int(np.floor(h))
        lo = v[j]
        hi = v[j + 1] if j + 1 < n else lo
        t = h - j
        if t < 0.5:
            return lo + (hi - lo) * t
        return hi - (hi - lo) * (1 - t)

    def _stat_maps(values, lev, centres, rz, ry, rx, out):
        """The 18 ``stat_*`` features (:data:`._intensity.STAT_TAGS` order) of the values
        of the counted voxels (``lev > 0``) of each window."""
        cz, cy, cx = centres.shape
        wmax = (2 * rz + 1) * (2 * ry + 1) * (2 * rx + 1)
        for row in numba.prange(cz * cy):
            z = row // cy
            y = row % cy
            buf = np.empty(wmax)
            for x in range(cx):
                if not centres[z, y, x]:
                    continue
                n = 0
                s = 0.0
                ss = 0.0
                for zz in range(z, z + 2 * rz + 1):
                    for yy in range(y, y + 2 * ry + 1):
                        for xx in range(x, x + 2 * rx + 1):
                            if lev[zz, yy, xx] != 0:
                                v = np.float64(values[zz, yy, xx])
                                buf[n] = v
                                n += 1
                                s += v
                                ss += v * v
                mean = s / n
                m2 = 0.0
                m3 = 0.0
                m4 = 0.0
                for i in range(n):
                    d = buf[i] - mean
                    d2 = d * d
                    m2 += d2
                    m3 += d2 * d
                    m4 += d2 * d2
                var = m2 / n
                if var > 0:
                    skew = (m3 / n) / var ** 1.5
                    kurt = (m4 / n) / var ** 2 - 3.0
                else:
                    skew = 0.0
                    kurt = 0.0
                w = np.sort(buf[:n])
                p10 = _lerp_quantile(w, n, 0.10)
                p25 = _lerp_quantile(w, n, 0.25)
                med = _lerp_quantile(w, n, 0.50)
                p75 = _lerp_quantile(w, n, 0.75)
                p90 = _lerp_quantile(w, n, 0.90)
                abs_mean = 0.0
                abs_med = 0.0
                n1090 = 0
                s1090 = 0.0
                for i in range(n):
                    abs_mean += abs(w[i] - mean)
                    abs_med += abs(w[i] - med)
                    if p10 <= w[i] <= p90:
                        n1090 += 1
                        s1090 += w[i]
                rmad = np.nan
                if n1090 > 0:
                    m1090 = s1090 / n1090
                    r = 0.0
                    for i in range(n):
                        if p10 <= w[i] <= p90:
                            r += abs(w[i] - m1090)
                    rmad = r / n1090
                out[0, z, y, x] = mean
                out[1, z, y, x] = var
                out[2, z, y, x] = skew
                out[3, z, y, x] = kurt
                out[4, z, y, x] = med
                out[5, z, y, x] = w[0]
                out[6, z, y, x] = p10
                out[7, z, y, x] = p90
                out[8, z, y, x] = w[n - 1]
                out[9, z, y, x] = p75 - p25
                out[10, z, y, x] = w[n - 1] - w[0]
                out[11, z, y, x] = abs_mean / n
                out[12, z, y, x] = rmad
                out[13, z, y, x] = abs_med / n
                out[14, z, y, x] = np.sqrt(var) / mean if mean != 0 else np.nan
                out[15, z, y, x] = (p75 - p25) / (p75 + p25) if p75 + p25 != 0 else np.nan
                out[16, z, y, x] = ss
                out[17, z, y, x] = np.sqrt(ss / n)

    stat_maps = (numba.njit(cache=True, nogil=True)(_stat_maps),
                 numba.njit(cache=True, nogil=True, parallel=True)(_stat_maps))

    @numba.njit(cache=True, nogil=True)
    def _order_level(cum, ng, r):
        """Level (1-based) of the 0-based rank ``r``: the first with ``cum > r``."""
        for a in range(ng):
            if cum[a] > r:
                return a + 1
        return ng

    @numba.njit(cache=True, nogil=True)
    def _level_quantile(cum, ng, n, q):
        h = (n - 1) * q
        j = int(np.floor(h))
        lo = np.float64(_order_level(cum, ng, j))
        hi = np.float64(_order_level(cum, ng, j + 1)) if j + 1 < n else lo
        t = h - j
        if t < 0.5:
            return lo + (hi - lo) * t
        return hi - (hi - lo) * (1 - t)

    @numba.njit(cache=True, nogil=True)
    def _hist_plane(lev, hist, plane, zlo, zhi, ylo, yhi, s):
        for z in range(zlo, zhi + 1):
            for y in range(ylo, yhi + 1):
                a = lev[z, y, plane]
                if a != 0:
                    hist[a - 1] += s

    def _ih_maps(lev, centres, rz, ry, rx, ng, out):
        """The 23 ``ih_*`` features (:data:`._histogram.IH_TAGS` order) of each window's
        grey-level histogram (``ng`` global levels), slid along x."""
        cz, cy, cx = centres.shape
        for row in numba.prange(cz * cy):
            z = row // cy
            y = row % cy
            hist = np.zeros(ng, np.int64)
            cum = np.empty(ng, np.int64)
            grad = np.empty(ng)
            zlo, zhi, ylo, yhi = z, z + 2 * rz, y, y + 2 * ry
            cur = -1
            for x in range(cx):
                if not centres[z, y, x]:
                    continue
                if cur >= 0 and x - cur <= 2 * rx + 1:
                    for xx in range(cur + 1, x + 1):
                        _hist_plane(lev, hist, xx - 1, zlo, zhi, ylo, yhi, -1)
                        _hist_plane(lev, hist, xx + 2 * rx, zlo, zhi, ylo, yhi, 1)
                else:
                    hist[:] = 0
                    for p in range(x, x + 2 * rx + 1):
                        _hist_plane(lev, hist, p, zlo, zhi, ylo, yhi, 1)
                cur = x
                n = 0
                for a in range(ng):
                    n += hist[a]
                    cum[a] = n
                nf = np.float64(n)
                mean = 0.0
                for a in range(ng):
                    mean += (hist[a] / nf) * (a + 1)
                var = 0.0
                m3 = 0.0
                m4 = 0.0
                mad = 0.0
                ent = 0.0
                unif = 0.0
                for a in range(ng):
                    p = hist[a] / nf
                    d = a + 1 - mean
                    var += p * (d * d)
                    m3 += p * d ** 3
                    m4 += p * d ** 4
                    mad += p * abs(d)
                    if p > 0:
                        ent -= p * np.log2(p)
                    unif += p * p
                if var > 0:
                    skew = m3 / var ** 1.5
                    kurt = m4 / var ** 2 - 3.0
                else:
                    skew = 0.0
                    kurt = 0.0
                vmin = 0
                vmax = 0
                mode = 0
                for a in range(ng):
                    if hist[a] > 0:
                        if vmin == 0:
                            vmin = a + 1
                        vmax = a + 1
                    if hist[a] > hist[mode]:
                        mode = a
                p10 = _level_quantile(cum, ng, n, 0.10)
                p25 = _level_quantile(cum, ng, n, 0.25)
                med = _level_quantile(cum, ng, n, 0.50)
                p75 = _level_quantile(cum, ng, n, 0.75)
                p90 = _level_quantile(cum, ng, n, 0.90)
                n_in = 0
                s_in = 0.0
                for a in range(ng):
                    if p10 <= a + 1 <= p90:
                        n_in += hist[a]
                        s_in += hist[a] * np.float64(a + 1)
                rmad = np.nan
                if n_in > 0:
                    m_in = s_in / n_in
                    r = 0.0
                    for a in range(ng):
                        if p10 <= a + 1 <= p90:
                            r += hist[a] * abs(a + 1 - m_in)
                    rmad = r / n_in
                medad = 0.0
                for a in range(ng):
                    medad += (hist[a] / nf) * abs(a + 1 - med)
                if ng > 1:
                    grad[0] = hist[1] - hist[0]
                    grad[ng - 1] = hist[ng - 1] - hist[ng - 2]
                    for a in range(1, ng - 1):
                        grad[a] = (hist[a + 1] - hist[a - 1]) / 2.0
                else:
                    grad[0] = 0.0
                gmax = 0
                gmin = 0
                for a in range(ng):
                    if grad[a] > grad[gmax]:
                        gmax = a
                    if grad[a] < grad[gmin]:
                        gmin = a
                out[0, z, y, x] = mean
                out[1, z, y, x] = var
                out[2, z, y, x] = skew
                out[3, z, y, x] = kurt
                out[4, z, y, x] = med
                out[5, z, y, x] = vmin
                out[6, z, y, x] = p10
                out[7, z, y, x] = p90
                out[8, z, y, x] = vmax
                out[9, z, y, x] = mode + 1
                out[10, z, y, x] = p75 - p25
                out[11, z, y, x] = vmax - vmin
                out[12, z, y, x] = mad
                out[13, z, y, x] = rmad
                out[14, z, y, x] = medad
                out[15, z, y, x] = np.sqrt(var) / mean
                out[16, z, y, x] = (p75 - p25) / (p75 + p25)
                out[17, z, y, x] = ent
                out[18, z, y, x] = unif
                out[19, z, y, x] = grad[gmax]
                out[20, z, y, x] = gmax + 1
                out[21, z, y, x] = grad[gmin]
                out[22, z, y, x] = gmin + 1

    ih_maps = (numba.njit(cache=True, nogil=True)(_ih_maps),
               numba.njit(cache=True, nogil=True, parallel=True)(_ih_maps))

    return glcm_maps, stat_maps, ih_maps


#: Features per window of the neighbourhood families and of the run lengths.
NGL_NFEAT = 17
RLM_NFEAT = 16


@functools.lru_cache(maxsize=1)
def compiled_texture():
    """``(ngt_maps, ngl_maps, rlm_maps)``, compiled on first use; each map kernel as
    ``(serial, parallel)``.

    The neighbourhood families (``ngt``, ``ngl``) count each window voxel's neighbours
    *within the window* (the window is a crop), so a voxel within the neighbourhood
    distance of a window face has a quantity of its own for every window that cuts it:
    per-image quantities windowed by inclusion/exclusion would be those of the uncut
    neighbourhood and are not used.  Along a row the window's y and z faces do not move,
    so each row first computes, for every voxel of its slab (the rows' windows'
    z and y extent, every x the windows reach), its neighbour counts per x offset ``dx``
    clipped to the slab's y/z faces; a window then adds, per voxel, the offsets that its
    x faces keep.  Sliding the window by ``s`` changes only the planes that enter,
    leave, or lie within the distance of an old or a new x face (``2 (s + 2 delta)``
    plane updates): it slides when that is fewer than the ``2 rx + 1`` planes of a
    rebuild (radius above 2 at distance 1), else rebuilds.  The counts are integers
    (NGTDM: ``n_i`` and, per neighbour count ``W``, the integer numerators
    ``sum |i W - sum_neighbours|``), so a window's counts, and its features, do not
    depend on the path.

    Run lengths: runs along a direction with ``dx = 0`` lie in one x-plane and are not
    cut by the x faces, so their counts slide plane by plane; the runs along the other
    directions (9 of 13 in 3-D, 3 of 4 in 2-D) are cut by the moving x faces and are
    counted anew in every window.
    """
    import numba

    nan = np.nan

    formulas = compiled_formulas()
    _emphasis = formulas.emphasis
    _ngt = formulas.ngt

    # -- transitions of a row's window along x -----------------------------------------
    @numba.njit(cache=True, nogil=True, inline="always")
    def _plane_changes(p, xlo_o, xlo_n, w, delta):
        """Whether plane ``p``'s contribution differs between the windows ``[xlo_o,
        xlo_o + w]`` and ``[xlo_n, xlo_n + w]`` (it enters, leaves, or lies within
        ``delta`` of a face of either)."""
        xhi_o = xlo_o + w
        xhi_n = xlo_n + w
        if p < xlo_n or p > xhi_o:
            return True
        return p < xlo_o + delta or p > xhi_o - delta or p < xlo_n + delta or p > xhi_n - delta

    @numba.njit(cache=True, nogil=True)
    def _slide_pays(xlo_o, xlo_n, w, delta):
        ops = 0
        for p in range(xlo_o, xlo_n + w + 1):
            if _plane_changes(p, xlo_o, xlo_n, w, delta):
                ops += (p <= xlo_o + w) + (p >= xlo_n)
        return ops < w + 1

    # -- NGTDM --------------------------------------------------------------------------
    @numba.njit(cache=True, nogil=True)
    def _ngt_plane(lev, csum, ccnt, first, p, xlo, xhi, zlo, nzs, ylo, nys, s, n, num):
        """Add (``s=+1``) or remove (``-1``) the voxels of plane ``p`` of the window
        ``[xlo, xhi]``: neighbour sum and count from the slab's column sums, the
        columns beyond the window's x faces left out."""
        t = p - first
        for a in range(nzs):
            for b in range(nys):
                g = lev[zlo + a, ylo + b, p]
                if g == 0:
                    continue
                tot = csum[a, b, t] - g
                cnt = ccnt[a, b, t] - 1
                if p > xlo:
                    tot += csum[a, b, t - 1]
                    cnt += ccnt[a, b, t - 1]
                if p < xhi:
                    tot += csum[a, b, t + 1]
                    cnt += ccnt[a, b, t + 1]
                if cnt > 0:
                    n[g - 1] += s
                    num[g - 1, cnt] += s * abs(g * cnt - tot)

    def _ngt_maps(lev, centres, rz, ry, rx, ng, out):
        """The 5 ``ngt_*`` features (:data:`._ngtdm.NGTDM_FEATURES` order) of each
        window, neighbourhood distance 1, neighbours within the window."""
        cz, cy, cx = centres.shape
        nzs = 2 * rz + 1
        nys = 2 * ry + 1
        w = 2 * rx
        ncnt = 27
        for row in numba.prange(cz * cy):
            z = row // cy
            y = row % cy
            first = -1
            last = -1
            for x in range(cx):
                if centres[z, y, x]:
                    if first < 0:
                        first = x
                    last = x
            if first < 0:
                continue
            span = last + w - first + 1
            # column sums of the slab: for each slab voxel (a, b) and column x, the sum
            # and count of the levels of its (dz, dy) neighbours within the slab
            csum = np.zeros((nzs, nys, span), np.int64)
            ccnt = np.zeros((nzs, nys, span), np.int64)
            for a in range(nzs):
                za = max(a - 1, 0)
                zb = min(a + 1, nzs - 1)
                for b in range(nys):
                    ya = max(b - 1, 0)
                    yb = min(b + 1, nys - 1)
                    for t in range(span):
                        xx = first + t
                        sm = 0
                        ct = 0
                        for z2 in range(za, zb + 1):
                            for y2 in range(ya, yb + 1):
                                h = lev[z + z2, y + y2, xx]
                                sm += h
                                ct += h > 0
                        csum[a, b, t] = sm
                        ccnt[a, b, t] = ct
            n = np.zeros(ng, np.int64)
            num = np.zeros((ng, ncnt), np.int64)
            nf = np.empty(ng)
            sf = np.empty(ng)
            lv = np.empty(ng)
            pr = np.empty(ng)
            sv = np.empty(ng)
            res = np.empty(NGT_NFEAT)
            cur = -1
            for x in range(first, last + 1):
                if not centres[z, y, x]:
                    continue
                if cur >= 0 and _slide_pays(cur, x, w, 1):
                    for p in range(cur, x + w + 1):
                        if _plane_changes(p, cur, x, w, 1):
                            if p <= cur + w:
                                _ngt_plane(lev, csum, ccnt, first, p, cur, cur + w, z, nzs,
                                           y, nys, -1, n, num)
                            if p >= x:
                                _ngt_plane(lev, csum, ccnt, first, p, x, x + w, z, nzs, y,
                                           nys, 1, n, num)
                else:
                    n[:] = 0
                    num[:, :] = 0
                    for p in range(x, x + w + 1):
                        _ngt_plane(lev, csum, ccnt, first, p, x, x + w, z, nzs, y, nys, 1,
                                   n, num)
                cur = x
                # s_i = sum_w num[i, w] / w from the integer numerators
                for a in range(ng):
                    nf[a] = n[a]
                    si = 0.0
                    if n[a] != 0:
                        for c in range(1, ncnt):
                            if num[a, c] != 0:
                                si += num[a, c] / np.float64(c)
                    sf[a] = si
                _ngt(nf, sf, ng, lv, pr, sv, res)
                for f in range(NGT_NFEAT):
                    out[f, z, y, x] = res[f]

    ngt_maps = (numba.njit(cache=True, nogil=True)(_ngt_maps),
                numba.njit(cache=True, nogil=True, parallel=True)(_ngt_maps))

    # -- NGLDM --------------------------------------------------------------------------
    @numba.njit(cache=True, nogil=True)
    def _ngl_plane(lev, dep, first, p, xlo, xhi, zlo, nzs, ylo, nys, delta, s, m):
        """Add or remove the voxels of plane ``p`` of the window ``[xlo, xhi]``: their
        dependence, the slab's per-``dx`` dependences that the x faces keep."""
        t = p - first
        lo = max(-delta, xlo - p)
        hi = min(delta, xhi - p)
        for a in range(nzs):
            for b in range(nys):
                g = lev[zlo + a, ylo + b, p]
                if g == 0:
                    continue
                k = 0
                for dx in range(lo, hi + 1):
                    k += dep[a, b, t, dx + delta]
                m[g - 1, k] += s

    def _ngl_maps(lev, centres, rz, ry, rx, ng, delta, alpha, out):
        """The 17 ``ngl_*`` features (:data:`._ngldm.NGLDM_FEATURES` order) of each
        window's dependence matrix, neighbours within ``delta`` and within the window."""
        cz, cy, cx = centres.shape
        nzs = 2 * rz + 1
        nys = 2 * ry + 1
        w = 2 * rx
        nd = 2 * delta + 1
        ncol = nd * nd * nd
        for row in numba.prange(cz * cy):
            z = row // cy
            y = row % cy
            first = -1
            last = -1
            for x in range(cx):
                if centres[z, y, x]:
                    if first < 0:
                        first = x
                    last = x
            if first < 0:
                continue
            span = last + w - first + 1
            # dependences per x offset of every slab voxel, clipped to the slab's faces
            dep = np.zeros((nzs, nys, span, nd), np.int32)
            for a in range(nzs):
                za = max(a - delta, 0)
                zb = min(a + delta, nzs - 1)
                for b in range(nys):
                    ya = max(b - delta, 0)
                    yb = min(b + delta, nys - 1)
                    for t in range(span):
                        g = lev[z + a, y + b, first + t]
                        if g == 0:
                            continue
                        for dx in range(-delta, delta + 1):
                            if t + dx < 0 or t + dx >= span:
                                continue
                            k = 0
                            for z2 in range(za, zb + 1):
                                for y2 in range(ya, yb + 1):
                                    h = lev[z + z2, y + y2, first + t + dx]
                                    if h != 0 and abs(h - g) <= alpha:
                                        k += 1
                            if dx == 0:
                                k -= 1  # the voxel itself
                            dep[a, b, t, dx + delta] = k
            m = np.zeros((ng, ncol), np.int64)
            mi = np.empty(ng)
            mj = np.empty(ncol)
            cols = np.empty(ncol, np.int64)
            res = np.empty(EMPHASIS_NFEAT)
            cur = -1
            for x in range(first, last + 1):
                if not centres[z, y, x]:
                    continue
                if cur >= 0 and _slide_pays(cur, x, w, delta):
                    for p in range(cur, x + w + 1):
                        if _plane_changes(p, cur, x, w, delta):
                            if p <= cur + w:
                                _ngl_plane(lev, dep, first, p, cur, cur + w, z, nzs, y, nys,
                                           delta, -1, m)
                            if p >= x:
                                _ngl_plane(lev, dep, first, p, x, x + w, z, nzs, y, nys,
                                           delta, 1, m)
                else:
                    m[:, :] = 0
                    for p in range(x, x + w + 1):
                        _ngl_plane(lev, dep, first, p, x, x + w, z, nzs, y, nys, delta, 1, m)
                cur = x
                # one neighbourhood per voxel: Nv = Ns; the dependence energy last
                _emphasis(m, ng, ncol, NV_COUNTS, 0.0, mi, mj, cols, res)
                for f in range(NGL_NFEAT):
                    out[f, z, y, x] = res[f]

    ngl_maps = (numba.njit(cache=True, nogil=True)(_ngl_maps),
                numba.njit(cache=True, nogil=True, parallel=True)(_ngl_maps))

    # -- GLRLM --------------------------------------------------------------------------
    @numba.njit(cache=True, nogil=True)
    def _count_runs(lev, dirs, k0, k1, zlo, zhi, ylo, yhi, xlo, xhi, plo, phi, s, cnt):
        """Add (``s``) the runs along directions ``k0..k1 - 1`` of the window
        ``[zlo, zhi] x [ylo, yhi] x [xlo, xhi]`` that start in x-planes ``plo..phi``:
        a run starts where the previous voxel along the direction leaves the window
        or has another level."""
        for k in range(k0, k1):
            dz = dirs[k, 0]
            dy = dirs[k, 1]
            dx = dirs[k, 2]
            for z in range(zlo, zhi + 1):
                for y in range(ylo, yhi + 1):
                    for x in range(plo, phi + 1):
                        a = lev[z, y, x]
                        if a == 0:
                            continue
                        pz = z - dz
                        py = y - dy
                        px = x - dx
                        if (zlo <= pz <= zhi and ylo <= py <= yhi and xlo <= px <= xhi
                                and lev[pz, py, px] == a):
                            continue
                        n = 1
                        qz = z + dz
                        qy = y + dy
                        qx = x + dx
                        while (zlo <= qz <= zhi and ylo <= qy <= yhi and xlo <= qx <= xhi
                               and lev[qz, qy, qx] == a):
                            n += 1
                            qz += dz
                            qy += dy
                            qx += dx
                        cnt[k, a - 1, n - 1] += s

    def _rlm_maps(lev, centres, dirs, n_fixed, rz, ry, rx, ng, want_avg, want_comb, out):
        """The 16 ``rlm_*`` features (:data:`._glrlm.GLRLM_FEATURES` order) of each
        window, averaged over ``dirs`` (``want_avg``) then of their merged matrix
        (``want_comb``).  ``dirs[:n_fixed]`` have ``dx = 0`` (slid), the rest are
        counted per window."""
        cz, cy, cx = centres.shape
        nd = dirs.shape[0]
        w = 2 * rx
        nlen = max(2 * rz + 1, 2 * ry + 1, 2 * rx + 1)
        comb_at = RLM_NFEAT if want_avg else 0
        for row in numba.prange(cz * cy):
            z = row // cy
            y = row % cy
            first = -1
            for x in range(cx):
                if centres[z, y, x]:
                    first = x
                    break
            if first < 0:
                continue
            zlo, zhi, ylo, yhi = z, z + 2 * rz, y, y + 2 * ry
            cnt = np.zeros((nd, ng, nlen), np.int64)
            comb = np.empty((ng, nlen), np.int64)
            mi = np.empty(ng)
            mj = np.empty(nlen)
            cols = np.empty(nlen, np.int64)
            res = np.empty(EMPHASIS_NFEAT)
            acc = np.empty(RLM_NFEAT)
            cur = -1
            for x in range(first, cx):
                if not centres[z, y, x]:
                    continue
                if cur >= 0 and 2 * (x - cur) <= w:  # cheaper than a rebuild
                    for p in range(cur, x):
                        _count_runs(lev, dirs, 0, n_fixed, zlo, zhi, ylo, yhi, p, p, p, p,
                                    -1, cnt)
                    for p in range(cur + w + 1, x + w + 1):
                        _count_runs(lev, dirs, 0, n_fixed, zlo, zhi, ylo, yhi, p, p, p, p,
                                    1, cnt)
                else:
                    cnt[:n_fixed] = 0
                    for p in range(x, x + w + 1):
                        _count_runs(lev, dirs, 0, n_fixed, zlo, zhi, ylo, yhi, p, p, p, p,
                                    1, cnt)
                cnt[n_fixed:] = 0
                _count_runs(lev, dirs, n_fixed, nd, zlo, zhi, ylo, yhi, x, x + w, x, x + w,
                            1, cnt)
                cur = x
                if want_avg:
                    used = 0
                    for f in range(RLM_NFEAT):
                        acc[f] = 0.0
                    for k in range(nd):
                        if not _emphasis(cnt[k], ng, nlen, NV_RUN_VOXELS, 0.0, mi, mj, cols,
                                         res):
                            continue  # an empty direction is left out of the average
                        used += 1
                        for f in range(RLM_NFEAT):
                            acc[f] += res[f]
                    for f in range(RLM_NFEAT):
                        out[f, z, y, x] = acc[f] / used if used > 0 else nan
                if want_comb:
                    comb[:, :] = 0
                    for k in range(nd):
                        for a in range(ng):
                            for b in range(nlen):
                                comb[a, b] += cnt[k, a, b]
                    _emphasis(comb, ng, nlen, NV_RUN_VOXELS, 0.0, mi, mj, cols, res)
                    for f in range(RLM_NFEAT):
                        out[comb_at + f, z, y, x] = res[f]

    rlm_maps = (numba.njit(cache=True, nogil=True)(_rlm_maps),
                numba.njit(cache=True, nogil=True, parallel=True)(_rlm_maps))

    return ngt_maps, ngl_maps, rlm_maps
