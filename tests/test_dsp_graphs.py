"""Graph shapes a QA pass found run wrong or crash on the kernels, each against onnxruntime on
fresh random inputs with every activation buffer poisoned (NaN): a channel shuffle whose Split
halves are both read, a strided-view output that another node reads too, Resize-10's rounding,
Resize-18's keep_aspect_ratio_policy and axes, Add/Mul/BatchNormalization/Concat with
constants, duplicate node names, and the one-line errors for what the device cannot run."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gputrack.device import get_backend, probe
from gputrack.dsp import fuse, onnx_import, plan
from gputrack.dsp.detector import Detector
from gputrack.dsp.onnx_import import load_model
from gputrack.dsp.runner import Network
from gputrack.errors import GputrackError


def _model(nodes, shape, outputs, inits=None, opset=13, input_type=TensorProto.FLOAT):
    graph = helper.make_graph(
        nodes,
        "qa",
        [helper.make_tensor_value_info("x", input_type, shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def matches_onnxruntime(backend, rng, model, what: str) -> dict[str, np.ndarray]:
    """Every output of `model` on `backend` (buffers poisoned) == onnxruntime's, fresh input."""
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    x = rng.standard_normal(shape).astype(np.float32)
    want = Network(model, get_backend("cpu")).run(x)
    net = Network(model, backend)
    for buf in net.plan.buffers:  # an element no kernel writes stays NaN
        buf[...] = np.nan
    net.run(rng.standard_normal(shape).astype(np.float32))  # what a step reads too early is
    got = net.run(x)  # the previous input's (or NaN)
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape, f"{what}: {name} shape {g.shape}, onnxruntime {w.shape}"
        assert not np.isnan(g).any(), f"{what}: {name} has unwritten (NaN) elements"
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(w).max())),
                                   err_msg=f"{what}: {name}")  # fmt: skip
    return got


