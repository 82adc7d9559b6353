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

The GLCM formulas are those of :func:`._glcm.glcm_features` rewritten for integer
counts ``c`` of a symmetric matrix with ``N`` pairs: ``p = c / N``, entropies as
``log2 N - sum(c log2 c) / N`` (``log2`` of integers from a table), the diagonal and
anti-diagonal marginals as integer histograms, and ``HXY1 = HXY2 = HX + HY = 2 HX``
(the marginals of a symmetric matrix are equal and sum to one).  They agree with
``glcm_features`` to float64 rounding.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["GLCM_NFEAT", "IH_NFEAT", "STAT_NFEAT", "compiled"]

GLCM_NFEAT = 25
STAT_NFEAT = 18
IH_NFEAT = 23


@functools.lru_cache(maxsize=1)
def compiled():
    """``(glcm_maps, stat_maps, ih_maps, glcm_formulas)``, compiled on first use (cached
    on disk); each map kernel as ``(serial, parallel)``."""
    import numba

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

    @numba.njit(cache=True, nogil=True)
    def _glcm_formulas(m, marg, n, ng, log2i, present, pdiff, psum, res):
        """The 25 features of a symmetric count matrix ``m`` with ``n`` (> 0) pairs and
        row sums ``marg``, in :data:`._glcm.GLCM_FEATURES` order, into ``res``."""
        nf = np.float64(n)
        log_n = np.log2(nf)
        npres = 0
        mu = 0.0
        hx_acc = 0.0
        for a in range(ng):
            c = marg[a]
            if c > 0:
                present[npres] = a
                npres += 1
                mu += (a + 1) * np.float64(c)
                hx_acc += c * log2i[c]
        mu /= nf
        hx = log_n - hx_acc / nf
        var = 0.0
        for t in range(npres):
            a = present[t]
            d = a + 1 - mu
            var += d * d * marg[a]
        var /= nf
        for k in range(ng):
            pdiff[k] = 0
        for k in range(2 * ng + 1):
            psum[k] = 0
        cmax = 0
        sq_acc = 0.0
        ent_acc = 0.0
        corr_acc = 0.0
        auto_acc = 0.0
        for t in range(npres):
            i = present[t]
            for u in range(t, npres):
                j = present[u]
                c = m[i, j]
                if c == 0:
                    continue
                w = 1 if i == j else 2  # the (j, i) entry, equal by symmetry
                cmax = max(cmax, c)
                cf = np.float64(c)
                sq_acc += w * cf * cf
                ent_acc += w * cf * log2i[c]
                corr_acc += w * (i + 1 - mu) * (j + 1 - mu) * cf
                auto_acc += w * np.float64((i + 1) * (j + 1)) * cf
                pdiff[j - i] += w * c
                psum[i + j + 2] += w * c
        diff_avg = 0.0
        for k in range(ng):
            diff_avg += k * np.float64(pdiff[k])
        diff_avg /= nf
        diff_var = 0.0
        diff_ent = 0.0
        contrast = 0.0
        dissim = 0.0
        inv_diff = 0.0
        inv_diff_norm = 0.0
        inv_diff_mom = 0.0
        inv_diff_mom_norm = 0.0
        inv_var = 0.0
        ngf = np.float64(ng)
        for k in range(ng):
            c = pdiff[k]
            if c == 0:
                continue
            cf = np.float64(c)
            kf = np.float64(k)
            diff_var += (kf - diff_avg) ** 2 * cf
            diff_ent += cf * log2i[c]
            contrast += kf * kf * cf
            dissim += kf * cf
            inv_diff += cf / (1.0 + kf)
            inv_diff_norm += cf / (1.0 + kf / ngf)
            inv_diff_mom += cf / (1.0 + kf * kf)
            inv_diff_mom_norm += cf / (1.0 + kf * kf / (ngf * ngf))
            if k > 0:
                inv_var += cf / (kf * kf)
        sum_avg = 0.0
        for s in range(2, 2 * ng + 1):
            sum_avg += s * np.float64(psum[s])
        sum_avg /= nf
        sum_var = 0.0
        sum_ent = 0.0
        cl2 = 0.0
        cl3 = 0.0
        cl4 = 0.0
        for s in range(2, 2 * ng + 1):
            c = psum[s]
            if c == 0:
                continue
            cf = np.float64(c)
            sum_var += (s - sum_avg) ** 2 * cf
            sum_ent += cf * log2i[c]
            cl = s - 2.0 * mu
            cl2 += cl * cl * cf
            cl3 += cl * cl * cl * cf
            cl4 += cl * cl * cl * cl * cf
        hxy = log_n - ent_acc / nf
        res[0] = cmax / nf                      # joint_max
        res[1] = mu                             # joint_avg
        res[2] = var                            # joint_var
        res[3] = hxy                            # joint_entr
        res[4] = diff_avg                       # diff_avg
        res[5] = diff_var / nf                  # diff_var
        res[6] = log_n - diff_ent / nf          # diff_entr
        res[7] = sum_avg                        # sum_avg
        res[8] = sum_var / nf                   # sum_var
        res[9] = log_n - sum_ent / nf           # sum_entr
        res[10] = sq_acc / (nf * nf)            # energy
        res[11] = contrast / nf                 # contrast
        res[12] = dissim / nf                   # dissimilarity
        res[13] = inv_diff / nf                 # inv_diff
        res[14] = inv_diff_norm / nf            # inv_diff_norm
        res[15] = inv_diff_mom / nf             # inv_diff_mom
        res[16] = inv_diff_mom_norm / nf        # inv_diff_mom_norm
        res[17] = inv_var / nf                  # inv_var
        res[18] = corr_acc / nf / var if var > 0 else np.nan  # corr
        res[19] = auto_acc / nf                 # auto_corr
        res[20] = cl2 / nf                      # clust_tend
        res[21] = cl3 / nf                      # clust_shade
        res[22] = cl4 / nf                      # clust_prom
        res[23] = (hxy - 2.0 * hx) / hx if hx > 0 else np.nan  # info_corr1
        res[24] = np.sqrt(max(0.0, 1.0 - np.exp(-2.0 * (2.0 * hx - hxy))))  # info_corr2

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

    return glcm_maps, stat_maps, ih_maps, _glcm_formulas
