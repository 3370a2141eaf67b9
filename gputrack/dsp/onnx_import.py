"""ONNX -> IR: constant tensors, normalised attributes, static shapes, folded constants.

Only the operators and attribute values listed here are accepted; anything else is a
`GputrackError` naming the node and its op, so a model is never run with a silently wrong
meaning. Attributes are normalised once (explicit 2-D pads as (top, left, bottom, right),
inputs that must be constants - Reshape's shape, Resize's scales, Pad's pads, Split's sizes,
Slice's ranges - resolved into attributes) so that later passes need not know ONNX.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from gputrack.dsp import interp
from gputrack.dsp.ir import Graph, Node
from gputrack.errors import GputrackError

# ops evaluated at import time when every input is a constant (shape subgraphs and friends)
FOLDABLE = {
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Reshape",
    "Cast",
    "Slice",
    "Transpose",
    "Identity",
    "Add",
    "Mul",
    "Sub",
    "Div",
    "Flatten",
    "Split",
}
SUPPORTED = {
    "Conv",
    "BatchNormalization",
    "Relu",
    "Sigmoid",
    "Clip",
    "Add",
    "Concat",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Resize",
    "Pad",
    "Reshape",
    "Transpose",
    "Gather",
    "Split",
    "Slice",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Softmax",
    "Identity",
    "Dropout",
    "Shape",
    "Cast",
    "Constant",
    "Mul",
    "Sub",
    "Div",
    "HardSigmoid",
    "HardSwish",
    "LeakyRelu",
    "Tanh",
    "Upsample",  # opsets 7-9: Resize-10's semantics, as onnxruntime runs it
    "ReduceMean",  # over H and W with keepdims: a GlobalAveragePool (timm's SE blocks)
    "GlobalMaxPool",  # a MaxPool whose window is the whole plane
}
# elementwise activations: same shape out, a kernel activation on the device
ACTIVATION_OPS = ("Relu", "Sigmoid", "Clip", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh")
ONNX_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 10: np.float16, 11: np.float64, 9: bool}


def fail(node: Node, why: str) -> GputrackError:
    return GputrackError(f"{node.describe()}: {why}")


def load_model(model: str | Path | Any) -> Graph:
    """An ONNX file (or ModelProto) as an IR graph with shapes, constants folded. Every error
    about a file names it first: `model PATH: ...` (a node's error too)."""
    import onnx

    if not isinstance(model, (str, Path)):
        return _import(model, "model")
    path = Path(model)
    where = f"model {path}"
    if not path.is_file():
        raise GputrackError(f"{where}: " + ("a folder, not an ONNX file" if path.is_dir()
                                            else "no such file"))  # fmt: skip
    try:
        proto = onnx.load(str(path))
    except Exception as err:  # a truncated or foreign file: say so in one line
        raise GputrackError(f"{where}: not a readable ONNX file ({err})") from None
    with errors_named(path):
        return _import(proto, where)


@contextmanager
def errors_named(model: str | Path | Any) -> Iterator[None]:
    """Prefix a GputrackError raised inside with `model PATH: `, once (a ModelProto is named
    `model`). For every step that reads a model file: importing, fusing, planning for the
    kernels, onnxruntime's session. Any other exception is a bug or a model nobody foresaw:
    it becomes one line too, the original chained (`__cause__`) so that a test still shows it."""
    where = f"model {model}" if isinstance(model, (str, Path)) else "model"
    try:
        yield
    except GputrackError as err:
        if not isinstance(model, (str, Path)) or str(err).startswith(f"{where}: "):
            raise
        raise type(err)(f"{where}: {err}") from err.__cause__  # the original, if any
    except Exception as err:
        raise GputrackError(f"{where}: {unexpected(err)}") from err


def unexpected(err: Exception) -> str:
    """An exception gputrack did not foresee, in one line."""
    text = str(err).strip().splitlines()
    return f"could not be handled ({type(err).__name__}: {text[0] if text else 'no message'})"


def _import(proto: Any, where: str) -> Graph:
    import onnx
    from onnx import numpy_helper

    g = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    constants = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    # an input no node reads (an exporter's leftover) is no second image: ignored, noted
    read = {t for p in g.node for t in p.input} | {o.name for o in g.output}
    unread = [i.name for i in g.input if i.name not in constants and i.name not in read]
    notes = [f"input '{name}' is read by no node: ignored" for name in unread]
    inputs = [i.name for i in g.input if i.name not in constants and i.name in read]
    shapes: dict[str, tuple[int, ...]] = {}
    for i in g.input:
        if i.name not in inputs:
            continue
        if not i.type.tensor_type.HasField("shape"):
            raise GputrackError(f"{where}: input '{i.name}' has no shape in the model; export "
                                f"it with a fixed size (1 x 3 x H x W)")  # fmt: skip
        dims = i.type.tensor_type.shape.dim
        # a dim_value <= 0 (some exporters write -1) is no size: as symbolic as a dim_param
        fixed = [d.HasField("dim_value") and d.dim_value > 0 for d in dims]
        named = [str(d.dim_value) if ok or d.HasField("dim_value") else d.dim_param or "?"
                 for d, ok in zip(dims, fixed, strict=True)]  # fmt: skip
        if len(dims) == 4 and not fixed[0] and all(fixed[1:]):
            # a dynamic batch (torchvision's and YOLO's exports): the sensor runs one image
            # at a time, and a model defined for any batch gives batch 1 what it always does
            notes.append(f"input '{i.name}': batch '{named[0]}' taken as 1")
            fixed[0], named[0] = True, "1"
        if not all(fixed):
            raise GputrackError(f"{where}: input '{i.name}': shapes must be static, got "
                                f"({', '.join(named)}); export it with a fixed size "
                                f"(only the batch may be named)")  # fmt: skip
        shapes[i.name] = tuple(int(n) for n in named)
        if i.type.tensor_type.elem_type != 1:
            hint = " (a float16 model: export it in float32)" if (
                i.type.tensor_type.elem_type == 10) else ""  # fmt: skip
            raise GputrackError(f"{where}: input '{i.name}': only float32 inputs are "
                                f"supported{hint}")  # fmt: skip
    if len(inputs) != 1:
        names = ", ".join(f"'{n}'" for n in inputs) or "none"
        raise GputrackError(f"{where}: a network with one input (the image) is needed, this "
                            f"one has {len(inputs)} ({names})")  # fmt: skip
    if not g.output:
        raise GputrackError(f"{where}: the network has no output")
    graph = Graph([], inputs, [o.name for o in g.output], constants, shapes, opset, g.name)
    graph.notes, graph.unread_inputs = notes, unread
    names = _node_names(g.node, where)
    for p, name in zip(g.node, names, strict=True):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in p.attribute}
        attrs = {k2: v.decode() if isinstance(v, bytes) else v for k2, v in attrs.items()}
        node = Node(name, p.op_type, list(p.input), list(p.output), attrs)
        if p.domain not in ("", "ai.onnx"):
            raise fail(node, f"operator of domain '{p.domain}' unsupported (only the standard "
                             f"ONNX domain)")  # fmt: skip
        if node.op not in SUPPORTED:
            raise fail(node, "unsupported ONNX operator")
        if node.op == "Constant":
            graph.constants[node.outputs[0]] = constant_value(node, p)
            continue
        if node.op == "MaxPool" and len(node.outputs) > 1 and node.outputs[1]:
            if node.outputs[1] in read:
                raise fail(node, "the Indices output is unsupported (nothing may read it)")
            node.outputs = node.outputs[:1]  # asked for but unused: not computed
        try:
            add_node(graph, node)
        except GputrackError:
            raise
        except Exception as err:  # a model nobody foresaw: one line naming the node
            raise fail(node, unexpected(err)) from err
    for out in graph.outputs:
        if out not in graph.shapes and out not in graph.constants:
            raise GputrackError(f"{where}: output '{out}' is produced by no node")
    graph.prune()
    return graph


