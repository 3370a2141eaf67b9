// Test kernels for the emu backend, one per feature it claims. NVRTC-compatible: the same
// file runs on the cuda backend, and tests/test_emu.py compares both with NumPy.
#include "emu_test.cuh"

#ifndef STENCIL_TILE
#define STENCIL_TILE 16
#endif
#define STENCIL_RADIUS 2

// Block-level tree reduction in shared memory; blockDim.x is a power of two up to 1024.
extern "C" __global__ void __launch_bounds__(1024)
block_sum(const float* __restrict__ x, float* __restrict__ partial, int n) {
    __shared__ float cache[1024];
    const int t = threadIdx.x;
    const int i = global_index();
    cache[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (t < stride) cache[t] += cache[t + stride];
        __syncthreads();
    }
    if (t == 0) partial[blockIdx.x] = cache[0];
}

// Warp shuffles: sum by shfl_down (lane 0) and shfl_xor (every lane), a 16-wide xor sum,
// an inclusive scan by shfl_up and a broadcast from lane 5.
extern "C" __global__ void warp_ops(const int* __restrict__ x, int* __restrict__ sum_down,
                                    int* __restrict__ sum_xor, int* __restrict__ sum16,
                                    int* __restrict__ scan, int* __restrict__ bcast, int n) {
    const int i = global_index();
    const int lane = threadIdx.x % 32;
    const int v = i < n ? x[i] : 0;
    int down = v, butterfly = v, half = v, prefix = v;
    for (int offset = 16; offset > 0; offset >>= 1) {
        down += __shfl_down_sync(0xffffffffu, down, offset);
        butterfly += __shfl_xor_sync(0xffffffffu, butterfly, offset);
    }
    for (int offset = 8; offset > 0; offset >>= 1)
        half += __shfl_xor_sync(0xffffffffu, half, offset, 16);
    for (int offset = 1; offset < 32; offset <<= 1) {
        int up = __shfl_up_sync(0xffffffffu, prefix, offset);
        if (lane >= offset) prefix += up;
    }
    const int from5 = __shfl_sync(0xffffffffu, v, 5);
    if (i < n) {
        if (lane == 0) sum_down[i / 32] = down;
        sum_xor[i] = butterfly;
        sum16[i] = half;
        scan[i] = prefix;
        bcast[i] = from5;
    }
}

// Votes over each warp: the predicate is false past the end of the data.
extern "C" __global__ void votes(const float* __restrict__ x, unsigned* __restrict__ ballots,
                                 int* __restrict__ any, int* __restrict__ all, int n,
                                 float threshold) {
    const int i = global_index();
    const int pred = i < n && x[i] > threshold;
    const unsigned ballot = __ballot_sync(0xffffffffu, pred);
    const int some = __any_sync(0xffffffffu, pred);
    const int every = __all_sync(0xffffffffu, pred);
    const int warp = i / 32;
    if (threadIdx.x % 32 == 0 && warp * 32 < n) {
        ballots[warp] = ballot;
        any[warp] = some;
        all[warp] = every;
    }
}

// Atomics with many collisions, across blocks that run in parallel.
extern "C" __global__ void histogram(const int* __restrict__ values, const float* __restrict__ reals,
                                     int n, int* __restrict__ bins, int num_bins,
                                     int* __restrict__ max_value, unsigned* __restrict__ min_value,
                                     float* __restrict__ max_real,
                                     unsigned long long* __restrict__ total) {
    const int i = global_index();
    if (i >= n) return;
    const int v = values[i];
    atomicAdd(&bins[v % num_bins], 1);
    atomicMax(max_value, v);
    atomicMin(min_value, static_cast<unsigned>(v));
    atomic_max_float(max_real, reals[i]);
    atomicAdd(total, static_cast<unsigned long long>(v));
}

