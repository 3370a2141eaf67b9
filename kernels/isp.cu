// The ISP: RAW Bayer mosaic -> RGB8 (+ NV12, + float RGB) in one pass, the network tensor in a
// second small pass, grey-world white-balance statistics in a reduction.
// The algorithm is stated once in NumPy in gputrack/isp/reference.py; this is its schedule.
//
// isp_main: a block of 32x8 threads walks down a strip of ISP_STRIP tiles of 64x32 pixels
// (ISP_CELLS = 2, the default: two 2x2 Bayer cells per thread, one above the other; 64x16
// with one).
//   1. The tile plus a 2-pixel halo (rows y0-2..y0+33, columns x0-8..x0+71 so that every
//      row is read in aligned 16-byte groups) is normalised (black level, range, lens shading,
//      white balance, clip) into shared memory as float; its RAW was loaded into registers
//      while the block worked on the tile above.
//   2. For each of its cells, a thread reads the 6x6 neighbourhood into registers and
//      demosaics the four pixels (Malvar-He-Cutler 5x5 or bilinear), applies the colour
//      matrix, clips, and looks up the 8-bit tone table (shared memory) at the linear value's
//      12-bit code.
//   3. RGB8 / NV12 bytes are staged in shared memory and written as 16-byte stores when the
//      row layout allows it (width a multiple of 16), else byte by byte.
// isp_main_dir: the same chain with the directional demosaic, staged through shared memory
//   with a wider halo (see its comment below), one tile per block.
// Borders mirror without repeating the edge (reflect-101), which keeps the Bayer phase.
#include "common.cuh"

#define ISP_BX 32
#define ISP_BY 8
#define ISP_THREADS (ISP_BX * ISP_BY)
#define TILE_W (2 * ISP_BX)      // 64 pixels
#define TILE_H (2 * ISP_BY)      // 16 pixels
#define SM_W (TILE_W + 16)       // 80 floats: x0-8 .. x0+71 (whole 16-byte RAW groups)
#define SM_P (SM_W / 2)          // pairs per row
#define GROUPS_X (SM_W / 8)      // 16-byte groups of RAW per row
// isp_main's 2x2 cells per thread and tile step, stacked down (pipeline.CELLS; a schedule
// knob, 1 or 2): its tile is ISP_CELLS * TILE_H rows, and what a thread does once per step
// (the step's addresses and bounds, the loop, the barrier, the per-step part of fetching,
// normalising and writing out) serves ISP_CELLS cells: with 2, the common path's loop body is
// 693 SASS instructions per thread for 8 pixels against 413 for 4 (sm_90). Each cell reads its
// own window: keeping the 4 rows two cells share in registers saved about 2 %, at the
// 64-register cap. 3 or more would not fit the 48 KB of static shared memory.
#ifndef ISP_CELLS
#define ISP_CELLS 2
#endif
static_assert(ISP_CELLS == 1 || ISP_CELLS == 2, "ISP_CELLS: 1 or 2");
#define MAIN_TILE_H (ISP_CELLS * TILE_H)

// cfg (float32[16]) layout, written by gputrack/isp/pipeline.py
#define CFG_BLACK 0
#define CFG_SCALE 1  // 1 / (white - black)
#define CFG_WB 2     // R, G, B gains (ignored when awb statistics are given)
#define CFG_CCM 5    // 3x3 row-major
#define CFG_K1 14
#define CFG_K2 15

#define DEMOSAIC_MHC 0
#define DEMOSAIC_BILINEAR 1

// BT.709 luma weights (reference.KR, KB), for NV12
#define KR 0.2126
#define KB 0.0722
#define KG (1.0 - KR - KB)

// One pixel of the 6x6 window w, centre (CY, CX), of a colour site known at compile time
// (KIND 0 red site, 3 blue site, 1 green site in a red row, 2 green site in a blue row).
// Malvar-He-Cutler is bilinear interpolation plus a gain-corrected Laplacian of the site's own
// colour, so both methods are one formula: `corr8` is the correction's weight with MHC's 1/8
// folded in, 1/8 for MHC, 0 for bilinear (no branch).
template <int CY, int CX, int KIND>
__device__ __forceinline__ void demosaic_site(const float (&w)[6][6], float corr8, float& r,
                                              float& g, float& b) {
    const float c = w[CY][CX];
    const float n = w[CY - 1][CX], s = w[CY + 1][CX], we = w[CY][CX - 1], e = w[CY][CX + 1];
    const float nn = w[CY - 2][CX], ss = w[CY + 2][CX], ww = w[CY][CX - 2], ee = w[CY][CX + 2];
    const float diag4 = (w[CY - 1][CX - 1] + w[CY - 1][CX + 1]) +
                        (w[CY + 1][CX - 1] + w[CY + 1][CX + 1]);
    if constexpr (KIND == 0 || KIND == 3) {
        const float cross2 = (nn + ss) + (ww + ee);
        const float g_rb = fmaf(corr8, 4.0f * c - cross2, ((n + s) + (we + e)) * 0.25f);
        const float dia = fmaf(corr8, 6.0f * c - 1.5f * cross2, diag4 * 0.25f);
        g = g_rb;
        r = KIND == 0 ? c : dia;
        b = KIND == 0 ? dia : c;
    } else {
        const float lap = 5.0f * c - diag4;
        const float row = fmaf(corr8, lap - (ww + ee) + 0.5f * (nn + ss), (we + e) * 0.5f);
        const float col = fmaf(corr8, lap - (nn + ss) + 0.5f * (ww + ee), (n + s) * 0.5f);
        g = c;
        r = KIND == 1 ? row : col;
        b = KIND == 1 ? col : row;
    }
}

// The colour site (KIND of demosaic_site) of pixel (DX, DY) of a 2x2 cell whose red pixel sits
// at (RX, RY).
template <int RX, int RY, int DX, int DY>
constexpr int cell_site = (((DY ^ RY) & 1) << 1) | ((DX ^ RX) & 1);

__device__ __forceinline__ float tone_lut(const float* __restrict__ lut, int lut_n, float v) {
    const float t = v * (float)(lut_n - 1);
    const int i = gt_imin((int)t, lut_n - 2);
    const float f = t - (float)i;
    const float lo = lut[i], hi = lut[i + 1];
    return lo + f * (hi - lo);
}

// ---- pieces shared by isp_main and isp_main_dir ------------------------------------------

// White-balance gains: fixed, or grey world from the integer sums of isp_awb_stats (double:
// the sums exceed float's 24 bits).
__device__ __forceinline__ void isp_gains(const float* __restrict__ cfg,
                                          const unsigned long long* __restrict__ awb,
                                          float& gain_r, float& gain_g, float& gain_b) {
    gain_r = cfg[CFG_WB + 0]; gain_g = cfg[CFG_WB + 1]; gain_b = cfg[CFG_WB + 2];
    if (awb != nullptr) {
        const double sr = (double)awb[0], sg = (double)awb[1], sb = (double)awb[2];
        gain_r = gain_g = gain_b = 1.0f;
        if (awb[3] != 0ull && sr > 0.0 && sg > 0.0 && sb > 0.0) {
            gain_r = (float)fmin(fmax(0.5 * sg / sr, 0.125), 8.0);
            gain_b = (float)fmin(fmax(0.5 * sg / sb, 0.125), 8.0);
        }
    }
}

// The 8-bit tone table: TONE8_N codes of the clipped linear value (params.TONE8_SIZE), staged
// in shared memory by every block (the table is 4 KB: one 16-byte load per thread; `lut8` is a
// device allocation of its own, so aligned).
#define TONE8_N 4096
static_assert(TONE8_N == 16 * ISP_THREADS, "isp_stage_tone8: one 16-byte load per thread");
__device__ __forceinline__ void isp_stage_tone8(unsigned char* __restrict__ s8,
                                                const unsigned char* __restrict__ lut8, int tid) {
    reinterpret_cast<gt_u32x4*>(s8)[tid] = reinterpret_cast<const gt_u32x4*>(lut8)[tid];
}

// NV12 (BT.709, limited range) from 8-bit RGB, as an encoder fed RGB8 would have it: luma
// 16 + 219 (KR r + KG g + KB b) / 255, and chroma from the mean of each 2x2 cell, both rounded
// half up (reference.to_nv12). Each is affine in the 8-bit values (chroma in the cell's sums),
// so it is computed in fixed point: three integer multiply-adds with the coefficients scaled
// by 2^24 and rounded, and a shift (the float form took twice the instructions). The error,
// below 3 * 1020 * 2^-25 < 1e-4 of a code, is of the float form's size. The arithmetic is
// unsigned and wraps: negative coefficients are their two's complement, and the true result
// lies in [0, 256) * 2^24, so the wrapped sum is exact.
#define NV12_FIX(c) ((unsigned int)(long long)((c) * 16777216.0 + ((c) < 0.0 ? -0.5 : 0.5)))
#define NV12_HALF 8388608u  // 0.5 in 2^24 units: round half up
__device__ __forceinline__ unsigned int isp_luma8(unsigned int r8, unsigned int g8,
                                                  unsigned int b8) {
    constexpr double s = 219.0 / 255.0;
    constexpr unsigned int cr = NV12_FIX(s * KR), cg = NV12_FIX(s * KG),
                           cb = NV12_FIX(s * KB), c0 = (16u << 24) + NV12_HALF;
    return ((r8 * cr + g8 * cg + b8 * cb) + c0) >> 24;
}

// NV12 chroma of cell (qx, qy) from the integer sums of its four 8-bit pixels (each sum up to
// 1020): Cb = 128 + 224 (mb - yq) / (2 (1 - KB)), Cr = 128 + 224 (mr - yq) / (2 (1 - KR)),
// m = sum / 1020, yq = KR mr + KG mg + KB mb; in [16, 240], so no clamp.
__device__ __forceinline__ void isp_finish_uv(unsigned char* __restrict__ out,
                                              unsigned int sum_r, unsigned int sum_g,
                                              unsigned int sum_b) {
    constexpr double ab = 224.0 / (2.0 * (1.0 - KB)) / 1020.0;
    constexpr double ar = 224.0 / (2.0 * (1.0 - KR)) / 1020.0;
    constexpr unsigned int c0 = (128u << 24) + NV12_HALF;
    const unsigned int cb = sum_r * NV12_FIX(-ab * KR) + sum_g * NV12_FIX(-ab * KG) +
                            sum_b * NV12_FIX(ab * (1.0 - KB)) + c0;
    const unsigned int cr = sum_r * NV12_FIX(ar * (1.0 - KR)) +
                            sum_g * NV12_FIX(-ar * KG) + sum_b * NV12_FIX(-ar * KB) + c0;
    reinterpret_cast<unsigned short*>(out)[0] = (unsigned short)((cb >> 24) | ((cr >> 24) << 8));
}

// The staging buffers of the 8-bit outputs of a tile of TH rows, in 16-byte units.
#define STAGE_RGB_N(TH) ((TH) * (TILE_W * 3 / 16))  // TH rows x 192 bytes
#define STAGE_Y_N(TH) ((TH) * (TILE_W / 16))        // TH rows x 64 bytes
#define STAGE_UV_N(TH) (((TH) / 2) * (TILE_W / 16)) // TH / 2 rows x 64 bytes

