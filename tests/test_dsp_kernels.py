"""kernels/nn.cu on every backend that runs kernels, against the float64 NumPy semantics in
gputrack/dsp/interp.py: fresh random inputs, odd sizes, channel views (offset/stride) on the
inputs and a channel offset on the output, outputs poisoned with NaN beforehand."""

from __future__ import annotations

import numpy as np
import pytest

from gputrack.dsp import interp

i32, f32 = np.int32, np.float32
RTOL = 1e-5


def nn(backend):
    return backend.load("nn.cu")


def embed(rng, x: np.ndarray, c0: int, cs: int) -> np.ndarray:
    """A buffer holding x's channels at c0 + cs * c, random values elsewhere."""
    c = x.shape[1]
    buf = rng.standard_normal(
        (1, c0 + cs * (c - 1) + 1 + int(rng.integers(0, 3)), *x.shape[2:])
    ).astype(f32)
    buf[:, c0 : c0 + cs * c : cs] = x
    return buf


def assert_close(got: np.ndarray, want: np.ndarray, what: str, tol: float = RTOL) -> None:
    assert not np.isnan(got).any(), f"{what}: unwritten (NaN) outputs"
    err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
    assert err < tol, f"{what}: relative error {err:.2e}"
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max()), err_msg=what)


def run_conv(backend, rng, x, w, b, res, strides, pads, dil, group, act, pointwise):
    _, cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    ho = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    x0, xcs = int(rng.integers(0, 3)), int(rng.integers(1, 3))
    xb = backend.to_device(embed(rng, x, x0, xcs))
    y0 = int(rng.integers(0, 4))
    y = backend.full((1, y0 + cout, ho, wo), np.nan, f32)
    rb, r0, rcs = None, 0, 1
    if res is not None:
        r0, rcs = int(rng.integers(0, 3)), int(rng.integers(1, 3))
        rb = backend.to_device(embed(rng, res, r0, rcs))
    wdev = backend.to_device(w.astype(f32))
    bdev = backend.to_device(b.astype(f32)) if b is not None else None
    codes = {"none": 0, "relu": 1, "sigmoid": 2, "clip": 3}
    lo, hi = f32(-0.5), f32(0.7)
    if pointwise:
        npix = h * wd
        nn(backend).kernel("nn_conv1x1")(
            (-(-npix // 64), -(-cout // 64)),
            256,
            (
                xb,
                i32(x0),
                i32(xcs),
                i32(cin),
                i32(npix),
                wdev,
                bdev,
                rb,
                i32(r0),
                i32(rcs),
                y,
                i32(y0),
                i32(cout),
                i32(codes[act]),
                lo,
                hi,
            ),
        )
    else:
        nn(backend).kernel("nn_conv2d")(
            (-(-(ho * wo) // 128), cout),
            128,
            (
                xb,
                i32(x0),
                i32(xcs),
                i32(cin),
                i32(h),
                i32(wd),
                wdev,
                bdev,
                rb,
                i32(r0),
                i32(rcs),
                y,
                i32(y0),
                i32(cout),
                i32(ho),
                i32(wo),
                i32(kh),
                i32(kw),
                i32(strides[0]),
                i32(strides[1]),
                i32(pads[0]),
                i32(pads[1]),
                i32(dil[0]),
                i32(dil[1]),
                i32(group),
                i32(codes[act]),
                lo,
                hi,
            ),
        )
    got = backend.to_host(y)
    want = interp.conv2d(
        x.astype(np.float64),
        w.astype(np.float64),
        None if b is None else b.astype(np.float64),
        strides,
        pads,
        dil,
        group,
    )
    if res is not None:
        want = want + res
    want = interp.activation(want, act, -0.5, 0.7)
    assert np.isnan(got[:, :y0]).all(), "channels before the output offset untouched"
    return got[:, y0:], want


@pytest.mark.parametrize(
    "case", ["dense3x3s2", "depthwise3x3", "depthwise5x5", "grouped", "dilated", "asympad"]
)
def test_conv2d_matches_reference(kernel_backend, rng, case):
    cfg = {
        "dense3x3s2": dict(cin=3, cout=7, k=(3, 3), s=(2, 2), p=(1, 1, 1, 1), d=(1, 1), g=1),
        "depthwise3x3": dict(cin=6, cout=6, k=(3, 3), s=(1, 1), p=(1, 1, 1, 1), d=(1, 1), g=6),
        "depthwise5x5": dict(cin=5, cout=5, k=(5, 5), s=(2, 2), p=(2, 2, 2, 2), d=(1, 1), g=5),
        "grouped": dict(cin=6, cout=9, k=(3, 1), s=(1, 2), p=(1, 0, 1, 0), d=(1, 1), g=3),
        "dilated": dict(cin=4, cout=3, k=(3, 3), s=(1, 1), p=(2, 2, 2, 2), d=(2, 2), g=1),
        "asympad": dict(cin=2, cout=5, k=(2, 3), s=(3, 2), p=(0, 1, 2, 0), d=(1, 1), g=1),
    }[case]
    h, w = (int(v) for v in rng.integers(5, 24, 2))
    x = rng.standard_normal((1, cfg["cin"], h, w))
    wt = rng.standard_normal((cfg["cout"], cfg["cin"] // cfg["g"], *cfg["k"]))
    b = rng.standard_normal(cfg["cout"]) if rng.random() < 0.8 else None
    act = str(rng.choice(["none", "relu", "sigmoid", "clip"]))
    ho = (h + cfg["p"][0] + cfg["p"][2] - cfg["d"][0] * (cfg["k"][0] - 1) - 1) // cfg["s"][0] + 1
    wo = (w + cfg["p"][1] + cfg["p"][3] - cfg["d"][1] * (cfg["k"][1] - 1) - 1) // cfg["s"][1] + 1
    res = rng.standard_normal((1, cfg["cout"], ho, wo)) if rng.random() < 0.5 else None
    got, want = run_conv(
        kernel_backend, rng, x, wt, b, res, cfg["s"], cfg["p"], cfg["d"], cfg["g"], act, False
    )
    assert_close(got, want, f"{case} {h}x{w} act={act} res={res is not None}")


@pytest.mark.parametrize("sizes", [(3, 5, 7, 9), (37, 70, 9, 13), (64, 64, 8, 8), (100, 17, 5, 31)])
def test_conv1x1_matches_reference(kernel_backend, rng, sizes):
    cin, cout, h, w = sizes
    x = rng.standard_normal((1, cin, h, w))
    wt = rng.standard_normal((cout, cin, 1, 1))
    b = rng.standard_normal(cout) if rng.random() < 0.8 else None
    res = rng.standard_normal((1, cout, h, w)) if rng.random() < 0.5 else None
    act = str(rng.choice(["none", "relu", "sigmoid", "clip"]))
    got, want = run_conv(
        kernel_backend, rng, x, wt, b, res, (1, 1), (0, 0, 0, 0), (1, 1), 1, act, True
    )
    assert_close(got, want, f"1x1 {sizes} act={act}")


@pytest.mark.parametrize("kind", ["max", "avg", "avg_incl"])
def test_pool2d_matches_reference(kernel_backend, rng, kind):
    c, h, w = 3, int(rng.integers(5, 30)), int(rng.integers(5, 30))
    x = rng.standard_normal((1, c, h, w))
    k, s, p = (3, 3), (2, 2), (1, 1, 1, 1)
    if kind == "avg_incl":
        k, s, p = (3, 2), (2, 1), (1, 0, 1, 1)
    ho, wo = (h + p[0] + p[2] - k[0]) // s[0] + 1, (w + p[1] + p[3] - k[1]) // s[1] + 1
    x0, xcs = 1, 2
    xb = kernel_backend.to_device(embed(rng, x, x0, xcs))
    y = kernel_backend.full((1, 2 + c, ho, wo), np.nan, f32)
    nn(kernel_backend).kernel("nn_pool2d")(
        (-(-(ho * wo) // 256), c),
        256,
        (
            xb,
            i32(x0),
            i32(xcs),
            i32(c),
            i32(h),
            i32(w),
            y,
            i32(2),
            i32(ho),
            i32(wo),
            i32(k[0]),
            i32(k[1]),
            i32(s[0]),
            i32(s[1]),
            i32(p[0]),
            i32(p[1]),
            i32(kind != "max"),
            i32(kind == "avg_incl"),
        ),
    )
    want = interp.pool2d(x, kind[:3], k, s, p, kind == "avg_incl")
    assert_close(kernel_backend.to_host(y)[:, 2:], want, kind)


def test_global_avgpool_matches_reference(kernel_backend, rng):
    c, h, w = 5, 17, 23
    x = rng.standard_normal((1, c, h, w))
    y = kernel_backend.full((1, c + 1, 1, 1), np.nan, f32)
    nn(kernel_backend).kernel("nn_global_avgpool")(
        c,
        256,
        (
            kernel_backend.to_device(embed(rng, x, 0, 2)),
            i32(0),
            i32(2),
            i32(c),
            i32(h * w),
            y,
            i32(1),
        ),
    )
    assert_close(kernel_backend.to_host(y)[:, 1:], x.mean(axis=(2, 3), keepdims=True), "gap")


# nn.cu's nearest modes; 4 is Resize-10's (ceil on an axis scaled down, floor on one up)
NEAREST_CODES = {"": 0, "floor": 0, "ceil": 1, "round_prefer_floor": 2, "round_prefer_ceil": 3}
NEAREST_CODES["simple"] = 4
RESIZE_CASES = [
    ("nearest", "asymmetric", "floor", (2.0, 2.0)),
    ("nearest", "half_pixel", "round_prefer_ceil", (3.0, 0.5)),
    ("nearest", "asymmetric", "round_prefer_floor", (0.5, 2.0)),
    ("nearest", "align_corners", "ceil", (2.0, 3.0)),
    ("nearest", "asymmetric", "simple", (0.75, 2.0)),
    ("nearest", "asymmetric", "simple", (3.0, 0.75)),
    ("linear", "half_pixel", "", (2.0, 0.5)),
    ("linear", "align_corners", "", (3.0, 2.0)),
    ("linear", "asymmetric", "", (2.0, 2.0)),
    ("linear", "pytorch_half_pixel", "", (0.5, 4.0)),
]


@pytest.mark.parametrize("case", RESIZE_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_resize_matches_reference(kernel_backend, rng, case):
    mode, coord, nearest, (sy, sx) = case
    c, h, w = 2, int(rng.integers(2, 12)) * 2, int(rng.integers(2, 12)) * 2
    ho, wo = int(np.floor(h * sy)), int(np.floor(w * sx))
    x = rng.standard_normal((1, c, h, w))
    y = kernel_backend.full((1, c, ho, wo), np.nan, f32)
    codes = (
        {"nearest": 0, "linear": 1}[mode],
        {"asymmetric": 0, "half_pixel": 1, "pytorch_half_pixel": 2, "align_corners": 3}[coord],
        NEAREST_CODES[nearest],
    )
    nn(kernel_backend).kernel("nn_resize")(
        (-(-(ho * wo) // 256), c),
        256,
        (
            kernel_backend.to_device(x.astype(f32)),
            i32(0),
            i32(1),
            i32(c),
            i32(h),
            i32(w),
            y,
            i32(0),
            i32(ho),
            i32(wo),
            f32(sy),
            f32(sx),
            *(i32(v) for v in codes),
        ),
    )
    want = interp.resize2d(x, (ho, wo), (sy, sx), mode, coord, nearest or "floor")
    assert_close(kernel_backend.to_host(y), want, f"{case}")


def test_eltwise_binary_ops_copy_and_activations(kernel_backend, rng):
    """y = act(a op b) for + - * /, b of a's shape or one value per channel (b_hw = 1, read
    at every pixel), and a plain copy (b null); both read as strided channel views."""
    c, h, w = 4, 7, 9
    a, b = rng.standard_normal((1, c, h, w)), rng.standard_normal((1, c, h, w))
    b[np.abs(b) < 0.2] = 0.5  # a divisor well away from 0
    gate = rng.uniform(0.5, 2.0, (1, c, 1, 1))
    k = nn(kernel_backend).kernel("nn_eltwise")
    ab = kernel_backend.to_device(embed(rng, a, 1, 2))
    operands = {"none": (None, None, 1), "full": (b, embed(rng, b, 0, 1), h * w),
                "per-channel": (gate, embed(rng, gate, 2, 1), 1)}  # fmt: skip
    ops = {0: np.add, 1: np.subtract, 2: np.multiply, 3: np.divide}
    for act, name in enumerate(["none", "relu", "sigmoid", "clip"]):
        for kind, (bv, bh, b_hw) in operands.items():
            for binop, fn in ops.items() if bv is not None else [(0, None)]:
                y = kernel_backend.full((1, c + 3, h, w), np.nan, f32)
                bb = None if bh is None else kernel_backend.to_device(bh)
                b0, bcs = (0, 1) if kind == "full" else (2, 1)
                k((1, c), 256, (ab, i32(1), i32(2), bb, i32(b0), i32(bcs), i32(b_hw),
                                i32(binop), i32(c), i32(h * w), y, i32(3), i32(act),
                                f32(-0.3), f32(0.4)))  # fmt: skip
                want = interp.activation(a if fn is None else fn(a, bv), name, -0.3, 0.4)
                assert_close(kernel_backend.to_host(y)[:, 3:], want, f"{name} {kind} {binop}")


def test_softmax_over_channels(kernel_backend, rng):
    c, h, w = 80, 5, 7
    x = rng.standard_normal((1, c, h, w)) * 4
    y = kernel_backend.full((1, c + 5, h, w), np.nan, f32)
    nn(kernel_backend).kernel("nn_softmax_channels")(
        1,
        128,
        (
            kernel_backend.to_device(embed(rng, x, 2, 1)),
            i32(2),
            i32(1),
            i32(c),
            i32(h * w),
            y,
            i32(5),
        ),
    )
    assert_close(kernel_backend.to_host(y)[:, 5:], interp.softmax(x, 1), "softmax")


def test_channel_gather(kernel_backend, rng):
    c, h, w = 6, 5, 9
    x = rng.standard_normal((1, c, h, w))
    chans = rng.permutation(c)[:4]
    y = kernel_backend.full((1, 5, h, w), np.nan, f32)
    nn(kernel_backend).kernel("nn_channel_gather")(
        (1, 4),
        256,
        (
            kernel_backend.to_device(embed(rng, x, 1, 2)),
            i32(1),
            i32(2),
            kernel_backend.to_device(chans.astype(np.int32)),
            i32(4),
            i32(h * w),
            y,
            i32(1),
        ),
    )
    np.testing.assert_array_equal(kernel_backend.to_host(y)[:, 1:], x[:, chans].astype(f32))
