"""The launch plan: the fused IR as a fixed list of kernel launches on buffers allocated once.

- Placement: every tensor is a channel view (buffer, c0, cs) of a base tensor. A Concat's
  inputs that a kernel produces are written straight into their channel slot of the
  concatenated buffer; `ChannelView` nodes (the channel shuffle) only change c0/cs. A Concat
  input that is already a view of something else (or a graph input/output, or a constant) is
  copied in. A graph output that is a strided view is copied out after the last step (its
  readers read the view itself).
- Memory: base tensors get their storage from a pool of flat float32 buffers; a buffer is
  reused once the last step reading its previous tenant is done (never within one step).
- Each step records its FLOPs and the bytes it must move, for docs/DSP.md and the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gputrack.device.base import Backend
from gputrack.dsp import interp
from gputrack.dsp.fuse import MOVEMENT
from gputrack.dsp.ir import Graph, Node
from gputrack.dsp.onnx_import import unexpected
from gputrack.errors import GputrackError

ACT_CODES = {"none": 0, "relu": 1, "sigmoid": 2, "clip": 3, "hardsigmoid": 4, "hardswish": 5,
             "leakyrelu": 6, "tanh": 7}  # fmt: skip
RESIZE_MODES = {"nearest": 0, "linear": 1}
RESIZE_COORDS = {"asymmetric": 0, "half_pixel": 1, "pytorch_half_pixel": 2, "align_corners": 3}
NEAREST_MODES = {"floor": 0, "ceil": 1, "round_prefer_floor": 2, "round_prefer_ceil": 3,
                 "simple": 4}  # fmt: skip
CONV_THREADS = 128  # nn.cu CONV_THREADS
PW_TILE = 64  # nn.cu PW_BM = PW_BN
ELT_THREADS = 256
BINARY_OPS = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3}  # nn.cu BINOP_*
COMPUTE_OPS = {
    "Identity",  # what fusion keeps: a graph output that copies the input or another output
    "Conv",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Resize",
    "Add",
    "Sub",
    "Mul",
    "Div",
    *interp.ACTIVATIONS,
    "Softmax",
    "ChannelGather",
}


@dataclass
class Step:
    name: str  # the IR node (fused nodes name all their parts)
    kernel: str
    grid: tuple[int, ...]
    block: int
    args: list[Any]
    flops: int = 0
    bytes: int = 0
    shape: tuple[int, ...] = ()


@dataclass
class Plan:
    steps: list[Step]
    buffers: list[Any]  # flat float32 device arrays
    views: dict[str, tuple[int, int, int]]  # tensor -> (buffer index, c0, cs)
    shapes: dict[str, tuple[int, ...]]
    weights: dict[str, Any] = field(default_factory=dict)

    def array(self, tensor: str) -> Any:
        """A tensor with stride-1 channels as a device array of its shape (no copy)."""
        b, c0, cs = self.views[tensor]
        shape = self.shapes[tensor]
        if cs != 1 and shape[1] > 1:
            raise GputrackError(f"tensor '{tensor}' is a strided view; copy it first")
        plane = int(np.prod(shape[2:]))
        n = int(np.prod(shape))
        return self.buffers[b][c0 * plane : c0 * plane + n].reshape(shape)


def _unsupported(node: Node, why: str) -> GputrackError:
    return GputrackError(f"{node.describe()}: not supported on the device ({why})")


def resolve_views(
    graph: Graph,
) -> tuple[dict[str, tuple[str, int, int]], list[tuple[Node, str, int]]]:
    """Alias each tensor to (base tensor, c0, cs); list the Concat inputs that need a copy."""
    prod = graph.producer()
    alias: dict[str, tuple[str, int, int]] = {}
    copies: list[tuple[Node, str, int]] = []
    for n in graph.nodes:
        if n.op == "ChannelView":
            a = n.attrs
            alias[n.outputs[0]] = (n.inputs[0], a["offset"], a["stride"])
        elif n.op == "Concat":
            shape = graph.shapes[n.outputs[0]]
            if len(shape) != 4 or shape[0] != 1 or n.attrs["axis"] != 1:
                raise _unsupported(n, f"only channel concat of 1xCxHxW, got {shape}")
            offset = 0
            for t in n.inputs:
                src = prod.get(t)
                placeable = (
                    src is not None
                    and (src.op in COMPUTE_OPS or src.op == "Concat")
                    and t not in graph.outputs
                    and t not in alias
                    and n.inputs.count(t) == 1
                )
                if placeable:
                    alias[t] = (n.outputs[0], offset, 1)
                else:
                    copies.append((n, t, offset))
                offset += _shape(graph, t)[1]
    return alias, copies


def _shape(graph: Graph, t: str) -> tuple[int, ...]:
    return graph.shapes[t] if t in graph.shapes else tuple(graph.constants[t].shape)


def _root(alias: dict[str, tuple[str, int, int]], t: str) -> tuple[str, int, int]:
    c0, cs = 0, 1
    while t in alias:
        parent, off, stride = alias[t]
        c0, cs = off + stride * c0, stride * cs
        t = parent
    return t, c0, cs


def input_problem(shape: tuple[int, ...]) -> str | None:
    """Why the kernels cannot take an input of this shape (None: they can)."""
    if len(shape) == 4 and shape[0] == 1:
        return None
    what = f"batch {shape[0]}" if len(shape) == 4 else f"rank {len(shape)}"
    return (f"is {_dims(shape)} ({what}): the device takes one image, 1 x C x H x W (NCHW)"
            f"{nhwc_hint(shape)}")  # fmt: skip


def nhwc_hint(shape: tuple[int, ...]) -> str:
    """A hint when an input looks channels-last (H x W x 3), else ''."""
    if len(shape) in (3, 4) and shape[-1] in (1, 3, 4) and min(shape[-3:-1]) >= 8:
        return "; it looks channels-last (NHWC): export the model channels-first (NCHW)"
    return ""


def _dims(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape)) or "a scalar"


def no_kernel_reason(graph: Graph, n: Node) -> str:
    """What is unsupported about a node that has no kernel, and why, in words."""
    op = n.op
    shapes = [_shape(graph, t) if t else () for t in n.inputs]
    if op in MOVEMENT:
        return (f"a data-movement op runs on the device only as a channel view, selecting or "
                f"reordering channels of a 1 x C x H x W tensor with H and W untouched; this one "
                f"makes {_dims(graph.shapes[n.outputs[0]])} of {_dims(shapes[0])}")  # fmt: skip
    if op == "Pad":
        return (f"no kernel for a Pad of its own ({_pad_reason(graph, n)}); a zero Pad of H "
                "and W is folded into the one Conv or AveragePool that reads it")  # fmt: skip
    if op == "Cast":
        half = " (a float16 model: export it in float32)" if n.attrs["to"] == np.float16 else ""
        return (f"a Cast to {np.dtype(n.attrs['to']).name}: the device computes in float32 "
                f"only{half}")  # fmt: skip
    if op == "BatchNormalization":
        return f"BatchNormalization of a {_dims(shapes[0])} tensor (1 x C x H x W only)"
    return f"no kernel for {op}"


def _pad_reason(graph: Graph, n: Node) -> str:
    p, rank = n.attrs["pads"], len(n.attrs["pads"]) // 2
    if rank != 4 or any(p[i] for i in (0, 1, rank, rank + 1)):
        return "it pads the batch or channel axis"
    if n.attrs["value"] != 0.0:
        return f"its value is {n.attrs['value']:g}, not 0"
    users = graph.consumers().get(n.outputs[0], [])
    if n.outputs[0] in graph.outputs or len(users) != 1:
        return "its result is a graph output or read by several nodes"
    user = users[0]
    if user.op == "AveragePool":
        return "the AveragePool it feeds leaves its own pads out of the average"
    return f"it feeds a {user.op}"


def build(graph: Graph, backend: Backend) -> Plan:
    """The plan for `graph` on `backend`; what it cannot run is a one-line GputrackError."""
    if len(graph.inputs) != 1:
        raise GputrackError(f"networks with one input are supported, got {graph.inputs}")
    shape = graph.shapes[graph.inputs[0]]
    problem = input_problem(shape)
    if problem:
        raise GputrackError(f"input '{graph.inputs[0]}' {problem}")
    try:
        return _build(graph, backend)
    except GputrackError as err:  # an NHWC model fails at its first Transpose: say why
        hint = nhwc_hint(shape)
        if hint and "not supported on the device" in str(err):
            raise GputrackError(f"{err}{hint}") from err
        raise


def _build(graph: Graph, backend: Backend) -> Plan:
    alias, copies = resolve_views(graph)
    for t in graph.outputs:
        if t in graph.constants:
            raise GputrackError(f"model output '{t}' is a constant")
    roots = {t: _root(alias, t) for t in graph.shapes}
    # graph outputs must own stride-1 storage: a view output gets a copy step of its own, into
    # a tensor of its own; the nodes that read it keep reading the live view (the copy is
    # written only after the last node)
    out_copies = {t: f"{t}#output" for t in graph.outputs if t in alias and roots[t][2] != 1}
    for copy in out_copies.values():
        roots[copy] = (copy, 0, 1)

    # lifetimes of base tensors in step units; the input is defined before step 0
    first: dict[str, int] = {graph.inputs[0]: -1}
    last: dict[str, int] = {}
    copy_at = {id(n) for n, _, _ in copies}
    for i, n in enumerate(graph.nodes):
        for t in n.outputs:
            base = roots[t][0]
            first.setdefault(base, i)
        for t in n.inputs:
            if t and t in roots:
                last[roots[t][0]] = i
        if id(n) in copy_at:
            last[roots[n.outputs[0]][0]] = max(last.get(roots[n.outputs[0]][0], i), i)
    end = len(graph.nodes) + 1
    for t in [*graph.outputs, *out_copies.values()]:
        last[roots[t][0]] = end
        first.setdefault(roots[t][0], len(graph.nodes))
    last[graph.inputs[0]] = end  # the input buffer is never reused: the next input may land early

    buffers: list[Any] = []
    sizes: list[int] = []
    free_after: list[int] = []  # step after which buffer k is free
    slot: dict[str, int] = {}
    shapes = dict(graph.shapes)
    for t, copy in out_copies.items():
        shapes[copy] = shapes[t]
    for base in sorted(first, key=lambda b: first[b]):
        need = int(np.prod(shapes[base]))
        best = None
        for k, size in enumerate(sizes):
            if (
                free_after[k] < first[base]
                and size >= need
                and (best is None or size < sizes[best])
            ):
                best = k
        if best is None:
            buffers.append(backend.empty((need,), np.float32))
            sizes.append(need)
            free_after.append(0)
            best = len(buffers) - 1
        slot[base] = best
        free_after[best] = last.get(base, first[base])
    views = {t: (slot[r[0]], r[1], r[2]) for t, r in roots.items() if r[0] in slot}

    plan = Plan([], buffers, views, shapes)
    for n in graph.nodes:
        try:
            for concat, t, offset in copies:
                if concat is n:  # a constant input is copied from the weights
                    src = (_v(plan, t) if t in plan.views
                           else (_weight(plan, graph, backend, t), 0, 1))  # fmt: skip
                    _copy_step(plan, graph, n.name, t, src, n.outputs[0], offset)
            _node_steps(plan, graph, n, backend)
        except GputrackError:
            raise
        except Exception as err:  # a graph nobody foresaw: one line naming the node
            raise GputrackError(f"{n.describe()}: {unexpected(err)}") from err
    for t, copy in out_copies.items():
        _copy_step(plan, graph, f"output {t}", t, _v(plan, t), copy, 0)
        plan.views[t] = plan.views[copy]  # what `array(t)` hands out: the copy
    return plan


def _second_operand(
    plan: Plan, graph: Graph, n: Node, backend: Backend
) -> tuple[Any, int, int, int]:
    """(array, c0, cs, pixels per channel) of a binary op's second operand: a tensor of the
    first's shape, one of 1 x C x 1 x 1 (read at every pixel: a squeeze-and-excitation gate),
    or a constant that broadcasts to the first's shape (uploaded at that shape, what fusion
    left: a constant varying over H or W). Other broadcasts are refused."""
    xs, ys = graph.shapes[n.inputs[0]], graph.shapes[n.outputs[0]]
    other = n.inputs[1]
    if graph.is_const(other):
        if ys != xs:
            raise _unsupported(n, f"the constant operand {graph.constants[other].shape} "
                                  f"broadcasts the tensor {xs} to {ys}")  # fmt: skip
        name = f"{other}#broadcast{xs}"
        if name not in plan.weights:
            full = np.broadcast_to(graph.constants[other], xs)
            plan.weights[name] = backend.to_device(np.ascontiguousarray(full, dtype=np.float32))
        return plan.weights[name], 0, 1, xs[2] * xs[3]
    os_ = graph.shapes[other]
    if ys == xs and os_ in (xs, (1, xs[1], 1, 1)):
        b, b0, bcs = _v(plan, other)
        return b, b0, bcs, xs[2] * xs[3] if os_ == xs else 1
    raise _unsupported(n, f"{n.op} of a {_dims(xs)} and a {_dims(os_)} tensor: the second "
                          "must have the first's shape, or 1 x C x 1 x 1")  # fmt: skip


def _broadcast_first(graph: Graph, n: Node) -> bool:
    """Whether a binary op's first operand is the one that broadcasts: a constant, or a
    tensor of another shape than the output beside one of the output's shape."""
    first, second = n.inputs[:2]
    if graph.is_const(first):
        return True
    out = graph.shapes[n.outputs[0]]
    return (not graph.is_const(second) and graph.shapes[first] != out
            and graph.shapes[second] == out)