def constant_value(node: Node, proto: Any) -> np.ndarray:
    """A Constant node's tensor, in any of its numeric forms (exporters write value_float,
    value_ints, ... for scalars and shapes; the dtypes are ONNX's: float32, int64)."""
    from onnx import numpy_helper

    if len(proto.attribute) != 1:
        raise fail(node, "a Constant needs exactly one value attribute")
    name, value = proto.attribute[0].name, node.attrs[proto.attribute[0].name]
    if name == "value":
        return numpy_helper.to_array(value)
    if name in ("value_float", "value_floats"):
        return np.asarray(value, dtype=np.float32)
    if name in ("value_int", "value_ints"):
        return np.asarray(value, dtype=np.int64)
    if name == "sparse_value":
        values = numpy_helper.to_array(value.values).ravel()
        index = numpy_helper.to_array(value.indices).astype(np.int64)
        dense = np.zeros(tuple(value.dims), dtype=values.dtype)
        if index.ndim == 2:  # [NNZ, rank] coordinates, else linear indices
            index = np.ravel_multi_index(tuple(index.T), dense.shape)
        dense.flat[index.ravel()] = values
        return dense
    raise fail(node, f"a Constant of attribute '{name}' is unsupported (numeric tensors only)")


def _node_names(nodes: Any, where: str) -> list[str]:
    """Each node's name, unique: two nodes of one name (a model onnxruntime refuses) would
    share the constants the fusions derive from a node's name (BN-folded weights)."""
    given = [p.name for p in nodes if p.name]
    seen: set[str] = set()
    for name in given:
        if name in seen:
            raise GputrackError(f"{where}: two nodes are named '{name}' (node names must be "
                                f"unique; onnxruntime refuses it too)")  # fmt: skip
        seen.add(name)
    names = []
    for k, p in enumerate(nodes):
        name = p.name or f"{p.op_type}_{k}"
        while not p.name and name in seen:  # a made-up name must not take a given one
            name += "_"
        seen.add(name)
        names.append(name)
    return names


