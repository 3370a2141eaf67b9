"""The launch plan: the fused IR as a fixed list of kernel launches on buffers allocated once.

- Placement: every tensor is a channel view (buffer, c0, cs) of a base tensor. A Concat's
  inputs that a kernel produces are written straight into their channel slot of the
  concatenated buffer; `ChannelView` nodes (the channel shuffle) only change c0/cs. A Concat
  input that is already a view of something else (or a graph input/output) is copied in.
- Memory: base tensors get their storage from a pool of flat float32 buffers; a buffer is
  reused once the last step reading its previous tenant is done (never within one step).
- Each step records its FLOPs and the bytes it must move, for docs/DSP.md and the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gputrack.device.base import Backend
from gputrack.dsp.ir import Graph, Node
from gputrack.errors import GputrackError

ACT_CODES = {"none": 0, "relu": 1, "sigmoid": 2, "clip": 3}
RESIZE_MODES = {"nearest": 0, "linear": 1}
RESIZE_COORDS = {"asymmetric": 0, "half_pixel": 1, "pytorch_half_pixel": 2, "align_corners": 3}
NEAREST_MODES = {"floor": 0, "ceil": 1, "round_prefer_floor": 2, "round_prefer_ceil": 3}
CONV_THREADS = 128  # nn.cu CONV_THREADS
PW_TILE = 64  # nn.cu PW_BM = PW_BN
ELT_THREADS = 256
COMPUTE_OPS = {
    "Conv",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Resize",
    "Add",
    "Relu",
    "Sigmoid",
    "Clip",
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
                offset += graph.shapes[t][1]
    return alias, copies


def _root(alias: dict[str, tuple[str, int, int]], t: str) -> tuple[str, int, int]:
    c0, cs = 0, 1
    while t in alias:
        parent, off, stride = alias[t]
        c0, cs = off + stride * c0, stride * cs
        t = parent
    return t, c0, cs


def build(graph: Graph, backend: Backend) -> Plan:
    if len(graph.inputs) != 1:
        raise GputrackError(f"networks with one input are supported, got {graph.inputs}")
    alias, copies = resolve_views(graph)
    for t in graph.outputs:
        if t in graph.constants:
            raise GputrackError(f"model output '{t}' is a constant")
    roots = {t: _root(alias, t) for t in graph.shapes}
    # graph outputs must own stride-1 storage: a view output gets a copy step of its own
    out_copies = [t for t in graph.outputs if t in alias and roots[t][2] != 1]
    for t in out_copies:
        roots[t] = (t, 0, 1)

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
    for t in graph.outputs:
        last[roots[t][0]] = end
        first.setdefault(roots[t][0], len(graph.nodes))
    last[graph.inputs[0]] = end  # the input buffer is never reused: the next input may land early
    for t in out_copies:  # copied at the end: the source lives until then
        last[_root(alias, t)[0]] = end

    buffers: list[Any] = []
    sizes: list[int] = []
    free_after: list[int] = []  # step after which buffer k is free
    slot: dict[str, int] = {}
    for base in sorted(first, key=lambda b: first[b]):
        need = int(np.prod(graph.shapes[base]))
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

    plan = Plan([], buffers, views, dict(graph.shapes))
    for n in graph.nodes:
        for concat, t, offset in copies:
            if concat is n:
                _copy_step(plan, graph, n.name, t, n.outputs[0], offset)
        _node_steps(plan, graph, n, backend)
    for t in out_copies:
        base, c0, cs = _root(alias, t)
        _copy_step(plan, graph, f"output {t}", t, t, 0, view=(plan.views[base][0], c0, cs))
    return plan


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
    dst: str,
    offset: int,
    view: tuple[int, int, int] | None = None,
) -> None:
    c, *hw = graph.shapes[src][1:]
    npix = int(np.prod(hw))
    b, c0, cs = view if view is not None else plan.views[src]
    y, y0, _ = _v(plan, dst)
    plan.steps.append(
        Step(
            f"{name} (copy {src})",
            "nn_eltwise",
            (-(-npix // ELT_THREADS), c),
            ELT_THREADS,
            [plan.buffers[b], c0, cs, None, 0, 1, c, npix, y, y0 + offset, 0, 0.0, 0.0],
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
        raise _unsupported(
            n, "no kernel for this op; only channel remaps of data movement ops become views"
        )
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
    elif op in ("Add", "Relu", "Sigmoid", "Clip"):
        b, b0, bcs = None, 0, 1
        if op == "Add":
            if graph.shapes[n.inputs[1]] != xs or ys != xs:
                raise _unsupported(n, "Add of equal shapes only (no broadcasting)")
            b, b0, bcs = _v(plan, n.inputs[1])
        act = {"Add": 0, "Relu": 1, "Sigmoid": 2, "Clip": 3}[op]
        lo, hi = (a["min"], a["max"]) if op == "Clip" else (0.0, 0.0)
        npx = h * w
        step = Step(
            n.name,
            "nn_eltwise",
            (-(-npx // ELT_THREADS), cin),
            ELT_THREADS,
            [x, x0, xcs, b, b0, bcs, cin, npx, y, y0, act, np.float32(lo), np.float32(hi)],
            cin * npx,
            4 * cin * npx * (3 if b is not None else 2),
        )
    elif op == "ChannelGather":
        idx = _int_table(plan, backend, f"{n.name}.channels", n.attrs["channels"])
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
