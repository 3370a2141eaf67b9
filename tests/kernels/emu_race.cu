// Deliberately racy, for tests/test_emu.py only: thread t reads what thread t + 1 wrote to
// shared memory with no barrier in between. It proves that running the emulator's threads in
// both orders exposes such a race (one order reads stale shared memory).
extern "C" __global__ void racy_neighbour(const int* in, int* out) {
    __shared__ int tile[256];
    const int t = threadIdx.x;
    tile[t] = in[t];
    // the missing __syncthreads() is the point
    out[t] = tile[(t + 1) % blockDim.x];
}
