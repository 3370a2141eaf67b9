"""The ISP algorithm, stated once in NumPy (Halide camera_pipe style: the algorithm apart from
its schedule). `kernels/isp.cu` computes the same thing in fused tiles; tests hold the two to
each other. Every function takes a float dtype (float64 for tests, float32 for the `cpu`
backend's speed).

The chain, per pixel of a RAW frame:

    m   = clip((raw - black) / (white - black) * shading(x, y) * wb[colour(x, y)], 0, 1)
    cam = demosaic(m)                       # MHC, bilinear or directional; borders mirrored
                                            # (reflect-101)
    lin = clip(ccm @ cam, 0, 1)
    rgb8 = lut8[rint(4095 lin)]             # 8-bit tone table of the 12-bit code (tone_lut8)
    v   = interp(lut, lin)                  # float output: the tone LUT of LUT_SIZE samples on
                                            # [0, 1], interpolated (lut8 is v at the codes)
    nv12 = BT.709 limited range from rgb8 / 255; chroma from the mean of each 2x2 cell
    tensor = (resample(letterbox(rgb8)) - mean) * scale, planar NCHW
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp

from gputrack.isp.params import (
    TONE8_SIZE,
    IspParams,
    TensorSpec,
    cfa_channels,
    pattern_offsets,
)

# Malvar-He-Cutler 2004 filters (gain 1/8). Names say what is estimated where:
#   G_AT_RB: green at a red or blue site; ROW: the colour whose sites are the left/right
#   neighbours, at a green site; COL: the colour of the up/down neighbours; DIAG: red at blue
#   or blue at red.
_MHC = {
    "G_AT_RB": np.array(
        [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]]
    )
    / 8.0,
    "ROW": np.array(
        [
            [0, 0, 0.5, 0, 0],
            [0, -1, 0, -1, 0],
            [-1, 4, 5, 4, -1],
            [0, -1, 0, -1, 0],
            [0, 0, 0.5, 0, 0],
        ]
    )
    / 8.0,
    "DIAG": np.array(
        [
            [0, 0, -1.5, 0, 0],
            [0, 2, 0, 2, 0],
            [-1.5, 0, 6, 0, -1.5],
            [0, 2, 0, 2, 0],
            [0, 0, -1.5, 0, 0],
        ]
    )
    / 8.0,
}
_MHC["COL"] = _MHC["ROW"].T.copy()

_BILINEAR = {
    "G_AT_RB": np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]) / 4.0,
    "ROW": np.array([[0, 0, 0], [1, 0, 1], [0, 0, 0]]) / 2.0,
    "COL": np.array([[0, 1, 0], [0, 0, 0], [0, 1, 0]]) / 2.0,
    "DIAG": np.array([[1, 0, 1], [0, 0, 0], [1, 0, 1]]) / 4.0,
}

FILTERS = {"mhc": _MHC, "bilinear": _BILINEAR}

# BT.709 luma weights; limited-range 8-bit scaling.
KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB


def shading_gain(h: int, w: int, k1: float, k2: float, dtype=np.float64) -> np.ndarray:
    """Lens-shading correction gain 1 + k1 r^2 + k2 r^4, r: distance from the centre over the
    half-diagonal."""
    cy, cx = h / 2.0, w / 2.0
    y = (np.arange(h, dtype=np.float64) + 0.5 - cy)[:, None]
    x = (np.arange(w, dtype=np.float64) + 0.5 - cx)[None, :]
    r2 = (x * x + y * y) / (cx * cx + cy * cy)
    return (1.0 + k1 * r2 + k2 * r2 * r2).astype(dtype)


def awb_threshold(params: IspParams) -> int:
    """Raw value from which a pixel counts as (nearly) saturated for grey world."""
    return params.black + int(params.awb_clip * (params.white - params.black))


def awb_stats(raw: np.ndarray, params: IspParams) -> np.ndarray:
    """uint64[4]: sums of (raw - black)+ over unsaturated 2x2 cells for R, G (both), B; cell count.

    Integer sums, so any summation order (a GPU reduction's) gives the same answer.
    """
    v = np.maximum(raw.astype(np.int64) - params.black, 0)
    sat = raw >= awb_threshold(params)
    cell_sat = sat[0::2, 0::2] | sat[0::2, 1::2] | sat[1::2, 0::2] | sat[1::2, 1::2]
    ok = ~cell_sat
    ch = cfa_channels(params.pattern)
    sums = np.zeros(3, dtype=np.int64)
    for py in (0, 1):
        for px in (0, 1):
            sums[ch[py, px]] += int(v[py::2, px::2][ok].sum())
    return np.array([sums[0], sums[1], sums[2], int(ok.sum())], dtype=np.uint64)


def awb_gains(stats: np.ndarray) -> tuple[float, float, float]:
    """Grey world: scale R and B so that their means equal green's. Clamped to [1/8, 8]."""
    r, g, b, n = (float(s) for s in stats)
    if n == 0 or r <= 0 or b <= 0 or g <= 0:
        return (1.0, 1.0, 1.0)
    g_mean = g * 0.5
    return (min(max(g_mean / r, 0.125), 8.0), 1.0, min(max(g_mean / b, 0.125), 8.0))


def normalise(
    raw: np.ndarray, params: IspParams, gains: tuple[float, float, float], dtype=np.float64
) -> np.ndarray:
    """Black level, normalisation, lens shading, white balance on the mosaic; clip to [0, 1]."""
    h, w = raw.shape
    m = (raw.astype(dtype) - dtype(params.black)) * dtype(1.0 / (params.white - params.black))
    k1, k2 = params.lens_shading
    if k1 or k2:
        m *= shading_gain(h, w, k1, k2, dtype)
    ch = cfa_channels(params.pattern)
    for py in (0, 1):
        for px in (0, 1):
            m[py::2, px::2] *= dtype(gains[ch[py, px]])
    return np.clip(m, 0.0, 1.0, out=m)


# The directional method: its mirrored border (reflect-101, as the kernel loads its halo) and
# the floor of its gradients (keeps the weights finite where both directions are flat).
DIR_PAD = 6
DIR_EPS = 1e-4


def reflect101(i: np.ndarray, n: int) -> np.ndarray:
    """Mirror indices of a mosaic's rows or columns (n even) into [0, n) without repeating the
    edge; further out than one reflection, the nearest index of the same parity, so that a
    mirrored pixel keeps the Bayer colour of its position (the kernel's gt_reflect101: even a
    4-pixel-wide frame pads the same way)."""
    i = np.abs(i)
    i = np.where(i >= n, 2 * (n - 1) - i, i)
    return np.minimum(np.maximum(i, i & 1), (n - 1) - ((n - 1 - i) & 1))


def demosaic_directional(m: np.ndarray, pattern: str) -> np.ndarray:
    """Edge-directed demosaicing (Hamilton-Adams directional estimates, a soft decision from
    colour-difference variation in the manner of Menon 2007, colour differences for red/blue).

    At every pixel p of the mirrored mosaic c, along the row (and likewise the column):
      h_H(p)  = (c[x-1] + c[x+1]) / 2 + (2 c[x] - c[x-2] - c[x+2]) / 4
                the missing colour along the row: green at a red/blue site, the row's other
                colour at a green site (Hamilton-Adams: average plus Laplacian correction)
      C_H(p)  = c - h_H at red/blue sites, h_H - c at green sites: colour minus green
      d_H(p)  = sum over x-2 <= q < x+2 of |C_H(q) - C_H(q+1)|
                how much the colour difference varies along the row; small along an edge
    At a red/blue site the colour difference K = c - G blends the two directions by inverse
    squared variation, K = (w_H C_H + w_V C_V) / (w_H + w_V), w_H = (d_V + eps)^2,
    w_V = (d_H + eps)^2, and G = c - K. Red and blue then come from the colour differences K
    of their own sites, averaged (bilinear) around each pixel: at a green site the two
    neighbours of that colour, at a red/blue site the four diagonal neighbours."""
    h, w = m.shape
    pad = DIR_PAD
    c = m[reflect101(np.arange(-pad, h + pad), h)][:, reflect101(np.arange(-pad, w + pad), w)]
    rx, ry = pattern_offsets(pattern)
    yy = (np.arange(-pad, h + pad) - ry) & 1
    xx = (np.arange(-pad, w + pad) - rx) & 1
    green = (yy[:, None] ^ xx[None, :]) == 1
    # kind: 0 red site, 3 blue, 1 green in a red row, 2 green in a blue row
    kind = (yy[:, None] << 1) | xx[None, :]

    def along(a: np.ndarray, axis: int, d: int) -> np.ndarray:
        return np.roll(a, -d, axis)  # a at p + d; the wrap only reaches the padding

    def colour_minus_green(axis: int) -> np.ndarray:
        est = 0.5 * (along(c, axis, -1) + along(c, axis, 1)) + 0.25 * (
            2.0 * c - along(c, axis, -2) - along(c, axis, 2)
        )
        return np.where(green, est - c, c - est)

    ch, cv = colour_minus_green(1), colour_minus_green(0)

    def variation(cd: np.ndarray, axis: int) -> np.ndarray:
        step = np.abs(along(cd, axis, 1) - cd)  # |C(q+1) - C(q)|
        return along(step, axis, -2) + along(step, axis, -1) + step + along(step, axis, 1)

    eps = m.dtype.type(DIR_EPS)
    wh = np.square(variation(cv, 0) + eps)
    wv = np.square(variation(ch, 1) + eps)
    k = np.where(green, 0.0, (wh * ch + wv * cv) / (wh + wv))  # c - G at red/blue sites
    g = c - k
    kr = np.where(kind == 0, k, 0.0)
    kb = np.where(kind == 3, k, 0.0)

    def around(a: np.ndarray, offsets: tuple[tuple[int, int], ...]) -> np.ndarray:
        acc = np.zeros_like(a)
        for dy, dx in offsets:
            acc += np.roll(a, (-dy, -dx), (0, 1))
        return acc / len(offsets)

    row, col = ((0, -1), (0, 1)), ((-1, 0), (1, 0))
    diag = ((-1, -1), (-1, 1), (1, -1), (1, 1))
    r = g + np.select(
        [kind == 0, kind == 3, kind == 1], [kr, around(kr, diag), around(kr, row)], around(kr, col)
    )
    b = g + np.select(
        [kind == 3, kind == 0, kind == 2], [kb, around(kb, diag), around(kb, row)], around(kb, col)
    )
    out = np.stack([r, g, b], -1)[pad:-pad, pad:-pad]
    return np.ascontiguousarray(out, dtype=m.dtype)


def demosaic(m: np.ndarray, pattern: str, method: str = "mhc") -> np.ndarray:
    """(H, W) mosaic -> (H, W, 3) RGB. Borders mirror without repeating the edge (reflect-101),
    which keeps the Bayer phase, so every pixel uses the same formula."""
    if method == "directional":
        return demosaic_directional(m, pattern)
    filters = FILTERS[method]
    est = {
        name: cv2.filter2D(m, -1, k.astype(m.dtype), borderType=cv2.BORDER_REFLECT_101)
        for name, k in filters.items()
    }
    rx, ry = pattern_offsets(pattern)
    out = np.empty((*m.shape, 3), dtype=m.dtype)
    for py in (0, 1):
        for px in (0, 1):
            sl = (slice(py, None, 2), slice(px, None, 2))
            kind = ((py ^ ry) << 1) | (
                px ^ rx
            )  # 0 red site, 3 blue, 1 green in a red row, 2 green in a blue row
            c = m[sl]
            if kind == 0:
                r, g, b = c, est["G_AT_RB"][sl], est["DIAG"][sl]
            elif kind == 3:
                r, g, b = est["DIAG"][sl], est["G_AT_RB"][sl], c
            elif kind == 1:
                r, g, b = est["ROW"][sl], c, est["COL"][sl]
            else:
                r, g, b = est["COL"][sl], c, est["ROW"][sl]
            out[sl + (0,)] = r
            out[sl + (1,)] = g
            out[sl + (2,)] = b
    return out


def apply_ccm(rgb: np.ndarray, ccm) -> np.ndarray:
    """Colour matrix (camera RGB -> linear sRGB), then clip to [0, 1]."""
    c = np.asarray(ccm, dtype=rgb.dtype)
    out = rgb @ c.T
    return np.clip(out, 0.0, 1.0, out=out)


def apply_lut(lin: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Linear interpolation in a LUT sampled uniformly on [0, 1] (what the kernel does):
    t = lin (n - 1), i = min(floor(t), n - 2), out = lut[i] + (t - i) (lut[i + 1] - lut[i])."""
    n = lut.size
    table = lut.astype(lin.dtype)
    step = np.diff(table)  # lut[i + 1] - lut[i], in the working precision, as the kernel has it
    t = lin * lin.dtype.type(n - 1)
    i = t.astype(np.int32)
    np.minimum(i, n - 2, out=i)
    f = t
    f -= i  # t - i, in place
    out = step[i]
    out *= f
    out += table[i]
    return out


def tone_lut8(params: IspParams) -> np.ndarray:
    """uint8[TONE8_SIZE]: the 8-bit output for each 12-bit code i of the clipped linear value
    (code = 4095 lin rounded to the nearest integer): the tone LUT interpolated at i / 4095
    (`apply_lut`, in float64), rounded. The 8-bit image is one lookup per channel, as in a
    hardware ISP's gamma table."""
    codes = np.arange(TONE8_SIZE, dtype=np.float64) / (TONE8_SIZE - 1)
    v = apply_lut(codes, params.tone_lut())
    return np.floor(np.clip(v, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def apply_tone8(lin: np.ndarray, lut8: np.ndarray) -> np.ndarray:
    """Clipped linear [0, 1] -> uint8 through the 8-bit tone table: lut8[rint(4095 lin)] (ties
    to even, as the kernels' rounding through the float mantissa does)."""
    codes = np.rint(lin * lin.dtype.type(lut8.size - 1))
    return lut8[codes.astype(np.int32)]


def to_nv12(v: np.ndarray) -> np.ndarray:
    """(H, W, 3) encoded RGB in [0, 1] -> uint8[H * 3 / 2, W]: Y plane, then interleaved Cb Cr
    (BT.709, limited range), chroma from the mean of each 2x2 cell."""
    h, w, _ = v.shape
    y = KR * v[..., 0] + KG * v[..., 1] + KB * v[..., 2]
    q = 0.25 * (v[0::2, 0::2] + v[0::2, 1::2] + v[1::2, 0::2] + v[1::2, 1::2])
    yq = KR * q[..., 0] + KG * q[..., 1] + KB * q[..., 2]
    cb = 128.0 + 224.0 * (q[..., 2] - yq) / (2.0 * (1.0 - KB))
    cr = 128.0 + 224.0 * (q[..., 0] - yq) / (2.0 * (1.0 - KR))
    out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    out[:h] = np.clip(np.floor(16.0 + 219.0 * y + 0.5), 0, 255)
    uv = out[h:].reshape(h // 2, w // 2, 2)
    uv[..., 0] = np.clip(np.floor(cb + 0.5), 0, 255)
    uv[..., 1] = np.clip(np.floor(cr + 0.5), 0, 255)
    return out


@functools.lru_cache(maxsize=16)  # the same few sizes every frame; nobody changes the result
def resample_matrix(n_in: int, n_out: int, method: str) -> sp.csr_matrix:
    """Sparse (n_out, n_in) weights. `area`: output o averages [o s, (o+1) s) of the input,
    s = n_in / n_out, each input pixel weighted by its overlap. `bilinear`: half-pixel
    centres, source clamped to the edge (OpenCV's INTER_LINEAR convention)."""
    s = n_in / n_out
    rows, cols, vals = [], [], []
    for o in range(n_out):
        if method == "area":
            x0, x1 = o * s, (o + 1) * s
            for i in range(int(np.floor(x0)), min(int(np.ceil(x1)), n_in)):
                wgt = min(i + 1.0, x1) - max(float(i), x0)
                if wgt > 0:
                    rows.append(o)
                    cols.append(i)
                    vals.append(wgt / s)
        else:
            src = min(max((o + 0.5) * s - 0.5, 0.0), n_in - 1.0)
            i0 = int(np.floor(src))
            f = src - i0
            i1 = min(i0 + 1, n_in - 1)
            rows += [o, o]
            cols += [i0, i1]
            vals += [1.0 - f, f]
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in))


def make_tensor(rgb8: np.ndarray, spec: TensorSpec, dtype=np.float64) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, h, w) network input: resized into the letterbox, normalised."""
    h, w, _ = rgb8.shape
    cw, ch, px, py = spec.geometry(w, h)
    wy = resample_matrix(h, ch, spec.resize)
    wx = resample_matrix(w, cw, spec.resize)
    order = (0, 1, 2) if spec.channel_order == "RGB" else (2, 1, 0)
    out = np.empty((1, 3, spec.height, spec.width), dtype=dtype)
    for k, c in enumerate(order):
        plane = rgb8[..., c].astype(np.float64)
        content = np.asarray((wx @ (wy @ plane).T).T)
        full = np.full((spec.height, spec.width), spec.pad_value, dtype=np.float64)
        full[py : py + ch, px : px + cw] = content
        out[0, k] = (full - spec.mean[k]) * spec.scale[k]
    return out


@dataclass
class ReferenceResult:
    rgb8: np.ndarray
    rgb: np.ndarray | None  # float, tone-encoded [0, 1], before quantisation (if asked for)
    nv12: np.ndarray | None
    tensor: np.ndarray | None
    gains: tuple[float, float, float]
    awb_stats: np.ndarray | None


def process(
    raw: np.ndarray, params: IspParams, dtype=np.float64, float_output: bool = True
) -> ReferenceResult:
    """The whole ISP on one RAW mosaic (uint16[H, W]); the float image only with
    `float_output` (interpolating the tone curve per value is a third of the work)."""
    stats = awb_stats(raw, params) if params.auto_wb else None
    gains = awb_gains(stats) if stats is not None else params.wb  # type: ignore[assignment]
    m = normalise(raw, params, gains, dtype)  # type: ignore[arg-type]
    cam = demosaic(m, params.pattern, params.demosaic)
    lin = apply_ccm(cam, params.ccm)
    v = apply_lut(lin, params.tone_lut()) if float_output else None
    rgb8 = apply_tone8(lin, tone_lut8(params))
    nv12 = to_nv12(rgb8.astype(dtype) / np.dtype(dtype).type(255.0)) if params.nv12 else None
    tensor = make_tensor(rgb8, params.tensor, dtype) if params.tensor is not None else None
    return ReferenceResult(rgb8, v, nv12, tensor, tuple(gains), stats)  # type: ignore[arg-type]
