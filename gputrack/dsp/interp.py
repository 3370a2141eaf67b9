"""A NumPy interpreter of the IR: the reference semantics of every op the importer accepts,
fused ops included. Float64 by default, so that it can judge both the kernels and the
importer/fusion passes (against onnxruntime on the original model)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gputrack.dsp.ir import Graph, Node
from gputrack.errors import GputrackError

Arr = np.ndarray
OpFn = Callable[[Node, list[Any]], list[Arr]]


def activation(x: Arr, act: str, lo: float = 0.0, hi: float = 0.0) -> Arr:
    if act == "none":
        return x
    if act == "relu":
        return np.maximum(x, 0)
    if act == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if act == "clip":
        return np.clip(x, lo, hi)
    if act == "hardsigmoid":  # lo, hi = alpha, beta
        return np.clip(lo * x + hi, 0.0, 1.0)
    if act == "hardswish":
        return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)
    if act == "leakyrelu":  # lo = alpha
        return np.where(x >= 0, x, lo * x)
    if act == "tanh":
        return np.tanh(x)
    raise GputrackError(f"unknown activation '{act}'")


# elementwise activation ops and their name as a fused Conv's `act` (nn.cu's nn_act)
ACTIVATIONS = {
    "Relu": "relu",
    "Sigmoid": "sigmoid",
    "Clip": "clip",
    "HardSigmoid": "hardsigmoid",
    "HardSwish": "hardswish",
    "LeakyRelu": "leakyrelu",
    "Tanh": "tanh",
}


def act_params(node: Node) -> tuple[float, float]:
    """(lo, hi) of an activation node as the kernels take them: Clip's min and max,
    HardSigmoid's alpha and beta, LeakyRelu's alpha; (0, 0) for the others."""
    a = node.attrs
    if node.op == "Clip":
        return a["min"], a["max"]
    if node.op == "HardSigmoid":
        return a["alpha"], a["beta"]
    if node.op == "LeakyRelu":
        return a["alpha"], 0.0
    return 0.0, 0.0


def conv2d(
    x: Arr,
    w: Arr,
    b: Arr | None,
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    group: int,
) -> Arr:
    """NCHW convolution; pads = (top, left, bottom, right)."""
    n, c, _, _ = x.shape
    co, cig, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    dh, dw = dilations
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, :: strides[0], :: strides[1], ::dh, ::dw]  # n, c, ho, wo, kh, kw
    cog = co // group
    parts = []
    for g in range(group):
        xs = win[:, g * cig : (g + 1) * cig]
        ws = w[g * cog : (g + 1) * cog]
        parts.append(np.einsum("nchwij,ocij->nohw", xs, ws, optimize=True))
    y = np.concatenate(parts, axis=1)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


def pool2d(
    x: Arr,
    kind: str,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    count_include_pad: bool = False,
) -> Arr:
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=fill)
    win = sliding_window_view(xp, kernel, axis=(2, 3))[:, :, :: strides[0], :: strides[1]]
    if kind == "max":
        return win.max(axis=(4, 5))
    total = win.sum(axis=(4, 5))
    if count_include_pad:
        return total / (kernel[0] * kernel[1])
    ones = np.pad(np.ones(x.shape[2:]), ((pads[0], pads[2]), (pads[1], pads[3])))
    count = sliding_window_view(ones, kernel)[:: strides[0], :: strides[1]].sum(axis=(2, 3))
    return total / count


def resize_axis_coords(n_in: int, n_out: int, scale: float, coord_mode: str) -> Arr:
    """Input coordinate of each output index along one axis (ONNX Resize)."""
    x = np.arange(n_out, dtype=np.float64)
    if coord_mode == "asymmetric":
        return x / scale
    if coord_mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if coord_mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
    if coord_mode == "align_corners":
        return x * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(n_out)
    raise GputrackError(f"Resize coordinate_transformation_mode '{coord_mode}' unsupported")


def nearest_index(coords: Arr, n_in: int, nearest_mode: str) -> Arr:
    if nearest_mode == "floor":
        i = np.floor(coords)
    elif nearest_mode == "ceil":
        i = np.ceil(coords)
    elif nearest_mode == "round_prefer_floor":
        i = np.ceil(coords - 0.5)
    elif nearest_mode == "round_prefer_ceil":
        i = np.floor(coords + 0.5)
    else:
        raise GputrackError(f"Resize nearest_mode '{nearest_mode}' unsupported")
    return np.clip(i, 0, n_in - 1).astype(np.int64)


def simple_nearest(scale: float) -> str:
    """Resize-10's rounding (onnxruntime's SIMPLE mode; ONNX states none): the input coordinate
    ceiled on an axis scaled down, floored (truncated: it is >= 0) on one scaled up."""
    return "ceil" if scale < 1 else "floor"


def resize2d(
    x: Arr,
    out_hw: tuple[int, int],
    scales: tuple[float, float],
    mode: str,
    coord: str,
    nearest_mode: str,
) -> Arr:
    """Resize the last two axes; `scales` are output/input per axis."""
    h, w = x.shape[2:]
    cy = resize_axis_coords(h, out_hw[0], scales[0], coord)
    cx = resize_axis_coords(w, out_hw[1], scales[1], coord)
    if mode == "nearest":
        my, mx = (simple_nearest(s) if nearest_mode == "simple" else nearest_mode for s in scales)
        iy, ix = nearest_index(cy, h, my), nearest_index(cx, w, mx)
        return x[:, :, iy][:, :, :, ix]
    cy, cx = np.clip(cy, 0, h - 1), np.clip(cx, 0, w - 1)
    y0, x0 = np.floor(cy).astype(np.int64), np.floor(cx).astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (cy - y0)[:, None], (cx - x0)[None, :]
    top = x[:, :, y0][:, :, :, x0] * (1 - fx) + x[:, :, y0][:, :, :, x1] * fx
    bot = x[:, :, y1][:, :, :, x0] * (1 - fx) + x[:, :, y1][:, :, :, x1] * fx
    return top * (1 - fy) + bot * fy


def softmax(x: Arr, axis: int) -> Arr:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def onnx_reshape(x: Arr, shape: Arr, allowzero: int = 0) -> Arr:
    target = [int(s) for s in shape]
    if not allowzero:
        target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
    return x.reshape(target)


# --- the ops -----------------------------------------------------------------------------


def _conv(node: Node, a: list[Any]) -> list[Arr]:
    x, w = a[0], a[1]
    b = a[2] if len(a) > 2 else None
    at = node.attrs
    y = conv2d(x, w, b, at["strides"], at["pads"], at["dilations"], at["group"])
    if len(a) > 3 and a[3] is not None:
        y = y + a[3]
    return [activation(y, at.get("act", "none"), at.get("act_lo", 0.0), at.get("act_hi", 0.0))]


def _batchnorm(node: Node, a: list[Any]) -> list[Arr]:
    x, s, b, m, v = a[:5]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = s / np.sqrt(v + node.attrs.get("epsilon", 1e-5))
    return [(x - m.reshape(shape)) * inv.reshape(shape) + b.reshape(shape)]


def _pool(kind: str) -> OpFn:
    def run(node: Node, a: list[Any]) -> list[Arr]:
        at = node.attrs
        return [
            pool2d(
                a[0],
                kind,
                at["kernel_shape"],
                at["strides"],
                at["pads"],
                bool(at.get("count_include_pad", 0)),
            )
        ]

    return run


def _resize(node: Node, a: list[Any]) -> list[Arr]:
    at = node.attrs
    return [
        resize2d(a[0], at["out_hw"], at["scales_hw"], at["mode"], at["coord"], at["nearest_mode"])
    ]


def _pad(node: Node, a: list[Any]) -> list[Arr]:
    pads = node.attrs["pads"]
    r = len(pads) // 2
    return [
        np.pad(
            a[0],
            list(zip(pads[:r], pads[r:], strict=True)),
            constant_values=node.attrs.get("value", 0.0),
        )
    ]


def _gather(node: Node, a: list[Any]) -> list[Arr]:
    return [np.take(a[0], np.asarray(a[1], dtype=np.int64), axis=node.attrs.get("axis", 0))]


def _split(node: Node, a: list[Any]) -> list[Arr]:
    sizes = node.attrs["split"]
    ends = np.cumsum(sizes)[:-1]
    return list(np.split(a[0], ends, axis=node.attrs.get("axis", 0)))


def _slice(node: Node, a: list[Any]) -> list[Arr]:
    x = a[0]
    index = [slice(None)] * x.ndim
    for ax, st, en, sp in zip(
        *(node.attrs[k] for k in ("axes", "starts", "ends", "steps")), strict=True
    ):
        index[ax] = slice(st, en, sp)
    return [x[tuple(index)]]


def _channel_view(node: Node, a: list[Any]) -> list[Arr]:
    at = node.attrs
    stop = at["offset"] + at["stride"] * at["count"]
    return [a[0][:, at["offset"] : stop : at["stride"]]]


def _squeeze(node: Node, a: list[Any]) -> list[Arr]:
    axes = node.attrs.get("axes")
    return [np.squeeze(a[0], axis=tuple(axes) if axes is not None else None)]


def _unsqueeze(node: Node, a: list[Any]) -> list[Arr]:
    x = a[0]
    for ax in sorted(node.attrs["axes"]):
        x = np.expand_dims(x, ax)
    return [x]


def _flatten(node: Node, a: list[Any]) -> list[Arr]:
    ax = node.attrs.get("axis", 1)
    x = a[0]
    return [x.reshape(int(np.prod(x.shape[:ax])), -1)]


def _softmax(node: Node, a: list[Any]) -> list[Arr]:
    return [softmax(a[0], node.attrs["axis"])]


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX Div: integers divide truncating toward zero, in their type (a shape computation's
    `Shape -> Div(2)` stays an integer shape; NumPy's `/` would make it float)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        q = np.abs(a) // np.abs(b)
        return (np.sign(a) * np.sign(b) * q).astype(np.result_type(a, b))
    with np.errstate(divide="ignore", invalid="ignore"):  # x / 0 is inf or NaN, as IEEE says
        return a / b


OPS: dict[str, OpFn] = {
    "Conv": _conv,
    "BatchNormalization": _batchnorm,
    "Relu": lambda n, a: [np.maximum(a[0], 0)],
    "Sigmoid": lambda n, a: [activation(a[0], "sigmoid")],
    "Clip": lambda n, a: [np.clip(a[0], n.attrs["min"], n.attrs["max"])],
    "HardSigmoid": lambda n, a: [activation(a[0], "hardsigmoid", *act_params(n))],
    "HardSwish": lambda n, a: [activation(a[0], "hardswish")],
    "LeakyRelu": lambda n, a: [activation(a[0], "leakyrelu", *act_params(n))],
    "Tanh": lambda n, a: [np.tanh(a[0])],
    "Add": lambda n, a: [a[0] + a[1]],
    "Mul": lambda n, a: [a[0] * a[1]],
    "Sub": lambda n, a: [a[0] - a[1]],
    "Div": lambda n, a: [_divide(a[0], a[1])],
    "Concat": lambda n, a: [np.concatenate(a, axis=n.attrs["axis"])],
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda n, a: [a[0].mean(axis=(2, 3), keepdims=True)],
    "Resize": _resize,
    "Pad": _pad,
    "Reshape": lambda n, a: [onnx_reshape(a[0], a[1], n.attrs.get("allowzero", 0))],
    "Transpose": lambda n, a: [np.transpose(a[0], n.attrs["perm"])],
    "Gather": _gather,
    "Split": _split,
    "Slice": _slice,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Flatten": _flatten,
    "Softmax": _softmax,
    "Identity": lambda n, a: [a[0]],
    "Shape": lambda n, a: [np.asarray(a[0].shape, dtype=np.int64)],
    "Cast": lambda n, a: [np.asarray(a[0]).astype(n.attrs["to"])],
    "ChannelView": _channel_view,
    "ChannelGather": lambda n, a: [a[0][:, n.attrs["channels"]]],
}


def run_node(node: Node, args: list[Any]) -> list[Arr]:
    fn = OPS.get(node.op)
    if fn is None:
        raise GputrackError(f"{node.describe()}: the interpreter has no such op")
    return fn(node, args)


def run_graph(
    graph: Graph, feeds: dict[str, Arr], dtype: Any = np.float64, keep: bool = False
) -> dict[str, Arr]:
    """Run the graph on host arrays; returns the outputs (every tensor with `keep`)."""
    values: dict[str, Any] = {k: np.asarray(v, dtype=dtype) for k, v in feeds.items()}
    for k, v in graph.constants.items():
        values[k] = v.astype(dtype) if v.dtype.kind == "f" else v
    for node in graph.nodes:
        args = [values[t] if t else None for t in node.inputs]
        for name, val in zip(node.outputs, run_node(node, args), strict=True):
            values[name] = val
    if keep:
        return values
    return {k: values[k] for k in graph.outputs}
