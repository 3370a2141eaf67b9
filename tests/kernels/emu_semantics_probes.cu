// Probe kernels for tests/test_emu_semantics.py: each CUDA built-in the kernels use (and a few
// a next kernel would likely use), run on emu and checked against its documented definition
// (CUDA Programming Guide, CUDA Math API, PTX ISA) computed in NumPy. NVRTC-compatible.

// ---- vector types: size and alignment as CUDA's vector_types.h declares them ---------------
#define SA(T, S, A) static_assert(sizeof(T) == S && alignof(T) == A, #T)
SA(char2, 2, 2); SA(char3, 3, 1); SA(char4, 4, 4);
SA(uchar2, 2, 2); SA(uchar3, 3, 1); SA(uchar4, 4, 4);
SA(short2, 4, 4); SA(short3, 6, 2); SA(short4, 8, 8);
SA(ushort2, 4, 4); SA(ushort3, 6, 2); SA(ushort4, 8, 8);
SA(int2, 8, 8); SA(int3, 12, 4); SA(int4, 16, 16);
SA(uint2, 8, 8); SA(uint3, 12, 4); SA(uint4, 16, 16);
SA(float2, 8, 8); SA(float3, 12, 4); SA(float4, 16, 16);
SA(longlong2, 16, 16); SA(ulonglong2, 16, 16); SA(double2, 16, 16);
SA(dim3, 12, 4);
#undef SA

// ---- warp shuffles: case k is (op, param, width) for every lane ----------------------------
// op 0 __shfl_sync, 1 __shfl_up_sync, 2 __shfl_down_sync, 3 __shfl_xor_sync.
extern "C" __global__ void shuffles(const int* __restrict__ ops, const int* __restrict__ params,
                                    const int* __restrict__ widths, int cases,
                                    int* __restrict__ out) {
    const int t = threadIdx.x;
    const int v = 1000 + t;
    for (int k = 0; k < cases; ++k) {
        const int op = ops[k], p = params[k], w = widths[k];
        int r;
        if (op == 0) r = __shfl_sync(0xffffffffu, v, p, w);
        else if (op == 1) r = __shfl_up_sync(0xffffffffu, v, (unsigned)p, w);
        else if (op == 2) r = __shfl_down_sync(0xffffffffu, v, (unsigned)p, w);
        else r = __shfl_xor_sync(0xffffffffu, v, p, w);
        out[k * blockDim.x + t] = r;
    }
}

// A lane reads a lane that has exited: the value is unspecified on a GPU (a warp sum over a
// partly filled warp that trusts it is wrong there). Lanes >= live exit first.
extern "C" __global__ void shuffle_from_exited(int live, int* __restrict__ out) {
    const int t = threadIdx.x;
    if (t >= live) return;
    out[t] = __shfl_down_sync(0xffffffffu, 1, 1);
}

// Lanes 0-15 shuffle with a full mask while lanes 16-31 wait at __syncthreads(): on a GPU the
// shuffle waits for lanes that never come (undefined behaviour).
extern "C" __global__ void shuffle_mask_names_a_waiting_lane(int* __restrict__ out) {
    const int t = threadIdx.x;
    int r = t;
    if (t < 16) r = __shfl_xor_sync(0xffffffffu, t, 1);
    __syncthreads();
    out[t] = r;
}

// The calling lane is missing from its own mask: undefined behaviour.
extern "C" __global__ void shuffle_mask_without_self(int* __restrict__ out) {
    const int t = threadIdx.x;
    out[t] = __shfl_sync(0xfffffffeu, t, 1);
}

// A missing __syncwarp(): lanes 1-15 read their lower neighbour's shared-memory write after a
// warp collective, with no __syncwarp() in between. Intended: out[t] = 2 * (t - 1) + 1.
extern "C" __global__ void racy_after_warp_collective(int* __restrict__ out) {
    __shared__ int tile[32];
    const int t = threadIdx.x;
    tile[t] = -1;
    const int v = __shfl_sync(0xffffffffu, 2 * t, t);  // any warp collective
    tile[t] = v + 1;
    // the missing __syncwarp() is the point
    out[t] = (t >= 1 && t < 16) ? tile[t - 1] : 2 * (t - 1) + 1;
}

