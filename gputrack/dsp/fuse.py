"""Rewrites of the IR that keep its function and save kernel launches and memory traffic.

Each pass takes and returns a Graph (changed in place). `optimise` runs them in order:

1. identities out (Identity/Dropout, zero Pad, no-op Reshape/Transpose, Cast to float32 of
   an activation, which is float32 already);
2. per-channel affine ops - BatchNormalization, Mul/Add/Sub/Div by a constant that is one value
   per channel (or one for all) - folded into the preceding Conv's weights and bias, or,
   where there is none to fold into, made a depthwise 1x1 Conv (a kernel the device has);
3. Transpose -> Softmax -> inverse Transpose becomes a Softmax over the original axis;
4. chains of data-movement ops (Reshape, Transpose, Gather, Split, Slice, Squeeze, ...) that
   end in an NCHW tensor are traced on an index array: when every output channel is an input
   channel offset + stride * c with the spatial layout untouched - ShuffleNet's channel
   shuffle followed by its two Gathers is exactly that - the chain becomes a `ChannelView`;
   any other pure channel permutation/selection (torchvision's shuffle + split in halves)
   becomes a `ChannelGather`, one copy kernel;
5. zero Pad folded into the following AveragePool (count_include_pad) or Conv;
6. Conv + Add(same shape) becomes a Conv with a residual input; Conv + an activation (Relu,
   Sigmoid, Clip, HardSigmoid, HardSwish, LeakyRelu, Tanh) a Conv with that activation (the
   fused node takes the later node's place in the order, so that every input it reads is
   ready).

Constant subgraphs (Shape/Gather/Unsqueeze/Concat on constants) are already folded by the
importer, which evaluates every node whose inputs are all constants.
"""

from __future__ import annotations

import numpy as np

from gputrack.dsp import interp
from gputrack.dsp.ir import Graph, Node

MOVEMENT = {"Reshape", "Transpose", "Gather", "Split", "Slice", "Squeeze", "Unsqueeze", "Flatten"}
ACTIVATIONS = interp.ACTIVATIONS


def optimise(graph: Graph) -> Graph:
    for step in (
        drop_identities,
        fold_affine,
        channel_softmax,
        movement_to_views,
        fold_pad,
        fuse_residual,
        fuse_activation,
    ):
        step(graph)
        graph.prune()
    return graph


def _sole_reader(graph: Graph, tensor: str) -> Node | None:
    """The only node reading `tensor`, if exactly one does and it is not a graph output."""
    if tensor in graph.outputs:
        return None
    users = graph.consumers().get(tensor, [])
    return users[0] if len(users) == 1 and users[0].inputs.count(tensor) == 1 else None


def _replace(graph: Graph, drop: list[Node], at: Node, new: Node) -> None:
    """Put `new` where `at` is and remove `drop` (which includes `at`)."""
    out = []
    for n in graph.nodes:
        if n is at:
            out.append(new)
        elif not any(n is d for d in drop):
            out.append(n)
    graph.nodes = out


def drop_identities(graph: Graph) -> Graph:
    for n in list(graph.nodes):
        x = n.inputs[0] if n.inputs else ""
        same = x in graph.shapes and graph.shapes.get(n.outputs[0]) == graph.shapes[x]
        noop = (
            n.op == "Identity"
            or (n.op == "Pad" and not any(n.attrs["pads"]))
            or (n.op == "Reshape" and same)
            or (n.op == "Transpose" and n.attrs["perm"] == sorted(n.attrs["perm"]))
            or (n.op == "Cast" and n.attrs["to"] == np.float32 and _is_float32(graph, x))
        )
        if not noop or not x:
            continue
        out = n.outputs[0]
        if out not in graph.outputs:
            graph.nodes.remove(n)
            graph.rename_uses(out, x)
        elif x not in graph.outputs and x not in graph.inputs and x not in graph.constants:
            # the identity names a graph output: let the producer write under that name
            graph.nodes.remove(n)
            for m in graph.nodes:
                m.outputs = [out if t == x else t for t in m.outputs]
            graph.rename_uses(x, out)
    return graph


def _is_float32(graph: Graph, t: str) -> bool:
    """An activation is float32 (the input is) unless a Cast made it something else."""
    src = graph.producer().get(t)
    return t in graph.shapes and (src is None or src.op != "Cast" or src.attrs["to"] == np.float32)


def _fresh(graph: Graph, name: str) -> str:
    """`name`, or a variant of it, that no constant has yet."""
    while name in graph.constants:
        name += "'"
    return name


AFFINE_BINARY = ("Mul", "Add", "Sub", "Div")  # by a per-channel constant: affine in x


