// Median over a box of side D = 2R+1 (3x3, 5x5, 3^3, 5^3) by forgetful selection in
// registers (Paeth's / Devillard's "forgetful" median): keep K = (N+3)/2 candidates,
// repeatedly move the smallest and the largest to the ends, drop both (one lies below
// and one above the median of what remains) and take in the next sample.  Every index
// is a compile-time constant after unrolling, so the candidates stay in registers.
// Cost: about N^2/2 compare-exchanges instead of a sort per voxel.
// Data movement follows gradient.cu: a ring of D planes of (BY+2R) x (BX+2R) samples.
#ifndef MEDIMG_FAST_COMMON_CU
#include "common.cu"
#endif

namespace medimg {

// Moves the minimum of a[LO..HI] to a[LO] and the maximum to a[HI].
template <int LO, int HI, typename T, int K>
__device__ __forceinline__ void extremes_to_ends(T (&a)[K]) {
#pragma unroll
    for (int i = LO + 1; i <= HI; ++i) sort2(a[LO], a[i]);
#pragma unroll
    for (int i = LO + 1; i < HI; ++i) sort2(a[i], a[HI]);
}

// Forgetful selection; fetch(e) returns sample e (0 <= e < N) of the neighbourhood.
template <int N, typename T, typename Fetch, int STEP = 0>
__device__ __forceinline__ void forget_steps(T (&a)[(N + 3) / 2], Fetch fetch) {
    constexpr int K = (N + 3) / 2;
    if constexpr (STEP < N - K) {
        extremes_to_ends<STEP, K - 1>(a);
        a[K - 1] = fetch(K + STEP);
        forget_steps<N, T, Fetch, STEP + 1>(a, fetch);
    }
}

template <int N, typename T, typename Fetch>
__device__ __forceinline__ T forgetful_median(Fetch fetch) {
    static_assert(N % 2 == 1 && N >= 3, "odd neighbourhoods only");
    constexpr int K = (N + 3) / 2;
    T a[K];
#pragma unroll
    for (int e = 0; e < K; ++e) a[e] = fetch(e);
    forget_steps<N, T>(a, fetch);
    // Three candidates remain in a[N-K .. K-1]; their median is the answer.
    constexpr int L = N - K;
    sort2(a[L], a[L + 1]);
    sort2(a[L + 1], a[L + 2]);
    return highest_of(a[L], a[L + 1]);
}

// 3-D: grid (ceil(nx/BX), ceil(ny/BY), ceil(nz/slab)), block (BX, BY), dynamic shared
// memory (2R+1) * (BY+2R) * (BX+2R) elements.  2-D (NDIM == 2, nz ignored): grid
// (ceil(nx/BX), ceil(ny/BY)), one plane.
template <typename T, class Mode, int NDIM, int R>
__global__ void median_box(const T* __restrict__ in, T* __restrict__ out, int nz, int ny,
                           int nx, T cval, int slab) {
    static_assert(NDIM == 2 || NDIM == 3, "2-D or 3-D only");
    constexpr int D = 2 * R + 1;
    const int w = blockDim.x + 2 * R;
    const int h = blockDim.y + 2 * R;
    const int x0 = blockIdx.x * blockDim.x;
    const int y0 = blockIdx.y * blockDim.y;
    const int x = x0 + threadIdx.x;
    const int y = y0 + threadIdx.y;
    const bool out_ok = x < nx && y < ny;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* planes = reinterpret_cast<T*>(smem_raw);
    const int plane_size = h * w;
    const int corner = threadIdx.y * w + threadIdx.x;  // sample (-R, -R) of this thread

    if constexpr (NDIM == 2) {
        load_plane<T, Mode>(planes, in, y0, x0, ny, nx, h, w, R, cval);
        __syncthreads();
        if (!out_ok) return;  // after the only barrier
        const T* p = planes + corner;
        out[(long long)y * nx + x] = forgetful_median<D * D, T>(
            [&](int e) { return p[(e / D) * w + e % D]; });
    } else {
        const int z0 = blockIdx.z * slab;
        const int z_end = min(z0 + slab, nz);
        const long long plane_len = (long long)ny * nx;
        auto load = [&](int zp) {
            const int zz = extend_index<Mode>(zp, nz);
            load_plane<T, Mode>(planes + floor_mod(zp, D) * plane_size,
                                zz < 0 ? nullptr : in + zz * plane_len, y0, x0, ny, nx, h, w,
                                R, cval);
        };
        for (int zp = z0 - R; zp < z0 + R; ++zp) load(zp);
        for (int z = z0; z < z_end; ++z) {  // same trip count in the whole block
            load(z + R);
            __syncthreads();
            if (out_ok) {
                const T* p[D];
#pragma unroll
                for (int dz = 0; dz < D; ++dz)
                    p[dz] = planes + floor_mod(z - R + dz, D) * plane_size + corner;
                out[z * plane_len + (long long)y * nx + x] = forgetful_median<D * D * D, T>(
                    [&](int e) { return p[e / (D * D)][((e / D) % D) * w + e % D]; });
            }
            __syncthreads();  // the next iteration overwrites the oldest plane
        }
    }
}

}  // namespace medimg
