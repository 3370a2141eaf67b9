// The sensor model: an RGB scene -> the RAW Bayer mosaic the sensor would read out.
// The algorithm is stated in NumPy in gputrack/sensor/model.py (`reference`); this is its
// schedule: one thread per horizontal pixel pair (one 4-byte store), no shared memory.
// The noise's 64-bit frame key (model.frame_key: seed and frame hashed) comes as two 32-bit
// halves (key_lo, key_hi).
#include "common.cuh"

// cfg (float32[16]), written by gputrack/sensor/model.py:
//   [0..8]  M = diag(1/wb) ccm^-1, row-major: linear sRGB -> sensor response
//   [9] black  [10] white - black  [11] white  [12] K (DN per electron)  [13] read variance (DN^2)
//   [14] k1  [15] k2 (lens shading: the response is divided by 1 + k1 r^2 + k2 r^4)
#define SCFG_M 0
#define SCFG_BLACK 9
#define SCFG_RANGE 10
#define SCFG_WHITE 11
#define SCFG_K 12
#define SCFG_READ 13
#define SCFG_K1 14
#define SCFG_K2 15

// One site: the sensed channel's response to linear RGB (l0, l1, l2) -> a digital number.
__device__ __forceinline__ unsigned short sensor_site(float l0, float l1, float l2, int x, int y,
                                                      int w, int h, int rx, int ry,
                                                      const float* __restrict__ cfg,
                                                      unsigned long long key, int noise) {
    const int kind = (((y ^ ry) & 1) << 1) | ((x ^ rx) & 1);  // 0 red, 3 blue, else green
    const int c = kind == 0 ? 0 : (kind == 3 ? 2 : 1);
    const float* m = cfg + SCFG_M + 3 * c;
    float v = m[0] * l0 + m[1] * l1 + m[2] * l2;
    const float k1 = cfg[SCFG_K1], k2 = cfg[SCFG_K2];
    if (k1 != 0.0f || k2 != 0.0f) {
        const float cx = 0.5f * (float)w, cy = 0.5f * (float)h;
        const float dx = (float)x + 0.5f - cx, dy = (float)y + 0.5f - cy;
        const float r2 = (dx * dx + dy * dy) / (cx * cx + cy * cy);
        v = v / (1.0f + k1 * r2 + k2 * r2 * r2);
    }
    float e = v * cfg[SCFG_RANGE];
    if (!(fabsf(e) < 1e30f)) {
        // Far past white or black, or overflowed on the way (a float scene near float32's
        // limit: products of inf, then inf - inf or inf + noise * z = NaN, had come out as 0,
        // black, where the float64 reference saturates). Only the sign matters this far out:
        // take it from the inputs scaled by 2^-64 (exact), whose products cannot overflow; the
        // shading gain and the range are positive. 1e30 DN saturates whatever the noise.
        const float q = 5.421010862427522e-20f;  // 2^-64
        const float vs = m[0] * (l0 * q) + m[1] * (l1 * q) + m[2] * (l2 * q);
        e = vs > 0.0f ? 1e30f : (vs < 0.0f ? -1e30f : 0.0f);
    }
    e = fmaxf(e, 0.0f);  // a response below 0 is negative light: none, black (as model.py)
    if (noise) {
        const unsigned long long idx =
            (unsigned long long)y * (unsigned long long)w + (unsigned long long)x;
        const float z = gt_gaussian(gt_pixel_hash(key, idx));
        e += sqrtf(cfg[SCFG_K] * e + cfg[SCFG_READ]) * z;
    }
    const float dn = fminf(fmaxf(floorf(e + cfg[SCFG_BLACK] + 0.5f), 0.0f), cfg[SCFG_WHITE]);
    return (unsigned short)(int)dn;
}

// uint8 tone-encoded RGB (H, W, 3); `table` maps each code to its linear value.
extern "C" __global__ void sensor_from_u8(const unsigned char* __restrict__ rgb,
                                          const float* __restrict__ table, int w, int h, int rx,
                                          int ry, const float* __restrict__ cfg,
                                          unsigned int key_lo, unsigned int key_hi, int noise,
                                          unsigned short* __restrict__ raw) {
    const unsigned long long key = ((unsigned long long)key_hi << 32) | key_lo;
    const int x = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    const unsigned char* p = rgb + ((long long)y * w + x) * 3;
    const unsigned short a = sensor_site(table[p[0]], table[p[1]], table[p[2]], x, y, w, h, rx, ry,
                                         cfg, key, noise);
    const unsigned short b = sensor_site(table[p[3]], table[p[4]], table[p[5]], x + 1, y, w, h, rx,
                                         ry, cfg, key, noise);
    *reinterpret_cast<gt_u16x2*>(raw + (long long)y * w + x) = gt_u16x2{a, b};
}

// float32 linear RGB (H, W, 3).
extern "C" __global__ void sensor_from_f32(const float* __restrict__ rgb, int w, int h, int rx,
                                           int ry, const float* __restrict__ cfg,
                                           unsigned int key_lo, unsigned int key_hi, int noise,
                                           unsigned short* __restrict__ raw) {
    const unsigned long long key = ((unsigned long long)key_hi << 32) | key_lo;
    const int x = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    const float* p = rgb + ((long long)y * w + x) * 3;
    const unsigned short a = sensor_site(p[0], p[1], p[2], x, y, w, h, rx, ry, cfg, key, noise);
    const unsigned short b = sensor_site(p[3], p[4], p[5], x + 1, y, w, h, rx, ry, cfg, key, noise);
    *reinterpret_cast<gt_u16x2*>(raw + (long long)y * w + x) = gt_u16x2{a, b};
}