def _affine(graph: Graph, n: Node) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(x, scale, shift) when `n` is y = x * scale[c] + shift[c] over the channels of a
    1 x C x H x W tensor x, else None."""
    if n.op == "BatchNormalization":
        x = n.inputs[0]
        scale, beta, mean, var = (graph.const(t).astype(np.float64) for t in n.inputs[1:5])
        inv = scale / np.sqrt(var + n.attrs["epsilon"])
        scale, shift = inv, beta - mean * inv
    elif n.op in AFFINE_BINARY and graph.is_const(n.inputs[0]) != graph.is_const(n.inputs[1]):
        const_first = graph.is_const(n.inputs[0])
        if n.op == "Div" and const_first:  # k / x is no affine map of x
            return None
        x, k = n.inputs[::-1] if const_first else n.inputs[:2]
        kv = graph.const(k).astype(np.float64)
        c = graph.shapes[x][1] if len(graph.shapes[x]) == 4 else 0
        k4 = (1,) * (4 - kv.ndim) + kv.shape  # as it broadcasts against 1 x C x H x W
        if len(k4) != 4 or k4[0] != 1 or k4[2:] != (1, 1) or k4[1] not in (1, c):
            return None
        kv = np.broadcast_to(kv.ravel(), (c,))
        one, zero = np.ones(c), np.zeros(c)
        scale, shift = {
            "Mul": (kv, zero),
            "Add": (one, kv),
            "Sub": (-one, kv) if const_first else (one, -kv),  # k - x, x - k
            "Div": (np.divide(1.0, kv, out=np.full(c, np.inf), where=kv != 0), zero),
        }[n.op]  # x / k as x * (1/k): within an ulp of the division
    else:
        return None
    xs = graph.shapes.get(x)
    if xs is None or len(xs) != 4 or xs[0] != 1 or graph.shapes[n.outputs[0]] != xs:
        return None
    return x, scale, shift


def fold_affine(graph: Graph) -> Graph:
    """BatchNormalization, and Mul/Add/Sub/Div by a per-channel constant, into the Conv before
    them, or else into a depthwise 1x1 Conv of their own (one launch, and a following
    activation fuses into it)."""
    for n in [n for n in graph.nodes if n.op == "BatchNormalization" or n.op in AFFINE_BINARY]:
        found = _affine(graph, n)
        if found is None:
            continue
        x, scale, shift = found
        conv = graph.producer().get(x)
        if (
            conv is not None
            and conv.op == "Conv"
            and conv.attrs["act"] == "none"
            and len(conv.inputs) <= 3
            and _sole_reader(graph, x) is n
        ):
            w = graph.const(conv.inputs[1]).astype(np.float64)
            has_bias = len(conv.inputs) > 2 and conv.inputs[2]
            b = graph.const(conv.inputs[2]).astype(np.float64) if has_bias else np.zeros(len(w))
            drop, name, attrs = [conv, n], f"{conv.name}+{n.name}", dict(conv.attrs)
            w, b, src = w * scale[:, None, None, None], b * scale + shift, conv.inputs[0]
        else:  # nothing to fold into: a depthwise 1x1 convolution
            c = len(scale)
            drop, name, src = [n], n.name, x
            w, b = scale.reshape(c, 1, 1, 1), shift
            attrs = {"kernel_shape": (1, 1), "strides": (1, 1), "pads": (0, 0, 0, 0),
                     "dilations": (1, 1), "group": c, "act": "none"}  # fmt: skip
        wname, bname = _fresh(graph, f"{name}.weight"), _fresh(graph, f"{name}.bias")
        graph.constants[wname] = w.astype(np.float32)
        graph.constants[bname] = b.astype(np.float32)
        fused = Node(name, "Conv", [src, wname, bname], n.outputs[:1], attrs)
        _replace(graph, drop, n, fused)
    return graph


def channel_softmax(graph: Graph) -> Graph:
    prod = graph.producer()
    for sm in [n for n in graph.nodes if n.op == "Softmax"]:
        pre = prod.get(sm.inputs[0])
        post = _sole_reader(graph, sm.outputs[0])
        if pre is None or post is None or pre.op != "Transpose" or post.op != "Transpose":
            continue
        if _sole_reader(graph, pre.outputs[0]) is not sm:
            continue
        p, q = pre.attrs["perm"], post.attrs["perm"]
        if [p[q[i]] for i in range(len(p))] != list(range(len(p))):
            continue
        fused = Node(
            f"{pre.name}+{sm.name}+{post.name}",
            "Softmax",
            [pre.inputs[0]],
            post.outputs[:1],
            {"axis": p[sm.attrs["axis"]]},
        )
        _replace(graph, [pre, sm, post], post, fused)
    return graph


def _channel_map(graph: Graph, chain: list[tuple[Node, int]], root: str, out: str):
    """The input channel of each output channel when `out` is a channel selection of `root`
    (spatial layout untouched), else None."""
    rshape, oshape = graph.shapes[root], graph.shapes[out]
    if len(rshape) != 4 or len(oshape) != 4 or rshape[0] != 1 or oshape[0] != 1:
        return None
    if rshape[2:] != oshape[2:]:
        return None
    idx = np.arange(int(np.prod(rshape)), dtype=np.int64).reshape(rshape)
    for node, k in chain:
        args = [idx] + [graph.constants.get(t) for t in node.inputs[1:]]
        idx = interp.run_node(node, args)[k]
    plane = rshape[2] * rshape[3]
    idx = idx.reshape(oshape[1], plane)
    chans = idx[:, 0] // plane
    if not np.array_equal(idx, chans[:, None] * plane + np.arange(plane)[None, :]):
        return None
    return chans


def _view_node(name: str, src: str, dst: str, chans: np.ndarray) -> Node:
    """ChannelView when the channels are offset + stride * c (stride >= 1), else a
    ChannelGather (one copy kernel), e.g. torchvision's shuffle followed by a split in halves."""
    stride = int(chans[1] - chans[0]) if len(chans) > 1 else 1
    if stride >= 1 and np.array_equal(chans, chans[0] + stride * np.arange(len(chans))):
        attrs = {"offset": int(chans[0]), "stride": stride, "count": len(chans)}
        return Node(name, "ChannelView", [src], [dst], attrs)
    return Node(name, "ChannelGather", [src], [dst], {"channels": [int(c) for c in chans]})


