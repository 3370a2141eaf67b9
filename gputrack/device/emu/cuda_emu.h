// gputrack's CUDA emulation header: lets an unchanged NVRTC-style .cu file compile with g++
// for the host CPU. Each kernel module is one translation unit: generated code includes this
// header, then the .cu file, then per-kernel launch wrappers (ops_emu.py writes them).
//
// __shared__ variables are thread_local: the OS thread that runs a block runs all its CUDA
// threads (as fibers), so each block in flight has its own copy. The module's whole .tbss is
// therefore its shared memory, and the runtime poisons all of it before each block (a block
// never sees what the previous block on its OS thread left). Built-in variables are read from
// the fiber's stack header.
// Barriers and warp collectives call into the runtime library (runtime.cpp).
#ifndef GPUTRACK_CUDA_EMU_H
#define GPUTRACK_CUDA_EMU_H

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "emu_abi.h"

// ---- qualifiers ---------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __grid_constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// At block scope thread_local implies static: one copy per OS thread, i.e. per block in flight.
#define __shared__ thread_local
#define __CUDACC__ 1
#define GPUTRACK_EMU 1

// ---- vector types -------------------------------------------------------------------------
#define GPUTRACK_EMU_VEC2(T, N, A) \
    struct __attribute__((aligned(A))) N##2 { T x, y; }; \
    inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define GPUTRACK_EMU_VEC3(T, N) \
    struct N##3 { T x, y, z; }; \
    inline N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }
#define GPUTRACK_EMU_VEC4(T, N, A) \
    struct __attribute__((aligned(A))) N##4 { T x, y, z, w; }; \
    inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
#define GPUTRACK_EMU_VEC(T, N, A2, A4) \
    GPUTRACK_EMU_VEC2(T, N, A2) GPUTRACK_EMU_VEC3(T, N) GPUTRACK_EMU_VEC4(T, N, A4)

GPUTRACK_EMU_VEC(signed char, char, 2, 4)
GPUTRACK_EMU_VEC(unsigned char, uchar, 2, 4)
GPUTRACK_EMU_VEC(short, short, 4, 8)
GPUTRACK_EMU_VEC(unsigned short, ushort, 4, 8)
GPUTRACK_EMU_VEC(int, int, 8, 16)
GPUTRACK_EMU_VEC(unsigned int, uint, 8, 16)
GPUTRACK_EMU_VEC(long long, longlong, 16, 16)
GPUTRACK_EMU_VEC(unsigned long long, ulonglong, 16, 16)
GPUTRACK_EMU_VEC(float, float, 8, 16)
GPUTRACK_EMU_VEC(double, double, 16, 16)

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

// ---- built-in variables ---------------------------------------------------------------------
namespace gputrack_emu {

// Same layout as gputrack_emu_ids, with CUDA's types.
struct BuiltIns {
    uint3 thread;
    uint3 block;
    dim3 dims;
    dim3 grid;
};
static_assert(sizeof(BuiltIns) == sizeof(gputrack_emu_ids), "layout of the fiber header");

// Kernel code runs on fiber stacks aligned to their size, with the running CUDA thread's
// built-ins at the top: found from the stack pointer, with no thread_local lookup.
inline const BuiltIns& builtins() {
    unsigned long sp;
#if defined(__x86_64__)
    __asm__("movq %%rsp, %0" : "=r"(sp));
#else
    sp = reinterpret_cast<unsigned long>(__builtin_frame_address(0));
#endif
    return *reinterpret_cast<const BuiltIns*>((sp | (GPUTRACK_EMU_STACK_BYTES - 1)) + 1 -
                                              GPUTRACK_EMU_HEADER_BYTES);
}

}  // namespace gputrack_emu

#define threadIdx (::gputrack_emu::builtins().thread)
#define blockIdx (::gputrack_emu::builtins().block)
#define blockDim (::gputrack_emu::builtins().dims)
#define gridDim (::gputrack_emu::builtins().grid)
static constexpr int warpSize = 32;

