// The network's layers ("DSP"): NCHW float32, batch 1, one launch per fused IR node.
// Every activation tensor is a *channel view* of a buffer: channel c of a tensor with plane
// size HW lives at buffer + (c0 + c * cs) * HW. Concat is free (producers write at their
// channel offset c0 of the concatenated buffer) and ShuffleNet's channel shuffle + split is
// free (readers use c0 = 0 or 1 and cs = 2). Writers always use cs = 1.
// The order of operations and the layer semantics are stated in NumPy in
// gputrack/dsp/interp.py; gputrack/dsp/plan.py launches these.
#include "common.cuh"

#define NN_NEG_INF (-__int_as_float(0x7f800000))

#define NN_ACT_NONE 0
#define NN_ACT_RELU 1
#define NN_ACT_SIGMOID 2
#define NN_ACT_CLIP 3
#define NN_ACT_HARDSIGMOID 4  // clip(lo * v + hi, 0, 1): lo, hi = ONNX alpha, beta
#define NN_ACT_HARDSWISH 5    // v * clip(v / 6 + 1/2, 0, 1)
#define NN_ACT_LEAKYRELU 6    // v < 0: lo * v
#define NN_ACT_TANH 7

__device__ __forceinline__ float nn_act(float v, int act, float lo, float hi) {
    if (act == NN_ACT_RELU) return fmaxf(v, 0.0f);
    if (act == NN_ACT_SIGMOID) return 1.0f / (1.0f + expf(-v));
    if (act == NN_ACT_CLIP) return fminf(fmaxf(v, lo), hi);
    if (act == NN_ACT_HARDSIGMOID) return fminf(fmaxf(lo * v + hi, 0.0f), 1.0f);
    if (act == NN_ACT_HARDSWISH) return v * fminf(fmaxf(v / 6.0f + 0.5f, 0.0f), 1.0f);
    if (act == NN_ACT_LEAKYRELU) return v >= 0.0f ? v : lo * v;
    if (act == NN_ACT_TANH) return tanhf(v);
    return v;
}

// ---- direct convolution: any kernel size, stride, padding, dilation, groups ---------------
// grid (ceil(ho*wo / 128), cout), one thread per output pixel of channel blockIdx.y: the
// block shares one filter, so its weight reads are uniform (broadcast).
#define CONV_THREADS 128

extern "C" __global__ void __launch_bounds__(CONV_THREADS) nn_conv2d(
    const float* __restrict__ x, int x_c0, int x_cs, int cin, int h, int w,
    const float* __restrict__ wt, const float* __restrict__ bias,
    const float* __restrict__ res, int r_c0, int r_cs,
    float* __restrict__ y, int y_c0, int cout, int ho, int wo,
    int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int groups,
    int act, float act_lo, float act_hi) {
    const int co = blockIdx.y;
    const int p = blockIdx.x * CONV_THREADS + threadIdx.x;
    if (co >= cout || p >= ho * wo) return;
    const int oy = p / wo, ox = p - oy * wo;
    const int cig = cin / groups;
    const int g = co / (cout / groups);
    const long long hw = (long long)h * w;
    const float* wk = wt + (long long)co * cig * kh * kw;
    float acc = bias ? bias[co] : 0.0f;
    const int iy0 = oy * sh - ph, ix0 = ox * sw - pw;
    for (int ci = 0; ci < cig; ++ci) {
        const float* plane = x + (long long)(x_c0 + (g * cig + ci) * x_cs) * hw;
        for (int ky = 0; ky < kh; ++ky) {
            const int iy = iy0 + ky * dh;
            if (iy < 0 || iy >= h) continue;
            const float* row = plane + (long long)iy * w;
            const float* wrow = wk + (ci * kh + ky) * kw;
            for (int kx = 0; kx < kw; ++kx) {
                const int ix = ix0 + kx * dw;
                if (ix >= 0 && ix < w) acc = fmaf(row[ix], wrow[kx], acc);
            }
        }
    }
    const long long ohw = (long long)ho * wo;
    if (res) acc += res[(long long)(r_c0 + co * r_cs) * ohw + p];
    y[(long long)(y_c0 + co) * ohw + p] = nn_act(acc, act, act_lo, act_hi);
}

// ---- pointwise (1x1, stride 1, no padding, group 1) convolution as a tiled GEMM ------------
// Y[co][p] = sum_ci W[co][ci] X[ci][p]: M = cout, N = pixels, K = cin. A block of 256 threads
// computes a 64 x 64 tile; K advances 16 at a time through shared memory (weights stored
// transposed, padded by one column against bank conflicts). Each thread owns 4 x 4 outputs,
// rows ty + 16 i and pixels tx + 16 j, so that loads and stores stay coalesced over pixels.
#define PW_BM 64
#define PW_BN 64
#define PW_BK 16
#define PW_THREADS 256