// Write the staged bytes of a tile of TH rows: 16-byte stores when the width is a multiple of
// 16 and the tile is whole, else byte by byte.
template <int TH>
__device__ __forceinline__ void isp_write_tile(const gt_u32x4* __restrict__ stage_rgb,
                                               const gt_u32x4* __restrict__ stage_y,
                                               const gt_u32x4* __restrict__ stage_uv, int w,
                                               int h, int x0, int y0, int tid,
                                               unsigned char* __restrict__ rgb8,
                                               unsigned char* __restrict__ nv12) {
    const unsigned char* srgb = reinterpret_cast<const unsigned char*>(stage_rgb);
    const unsigned char* sy = reinterpret_cast<const unsigned char*>(stage_y);
    const unsigned char* suv = reinterpret_cast<const unsigned char*>(stage_uv);
    const bool fast = (w & 15) == 0 && x0 + TILE_W <= w;
    const int rows = gt_imin(TH, h - y0);
    // Whole tiles: the RGB units, then the Y units, dealt out a unit per thread and round (one
    // round for a 16-row tile: 192 RGB, then 64 Y by other threads, 32 UV; an `if`, not a
    // loop), each address the tile row's 64-bit base plus a 32-bit offset within the tile: a
    // loop's hoisted 64-bit addresses were spilled.
    constexpr int RGB_ROW = TILE_W * 3 / 16, Y_ROW = TILE_W / 16;  // 16-byte units a row
    constexpr int ROUNDS = (STAGE_RGB_N(TH) + STAGE_Y_N(TH) + ISP_THREADS - 1) / ISP_THREADS;
    static_assert(STAGE_UV_N(TH) <= ISP_THREADS, "isp_write_tile: a UV unit per thread");
    if (fast) {
#pragma unroll
        for (int k = 0; k < ROUNDS; ++k) {
            const int u = tid + k * ISP_THREADS;
            if (u < rows * RGB_ROW) {
                const int r = u / RGB_ROW, c = u - r * RGB_ROW;
                unsigned char* tile_rgb = rgb8 + (long long)y0 * w * 3;
                reinterpret_cast<gt_u32x4*>(tile_rgb + (r * w + x0) * 3)[c] = stage_rgb[u];
            }
        }
    } else {
        const int cols = gt_imin(TILE_W, w - x0) * 3;
        for (int i = tid; i < rows * TILE_W * 3; i += ISP_THREADS) {
            const int r = i / (TILE_W * 3), c = i - r * (TILE_W * 3);
            if (c < cols) rgb8[((long long)(y0 + r) * w + x0) * 3 + c] = srgb[i];
        }
    }
    if (nv12 != nullptr) {
        unsigned char* uv = nv12 + (long long)w * h;
        if (fast) {
#pragma unroll
            for (int k = 0; k < ROUNDS; ++k) {
                const int j = tid + k * ISP_THREADS - STAGE_RGB_N(TH);  // no RGB this round
                if (j >= 0 && j < rows * Y_ROW) {
                    const int r = j / Y_ROW, c = j - r * Y_ROW;
                    unsigned char* tile_y = nv12 + (long long)y0 * w;
                    reinterpret_cast<gt_u32x4*>(tile_y + r * w + x0)[c] = stage_y[j];
                }
            }
            if (tid < (rows / 2) * Y_ROW) {
                const int r = tid / Y_ROW, c = tid - r * Y_ROW;
                unsigned char* tile_uv = uv + (long long)(y0 / 2) * w;
                reinterpret_cast<gt_u32x4*>(tile_uv + r * w + x0)[c] = stage_uv[tid];
            }
        } else {
            const int cols = gt_imin(TILE_W, w - x0);
            for (int i = tid; i < rows * TILE_W; i += ISP_THREADS) {
                const int r = i / TILE_W, c = i - r * TILE_W;
                if (c < cols) nv12[(long long)(y0 + r) * w + x0 + c] = sy[i];
            }
            for (int i = tid; i < (rows / 2) * TILE_W; i += ISP_THREADS) {
                const int r = i / TILE_W, c = i - r * TILE_W;
                if (c < cols) uv[(long long)(y0 / 2 + r) * w + x0 + c] = suv[i];
            }
        }
    }
}


// ---- isp_main: MHC or bilinear --------------------------------------------------------------
#ifndef ISP_STRIP
#define ISP_STRIP 2  // tiles per block, stacked down (pipeline.STRIP): 64 rows with 2 cells
#endif
// 1: isp_main and isp_main_dir store each cell row's 6 RGB bytes (and 2 luma, 2 chroma)
// straight to the image as 2-byte stores instead of staging the tile in shared memory for
// 16-byte stores: the staging's loads, stores and address arithmetic (about a tenth of
// isp_main's instructions; isp_main_dir also loses a barrier) traded for stores the memory
// system must merge. A schedule knob, to be timed.
#ifndef ISP_DIRECT_STORE
#define ISP_DIRECT_STORE 0
#endif
#ifndef ISP_MIN_BLOCKS
#define ISP_MIN_BLOCKS 4  // blocks per multiprocessor: 64 registers, no spills
#endif

// ---- the RAW tile, fetched and normalised (isp_main and isp_main_dir) -----------------------
// A tile of TH rows with HY halo rows above and below and 8 columns either side (columns
// x0-8 .. x0+71: whole 16-byte groups of 8 pixels, SM_W floats a row), as float in shared
// memory, gt_f32x2[TH + 2 HY][SM_P]. isp_main: HY = 2, TH = MAIN_TILE_H; isp_main_dir: HY = 5,
// TH = TILE_H.
template <int HY, int TH = TILE_H>
struct RawTile {
    static constexpr int ROWS = TH + 2 * HY;
    static constexpr int GROUPS = ROWS * GROUPS_X;                          // 16-byte groups
    static constexpr int LOADS = (GROUPS + ISP_THREADS - 1) / ISP_THREADS;  // per thread
};

// What normalising a tile reads, in shared memory, written by thread 0 (isp_norm_setup):
// m = clip(v * a + b) with a = scale * gain, b = -black * a, for the two colours of a row,
// norm[row parity] = {a even column, a odd column, b even column, b odd column}; the lens
// shading constants; the tile's first RAW column.
struct IspNorm {
    gt_f32x4 norm[2];
    float shade[6];  // lens shading: k1, k2, 1 / (cx^2 + cy^2), on, 0.5 - cx, 0.5 - cy
    float black;     // the black level, for the general path's (v - black) a
    int halo_x0;     // x0 - 8
    int zero;        // 0, read in isp_main's tile loop (isp_main_strip)
};

// Thread 0 of a block (the grey-world gains take double divisions: once per block).
__device__ __forceinline__ void isp_norm_setup(IspNorm& n, const float* __restrict__ cfg,
                                               const unsigned long long* __restrict__ awb,
                                               int rx, int ry, int w, int h) {
    float gain_r, gain_g, gain_b;
    isp_gains(cfg, awb, gain_r, gain_g, gain_b);
    const float black = cfg[CFG_BLACK], scale = cfg[CFG_SCALE];
#pragma unroll
    for (int py = 0; py < 2; ++py) {
        float a[2];
#pragma unroll
        for (int px = 0; px < 2; ++px) {
            const int kind = (((py ^ ry) & 1) << 1) | ((px ^ rx) & 1);
            a[px] = scale * (kind == 0 ? gain_r : (kind == 3 ? gain_b : gain_g));
        }
        n.norm[py] = gt_f32x4{a[0], a[1], -black * a[0], -black * a[1]};
    }
    const float k1 = cfg[CFG_K1], k2 = cfg[CFG_K2];
    const float cx = 0.5f * (float)w, cy = 0.5f * (float)h;
    n.shade[0] = k1;
    n.shade[1] = k2;
    n.shade[2] = 1.0f / (cx * cx + cy * cy);
    // The fused v a + b loses the bits of b = -black a that m keeps: 0.5 ulp(black a) of error,
    // 27 12-bit codes at 16 bits with black 65534, white 65535. Past black a = 1 (black near
    // white, or a gain beyond ~8 at the usual black levels) the general path subtracts first.
    const float amax = scale * fmaxf(fmaxf(gain_r, gain_g), gain_b);
    n.shade[3] = (k1 != 0.0f || k2 != 0.0f || black * amax > 1.0f) ? 1.0f : 0.0f;
    n.black = black;
    n.shade[4] = 0.5f - cx;
    n.shade[5] = 0.5f - cy;
    n.halo_x0 = (int)blockIdx.x * TILE_W - 8;
    n.zero = 0;
}

// The border of a RAW tile with HY halo rows: isp_main (HY = 2) reads 2 pixels past a cell,
// which every frame the pipeline takes (4x4 and up, pipeline.check_raw) mirrors within one
// reflection, so the cheaper form is exact for every pixel it reads (its halo's outer columns
// are loaded and never read); isp_main_dir reads up to 6 pixels out, beyond one reflection of
// a 4-pixel-wide frame, where a mirrored pixel must keep its colour.
template <int HY>
__device__ __forceinline__ int isp_mirror(int i, int n) {
    if constexpr (HY <= 2)
        return gt_reflect101_near(i, n);
    else
        return gt_reflect101(i, n);
}

// RAW group gi of the tile at row y0: tile row tr, group column tg, frame row y (mirrored).
// Recomputed where needed rather than kept: registers are the scarce resource.
struct IspGroup {
    int tr, tg, y;
};
template <int HY>
__device__ __forceinline__ IspGroup isp_group(int gi, int y0, int h) {
    const int tr = (int)((unsigned int)gi / GROUPS_X);  // unsigned: one instruction fewer
    return IspGroup{tr, gi - tr * GROUPS_X, isp_mirror<HY>(y0 - HY + tr, h)};
}

// Issue the loads of tile (x0, y0) with its halo; element j of `v` is group g0 + tid + j *
// ISP_THREADS (g0: the first group wanted, 0 for the whole tile), 8 pixels as four 32-bit
// words. Mirrored (reflect-101) outside the frame. The
// words stay packed until isp_store_tile: unpacking them here made every warp wait for its
// prefetch at once (measured: the first use of the load right after it was isp_main's hottest
// stall).
template <int HY, int TH = TILE_H>
__device__ __forceinline__ void isp_fetch(gt_u32x4 (&v)[RawTile<HY, TH>::LOADS],
                                          const unsigned short* __restrict__ raw, int w, int h,
                                          int x0, int y0, int tid, int g0 = 0) {
    const bool vec_rows = (w & 7) == 0;  // every row starts 16-byte aligned
#pragma unroll
    for (int j = 0; j < RawTile<HY, TH>::LOADS; ++j) {
        const int gi = g0 + tid + j * ISP_THREADS;
        if (gi >= RawTile<HY, TH>::GROUPS) break;
        const IspGroup g = isp_group<HY>(gi, y0, h);
        const int gx = x0 - 8 + 8 * g.tg;
        const unsigned short* src = raw + (long long)g.y * w;
        if (vec_rows && gx >= 0 && gx + 7 < w) {
            v[j] = *reinterpret_cast<const gt_u32x4*>(src + gx);
        } else {
            unsigned int q[4];
#pragma unroll
            for (int k = 0; k < 4; ++k)
                q[k] = (unsigned int)src[isp_mirror<HY>(gx + 2 * k, w)] |
                       ((unsigned int)src[isp_mirror<HY>(gx + 2 * k + 1, w)] << 16);
            v[j] = gt_u32x4{q[0], q[1], q[2], q[3]};
        }
    }
}

