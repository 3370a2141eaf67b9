"""Edge cases of the kernels that the per-stage tests do not reach: the smallest frames, widths
of 2 mod 4/8/16, one tile plus 2, tall-thin and short-wide frames, every Bayer pattern with every
demosaic method; the sensor model at those sizes; tiny ONNX models through gputrack.dsp against
onnxruntime (1x1 inputs, odd channel counts, stride-2 convolutions on odd sizes, asymmetric and
SAME pads, depthwise with a channel multiplier, pooling with pads, every Resize mode, concat at
odd channel offsets); detect.cu with no candidates, every cell a candidate, equal scores and
identical boxes. Outputs are poisoned beforehand and inputs are fresh random numbers."""

from __future__ import annotations

import numpy as np
import pytest

from gputrack.device import get_backend
from gputrack.dsp.decode import (
    DetectParams,
    FrameMapping,
    candidates_reference,
    decode_reference,
)
from gputrack.dsp.runner import Network
from gputrack.isp import IspParams, TensorSpec
from gputrack.isp.params import BAYER_PATTERNS, DEMOSAIC_METHODS
from gputrack.sensor import model
from gputrack.sensor.frame import RawFrame
from tests.test_dsp_decode import launch_poisoned, random_head
from tests.test_dsp_graphs import matches_onnxruntime
from tests.test_isp_kernels import run_and_compare

# --- ISP -------------------------------------------------------------------------------------

# (w, h): the smallest frame; widths 2 mod 4, 2 mod 8 and 2 mod 16 (the 16-byte paths' rests);
# one 64-pixel tile plus 2 either way; tall-thin and short-wide frames.
ISP_SIZES = [(4, 4), (6, 4), (10, 6), (18, 10), (34, 8), (66, 18), (4, 66), (130, 4), (8, 130)]