def movement_to_views(graph: Graph) -> Graph:
    prod = graph.producer()
    users = graph.consumers()

    def is_endpoint(t: str) -> bool:
        return t in graph.outputs or any(u.op not in MOVEMENT for u in users.get(t, []))

    new_nodes: list[Node] = []
    for n in graph.nodes:
        if n.op not in MOVEMENT:
            new_nodes.append(n)
            continue
        renamed = list(n.outputs)
        for k, t in enumerate(n.outputs):
            if not is_endpoint(t):
                continue
            chain, cur, kk = [], t, k
            while cur in prod and prod[cur].op in MOVEMENT:
                node = prod[cur]
                chain.append((node, node.outputs.index(cur)))
                cur = node.inputs[0]
            del kk
            if cur in graph.constants:
                continue
            chans = _channel_map(graph, chain[::-1], cur, t)
            if chans is None:
                continue
            # one name per view: a Split's outputs are views of their own
            name = n.name if len(n.outputs) == 1 else f"{n.name}[{k}]"
            new_nodes.append(_view_node(name, cur, t, chans))
            renamed[k] = f"{t}#replaced"
        if renamed != n.outputs:
            n = Node(n.name, n.op, n.inputs, renamed, n.attrs)
        new_nodes.append(n)
    graph.nodes = new_nodes
    return graph


def fold_pad(graph: Graph) -> Graph:
    prod = graph.producer()
    for n in [n for n in graph.nodes if n.op in ("AveragePool", "Conv")]:
        pad = prod.get(n.inputs[0])
        if pad is None or pad.op != "Pad" or _sole_reader(graph, pad.outputs[0]) is not n:
            continue
        p = pad.attrs["pads"]
        if len(p) != 8 or pad.attrs["value"] != 0.0 or any(p[i] for i in (0, 1, 4, 5)):
            continue
        if min(p) < 0:
            continue
        if n.op == "AveragePool" and any(n.attrs["pads"]) and not n.attrs["count_include_pad"]:
            continue
        attrs = dict(n.attrs)
        own = attrs["pads"]
        attrs["pads"] = (own[0] + p[2], own[1] + p[3], own[2] + p[6], own[3] + p[7])
        if n.op == "AveragePool":
            attrs["count_include_pad"] = 1
        fused = Node(f"{pad.name}+{n.name}", n.op, [pad.inputs[0], *n.inputs[1:]], n.outputs, attrs)
        _replace(graph, [pad, n], n, fused)
    return graph


def fuse_residual(graph: Graph) -> Graph:
    prod = graph.producer()
    for add in [n for n in graph.nodes if n.op == "Add"]:
        for k in (0, 1):
            conv = prod.get(add.inputs[k])
            other = add.inputs[1 - k]
            if conv is None or conv.op != "Conv" or conv.attrs["act"] != "none":
                continue
            if len(conv.inputs) > 3 or _sole_reader(graph, conv.outputs[0]) is not add:
                continue
            if graph.shapes.get(other) != graph.shapes[conv.outputs[0]]:
                continue
            bias = conv.inputs[2] if len(conv.inputs) > 2 else ""
            fused = Node(
                f"{conv.name}+{add.name}",
                "Conv",
                [conv.inputs[0], conv.inputs[1], bias, other],
                add.outputs,
                dict(conv.attrs),
            )
            _replace(graph, [conv, add], add, fused)
            prod = graph.producer()
            break
    return graph


def fuse_activation(graph: Graph) -> Graph:
    prod = graph.producer()
    for act in [n for n in graph.nodes if n.op in ACTIVATIONS]:
        conv = prod.get(act.inputs[0])
        if conv is None or conv.op != "Conv" or conv.attrs["act"] != "none":
            continue
        if _sole_reader(graph, conv.outputs[0]) is not act:
            continue
        lo, hi = interp.act_params(act)
        attrs = dict(conv.attrs, act=ACTIVATIONS[act.op], act_lo=lo, act_hi=hi)
        fused = Node(f"{conv.name}+{act.name}", "Conv", conv.inputs, act.outputs, attrs)
        _replace(graph, [conv, act], act, fused)
    return graph