// Normalise the fetched groups into the float tile: black level, range, white balance, lens
// shading, clip. Reflect-101 keeps the parity of an index, so a group's colours follow from
// its row and the position within the group.
template <int HY, int TH = TILE_H>
__device__ __forceinline__ void isp_store_tile(gt_f32x2 (*tile)[SM_P], const IspNorm& n,
                                               const gt_u32x4 (&v)[RawTile<HY, TH>::LOADS], int w,
                                               int h, int y0, int tid, int g0 = 0) {
    const float* shade = n.shade;
#pragma unroll
    for (int j = 0; j < RawTile<HY, TH>::LOADS; ++j) {
        const int gi = g0 + tid + j * ISP_THREADS;
        if (gi >= RawTile<HY, TH>::GROUPS) break;
        const IspGroup g = isp_group<HY>(gi, y0, h);
        // The row's colours from its unmirrored index: isp_mirror keeps the parity of every row
        // that is read (the mirror of the others is only loaded). x: a even, y: a odd, z: b
        // even, w: b odd column.
        const gt_f32x4 nr = n.norm[(y0 - HY + g.tr) & 1];
        const unsigned int words[4] = {v[j].a, v[j].b, v[j].c, v[j].d};
        // The RAW values as float: the even pixels (low halves) through the conversion unit,
        // one I2F.U16 each; the odd ones through the float mantissa (gt_u2f: a shift-or and
        // an add). Half the conversions each way keeps the quarter-rate conversion unit from
        // becoming the limit in this phase.
        float v[8];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            v[2 * k] = (float)(words[k] & 0xffffu);
            v[2 * k + 1] = gt_u2f(words[k] >> 16);
        }
        float f[8];
        if (shade[3] == 0.0f) {  // the common case: the clip folded into the FMA
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                f[2 * k] = gt_fma_sat(v[2 * k], nr.x, nr.z);
                f[2 * k + 1] = gt_fma_sat(v[2 * k + 1], nr.y, nr.w);
            }
        } else {
            // Lens shading reads its constants and the tile's column origin from shared
            // memory where it runs: computed once for the strip, the columns' distances stayed
            // in registers across isp_main's tile loop (spilled, at the occupancy it runs at).
            const float k1 = shade[0], k2 = shade[1], inv_d2 = shade[2];
            const float dy = (float)g.y + shade[5];
            const int gx = n.halo_x0 + 8 * g.tg;
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                const int x = isp_mirror<HY>(gx + k, w);
                const float dx = (float)x + shade[4];
                const float r2 = (dx * dx + dy * dy) * inv_d2;
                const float m = (v[k] - n.black) * ((k & 1) ? nr.y : nr.x);  // v - black exact
                f[k] = gt_clamp01(m * (1.0f + k1 * r2 + k2 * r2 * r2));
            }
        }
        gt_f32x4* row = reinterpret_cast<gt_f32x4*>(&tile[g.tr][4 * g.tg]);  // 16-byte stores
        row[0] = gt_f32x4{f[0], f[1], f[2], f[3]};
        row[1] = gt_f32x4{f[4], f[5], f[6], f[7]};
    }
}

// The shared-memory pieces of isp_main.
#define MAIN_HY 2  // halo rows of isp_main's tile: y0-2 .. y0+MAIN_TILE_H+1
#define MAIN_SM_H (MAIN_TILE_H + 2 * MAIN_HY)  // 36 rows with two cells per thread, 20 with one
using MainTile = RawTile<MAIN_HY, MAIN_TILE_H>;
static_assert(MainTile::ROWS == MAIN_SM_H, "isp_main's tile is MAIN_SM_H rows");
struct IspMainBuffers {  // one tile's: two of them, the tile step alternating
    alignas(16) gt_f32x2 tile[MAIN_SM_H][SM_P];  // 16-byte stores of normalised groups
    gt_u32x4 stage_rgb[STAGE_RGB_N(MAIN_TILE_H)];
    gt_u32x4 stage_y[STAGE_Y_N(MAIN_TILE_H)];
    gt_u32x4 stage_uv[STAGE_UV_N(MAIN_TILE_H)];
};
struct IspMainShared {
    IspMainBuffers buf[2];
    float ccm[9];
    IspNorm n;
};

// The rows two tiles of a strip share: the next tile's top halo (rows 0 .. 2 HY - 1) is this
// tile's bottom rows (MAIN_TILE_H ..), so only the rest is fetched and normalised again; the
// shared rows are copied in shared memory, 16 bytes a thread, by the last threads of the block
// (those with a group fewer to normalise: none at all with one cell per thread).
#define MAIN_HALO_GROUPS (2 * MAIN_HY * GROUPS_X)     // 40 RAW groups
#define MAIN_HALO_UNITS (2 * MAIN_HY * SM_P / 2)      // 80 16-byte units
static_assert((MainTile::GROUPS - MAIN_HALO_GROUPS) % ISP_THREADS <= ISP_THREADS - MAIN_HALO_UNITS,
              "the threads that copy the shared rows normalise a group fewer");
__device__ __forceinline__ void isp_copy_halo(gt_f32x2 (*dst)[SM_P],
                                              const gt_f32x2 (*src)[SM_P], int tid) {
    const int i = tid - (ISP_THREADS - MAIN_HALO_UNITS);
    if (i >= 0)
        reinterpret_cast<gt_f32x4*>(&dst[0][0])[i] =
            reinterpret_cast<const gt_f32x4*>(&src[MAIN_TILE_H][0])[i];
}

// Colour matrix, clip and 8-bit tone of one pixel of a cell; the float output too when
// FLOAT_OUT (interpolated LUT). The matrix is read from shared memory where it is used: nine
// more live registers cost more than the loads.
template <bool FLOAT_OUT>
__device__ __forceinline__ void isp_tone_px(float r, float g, float b, const float* ccm,
                                            const unsigned char* tone8,
                                            const float* __restrict__ lut, int lut_n,
                                            float* __restrict__ of, unsigned int (&v8)[3]) {
    float lin[3];  // the clip folded into the last FMA
#pragma unroll
    for (int c = 0; c < 3; ++c)
        lin[c] = gt_fma_sat(ccm[3 * c + 2], b, fmaf(ccm[3 * c + 1], g, ccm[3 * c] * r));
#pragma unroll
    for (int c = 0; c < 3; ++c) v8[c] = gt_lookup_rint(tone8, lin[c], TONE8_N - 1);
    if constexpr (FLOAT_OUT) {
#pragma unroll
        for (int c = 0; c < 3; ++c) of[c] = tone_lut(lut, lut_n, lin[c]);
    }
}

// NV12 luma of one 8-bit pixel (low 8 bits), and its share of the cell's chroma sums.
__device__ __forceinline__ unsigned int isp_luma(const unsigned int (&v8)[3],
                                                 unsigned int (&sum)[3]) {
    sum[0] += v8[0];
    sum[1] += v8[1];
    sum[2] += v8[2];
    return isp_luma8(v8[0], v8[1], v8[2]);
}

// Stage one row of a cell: its two 8-bit pixels as three 2-byte stores at `orgb` (6 bytes at
// an even offset of a staging row, or of the image row itself), with their NV12 luma as one
// 2-byte store at `oy` and their share of the cell's chroma sums when asked.
__device__ __forceinline__ void isp_stage_pair(const unsigned int (&a8)[3],
                                               const unsigned int (&b8)[3],
                                               unsigned char* __restrict__ orgb,
                                               unsigned char* __restrict__ oy, bool nv12,
                                               unsigned int (&sum)[3]) {
    unsigned short* o = reinterpret_cast<unsigned short*>(orgb);
    o[0] = (unsigned short)(a8[0] | (a8[1] << 8));
    o[1] = (unsigned short)(a8[2] | (b8[0] << 8));
    o[2] = (unsigned short)(b8[1] | (b8[2] << 8));
    if (nv12) {  // video from the 8-bit image, as an encoder fed RGB8 would have it
        const unsigned int ya = isp_luma(a8, sum), yb = isp_luma(b8, sum);
        reinterpret_cast<unsigned short*>(oy)[0] = (unsigned short)(ya | (yb << 8));
    }
}

// Where cell (qx, qy), pixels (X, Y) .. (X + 1, Y + 1), puts its 8-bit bytes: the images
// themselves with ISP_DIRECT_STORE, else the tile's staging (rows TILE_W pixels apart). Row DY
// of the cell starts at rgb + DY rgb_row and y + DY y_row. (isp_main and isp_main_dir.)
struct IspCellOut {
    unsigned char *rgb, *y;
    int rgb_row, y_row;
};
__device__ __forceinline__ IspCellOut isp_cell_out(unsigned char* __restrict__ rgb8,
                                                   unsigned char* __restrict__ nv12,
                                                   gt_u32x4* stage_rgb, gt_u32x4* stage_y,
                                                   int qx, int qy, int X, int Y, int w) {
    if constexpr (ISP_DIRECT_STORE) {
        const long long px = (long long)Y * w + X;
        return IspCellOut{rgb8 + 3 * px, nv12 ? nv12 + px : nullptr, 3 * w, w};
    } else {
        unsigned char* srgb = reinterpret_cast<unsigned char*>(stage_rgb);
        unsigned char* sy = reinterpret_cast<unsigned char*>(stage_y);
        return IspCellOut{srgb + 2 * qy * (TILE_W * 3) + 6 * qx, sy + 2 * qy * TILE_W + 2 * qx,
                          TILE_W * 3, TILE_W};
    }
}
// ... and its chroma pair (asked for after the rows: one pointer fewer held through them).
__device__ __forceinline__ unsigned char* isp_cell_uv(unsigned char* __restrict__ nv12,
                                                      gt_u32x4* stage_uv, int qx, int qy, int X,
                                                      int Y, int w, int h) {
    if constexpr (ISP_DIRECT_STORE)
        return nv12 + (long long)w * h + (long long)(Y / 2) * w + X;
    else
        return reinterpret_cast<unsigned char*>(stage_uv) + qy * TILE_W + 2 * qx;
}

// One row (dy) of a cell: its two pixels demosaicked, toned and staged (or stored: see
// ISP_DIRECT_STORE).
template <int DY, int KA, int KB_, bool FLOAT_OUT>
__device__ __forceinline__ void isp_cell_row(const float (&win)[6][6], float corr8,
                                             const float* ccm, const unsigned char* tone8,
                                             const float* __restrict__ lut, int lut_n,
                                             int X, int Y, int w, const IspCellOut& out,
                                             float* __restrict__ rgbf, bool nv12,
                                             unsigned int (&sum)[3]) {
    float r, g, b;
    unsigned int a8[3], b8[3];
    float* of = FLOAT_OUT ? rgbf + ((long long)(Y + DY) * w + X) * 3 : nullptr;
    demosaic_site<2 + DY, 2, KA>(win, corr8, r, g, b);
    isp_tone_px<FLOAT_OUT>(r, g, b, ccm, tone8, lut, lut_n, of, a8);
    demosaic_site<2 + DY, 3, KB_>(win, corr8, r, g, b);
    isp_tone_px<FLOAT_OUT>(r, g, b, ccm, tone8, lut, lut_n, FLOAT_OUT ? of + 3 : nullptr, b8);
    isp_stage_pair(a8, b8, out.rgb + DY * out.rgb_row, out.y + DY * out.y_row, nv12, sum);
}