def _w(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _bn(rng, c: int, prefix: str = "") -> dict[str, np.ndarray]:
    """BatchNormalization's scale, bias, mean, variance as constants named prefix + s/b/m/v."""
    positive = [rng.uniform(0.5, 2, c).astype(np.float32) for _ in range(2)]
    return dict(zip([prefix + k for k in "sbmv"], [positive[0], _w(rng, c), _w(rng, c),
                                                   positive[1]], strict=True))  # fmt: skip


def _shuffle(src: str, c: int, hw: tuple[int, int], out: str) -> tuple[list, dict]:
    """torchvision's channel shuffle in two groups: Reshape -> Transpose -> Reshape."""
    nodes = [
        helper.make_node("Reshape", [src, "s5"], [f"{out}_r"]),
        helper.make_node("Transpose", [f"{out}_r"], [f"{out}_t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", [f"{out}_t", "s4"], [out]),
    ]
    return nodes, {"s5": np.int64([1, 2, c // 2, *hw]), "s4": np.int64([1, c, *hw])}


def test_channel_shuffle_then_split_reads_both_halves_right(kernel_backend, rng):
    """Both halves of a Split after a shuffle are channel gathers of one node: each needs its
    own channel table (they shared the first half's, the second half was wrong)."""
    for c in (8, 12):
        h, w = int(rng.integers(3, 9)), int(rng.integers(3, 9))
        shuffle, inits = _shuffle("c", c, (h, w), "sh")
        nodes = [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            *shuffle,
            helper.make_node("Split", ["sh", "sp"], ["a", "b"], axis=1),
            helper.make_node("Relu", ["a"], ["ya"]),
            helper.make_node("Conv", ["b", "w2"], ["yb"]),
        ]
        inits.update(w=_w(rng, c, 3, 3, 3), sp=np.int64([c // 2, c // 2]),
                     w2=_w(rng, 5, c // 2, 1, 1))  # fmt: skip
        m = _model(nodes, [1, 3, h, w], ["ya", "yb"], inits)
        ops = fuse.optimise(load_model(m)).op_counts()
        assert ops.get("ChannelGather") == 2, ops
        matches_onnxruntime(kernel_backend, rng, m, f"shuffle + split, {c} channels")


def test_a_strided_view_output_that_other_nodes_read(kernel_backend, rng):
    """Every second channel is a graph output (copied out at the end) and is read by a Conv, a
    Concat and a residual Add: those read the live view, not the output's copy (which they
    read uninitialised)."""
    nodes = [
        helper.make_node("Conv", ["x", "wf"], ["f"], strides=[2, 2]),
        helper.make_node("Slice", ["f", "st", "en", "ax", "sp"], ["v"]),
        helper.make_node("Conv", ["v", "wh", "bh"], ["head"]),
        helper.make_node("Concat", ["head", "v"], ["cat"], axis=1),
        helper.make_node("Conv", ["v", "wr"], ["r"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["r", "v"], ["res"]),
    ]
    inits = {"wf": _w(rng, 12, 3, 2, 2), "st": np.int64([1]), "en": np.int64([12]),
             "ax": np.int64([1]), "sp": np.int64([2]), "wh": _w(rng, 7, 6, 1, 1),
             "bh": _w(rng, 7), "wr": _w(rng, 6, 6, 3, 3)}  # fmt: skip
    for outputs in (["head", "v"], ["v", "cat", "res"]):
        m = _model(nodes, [1, 3, 14, 18], outputs, inits)
        matches_onnxruntime(kernel_backend, rng, m, f"strided output {outputs}")


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_opset10_matches_onnxruntime(kernel_backend, rng, mode):
    """Resize-10 has no nearest_mode: onnxruntime floors the coordinate on an axis scaled up
    and ceils it on one scaled down (it was rounded, round_prefer_floor, as from opset 11)."""
    for sy, sx in [(3.0, 3.0), (0.5, 0.6), (1.5, 2.5), (0.6, 2.0), (0.75, 1.25), (2.0, 0.5)]:
        h, w = int(rng.integers(4, 11)), int(rng.integers(4, 11))
        node = helper.make_node("Resize", ["x", "s"], ["y"], mode=mode)
        m = _model([node], [1, 2, h, w], ["y"], {"s": np.float32([1, 1, sy, sx])}, opset=10)
        matches_onnxruntime(kernel_backend, rng, m, f"resize-10 {mode} {h}x{w} by {sy}, {sx}")


def test_resize_opset18_keep_aspect_ratio_policy_and_axes(kernel_backend, rng):
    """keep_aspect_ratio_policy as onnxruntime applies it (one scale, the least or largest of
    the axes named, sizes round(scale * input)), with and without `axes`; it was ignored."""
    cases = [
        ("not_larger", None, [1, 2, 16, 16]),  # over every axis: the channel's 1 wins
        ("not_smaller", None, [1, 2, 3, 2]),  # downscaling both: the channel's 1 wins
        ("not_larger", [2, 3], [16, 16]),
        ("not_smaller", [2, 3], [6, 20]),
        ("not_larger", [3, 2], [30, 7]),
        ("stretch", [-2, -1], [7, 30]),
        ("stretch", [2, 3], [5, 13]),
    ]
    for mode in ("nearest", "linear"):
        for policy, axes, sizes in cases:
            h, w = int(rng.integers(3, 9)), int(rng.integers(3, 9))
            attrs = {"mode": mode, "keep_aspect_ratio_policy": policy}
            if axes is not None:
                attrs["axes"] = axes
            node = helper.make_node("Resize", ["x", "", "", "sz"], ["y"], **attrs)
            m = _model([node], [1, 2, h, w], ["y"], {"sz": np.int64(sizes)}, opset=18)
            matches_onnxruntime(kernel_backend, rng, m, f"{mode} {policy} {axes} {sizes} {h}x{w}")
        node = helper.make_node("Resize", ["x", "", "sc"], ["y"], mode=mode, axes=[2, 3])
        m = _model([node], [1, 2, 5, 7], ["y"], {"sc": np.float32([2.0, 1.5])}, opset=18)
        matches_onnxruntime(kernel_backend, rng, m, f"{mode} scales with axes")
    # not_smaller over every axis scales the channels too: refused, saying how to mean H, W
    node = helper.make_node("Resize", ["x", "", "", "sz"], ["y"], keep_aspect_ratio_policy=
                            "not_smaller")  # fmt: skip
    m = _model([node], [1, 2, 4, 8], ["y"], {"sz": np.int64([1, 2, 16, 16])}, opset=18)
    with pytest.raises(GputrackError, match=r"channel axis.*not_smaller.*axes=\[2, 3\]"):
        load_model(m)
    # with negative axes onnxruntime ignores the policy (the spec does not): refused
    node = helper.make_node("Resize", ["x", "", "", "sz"], ["y"], axes=[-2, -1],
                            keep_aspect_ratio_policy="not_larger")  # fmt: skip
    m = _model([node], [1, 2, 4, 8], ["y"], {"sz": np.int64([7, 30])}, opset=18)
    with pytest.raises(GputrackError, match=r"negative axes \[-2, -1\] unsupported"):
        load_model(m)


def test_duplicate_node_names_are_refused_and_made_up_names_stay_unique(kernel_backend, rng):
    """Two nodes named alike (onnxruntime refuses the model) made BN folding write both convs'
    folded weights under one name; a made-up name ('Conv_1' for an unnamed node) must not take
    a name the model gives another node either."""
    bn = {**_bn(rng, 4, "A"), **_bn(rng, 4, "B")}

    def nodes(first: str, second: str) -> list:
        return [
            helper.make_node("Conv", ["x", "w1"], ["c1"], first, pads=[1, 1, 1, 1]),
            helper.make_node("Conv", ["x", "w2"], ["c2"], second, pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", ["c1", "As", "Ab", "Am", "Av"], ["y1"]),
            helper.make_node("BatchNormalization", ["c2", "Bs", "Bb", "Bm", "Bv"], ["y2"]),
        ]

    inits = {"w1": _w(rng, 4, 3, 3, 3), "w2": _w(rng, 4, 3, 3, 3), **bn}
    dup = _model(nodes("conv", "conv"), [1, 3, 6, 7], ["y1", "y2"], inits)
    with pytest.raises(GputrackError) as err:
        load_model(dup)
    assert "two nodes are named 'conv'" in str(err.value) and "\n" not in str(err.value)
    made_up = _model(nodes("Conv_1", ""), [1, 3, 6, 7], ["y1", "y2"], inits)
    matches_onnxruntime(kernel_backend, rng, made_up, "a given name like a made-up one")


def test_maxpool_indices_output(kernel_backend, rng, tmp_path):
    """Indices nobody reads are not computed (the model runs); read, they are one line."""
    pool = helper.make_node("MaxPool", ["x"], ["p", "idx"], kernel_shape=[2, 2], strides=[2, 2])
    conv = helper.make_node("Conv", ["p", "w"], ["y"])
    m = _model([pool, conv], [1, 3, 8, 10], ["y"], {"w": _w(rng, 4, 3, 1, 1)})
    matches_onnxruntime(kernel_backend, rng, m, "MaxPool with unread Indices")
    path = tmp_path / "idx.onnx"
    m = _model([pool, conv], [1, 3, 8, 10], ["y"], {"w": _w(rng, 4, 3, 1, 1)})
    m.graph.output.append(helper.make_tensor_value_info("idx", TensorProto.INT64, None))
    onnx.save(m, str(path))
    with pytest.raises(GputrackError) as err:
        load_model(path)
    msg = str(err.value)
    assert msg.startswith(f"model {path}: node 'MaxPool_0' (MaxPool): the Indices output")
    assert "\n" not in msg


def _affine_cases(rng, c: int, h: int, w: int) -> list[tuple[str, list, dict]]:
    """(what, nodes, constants) of one-constant Add/Mul and BatchNormalization, after a Conv
    (folded into it) and after a Relu (a depthwise 1x1 Conv of their own, or an Add of a
    constant of the full shape)."""
    conv = helper.make_node("Conv", ["x", "w"], ["t"], pads=[1, 1, 1, 1])
    relu = [conv, helper.make_node("Relu", ["t"], ["r"])]
    base = {"w": _w(rng, c, 3, 3, 3)}
    bn = _bn(rng, c)
    cases = []
    for shape in [(1, c, 1, 1), (c, 1, 1), (), (1,), (1, c, h, w), (1, 1, h, w), (w,), (h, 1)]:
        k = _w(rng, *shape)
        k[np.abs(k) < 0.2] = 0.5  # a divisor well away from 0
        for op in ("Add", "Mul", "Sub", "Div"):
            for first in (False, True):
                for pre, src in (([conv], "t"), (relu, "r")):
                    ins = ["k", src] if first else [src, "k"]
                    nodes = [*pre, helper.make_node(op, ins, ["y"])]
                    cases.append((f"{op} {shape} first={first} after {pre[-1].op_type}", nodes,
                                  {**base, "k": k}))  # fmt: skip
    for pre, src in (([conv], "t"), (relu, "r")):
        node = helper.make_node("BatchNormalization", [src, "s", "b", "m", "v"], ["y"])
        cases.append((f"BatchNormalization after {pre[-1].op_type}", [*pre, node], {**base, **bn}))
    return cases


def test_constant_operands_and_standalone_batchnorm(kernel_backend, rng):
    """Add/Mul/Sub/Div with a constant (any shape that broadcasts to the tensor's; one value
    per channel folds into a Conv or becomes a depthwise 1x1 one, others are uploaded at the
    tensor's shape) and BatchNormalization with no Conv to fold into: all on the device, but
    a constant minus or divided by a tensor where that is no per-channel affine map."""
    c, h, w = 5, 6, 7
    refused = 0
    for what, nodes, inits in _affine_cases(rng, c, h, w):
        m = _model(nodes, [1, 3, h, w], ["y"], inits)
        k = inits.get("k")
        per_channel = k is None or k.size in (1, c) and (k.ndim < 2 or k.shape[-2:] == (1, 1))
        op, first = nodes[-1].op_type, nodes[-1].input[0] == "k"
        if first and (op == "Div" or op == "Sub" and not per_channel):
            with pytest.raises(GputrackError, match="a tensor: only the tensor first"):
                Network(m, kernel_backend)
            refused += 1
            continue
        matches_onnxruntime(kernel_backend, rng, m, what)
    assert refused == 8 * 2 + 4 * 2  # every k / x; k - x for the 4 shapes varying over H or W


def test_elementwise_products_of_tensors(kernel_backend, rng):
    """SiLU (x * sigmoid(x)), a squeeze-and-excitation gate (x * sigmoid(conv(mean(x)))), a
    difference and a quotient of two tensors: on the device, as onnxruntime has them."""
    c, h, w = 6, 5, 7
    conv = helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])
    inits = {"w": _w(rng, c, 3, 3, 3), "v": _w(rng, c, c, 1, 1), "u": _w(rng, c, 3, 1, 1)}
    second = helper.make_node("Conv", ["x", "u"], ["d"])
    cases = {
        "silu": [helper.make_node("Sigmoid", ["c"], ["s"]),
                 helper.make_node("Mul", ["c", "s"], ["y"])],
        "se gate": [helper.make_node("GlobalAveragePool", ["c"], ["g"]),
                    helper.make_node("Conv", ["g", "v"], ["gv"]),
                    helper.make_node("Sigmoid", ["gv"], ["gs"]),
                    helper.make_node("Mul", ["c", "gs"], ["y"])],
        # torchvision's SqueezeExcitation: `scale * input`, the 1 x C x 1 x 1 gate first
        "se gate first": [helper.make_node("GlobalAveragePool", ["c"], ["g"]),
                          helper.make_node("Conv", ["g", "v"], ["gv"]),
                          helper.make_node("Sigmoid", ["gv"], ["gs"]),
                          helper.make_node("Mul", ["gs", "c"], ["y"])],
        "difference": [second, helper.make_node("Sub", ["c", "d"], ["y"])],
        "quotient": [second, helper.make_node("Sigmoid", ["d"], ["ds"]),
                     helper.make_node("Div", ["c", "ds"], ["y"])],
        "relu after": [second, helper.make_node("Sub", ["d", "c"], ["e"]),
                       helper.make_node("Relu", ["e"], ["y"])],
    }  # fmt: skip
    for what, nodes in cases.items():
        m = _model([conv, *nodes], [1, 3, h, w], ["y"], inits)
        matches_onnxruntime(kernel_backend, rng, m, what)


def test_integer_division_in_a_shape_computation_stays_integer(kernel_backend, rng):
    """Shape -> Gather -> Div(2) -> Reshape: ONNX divides integers truncating, in their type
    (NumPy's / made the shape float)."""
    shape = [1, 4, 6, 6]
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "i"], ["c"], axis=0),
             helper.make_node("Div", ["c", "two"], ["half"]),
             helper.make_node("Concat", ["one", "half", "neg"], ["ns"], axis=0),
             helper.make_node("Reshape", ["x", "ns"], ["r"]),
             helper.make_node("Reshape", ["r", "s"], ["y"])]  # fmt: skip
    inits = {"i": np.int64([1]), "two": np.int64([2]), "one": np.int64([1]),
             "neg": np.int64([-1])}  # fmt: skip
    matches_onnxruntime(kernel_backend, rng, _model(nodes, shape, ["y"], inits), "shape div")


def test_a_conv_output_read_by_batchnorm_and_the_graph(kernel_backend, rng):
    """The Conv's own output is an output too: the BatchNormalization is not folded into it but
    runs as a depthwise 1x1 convolution, followed by a fused ReLU."""
    c = 4
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    inits = {"w": _w(rng, c, 3, 1, 1), **_bn(rng, c)}
    m = _model(nodes, [1, 3, 5, 6], ["y", "c"], inits)
    g = fuse.optimise(load_model(m))
    assert g.op_counts() == {"Conv": 2}, g.op_counts()
    matches_onnxruntime(kernel_backend, rng, m, "Conv output read by BN and the graph")


def test_concat_with_a_constant_input(kernel_backend, rng):
    """A constant Concat input is copied into its slot from the weights (it was a KeyError)."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2]),
        helper.make_node("Concat", ["k", "c", "k2"], ["y"], axis=1),
        helper.make_node("Sigmoid", ["y"], ["z"]),
    ]
    inits = {"w": _w(rng, 3, 3, 2, 2), "k": _w(rng, 1, 2, 4, 5), "k2": _w(rng, 1, 1, 4, 5)}
    m = _model(nodes, [1, 3, 8, 10], ["y", "z"], inits)
    matches_onnxruntime(kernel_backend, rng, m, "Concat with constant inputs")


def test_identity_of_the_input_and_cast_to_float32(kernel_backend, rng):
    """An output that is the input under another name is copied; a Cast to float32 of an
    activation (already float32) is no step at all (both were refused)."""
    nodes = [
        helper.make_node("Identity", ["x"], ["y"]),
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Cast", ["c"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Relu", ["f"], ["z"]),
    ]
    m = _model(nodes, [1, 3, 4, 5], ["y", "z"], {"w": _w(rng, 2, 3, 1, 1)})
    matches_onnxruntime(kernel_backend, rng, m, "Identity of the input, Cast to float32")


def _refusal_cases(rng) -> dict[str, tuple[onnx.ModelProto, str]]:
    conv = helper.make_node("Conv", ["x", "w"], ["c"])
    w = {"w": _w(rng, 4, 3, 1, 1)}
    shape = [1, 3, 8, 8]

    def after_conv(*nodes, inits=None, opset=13):
        return _model([conv, *nodes], shape, ["y"], {**w, **(inits or {})}, opset)

    custom = after_conv(helper.make_node("Relu", ["c"], ["y"], domain="com.example"))
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    to_nchw = helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2])
    nhwc = _model([to_nchw, helper.make_node("Conv", ["t", "w"], ["y"])], [1, 8, 8, 3], ["y"], w)
    no_shape = _model([helper.make_node("Relu", ["x"], ["y"])], shape, ["y"])
    no_shape.graph.input[0].type.tensor_type.ClearField("shape")
    pads = np.int64([0, 0, 1, 1, 0, 0, 1, 1])
    return {
        "spatial": (after_conv(helper.make_node("Conv", ["c", "m"], ["s"]),
                               helper.make_node("Mul", ["c", "s"], ["y"]),
                               inits={"m": _w(rng, 1, 4, 1, 1)}),
                    "Mul of a 1 x 4 x 8 x 8 and a 1 x 1 x 8 x 8 tensor: the second must have"),
        "reciprocal": (after_conv(helper.make_node("Div", ["k", "c"], ["y"]),
                                  inits={"k": np.float32(1.0)}),
                       "a constant of shape () divided by a tensor"),
        "pad": (after_conv(helper.make_node("Pad", ["c", "p"], ["y"]), inits={"p": pads}),
                "no kernel for a Pad of its own (its result is a graph output"),
        "pad_max": (after_conv(helper.make_node("Pad", ["c", "p"], ["q"]),
                               helper.make_node("MaxPool", ["q"], ["y"], kernel_shape=[3, 3]),
                               inits={"p": pads}), "(it feeds a MaxPool)"),
        "crop": (after_conv(helper.make_node("Pad", ["c", "p"], ["y"]),
                            inits={"p": np.int64([0, 0, -1, 0, 0, 0, 1, 0])}),
                 "negative pads (cropping) are unsupported"),
        "cast": (after_conv(helper.make_node("Cast", ["c"], ["i"], to=TensorProto.INT32),
                            helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)),
                 "a Cast to int32: the device computes in float32 only"),
        "flat": (after_conv(helper.make_node("Flatten", ["c"], ["y"])),
                 "runs on the device only as a channel view"),
        "domain": (custom, "operator of domain 'com.example' unsupported"),
        "nhwc": (nhwc, "it looks channels-last (NHWC): export the model channels-first"),
        "no_shape": (no_shape, "input 'x' has no shape in the model"),
        "batch2": (_model([conv], [2, 3, 8, 8], ["c"], w),
                   "input 'x' is 2 x 3 x 8 x 8 (batch 2): the device takes one image"),
    }  # fmt: skip


def test_what_the_device_cannot_run_is_one_line_saying_why(tmp_path, rng):
    """Each refusal names the model (and the node) and says what is unsupported and why, not
    "only channel remaps of data movement ops become views" for every op without a kernel."""
    if not probe("emu").available:
        pytest.skip("emu backend unavailable")
    for name, (model, needle) in _refusal_cases(rng).items():
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        with pytest.raises(GputrackError) as err:
            Network(path, get_backend("emu"))
        msg = str(err.value)
        assert msg.startswith(f"model {path}: ") and needle in msg, (name, msg)
        assert "\n" not in msg and "data movement ops become views" not in msg, (name, msg)


def test_a_detector_input_that_is_no_nchw_image_is_one_line(tmp_path, rng):
    """A rank-3 input (and a channels-last one) on cpu: one line saying NCHW is expected, not a
    traceback from unpacking the shape."""
    conv = helper.make_node("Conv", ["u", "w"], ["y"], strides=[8, 8])
    rank3 = _model([helper.make_node("Unsqueeze", ["x", "a"], ["u"]), conv], [3, 32, 32], ["y"],
                   {"a": np.int64([0]), "w": _w(rng, 7, 3, 8, 8)})  # fmt: skip
    nhwc = _model([helper.make_node("Transpose", ["x"], ["u"], perm=[0, 3, 1, 2]), conv],
                  [1, 32, 32, 3], ["y"], {"w": _w(rng, 7, 3, 8, 8)})  # fmt: skip
    for name, model, needle in [
        ("rank3", rank3, "1 x 3 x H x W (NCHW); it is 3 x 32 x 32"),
        ("nhwc", nhwc, "it is 1 x 32 x 32 x 3; it looks channels-last (NHWC)"),
    ]:
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        with pytest.raises(GputrackError) as err:
            Detector(path, get_backend("cpu"))
        msg = str(err.value)
        assert msg.startswith(f"model {path}: ") and needle in msg and "\n" not in msg, msg


def test_an_unforeseen_exception_is_one_line_naming_the_model_and_node(tmp_path, monkeypatch):
    """A bug or an unforeseen model while importing, fusing or planning: one line naming the
    model (and the node where there is one), the original exception chained for the tests."""
    path = tmp_path / "relu.onnx"
    onnx.save(_model([helper.make_node("Relu", ["x"], ["y"], "my_relu")], [1, 2, 3, 4], ["y"]),
              str(path))  # fmt: skip

    def boom(*args, **kwargs):
        raise KeyError("boom")

    steps = [(onnx_import, "normalise", "node 'my_relu' (Relu): could not be handled"),
             (fuse, "fold_pad", "could not be handled"),
             (plan, "_node_steps", "node 'my_relu' (Relu): could not be handled")]  # fmt: skip
    for module, name, needle in steps:
        if module is plan and not probe("emu").available:
            continue
        with monkeypatch.context() as patch:
            patch.setattr(module, name, boom)
            with pytest.raises(GputrackError) as err:
                Network(path, get_backend("emu" if module is plan else "cpu"))
        msg = str(err.value)
        assert msg == f"model {path}: {needle} (KeyError: 'boom')", msg
        assert isinstance(err.value.__cause__, KeyError), name


def test_opset18_split_by_num_outputs_with_a_smaller_last_chunk(kernel_backend, rng):
    """Split-18 with num_outputs that does not divide: chunks of ceil(size / n), the last
    smaller (7 channels into 3, 3, 1), as onnxruntime has it; one whose last chunk would be
    empty or negative is refused, as onnxruntime refuses it."""
    conv = helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])
    w = {"w": _w(rng, 7, 3, 3, 3)}
    for n in (3, 2, 4):
        split = helper.make_node("Split", ["c"], [f"y{i}" for i in range(n)], axis=1,
                                 num_outputs=n)  # fmt: skip
        relu = helper.make_node("Relu", [f"y{n - 1}"], ["r"])  # the short chunk, read on
        m = _model([conv, split, relu], [1, 3, 6, 5], [f"y{i}" for i in range(n - 1)] + ["r"],
                   w, opset=18)  # fmt: skip
        got = matches_onnxruntime(kernel_backend, rng, m, f"split 7 into {n}")
        assert got["r"].shape[1] == 7 - (n - 1) * -(-7 // n)
    bad = helper.make_node("Split", ["v5"], [f"z{i}" for i in range(4)], axis=1, num_outputs=4)
    conv5 = helper.make_node("Conv", ["x", "u"], ["v5"])
    m = _model([conv5, bad], [1, 3, 4, 4], [f"z{i}" for i in range(4)],
               {"u": _w(rng, 5, 3, 1, 1)}, opset=18)  # fmt: skip
    with pytest.raises(GputrackError, match="size 5 does not split into 4 chunks of 2"):
        load_model(m)
