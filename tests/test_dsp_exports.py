"""What real exporters write, fed to the importer: each runs on the kernels (buffers poisoned,
fresh random inputs) as onnxruntime runs it, or is refused in one line saying what and why.
A dynamic batch (torchvision, YOLO), dim_value -1, Constant's value_float/_ints/sparse_value
forms, an unread graph input, Upsample (opsets 7 and 9), the mobile activations (HardSigmoid,
HardSwish, LeakyRelu, Tanh) fused and alone, ReduceMean over H and W, GlobalMaxPool, float16
exports, external data, initializers listed as inputs and onnxruntime's run-time refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gputrack.device import get_backend
from gputrack.dsp import fuse, interp
from gputrack.dsp.onnx_import import load_model
from gputrack.dsp.runner import Network
from gputrack.errors import GputrackError

f32, i32 = np.float32, np.int32


def _model(nodes, shape, outputs, inits=None, opset=13, extra_inputs=(), itype=TensorProto.FLOAT):
    graph = helper.make_graph(
        nodes,
        "exports",
        [helper.make_tensor_value_info("x", itype, shape), *extra_inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _w(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(f32)


def matches(backend, rng, model, what: str) -> Network:
    """Every output on `backend` (buffers poisoned, a first run on another input) ==
    onnxruntime's; the input shape is the one gputrack takes (a named batch as 1)."""
    cpu = Network(model, get_backend("cpu"))
    x = rng.standard_normal(cpu.input_shape).astype(f32)
    want = cpu.run(x)
    net = Network(model, backend)
    for buf in net.plan.buffers:
        buf[...] = np.nan
    net.run(rng.standard_normal(cpu.input_shape).astype(f32))
    got = net.run(x)
    for name, w in want.items():
        assert got[name].shape == w.shape, f"{what}: {name} {got[name].shape} vs {w.shape}"
        assert not np.isnan(got[name]).any(), f"{what}: {name} has unwritten elements"
        np.testing.assert_allclose(got[name], w, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(w).max()),
                                   err_msg=f"{what}: {name}")  # fmt: skip
    return net