// Schedule of isp_main: a block walks down a strip of ISP_STRIP tiles, with one barrier per
// tile step. Two sets of buffers (tile and staging) alternate: while the block demosaics the
// current tile into its staging, it also writes out the previous tile's staged bytes and
// fills the other tile buffer with the next tile (its top halo rows copied from this tile's
// bottom ones, the rest normalised from RAW loaded into registers one step earlier), then
// loads the RAW of the tile after. So memory and arithmetic overlap, nothing waits for a
// second barrier, and each RAW row is fetched and normalised once per strip but for the first
// tile's halo. The 8-bit tone table, the colour matrix and the normalisation factors
// (white-balance gains included, computed once per block) sit in shared memory: registers are
// what limits the blocks per multiprocessor.
// The Bayer phase (RX, RY) is a template parameter: each of the four pixels of a cell is then a
// site known at compile time (a run-time colour per pixel cost a branch tree per pixel).
template <int RX, int RY, bool FLOAT_OUT>
__device__ __forceinline__ void isp_main_strip(IspMainShared& sm, const unsigned char* tone8,
                                               const unsigned short* __restrict__ raw, int w,
                                               int h, float corr8,
                                               const float* __restrict__ lut, int lut_n,
                                               unsigned char* __restrict__ rgb8,
                                               float* __restrict__ rgbf,
                                               unsigned char* __restrict__ nv12) {
    constexpr int K00 = cell_site<RX, RY, 0, 0>, K01 = cell_site<RX, RY, 1, 0>;
    constexpr int K10 = cell_site<RX, RY, 0, 1>, K11 = cell_site<RX, RY, 1, 1>;
    constexpr int TH = MAIN_TILE_H;
    const int tid = threadIdx.y * ISP_BX + threadIdx.x;
    const int qx = threadIdx.x;
    const int x0 = blockIdx.x * TILE_W;
    const int y_first = blockIdx.y * (ISP_STRIP * TH);
    const int y_end = gt_imin(h, y_first + ISP_STRIP * TH);
    gt_u32x4 next[MainTile::LOADS];
    // The first tile whole, and the new rows of the second.
    isp_fetch<MAIN_HY, TH>(next, raw, w, h, x0, y_first, tid);
    isp_store_tile<MAIN_HY, TH>(sm.buf[0].tile, sm.n, next, w, h, y_first, tid);
    if (y_first + TH < y_end)
        isp_fetch<MAIN_HY, TH>(next, raw, w, h, x0, y_first + TH, tid, MAIN_HALO_GROUPS);
    __syncthreads();
    int y0 = y_first, cur = 0;
    for (; y0 < y_end; y0 += TH, cur ^= 1) {
        // The thread index as the compiler cannot know it across tile steps (plus a zero read
        // from shared memory after a barrier): every index derived from it is recomputed per
        // step instead of hoisted out of the loop and held, which took isp_main from 64 to
        // over 128 registers (spilling at 80). Inline asm would do it, but not on emu.
        const int t = tid + sm.n.zero;
        IspMainBuffers& b = sm.buf[cur];       // this tile's
        IspMainBuffers& o = sm.buf[cur ^ 1];  // the previous tile's staging, the next tile

        // ---- 1. demosaic, colour, tone: ISP_CELLS 2x2 cells per thread, stacked down -------
#pragma unroll
        for (int c = 0; c < ISP_CELLS; ++c) {
            const int qy = ISP_CELLS * (int)threadIdx.y + c;
            const int X = x0 + 2 * qx, Y = y0 + 2 * qy;
            if (X < w && Y < h) {
                // The cell's window, pixels X-2..X+3 of rows Y-2..Y+3, once for both rows (the
                // outer rows only at X, X+1: the only columns read there).
                float win[6][6];
#pragma unroll
                for (int r = 0; r < 6; ++r) {
#pragma unroll
                    for (int p = 0; p < 3; ++p) {
                        if ((r == 0 || r == 5) && p != 1) continue;
                        const gt_f32x2 v = b.tile[2 * qy + r][qx + 3 + p];  // column X - 2 on
                        win[r][2 * p] = v.x;
                        win[r][2 * p + 1] = v.y;
                    }
                }
                unsigned int sum[3] = {0u, 0u, 0u};
                const IspCellOut out =
                    isp_cell_out(rgb8, nv12, b.stage_rgb, b.stage_y, qx, qy, X, Y, w);
                isp_cell_row<0, K00, K01, FLOAT_OUT>(win, corr8, sm.ccm, tone8, lut, lut_n, X, Y,
                                                     w, out, rgbf, nv12 != nullptr, sum);
                isp_cell_row<1, K10, K11, FLOAT_OUT>(win, corr8, sm.ccm, tone8, lut, lut_n, X, Y,
                                                     w, out, rgbf, nv12 != nullptr, sum);
                if (nv12 != nullptr)
                    isp_finish_uv(isp_cell_uv(nv12, b.stage_uv, qx, qy, X, Y, w, h), sum[0],
                                  sum[1], sum[2]);
            }
        }

        // ---- 2. the previous tile's staged bytes out --------------------------------------
        if (!ISP_DIRECT_STORE && y0 != y_first)
            isp_write_tile<TH>(o.stage_rgb, o.stage_y, o.stage_uv, w, h, x0, y0 - TH, t, rgb8,
                               nv12);

        // ---- 3. the next tile into the other buffer; the RAW of the one after -------------
        if (y0 + TH < y_end) {
            isp_copy_halo(o.tile, b.tile, t);
            isp_store_tile<MAIN_HY, TH>(o.tile, sm.n, next, w, h, y0 + TH, t, MAIN_HALO_GROUPS);
            if (y0 + 2 * TH < y_end)
                isp_fetch<MAIN_HY, TH>(next, raw, w, h, x0, y0 + 2 * TH, t, MAIN_HALO_GROUPS);
        }
        __syncthreads();
    }
    // The last tile's bytes (staged in the buffer set of the step before the loop ended).
    const IspMainBuffers& last = sm.buf[cur ^ 1];
    if (!ISP_DIRECT_STORE)
        isp_write_tile<TH>(last.stage_rgb, last.stage_y, last.stage_uv, w, h, x0, y0 - TH, tid,
                           rgb8, nv12);
}

// The block's setup, then its strip with the Bayer phase as a template argument.
template <bool FLOAT_OUT>
__device__ __forceinline__ void isp_main_block(const unsigned short* __restrict__ raw, int w,
                                               int h, int rx, int ry, int method,
                                               const float* __restrict__ cfg,
                                               const unsigned long long* __restrict__ awb,
                                               const float* __restrict__ lut, int lut_n,
                                               const unsigned char* __restrict__ lut8,
                                               unsigned char* __restrict__ rgb8,
                                               float* __restrict__ rgbf,
                                               unsigned char* __restrict__ nv12) {
    __shared__ IspMainShared sm;
    // The tone table is a __shared__ variable of its own, not a member of `sm`: its lookups then
    // address as [code + the block's shared base in a uniform register], with no add per
    // lookup; as a member, ptxas kept that base in a vector register and added it to each code.
    __shared__ gt_u32x4 tone8_table[TONE8_N / 16];
    const unsigned char* tone8 = reinterpret_cast<const unsigned char*>(tone8_table);
    const int tid = threadIdx.y * ISP_BX + threadIdx.x;
    isp_stage_tone8(reinterpret_cast<unsigned char*>(tone8_table), lut8, tid);
    if (tid < 9) sm.ccm[tid] = cfg[CFG_CCM + tid];
    if (tid == 0) isp_norm_setup(sm.n, cfg, awb, rx & 1, ry & 1, w, h);
    __syncthreads();  // the first tile's normalisation reads sm.n
    const float corr8 = method == DEMOSAIC_MHC ? 0.125f : 0.0f;
    switch (((ry & 1) << 1) | (rx & 1)) {  // uniform: one branch per block
        case 0:
            isp_main_strip<0, 0, FLOAT_OUT>(sm, tone8, raw, w, h, corr8, lut, lut_n, rgb8, rgbf,
                                              nv12);
            break;
        case 1:
            isp_main_strip<1, 0, FLOAT_OUT>(sm, tone8, raw, w, h, corr8, lut, lut_n, rgb8, rgbf,
                                              nv12);
            break;
        case 2:
            isp_main_strip<0, 1, FLOAT_OUT>(sm, tone8, raw, w, h, corr8, lut, lut_n, rgb8, rgbf,
                                              nv12);
            break;
        default:
            isp_main_strip<1, 1, FLOAT_OUT>(sm, tone8, raw, w, h, corr8, lut, lut_n, rgb8, rgbf,
                                              nv12);
            break;
    }
}

// RAW -> RGB8 [+ NV12].
extern "C" __global__ void __launch_bounds__(ISP_THREADS, ISP_MIN_BLOCKS) isp_main(
    const unsigned short* __restrict__ raw, int w, int h, int rx, int ry, int method,
    const float* __restrict__ cfg, const unsigned long long* __restrict__ awb,
    const unsigned char* __restrict__ lut8, unsigned char* __restrict__ rgb8,
    unsigned char* __restrict__ nv12) {
    isp_main_block<false>(raw, w, h, rx, ry, method, cfg, awb, nullptr, 0, lut8, rgb8, nullptr,
                          nv12);
}

// The same, with the float image as well (the tone LUT interpolated; `.npy` output): its own
// kernel, because the float path needs more registers than isp_main's occupancy leaves.
extern "C" __global__ void __launch_bounds__(ISP_THREADS, 2) isp_main_float(
    const unsigned short* __restrict__ raw, int w, int h, int rx, int ry, int method,
    const float* __restrict__ cfg, const unsigned long long* __restrict__ awb,
    const float* __restrict__ lut, int lut_n, const unsigned char* __restrict__ lut8,
    unsigned char* __restrict__ rgb8, float* __restrict__ rgbf, unsigned char* __restrict__ nv12) {
    isp_main_block<true>(raw, w, h, rx, ry, method, cfg, awb, lut, lut_n, lut8, rgb8, rgbf, nv12);
}

