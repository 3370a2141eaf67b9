"""ONNX import, folding and fusion keep the function: the fused IR run by the NumPy
interpreter equals onnxruntime on the original model (FastestDet, and a small synthetic
model that exercises BatchNorm folding, shape subgraphs, Split/Slice views, Pad folding,
residual Add and Clip), and the same synthetic model runs through the kernels on emu.
Unsupported operators and attributes are one-line errors naming the node."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from gputrack.device import get_backend, probe
from gputrack.dsp import fuse, interp
from gputrack.dsp.onnx_import import load_model
from gputrack.dsp.runner import Network
from gputrack.errors import GputrackError
from tests.conftest import shared_data

FASTESTDET = "models/FastestDet.onnx"


def ort_run(model, x: np.ndarray) -> list[np.ndarray]:
    src = model if isinstance(model, str) else model.SerializeToString()
    s = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})


def synthetic_model(rng, opset: int = 13) -> onnx.ModelProto:
    """Conv+BN+Relu, a shape subgraph feeding Reshape, a channel shuffle, Split, Slice, Pad
    + AveragePool, Resize (linear), Conv+Add+Clip, GlobalAveragePool, softmax via Transpose."""
    inits = []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def w(name, *shape):
        return const(name, rng.standard_normal(shape).astype(np.float32) * 0.3)

    nodes = [
        helper.make_node(
            "Conv",
            ["x", w("w0", 8, 3, 3, 3), w("b0", 8)],
            ["c0"],
            "conv0",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[2, 2],
        ),
        helper.make_node(
            "BatchNormalization",
            [
                "c0",
                const("g", rng.uniform(0.5, 2, 8).astype(np.float32)),
                w("beta", 8),
                w("mean", 8),
                const("var", rng.uniform(0.5, 2, 8).astype(np.float32)),
            ],
            ["bn0"],
            "bn0",
        ),
        helper.make_node("Relu", ["bn0"], ["r0"], "relu0"),
        # shape subgraph: Shape -> Gather -> Unsqueeze -> Concat -> Reshape (shuffle, groups 2)
        helper.make_node("Shape", ["r0"], ["shp"], "shape0"),
        helper.make_node(
            "Gather", ["shp", const("i2", np.array(2, np.int64))], ["hdim"], "gather_h", axis=0
        ),
        helper.make_node(
            "Gather", ["shp", const("i3", np.array(3, np.int64))], ["wdim"], "gather_w", axis=0
        ),
        helper.make_node(
            "Unsqueeze", ["hdim", const("ax0", np.array([0], np.int64))], ["hu"], "unsq_h"
        ),
        helper.make_node("Unsqueeze", ["wdim", "ax0"], ["wu"], "unsq_w"),
        helper.make_node(
            "Concat",
            [const("lead", np.array([1, 2, 4], np.int64)), "hu", "wu"],
            ["shape5"],
            "cat_shape",
            axis=0,
        ),
        helper.make_node("Reshape", ["r0", "shape5"], ["g5"], "reshape0"),
        helper.make_node("Transpose", ["g5"], ["t5"], "transpose0", perm=[0, 2, 1, 3, 4]),
        helper.make_node(
            "Reshape", ["t5", const("s4", np.array([1, 8, 9, 11], np.int64))], ["shuf"], "reshape1"
        ),
        helper.make_node(
            "Split", ["shuf", const("sp", np.array([3, 5], np.int64))], ["a", "b"], "split0", axis=1
        ),
        helper.make_node(
            "Slice",
            [
                "b",
                const("st", np.array([1], np.int64)),
                const("en", np.array([5], np.int64)),
                const("sax", np.array([1], np.int64)),
                const("ss", np.array([2], np.int64)),
            ],
            ["bs"],
            "slice0",
        ),
        helper.make_node("Concat", ["a", "bs"], ["ab"], "cat0", axis=1),  # 5 channels
        helper.make_node(
            "Pad",
            ["ab", const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))],
            ["abp"],
            "pad0",
        ),
        helper.make_node(
            "AveragePool", ["abp"], ["ap"], "pool0", kernel_shape=[3, 3], strides=[2, 2]
        ),
        helper.make_node(
            "Resize",
            ["ap", "", "", const("sz", np.array([1, 5, 9, 11], np.int64))],
            ["up"],
            "resize0",
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
        helper.make_node("Conv", ["up", w("w1", 5, 5, 1, 1), w("b1", 5)], ["c1"], "conv1"),
        helper.make_node("Add", ["c1", "ab"], ["s1"], "add0"),
        helper.make_node(
            "Clip",
            ["s1", const("lo", np.array(-0.5, np.float32)), const("hi", np.array(1.5, np.float32))],
            ["cl"],
            "clip0",
        ),
        helper.make_node(
            "Conv",
            ["cl", w("w2", 5, 1, 3, 3)],
            ["dw"],
            "conv_dw",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            group=5,
        ),
        helper.make_node("Transpose", ["dw"], ["dt"], "tsm0", perm=[0, 3, 2, 1]),
        helper.make_node("Softmax", ["dt"], ["ds"], "softmax0", axis=3),
        helper.make_node("Transpose", ["ds"], ["y"], "tsm1", perm=[0, 3, 2, 1]),
        helper.make_node("GlobalAveragePool", ["cl"], ["gp"], "gap0"),
        helper.make_node("Identity", ["gp"], ["y2"], "ident0"),
    ]
    graph = helper.make_graph(
        nodes,
        "synthetic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 18, 22])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("y2", TensorProto.FLOAT, None),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_synthetic_model_fuses_and_keeps_its_function(rng):
    model = synthetic_model(rng)
    x = rng.random((1, 3, 18, 22), dtype=np.float32)
    want = ort_run(model, x)
    g = fuse.optimise(load_model(model))
    ops = g.op_counts()
    assert "BatchNormalization" not in ops and "Relu" not in ops and "Add" not in ops
    assert "Reshape" not in ops and "Split" not in ops and "Shape" not in ops
    assert "Pad" not in ops and "Transpose" not in ops and "Clip" not in ops
    assert ops["ChannelView"] == 1 and ops["ChannelGather"] == 1
    got = interp.run_graph(g, {"x": x})
    for name, ref in zip(g.outputs, want, strict=True):
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-5, err_msg=name)


def test_synthetic_model_runs_on_emu_kernels(rng):
    if not probe("emu").available:
        pytest.skip("emu backend unavailable")
    model = synthetic_model(rng)
    net = Network(model, get_backend("emu"))
    for buf in net.plan.buffers:  # poison every activation buffer
        buf[...] = np.nan
    x = rng.random((1, 3, 18, 22), dtype=np.float32)
    got = net.run(x)
    for name, ref in zip(net.output_names, ort_run(model, x), strict=True):
        assert not np.isnan(got[name]).any(), name
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-5, err_msg=name)


def test_fastestdet_fused_graph_equals_onnxruntime(rng):
    path = str(shared_data(FASTESTDET))
    g = fuse.optimise(load_model(path))
    ops = g.op_counts()
    assert set(ops) <= {
        "Conv",
        "MaxPool",
        "AveragePool",
        "Resize",
        "Concat",
        "ChannelView",
        "Softmax",
    }, ops
    assert ops["Conv"] == 70 and ops["ChannelView"] == 26
    x = rng.random((1, 3, 352, 352), dtype=np.float32)
    want = ort_run(path, x)[0]
    got = interp.run_graph(g, {g.inputs[0]: x})[g.outputs[0]]
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()


def _one_node_model(node, opset=13, inputs=None):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])]
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_unsupported_operator_names_the_node():
    model = _one_node_model(helper.make_node("LRN", ["x"], ["y"], "my_lrn", size=3))
    with pytest.raises(GputrackError) as err:
        load_model(model)
    msg = str(err.value)
    assert "my_lrn" in msg and "LRN" in msg and "\n" not in msg


def test_unsupported_attribute_names_the_node():
    model = _one_node_model(
        helper.make_node("MaxPool", ["x"], ["y"], "pool_ceil", kernel_shape=[2, 2], ceil_mode=1)
    )
    with pytest.raises(GputrackError, match="pool_ceil.*MaxPool.*ceil_mode"):
        load_model(model)
    model = _one_node_model(
        helper.make_node("Pad", ["x", "p"], ["y"], "pad_reflect", mode="reflect")
    )
    with pytest.raises(GputrackError, match="pad_reflect"):
        load_model(model)


def test_movement_the_device_cannot_view_is_an_error_naming_the_node(rng):
    """A spatial transpose survives fusion: the interpreter runs it, the planner refuses."""
    model = _one_node_model(
        helper.make_node("Transpose", ["x"], ["y"], "spatial_t", perm=[0, 1, 3, 2])
    )
    g = fuse.optimise(load_model(model))
    x = rng.random((1, 2, 4, 4), dtype=np.float32)
    np.testing.assert_array_equal(interp.run_graph(g, {"x": x})["y"], x.transpose(0, 1, 3, 2))
    if probe("emu").available:
        with pytest.raises(GputrackError, match="spatial_t.*Transpose"):
            Network(model, get_backend("emu"))


def test_the_planners_refusal_of_a_file_names_the_file(tmp_path):
    """The cpu backend runs this model (onnxruntime); emu and cuda refuse it when planning,
    after the import: that error names the file as the importer's do."""
    if not probe("emu").available:
        pytest.skip("emu backend unavailable")
    path = tmp_path / "spatial.onnx"
    node = helper.make_node("Transpose", ["x"], ["y"], "spatial_t", perm=[0, 1, 3, 2])
    onnx.save(_one_node_model(node), str(path))
    with pytest.raises(GputrackError) as err:
        Network(path, get_backend("emu"))
    msg = str(err.value)
    assert msg.startswith(f"model {path}: ") and "spatial_t" in msg and "\n" not in msg, msg