def add_node(graph: Graph, node: Node) -> None:
    """Normalise, then fold (all inputs constant) or append with inferred output shapes."""
    if node.op in ("Identity", "Dropout"):
        node.op, node.inputs, node.outputs = "Identity", node.inputs[:1], node.outputs[:1]
    for t in node.inputs:
        if t and t not in graph.constants and t not in graph.shapes:
            raise fail(node, f"input '{t}' is not produced before it is used")
    normalise(graph, node)
    data = [t for t in node.inputs if t]
    if node.op == "Shape" or (node.op in FOLDABLE and all(graph.is_const(t) for t in data)):
        args = [graph.constants.get(t) if t else None for t in node.inputs]
        if node.op == "Shape":
            args = [np.empty(graph.shapes[node.inputs[0]], dtype=np.float32)]
        for name, value in zip(node.outputs, interp.run_node(node, args), strict=True):
            graph.constants[name] = np.asarray(value)
        return
    for name, shape in zip(node.outputs, infer_shapes(graph, node), strict=True):
        graph.shapes[name] = shape
    graph.nodes.append(node)


def const_input(graph: Graph, node: Node, index: int, what: str) -> np.ndarray | None:
    if index >= len(node.inputs) or not node.inputs[index]:
        return None
    name = node.inputs[index]
    if name not in graph.constants:
        raise fail(node, f"{what} must be a constant (static shapes only)")
    return graph.constants[name]


def _pads2d(node: Node, in_hw: tuple[int, int], kernel, strides, dilations) -> tuple[int, ...]:
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        p = node.attrs.get("pads", [0, 0, 0, 0]) if auto == "NOTSET" else [0, 0, 0, 0]
        if len(p) != 4:
            raise fail(node, f"only 2-D pads are supported, got {p}")
        return (int(p[0]), int(p[1]), int(p[2]), int(p[3]))
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise fail(node, f"auto_pad '{auto}' unsupported")
    pads = []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
    return (pads[0][0], pads[1][0], pads[0][1], pads[1][1])