// ---- isp_main_dir: directional demosaicing --------------------------------------------------
// The same chain with the edge-directed method of reference.demosaic_directional. It needs a
// wider neighbourhood (green at a pixel reads 4 pixels along its row and column, red/blue read
// the green of the diagonal neighbours), so it works in stages through shared memory:
//   A. RAW tile with a 5-row, 8-column halo, normalised (as isp_main);
//   B. planes C_H (rows y0-1..y0+16, cols x0-3..x0+66; two more are computed) and C_V (rows
//      y0-3..y0+18, cols x0-1..x0+64): colour minus its Hamilton-Adams directional estimate
//      at every pixel;
//   C. at each red/blue pixel of rows y0-1..y0+16, cols x0-1..x0+64: K = c - G, the two
//      directions blended by inverse squared variation of C_H along the row and C_V along
//      the column;
//   D. one 2x2 cell per thread: red/blue from the K of their sites, then colour and tone.
// The staging buffers of the 8-bit outputs reuse the C_H/C_V space (dead after stage C).
#define DIR_HY 5
#define DIR_HX 8
#define DIR_RW (TILE_W + 2 * DIR_HX)  // 80 raw columns
#define DIR_RH (TILE_H + 2 * DIR_HY)  // 26 raw rows
#define DIR_KW (TILE_W + 2)           // 66: K and C_V columns
#define DIR_KH (TILE_H + 2)           // 18: K and C_H rows
#define DIR_CHW (TILE_W + 8)          // 72: C_H columns (70 read; runs of 8)
#define DIR_CVH (TILE_H + 6)          // 22: C_V rows
#define DIR_EPS 1e-4f                 // reference.DIR_EPS

// Hamilton-Adams estimate along one line through c, est = (m1 + p1) / 2 + (2 c - m2 - p2) / 4,
// as colour minus green: c - est at red/blue sites, est - c at green sites. With half_sign =
// +1/2 or -1/2 for the two: half_sign (c - (m1 + p1) + (m2 + p2) / 2), the sign folded into
// the factors (five instructions; a select between c - est and est - c cost two more).
__device__ __forceinline__ float dir_cd(float m2, float m1, float c, float p1, float p2,
                                        float half_sign) {
    return fmaf(0.5f * half_sign, m2 + p2, fmaf(-half_sign, m1 + p1, half_sign * c));
}

// One pixel of cell window k (K at rows Y-1..Y+2, cols X-1..X+2; centre (CY, CX)) of a site
// known at compile time (KIND as in demosaic_site); c is its RAW value.
template <int CY, int CX, int KIND>
__device__ __forceinline__ void dir_site(const float (&k)[4][4], float c, float& r, float& g,
                                         float& b) {
    if constexpr (KIND == 0 || KIND == 3) {
        const float diag = 0.25f * (((k[CY - 1][CX - 1] + k[CY - 1][CX + 1]) + k[CY + 1][CX - 1]) +
                                    k[CY + 1][CX + 1]);
        g = c - k[CY][CX];
        r = KIND == 0 ? c : g + diag;
        b = KIND == 0 ? g + diag : c;
    } else {
        const float row = 0.5f * (k[CY][CX - 1] + k[CY][CX + 1]);
        const float col = 0.5f * (k[CY - 1][CX] + k[CY + 1][CX]);
        g = c;
        r = c + (KIND == 1 ? row : col);
        b = c + (KIND == 1 ? col : row);
    }
}

// Stage D for one row (DY) of a cell: its two pixels from K and their RAW values, toned and
// staged as in isp_main.
template <int DY, int KA, int KB_, bool FLOAT_OUT>
__device__ __forceinline__ void dir_cell_row(const float (&k)[4][4], const float* a,
                                             const float* ccm, const unsigned char* tone8,
                                             const float* __restrict__ lut, int lut_n, int qx,
                                             int qy, int X, int Y, int w, const IspCellOut& out,
                                             float* __restrict__ rgbf, bool nv12,
                                             unsigned int (&sum)[3]) {
    const float* raw_row = a + (2 * qy + DY + DIR_HY) * DIR_RW + 2 * qx + DIR_HX;
    float* of = FLOAT_OUT ? rgbf + ((long long)(Y + DY) * w + X) * 3 : nullptr;
    float r, g, b;
    unsigned int a8[3], b8[3];
    dir_site<1 + DY, 1, KA>(k, raw_row[0], r, g, b);
    isp_tone_px<FLOAT_OUT>(r, g, b, ccm, tone8, lut, lut_n, of, a8);
    dir_site<1 + DY, 2, KB_>(k, raw_row[1], r, g, b);
    isp_tone_px<FLOAT_OUT>(r, g, b, ccm, tone8, lut, lut_n, FLOAT_OUT ? of + 3 : nullptr, b8);
    isp_stage_pair(a8, b8, out.rgb + DY * out.rgb_row, out.y + DY * out.y_row, nv12, sum);
}

// The shared memory of isp_main_dir, declared once in the kernel (a template body declaring
// its own would have one copy per instantiation).
struct DirShared {
    gt_f32x2 (*tile)[SM_P];  // the normalised RAW, DIR_RH rows (RawTile<DIR_HY>)
    const IspNorm* n;        // what normalising it reads
    unsigned char* tone8;    // the 8-bit tone table
    float* ccm;              // the colour matrix (read where used, as in isp_main)
    float* kd;               // K, DIR_KH x DIR_KW
    gt_u32x4* pool;          // C_H and C_V, then the staging buffers
};
static_assert(DIR_RW == SM_W && DIR_HX == 8 && RawTile<DIR_HY>::ROWS == DIR_RH,
              "isp_main_dir's RAW tile is a RawTile<DIR_HY>");

// Stages A-D for a Bayer phase (RX, RY) known at compile time.
template <int RX, int RY, bool FLOAT_OUT>
__device__ __forceinline__ void isp_dir_body(const DirShared& sh,
                                             const unsigned short* __restrict__ raw, int w, int h,
                                             const float* __restrict__ lut, int lut_n,
                                             unsigned char* __restrict__ rgb8,
                                             float* __restrict__ rgbf,
                                             unsigned char* __restrict__ nv12) {
    constexpr int K00 = cell_site<RX, RY, 0, 0>, K01 = cell_site<RX, RY, 1, 0>;
    constexpr int K10 = cell_site<RX, RY, 0, 1>, K11 = cell_site<RX, RY, 1, 1>;
    float* chp = reinterpret_cast<float*>(sh.pool);
    float* cvp = chp + DIR_KH * DIR_CHW;
    float* kd = sh.kd;
    const float* a = &sh.tile[0][0].x;  // raw pixel (y0-5+i, x0-8+j)

    const int tid = threadIdx.y * ISP_BX + threadIdx.x;
    const int x0 = blockIdx.x * TILE_W;
    const int y0 = blockIdx.y * TILE_H;

    // ---- A. load + normalise (as isp_main) ------------------------------------------------
    {
        gt_u32x4 v[RawTile<DIR_HY>::LOADS];
        isp_fetch<DIR_HY>(v, raw, w, h, x0, y0, tid);
        isp_store_tile<DIR_HY>(sh.tile, *sh.n, v, w, h, y0, tid);
    }
    __syncthreads();

    // ---- B. directional colour differences ------------------------------------------------
    // In runs, so that neighbouring entries share their loads and index arithmetic (one entry
    // per loop step cost ~36 instructions, 41 % of the kernel's on an H200): C_H in runs of 8
    // along a row (18 rows x 9 runs; each row's last two entries are not read), four 16-byte
    // loads and two 16-byte stores a run; C_V in runs of 11 down a column (66 columns x 2) by
    // the last 132 threads, so that the two kinds of run fall mostly on different warps.
    constexpr int CH_RUNS = DIR_CHW / 8;
    static_assert(DIR_CHW % 8 == 0 && DIR_KH * CH_RUNS <= ISP_THREADS, "a C_H run per thread");
    static_assert(DIR_CVH % 2 == 0 && 2 * DIR_KW <= ISP_THREADS, "a C_V run per thread");
    if (tid < DIR_KH * CH_RUNS) {
        const int py = tid / CH_RUNS, px0 = 8 * (tid - py * CH_RUNS);
        // raw columns px0 .. px0 + 15 of tile row py + 4; entry px0 + k is centred on v[k + 5]
        const gt_f32x4* src = reinterpret_cast<const gt_f32x4*>(a + (py + 4) * DIR_RW + px0);
        float v[16];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const gt_f32x4 f = src[q];
            v[4 * q] = f.x, v[4 * q + 1] = f.y, v[4 * q + 2] = f.z, v[4 * q + 3] = f.w;
        }
        const bool green0 = (((x0 - 3 + px0) ^ RX ^ (y0 - 1 + py) ^ RY) & 1) != 0;
        const float hs = green0 ? -0.5f : 0.5f;  // entry 0's half sign; they alternate
        float o[8];
#pragma unroll
        for (int k = 0; k < 8; ++k)
            o[k] = dir_cd(v[k + 3], v[k + 4], v[k + 5], v[k + 6], v[k + 7], (k & 1) ? -hs : hs);
        gt_f32x4* dst = reinterpret_cast<gt_f32x4*>(chp + py * DIR_CHW + px0);
        dst[0] = gt_f32x4{o[0], o[1], o[2], o[3]};
        dst[1] = gt_f32x4{o[4], o[5], o[6], o[7]};
    }
    constexpr int CV_RUN = DIR_CVH / 2;
    const int tv = ISP_THREADS - 1 - tid;
    if (tv < 2 * DIR_KW) {
        const int run = tv / DIR_KW, px = tv - run * DIR_KW, py0 = run * CV_RUN;
        // raw rows py0 .. py0 + CV_RUN + 3 of tile column px + 7; entry py0 + k on v[k + 2]
        const float* src = a + py0 * DIR_RW + (px + 7);
        float v[CV_RUN + 4];
#pragma unroll
        for (int i = 0; i < CV_RUN + 4; ++i) v[i] = src[i * DIR_RW];
        const bool green0 = (((x0 - 1 + px) ^ RX ^ (y0 - 3 + py0) ^ RY) & 1) != 0;
        const float hs = green0 ? -0.5f : 0.5f;
#pragma unroll
        for (int k = 0; k < CV_RUN; ++k)
            cvp[(py0 + k) * DIR_KW + px] =
                dir_cd(v[k], v[k + 1], v[k + 2], v[k + 3], v[k + 4], (k & 1) ? -hs : hs);
    }
    __syncthreads();

    // ---- C. K = c - G at the red and blue pixels -----------------------------------------
    // In runs of 3 sites along a row (18 rows x 11 runs, one per thread), which share their
    // C_H loads and differences; the arithmetic of each site as the reference orders it.
    constexpr int K_SITES = DIR_KW / 2;  // red/blue sites per row
    constexpr int K_RUN = 3, K_RUNS = K_SITES / K_RUN;
    static_assert(K_SITES % K_RUN == 0 && DIR_KH * K_RUNS <= ISP_THREADS, "a K run per thread");
    if (tid < DIR_KH * K_RUNS) {
        const int ky = tid / K_RUNS, run = tid - ky * K_RUNS;
        const int y = y0 - 1 + ky;
        // the run's first red/blue column of this row; its sites are 2 apart
        const int kx0 = 2 * K_RUN * run + 1 - ((RX ^ RY ^ y) & 1);
        const float* hp = chp + ky * DIR_CHW + kx0;  // C_H at x-2 .. of the first site
        float hd[2 * K_RUN + 2];                     // |C_H steps| along the run
        float h[2 * K_RUN + 3];
#pragma unroll
        for (int q = 0; q < 2 * K_RUN + 3; ++q) h[q] = hp[q];
#pragma unroll
        for (int q = 0; q < 2 * K_RUN + 2; ++q) hd[q] = fabsf(h[q + 1] - h[q]);
#pragma unroll
        for (int s = 0; s < K_RUN; ++s) {
            const int kx = kx0 + 2 * s;
            const float* vp = cvp + ky * DIR_KW + kx;  // C_V at y-2 .. y+2
            const float v0 = vp[0], v1 = vp[DIR_KW], v2 = vp[2 * DIR_KW], v3 = vp[3 * DIR_KW],
                        v4 = vp[4 * DIR_KW];
            const float h2 = h[2 * s + 2];
            const float dh = ((hd[2 * s] + hd[2 * s + 1]) + hd[2 * s + 2]) + hd[2 * s + 3];
            const float dv =
                ((fabsf(v1 - v0) + fabsf(v2 - v1)) + fabsf(v3 - v2)) + fabsf(v4 - v3);
            const float wh = (dv + DIR_EPS) * (dv + DIR_EPS);
            const float wv = (dh + DIR_EPS) * (dh + DIR_EPS);
            // The fast division: the weights are positive and far from overflow, and its
            // ~2 ulp are far below what the 8-bit output resolves.
            kd[ky * DIR_KW + kx] = __fdividef(wh * h2 + wv * v2, wh + wv);
        }
    }
    __syncthreads();

    // ---- D. red and blue, colour, tone: one 2x2 cell per thread ---------------------------
    gt_u32x4* stage_rgb = sh.pool;  // C_H/C_V are dead now
    gt_u32x4* stage_y = stage_rgb + STAGE_RGB_N(TILE_H);
    gt_u32x4* stage_uv = stage_y + STAGE_Y_N(TILE_H);
    const int qx = threadIdx.x, qy = threadIdx.y;
    const int X = x0 + 2 * qx, Y = y0 + 2 * qy;
    if (X < w && Y < h) {
        float k[4][4];  // K at rows Y-1..Y+2, cols X-1..X+2 (only red/blue entries are used)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
#pragma unroll
            for (int c = 0; c < 4; ++c) k[r][c] = kd[(2 * qy + r) * DIR_KW + 2 * qx + c];
        }
        const float* ccm = sh.ccm;
        unsigned int sum[3] = {0u, 0u, 0u};
        const IspCellOut out = isp_cell_out(rgb8, nv12, stage_rgb, stage_y, qx, qy, X, Y, w);
        dir_cell_row<0, K00, K01, FLOAT_OUT>(k, a, ccm, sh.tone8, lut, lut_n, qx, qy, X, Y, w,
                                             out, rgbf, nv12 != nullptr, sum);
        dir_cell_row<1, K10, K11, FLOAT_OUT>(k, a, ccm, sh.tone8, lut, lut_n, qx, qy, X, Y, w,
                                             out, rgbf, nv12 != nullptr, sum);
        if (nv12 != nullptr)
            isp_finish_uv(isp_cell_uv(nv12, stage_uv, qx, qy, X, Y, w, h), sum[0], sum[1], sum[2]);
    }
    if (!ISP_DIRECT_STORE) {
        __syncthreads();
        isp_write_tile<TILE_H>(stage_rgb, stage_y, stage_uv, w, h, x0, y0, tid, rgb8, nv12);
    }
}

