// Shared device helpers for the kernels in this folder.
// Device code only, NVRTC-compatible: no host headers, nothing beyond the CUDA built-ins and
// the C math functions, so that the `emu` backend can compile the same text for the CPU.
#pragma once

// Plain aggregates for wide memory accesses. Own types rather than CUDA's vector types keep
// the source portable; alignas lets nvcc emit one 8- or 16-byte access for a copy.
struct alignas(4) gt_u16x2 {
    unsigned short a, b;
};
struct alignas(8) gt_f32x2 {
    float x, y;
};
struct alignas(16) gt_u32x4 {
    unsigned int a, b, c, d;
};
struct alignas(16) gt_f32x4 {
    float x, y, z, w;
};

__device__ __forceinline__ int gt_imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int gt_imax(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ float gt_clamp01(float v) { return fminf(fmaxf(v, 0.0f), 1.0f); }

// clamp01(a * b + c) as one instruction. NVVM turns both gt_clamp01 and __saturatef into a
// saturating conversion after the FMA, which ptxas keeps as a second instruction (FADD.SAT);
// PTX's fma.sat is one FFMA.SAT. The emu build (no __CUDA_ARCH__) computes the same value:
// one rounding, then the clamp (NaN -> 0 in both).
__device__ __forceinline__ float gt_fma_sat(float a, float b, float c) {
#ifdef __CUDA_ARCH__
    float d;
    asm("fma.rn.sat.f32 %0, %1, %2, %3;" : "=f"(d) : "f"(a), "f"(b), "f"(c));
    return d;
#else
    return __saturatef(fmaf(a, b, c));
#endif
}

// Mirror an index of a Bayer mosaic's row or column (n even) into [0, n) without repeating the
// edge (reflect-101: -1 -> 1, n -> n - 2), which keeps the Bayer phase. An index further out
// than one reflection (a frame narrower than a kernel's reach, e.g. 4 pixels against the
// directional demosaic's 6) goes to the nearest index of its own parity, so that a mirrored
// pixel still has the colour its position says (reference.reflect101 does the same).
__device__ __forceinline__ int gt_reflect101(int i, int n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * (n - 1) - i;  // the parity of i, but maybe still outside [0, n)
    return gt_imin(gt_imax(i, i & 1), (n - 1) - ((n - 1 - i) & 1));
}
// The same for a caller that reads no index beyond one reflection (|i| <= n - 1 past either
// edge), where the two agree: further out it still lands in [0, n), but not on the parity's
// colour, so only for halo pixels that are loaded and never read. Two instructions cheaper.
__device__ __forceinline__ int gt_reflect101_near(int i, int n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * (n - 1) - i;
    return gt_imin(gt_imax(i, 0), n - 1);
}

// Integer <-> float through the mantissa of 2^23 (or 1.5 * 2^23), exact in the ranges given:
// an integer ALU op and an FP add instead of I2F/F2I, which run on the quarter-rate conversion
// unit (measured: 17 % of that unit busy in isp_main, a conversion per byte in isp_tensor).
// v in [0, 2^23) -> float(v).
__device__ __forceinline__ float gt_u2f(unsigned int v) {
    return __uint_as_float(0x4B000000u | v) - 8388608.0f;
}
// table[rint(x * n)] (ties to even) for x in [0, 1], n < 2^23: x times the denormal whose bits
// are n (n * 2^-149), rounded to the denormal grid, is the float whose bits are rint(x * n), so
// the product's bits index the table as they are. One FFMA without flush-to-zero (the inline
// PTX: the kernels build with -ftz=true) and the load, whose address the table's base joins in
// the load's own address mode: no add per lookup (the 1.5 * 2^23 magic number took one to
// remove its exponent bits). On the CPU (emu) the same integer comes from double arithmetic,
// where x * n is exact: a library in the process may have turned denormals off there.
template <typename T>
__device__ __forceinline__ T gt_lookup_rint(const T* table, float x, unsigned int n) {
#ifdef __CUDA_ARCH__
    float code;
    asm("fma.rn.f32 %0, %1, %2, 0f00000000;" : "=f"(code) : "f"(x), "f"(__uint_as_float(n)));
    return table[__float_as_uint(code)];
#else
    return table[(unsigned int)rint((double)x * (double)n)];
#endif
}

// [0, 1] -> uint8, rounding half up (the reference's floor(255 v + 0.5)).
__device__ __forceinline__ unsigned char gt_to_u8(float v) {
    return (unsigned char)(int)(gt_clamp01(v) * 255.0f + 0.5f);
}

__device__ __forceinline__ unsigned char gt_sat_u8(float v) {
    v = fminf(fmaxf(v, 0.0f), 255.0f);
    return (unsigned char)(int)floorf(v + 0.5f);
}

// float -> IEEE binary16 bits, round to nearest even (what NumPy's astype(float16) does).
// Written out so the same code runs without cuda_fp16.h.
__device__ __forceinline__ unsigned short gt_float_to_half(float f) {
    union {
        float f;
        unsigned int u;
    } c;
    c.f = f;
    const unsigned int x = c.u;
    const unsigned int sign = (x >> 16) & 0x8000u;
    const unsigned int ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (unsigned short)(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // rounds to infinity
    if (ax < 0x38800000u) {                                          // half subnormal or zero
        if (ax < 0x33000000u) return (unsigned short)sign;           // below half of 2^-24
        const unsigned int e = ax >> 23;
        const unsigned int m = (ax & 0x7fffffu) | 0x800000u;
        const unsigned int shift = 126u - e;  // 14..24
        unsigned int r = m >> shift;
        const unsigned int rem = m & ((1u << shift) - 1u);
        const unsigned int half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (unsigned short)(sign | r);
    }
    unsigned int h = (ax - 0x38000000u) >> 13;  // rebias the exponent 127 -> 15
    const unsigned int rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;  // a carry may reach infinity: right
    return (unsigned short)(sign | h);
}

// Counter-based random numbers: splitmix64's finaliser as a hash of (frame key, pixel index).
// The frame key, splitmix64(splitmix64(seed) ^ frame), is computed once per frame on the host
// (gputrack/sensor/model.py `frame_key`; it was two of the three 64-bit hashes per pixel). The
// NumPy reference computes the same bits.
__device__ __forceinline__ unsigned long long gt_splitmix64(unsigned long long z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ unsigned long long gt_pixel_hash(unsigned long long key,
                                                            unsigned long long index) {
    return gt_splitmix64(key ^ index);
}

// Standard normal by Box-Muller from two 24-bit uniforms of the hash: u1 = (bits 40..63 + 1)
// / 2^24 in (0, 1], u2 = bits 16..39 / 2^24 in [0, 1), each exact in a float. log and cos are
// the hardware's approximations (errors near 2^-21, far below the DN rounding they feed; the
// accurate library calls take dozens of instructions each, in a kernel measured issue-bound).
__device__ __forceinline__ float gt_gaussian(unsigned long long h) {
    const unsigned int hi = (unsigned int)(h >> 32), lo = (unsigned int)h;
    const float u1 = (float)((hi >> 8) + 1u) * (1.0f / 16777216.0f);
    const float u2 = (float)((lo >> 16) | ((hi & 0xFFu) << 16)) * (1.0f / 16777216.0f);
    // cos(2 pi u2) = -cos(2 pi (u2 - 1/2)): __cosf's error bound holds on [-pi, pi]. The
    // clamp: __logf's absolute error (up to 2^-21.4 near 1) exceeds -log(u1) for the few u1
    // just below 1, and a log >= 0 there would make sqrtf NaN, a black pixel (emu's exact
    // log never does; about 6 in 2^24 pixels would).
    return -sqrtf(fmaxf(-2.0f * __logf(u1), 0.0f)) * __cosf(6.283185307179586f * (u2 - 0.5f));
}
