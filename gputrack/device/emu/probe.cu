// The emu backend's self-test at probe time: a barrier, shared memory and a warp shuffle.
extern "C" __global__ void gputrack_emu_probe(const int* in, int* out, int n) {
    __shared__ int partial[2];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int v = i < n ? in[i] : 0;
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = partial[0] + partial[1];
}