def normalise(graph: Graph, node: Node) -> None:
    a, op = node.attrs, node.op
    shape0 = graph.shapes.get(node.inputs[0]) if node.inputs and node.inputs[0] else None
    if op in ("Conv", "MaxPool", "AveragePool"):
        if shape0 is None or len(shape0) != 4:
            raise fail(node, f"only 2-D (NCHW) inputs are supported, got shape {shape0}")
        if op == "Conv":
            w = const_input(graph, node, 1, "the weight")
            assert w is not None
            kernel = tuple(int(k) for k in w.shape[2:])
        else:
            kernel = tuple(int(k) for k in a.get("kernel_shape", ()))
        if len(kernel) != 2:
            raise fail(node, f"only 2-D kernels are supported, got {kernel}")
        strides = tuple(int(s) for s in a.get("strides", (1, 1)))
        dil = tuple(int(d) for d in a.get("dilations", (1, 1)))
        if op != "Conv" and dil != (1, 1):
            raise fail(node, f"pooling dilations {dil} unsupported")
        if a.get("ceil_mode", 0):
            raise fail(node, "ceil_mode=1 unsupported")
        if a.get("storage_order", 0):
            raise fail(node, "storage_order=1 unsupported")
        pads = _pads2d(node, shape0[2:], kernel, strides, dil)
        new: dict[str, Any] = {"kernel_shape": kernel, "strides": strides, "pads": pads}
        if op == "Conv":
            new.update(dilations=dil, group=int(a.get("group", 1)), act="none")
            if len(node.inputs) > 2 and node.inputs[2]:
                const_input(graph, node, 2, "the bias")
        if op == "AveragePool":
            new["count_include_pad"] = int(a.get("count_include_pad", 0))
        node.attrs = new
    elif op == "BatchNormalization":
        if a.get("training_mode", 0):
            raise fail(node, "training_mode=1 unsupported")
        for i in range(1, 5):
            const_input(graph, node, i, "scale/bias/mean/variance")
        node.outputs = node.outputs[:1]
        node.attrs = {"epsilon": float(a.get("epsilon", 1e-5))}
    elif op == "Clip":
        lo = a.get("min", -np.inf) if graph.opset < 11 else const_input(graph, node, 1, "min")
        hi = a.get("max", np.inf) if graph.opset < 11 else const_input(graph, node, 2, "max")
        node.attrs = {
            "min": float(-np.inf if lo is None else lo),
            "max": float(np.inf if hi is None else hi),
        }
        node.inputs = node.inputs[:1]
    elif op in ("Resize", "Upsample"):
        _normalise_resize(graph, node, shape0)
    elif op == "HardSigmoid":
        node.attrs = {"alpha": float(a.get("alpha", 0.2)), "beta": float(a.get("beta", 0.5))}
    elif op == "LeakyRelu":
        node.attrs = {"alpha": float(a.get("alpha", 0.01))}
    elif op == "ReduceMean":
        _normalise_reduce_mean(graph, node, shape0)
    elif op == "GlobalMaxPool":
        if shape0 is None or len(shape0) != 4:
            raise fail(node, f"only 2-D (NCHW) inputs are supported, got shape {shape0}")
        node.op = "MaxPool"  # one window over the whole plane: nn_pool2d has it
        node.attrs = {"kernel_shape": tuple(shape0[2:]), "strides": (1, 1), "pads": (0, 0, 0, 0)}
    elif op == "Pad":
        if a.get("mode", "constant") != "constant":
            raise fail(node, f"mode '{a.get('mode')}' unsupported (constant only)")
        pads = a.get("pads") if graph.opset < 11 else const_input(graph, node, 1, "pads")
        value = a.get("value", 0.0) if graph.opset < 11 else const_input(graph, node, 2, "value")
        if len(node.inputs) > 3 and node.inputs[3]:
            raise fail(node, "the axes input is unsupported")
        pads = [int(p) for p in np.asarray(pads).ravel()]
        if min(pads, default=0) < 0:
            raise fail(node, f"negative pads (cropping) are unsupported, got {pads}")
        node.attrs = {
            "pads": pads,
            "value": float(0.0 if value is None else np.asarray(value).ravel()[0]),
        }
        node.inputs = node.inputs[:1]
    elif op == "Softmax":
        rank = len(shape0) if shape0 else 0
        axis = int(a.get("axis", -1 if graph.opset >= 13 else 1)) % max(rank, 1)
        if graph.opset < 13 and shape0 and any(d != 1 for d in shape0[axis + 1 :]):
            raise fail(node, "opset < 13 Softmax over several axes unsupported")
        node.attrs = {"axis": axis}
    elif op == "Split":
        _normalise_split(graph, node)
    elif op == "Slice":
        _normalise_slice(graph, node)
    elif op in ("Squeeze", "Unsqueeze"):
        axes = a.get("axes") if graph.opset < 13 else const_input(graph, node, 1, "axes")
        if axes is not None:
            rank = len(shape0) if shape0 else np.ndim(graph.constants[node.inputs[0]])
            rank = rank + (len(axes) if op == "Unsqueeze" else 0)
            node.attrs = {"axes": [int(x) % rank for x in np.asarray(axes).ravel()]}
        else:
            node.attrs = {"axes": None}
        node.inputs = node.inputs[:1]
    elif op == "Reshape":
        const_input(graph, node, 1, "the target shape")
    elif op == "Gather":
        const_input(graph, node, 1, "the indices")
    elif op == "Cast":
        to = int(a.get("to", 1))
        if to not in ONNX_DTYPES:
            raise fail(node, f"cast to ONNX type {to} unsupported")
        node.attrs = {"to": ONNX_DTYPES[to]}
    elif op == "Transpose":
        rank = len(shape0) if shape0 else np.ndim(graph.constants[node.inputs[0]])
        node.attrs = {"perm": [int(p) for p in a.get("perm", range(rank - 1, -1, -1))]}
    elif op == "Concat":
        rank = len(shape0) if shape0 else np.ndim(graph.constants[node.inputs[0]])
        node.attrs = {"axis": int(a["axis"]) % rank}


