// Separable 1-D passes along one axis of a C-contiguous 2-D/3-D volume: correlation
// with a weight vector (Gaussian, its derivatives, uniform, Laplace...), and running
// minimum/maximum over a box (the separable passes of minimum_filter/maximum_filter).
//
// The volume is viewed as (outer, n, inner): n samples along the filtered axis, inner
// the contiguous extent after it.  Two kernels, because the two cases coalesce along
// different directions:
//   sep_line     inner == 1 (the last axis): a block loads BY line segments of
//                BX*PER outputs plus the halo, coalesced along the line;
//   sep_strided  inner > 1: a block loads a (BL*PER + halo) x BI tile, coalesced along
//                inner, and each thread walks its own column.
// Each thread computes PER consecutive outputs along the axis and streams the
// PER + TAPS - 1 samples they need through one register, so a sample read from shared
// memory serves up to PER outputs (the "register blocking" that keeps shared-memory
// traffic well under one load per tap).  Accumulation is in T: float for float32,
// double for float64.  Window of output i: [i - TAPS/2, i - TAPS/2 + TAPS), scipy's
// origin 0, for correlation and for the extrema alike.
#ifndef MEDIMG_FAST_COMMON_CU
#include "common.cu"
#endif

namespace medimg {

// Up to this many taps, the loops are fully unrolled and the weights live in
// registers (33 taps: a Gaussian of sigma 4 at truncate 4).  Longer kernels read
// their weights from shared memory inside a partly unrolled loop.
constexpr int kUnrollTaps = 33;

// Shared-memory rows of sep_line hold one pad element after every PER samples: thread
// t reads sample t*PER + j at t*(PER+1) + j + j/PER, an odd stride across the warp, so
// the 32 lanes (16 for double, served per half warp) hit distinct banks for every j.
template <int PER>
__host__ __device__ __forceinline__ int skewed(int i) {
    return PER == 1 ? i : i + i / PER;
}

template <class Op, int TAPS, int PER, typename T, typename W>
__device__ __forceinline__ void accumulate(T (&acc)[PER], int j, T x, const W& w) {
#pragma unroll
    for (int q = 0; q < PER; ++q) {
        const int k = j - q;  // tap of output q that sample j feeds
        if (k >= 0 && k < TAPS) {
            if constexpr (Op::code == Correlate::code) {
                acc[q] = fma(static_cast<T>(w[k]), x, acc[q]);
            } else if constexpr (Op::code == Minimum::code) {
                acc[q] = k == 0 ? x : lowest_of(acc[q], x);
            } else {
                acc[q] = k == 0 ? x : highest_of(acc[q], x);
            }
        }
    }
}

// Runs the window over samples fetch(0) .. fetch(PER + TAPS - 2) into acc.
// `weights` is global memory; `s_w` the block's staged copy (long kernels only).
template <class Op, int TAPS, int PER, typename T, typename Fetch>
__device__ __forceinline__ void run_window(T (&acc)[PER], Fetch fetch,
                                           const T* __restrict__ weights, const T* s_w) {
#pragma unroll
    for (int q = 0; q < PER; ++q) acc[q] = T(0);
    if constexpr (TAPS <= kUnrollTaps) {
        T w[Op::code == Correlate::code ? TAPS : 1];
        if constexpr (Op::code == Correlate::code) {
#pragma unroll
            for (int k = 0; k < TAPS; ++k) w[k] = __ldg(weights + k);
        }
#pragma unroll
        for (int j = 0; j < PER + TAPS - 1; ++j) accumulate<Op, TAPS, PER>(acc, j, fetch(j), w);
    } else {
#pragma unroll 4
        for (int j = 0; j < PER + TAPS - 1; ++j) accumulate<Op, TAPS, PER>(acc, j, fetch(j), s_w);
    }
}

template <class Op, int TAPS>
__host__ __device__ constexpr bool stages_weights() {
    return Op::code == Correlate::code && TAPS > kUnrollTaps;
}

// grid: (ceil(n_lines / BY), ceil(n / (BX * PER))); block: (BX, BY).
// dynamic shared memory: (stages_weights ? TAPS : 0) + BY * (skewed(BX*PER + TAPS - 2) + 1)
// elements of T (medimg_fast.backends._cuda_kernels.line_shared_bytes).
template <typename T, class Mode, class Op, int TAPS, int PER>
__global__ void sep_line(const T* __restrict__ in, T* __restrict__ out,
                         const T* __restrict__ weights, int n_lines, int n, T cval) {
    constexpr int HB = TAPS / 2;
    const int bx = blockDim.x;
    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int seg = bx * PER;
    const int row_len = seg + TAPS - 1;
    const int row_stride = skewed<PER>(row_len - 1) + 1;

    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* s_w = reinterpret_cast<T*>(smem_raw);
    constexpr int w_len = stages_weights<Op, TAPS>() ? TAPS : 0;
    T* row = s_w + w_len + ty * row_stride;

    if constexpr (w_len > 0) {
        const int tid = ty * bx + tx;
        for (int k = tid; k < w_len; k += bx * blockDim.y) s_w[k] = weights[k];
    }
    const int line = blockIdx.x * blockDim.y + ty;
    const bool line_ok = line < n_lines;
    const int a0 = blockIdx.y * seg;
    const T* src = in + (long long)(line_ok ? line : 0) * n;
    if (line_ok) {
        for (int i = tx; i < row_len; i += bx) {
            const int g = extend_index<Mode>(a0 - HB + i, n);
            row[skewed<PER>(i)] = load_or(src, 1, g, cval);
        }
    }
    __syncthreads();

    T acc[PER];
    const int base = tx * PER;
    run_window<Op, TAPS, PER>(acc, [&](int j) { return row[skewed<PER>(base + j)]; }, weights,
                              s_w);

    // Stage the outputs in the (now read) tile so the global stores coalesce.
    __syncthreads();
#pragma unroll
    for (int q = 0; q < PER; ++q) row[skewed<PER>(base + q)] = acc[q];
    __syncthreads();
    if (line_ok) {
        T* dst = out + (long long)line * n;
        for (int i = tx; i < seg; i += bx) {
            const int a = a0 + i;
            if (a < n) dst[a] = row[skewed<PER>(i)];
        }
    }
}

// grid: (n_outer * inner_blocks, ceil(n / (BL * PER))); block: (BI, BL) with
// inner_blocks = ceil(inner / BI).  dynamic shared memory:
// (stages_weights ? TAPS : 0) + (BL * PER + TAPS - 1) * BI elements of T
// (medimg_fast.backends._cuda_kernels.strided_shared_bytes).
template <typename T, class Mode, class Op, int TAPS, int PER>
__global__ void sep_strided(const T* __restrict__ in, T* __restrict__ out,
                            const T* __restrict__ weights, int n_outer, int n, int inner,
                            int inner_blocks, T cval) {
    constexpr int HB = TAPS / 2;
    const int bi = blockDim.x;
    const int bl = blockDim.y;
    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int seg = bl * PER;
    const int rows = seg + TAPS - 1;

    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* s_w = reinterpret_cast<T*>(smem_raw);
    constexpr int w_len = stages_weights<Op, TAPS>() ? TAPS : 0;
    T* tile = s_w + w_len;

    if constexpr (w_len > 0) {
        const int tid = ty * bi + tx;
        for (int k = tid; k < w_len; k += bi * bl) s_w[k] = weights[k];
    }
    const int o = blockIdx.x / inner_blocks;
    const int i = (blockIdx.x - o * inner_blocks) * bi + tx;
    const bool col_ok = i < inner && o < n_outer;
    const int a0 = blockIdx.y * seg;
    const long long volume_offset = (long long)o * n * inner + i;
    if (col_ok) {
        const T* src = in + volume_offset;
        for (int r = ty; r < rows; r += bl) {
            const int g = extend_index<Mode>(a0 - HB + r, n);
            tile[r * bi + tx] = load_or(src, inner, g, cval);
        }
    }
    __syncthreads();

    T acc[PER];
    const int base = ty * PER;
    run_window<Op, TAPS, PER>(acc, [&](int j) { return tile[(base + j) * bi + tx]; },
                              weights, s_w);
    if (col_ok) {
#pragma unroll
        for (int q = 0; q < PER; ++q) {
            const int a = a0 + base + q;
            if (a < n) out[volume_offset + (long long)a * inner] = acc[q];
        }
    }
}

}  // namespace medimg