// ---- atomics: return values, on shared and global memory -----------------------------------
// Every thread adds 1 to a shared and a global counter and keeps what each returned; thread 0
// of block 0 then runs a fixed sequence of the other atomics on one global word and one shared
// word, writing each returned (old) value and the final value.
extern "C" __global__ void atomics(int* __restrict__ counter, int* __restrict__ ticket_g,
                                   int* __restrict__ ticket_s, unsigned* __restrict__ word,
                                   unsigned* __restrict__ seq, float* __restrict__ fsum) {
    __shared__ int s_count;
    __shared__ unsigned s_word;
    __shared__ float s_f;
    const int t = threadIdx.x;
    if (t == 0) {
        s_count = 0;
        s_f = 0.0f;
    }
    __syncthreads();
    const int i = blockIdx.x * blockDim.x + t;
    ticket_s[i] = atomicAdd(&s_count, 1);
    ticket_g[i] = atomicAdd(counter, 1);
    atomicAdd(&s_f, 0.25f);
    atomicAdd(fsum, 0.5f);
    __syncthreads();
    if (t != 0 || blockIdx.x != 0) return;
    for (int m = 0; m < 2; ++m) {
        unsigned* a = m == 0 ? word : &s_word;
        unsigned* o = seq + 16 * m;
        *a = 5u;
        o[0] = atomicInc(a, 6u);    // 5 -> 6
        o[1] = atomicInc(a, 6u);    // 6 -> 0 (old >= limit)
        o[2] = atomicDec(a, 3u);    // 0 -> 3 (old == 0)
        o[3] = atomicDec(a, 2u);    // 3 -> 2 (old > limit)
        o[4] = atomicCAS(a, 7u, 9u);  // no swap
        o[5] = atomicCAS(a, 2u, 9u);  // 2 -> 9
        o[6] = atomicMax(a, 4u);    // stays 9
        o[7] = atomicMin(a, 4u);    // 9 -> 4
        o[8] = atomicExch(a, 0xF0u);
        o[9] = atomicAnd(a, 0x3Cu);   // 0xF0 -> 0x30
        o[10] = atomicOr(a, 0x03u);   // 0x33
        o[11] = atomicXor(a, 0x11u);  // 0x22
        o[12] = atomicSub(a, 0x23u);  // wraps to 0xFFFFFFFF
        o[13] = (unsigned)atomicMax((int*)a, 1);  // signed: -1 -> 1
        o[14] = *a;
    }
    seq[32] = s_count;
    seq[33] = __float_as_uint(s_f);
}

// ---- integer intrinsics ---------------------------------------------------------------------
extern "C" __global__ void int_ops(const unsigned* __restrict__ x, const unsigned* __restrict__ y,
                                   const unsigned* __restrict__ s, unsigned* __restrict__ out,
                                   int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const unsigned a = x[i], b = y[i], c = s[i];
    unsigned* o = out + 12 * i;
    o[0] = __funnelshift_l(a, b, c);
    o[1] = __funnelshift_lc(a, b, c);
    o[2] = __funnelshift_r(a, b, c);
    o[3] = __funnelshift_rc(a, b, c);
    o[4] = (unsigned)__ffs((int)a);
    o[5] = (unsigned)__clz((int)a);
    o[6] = (unsigned)__popcll(((unsigned long long)b << 32) | a);
    o[7] = (unsigned)__mulhi((int)a, (int)b);
    o[8] = (unsigned)__mul24((int)a, (int)b);
    o[9] = __umul24(a, b);
    o[10] = __byte_perm(a, b, c & 0x7777u);
    o[11] = (unsigned)__clzll(((unsigned long long)a << 32) | b);
}

// ---- float conversions and rounding ---------------------------------------------------------
extern "C" __global__ void float_ops(const float* __restrict__ x, const float* __restrict__ y,
                                     const float* __restrict__ z, unsigned* __restrict__ out,
                                     int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float a = x[i], b = y[i], c = z[i];
    unsigned* o = out + 12 * i;
    o[0] = (unsigned)__float2int_rn(a);
    o[1] = (unsigned)__float2int_rz(a);
    o[2] = (unsigned)__float2int_rd(a);
    o[3] = (unsigned)__float2int_ru(a);
    o[4] = __float2uint_rn(a);
    o[5] = __float2uint_rz(a);
    o[6] = __float_as_uint(rintf(a));
    o[7] = __float_as_uint(__saturatef(a));
    o[8] = __float_as_uint(fmaf(a, b, c));
    o[9] = __float_as_uint(__fdividef(a, b));
    o[10] = __float_as_uint(a / b);
    o[11] = __float_as_uint(sqrtf(fabsf(a)));
}