def _normalise_resize(graph: Graph, node: Node, shape: tuple[int, ...] | None) -> None:
    a = node.attrs
    if shape is None or len(shape) != 4:
        raise fail(node, f"only NCHW inputs are supported, got shape {shape}")
    mode = a.get("mode", "nearest")
    if graph.opset < 11 or node.op == "Upsample":
        # Resize-10 and Upsample have neither attribute: asymmetric coordinates, and
        # onnxruntime's rule for them ("simple"): the coordinate floored on an axis scaled up,
        # ceiled on one scaled down. Upsample-7 gives its scales as an attribute.
        scales, sizes = const_input(graph, node, 1, "scales"), None
        if node.op == "Upsample" and "scales" in a:
            scales = np.asarray(a["scales"], dtype=np.float32)
        mode = "linear" if node.op == "Upsample" and mode == "bilinear" else mode
        node.op = "Resize"
        coord, nearest = "asymmetric", "simple"
    else:
        scales = const_input(graph, node, 2, "scales")
        sizes = const_input(graph, node, 3, "sizes")
        coord = a.get("coordinate_transformation_mode", "half_pixel")
        nearest = a.get("nearest_mode", "round_prefer_floor")
    if mode not in ("nearest", "linear"):
        raise fail(node, f"mode '{mode}' unsupported (nearest, linear)")
    if coord not in ("asymmetric", "half_pixel", "pytorch_half_pixel", "align_corners"):
        raise fail(node, f"coordinate_transformation_mode '{coord}' unsupported")
    if mode == "nearest" and nearest not in (
        "simple",
        "floor",
        "ceil",
        "round_prefer_floor",
        "round_prefer_ceil",
    ):
        raise fail(node, f"nearest_mode '{nearest}' unsupported")
    if a.get("exclude_outside", 0) or a.get("antialias", 0):
        raise fail(node, "exclude_outside / antialias unsupported")
    policy = a.get("keep_aspect_ratio_policy", "stretch")
    if policy not in ("stretch", "not_larger", "not_smaller"):
        raise fail(node, f"keep_aspect_ratio_policy '{policy}' unsupported")
    if policy != "stretch" and min(a.get("axes", [0])) < 0:
        # onnxruntime (the cpu backend) then ignores the policy, the ONNX spec does not
        raise fail(node, f"keep_aspect_ratio_policy with negative axes {a['axes']} unsupported "
                         "(onnxruntime ignores the policy there): give axes=[2, 3]")  # fmt: skip
    axes = [int(x) % 4 for x in a.get("axes", range(4))]
    if sorted(set(axes)) != sorted(axes):
        raise fail(node, f"axes {a['axes']} repeat an axis")
    if sizes is not None and sizes.size:
        if sizes.size != len(axes):
            raise fail(node, f"{sizes.size} sizes for {len(axes)} axes")
        out = list(shape)
        for ax, n in zip(axes, sizes, strict=True):
            out[ax] = int(n)
        sc = [float(np.float32(o) / np.float32(i)) for o, i in zip(out, shape, strict=True)]
        if policy != "stretch":
            # onnxruntime (AdjustOutputSizeAsPolicy): one scale for every axis named, the least
            # (not_larger) or the largest (not_smaller), and each size round(scale * input)
            pick = min if policy == "not_larger" else max
            s = np.float32(pick(sc[ax] for ax in axes))
            for ax in axes:
                sc[ax] = float(s)
                out[ax] = int(math.floor(float(s * np.float32(shape[ax])) + 0.5))
    elif scales is not None and scales.size:
        if scales.size != len(axes):
            raise fail(node, f"{scales.size} scales for {len(axes)} axes")
        sc = [1.0] * 4
        for ax, v in zip(axes, scales, strict=True):
            sc[ax] = float(v)
        # floor(size * scale) as onnxruntime computes it (the cpu backend's reference): the
        # product in float32, then truncated. In float64 a scale such as 2.6 (2.5999999 as a
        # float32) made 5 rows 12, where onnxruntime makes 13.
        out = [int(np.float32(i) * np.float32(s)) for i, s in zip(shape, sc, strict=True)]
    else:
        raise fail(node, "neither scales nor sizes given")
    if tuple(out[:2]) != shape[:2]:
        hint = "" if policy == "stretch" or "axes" in a else (
            f" (keep_aspect_ratio_policy '{policy}' over every axis scales them too: "
            "give axes=[2, 3])")  # fmt: skip
        raise fail(node, f"resizing the batch or channel axis is unsupported{hint}")
    node.attrs = {
        "mode": mode,
        "coord": coord,
        "nearest_mode": nearest,
        "out_hw": tuple(out[2:]),
        "scales_hw": tuple(sc[2:]),
    }
    node.inputs = node.inputs[:1]


