// Kernels for the runtime-interface tests (tests/test_runtime_api.py): small on purpose.

// x[i] = x[i] * scale + offset, for a grid-stride loop over n elements.
extern "C" __global__ void affine_inplace(float* x, float scale, float offset, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[i] = x[i] * scale + offset;
}

// out[i] = a[i] + b[i] where b may be NULL (then out = a): exercises NULL pointer arguments.
extern "C" __global__ void add_optional(const float* a, const float* b, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + (b != nullptr ? b[i] : 0.0f);
}

// 2-D: out[y][x] = x + 1000 * y + 1000000 * blockIdx.z, to check 3-D grids and indexing.
extern "C" __global__ void coords(int* out, int w, int h) {
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x < w && y < h) out[(blockIdx.z * h + y) * w + x] = x + 1000 * y + 1000000 * blockIdx.z;
}

#ifndef GAIN
#define GAIN 1
#endif
// Compile-time defines reach the source: out[i] = GAIN * i.
extern "C" __global__ void gain_index(int* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = GAIN * i;
}
