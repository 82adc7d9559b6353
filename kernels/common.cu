// Shared device code for every kernel in this folder.
//
// The loader (medimg_fast.backends._cuda_kernels) prepends this file's text to each
// kernel source before NVRTC compiles it, because CuPy's RawModule takes one source
// string; the guarded #include in each kernel file makes the same sources compile
// stand-alone with `nvcc -I kernels` (the compile test in tests/gpu does that).
#ifndef MEDIMG_FAST_COMMON_CU
#define MEDIMG_FAST_COMMON_CU

namespace medimg {

// Boundary modes as tag types: the tag's name shows in a profiler's kernel name
// (sep_line<float, medimg::Reflect, ...>), the code matches
// medimg_fast._shared.boundary.MODE_CODES.
struct Reflect  { static constexpr int code = 0; };
struct Mirror   { static constexpr int code = 1; };
struct Nearest  { static constexpr int code = 2; };
struct Wrap     { static constexpr int code = 3; };
struct Constant { static constexpr int code = 4; };

// Reductions of the separable line kernels.
struct Correlate { static constexpr int code = 0; };
struct Minimum   { static constexpr int code = 1; };
struct Maximum   { static constexpr int code = 2; };

// C's % truncates towards zero; the boundary rules need Python's floor modulo.
__host__ __device__ __forceinline__ int floor_mod(int i, int n) {
    int r = i % n;
    return r < 0 ? r + n : r;
}

// The index of the sample that stands at position i of an axis of length n, or -1
// where the constant mode substitutes cval.  Same rules as scipy.ndimage and as
// medimg_fast._shared.boundary.extend_index, including extensions deeper than the
// axis is long (the pattern repeats).
template <class Mode>
__host__ __device__ __forceinline__ int extend_index(int i, int n) {
    if (i >= 0 && i < n) return i;
    if (Mode::code == Constant::code) return -1;
    if (Mode::code == Nearest::code) return i < 0 ? 0 : n - 1;
    if (Mode::code == Wrap::code) return floor_mod(i, n);
    if (Mode::code == Reflect::code) {
        const int period = 2 * n;
        const int r = floor_mod(i, period);
        return r < n ? r : period - 1 - r;
    }
    // Mirror: whole-sample symmetric, period 2n - 2 (a single sample repeats itself).
    if (n == 1) return 0;
    const int period = 2 * n - 2;
    const int r = floor_mod(i, period);
    return r < n ? r : period - r;
}


// Read-only load of sample i (already extended) of a line, cval where i == -1.
template <typename T>
__device__ __forceinline__ T load_or(const T* __restrict__ line, long long stride, int i,
                                     T cval) {
    return i < 0 ? cval : __ldg(line + (long long)i * stride);
}

template <typename T>
__device__ __forceinline__ T lowest_of(T a, T b) { return b < a ? b : a; }
template <typename T>
__device__ __forceinline__ T highest_of(T a, T b) { return b > a ? b : a; }

// Compare-exchange: afterwards a <= b.  Two instructions (min, max), no branch.
template <typename T>
__device__ __forceinline__ void sort2(T& a, T& b) {
    const T lo = lowest_of(a, b);
    const T hi = highest_of(a, b);
    a = lo;
    b = hi;
}


// Cooperative load of one (h x w) tile of a plane, the block's output rectangle
// [y0, y0 + h - 2*halo) x [x0, x0 + w - 2*halo) plus `halo` samples on every side,
// extended by the boundary rule.  `plane` is nullptr for a plane that lies outside
// the volume in constant mode (all cval).  Consecutive threads read consecutive x.
template <typename T, class Mode>
__device__ __forceinline__ void load_plane(T* __restrict__ dst, const T* __restrict__ plane,
                                           int y0, int x0, int ny, int nx, int h, int w,
                                           int halo, T cval) {
    const int nthreads = blockDim.x * blockDim.y;
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    for (int e = tid; e < h * w; e += nthreads) {
        const int r = e / w;
        const int c = e - r * w;
        const int yy = extend_index<Mode>(y0 - halo + r, ny);
        const int xx = extend_index<Mode>(x0 - halo + c, nx);
        dst[e] = (plane == nullptr || yy < 0 || xx < 0)
                     ? cval
                     : __ldg(plane + (long long)yy * nx + xx);
    }
}

}  // namespace medimg

#endif  // MEDIMG_FAST_COMMON_CU
