"""The compiled IBSI texture formulas: one definition for extraction and feature maps.

The formulas of the texture families, from a family's count matrix to its features, exist
once, here, as numba functions (``cache=True, nogil=True``) that the extraction
(:func:`._glcm.glcm_aggregate`, :func:`._glrlm.glrlm_aggregate`, ... through the ``*_table``
functions below, a whole stack of matrices per call) and the sliding-window kernels of
:mod:`._maps_kernels` (one window's matrix per call) both call.

GLCM (:data:`._glcm.GLCM_FEATURES` order) on the counts ``c`` of a *symmetric* matrix with
``N`` pairs: ``p = c / N``; entropies as ``sum c (log2 N - log2 c) / N``, ``log2`` of the
integer counts from a table (:func:`log2_table`) where a count is an integer within it and
computed otherwise (table and computation are the same compiled ``log2``, so the values do
not depend on the table's size); the diagonal and anti-diagonal marginals as histograms of
the counts; ``HXY1 = HXY2 = HX + HY = 2 HX`` (the row and column marginals of a symmetric
matrix are equal).  A whole-ROI stack holds the *ordered* pair counts per direction, which
:func:`glcm_table` symmetrises (``C + C.T``) on the fly.

The emphasis formulas (the 16 that IBSI shares between run length, size zone, distance zone
and dependence matrices, :data:`._glrlm.GLRLM_FEATURES` order, plus the dependence energy
``sum p^2``) read a dense ``(Ng, Nj)`` matrix once for its row and column sums, then only
its non-empty rows and columns: a size zone matrix is as wide as its largest zone and
mostly empty.

NGTDM (:data:`._ngtdm.NGTDM_FEATURES` order) from ``n_i`` and ``s_i``.

Reference implementations in NumPy, independent of these, are in the tests
(``tests/features/_formula_reference.py``); the two agree to float64 rounding.

numba's on-disk cache of a kernel that calls these does not notice a change of this file:
after editing it, clear the ``__pycache__`` ``*.nbi``/``*.nbc`` files of
``_maps_kernels.py`` (the package's installed files change together).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["EMPHASIS_NFEAT", "GLCM_NFEAT", "NGT_NFEAT", "NV_COUNTS", "NV_GIVEN",
           "NV_RUN_VOXELS", "compiled_formulas", "emphasis_table", "glcm_table",
           "log2_table", "ngtdm_table"]

GLCM_NFEAT = 25
#: The 16 shared emphasis formulas and the dependence energy (``ngl_dc_energy``).
EMPHASIS_NFEAT = 17
NGT_NFEAT = 5

#: ``N_v`` of the emphasis formulas' percentage: given per matrix (zone percentage of
#: the distance zones), ``sum_ij j m_ij`` (the voxels of runs and zones), or ``N_s`` (one
#: dependence neighbourhood per voxel).
NV_GIVEN, NV_RUN_VOXELS, NV_COUNTS = 0, 1, 2

#: Entries of the log2 table of the extraction's GLCM entropies; larger counts (whole-ROI
#: counts reach millions) are computed.
_EXTRACTION_LOG2_SIZE = 1 << 14

#: IBSI's cap on coarseness when ``sum_i p_i s_i = 0`` (a ROI without grey tone change).
COARSENESS_MAX = 1.0e6


@functools.lru_cache(maxsize=1)
def compiled_formulas():
    """The compiled formulas, compiled on first use (cached on disk), as a namespace:

    ``log2_table(n)``; ``glcm(m, marg, n, ng, log2i, present, pdiff, psum, res)`` (one
    symmetric matrix, ``n > 0``) and ``glcm_stack(counts, symmetrise, with_sum, log2i, res,
    counted)``; ``emphasis(m, nrow, ncol, nv_mode, n_voxels, mi, mj, cols, res) -> bool``
    and ``emphasis_stack(stack, with_sum, nv_mode, n_voxels, res, counted)``;
    ``ngt(n, s, ng, lv, p, sv, res) -> bool`` and ``ngt_stack(stack, res, counted)``.
    """
    import types

    import numba

    nan = np.nan

    @numba.njit(cache=True, nogil=True)
    def log2_table(n):
        """``log2(k)`` for ``k < n`` (``log2(0)`` taken as 0): the same compiled ``log2``
        as :func:`_log2`'s fallback, so a count's logarithm does not depend on the table."""
        t = np.zeros(max(n, 1))
        for k in range(1, n):
            t[k] = np.log2(np.float64(k))
        return t

    @numba.njit(cache=True, nogil=True)
    def _log2(c, log2i):
        """``log2(c)`` of a count ``c > 0``, from the table when an integer within it."""
        k = np.int64(c)
        if k < log2i.shape[0] and k == c:
            return log2i[k]
        return np.log2(np.float64(c))

    # -- GLCM ---------------------------------------------------------------------------
    @numba.njit(cache=True, nogil=True)
    def glcm(m, marg, n, ng, log2i, present, pdiff, psum, res):
        """The 25 features of a symmetric count matrix ``m`` with ``n`` (> 0) pairs and
        row sums ``marg``, in :data:`._glcm.GLCM_FEATURES` order, into ``res``;
        ``present``, ``pdiff`` (``ng``) and ``psum`` (``2 ng + 1``) are workspaces,
        ``pdiff``/``psum`` of the counts' type."""
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
                hx_acc += c * (log_n - _log2(c, log2i))
        mu /= nf
        hx = hx_acc / nf
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
        cmax = m[0, 0] * 0
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
                ent_acc += w * cf * (log_n - _log2(c, log2i))
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
            diff_ent += cf * (log_n - _log2(c, log2i))
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
            sum_ent += cf * (log_n - _log2(c, log2i))
            cl = s - 2.0 * mu
            cl2 += cl * cl * cf
            cl3 += cl * cl * cl * cf
            cl4 += cl * cl * cl * cl * cf
        hxy = ent_acc / nf
        res[0] = cmax / nf                      # joint_max
        res[1] = mu                             # joint_avg
        res[2] = var                            # joint_var
        res[3] = hxy                            # joint_entr
        res[4] = diff_avg                       # diff_avg
        res[5] = diff_var / nf                  # diff_var
        res[6] = diff_ent / nf                  # diff_entr
        res[7] = sum_avg                        # sum_avg
        res[8] = sum_var / nf                   # sum_var
        res[9] = sum_ent / nf                   # sum_entr
        res[10] = sq_acc / (nf * nf)            # energy
        res[11] = contrast / nf                 # contrast
        res[12] = dissim / nf                   # dissimilarity
        res[13] = inv_diff / nf                 # inv_diff
        res[14] = inv_diff_norm / nf            # inv_diff_norm
        res[15] = inv_diff_mom / nf             # inv_diff_mom
        res[16] = inv_diff_mom_norm / nf        # inv_diff_mom_norm
        res[17] = inv_var / nf                  # inv_var
        res[18] = corr_acc / nf / var if var > 0 else nan  # corr
        res[19] = auto_acc / nf                 # auto_corr
        res[20] = cl2 / nf                      # clust_tend
        res[21] = cl3 / nf                      # clust_shade
        res[22] = cl4 / nf                      # clust_prom
        res[23] = (hxy - 2.0 * hx) / hx if hx > 0 else nan  # info_corr1
        res[24] = np.sqrt(max(0.0, 1.0 - np.exp(-2.0 * (2.0 * hx - hxy))))  # info_corr2

    @numba.njit(cache=True, nogil=True)
    def glcm_stack(counts, symmetrise, with_sum, log2i, res, counted):
        """:func:`glcm` of each ``(ng, ng)`` matrix of ``counts`` (``C + C.T`` of it when
        ``symmetrise``), then, with ``with_sum``, of their sum, into the rows of ``res``;
        ``counted[r]`` False (and ``res[r]`` NaN) for an empty matrix."""
        k = counts.shape[0]
        ng = counts.shape[1]
        sym = np.empty((ng, ng))
        total = np.zeros((ng, ng))
        marg = np.empty(ng)
        present = np.empty(ng, np.int64)
        pdiff = np.empty(ng)
        psum = np.empty(2 * ng + 1)
        for r in range(k + (1 if with_sum else 0)):
            n = 0.0
            for a in range(ng):
                marg[a] = 0.0
            for a in range(ng):
                for b in range(ng):
                    if r < k:
                        c = np.float64(counts[r, a, b])
                        if symmetrise:
                            c += np.float64(counts[r, b, a])
                        if with_sum:
                            total[a, b] += c
                    else:
                        c = total[a, b]
                    sym[a, b] = c
                    marg[a] += c
                    n += c
            counted[r] = n > 0
            if n > 0:
                glcm(sym, marg, n, ng, log2i, present, pdiff, psum, res[r])
            else:
                for f in range(GLCM_NFEAT):
                    res[r, f] = nan

    # -- run length, size zone, distance zone, dependence -------------------------------
    @numba.njit(cache=True, nogil=True)
    def emphasis(m, nrow, ncol, nv_mode, n_voxels, mi, mj, cols, res):
        """The emphasis formulas of the matrix ``m[:nrow, :ncol]`` (grey level ``i = row +
        1``, count ``j = column + 1``) into ``res[:17]``, all NaN (and False returned) for
        an empty matrix.  ``N_v`` per ``nv_mode`` (:data:`NV_GIVEN` takes ``n_voxels``;
        NaN gives a NaN percentage).  ``mi`` (``nrow``, float64), ``mj`` (``ncol``,
        float64) and ``cols`` (``ncol``, int64) are workspaces."""
        n_s = 0.0
        n_v = 0.0
        for a in range(nrow):
            mi[a] = 0.0
        for b in range(ncol):
            mj[b] = 0.0
        for a in range(nrow):
            for b in range(ncol):
                c = m[a, b]
                if c != 0:
                    cf = np.float64(c)
                    n_s += cf
                    n_v += cf * (b + 1)
                    mi[a] += cf
                    mj[b] += cf
        if n_s <= 0:
            for f in range(EMPHASIS_NFEAT):
                res[f] = nan
            return False
        if nv_mode == NV_COUNTS:
            n_v = n_s
        elif nv_mode == NV_GIVEN:
            n_v = n_voxels
        ncols = 0
        for b in range(ncol):
            if mj[b] != 0:
                cols[ncols] = b
                ncols += 1
        ns = n_s
        sre = 0.0
        lre = 0.0
        lgre = 0.0
        hgre = 0.0
        srlge = 0.0
        srhge = 0.0
        lrlge = 0.0
        lrhge = 0.0
        mu_i = 0.0
        mu_j = 0.0
        ent = 0.0
        energy = 0.0
        for a in range(nrow):
            if mi[a] == 0:
                continue
            i = a + 1.0
            i2 = i * i
            for t in range(ncols):
                b = cols[t]
                c = m[a, b]
                if c == 0:
                    continue
                cf = np.float64(c)
                j = b + 1.0
                j2 = j * j
                sre += cf * (1.0 / j2)
                lre += cf * j2
                lgre += cf * (1.0 / i2)
                hgre += cf * i2
                srlge += cf * (1.0 / (i2 * j2))
                srhge += cf * (i2 / j2)
                lrlge += cf * (j2 / i2)
                lrhge += cf * (i2 * j2)
                p = cf / ns
                ent += p * np.log2(p)
                energy += p * p
        # means and variances from the (integer) marginals: exact for one level
        gl_nu = 0.0
        for a in range(nrow):
            mu_i += (a + 1.0) * mi[a]
            gl_nu += mi[a] * mi[a]
        mu_i /= ns
        j_nu = 0.0
        for t in range(ncols):
            f = mj[cols[t]]
            mu_j += (cols[t] + 1.0) * f
            j_nu += f * f
        mu_j /= ns
        var_i = 0.0
        for a in range(nrow):
            d = a + 1.0 - mu_i
            var_i += d * d * mi[a]
        var_i /= ns
        var_j = 0.0
        for t in range(ncols):
            d = cols[t] + 1.0 - mu_j
            var_j += d * d * mj[cols[t]]
        var_j /= ns
        res[0] = sre / ns
        res[1] = lre / ns
        res[2] = lgre / ns
        res[3] = hgre / ns
        res[4] = srlge / ns
        res[5] = srhge / ns
        res[6] = lrlge / ns
        res[7] = lrhge / ns
        res[8] = gl_nu / ns
        res[9] = gl_nu / ns ** 2
        res[10] = j_nu / ns
        res[11] = j_nu / ns ** 2
        res[12] = ns / n_v if n_v > 0 else nan
        res[13] = var_i
        res[14] = var_j
        res[15] = -ent
        res[16] = energy
        return True

    @numba.njit(cache=True, nogil=True)
    def emphasis_stack(stack, with_sum, nv_mode, n_voxels, res, counted):
        """:func:`emphasis` of each ``(nrow, ncol)`` matrix of ``stack`` (``N_v`` of row
        ``r`` ``n_voxels[r]`` with :data:`NV_GIVEN`) and, with ``with_sum``, of their sum
        (``N_v`` from the last entry of ``n_voxels``), into the rows of ``res``."""
        k, nrow, ncol = stack.shape
        mi = np.empty(nrow)
        mj = np.empty(ncol)
        cols = np.empty(ncol, np.int64)
        for r in range(k):
            counted[r] = emphasis(stack[r], nrow, ncol, nv_mode, n_voxels[r], mi, mj,
                                  cols, res[r])
        if with_sum:
            total = np.zeros_like(stack[0])
            for r in range(k):
                for a in range(nrow):
                    for b in range(ncol):
                        total[a, b] += stack[r, a, b]
            counted[k] = emphasis(total, nrow, ncol, nv_mode, n_voxels[k], mi, mj, cols,
                                  res[k])

    # -- NGTDM --------------------------------------------------------------------------
    @numba.njit(cache=True, nogil=True)
    def ngt(n, s, ng, lv, p, sv, res):
        """The 5 NGTDM features of ``n[i]`` voxels of level ``i + 1`` with a neighbour and
        their grey tone differences ``s[i]`` (float64, ``ng`` each) into ``res``, all NaN
        (and False returned) when no voxel has a neighbour; ``lv``, ``p``, ``sv`` (``ng``)
        are workspaces."""
        n_vc = 0.0
        for a in range(ng):
            n_vc += n[a]
        if n_vc <= 0:
            for f in range(NGT_NFEAT):
                res[f] = nan
            return False
        n_gp = 0
        sum_ps = 0.0
        sum_s = 0.0
        for a in range(ng):
            if n[a] == 0:
                continue
            lv[n_gp] = a + 1.0
            p[n_gp] = n[a] / n_vc
            sv[n_gp] = s[a]
            sum_ps += p[n_gp] * s[a]
            sum_s += s[a]
            n_gp += 1
        pp_d2 = 0.0
        busy_den = 0.0
        compl = 0.0
        strength = 0.0
        for u in range(n_gp):
            for t in range(u + 1, n_gp):
                d = lv[u] - lv[t]
                d2 = d * d
                pp_d2 += p[u] * p[t] * d2
                busy_den += abs(lv[u] * p[u] - lv[t] * p[t])
                compl += abs(d) * (p[u] * sv[u] + p[t] * sv[t]) / (p[u] + p[t])
                strength += (p[u] + p[t]) * d2
        # every sum over ordered pairs (i, j) is twice that over i < j (i = j adds 0)
        if n_gp > 1:
            contrast = 2.0 * pp_d2 / (n_gp * (n_gp - 1)) * sum_s / n_vc
            busyness = sum_ps / (2.0 * busy_den) if busy_den > 0 else nan
        else:
            contrast = 0.0
            busyness = 0.0
        res[0] = 1.0 / sum_ps if sum_ps > 0 else COARSENESS_MAX  # coarseness (IBSI cap)
        res[1] = contrast
        res[2] = busyness
        res[3] = 2.0 * compl / n_vc                              # complexity
        res[4] = 2.0 * strength / sum_s if sum_s > 0 else 0.0
        return True

    @numba.njit(cache=True, nogil=True)
    def ngt_stack(stack, res, counted):
        """:func:`ngt` of each ``(ng, 2)`` matrix (``n_i``, ``s_i``) of ``stack``."""
        k, ng = stack.shape[0], stack.shape[1]
        n = np.empty(ng)
        s = np.empty(ng)
        lv = np.empty(ng)
        p = np.empty(ng)
        sv = np.empty(ng)
        for r in range(k):
            for a in range(ng):
                n[a] = stack[r, a, 0]
                s[a] = stack[r, a, 1]
            counted[r] = ngt(n, s, ng, lv, p, sv, res[r])

    return types.SimpleNamespace(
        log2_table=log2_table, glcm=glcm, glcm_stack=glcm_stack, emphasis=emphasis,
        emphasis_stack=emphasis_stack, ngt=ngt, ngt_stack=ngt_stack)