def _v(plan: Plan, t: str) -> tuple[Any, int, int]:
    b, c0, cs = plan.views[t]
    return plan.buffers[b], c0, cs


def _weight(plan: Plan, graph: Graph, backend: Backend, name: str) -> Any:
    if not name:
        return None
    if name not in plan.weights:
        plan.weights[name] = backend.to_device(
            np.ascontiguousarray(graph.constants[name], dtype=np.float32)
        )
    return plan.weights[name]


def _int_table(plan: Plan, backend: Backend, name: str, values: list[int]) -> Any:
    if name not in plan.weights:
        plan.weights[name] = backend.to_device(np.asarray(values, dtype=np.int32))
    return plan.weights[name]


def _copy_step(
    plan: Plan,
    graph: Graph,
    name: str,
    src: str,
    source: tuple[Any, int, int],
    dst: str,
    offset: int,
) -> None:
    """Copy `src`, read as `source` = (array, c0, cs), into `dst` from channel `offset` on."""
    c, *hw = _shape(graph, src)[1:]
    npix = int(np.prod(hw))
    x, c0, cs = source
    y, y0, _ = _v(plan, dst)
    plan.steps.append(
        Step(
            f"{name} (copy {src})",
            "nn_eltwise",
            (-(-npix // ELT_THREADS), c),
            ELT_THREADS,
            [x, c0, cs, None, 0, 1, 1, 0, c, npix, y, y0 + offset, 0, 0.0, 0.0],
            0,
            8 * c * npix,
            (1, c, *hw),
        )
    )


def _node_steps(plan: Plan, graph: Graph, n: Node, backend: Backend) -> None:
    op, a = n.op, n.attrs
    if op in ("ChannelView", "Concat"):
        return
    if op not in COMPUTE_OPS:
        raise _unsupported(n, no_kernel_reason(graph, n))
    if op in ("Add", "Mul") and _broadcast_first(graph, n):
        # the tensor first; of two tensors, the one of the output's shape (torchvision's
        # squeeze-and-excitation is `scale * input`, its 1 x C x 1 x 1 gate first)
        n = Node(n.name, op, n.inputs[::-1], n.outputs, a)
    elif op in BINARY_OPS and graph.is_const(n.inputs[0]):  # fusion folds a per-channel one
        raise _unsupported(n, f"a constant of shape {graph.constants[n.inputs[0]].shape} "
                              f"{'minus' if op == 'Sub' else 'divided by'} a tensor: only the "
                              "tensor first, or a constant of one value per channel")  # fmt: skip
    xs = graph.shapes[n.inputs[0]]
    ys = graph.shapes[n.outputs[0]]
    if len(xs) != 4 or xs[0] != 1:
        raise _unsupported(n, f"batch-1 NCHW tensors only, got {xs}")
    x, x0, xcs = _v(plan, n.inputs[0])
    y, y0, ycs = _v(plan, n.outputs[0])
    assert ycs == 1, "writers use stride-1 channels"
    _, cin, h, w = xs
    _, cout, ho, wo = ys
    i32 = np.int32
    out_px = ho * wo
    if op == "Conv":
        wt = graph.constants[n.inputs[1]]
        wdev = _weight(plan, graph, backend, n.inputs[1])
        bias = _weight(plan, graph, backend, n.inputs[2] if len(n.inputs) > 2 else "")
        res, r0, rcs = (None, 0, 1)
        if len(n.inputs) > 3 and n.inputs[3]:
            res, r0, rcs = _v(plan, n.inputs[3])
        act = ACT_CODES[a["act"]]
        lo, hi = np.float32(a.get("act_lo", 0.0)), np.float32(a.get("act_hi", 0.0))
        kh, kw = a["kernel_shape"]
        g = a["group"]
        flops = 2 * cout * out_px * (cin // g) * kh * kw
        nbytes = 4 * (cin * h * w + wt.size + cout * out_px * (2 if res is not None else 1))
        pointwise = (kh, kw) == (1, 1) and a["strides"] == (1, 1) and not any(a["pads"]) and g == 1
        if pointwise:
            step = Step(
                n.name,
                "nn_conv1x1",
                (-(-out_px // PW_TILE), -(-cout // PW_TILE)),
                256,
                [x, x0, xcs, cin, out_px, wdev, bias, res, r0, rcs, y, y0, cout, act, lo, hi],
            )
        else:
            sh, sw = a["strides"]
            p = a["pads"]
            dh, dw = a["dilations"]
            step = Step(
                n.name,
                "nn_conv2d",
                (-(-out_px // CONV_THREADS), cout),
                CONV_THREADS,
                [
                    x,
                    x0,
                    xcs,
                    cin,
                    h,
                    w,
                    wdev,
                    bias,
                    res,
                    r0,
                    rcs,
                    y,
                    y0,
                    cout,
                    ho,
                    wo,
                    kh,
                    kw,
                    sh,
                    sw,
                    p[0],
                    p[1],
                    dh,
                    dw,
                    g,
                    act,
                    lo,
                    hi,
                ],
            )
        step.flops, step.bytes = flops, nbytes
    elif op in ("MaxPool", "AveragePool"):
        kh, kw = a["kernel_shape"]
        sh, sw = a["strides"]
        p = a["pads"]
        step = Step(
            n.name,
            "nn_pool2d",
            (-(-out_px // ELT_THREADS), cin),
            ELT_THREADS,
            [
                x,
                x0,
                xcs,
                cin,
                h,
                w,
                y,
                y0,
                ho,
                wo,
                kh,
                kw,
                sh,
                sw,
                p[0],
                p[1],
                0 if op == "MaxPool" else 1,
                int(a.get("count_include_pad", 0)),
            ],
            cin * out_px * kh * kw,
            4 * (cin * h * w + cout * out_px),
        )
    elif op == "GlobalAveragePool":
        step = Step(
            n.name,
            "nn_global_avgpool",
            (cin,),
            256,
            [x, x0, xcs, cin, h * w, y, y0],
            cin * h * w,
            4 * (cin * h * w + cin),
        )
    elif op == "Resize":
        sy, sx = a["scales_hw"]
        step = Step(
            n.name,
            "nn_resize",
            (-(-out_px // ELT_THREADS), cin),
            ELT_THREADS,
            [
                x,
                x0,
                xcs,
                cin,
                h,
                w,
                y,
                y0,
                ho,
                wo,
                np.float32(sy),
                np.float32(sx),
                RESIZE_MODES[a["mode"]],
                RESIZE_COORDS[a["coord"]],
                NEAREST_MODES.get(a["nearest_mode"], 0),
            ],
            0 if a["mode"] == "nearest" else 8 * cout * out_px,
            4 * (cin * h * w + cout * out_px),
        )
    elif op in interp.ACTIVATIONS or op == "Identity" or op in BINARY_OPS:
        b, b0, bcs, bhw = _second_operand(plan, graph, n, backend) if op in BINARY_OPS else (
            None, 0, 1, 1)  # fmt: skip
        act = ACT_CODES[interp.ACTIVATIONS[op]] if op in interp.ACTIVATIONS else 0
        lo, hi = interp.act_params(n)
        npx = h * w
        step = Step(
            n.name,
            "nn_eltwise",
            (-(-npx // ELT_THREADS), cin),
            ELT_THREADS,
            [x, x0, xcs, b, b0, bcs, bhw, BINARY_OPS.get(op, 0), cin, npx, y, y0, act,
             np.float32(lo), np.float32(hi)],  # fmt: skip
            cin * npx,
            4 * cin * npx * (3 if b is not None else 2),
        )
    elif op == "ChannelGather":
        # keyed by the output: one multi-output node (a Split) can give several gathers
        idx = _int_table(plan, backend, f"{n.outputs[0]}#channels", n.attrs["channels"])
        npx = h * w
        step = Step(
            n.name,
            "nn_channel_gather",
            (-(-npx // ELT_THREADS), cout),
            ELT_THREADS,
            [x, x0, xcs, idx, cout, npx, y, y0],
            0,
            8 * cout * npx,
        )
    else:  # Softmax
        if a["axis"] != 1:
            raise _unsupported(n, f"softmax over axis {a['axis']} (channels only)")
        npx = h * w
        step = Step(
            n.name,
            "nn_softmax_channels",
            (-(-npx // 128),),
            128,
            [x, x0, xcs, cin, npx, y, y0],
            4 * cin * npx,
            8 * cin * npx,
        )
    step.args = [
        i32(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
        for v in step.args
    ]
    step.shape = ys
    plan.steps.append(step)