namespace gputrack_emu {

// Every call that may switch to another CUDA thread goes through here, with a compiler
// barrier before (stores to shared memory really happen) and after (nothing stale is reused).
template <class Call>
inline auto switching(Call&& call) {
    __asm__ __volatile__("" ::: "memory");
    auto result = call();
    __asm__ __volatile__("" ::: "memory");
    return result;
}

template <class T>
inline unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp collectives move at most 8 bytes");
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    return bits;
}

template <class T>
inline T from_bits(unsigned long long bits) {
    T v;
    std::memcpy(&v, &bits, sizeof(T));
    return v;
}

inline unsigned long long warp(int op, unsigned mask, unsigned long long value, int param = 0,
                               int width = 32, const void* site = nullptr) {
    return switching([&] { return gputrack_emu_warp(op, mask, value, param, width, site); });
}

inline int barrier(int op, int predicate) {
    return switching([&] { return gputrack_emu_barrier(op, predicate); });
}

}  // namespace gputrack_emu

// ---- barriers and warp collectives --------------------------------------------------------
inline void __syncthreads() { gputrack_emu::barrier(GPUTRACK_EMU_BAR_SYNC, 0); }
inline int __syncthreads_count(int p) { return gputrack_emu::barrier(GPUTRACK_EMU_BAR_COUNT, p); }
inline int __syncthreads_and(int p) { return gputrack_emu::barrier(GPUTRACK_EMU_BAR_AND, p); }
inline int __syncthreads_or(int p) { return gputrack_emu::barrier(GPUTRACK_EMU_BAR_OR, p); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    gputrack_emu::warp(GPUTRACK_EMU_SYNCWARP, mask, 0);
}