// The body for the float output or without it (one branch, uniform).
template <int RX, int RY>
__device__ __forceinline__ void isp_dir_phase(const DirShared& sh,
                                              const unsigned short* __restrict__ raw, int w,
                                              int h, const float* __restrict__ lut, int lut_n,
                                              unsigned char* __restrict__ rgb8,
                                              float* __restrict__ rgbf,
                                              unsigned char* __restrict__ nv12) {
    if (rgbf != nullptr)
        isp_dir_body<RX, RY, true>(sh, raw, w, h, lut, lut_n, rgb8, rgbf, nv12);
    else
        isp_dir_body<RX, RY, false>(sh, raw, w, h, lut, lut_n, rgb8, rgbf, nv12);
}

extern "C" __global__ void __launch_bounds__(ISP_THREADS) isp_main_dir(
    const unsigned short* __restrict__ raw, int w, int h, int rx, int ry,
    const float* __restrict__ cfg, const unsigned long long* __restrict__ awb,
    const float* __restrict__ lut, int lut_n, const unsigned char* __restrict__ lut8,
    unsigned char* __restrict__ rgb8, float* __restrict__ rgbf, unsigned char* __restrict__ nv12) {
    __shared__ __align__(16) gt_f32x2 tile[DIR_RH][SM_P];  // 16-byte accesses
    __shared__ IspNorm n;
    __shared__ gt_u32x4 stone8[TONE8_N / 16];
    __shared__ float sccm[9];
    __shared__ float kd[DIR_KH * DIR_KW];
    __shared__ gt_u32x4 pool[(DIR_KH * DIR_CHW + DIR_CVH * DIR_KW + 3) / 4];
    static_assert(DIR_KH * DIR_CHW + DIR_CVH * DIR_KW >=
                      4 * (STAGE_RGB_N(TILE_H) + STAGE_Y_N(TILE_H) + STAGE_UV_N(TILE_H)),
                  "the staging buffers fit in the C_H/C_V space");
    const int tid = threadIdx.y * ISP_BX + threadIdx.x;
    unsigned char* tone8 = reinterpret_cast<unsigned char*>(stone8);
    isp_stage_tone8(tone8, lut8, tid);  // read in stage D
    if (tid < 9) sccm[tid] = cfg[CFG_CCM + tid];
    if (tid == 0) isp_norm_setup(n, cfg, awb, rx & 1, ry & 1, w, h);
    __syncthreads();  // stage A reads n
    const DirShared sh{tile, &n, tone8, sccm, kd, pool};
    switch (((ry & 1) << 1) | (rx & 1)) {  // uniform: one branch per block
        case 0: isp_dir_phase<0, 0>(sh, raw, w, h, lut, lut_n, rgb8, rgbf, nv12); break;
        case 1: isp_dir_phase<1, 0>(sh, raw, w, h, lut, lut_n, rgb8, rgbf, nv12); break;
        case 2: isp_dir_phase<0, 1>(sh, raw, w, h, lut, lut_n, rgb8, rgbf, nv12); break;
        default: isp_dir_phase<1, 1>(sh, raw, w, h, lut, lut_n, rgb8, rgbf, nv12);
    }
}

// ---- grey-world statistics ----------------------------------------------------------------
// stats[AWB_SUM + 0..3] = sums of (raw - black)+ for R, G (both sites), B over 2x2 cells with
// no pixel at or above `sat`, and the number of such cells. Integer sums: any order gives the
// same bits. The reduction resets itself: blocks add into stats[AWB_ACC..], and the last block
// to finish (counted in stats[AWB_DONE]) moves the sums to stats[AWB_SUM..] and leaves the
// accumulators and the count at zero for the next frame, so a frame needs no clearing launch
// (it cost ~3 us of the graph). The buffer starts zeroed (pipeline.AWB_WORDS).
#define AWB_SUM 0
#define AWB_ACC 4
#define AWB_DONE 8
#define AWB_BX 32  // threads across: 8 pixel columns (4 cells) each, one 16-byte load a row
#define AWB_BY 8
#define AWB_THREADS (AWB_BX * AWB_BY)
#ifndef AWB_ROWS
#define AWB_ROWS 4  // cell rows per thread (a tuning knob: pipeline.awb_grid must agree)
#endif
static_assert(AWB_ROWS >= 1 && AWB_ROWS <= 16, "a thread's 32-bit sums must not overflow");
// Blocks per multiprocessor the registers must allow. ptxas reuses the registers of the first
// rows' loads for the last rows', so a load waits for earlier data to be used: at its own
// choice (40 registers) a thread's 8 loads went out as 4, 2 and 2, three round trips to
// memory; with 48 (5 blocks per SM, a 4K frame still one wave) as 6 and 2.
#define AWB_MIN_BLOCKS 5


// One 2x2 cell into the sums, unless a pixel of it is at or above `sat`; v<x><y> is the pixel
// at (x, y) of the cell. Red sits at (rx, ry), blue at (1 - rx, 1 - ry): selects, no branches,
// so that the loads of several rows can be in flight at once. 32-bit sums: a thread's
// AWB_ROWS x 4 cells stay far below 2^32, and so do a warp's (the block adds in 64 bits).
__device__ __forceinline__ void awb_cell(unsigned int (&acc)[4], int v00, int v10, int v01,
                                         int v11, int rx, int ry, int black, int sat) {
    const bool ok = gt_imax(gt_imax(v00, v10), gt_imax(v01, v11)) < sat;
    const unsigned d00 = ok ? (unsigned)gt_imax(v00 - black, 0) : 0u;
    const unsigned d10 = ok ? (unsigned)gt_imax(v10 - black, 0) : 0u;
    const unsigned d01 = ok ? (unsigned)gt_imax(v01 - black, 0) : 0u;
    const unsigned d11 = ok ? (unsigned)gt_imax(v11 - black, 0) : 0u;
    const unsigned red = rx ? (ry ? d11 : d10) : (ry ? d01 : d00);
    const unsigned blue = rx ? (ry ? d00 : d01) : (ry ? d10 : d11);
    acc[0] += red;
    acc[1] += (d00 + d10 + d01 + d11) - red - blue;
    acc[2] += blue;
    acc[3] += ok ? 1u : 0u;
}

// One cell from the 32-bit words of its top and bottom pixel pairs.
__device__ __forceinline__ void awb_pair(unsigned int (&acc)[4], unsigned int top,
                                         unsigned int bot, int rx, int ry, int black, int sat) {
    awb_cell(acc, (int)(top & 0xffffu), (int)(top >> 16), (int)(bot & 0xffffu),
             (int)(bot >> 16), rx, ry, black, sat);
}