def test_onnxruntimes_refusal_is_one_line_naming_the_file(tmp_path, monkeypatch):
    """Whatever onnxruntime raises (its own exception types, many lines) reaches the user as
    one GputrackError line that names the model."""
    ort = pytest.importorskip("onnxruntime")

    def refuse(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 10 : INVALID_GRAPH : bad\nmore detail")

    monkeypatch.setattr(ort, "InferenceSession", refuse)
    path = tmp_path / "relu.onnx"
    onnx.save(_one_node_model(helper.make_node("Relu", ["x"], ["y"], "relu")), str(path))
    with pytest.raises(GputrackError) as err:
        Network(path, get_backend("cpu"))
    msg = str(err.value)
    assert msg.startswith(f"model {path}: onnxruntime cannot run it: ") and "INVALID_GRAPH" in msg
    assert "more detail" not in msg


def test_missing_model_file_is_one_line(tmp_path):
    with pytest.raises(GputrackError, match="no such file"):
        load_model(tmp_path / "absent.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(GputrackError, match="not a readable ONNX"):
        load_model(bad)


def test_every_import_error_about_a_file_names_the_file(tmp_path):
    """A symbolic batch dimension (as a default torch.onnx export gives), a float16 input and
    an unsupported node: each one line that starts with the model's path."""
    dyn = _one_node_model(
        helper.make_node("Relu", ["x"], ["y"], "relu"),
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "height", 64])],
    )
    half = _one_node_model(
        helper.make_node("Relu", ["x"], ["y"], "relu"),
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 3, 8, 8])],
    )
    lrn = _one_node_model(helper.make_node("LRN", ["x"], ["y"], "my_lrn", size=3))
    cases = {
        "dyn.onnx": (dyn, "input 'x': shapes must be static, got (1, 3, height, 64)"),
        "half.onnx": (half, "input 'x': only float32 inputs are supported"),
        "lrn.onnx": (lrn, "node 'my_lrn' (LRN): unsupported ONNX operator"),
    }
    for name, (model, needle) in cases.items():
        path = tmp_path / name
        onnx.save(model, str(path))
        with pytest.raises(GputrackError) as err:
            load_model(path)
        msg = str(err.value)
        assert msg.startswith(f"model {path}: ") and needle in msg and "\n" not in msg, msg
        assert msg.count(str(path)) == 1, "named once, not once per layer"
    with pytest.raises(GputrackError, match=r"^model: input 'x': shapes must be static"):
        load_model(dyn)  # a ModelProto has no path to name


