// __half round trip: float -> half (round to nearest even) -> float, and half arithmetic.
// On the GPU this needs CUDA's cuda_fp16.h on the NVRTC include path.
#include <cuda_fp16.h>

extern "C" __global__ void half_round_trip(const float* __restrict__ x, __half* __restrict__ h,
                                           float* __restrict__ back, float* __restrict__ doubled,
                                           int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const __half v = __float2half_rn(x[i]);
    h[i] = v;
    back[i] = __half2float(v);
    doubled[i] = __half2float(__hadd(v, __float2half(x[i])));
}