// Grid (ceil(w / (8 AWB_BX)), ceil(h / 2 / (AWB_BY AWB_ROWS))), block AWB_BX x AWB_BY: a
// thread owns 8 pixel columns (4 cells) of AWB_ROWS consecutive cell rows, and asks for all
// its loads (16 bytes a RAW row) before it adds anything; ptxas issues 6 of the 8 before the
// first use (AWB_MIN_BLOCKS), so two round trips to memory per thread, a 4K frame in one wave
// of blocks. The kernel before walked every 128th row in batches of 4 with 8-byte loads: two
// or three round trips per thread, 8.2 us for 16.6 MB on an H200 against 4.0 us for the
// bytes (Nsight Compute: latency-bound).
extern "C" __global__ void __launch_bounds__(AWB_THREADS, AWB_MIN_BLOCKS) isp_awb_stats(
    const unsigned short* __restrict__ raw, int w, int h, int rx, int ry, int black, int sat,
    unsigned long long* __restrict__ stats) {
    __shared__ unsigned long long red[4][AWB_THREADS / 32];
    unsigned int acc[4] = {0u, 0u, 0u, 0u};
    const int x = 8 * (int)(blockIdx.x * AWB_BX + threadIdx.x);  // first pixel column
    const int qh = h / 2;                                          // cell rows (h is even)
    const int cy0 = ((int)blockIdx.y * AWB_BY + (int)threadIdx.y) * AWB_ROWS;
    if (x < w && cy0 < qh) {
        const unsigned short* top = raw + (long long)(2 * cy0) * w + x;
        if ((w & 7) == 0 && x + 8 <= w && cy0 + AWB_ROWS <= qh) {  // whole: 16-byte loads
            gt_u32x4 t[AWB_ROWS], b[AWB_ROWS];
#pragma unroll
            for (int k = 0; k < AWB_ROWS; ++k) {
                t[k] = *reinterpret_cast<const gt_u32x4*>(top + (long long)(2 * k) * w);
                b[k] = *reinterpret_cast<const gt_u32x4*>(top + (long long)(2 * k + 1) * w);
            }
#pragma unroll
            for (int k = 0; k < AWB_ROWS; ++k) {
                awb_pair(acc, t[k].a, b[k].a, rx, ry, black, sat);
                awb_pair(acc, t[k].b, b[k].b, rx, ry, black, sat);
                awb_pair(acc, t[k].c, b[k].c, rx, ry, black, sat);
                awb_pair(acc, t[k].d, b[k].d, rx, ry, black, sat);
            }
        } else {  // the frame's last rows or columns, or rows not 16-byte aligned: 4-byte
            // loads (w is even, so every row starts 4-byte aligned)
            const int rows = gt_imin(AWB_ROWS, qh - cy0), cells = gt_imin(4, (w - x) / 2);
            for (int k = 0; k < rows; ++k) {
                const unsigned int* t = reinterpret_cast<const unsigned int*>(top) + k * w;
                const unsigned int* b = t + w / 2;
                for (int c = 0; c < cells; ++c) awb_pair(acc, t[c], b[c], rx, ry, black, sat);
            }
        }
    }
    // Warp sums by shuffles, then the block's 8 warp sums: one barrier (the shared-memory
    // tree took eight).
#pragma unroll
    for (int k = 0; k < 4; ++k) {
#pragma unroll
        for (int d = 16; d > 0; d >>= 1) acc[k] += __shfl_down_sync(0xffffffffu, acc[k], d);
    }
    static_assert(AWB_BX == 32, "a warp is a row of the block");
    const int tid = (int)(threadIdx.y * AWB_BX + threadIdx.x), warp = (int)threadIdx.y;
    if (threadIdx.x == 0) {
#pragma unroll
        for (int k = 0; k < 4; ++k) red[k][warp] = acc[k];
    }
    __syncthreads();
    if (tid < 4) {
        unsigned long long sum = 0ull;
#pragma unroll
        for (int i = 0; i < AWB_THREADS / 32; ++i) sum += red[tid][i];
        atomicAdd(&stats[AWB_ACC + tid], sum);
        __threadfence();  // this block's sums land before it counts itself done
    }
    __shared__ bool last;
    __syncthreads();
    if (tid == 0) {
        const unsigned long long blocks = (unsigned long long)gridDim.x * gridDim.y;
        last = atomicAdd(&stats[AWB_DONE], 1ull) == blocks - 1ull;
    }
    __syncthreads();
    if (last && tid < 4) {  // every other block's sums are in
        stats[AWB_SUM + tid] = atomicExch(&stats[AWB_ACC + tid], 0ull);
        if (tid == 0) atomicExch(&stats[AWB_DONE], 0ull);
    }
}

// ---- the network input --------------------------------------------------------------------
// A thread per tensor pixel, a block per 32x8 of them: letterbox, resample RGB8 (area: the
// exact box footprint; bilinear: half-pixel centres, edges clamped), normalise
// (v - mean) * scale, planar NCHW. tcfg (float32[8]): mean[3], scale[3] in output channel
// order, pad value.
// Area is separable (weight wx * wy), so it runs in two steps through shared memory:
//   1. vertical: for each tensor row of the block, the weighted sum over its footprint rows of
//      every byte of the block's footprint columns, a thread per 8 bytes (4 where rows are not
//      8-byte aligned; coalesced loads, each image byte read once per tensor row that covers
//      it), the rows of weight 1 as integer byte sums;
//   2. horizontal: a thread per tensor pixel sums its footprint columns of those sums.
// The first version read its 6x6 footprint byte by byte per thread (L1-bound, 3.4x the memory
// floor on an H200); the second staged 8 image rows at a time, which left most warps idle
// between barriers (12x). Rows whose 4-byte words do not line up (width not a multiple of 4)
// and footprints wider than the shared buffer read directly instead.
#define TEN_BX 32
#define TEN_BY 8
#define TEN_VS 6144  // floats of vertical sums (24 KB)
#define TEN_BATCH 6  // footprint rows loaded at once (one batch for a 6x downscale)
#define TEN_MIN_BLOCKS 4  // per SM: 64 registers (at 48, 5 per SM, nvcc's build spilled)

// The area footprint of output pixel c along one axis (n_in input pixels, n_out output ones),
// in exact integers, in units of 1/n_out of an input pixel: [a, b) = [c n_in, (c + 1) n_in),
// input pixels i0 .. i1 - 1; pixel i weighs min((i + 1) n_out, b) - max(i n_out, a), n_out when
// whole, and a footprint n_in in all. Float coordinates (c * n_in / n_out) had lost up to 6e-5
// of the tensor's range at extreme upscales, where a footprint is a sliver of a pixel and its
// weights differences of nearby coordinates. n_in * n_out < 2^31 (pipeline.py checks).
struct alignas(16) TenSpan {
    int a, b, i0, i1;
};
__device__ __forceinline__ TenSpan tensor_span(int c, int n_in, int n_out) {
    const int a = c * n_in, b = a + n_in;
    return TenSpan{a, b, a / n_out, (b + n_out - 1) / n_out};
}
__device__ __forceinline__ int tensor_weight(const TenSpan& s, int i, int n_out) {
    return gt_imin((i + 1) * n_out, s.b) - gt_imax(i * n_out, s.a);
}

// Area sum of a content pixel (spans sx, sy) read straight from the image, in units of
// 1 / (cw ch) (the caller divides by w h).
__device__ __forceinline__ void tensor_area_direct(const unsigned char* __restrict__ rgb, int w,
                                                   int cw, int ch, const TenSpan& sx,
                                                   const TenSpan& sy, float (&acc)[3]) {
    for (int iy = sy.i0; iy < sy.i1; ++iy) {
        const float wy = (float)tensor_weight(sy, iy, ch);
        float row[3] = {0.0f, 0.0f, 0.0f};
        for (int ix = sx.i0; ix < sx.i1; ++ix) {
            const float wx = (float)tensor_weight(sx, ix, cw);
            const unsigned char* p = rgb + ((long long)iy * w + ix) * 3;
            row[0] += wx * (float)p[0];
            row[1] += wx * (float)p[1];
            row[2] += wx * (float)p[2];
        }
#pragma unroll
        for (int c = 0; c < 3; ++c) acc[c] += wy * row[c];
    }
}

// The unit of the vertical step: U 32-bit words (4 U bytes) of a footprint row, loaded at once.
template <int U>
struct alignas(4 * U) TenUnit {
    unsigned int w[U];
};

// One unit at a byte address, through the read-only data path (ld.global.nc): the address
// is integer arithmetic (see tensor_load_rows), so the compiler no longer knows it is global.
template <int U>
__device__ __forceinline__ TenUnit<U> tensor_ldg(unsigned long long address) {
    TenUnit<U> u;
    if constexpr (U == 1) {
        u.w[0] = __ldg(reinterpret_cast<const unsigned int*>(address));
    } else {
        static_assert(U == 2, "4- or 8-byte units");
        const unsigned long long x = __ldg(reinterpret_cast<const unsigned long long*>(address));
        u.w[0] = (unsigned int)x;
        u.w[1] = (unsigned int)(x >> 32);
    }
    return u;
}

// acc[b] += weight * byte b of the unit, the bytes converted through the float mantissa.
template <int U>
__device__ __forceinline__ void tensor_add_unit(float (&acc)[4 * U], const TenUnit<U>& unit,
                                                float weight) {
#pragma unroll
    for (int q = 0; q < U; ++q) {
#pragma unroll
        for (int k = 0; k < 4; ++k)
            acc[4 * q + k] = fmaf(weight, gt_u2f((unit.w[q] >> (8 * k)) & 0xffu), acc[4 * q + k]);
    }
}

// Footprint rows 0 .. TEN_BATCH - 1 of one unit column from `row0`, `row_bytes` apart, all
// loads issued before the first is used (one batch for a downscale up to 6x, as 4K -> 640:
// the first version's use right after each load left it waiting on memory); rows n and after
// read as zero. Each address is row0 plus a multiple of the stride in integer arithmetic, one
// multiply-add: the row index times the row length in 64-bit pointer arithmetic took about
// ten instructions a row (the compiler re-added the image's base from the constant bank to
// each), more than the byte sums the row fed.
template <int U>
__device__ __forceinline__ void tensor_load_rows(TenUnit<U> (&v)[TEN_BATCH],
                                                 const unsigned char* __restrict__ row0,
                                                 int row_bytes, int n) {
    const unsigned long long stride = (unsigned int)row_bytes;
    const unsigned long long base = reinterpret_cast<unsigned long long>(row0);
#pragma unroll
    for (int t = 0; t < TEN_BATCH; ++t) {
        if (t < n) {
            v[t] = tensor_ldg<U>(base + t * stride);
        } else {
#pragma unroll
            for (int q = 0; q < U; ++q) v[t].w[q] = 0u;
        }
    }
}