def log2_table(n: int) -> np.ndarray:
    """``log2(k)`` for ``k`` in ``0 .. n - 1`` (0 for ``k = 0``), as the formulas compute it."""
    return compiled_formulas().log2_table(int(n))


@functools.lru_cache(maxsize=1)
def _extraction_log2() -> np.ndarray:
    return log2_table(_EXTRACTION_LOG2_SIZE)


def _counts_array(stack) -> np.ndarray:
    """``stack`` as a C-contiguous int64 (integer counts) or float64 array: the two types
    the formulas are compiled for."""
    a = np.asarray(stack)
    dtype = np.int64 if a.dtype.kind in "iub" else np.float64
    return np.ascontiguousarray(a, dtype=dtype)


def glcm_table(counts, *, symmetrise=True, with_sum=False):
    """GLCM features of a ``(k, Ng, Ng)`` stack of co-occurrence counts.

    Parameters
    ----------
    counts : (k, Ng, Ng) array
        Ordered pair counts (``symmetrise``: the features are those of ``C + C.T``) or
        symmetric matrices (counts or probabilities) with ``symmetrise=False``.
    with_sum : bool
        Also the features of the stack's sum, as a last row.

    Returns
    -------
    values : (k [+ 1], 25) float64
        Features in :data:`._glcm.GLCM_FEATURES` order, NaN rows for empty matrices.
    counted : (k [+ 1],) bool
        False for an empty matrix.
    """
    c = _counts_array(counts)
    if c.ndim != 3 or c.shape[1] != c.shape[2]:
        raise ValueError(f"`counts` must have shape (k, Ng, Ng), got {c.shape}")
    rows = c.shape[0] + bool(with_sum)
    res = np.empty((rows, GLCM_NFEAT))
    counted = np.empty(rows, np.bool_)
    if c.shape[1] == 0:
        res[:] = np.nan
        counted[:] = False
        return res, counted
    compiled_formulas().glcm_stack(c, bool(symmetrise), bool(with_sum), _extraction_log2(),
                                   res, counted)
    return res, counted