template <class T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
    using namespace gputrack_emu;
    return from_bits<T>(warp(GPUTRACK_EMU_SHFL_IDX, mask, to_bits(var), src_lane, width));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    using namespace gputrack_emu;
    return from_bits<T>(warp(GPUTRACK_EMU_SHFL_UP, mask, to_bits(var), int(delta), width));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    using namespace gputrack_emu;
    return from_bits<T>(warp(GPUTRACK_EMU_SHFL_DOWN, mask, to_bits(var), int(delta), width));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
    using namespace gputrack_emu;
    return from_bits<T>(warp(GPUTRACK_EMU_SHFL_XOR, mask, to_bits(var), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
    return unsigned(gputrack_emu::warp(GPUTRACK_EMU_BALLOT, mask, predicate != 0));
}
inline int __any_sync(unsigned mask, int predicate) {
    return int(gputrack_emu::warp(GPUTRACK_EMU_ANY, mask, predicate != 0));
}
inline int __all_sync(unsigned mask, int predicate) {
    return int(gputrack_emu::warp(GPUTRACK_EMU_ALL, mask, predicate != 0));
}
inline unsigned gputrack_emu_activemask(const void* site) {
    return unsigned(gputrack_emu::warp(GPUTRACK_EMU_ACTIVEMASK, 0, 0, 0, 32, site));
}
// The lanes that reach this very call site (a unique static per expansion tells sites apart).
#define __activemask() \
    ({ static const char gputrack_emu_site = 0; gputrack_emu_activemask(&gputrack_emu_site); })
template <class T>
inline unsigned __match_any_sync(unsigned mask, T value) {
    return unsigned(gputrack_emu::warp(GPUTRACK_EMU_MATCH_ANY, mask, gputrack_emu::to_bits(value)));
}
template <class T>
inline unsigned __match_all_sync(unsigned mask, T value, int* pred) {
    unsigned long long r =
        gputrack_emu::warp(GPUTRACK_EMU_MATCH_ALL, mask, gputrack_emu::to_bits(value));
    *pred = int(r >> 32);
    return unsigned(r);
}
#define GPUTRACK_EMU_REDUCE(NAME, T, OP) \
    inline T NAME(unsigned mask, T value) { \
        return T(unsigned(gputrack_emu::warp(OP, mask, unsigned(value)))); \
    }
GPUTRACK_EMU_REDUCE(__reduce_add_sync, unsigned, GPUTRACK_EMU_REDUCE_ADD)
GPUTRACK_EMU_REDUCE(__reduce_add_sync, int, GPUTRACK_EMU_REDUCE_ADD)
GPUTRACK_EMU_REDUCE(__reduce_min_sync, unsigned, GPUTRACK_EMU_REDUCE_MIN_U)
GPUTRACK_EMU_REDUCE(__reduce_min_sync, int, GPUTRACK_EMU_REDUCE_MIN_I)
GPUTRACK_EMU_REDUCE(__reduce_max_sync, unsigned, GPUTRACK_EMU_REDUCE_MAX_U)
GPUTRACK_EMU_REDUCE(__reduce_max_sync, int, GPUTRACK_EMU_REDUCE_MAX_I)
GPUTRACK_EMU_REDUCE(__reduce_and_sync, unsigned, GPUTRACK_EMU_REDUCE_AND)
GPUTRACK_EMU_REDUCE(__reduce_or_sync, unsigned, GPUTRACK_EMU_REDUCE_OR)
GPUTRACK_EMU_REDUCE(__reduce_xor_sync, unsigned, GPUTRACK_EMU_REDUCE_XOR)

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---- device-side assert and trap ----------------------------------------------------------
#undef assert
#ifdef NDEBUG
#define assert(e) ((void)0)
#else
#define assert(e) \
    ((e) ? (void)0 : gputrack_emu_fail("device-side assert `" #e "` failed", __FILE__, __LINE__))
#endif
#define __trap() gputrack_emu_fail("__trap()", __FILE__, __LINE__)

// ---- atomics (relaxed, as CUDA's are; real atomics because blocks run in parallel) --------
#define GPUTRACK_EMU_FETCH(NAME, T, BUILTIN) \
    inline T NAME(T* address, T value) { return BUILTIN(address, value, __ATOMIC_RELAXED); }
#define GPUTRACK_EMU_INT_ATOMICS(T) \
    GPUTRACK_EMU_FETCH(atomicAdd, T, __atomic_fetch_add) \
    GPUTRACK_EMU_FETCH(atomicSub, T, __atomic_fetch_sub) \
    GPUTRACK_EMU_FETCH(atomicAnd, T, __atomic_fetch_and) \
    GPUTRACK_EMU_FETCH(atomicOr, T, __atomic_fetch_or) \
    GPUTRACK_EMU_FETCH(atomicXor, T, __atomic_fetch_xor) \
    GPUTRACK_EMU_FETCH(atomicExch, T, __atomic_exchange_n) \
    inline T atomicCAS(T* address, T compare, T value) { \
        __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED, \
                                    __ATOMIC_RELAXED); \
        return compare; \
    } \
    inline T atomicMax(T* address, T value) { \
        return gputrack_emu::atomic_update(address, [&](T old) { return old < value ? value : old; }); \
    } \
    inline T atomicMin(T* address, T value) { \
        return gputrack_emu::atomic_update(address, [&](T old) { return value < old ? value : old; }); \
    }

namespace gputrack_emu {
// Read-modify-write through a compare-and-swap loop on the value's bits.
template <class T, class F>
inline T atomic_update(T* address, F&& update) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomics on 4 or 8 bytes");
    using Bits = std::conditional_t<sizeof(T) == 4, unsigned, unsigned long long>;
    Bits* bits = reinterpret_cast<Bits*>(address);
    Bits expected = __atomic_load_n(bits, __ATOMIC_RELAXED);
    for (;;) {
        T old, next;
        std::memcpy(&old, &expected, sizeof(T));
        next = update(old);
        Bits desired;
        std::memcpy(&desired, &next, sizeof(T));
        if (__atomic_compare_exchange_n(bits, &expected, desired, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return old;
    }
}
}  // namespace gputrack_emu

GPUTRACK_EMU_INT_ATOMICS(int)
GPUTRACK_EMU_INT_ATOMICS(unsigned int)
GPUTRACK_EMU_INT_ATOMICS(unsigned long long)
inline long long atomicMax(long long* a, long long v) {
    return gputrack_emu::atomic_update(a, [&](long long o) { return o < v ? v : o; });
}
inline long long atomicMin(long long* a, long long v) {
    return gputrack_emu::atomic_update(a, [&](long long o) { return v < o ? v : o; });
}
inline float atomicAdd(float* a, float v) {
    return gputrack_emu::atomic_update(a, [&](float o) { return o + v; });
}
inline double atomicAdd(double* a, double v) {
    return gputrack_emu::atomic_update(a, [&](double o) { return o + v; });
}
inline float atomicExch(float* a, float v) {
    return gputrack_emu::atomic_update(a, [&](float) { return v; });
}
inline unsigned atomicInc(unsigned* a, unsigned limit) {
    return gputrack_emu::atomic_update(a, [&](unsigned o) { return o >= limit ? 0u : o + 1; });
}
inline unsigned atomicDec(unsigned* a, unsigned limit) {
    return gputrack_emu::atomic_update(
        a, [&](unsigned o) { return (o == 0 || o > limit) ? limit : o - 1; });
}

// ---- loads and stores with cache hints: plain memory accesses here -------------------------
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

// ---- math -----------------------------------------------------------------------------------
// CUDA's overloaded float forms (sqrt(float) -> float, ...), as in device code.
using std::abs, std::fabs, std::sqrt, std::cbrt, std::exp, std::exp2, std::expm1, std::log,
    std::log2, std::log10, std::log1p, std::pow, std::sin, std::cos, std::tan, std::asin,
    std::acos, std::atan, std::atan2, std::sinh, std::cosh, std::tanh, std::floor, std::ceil,
    std::round, std::trunc, std::rint, std::fmod, std::fmin, std::fmax, std::fma, std::hypot,
    std::copysign, std::erf, std::erfc, std::isnan, std::isinf, std::isfinite, std::signbit,
    std::lrint, std::llrint, std::lround;

#define GPUTRACK_EMU_MINMAX(A, B, R) \
    inline R min(A a, B b) { \
        return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); \
    } \
    inline R max(A a, B b) { \
        return static_cast<R>(a) > static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); \
    }
GPUTRACK_EMU_MINMAX(int, int, int)
GPUTRACK_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
GPUTRACK_EMU_MINMAX(int, unsigned int, unsigned int)
GPUTRACK_EMU_MINMAX(unsigned int, int, unsigned int)
GPUTRACK_EMU_MINMAX(long long, long long, long long)
GPUTRACK_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline double min(float a, double b) { return std::fmin(double(a), b); }
inline double max(float a, double b) { return std::fmax(double(a), b); }
inline double min(double a, float b) { return std::fmin(a, double(b)); }
inline double max(double a, float b) { return std::fmax(a, double(b)); }

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / std::cbrt(x); }
inline float exp10f(float x) { return std::pow(10.0f, x); }
inline float __expf(float x) { return std::exp(x); }
inline float __exp10f(float x) { return std::pow(10.0f, x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log10(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline void __sincosf(float x, float* s, float* c) { *s = std::sin(x); *c = std::cos(x); }
// __fdividef is a * (1 / b) by the approximate reciprocal (PTX div.approx.ftz.f32), which is
// 0 for 2^126 < |b| < 2^128: the quotient is then 0, or NaN for an infinite a (CUDA Math API).
// Elsewhere the exact quotient, within the 2 ulp the GPU's is documented to be.
inline float __fdividef(float a, float b) {
    return std::fabs(b) > 0x1p126f ? a * std::copysign(0.0f, b) : a / b;
}
inline float fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }

namespace gputrack_emu {
// GPU float->integer conversions saturate and turn NaN into 0 (x86 would give INT_MIN).
inline int to_int_saturated(float r) {
    if (r != r) return 0;
    if (r <= -2147483648.0f) return -2147483647 - 1;
    if (r >= 2147483648.0f) return 2147483647;
    return int(r);
}
inline unsigned to_uint_saturated(float r) {
    if (r != r || r <= 0.0f) return 0u;
    if (r >= 4294967296.0f) return 4294967295u;
    return unsigned(r);
}
}  // namespace gputrack_emu
inline int __float2int_rn(float x) { return gputrack_emu::to_int_saturated(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return gputrack_emu::to_int_saturated(std::trunc(x)); }
inline int __float2int_rd(float x) { return gputrack_emu::to_int_saturated(std::floor(x)); }
inline int __float2int_ru(float x) { return gputrack_emu::to_int_saturated(std::ceil(x)); }
inline unsigned __float2uint_rn(float x) { return gputrack_emu::to_uint_saturated(std::nearbyint(x)); }
inline unsigned __float2uint_rz(float x) { return gputrack_emu::to_uint_saturated(std::trunc(x)); }
inline unsigned __float2uint_rd(float x) { return gputrack_emu::to_uint_saturated(std::floor(x)); }
inline unsigned __float2uint_ru(float x) { return gputrack_emu::to_uint_saturated(std::ceil(x)); }
inline float __int2float_rn(int x) { return float(x); }
inline float __uint2float_rn(unsigned x) { return float(x); }
inline int __float_as_int(float x) { return gputrack_emu::from_bits<int>(gputrack_emu::to_bits(x)); }
inline unsigned __float_as_uint(float x) { return gputrack_emu::from_bits<unsigned>(gputrack_emu::to_bits(x)); }
inline float __int_as_float(int x) { return gputrack_emu::from_bits<float>(gputrack_emu::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return gputrack_emu::from_bits<float>(gputrack_emu::to_bits(x)); }
inline long long __double_as_longlong(double x) { return gputrack_emu::from_bits<long long>(gputrack_emu::to_bits(x)); }
inline double __longlong_as_double(long long x) { return gputrack_emu::from_bits<double>(gputrack_emu::to_bits(x)); }

// ---- integer intrinsics ---------------------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz(unsigned(x)) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}
// Byte n of the result is byte (s >> 4n) & 7 of the 8 bytes y:x (x the low four), the default
// mode of CUDA's __byte_perm.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const unsigned long long v = ((unsigned long long)y << 32) | x;
    unsigned r = 0;
    for (int n = 0; n < 4; ++n) r |= unsigned((v >> (8 * ((s >> (4 * n)) & 7u))) & 0xffu) << (8 * n);
    return r;
}
// hi:lo shifted by s & 31 (l, r: PTX shf.wrap) or by min(s, 32) (lc, rc: shf.clamp); the
// left shifts return the high word, the right shifts the low word.
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s) {
    return unsigned((((unsigned long long)hi << 32) | lo) << (s & 31u) >> 32);
}
inline unsigned __funnelshift_lc(unsigned lo, unsigned hi, unsigned s) {
    return s >= 32u ? lo : __funnelshift_l(lo, hi, s);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
    return unsigned((((unsigned long long)hi << 32) | lo) >> (s & 31u));
}
inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned s) {
    return s >= 32u ? hi : __funnelshift_r(lo, hi, s);
}
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((unsigned long long)a * b >> 32); }
inline int __mulhi(int a, int b) { return int((long long)a * b >> 32); }
inline int __mul24(int a, int b) { return int(unsigned(a << 8 >> 8) * unsigned(b << 8 >> 8)); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }

// ---- __half (IEEE binary16, round to nearest even) -------------------------------------------
namespace gputrack_emu {
inline unsigned short float_to_half_bits(float f) {
    unsigned x = __float_as_uint(f);
    unsigned sign = (x >> 16) & 0x8000u;
    unsigned exp = (x >> 23) & 0xffu;
    unsigned mant = x & 0x7fffffu;
    if (exp == 0xff) return (unsigned short)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0));
    int e = int(exp) - 127 + 15;
    if (e >= 31) return (unsigned short)(sign | 0x7c00u);  // overflow to infinity
    if (e <= 0) {                                           // subnormal half, or zero
        if (e < -10) return (unsigned short)sign;
        mant |= 0x800000u;
        unsigned shift = unsigned(14 - e);
        unsigned half = mant >> shift;
        unsigned rest = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
        return (unsigned short)(sign | half);
    }
    unsigned half = (unsigned(e) << 10) | (mant >> 13);
    unsigned rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into exponent
    return (unsigned short)(sign | half);
}
inline float half_bits_to_float(unsigned short h) {
    unsigned sign = unsigned(h & 0x8000u) << 16;
    unsigned exp = (h >> 10) & 0x1fu;
    unsigned mant = h & 0x3ffu;
    if (exp == 0x1f) return __uint_as_float(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        float v = float(mant) * 5.9604644775390625e-8f;  // mant * 2^-24
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
}
}  // namespace gputrack_emu