// Step 1 for the block's content rows i0 .. i1 - 1 (span_y[i] their footprints): vs[(i - i0)
// * 4 U units + b] = sum over the footprint rows of tensor row i of their weight (units of
// 1/ch) * byte b of the footprint columns, counted from the unit at or before byte 3 fx0 of
// each row (the same in every row: 3 w % (4 U) == 0). A thread per unit and tensor row; 8-byte
// units (U = 2) halve the address arithmetic per byte, which bounds this step once its loads
// are in flight. Every sum is an integer, exact in float (below 2^24: ch 255 (rows + 2) is).
template <int U>
__device__ __forceinline__ void tensor_area_vertical(float* __restrict__ vs,
                                                     const unsigned char* __restrict__ rgb, int w,
                                                     int ch, const TenSpan* span_y, int fx0,
                                                     int units, int i0, int i1, int tid) {
    const unsigned char* base = rgb + (3ll * fx0) / (4 * U) * (4 * U);  // the first unit
    const int row_bytes = 3 * w;
    const int stride = 4 * U * units;
    // item / units as a multiply-high by the rounded-up reciprocal 2^32 / units (exact while
    // item * units < 2^32, as here), not the generic signed division (about 25 instructions an
    // item). One unit (an extreme upscale) has no 32-bit reciprocal: the item is the row.
    const unsigned int inv_units = units > 1 ? 0xFFFFFFFFu / (unsigned int)units + 1u : 0u;
    for (int item = tid; item < (i1 - i0) * units; item += TEN_BX * TEN_BY) {
        const int i = units > 1 ? (int)__umulhi((unsigned int)item, inv_units) : item;
        const int j = item - i * units;
        const TenSpan sy = span_y[i0 + i];
        const int iy0 = sy.i0, iy1 = sy.i1;
        // Every footprint row is summed as bytes at the weight of a whole row, two per 32-bit
        // add in 16-bit lanes (bytes 0 and 2, bytes 1 and 3; up to 257 rows), converted once:
        // 1.5 instructions per byte and row against 4 with a weight each. Then the partial row
        // at each end, if any (at an integer scale such as 4K -> 640 none; at 4K -> 352 two of
        // every 11 rows), gives back what it weighs less, read again (from L1: this thread just
        // read it). Holding those rows through the sums instead took 4 more registers: spills.
        const unsigned char* col = base + 4 * U * j;  // row 0 of this unit column
        float acc[4 * U];
        if (iy1 - iy0 <= 257) {
            unsigned int even[U], odd[U];
#pragma unroll
            for (int q = 0; q < U; ++q) even[q] = odd[q] = 0u;
            for (int y = iy0; y < iy1; y += TEN_BATCH) {
                TenUnit<U> v[TEN_BATCH];
                tensor_load_rows(v, col + (long long)y * row_bytes, row_bytes, iy1 - y);
#pragma unroll
                for (int t = 0; t < TEN_BATCH; ++t) {
#pragma unroll
                    for (int q = 0; q < U; ++q) {  // bytes 1 and 3 moved down by one PRMT
                        even[q] += v[t].w[q] & 0x00FF00FFu;
                        odd[q] += __byte_perm(v[t].w[q], 0u, 0x4341);
                    }
                }
            }
            const float whole = (float)ch;  // a whole row's weight
#pragma unroll
            for (int q = 0; q < U; ++q) {
                acc[4 * q + 0] = whole * gt_u2f(even[q] & 0xffffu);
                acc[4 * q + 1] = whole * gt_u2f(odd[q] & 0xffffu);
                acc[4 * q + 2] = whole * gt_u2f(even[q] >> 16);
                acc[4 * q + 3] = whole * gt_u2f(odd[q] >> 16);
            }
            // Rows iy0 and iy1 - 1 (one row, or two): what they weigh less than a whole row.
            const int short0 = ch - tensor_weight(sy, iy0, ch);
            const int short1 = iy1 - 1 > iy0 ? ch - tensor_weight(sy, iy1 - 1, ch) : 0;
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const float cut = (float)(e == 0 ? short0 : short1);
                if (cut == 0.0f) continue;  // a whole row
                const TenUnit<U> r = tensor_ldg<U>(reinterpret_cast<unsigned long long>(
                    col + (long long)(e == 0 ? iy0 : iy1 - 1) * row_bytes));
                tensor_add_unit<U>(acc, r, -cut);
            }
        } else {  // more rows than 16-bit lanes hold: every row through the float path
#pragma unroll
            for (int k = 0; k < 4 * U; ++k) acc[k] = 0.0f;
            for (int y = iy0; y < iy1; y += TEN_BATCH) {
                TenUnit<U> v[TEN_BATCH];
                tensor_load_rows(v, col + (long long)y * row_bytes, row_bytes, iy1 - y);
#pragma unroll
                for (int t = 0; t < TEN_BATCH; ++t) {
                    const float wy = y + t < iy1 ? (float)tensor_weight(sy, y + t, ch) : 0.0f;
                    tensor_add_unit<U>(acc, v[t], wy);
                }
            }
        }
        gt_f32x4* out = reinterpret_cast<gt_f32x4*>(vs + i * stride) + U * j;
#pragma unroll
        for (int q = 0; q < U; ++q)
            out[q] = gt_f32x4{acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]};
    }
}

// Area sum (units of 1 / (cw ch)) of content pixel sx (its column span) of block row
// `row` (or none: row < 0) through shared memory in U-word units (steps 1 and 2), in passes of
// as many of the block's nrows tensor rows as TEN_VS holds. False (nothing done) when one
// tensor row's footprint does not fit: the caller reads directly then.
template <int U>
__device__ __forceinline__ bool tensor_area_staged(float* __restrict__ vs,
                                                   const unsigned char* __restrict__ rgb, int w,
                                                   int cw, int ch, const TenSpan* span_y,
                                                   int nrows, int fx0, int fx1, const TenSpan& sx,
                                                   int row, int tid, float (&acc)[3]) {
    const int off = (3 * fx0) % (4 * U);  // byte 3 fx0 within its unit
    const int units = (off + 3 * (fx1 - fx0) + 4 * U - 1) / (4 * U);
    const int rows_per_pass = TEN_VS / (4 * U * units);
    if (rows_per_pass == 0) return false;
    // Whole pixels (an integer scale, as 4K -> 640): every column weighs cw, added once.
    const bool whole = sx.i0 * cw == sx.a && sx.i1 * cw == sx.b;
    for (int i0 = 0; i0 < nrows; i0 += rows_per_pass) {
        const int i1 = gt_imin(nrows, i0 + rows_per_pass);
        tensor_area_vertical<U>(vs, rgb, w, ch, span_y, fx0, units, i0, i1, tid);
        __syncthreads();
        if (row >= i0 && row < i1) {
            const float* vrow = vs + (row - i0) * (4 * U * units) + off;
            if (whole) {
                float sum[3] = {0.0f, 0.0f, 0.0f};
                for (int ix = sx.i0; ix < sx.i1; ++ix) {
                    const float* p = vrow + 3 * (ix - fx0);
                    sum[0] += p[0];
                    sum[1] += p[1];
                    sum[2] += p[2];
                }
#pragma unroll
                for (int c = 0; c < 3; ++c) acc[c] += (float)cw * sum[c];
            } else {
                for (int ix = sx.i0; ix < sx.i1; ++ix) {
                    const float wx = (float)tensor_weight(sx, ix, cw);
                    const float* p = vrow + 3 * (ix - fx0);
                    acc[0] += wx * p[0];
                    acc[1] += wx * p[1];
                    acc[2] += wx * p[2];
                }
            }
        }
        __syncthreads();
    }
    return true;
}

// Bilinear source of output pixel c: (c + 0.5) n_in / n_out - 0.5, clamped to [0, n_in - 1],
// as pixel i and fraction f, from the exact fraction ((2c + 1) n_in - n_out) / (2 n_out), so
// that f is one rounding from exact. In float the product's rounding had put the tensor up to
// 5e-5 (of the [0, 1] range) off the float64 reference at a few hundred pixels.
__device__ __forceinline__ void tensor_bilinear_source(int c, int n_in, int n_out, int& i,
                                                       float& f) {
    const long long num = (2ll * c + 1) * n_in - n_out, den = 2ll * n_out;
    i = num > 0 ? (int)(num / den) : 0;
    f = num > 0 ? (float)(num - i * den) / (float)den : 0.0f;
    if (i >= n_in - 1) i = n_in - 1, f = 0.0f;
}

extern "C" __global__ void __launch_bounds__(TEN_BX * TEN_BY, TEN_MIN_BLOCKS) isp_tensor(
    const unsigned char* __restrict__ rgb, int w, int h, const float* __restrict__ tcfg,
    int out_w, int out_h, int cw, int ch, int pad_x, int pad_y, int method, int bgr,
    float* __restrict__ out32, unsigned short* __restrict__ out16) {
    __shared__ gt_f32x4 vs4[TEN_VS / 4];  // 16-byte aligned
    __shared__ TenSpan span_x[TEN_BX], span_y[TEN_BY];  // of the block's content cols, rows
    float* vs = reinterpret_cast<float*>(vs4);
    const int tid = threadIdx.y * TEN_BX + threadIdx.x;
    const int ox = blockIdx.x * TEN_BX + threadIdx.x;
    const int oy = blockIdx.y * TEN_BY + threadIdx.y;
    const int cx = ox - pad_x, cy = oy - pad_y;
    const bool inside = ox < out_w && oy < out_h;
    const bool content = inside && cx >= 0 && cy >= 0 && cx < cw && cy < ch;
    float acc[3] = {0.0f, 0.0f, 0.0f};

    if (method == 0) {  // area
        // The block's content columns and rows, and their footprint columns in the image.
        const int bx0 = gt_imax((int)(blockIdx.x * TEN_BX) - pad_x, 0);
        const int bx1 = gt_imin((int)(blockIdx.x * TEN_BX) + TEN_BX - pad_x, cw);
        const int by0 = gt_imax((int)(blockIdx.y * TEN_BY) - pad_y, 0);
        const int by1 = gt_imin((int)(blockIdx.y * TEN_BY) + TEN_BY - pad_y, ch);
        if (bx0 < bx1 && by0 < by1) {  // uniform: the block has content
            // The footprints of the block's content columns and rows, once per block.
            const int nrows = by1 - by0, ncols = bx1 - bx0;
            if (tid < nrows) span_y[tid] = tensor_span(by0 + tid, h, ch);
            const int col = tid - 32;  // the second warp does the columns
            if (col >= 0 && col < ncols) span_x[col] = tensor_span(bx0 + col, w, cw);
            __syncthreads();
            const int fx0 = span_x[0].i0, fx1 = span_x[ncols - 1].i1;
            const TenSpan sx = span_x[gt_imin(gt_imax(cx - bx0, 0), ncols - 1)];
            const int row = content ? cy - by0 : -1;
            // 8-byte units where every row starts 8-byte aligned, else 4-byte ones, else (or
            // when a footprint row is wider than TEN_VS) direct reads. Uniform per block.
            bool staged = false;
            if ((w & 7) == 0)
                staged = tensor_area_staged<2>(vs, rgb, w, cw, ch, span_y, nrows, fx0, fx1, sx,
                                               row, tid, acc);
            else if ((w & 3) == 0)
                staged = tensor_area_staged<1>(vs, rgb, w, cw, ch, span_y, nrows, fx0, fx1, sx,
                                               row, tid, acc);
            if (!staged && content) tensor_area_direct(rgb, w, cw, ch, sx, span_y[row], acc);
        }
        if (content) {  // the sums are in units of 1 / (cw ch), a footprint weighs w h
            const float norm = 1.0f / ((float)w * (float)h);
#pragma unroll
            for (int c = 0; c < 3; ++c) acc[c] *= norm;
        }
    } else if (content) {  // bilinear
        int ix, iy;
        float ax, ay;
        tensor_bilinear_source(cx, w, cw, ix, ax);
        tensor_bilinear_source(cy, h, ch, iy, ay);
        const int ix1 = gt_imin(ix + 1, w - 1), iy1 = gt_imin(iy + 1, h - 1);
        const unsigned char* p00 = rgb + ((long long)iy * w + ix) * 3;
        const unsigned char* p01 = rgb + ((long long)iy * w + ix1) * 3;
        const unsigned char* p10 = rgb + ((long long)iy1 * w + ix) * 3;
        const unsigned char* p11 = rgb + ((long long)iy1 * w + ix1) * 3;
#pragma unroll
        for (int c = 0; c < 3; ++c) {
            const float top = (float)p00[c] + ax * ((float)p01[c] - (float)p00[c]);
            const float bot = (float)p10[c] + ax * ((float)p11[c] - (float)p10[c]);
            acc[c] = top + ay * (bot - top);
        }
    }
    if (!inside) return;
    if (!content) acc[0] = acc[1] = acc[2] = tcfg[6];
    const long long plane = (long long)out_w * out_h;
    const long long at = (long long)oy * out_w + ox;
#pragma unroll
    for (int k = 0; k < 3; ++k) {
        const float a = bgr ? acc[2 - k] : acc[k];  // both indices constant once unrolled
        const float v = (a - tcfg[k]) * tcfg[3 + k];
        if (out32 != nullptr) out32[k * plane + at] = v;
        if (out16 != nullptr) out16[k * plane + at] = gt_float_to_half(v);
    }
}
