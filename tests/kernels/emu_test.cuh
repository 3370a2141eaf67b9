// Helpers for the emulator's test kernels (also exercises local #include in emu and NVRTC).
#pragma once

__device__ __forceinline__ int global_index() {
    return blockIdx.x * blockDim.x + threadIdx.x;
}

// Float maximum through atomicCAS on the bits: the classic pattern for a missing atomicMax(float).
__device__ __forceinline__ float atomic_max_float(float* address, float value) {
    int* bits = reinterpret_cast<int*>(address);
    int old = *bits;
    while (__int_as_float(old) < value) {
        int assumed = old;
        old = atomicCAS(bits, assumed, __float_as_int(value));
        if (old == assumed) break;
    }
    return __int_as_float(old);
}

__device__ __forceinline__ int clamp_index(int v, int lo, int hi) {
    return min(max(v, lo), hi);
}