extern "C" __global__ void __launch_bounds__(PW_THREADS) nn_conv1x1(
    const float* __restrict__ x, int x_c0, int x_cs, int cin, int npix,
    const float* __restrict__ wt, const float* __restrict__ bias,
    const float* __restrict__ res, int r_c0, int r_cs,
    float* __restrict__ y, int y_c0, int cout, int act, float act_lo, float act_hi) {
    __shared__ float ws[PW_BK][PW_BM + 1];
    __shared__ float xs[PW_BK][PW_BN];
    const int tid = threadIdx.x;
    const int tx = tid & 15, ty = tid >> 4;
    const int m0 = blockIdx.y * PW_BM, n0 = blockIdx.x * PW_BN;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < cin; k0 += PW_BK) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int e = tid + r * PW_THREADS;
            const int wm = e >> 4, wk = e & 15;  // weights: 64 rows x 16 k
            const int gm = m0 + wm, gk = k0 + wk;
            ws[wk][wm] = (gm < cout && gk < cin) ? wt[(long long)gm * cin + gk] : 0.0f;
            const int xk = e >> 6, xn = e & 63;  // inputs: 16 k x 64 pixels
            const int gxk = k0 + xk, gn = n0 + xn;
            xs[xk][xn] = (gxk < cin && gn < npix)
                             ? x[(long long)(x_c0 + gxk * x_cs) * npix + gn]
                             : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < PW_BK; ++k) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = ws[k][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = xs[k][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int co = m0 + ty + 16 * i;
        if (co >= cout) continue;
        const float b0 = bias ? bias[co] : 0.0f;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int n = n0 + tx + 16 * j;
            if (n >= npix) continue;
            float v = acc[i][j] + b0;
            if (res) v += res[(long long)(r_c0 + co * r_cs) * npix + n];
            y[(long long)(y_c0 + co) * npix + n] = nn_act(v, act, act_lo, act_hi);
        }
    }
}

// ---- pooling --------------------------------------------------------------------------------
// kind 0: max (padding never wins); kind 1: average, dividing by the window's in-image count
// or, with count_include_pad, by kh * kw. grid (ceil(ho*wo / 256), c).
extern "C" __global__ void nn_pool2d(const float* __restrict__ x, int x_c0, int x_cs, int c,
                                     int h, int w, float* __restrict__ y, int y_c0, int ho,
                                     int wo, int kh, int kw, int sh, int sw, int ph, int pw,
                                     int kind, int count_include_pad) {
    const int ch = blockIdx.y;
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c || p >= ho * wo) return;
    const int oy = p / wo, ox = p - oy * wo;
    const float* plane = x + (long long)(x_c0 + ch * x_cs) * h * w;
    const int y0 = oy * sh - ph, x0 = ox * sw - pw;
    float best = NN_NEG_INF, sum = 0.0f;
    int count = 0;
    for (int ky = 0; ky < kh; ++ky) {
        const int iy = y0 + ky;
        if (iy < 0 || iy >= h) continue;
        for (int kx = 0; kx < kw; ++kx) {
            const int ix = x0 + kx;
            if (ix < 0 || ix >= w) continue;
            const float v = plane[iy * w + ix];
            best = fmaxf(best, v);
            sum += v;
            ++count;
        }
    }
    const float out = kind == 0 ? best : sum / (float)(count_include_pad ? kh * kw : count);
    y[(long long)(y_c0 + ch) * ho * wo + p] = out;
}

// Global average: one block per channel, a shared-memory tree reduction over the plane.
#define GAP_THREADS 256
extern "C" __global__ void __launch_bounds__(GAP_THREADS) nn_global_avgpool(
    const float* __restrict__ x, int x_c0, int x_cs, int c, int hw, float* __restrict__ y,
    int y_c0) {
    __shared__ float part[GAP_THREADS];
    const int ch = blockIdx.x;
    if (ch >= c) return;
    const float* plane = x + (long long)(x_c0 + ch * x_cs) * hw;
    float s = 0.0f;
    for (int i = threadIdx.x; i < hw; i += GAP_THREADS) s += plane[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int stride = GAP_THREADS / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) part[threadIdx.x] += part[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) y[y_c0 + ch] = part[0] / (float)hw;
}

// ---- resize (ONNX Resize on H and W) --------------------------------------------------------
// mode 0 nearest, 1 linear; coord 0 asymmetric, 1 half_pixel, 2 pytorch_half_pixel,
// 3 align_corners; nearest 0 floor, 1 ceil, 2 round_prefer_floor, 3 round_prefer_ceil,
// 4 Resize-10's (onnxruntime): ceil on an axis scaled down, floor on one scaled up.
// scale = output / input size, divided by (not multiplied with its inverse) as ONNX states.
__device__ __forceinline__ float nn_resize_coord(int o, int n_in, int n_out, float scale,
                                                 int coord) {
    if (coord == 0) return (float)o / scale;
    if (coord == 1) return ((float)o + 0.5f) / scale - 0.5f;
    if (coord == 2) return n_out > 1 ? ((float)o + 0.5f) / scale - 0.5f : 0.0f;
    return n_out > 1 ? (float)o * (float)(n_in - 1) / (float)(n_out - 1) : 0.0f;
}