@pytest.mark.parametrize("size", ISP_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_isp_every_pattern_and_method_at_edge_sizes(kernel_backend, rng, size):
    """RGB8, NV12, the float image and the tensor (float16 or BGR, area or bilinear, letterbox
    both ways or stretched) for every pattern x method, at 10/12/14 bits with pixels at the
    white level (clipped cells for grey world), lens shading on or off."""
    w, h = size
    for pattern in BAYER_PATTERNS:
        for method in DEMOSAIC_METHODS:
            depth = int(rng.choice([10, 12, 14]))
            white = (1 << depth) - 1
            raw = rng.integers(0, white + 1, (h, w)).astype(np.uint16)
            raw[rng.random((h, w)) < 0.1] = white
            params = IspParams(
                pattern=pattern,
                demosaic=method,
                bit_depth=depth,
                wb="auto" if rng.random() < 0.5 else tuple(rng.uniform(0.5, 3.0, 3)),
                lens_shading=tuple(rng.uniform(0, 0.5, 2)) if rng.random() < 0.5 else (0.0, 0.0),
                nv12=True,
                tensor=TensorSpec(
                    int(rng.integers(1, 40)),
                    int(rng.integers(1, 40)),
                    resize=str(rng.choice(["area", "bilinear"])),
                    letterbox=bool(rng.random() < 0.7),
                    channel_order=str(rng.choice(["RGB", "BGR"])),
                    dtype=str(rng.choice(["float32", "float16"])),
                ),
            )
            frame = RawFrame(raw, pattern=pattern, bit_depth=depth)
            run_and_compare(kernel_backend, frame, params, f"{w}x{h} {pattern} {method} {depth}")


# --- sensor model ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(4, 4), (6, 4), (130, 4), (4, 130), (258, 6)])
def test_sensor_model_at_edge_sizes(kernel_backend, rng, size):
    """sensor.cu (a thread per pixel pair, 64 pairs a block row) at the smallest frame, widths
    of 2 mod 4 and one block plus one pair, every pattern, noise on and off: the same codes as
    the float64 reference but for float32 rounding (one code, rarely)."""
    w, h = size
    for pattern in BAYER_PATTERNS:
        for noise in (False, True):
            shading = (0.3, 0.1) if rng.random() < 0.5 else (0.0, 0.0)
            depth = int(rng.choice([10, 12, 14]))
            isp = IspParams(pattern=pattern, bit_depth=depth, lens_shading=shading)
            sp = model.SensorParams(isp=isp, noise=noise, seed=int(rng.integers(1 << 62)))
            sensor = model.SensorModel(sp, kernel_backend)
            frame = int(rng.integers(0, 1000))
            for scene in (
                rng.integers(0, 256, (h, w, 3)).astype(np.uint8),
                rng.uniform(-0.05, 1.1, (h, w, 3)).astype(np.float32),
            ):
                sensor.render(scene, frame)
                sensor._buffers["raw"][...] = 0xA5A5  # poisoned: every pixel must be written
                got = sensor.render(scene, frame).data
                want = model.reference(scene, sp, frame)
                d = np.abs(got.astype(np.int64) - want.astype(np.int64))
                assert d.max() <= 1, f"{w}x{h} {pattern} noise={noise}: off by {d.max()}"
                assert (d > 0).sum() <= 1 + d.size // 100, f"{w}x{h} {pattern} noise={noise}"


# --- network kernels through gputrack.dsp, against onnxruntime --------------------------------


def _onnx_model(nodes, shape, outputs, inits, opset=13):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "edge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _against_onnxruntime(backend, rng, m, shape, what: str) -> None:
    assert tuple(d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim) == shape
    matches_onnxruntime(backend, rng, m, what)


def _conv_cases():
    # (cin, cout, k, stride, pads or auto_pad, group)
    return [
        (3, 5, 3, 2, (1, 1, 1, 1), 1),
        (3, 5, 3, 2, (0, 1, 2, 0), 1),  # asymmetric pads
        (3, 7, 3, 2, "SAME_UPPER", 1),
        (3, 7, 4, 2, "SAME_LOWER", 1),
        (4, 8, 3, 1, (1, 1, 1, 1), 4),  # depthwise, channel multiplier 2
        (6, 6, 5, 2, (2, 2, 2, 2), 6),
        (17, 65, 1, 1, (0, 0, 0, 0), 1),  # pointwise: channels off the 16/64 tiles
        (6, 9, 1, 1, (0, 0, 0, 0), 3),  # grouped 1x1: the direct kernel
        (17, 3, 1, 2, (0, 0, 0, 0), 1),  # 1x1 stride 2
        (5, 70, 1, 1, (0, 1, 0, 1), 1),  # 1x1 with pads
    ]


@pytest.mark.parametrize("hw", [(1, 1), (7, 9), (5, 4)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_conv_edge_cases_match_onnxruntime(kernel_backend, rng, hw):
    from onnx import helper

    h, w = hw
    for cin, cout, k, s, pads, g in _conv_cases():
        attrs = {"strides": [s, s], "group": g}
        if isinstance(pads, str):
            attrs["auto_pad"] = pads
            ho, wo = -(-h // s), -(-w // s)
        else:
            attrs["pads"] = list(pads)
            ho = (h + pads[0] + pads[2] - k) // s + 1
            wo = (w + pads[1] + pads[3] - k) // s + 1
        if ho < 1 or wo < 1:
            continue
        wt = rng.standard_normal((cout, cin // g, k, k)).astype(np.float32)
        bias = rng.standard_normal(cout).astype(np.float32)
        m = _onnx_model([helper.make_node("Conv", ["x", "W", "B"], ["y"], **attrs)],
                        (1, cin, h, w), ["y"], {"W": wt, "B": bias})  # fmt: skip
        _against_onnxruntime(kernel_backend, rng, m, (1, cin, h, w),
                             f"conv {h}x{w} {cin}->{cout} k{k} s{s} {pads} g{g}")  # fmt: skip


def test_pooling_with_pads_matches_onnxruntime(kernel_backend, rng):
    from onnx import helper

    for h, w in [(1, 1), (7, 9), (5, 4)]:
        for op, k, s, pads, incl in [
            ("MaxPool", 3, 2, (1, 1, 1, 1), 0),
            ("MaxPool", 2, 2, (0, 0, 1, 1), 0),
            ("MaxPool", 3, 1, (1, 1, 1, 1), 0),
            ("AveragePool", 3, 2, (1, 1, 1, 1), 0),
            ("AveragePool", 3, 2, (1, 1, 1, 1), 1),
            ("AveragePool", 3, 1, (0, 1, 2, 0), 1),
        ]:
            if min(h + pads[0] + pads[2], w + pads[1] + pads[3]) < k:
                continue  # no output
            attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": list(pads)}
            if op == "AveragePool":
                attrs["count_include_pad"] = incl
            m = _onnx_model([helper.make_node(op, ["x"], ["y"], **attrs)], (1, 3, h, w), ["y"], {})
            _against_onnxruntime(kernel_backend, rng, m, (1, 3, h, w),
                                 f"{op} {h}x{w} k{k} s{s} {pads} incl={incl}")  # fmt: skip
    for hw in [(1, 1), (33, 17)]:
        m = _onnx_model([helper.make_node("GlobalAveragePool", ["x"], ["y"])], (1, 5, *hw),
                        ["y"], {})  # fmt: skip
        _against_onnxruntime(kernel_backend, rng, m, (1, 5, *hw), f"global average {hw}")


RESIZE_COORDS = ("asymmetric", "half_pixel", "pytorch_half_pixel", "align_corners")


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_modes_match_onnxruntime(kernel_backend, rng, mode):
    """Every coordinate mode (and nearest mode) from and to 1x1 and odd sizes, by output sizes
    and by scales. (Nearest at an exact tie in round_prefer_ceil is left out: onnxruntime
    breaks float32's 3.4999998 upward there, and so does no formula it documents.)"""
    from onnx import helper

    nearest_modes = ("floor", "ceil", "round_prefer_floor") if mode == "nearest" else ("floor",)
    for h, w in [(1, 1), (3, 5), (7, 4)]:
        for coord in RESIZE_COORDS:
            for nm in nearest_modes:
                empty = np.zeros(0, np.float32)
                sizes = np.array([1, 2, int(rng.integers(1, 12)), int(rng.integers(1, 12))])
                scales = np.array([1, 1, *rng.choice([2.0, 3.0, 0.5, 1.5, 2.5, 0.75], 2)],
                                  np.float32)  # fmt: skip
                cases = [(["x", "r", "s", "z"], {"r": empty, "s": empty, "z": sizes})]
                if int(h * scales[2]) >= 1 and int(w * scales[3]) >= 1:
                    cases.append((["x", "r", "s"], {"r": empty, "s": scales}))
                for inputs, inits in cases:
                    node = helper.make_node("Resize", inputs, ["y"], mode=mode,
                                            coordinate_transformation_mode=coord,
                                            nearest_mode=nm)  # fmt: skip
                    m = _onnx_model([node], (1, 2, h, w), ["y"], inits)
                    _against_onnxruntime(kernel_backend, rng, m, (1, 2, h, w),
                                         f"resize {h}x{w} {mode} {coord} {nm} {inits}")  # fmt: skip


def test_resize_by_scales_has_onnxruntimes_output_size(kernel_backend, rng):
    """floor(size * scale) with the product in float32, as onnxruntime has it: 5 rows scaled by
    2.6 (2.5999999 as a float32) are 13, and 10 columns by 0.7 are 7. The importer took the
    product in float64 (12.9999995 -> 12, 6.9999999 -> 6): the device output had a row and
    a column fewer than the cpu backend's."""
    from onnx import helper

    for h, w, sy, sx, mode in [(5, 10, 2.6, 0.7, "nearest"), (10, 5, 1.3, 2.6, "linear")]:
        inits = {"r": np.zeros(0, np.float32), "s": np.array([1, 1, sy, sx], np.float32)}
        node = helper.make_node("Resize", ["x", "r", "s"], ["y"], mode=mode)
        m = _onnx_model([node], (1, 2, h, w), ["y"], inits)
        net = Network(m, get_backend("cpu"))
        assert Network(m, kernel_backend).graph.shapes["y"] == (1, 2, int(h * sy + 1e-6),
                                                                int(w * sx + 1e-6))  # fmt: skip
        assert net.run(np.zeros((1, 2, h, w), np.float32))["y"].shape[2:] == (
            int(h * sy + 1e-6), int(w * sx + 1e-6))  # fmt: skip
        _against_onnxruntime(kernel_backend, rng, m, (1, 2, h, w), f"resize {h}x{w} {sy} {sx}")


def test_concat_at_odd_channel_offsets_matches_onnxruntime(kernel_backend, rng):
    """Producers written straight into their channel slot at offsets 1, 4, 7, 12; the graph
    input and a repeated tensor copied in; a concat of a concat; softmax over the result."""
    from onnx import helper

    w1 = rng.standard_normal((1, 3, 1, 1)).astype(np.float32)
    w2 = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["a"]),
        helper.make_node("Relu", ["x"], ["b"]),
        helper.make_node("Conv", ["x", "W2"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["a", "x", "b", "c", "a"], ["y"], axis=1),
        helper.make_node("Sigmoid", ["y"], ["d"]),
        helper.make_node("Concat", ["d", "y"], ["z0"], axis=1),
        helper.make_node("Softmax", ["z0"], ["z"], axis=1),
    ]
    m = _onnx_model(nodes, (1, 3, 5, 7), ["y", "z"], {"W1": w1, "W2": w2})
    _against_onnxruntime(kernel_backend, rng, m, (1, 3, 5, 7), "concat at odd offsets")


# --- detection decode + NMS ------------------------------------------------------------------


def _decode_equals_reference(backend, head, params, mapping, what: str) -> np.ndarray:
    want = decode_reference(head, params, mapping)
    n, host = launch_poisoned(backend, head, params, mapping)
    assert n == len(want), f"{what}: {n} kept, reference {len(want)}"
    assert np.isnan(host[n:]).all(), f"{what}: rows beyond the count written"
    got = _canonical_order(host[:n], want)
    np.testing.assert_array_equal(got[:, 5], want[:, 5], err_msg=what)
    np.testing.assert_allclose(got[:, :5], want[:, :5], rtol=1e-5, atol=1e-3, err_msg=what)
    return want


def _canonical_order(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """`got` with each run of rows whose reference scores are within 4 ulp of each other
    reordered as the reference has it (a run whose scores are all equal in both excepted: ties by
    cell index stay exact). powf (a GPU's
    is within 2 ulp) and NumPy's power may round a score one ulp apart, which swaps two
    near-equal candidates: hundreds of random scores kept at IoU threshold 1 meet such a pair
    now and then. Rows are matched by box and class inside the run; a row with no match stays
    where it is, and fails the comparison."""
    tol = 1e-3 * np.maximum(1.0, np.abs(want[:, :4]).max(axis=1))
    keys = [0, 1, 2, 3, 5]
    if len(got) == len(want) and (np.abs(got[:, keys] - want[:, keys]).max(axis=1) <= tol).all():
        return got  # already in the reference's order
    out = got.copy()
    start = 0
    for i in range(1, len(want) + 1):
        if i < len(want) and 0.0 <= want[i - 1, 4] - want[i, 4] <= 4 * np.spacing(want[i - 1, 4]):
            continue
        # A tie in both the reference's and the kernel's scores must keep its exact order (by
        # cell index); where either breaks it by an ulp (the reference's 0.8084241 twice, the
        # kernel's second 1 ulp lower, or the other way round) the run is matched row by row
        tie = len(set(got[start:i, 4].tolist()) | set(want[start:i, 4].tolist())) == 1
        if i - start > 1 and not tie:
            rest = list(range(start, i))
            for k in range(start, i):
                d = np.abs(got[rest][:, keys] - want[k, keys]).max(axis=1)
                if d.min() <= tol[k]:
                    out[k] = got[rest.pop(int(d.argmin()))]
        start = i
    return out


@pytest.mark.parametrize("grid", [(1, 1), (32, 32), (1, 1024), (1024, 1), (31, 33)])
def test_decode_edge_cases(kernel_backend, rng, grid):
    """No candidate; every one of 1024 cells a candidate (the whole sort) with max_det 1 and
    1024; all scores equal (ties by cell index); equal scores with boxes of the whole input
    (heavy overlap), threshold IoU 1 keeping them all; boxes far past the frame edge or of no
    width or height (tanh and sigmoid of +-30): those with no area once clipped are dropped."""
    gh, gw = grid
    spec = TensorSpec(width=int(rng.integers(50, 400)), height=int(rng.integers(50, 400)))
    mapping = FrameMapping.of(spec, 2 * int(rng.integers(2, 1000)), 2 * int(rng.integers(2, 1000)))
    for kind in ("none", "equal", "overlap", "edge"):
        head = random_head(rng, int(rng.integers(1, 4)), gh, gw)
        if kind == "none":
            head[0, 0] = 0.01  # scores about 0.06
        elif kind == "equal":
            head[0, 0], head[0, 5:], head[0, 5] = 0.9, 0.0, 1.0
        elif kind == "overlap":
            head[0, 0], head[0, 5:], head[0, 5] = 0.8, 0.0, 1.0
            head[0, 1:3], head[0, 3:5] = 0.0, 50.0  # every box as wide and high as the input
        else:
            head[0, 1:3] = rng.choice([-30.0, 30.0], (2, gh, gw))
            head[0, 3:5] = rng.choice([-30.0, 30.0, 0.0], (2, gh, gw))
        for score, iou, max_det in [(0.1, 0.5, 1), (0.5, 1.0, 1024), (0.05, 0.0, 300),
                                    (1.0, 0.5, 10), (0.3, 0.65, 5)]:  # fmt: skip
            if kind == "none" and score < 0.1:
                # scores of 0.05..0.063 from powf: a 1-ulp difference from NumPy's power
                # reorders near-equal scores (not a kernel error: the same float32 formula)
                continue
            p = DetectParams(score=score, iou=iou, max_det=max_det)
            want = _decode_equals_reference(kernel_backend, head, p, mapping, f"{grid} {kind} {p}")
            if kind == "none" and score >= 0.1:
                assert len(want) == 0
            if kind in ("equal", "overlap") and iou == 1.0 and score < 0.8:
                # nothing removed at IoU 1: every candidate with an area in the frame is kept
                kept = len(candidates_reference(head, p, mapping)[0])
                assert len(want) == min(max_det, kept)
                if kind == "overlap":  # each box covers the frame's centre: none dropped
                    assert len(want) == min(max_det, gh * gw)
            if kind == "equal" and len(want) > 1:
                assert (want[:, 4] == want[0, 4]).all()
            if kind == "edge":  # no detection without area (they were kept, clipped to 0)
                assert (want[:, 2] > want[:, 0]).all() and (want[:, 3] > want[:, 1]).all()
            if kind == "edge" and iou == 1.0 and max_det == 1024:  # nothing removed or cut
                f = np.float32
                cand = head[0, 0] ** f(0.6) * head[0, 5:].max(axis=0) ** f(0.4) > f(score)
                flat = ((head[0, 3] == -30.0) | (head[0, 4] == -30.0)) & cand  # ~1e-13 wide
                assert len(want) < cand.sum() or not flat.any()