def test_output_that_is_a_strided_view_is_copied_out(rng):
    if not probe("emu").available:
        pytest.skip("emu backend unavailable")
    w = numpy_helper.from_array(rng.standard_normal((6, 3, 1, 1)).astype(np.float32), "w")
    idx = numpy_helper.from_array(np.array([1, 3, 5], np.int64), "i")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], "conv"),
        helper.make_node("Gather", ["c", "i"], ["y"], "odd", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w, idx],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.random((1, 3, 5, 7), dtype=np.float32)
    got = Network(model, get_backend("emu")).run(x)["y"]
    np.testing.assert_allclose(got, ort_run(model, x)[0], rtol=1e-5, atol=1e-6)


def test_graph_replay_gives_the_plain_launches_results(rng, monkeypatch):
    """`run(graph=True)`: the plan captured once and replayed on each new input (what the live
    pipeline does); where capture fails, plain launches with the reason kept."""
    if not probe("emu").available:
        pytest.skip("emu backend unavailable")
    model = synthetic_model(rng)
    plain, graphed = Network(model, get_backend("emu")), Network(model, get_backend("emu"))
    for _ in range(3):  # a replay must read the new input, not the captured one
        x = rng.random((1, 3, 18, 22), dtype=np.float32)
        want, got = plain.run(x), graphed.run(x, graph=True)
        for name in plain.output_names:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert graphed.graph_error is None and graphed._graph is not None

    broken = Network(model, get_backend("emu"))

    def refuse(fn, stream=None):
        raise RuntimeError("capture not supported here")

    monkeypatch.setattr(broken.backend, "capture", refuse)
    x = rng.random((1, 3, 18, 22), dtype=np.float32)
    got = broken.run(x, graph=True)
    assert broken.graph_error == "RuntimeError: capture not supported here"
    for name, ref in zip(broken.output_names, ort_run(model, x), strict=True):
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-5, err_msg=name)