def one_line(err: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg
    return msg


def _dynamic(m: onnx.ModelProto, axis: int, name: str | None) -> onnx.ModelProto:
    """Input axis `axis` made dynamic: named `name`, or dim_value -1 (name None)."""
    dim = m.graph.input[0].type.tensor_type.shape.dim[axis]
    if name is None:
        dim.dim_value = -1
    else:
        dim.dim_param = name
    return m


@pytest.mark.parametrize("batch", ["N", "batch", None, ""])
def test_a_dynamic_batch_is_taken_as_one_with_a_note(kernel_backend, rng, batch):
    """torch.onnx.export(dynamic_axes={'images': {0: 'batch'}}) and YOLO exports name the
    batch; the sensor runs one image at a time, and a model defined for any batch gives batch
    1 what it always gives it: taken as 1, with a note. It was refused (a named batch) or, as
    dim_value -1, taken as a size: `network input must have shape (-1, 3, 8, 8)` at run."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["s"]),  # the batch read back: folded as 1
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "rest"], ["shape"], axis=0),
        helper.make_node("Reshape", ["c", "shape"], ["r"]),
        helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Relu", ["c"], ["z"]),
    ]
    inits = {"w": _w(rng, 4, 3, 3, 3), "zero": np.int64(0), "ax": np.int64([0]),
             "rest": np.int64([2, 2, 6, 5])}  # fmt: skip
    m = _dynamic(_model(nodes, [1, 3, 6, 5], ["z"], inits), 0, batch)
    net = matches(kernel_backend, rng, m, f"batch {batch!r}")
    assert net.input_shape == (1, 3, 6, 5)
    assert len(net.notes) == 1 and "batch" in net.notes[0] and "taken as 1" in net.notes[0]
    assert Network(m, get_backend("cpu")).notes == net.notes
    # the whole model, the Reshape of the batch included, in the interpreter
    m = _dynamic(_model(nodes, [1, 3, 6, 5], ["y", "z"], inits), 0, batch)
    cpu = Network(m, get_backend("cpu"))
    x = rng.standard_normal((1, 3, 6, 5)).astype(f32)
    got = interp.run_graph(cpu.graph, {"x": x})
    for k, v in cpu.run(x).items():
        np.testing.assert_allclose(got[k], v, rtol=1e-5, atol=1e-5)


def test_dynamic_h_or_w_is_refused_in_one_line(rng):
    """H and W fix the grid the decoder reads and every kernel's size: no guess, one line
    naming the dimensions (dim_value -1 included: it was taken as a size of -1)."""
    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    for axis, name, shown in [(2, "height", "(N, 3, height, 5)"), (3, None, "(N, 3, 6, -1)")]:
        m = _dynamic(_dynamic(_model([conv], [1, 3, 6, 5], ["y"], {"w": _w(rng, 4, 3, 1, 1)}),
                              axis, name), 0, "N")  # fmt: skip
        with pytest.raises(GputrackError) as err:
            load_model(m)
        one_line(err, "shapes must be static", shown, "only the batch may be named")


def test_constant_nodes_in_every_numeric_form(kernel_backend, rng):
    """Exporters write scalars and shapes as value_float / value_floats / value_int /
    value_ints, and sparse_value exists: all were refused ("only the 'value' form")."""
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(f32([5.0, -1.0])),
                                       numpy_helper.from_array(np.int64([1, 2])), [3])  # fmt: skip
    sparse2d = helper.make_sparse_tensor(numpy_helper.from_array(f32([2.0, 3.0])),
                                         numpy_helper.from_array(np.int64([[0, 0], [5, 0]])),
                                         [7, 1])  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Constant", [], ["kf"], value_float=2.5),
        helper.make_node("Constant", [], ["kfs"], value_floats=[1.0, -2.0, 3.0]),
        helper.make_node("Constant", [], ["ki"], value_int=1),
        helper.make_node("Constant", [], ["kis"], value_ints=[1, 3, 1, 1]),
        helper.make_node("Constant", [], ["ksp"], sparse_value=sparse),
        helper.make_node("Constant", [], ["ksp2"], sparse_value=sparse2d),
        helper.make_node("Reshape", ["kfs", "kis"], ["k3"]),
        helper.make_node("Reshape", ["ksp", "kis"], ["s3"]),
        helper.make_node("Mul", ["c", "kf"], ["a"]),
        helper.make_node("Add", ["a", "k3"], ["b"]),
        helper.make_node("Sub", ["b", "s3"], ["d"]),
        helper.make_node("Add", ["d", "ksp2"], ["e"]),  # 7 x 1: varies over H
        helper.make_node("Split", ["e"], ["y0", "y1"], axis=1, split=[1, 2]),
        helper.make_node("Unsqueeze", ["ki"], ["ki1"], axes=[0]),
        helper.make_node("Gather", ["y1", "ki1"], ["y"], axis=1),  # channel 1 of y1
    ]
    m = _model(nodes, [1, 3, 7, 6], ["y0", "y"], {"w": _w(rng, 3, 3, 3, 3)}, opset=12)
    matches(kernel_backend, rng, m, "Constant forms")
    text = helper.make_node("Constant", [], ["t"], value_string="hi")
    with pytest.raises(GputrackError) as err:
        load_model(_model([text, helper.make_node("Relu", ["x"], ["y"])], [1, 3, 4, 4], ["y"]))
    one_line(err, "Constant_0", "'value_string' is unsupported")


def test_a_graph_input_no_node_reads_is_ignored(kernel_backend, rng):
    """An exporter's leftover input is no second image: ignored with a note (onnxruntime is
    fed zeros for it, as it insists). It was "a network with one input is needed"."""
    extra = [helper.make_tensor_value_info("im_info", TensorProto.FLOAT, ["N", 3]),
             helper.make_tensor_value_info("flag", TensorProto.INT64, [1])]  # fmt: skip
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], [1, 3, 6, 5],
               ["y"], {"w": _w(rng, 4, 3, 3, 3)}, extra_inputs=extra)  # fmt: skip
    net = matches(kernel_backend, rng, m, "unread inputs")
    assert [n.split("'")[1] for n in net.notes] == ["im_info", "flag"]
    m = _model([helper.make_node("Add", ["x", "x2"], ["y"])], [1, 3, 6, 5], ["y"],
               extra_inputs=[helper.make_tensor_value_info("x2", TensorProto.FLOAT,
                                                           [1, 3, 6, 5])])  # fmt: skip
    with pytest.raises(GputrackError) as err:
        load_model(m)
    one_line(err, "one input (the image) is needed", "'x', 'x2'")


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_opsets_7_and_9(kernel_backend, rng, mode):
    """Upsample (YOLOv3 and other opset-9 exports) is Resize-10 as onnxruntime runs it:
    asymmetric coordinates, the nearest index floored. It was an unsupported operator."""
    for sy, sx in [(2.0, 2.0), (3.0, 1.0), (1.5, 2.5)]:
        scales = f32([1, 1, sy, sx])
        nine = helper.make_node("Upsample", ["x", "s"], ["y"], mode=mode)
        seven = helper.make_node(
            "Upsample", ["x"], ["y"], mode=mode, scales=[float(v) for v in scales]
        )
        for opset, node, inits in [(9, nine, {"s": scales}), (7, seven, {})]:
            m = _model([node], [1, 2, 5, 7], ["y"], inits, opset=opset)
            net = matches(kernel_backend, rng, m, f"Upsample-{opset} {mode} {sy}, {sx}")
            assert net.graph.op_counts() == {"Resize": 1}


MOBILE = [
    ("HardSigmoid", {}, 13),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, 13),  # what torch exports
    ("HardSwish", {}, 14),
    ("LeakyRelu", {}, 13),
    ("LeakyRelu", {"alpha": 0.1}, 13),
    ("Tanh", {}, 13),
]


@pytest.mark.parametrize("op,attrs,opset", MOBILE)
def test_mobile_activations_alone_and_fused(kernel_backend, rng, op, attrs, opset):
    """MobileNetV3's HardSwish/HardSigmoid, YOLO's LeakyRelu, Tanh: fused into a Conv (direct
    and pointwise), after an Add (nn_eltwise), alone on the input, and HardSigmoid as an SE
    gate; they were unsupported operators."""
    nodes = [
        helper.make_node(op, ["x"], ["a0"], **attrs),  # alone, on the input
        helper.make_node("Conv", ["a0", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node(op, ["c1"], ["a1"], **attrs),  # nn_conv2d's epilogue
        helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"]),
        helper.make_node(op, ["c2"], ["a2"], **attrs),  # nn_conv1x1's
        helper.make_node("Add", ["a2", "a1"], ["s"]),
        helper.make_node(op, ["s"], ["a3"], **attrs),  # after an Add: nn_eltwise
        helper.make_node("GlobalAveragePool", ["a3"], ["g"]),
        helper.make_node(op, ["g"], ["gate"], **attrs),
        helper.make_node("Mul", ["a3", "gate"], ["y"]),
    ]
    inits = {"w1": _w(rng, 5, 3, 3, 3), "w2": _w(rng, 5, 5, 1, 1), "b2": _w(rng, 5)}
    m = _model(nodes, [1, 3, 9, 11], ["y", "a1"], inits, opset=opset)
    ops = fuse.optimise(load_model(m)).op_counts()
    assert ops.get("Conv") == 2 and ops.get(op) == 3, ops  # two fused into the Convs
    matches(kernel_backend, rng, m, f"{op} {attrs}")


def test_mobile_activation_kernels_match_float64(kernel_backend, rng):
    """nn_act's new codes (nn_eltwise, the activation every kernel shares) against
    interp.activation in float64, around the kinks (HardSigmoid's and HardSwish's clip
    points, LeakyRelu's 0) and far out (tanh's saturation)."""
    c, h, w = 3, 9, 13
    a = rng.standard_normal((1, c, h, w)) * 4
    a.flat[:8] = [-3.0, 3.0, 0.0, -2.5, 2.5, 1e-3, -1e-3, 40.0]
    k = kernel_backend.load("nn.cu").kernel("nn_eltwise")
    ab = kernel_backend.to_device(a.astype(f32))
    for code, name, lo, hi in [(4, "hardsigmoid", 0.2, 0.5), (4, "hardsigmoid", 1 / 6, 0.5),
                               (5, "hardswish", 0.0, 0.0), (6, "leakyrelu", 0.1, 0.0),
                               (7, "tanh", 0.0, 0.0)]:  # fmt: skip
        y = kernel_backend.full((1, c + 2, h, w), np.nan, f32)
        k((1, c), 256, (ab, i32(0), i32(1), None, i32(0), i32(1), i32(1), i32(0), i32(c),
                        i32(h * w), y, i32(2), i32(code), f32(lo), f32(hi)))  # fmt: skip
        got = kernel_backend.to_host(y)
        assert np.isnan(got[:, :2]).all(), f"{name}: wrote before its channel offset"
        want = interp.activation(a.astype(f32).astype(np.float64), name, float(f32(lo)),
                                 float(f32(hi)))  # fmt: skip
        err = np.linalg.norm(got[:, 2:] - want) / np.linalg.norm(want)
        assert err < 1e-6, f"{name}: relative error {err:.2e}"
        np.testing.assert_allclose(got[:, 2:], want, rtol=1e-6, atol=1e-6, err_msg=name)


def test_reduce_mean_over_hw_and_global_max_pool(kernel_backend, rng):
    """x.mean((2, 3), keepdim=True) (timm's squeeze-and-excitation) is a GlobalAveragePool,
    opset 13's axes attribute and opset 18's input alike; GlobalMaxPool a MaxPool over the
    plane. Both were unsupported operators; any other ReduceMean is one line."""
    for opset in (13, 18):
        mean = (helper.make_node("ReduceMean", ["c", "axes"], ["m"]) if opset >= 18 else
                helper.make_node("ReduceMean", ["c"], ["m"], axes=[-2, -1]))  # fmt: skip
        nodes = [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            mean,
            helper.make_node("Sigmoid", ["m"], ["g"]),
            helper.make_node("Mul", ["c", "g"], ["y"]),
            helper.make_node("GlobalMaxPool", ["c"], ["gm"]),
        ]
        inits = {"w": _w(rng, 6, 3, 3, 3), "axes": np.int64([2, 3])}
        m = _model(nodes, [1, 3, 7, 10], ["y", "gm"], inits, opset=opset)
        matches(kernel_backend, rng, m, f"ReduceMean/GlobalMaxPool opset {opset}")
    for attrs in ({"axes": [1]}, {"axes": [2, 3], "keepdims": 0}, {}):
        node = helper.make_node("ReduceMean", ["x"], ["y"], **attrs)
        with pytest.raises(GputrackError) as err:
            load_model(_model([node], [1, 3, 4, 4], ["y"]))
        one_line(err, "ReduceMean_0", "only a mean over H and W")


def test_float16_exports(kernel_backend, rng, tmp_path):
    """float16 weights Cast to float32 fold at import and run; a float16 network (Casts
    around float16 compute, onnxconverter-common's keep_io_types) and a float16 input are one
    line each saying so (the device computes in float32; onnxruntime in float16 would not
    match it)."""
    cast = helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    m = _model([cast, conv], [1, 3, 6, 5], ["y"], {"w16": _w(rng, 4, 3, 3, 3).astype(np.float16)})
    matches(kernel_backend, rng, m, "float16 weights cast to float32")
    half = [
        helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
        helper.make_node("Conv", ["xh", "w16"], ["yh"], pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT),
    ]
    m = _model(half, [1, 3, 6, 5], ["y"], {"w16": _w(rng, 4, 3, 3, 3).astype(np.float16)})
    Network(m, get_backend("cpu")).run(np.zeros((1, 3, 6, 5), f32))  # onnxruntime runs it
    with pytest.raises(GputrackError) as err:
        Network(m, kernel_backend)
    one_line(err, "Cast_0", "float16", "export it in float32")
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [1, 3, 6, 5], ["y"],
               itype=TensorProto.FLOAT16)  # fmt: skip
    with pytest.raises(GputrackError) as err:
        load_model(m)
    one_line(err, "only float32 inputs", "export it in float32")


def test_external_data_and_initializers_listed_as_inputs(kernel_backend, rng, tmp_path):
    """Weights in a side file (save_as_external_data) load from the model's folder whatever
    the working directory; initializers also listed as graph inputs (IR 3 exporters) are
    weights, not inputs; a missing side file is one line."""
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    inits = {"w": _w(rng, 16, 3, 3, 3), "b": _w(rng, 16)}
    listed = [helper.make_tensor_value_info("w", TensorProto.FLOAT, [16, 3, 3, 3]),
              helper.make_tensor_value_info("b", TensorProto.FLOAT, [16])]  # fmt: skip
    m = _model([conv], [1, 3, 6, 5], ["y"], inits, extra_inputs=listed)
    m.ir_version = 3
    matches(kernel_backend, rng, m, "initializers listed as inputs")
    path = tmp_path / "ext.onnx"
    onnx.save_model(_model([conv], [1, 3, 6, 5], ["y"], inits), str(path),
                    save_as_external_data=True, location="ext.bin", size_threshold=0)  # fmt: skip
    assert (tmp_path / "ext.bin").is_file()
    x = rng.standard_normal((1, 3, 6, 5)).astype(f32)
    want = Network(path, get_backend("cpu")).run(x)["y"]
    np.testing.assert_allclose(Network(path, kernel_backend).run(x)["y"], want, rtol=1e-4,
                               atol=1e-4 * np.abs(want).max())  # fmt: skip
    (tmp_path / "ext.bin").unlink()
    with pytest.raises(GputrackError) as err:
        load_model(path)
    one_line(err, f"model {path}: not a readable ONNX file", "ext.bin")


def test_onnxruntime_refusing_at_run_time_is_one_line(rng):
    """onnxruntime refuses SAME padding with dilation only when it runs: that was its raw
    exception out of Network.run on `cpu`; now one line. gputrack pads it as ONNX states."""
    conv = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", dilations=[2, 2])
    m = _model([conv], [1, 3, 9, 8], ["y"], {"w": _w(rng, 4, 3, 3, 3)})
    net = Network(m, get_backend("cpu"))
    with pytest.raises(GputrackError) as err:
        net.run(rng.standard_normal((1, 3, 9, 8)).astype(f32))
    one_line(err, "onnxruntime could not run the model", "Dilation")
    assert err.value.__cause__ is None
    x = rng.standard_normal((1, 3, 9, 8))
    want = interp.conv2d(x, net.graph.constants["w"].astype(np.float64), None, (1, 1),
                         (2, 2, 2, 2), (2, 2), 1)  # fmt: skip
    got = interp.run_graph(net.graph, {"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-12)