__device__ __forceinline__ int nn_nearest(float c, int n_in, int mode) {
    float r;
    if (mode == 0) r = floorf(c);
    else if (mode == 1) r = ceilf(c);
    else if (mode == 2) r = ceilf(c - 0.5f);
    else r = floorf(c + 0.5f);
    return gt_imin(gt_imax((int)r, 0), n_in - 1);
}

extern "C" __global__ void nn_resize(const float* __restrict__ x, int x_c0, int x_cs, int c,
                                     int h, int w, float* __restrict__ y, int y_c0, int ho,
                                     int wo, float scale_y, float scale_x, int mode, int coord,
                                     int nearest_mode) {
    const int ch = blockIdx.y;
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c || p >= ho * wo) return;
    const int oy = p / wo, ox = p - oy * wo;
    const float* plane = x + (long long)(x_c0 + ch * x_cs) * h * w;
    const float cy = nn_resize_coord(oy, h, ho, scale_y, coord);
    const float cx = nn_resize_coord(ox, w, wo, scale_x, coord);
    float v;
    if (mode == 0) {
        const int my = nearest_mode == 4 ? (scale_y < 1.0f ? 1 : 0) : nearest_mode;
        const int mx = nearest_mode == 4 ? (scale_x < 1.0f ? 1 : 0) : nearest_mode;
        v = plane[nn_nearest(cy, h, my) * w + nn_nearest(cx, w, mx)];
    } else {
        const float fy = fminf(fmaxf(cy, 0.0f), (float)(h - 1));
        const float fx = fminf(fmaxf(cx, 0.0f), (float)(w - 1));
        const int y0 = (int)floorf(fy), x0 = (int)floorf(fx);
        const int y1 = gt_imin(y0 + 1, h - 1), x1 = gt_imin(x0 + 1, w - 1);
        const float ay = fy - (float)y0, ax = fx - (float)x0;
        const float top = plane[y0 * w + x0] * (1.0f - ax) + plane[y0 * w + x1] * ax;
        const float bot = plane[y1 * w + x0] * (1.0f - ax) + plane[y1 * w + x1] * ax;
        v = top * (1.0f - ay) + bot * ay;
    }
    y[(long long)(y_c0 + ch) * ho * wo + p] = v;
}

// ---- element-wise: y = act(a op b), op + - * / (BINOP_*); a copy into a concat slot when b
// is null. b_hw is b's pixels per channel: hw, or 1 for a per-channel operand (1 x C x 1 x 1,
// a squeeze-and-excitation gate) read at every pixel.
#define BINOP_ADD 0
#define BINOP_SUB 1
#define BINOP_MUL 2
#define BINOP_DIV 3
extern "C" __global__ void nn_eltwise(const float* __restrict__ a, int a_c0, int a_cs,
                                      const float* __restrict__ b, int b_c0, int b_cs, int b_hw,
                                      int binop, int c, int hw, float* __restrict__ y, int y_c0,
                                      int act, float act_lo, float act_hi) {
    const int ch = blockIdx.y;
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c || p >= hw) return;
    float v = a[(long long)(a_c0 + ch * a_cs) * hw + p];
    if (b) {
        const float u = b[(long long)(b_c0 + ch * b_cs) * b_hw + (b_hw == 1 ? 0 : p)];
        v = binop == BINOP_ADD ? v + u : binop == BINOP_SUB ? v - u
          : binop == BINOP_MUL ? v * u : v / u;
    }
    y[(long long)(y_c0 + ch) * hw + p] = nn_act(v, act, act_lo, act_hi);
}

// ---- softmax over channels, one thread per pixel (reads stay coalesced over pixels) --------
extern "C" __global__ void nn_softmax_channels(const float* __restrict__ x, int x_c0, int x_cs,
                                               int c, int hw, float* __restrict__ y,
                                               int y_c0) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= hw) return;
    float m = NN_NEG_INF;
    for (int ch = 0; ch < c; ++ch) m = fmaxf(m, x[(long long)(x_c0 + ch * x_cs) * hw + p]);
    float s = 0.0f;
    for (int ch = 0; ch < c; ++ch) s += expf(x[(long long)(x_c0 + ch * x_cs) * hw + p] - m);
    const float inv = 1.0f / s;
    for (int ch = 0; ch < c; ++ch) {
        y[(long long)(y_c0 + ch) * hw + p] =
            expf(x[(long long)(x_c0 + ch * x_cs) * hw + p] - m) * inv;
    }
}

// ---- a channel permutation/selection that is not a strided view: y[c] = x[channels[c]] ----
extern "C" __global__ void nn_channel_gather(const float* __restrict__ x, int x_c0, int x_cs,
                                             const int* __restrict__ channels, int c, int hw,
                                             float* __restrict__ y, int y_c0) {
    const int ch = blockIdx.y;
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c || p >= hw) return;
    y[(long long)(y_c0 + ch) * hw + p] = x[(long long)(x_c0 + channels[ch] * x_cs) * hw + p];
}
