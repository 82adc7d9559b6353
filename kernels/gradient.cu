// Fused Sobel/Prewitt gradient magnitude, sqrt(sum_a d_a^2), in one read of the input.
//
// d_a is scipy.ndimage.sobel (or prewitt) along axis a: the derivative [-1, 0, 1]
// along a, then the smoothing [1, c, 1] (c = 2 Sobel, 1 Prewitt) along every other
// axis in increasing order.  The block keeps a ring of three (BY+2) x (BX+2) planes
// in shared memory and walks a slab of z; each thread evaluates the 3x3(x3) stencil
// in registers.  For the index-mapping modes a separable pass over an extended
// intermediate equals the stencil over the extended input, so one read suffices.
// In constant mode scipy pads every *intermediate* pass with cval, not the input's
// filtered padding; the kernel reproduces that by substituting cval for the
// intermediate values that lie outside the array along the pass's axis.
#ifndef MEDIMG_FAST_COMMON_CU
#include "common.cu"
#endif

namespace medimg {

// One smoothing pass [1, c, 1] over three intermediate values; `in0/in2` say whether
// the outer two lie inside the array (only ever false in constant mode).
template <typename T>
__device__ __forceinline__ T smooth3(T a0, T a1, T a2, bool in0, bool in2, T center, T cval) {
    return (in0 ? a0 : cval) + center * a1 + (in2 ? a2 : cval);
}

// 3-D: grid (ceil(nx/BX), ceil(ny/BY), ceil(nz/slab)), block (BX, BY), dynamic shared
// memory 3 * (BY+2) * (BX+2) elements.  2-D (NDIM == 2, nz ignored): grid
// (ceil(nx/BX), ceil(ny/BY)), one plane.  axes_mask bit a selects d_a.
template <typename T, class Mode, int NDIM>
__global__ void gradient_magnitude(const T* __restrict__ in, T* __restrict__ out, int nz,
                                   int ny, int nx, int axes_mask, T center, T cval, int slab) {
    static_assert(NDIM == 2 || NDIM == 3, "2-D or 3-D only");
    constexpr bool kConstant = Mode::code == Constant::code;
    const int w = blockDim.x + 2;
    const int h = blockDim.y + 2;
    const int x0 = blockIdx.x * blockDim.x;
    const int y0 = blockIdx.y * blockDim.y;
    const int x = x0 + threadIdx.x;
    const int y = y0 + threadIdx.y;
    const bool out_ok = x < nx && y < ny;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* planes = reinterpret_cast<T*>(smem_raw);
    const int plane_size = h * w;
    const int centre = (threadIdx.y + 1) * w + threadIdx.x + 1;
    const bool inx0 = !kConstant || x - 1 >= 0;
    const bool inx2 = !kConstant || x + 1 < nx;
    const bool iny0 = !kConstant || y - 1 >= 0;
    const bool iny2 = !kConstant || y + 1 < ny;

    if constexpr (NDIM == 2) {
        load_plane<T, Mode>(planes, in, y0, x0, ny, nx, h, w, 1, cval);
        __syncthreads();
        if (!out_ok) return;  // after the only barrier
        T v[3][3];
#pragma unroll
        for (int dy = 0; dy < 3; ++dy)
#pragma unroll
            for (int dx = 0; dx < 3; ++dx) v[dy][dx] = planes[centre + (dy - 1) * w + dx - 1];
        T total = T(0);
        if (axes_mask & 1) {
            const T g = smooth3(v[2][0] - v[0][0], v[2][1] - v[0][1], v[2][2] - v[0][2], inx0,
                                inx2, center, cval);
            total = fma(g, g, total);
        }
        if (axes_mask & 2) {
            const T g = smooth3(v[0][2] - v[0][0], v[1][2] - v[1][0], v[2][2] - v[2][0], iny0,
                                iny2, center, cval);
            total = fma(g, g, total);
        }
        out[(long long)y * nx + x] = sqrt(total);
    } else {
        const int z0 = blockIdx.z * slab;
        const int z_end = min(z0 + slab, nz);
        const long long plane_len = (long long)ny * nx;
        auto load = [&](int zp) {
            const int zz = extend_index<Mode>(zp, nz);
            load_plane<T, Mode>(planes + floor_mod(zp, 3) * plane_size,
                                zz < 0 ? nullptr : in + zz * plane_len, y0, x0, ny, nx, h, w,
                                1, cval);
        };
        load(z0 - 1);
        load(z0);
        for (int z = z0; z < z_end; ++z) {  // same trip count in the whole block
            load(z + 1);
            __syncthreads();
            if (out_ok) {
                T v[3][3][3];
#pragma unroll
                for (int dz = 0; dz < 3; ++dz) {
                    const T* p = planes + floor_mod(z + dz - 1, 3) * plane_size + centre;
#pragma unroll
                    for (int dy = 0; dy < 3; ++dy)
#pragma unroll
                        for (int dx = 0; dx < 3; ++dx) v[dz][dy][dx] = p[(dy - 1) * w + dx - 1];
                }
                const bool inz0 = !kConstant || z - 1 >= 0;
                const bool inz2 = !kConstant || z + 1 < nz;
                T total = T(0);
                if (axes_mask & 1) {  // d/dz, smoothed along y then x
                    T s[3];
#pragma unroll
                    for (int dx = 0; dx < 3; ++dx)
                        s[dx] = smooth3(v[2][0][dx] - v[0][0][dx], v[2][1][dx] - v[0][1][dx],
                                        v[2][2][dx] - v[0][2][dx], iny0, iny2, center, cval);
                    const T g = smooth3(s[0], s[1], s[2], inx0, inx2, center, cval);
                    total = fma(g, g, total);
                }
                if (axes_mask & 2) {  // d/dy, smoothed along z then x
                    T s[3];
#pragma unroll
                    for (int dx = 0; dx < 3; ++dx)
                        s[dx] = smooth3(v[0][2][dx] - v[0][0][dx], v[1][2][dx] - v[1][0][dx],
                                        v[2][2][dx] - v[2][0][dx], inz0, inz2, center, cval);
                    const T g = smooth3(s[0], s[1], s[2], inx0, inx2, center, cval);
                    total = fma(g, g, total);
                }
                if (axes_mask & 4) {  // d/dx, smoothed along z then y
                    T s[3];
#pragma unroll
                    for (int dy = 0; dy < 3; ++dy)
                        s[dy] = smooth3(v[0][dy][2] - v[0][dy][0], v[1][dy][2] - v[1][dy][0],
                                        v[2][dy][2] - v[2][dy][0], inz0, inz2, center, cval);
                    const T g = smooth3(s[0], s[1], s[2], iny0, iny2, center, cval);
                    total = fma(g, g, total);
                }
                out[z * plane_len + (long long)y * nx + x] = sqrt(total);
            }
            __syncthreads();  // the next iteration overwrites the oldest plane
        }
    }
}

}  // namespace medimg