def emphasis_table(stack, *, with_sum=False, nv_mode=NV_RUN_VOXELS, n_voxels=None):
    """Emphasis formulas of a ``(k, Ng, Nj)`` stack of run length, zone or dependence
    matrices.

    Parameters
    ----------
    stack : (k, Ng, Nj) array
        Counts, row ``i - 1`` for grey level ``i``, column ``j - 1`` for count ``j``.
    with_sum : bool
        Also the formulas of the stack's sum, as a last row.
    nv_mode : {NV_GIVEN, NV_RUN_VOXELS, NV_COUNTS}
        ``N_v`` of the percentage (see :data:`NV_GIVEN`).
    n_voxels : (k [+ 1],) array of float, optional
        ``N_v`` per row with :data:`NV_GIVEN`.

    Returns
    -------
    values : (k [+ 1], 17) float64
        The 16 emphasis formulas (:data:`._glrlm.GLRLM_FEATURES` order) and the
        dependence energy; NaN rows for empty matrices.
    counted : (k [+ 1],) bool
        False for an empty matrix.
    """
    m = _counts_array(stack)
    if m.ndim != 3:
        raise ValueError(f"`stack` must be 3-D (k, Ng, Nj), got shape {m.shape}")
    rows = m.shape[0] + bool(with_sum)
    if nv_mode == NV_GIVEN:
        nv = np.ascontiguousarray(n_voxels, dtype=np.float64).reshape(-1)
        if nv.size != rows:
            raise ValueError(f"`n_voxels` must have {rows} entries, got {nv.size}")
    else:
        nv = np.zeros(rows)
    res = np.empty((rows, EMPHASIS_NFEAT))
    counted = np.empty(rows, np.bool_)
    compiled_formulas().emphasis_stack(m, bool(with_sum), int(nv_mode), nv, res, counted)
    return res, counted


def ngtdm_table(stack):
    """NGTDM features of a ``(k, Ng, 2)`` stack (``n_i``, ``s_i``): ``(values (k, 5),
    counted (k,))``, NaN rows where no voxel has a neighbour."""
    m = np.ascontiguousarray(stack, dtype=np.float64)
    if m.ndim != 3 or m.shape[2] != 2:
        raise ValueError(f"`stack` must have shape (k, Ng, 2), got {m.shape}")
    res = np.empty((m.shape[0], NGT_NFEAT))
    counted = np.empty(m.shape[0], np.bool_)
    compiled_formulas().ngt_stack(m, res, counted)
    return res, counted