def _normalise_reduce_mean(graph: Graph, node: Node, shape: tuple[int, ...] | None) -> None:
    """ReduceMean over H and W keeping them (x.mean((2, 3), keepdim=True), timm's squeeze-
    and-excitation) is a GlobalAveragePool; any other reduction is refused."""
    a = node.attrs
    axes = a.get("axes") if graph.opset < 18 else const_input(graph, node, 1, "axes")
    rank = len(shape) if shape else 0
    got = sorted(int(x) % max(rank, 1) for x in np.asarray(axes).ravel()) if axes is not None \
        else None  # fmt: skip
    if rank != 4 or got != [2, 3] or not a.get("keepdims", 1):
        raise fail(node, f"only a mean over H and W of a 1 x C x H x W tensor keeping them "
                         f"(a GlobalAveragePool) is supported, got axes {got} keepdims "
                         f"{a.get('keepdims', 1)} of {shape}")  # fmt: skip
    node.op, node.attrs, node.inputs = "GlobalAveragePool", {}, node.inputs[:1]


def _normalise_split(graph: Graph, node: Node) -> None:
    a = node.attrs
    shape = graph.shapes.get(node.inputs[0]) or np.shape(graph.constants[node.inputs[0]])
    axis = int(a.get("axis", 0)) % len(shape)
    split = a.get("split") if graph.opset < 13 else const_input(graph, node, 1, "split")
    if split is None:
        n = len(node.outputs)
        size = shape[axis]
        if graph.opset >= 18 and "num_outputs" in a:
            # opset 18: chunks of ceil(size / n), the last one smaller where it does not divide
            n = int(a["num_outputs"])
            chunk = -(-size // n)
            if n != len(node.outputs) or size - chunk * (n - 1) < 1:
                raise fail(node, f"axis {axis} of size {size} does not split into "
                                 f"{n} chunks of {chunk} and a last one"
                                 f"{'' if n == len(node.outputs) else ' (outputs differ)'}")
            split = [chunk] * (n - 1) + [size - chunk * (n - 1)]
        elif size % n:
            raise fail(node, f"axis {axis} of size {size} does not split into {n}")
        else:
            split = [size // n] * n
    node.attrs = {"axis": axis, "split": [int(s) for s in np.asarray(split).ravel()]}
    node.inputs = node.inputs[:1]


def _normalise_slice(graph: Graph, node: Node) -> None:
    if graph.opset < 10:
        raise fail(node, "opset < 10 Slice unsupported")
    shape = graph.shapes.get(node.inputs[0]) or np.shape(graph.constants[node.inputs[0]])
    starts = const_input(graph, node, 1, "starts")
    ends = const_input(graph, node, 2, "ends")
    axes = const_input(graph, node, 3, "axes")
    steps = const_input(graph, node, 4, "steps")
    assert starts is not None and ends is not None
    axes = list(range(len(starts))) if axes is None else [int(x) % len(shape) for x in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    norm_s, norm_e = [], []
    for ax, st, en, sp in zip(axes, starts, ends, steps, strict=True):
        s = slice(int(max(min(st, 2**62), -(2**62))), int(max(min(en, 2**62), -(2**62))), sp)
        lo, hi, _ = s.indices(shape[ax])
        norm_s.append(lo)
        norm_e.append(hi if hi >= 0 else None)
    node.attrs = {"axes": axes, "starts": norm_s, "ends": norm_e, "steps": steps}
    node.inputs = node.inputs[:1]


def conv_out(size: int, k: int, s: int, p0: int, p1: int, d: int = 1) -> int:
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def infer_shapes(graph: Graph, node: Node) -> list[tuple[int, ...]]:
    """Static output shapes: formulas for compute ops, a zero-filled trial for the rest."""
    a, op = node.attrs, node.op
    shapes = [
        graph.shapes.get(t) or np.shape(graph.constants[t]) if t else None for t in node.inputs
    ]
    x = shapes[0]
    if op in ("Conv", "MaxPool", "AveragePool"):
        kh, kw = a["kernel_shape"]
        sh, sw = a["strides"]
        dh, dw = a.get("dilations", (1, 1))
        p = a["pads"]
        ho, wo = conv_out(x[2], kh, sh, p[0], p[2], dh), conv_out(x[3], kw, sw, p[1], p[3], dw)
        if ho < 1 or wo < 1:
            raise fail(node, f"output would be empty for input {x}")
        if op == "Conv":
            w = graph.constants[node.inputs[1]]
            if x[1] != w.shape[1] * a["group"] or w.shape[0] % a["group"]:
                raise fail(node, f"weight {w.shape} and group {a['group']} do not fit input {x}")
            return [(x[0], int(w.shape[0]), ho, wo)]
        return [(x[0], x[1], ho, wo)]
    if op in ACTIVATION_OPS or op in ("BatchNormalization", "Softmax", "Identity"):
        return [tuple(x)]
    if op == "GlobalAveragePool":
        return [tuple(x[:2]) + (1,) * (len(x) - 2)]
    if op == "Resize":
        return [tuple(x[:2]) + tuple(a["out_hw"])]
    args = [
        graph.constants[t] if graph.is_const(t) else np.zeros(s, np.float32) if t else None
        for t, s in zip(node.inputs, shapes, strict=True)
    ]
    try:
        return [tuple(int(d) for d in np.shape(v)) for v in interp.run_node(node, args)]
    except GputrackError:
        raise
    except Exception as err:
        raise fail(node, f"shapes do not fit ({type(err).__name__}: {err})") from None
