// Detection decode + class-aware NMS for a FastestDet-style head, in one block per image.
// The decode, the order and the NMS are stated in NumPy in gputrack/dsp/decode.py.
//   1. each thread scans cells: score = obj^p * max(cls)^(1-p); cells over the threshold are
//      appended to a shared candidate list (at most one per cell, so the list never
//      overflows: the host checks H * W <= DET_MAX_CAND);
//   2. a bitonic sort in shared memory orders them by score, descending, ties by cell index
//      (atomics fill the list in any order; the sort makes the result deterministic);
//   3. boxes are decoded into frame pixels (letterbox undone, clipped);
//   4. greedy NMS: candidate i, if still alive, is kept and every later candidate of the
//      same class with IoU > threshold is removed, all threads testing in parallel.
// Non-finite outputs are dropped: a cell is no candidate when its score is not finite (NaN in
// any class probability counts as NaN, as NumPy's max has it; fmaxf alone would skip it), and
// a candidate whose decoded box has a non-finite coordinate (tested before clipping: fminf and
// fmaxf turn NaN into the clip bound) is marked removed before the NMS, so it is neither kept
// nor removes another. So is a box with no area once clipped (wholly in the letterbox padding).
#include "common.cuh"

#define DET_THREADS 256
#define DET_MAX_CAND 1024

__device__ __forceinline__ bool det_better(float sa, int ca, float sb, int cb) {
    return sa > sb || (sa == sb && ca < cb);
}

extern "C" __global__ void __launch_bounds__(DET_THREADS) detect_fastestdet(
    const float* __restrict__ head, int num_classes, int gh, int gw, float score_thr,
    float iou_thr, int max_det, float obj_power, float tensor_w, float tensor_h, float pad_x,
    float pad_y, float scale_x, float scale_y, float frame_w, float frame_h,
    float* __restrict__ out, int* __restrict__ count) {
    __shared__ float s_score[DET_MAX_CAND];
    __shared__ int s_cell[DET_MAX_CAND];
    __shared__ float s_box[DET_MAX_CAND][4];
    __shared__ int s_label[DET_MAX_CAND];
    __shared__ unsigned char s_removed[DET_MAX_CAND];
    __shared__ int s_n;
    const int tid = threadIdx.x;
    const int cells = gh * gw;
    if (tid == 0) s_n = 0;
    __syncthreads();

    // 1. candidates
    for (int c = tid; c < cells; c += DET_THREADS) {
        float best = head[5 * cells + c];
        bool cls_nan = isnan(best);
        for (int k = 1; k < num_classes; ++k) {
            const float v = head[(5 + k) * cells + c];
            cls_nan = cls_nan || isnan(v);
            best = fmaxf(best, v);
        }
        const float score = powf(head[c], obj_power) * powf(best, 1.0f - obj_power);
        if (!cls_nan && isfinite(score) && score > score_thr) {
            const int slot = atomicAdd(&s_n, 1);
            if (slot < DET_MAX_CAND) {
                s_score[slot] = score;
                s_cell[slot] = c;
            }
        }
    }
    __syncthreads();
    const int n = gt_imin(s_n, DET_MAX_CAND);
    int size = 1;
    while (size < n) size <<= 1;
    for (int i = n + tid; i < size; i += DET_THREADS) {
        s_score[i] = -1.0f;  // below every real score (scores are >= 0)
        s_cell[i] = 0x7fffffff;
    }
    __syncthreads();

    // 2. bitonic sort, descending
    for (int k = 2; k <= size; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = tid; i < size; i += DET_THREADS) {
                const int partner = i ^ j;
                if (partner > i) {
                    const bool first_better =
                        det_better(s_score[i], s_cell[i], s_score[partner], s_cell[partner]);
                    const bool descending = (i & k) == 0;
                    if (descending != first_better) {
                        const float ts = s_score[i];
                        s_score[i] = s_score[partner];
                        s_score[partner] = ts;
                        const int tc = s_cell[i];
                        s_cell[i] = s_cell[partner];
                        s_cell[partner] = tc;
                    }
                }
            }
            __syncthreads();
        }
    }

    // 3. decode the candidates' boxes and classes
    for (int i = tid; i < n; i += DET_THREADS) {
        const int c = s_cell[i];
        const int gy = c / gw, gx = c - gy * gw;
        float best = head[5 * cells + c];
        int label = 0;
        for (int k = 1; k < num_classes; ++k) {
            const float v = head[(5 + k) * cells + c];
            if (v > best) {
                best = v;
                label = k;
            }
        }
        const float cx = ((float)gx + tanhf(head[cells + c])) / (float)gw;
        const float cy = ((float)gy + tanhf(head[2 * cells + c])) / (float)gh;
        const float bw = 1.0f / (1.0f + expf(-head[3 * cells + c]));
        const float bh = 1.0f / (1.0f + expf(-head[4 * cells + c]));
        const float x1 = ((cx - bw * 0.5f) * tensor_w - pad_x) * scale_x;
        const float x2 = ((cx + bw * 0.5f) * tensor_w - pad_x) * scale_x;
        const float y1 = ((cy - bh * 0.5f) * tensor_h - pad_y) * scale_y;
        const float y2 = ((cy + bh * 0.5f) * tensor_h - pad_y) * scale_y;
        const float bx1 = fminf(fmaxf(x1, 0.0f), frame_w);
        const float by1 = fminf(fmaxf(y1, 0.0f), frame_h);
        const float bx2 = fminf(fmaxf(x2, 0.0f), frame_w);
        const float by2 = fminf(fmaxf(y2, 0.0f), frame_h);
        s_box[i][0] = bx1;
        s_box[i][1] = by1;
        s_box[i][2] = bx2;
        s_box[i][3] = by2;
        s_label[i] = label;
        // dropped: a non-finite box, or one with no area in the frame (in the letterbox pad)
        s_removed[i] = !(isfinite(x1) && isfinite(y1) && isfinite(x2) && isfinite(y2)) ||
                       !(bx2 > bx1 && by2 > by1);
    }
    __syncthreads();

    // 4. greedy class-aware NMS
    int kept = 0;
    for (int i = 0; i < n && kept < max_det; ++i) {
        if (s_removed[i]) continue;  // uniform: every thread reads the same flag
        if (tid == 0) {
            float* row = out + kept * 6;
            row[0] = s_box[i][0];
            row[1] = s_box[i][1];
            row[2] = s_box[i][2];
            row[3] = s_box[i][3];
            row[4] = s_score[i];
            row[5] = (float)s_label[i];
        }
        ++kept;
        const float area = (s_box[i][2] - s_box[i][0]) * (s_box[i][3] - s_box[i][1]);
        for (int j = i + 1 + tid; j < n; j += DET_THREADS) {
            if (s_label[j] != s_label[i] || s_removed[j]) continue;
            const float iw = fmaxf(0.0f, fminf(s_box[i][2], s_box[j][2]) -
                                             fmaxf(s_box[i][0], s_box[j][0]));
            const float ih = fmaxf(0.0f, fminf(s_box[i][3], s_box[j][3]) -
                                             fmaxf(s_box[i][1], s_box[j][1]));
            const float inter = iw * ih;
            const float other = (s_box[j][2] - s_box[j][0]) * (s_box[j][3] - s_box[j][1]);
            const float uni = area + other - inter;
            const float iou = uni > 0.0f ? inter / uni : 0.0f;
            if (iou > iou_thr) s_removed[j] = 1;
        }
        __syncthreads();
    }
    if (tid == 0) count[0] = kept;
}
