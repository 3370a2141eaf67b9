// The sensor's noise draw (common.cuh gt_gaussian) on chosen hashes: tests/test_noise_probe.py.
#include "common.cuh"

extern "C" __global__ void gaussian_at(const unsigned long long* __restrict__ h,
                                       float* __restrict__ out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = gt_gaussian(h[i]);
}