// 5x5 weighted stencil; each block loads its tile plus a 2-pixel halo (edges clamped) into
// shared memory first.
extern "C" __global__ void stencil5x5(const float* __restrict__ in, float* __restrict__ out,
                                      const float* __restrict__ weights, int width, int height) {
    constexpr int kSide = STENCIL_TILE + 2 * STENCIL_RADIUS;
    __shared__ float tile[kSide][kSide];
    const int x0 = blockIdx.x * STENCIL_TILE - STENCIL_RADIUS;
    const int y0 = blockIdx.y * STENCIL_TILE - STENCIL_RADIUS;
    for (int k = threadIdx.y * blockDim.x + threadIdx.x; k < kSide * kSide;
         k += blockDim.x * blockDim.y) {
        const int ty = k / kSide, tx = k % kSide;
        const int gx = clamp_index(x0 + tx, 0, width - 1);
        const int gy = clamp_index(y0 + ty, 0, height - 1);
        tile[ty][tx] = __ldg(&in[gy * width + gx]);
    }
    __syncthreads();
    const int x = blockIdx.x * STENCIL_TILE + threadIdx.x;
    const int y = blockIdx.y * STENCIL_TILE + threadIdx.y;
    if (x >= width || y >= height) return;
    float acc = 0.0f;
    for (int dy = 0; dy < 5; ++dy)
        for (int dx = 0; dx < 5; ++dx)
            acc += weights[dy * 5 + dx] * tile[threadIdx.y + dy][threadIdx.x + dx];
    out[y * width + x] = acc;
}

// Dynamic shared memory: each block reverses its chunk through `extern __shared__`.
extern "C" __global__ void reverse_chunks(const int* __restrict__ in, int* __restrict__ out, int n) {
    extern __shared__ int chunk[];
    const int start = blockIdx.x * blockDim.x;
    const int len = min(static_cast<int>(blockDim.x), n - start);
    const int t = threadIdx.x;
    if (t < len) chunk[t] = in[start + t];
    __syncthreads();
    if (t < len) out[start + t] = chunk[len - 1 - t];
}

// A second dynamic array, float and 16-byte aligned: out[i] = x[i] * k + x[next in block].
extern "C" __global__ void rotate_scaled(const float* __restrict__ x, float* __restrict__ out,
                                         int n, float k) {
    extern __shared__ __align__(16) float values[];
    const int i = global_index();
    const int t = threadIdx.x;
    values[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    const int next = (t + 1) % blockDim.x;
    if (i < n) out[i] = values[t] * k + values[next];
}

// Barrier votes: per block, how many, whether all and whether any threads pass.
extern "C" __global__ void barrier_votes(const float* __restrict__ x, int n, float threshold,
                                         int* __restrict__ counts, int* __restrict__ ands,
                                         int* __restrict__ ors) {
    const int i = global_index();
    const int pred = i < n && x[i] > threshold;
    const int count = __syncthreads_count(pred);
    const int every = __syncthreads_and(pred);
    const int some = __syncthreads_or(pred);
    if (threadIdx.x == 0) {
        counts[blockIdx.x] = count;
        ands[blockIdx.x] = every;
        ors[blockIdx.x] = some;
    }
}

// Threads that exit early do not hold up the barrier (PTX: barriers wait for non-exited
// threads): thread 0 of every block and threads past the end leave before __syncthreads().
extern "C" __global__ void early_exit(const int* __restrict__ x, int* __restrict__ out, int n) {
    __shared__ int values[1024];
    const int t = threadIdx.x;
    const int i = global_index();
    if (t == 0 || i >= n) return;
    values[t] = x[i];
    __syncthreads();
    // The neighbour to the right within the block, wrapping to thread 1; exited ones read 0.
    int next = t + 1;
    if (next >= blockDim.x || blockIdx.x * blockDim.x + next >= n) next = 1;
    out[i] = values[t] + 1000 * values[next];
}

// Integer intrinsics whose CPU twins are written by hand: __byte_perm (every selector given),
// __brev, __popc, __clz, __umulhi.
extern "C" __global__ void int_intrinsics(const unsigned* __restrict__ x,
                                          const unsigned* __restrict__ y,
                                          const unsigned* __restrict__ sel,
                                          unsigned* __restrict__ out, int n) {
    const int i = global_index();
    if (i >= n) return;
    out[5 * i + 0] = __byte_perm(x[i], y[i], sel[i]);
    out[5 * i + 1] = __brev(x[i]);
    out[5 * i + 2] = (unsigned)__popc(x[i]);
    out[5 * i + 3] = (unsigned)__clz((int)y[i]);
    out[5 * i + 4] = __umulhi(x[i], y[i]);
}