struct __half {
    unsigned short __x;
    __half() = default;
    __half(float f) : __x(gputrack_emu::float_to_half_bits(f)) {}
    __half(double d) : __x(gputrack_emu::float_to_half_bits(float(d))) {}
    __half(int i) : __half(float(i)) {}
    __half(unsigned i) : __half(float(i)) {}
    __half(long long i) : __half(float(i)) {}
    __half(unsigned long long i) : __half(float(i)) {}
    __half(short i) : __half(float(i)) {}
    __half(unsigned short i) : __half(float(i)) {}
    operator float() const { return gputrack_emu::half_bits_to_float(__x); }
};
typedef __half half;
struct __attribute__((aligned(4))) __half2 {
    __half x, y;
};
typedef __half2 half2;

inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return float(h); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short x) { __half h; h.__x = x; return h; }
inline short __half_as_short(__half h) { return short(h.__x); }
inline __half __short_as_half(short x) { __half h; h.__x = (unsigned short)x; return h; }
inline __half __hadd(__half a, __half b) { return __half(float(a) + float(b)); }
inline __half __hsub(__half a, __half b) { return __half(float(a) - float(b)); }
inline __half __hmul(__half a, __half b) { return __half(float(a) * float(b)); }
inline __half __hdiv(__half a, __half b) { return __half(float(a) / float(b)); }
inline __half __hneg(__half a) { return __ushort_as_half((unsigned short)(a.__x ^ 0x8000u)); }
inline __half __hmax(__half a, __half b) { return float(a) < float(b) ? b : a; }
inline __half __hmin(__half a, __half b) { return float(b) < float(a) ? b : a; }
inline __half operator+(__half a, __half b) { return __hadd(a, b); }
inline __half operator-(__half a, __half b) { return __hsub(a, b); }
inline __half operator*(__half a, __half b) { return __hmul(a, b); }
inline __half operator/(__half a, __half b) { return __hdiv(a, b); }
inline __half operator-(__half a) { return __hneg(a); }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__half(a), __half(b)}; }
inline __half2 __float2half2_rn(float a) { return __half2{__half(a), __half(a)}; }
inline __half2 __halves2half2(__half a, __half b) { return __half2{a, b}; }
inline float2 __half22float2(__half2 h) { return float2{float(h.x), float(h.y)}; }
inline float __low2float(__half2 h) { return float(h.x); }
inline float __high2float(__half2 h) { return float(h.y); }
inline __half __low2half(__half2 h) { return h.x; }
inline __half __high2half(__half2 h) { return h.y; }

#endif  // GPUTRACK_CUDA_EMU_H
