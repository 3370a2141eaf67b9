"""The network as a small graph IR: named tensors, nodes in execution order, constant tensors
and static shapes. ONNX is imported into it (`onnx_import`), rewritten by `fuse`, run by the
NumPy interpreter (`interp`) and turned into kernel launches by `plan`.

Node ops are ONNX operator names, plus the fused forms that `fuse` creates:

- `Conv` with attributes `act` ("none" | "relu" | "sigmoid" | "clip" | "hardsigmoid" |
  "hardswish" | "leakyrelu" | "tanh", with `act_lo`/`act_hi`: Clip's min/max, HardSigmoid's
  alpha/beta, LeakyRelu's alpha)
  and an optional fourth input, a residual added before the activation (Conv+Add+Relu);
- `ChannelView` (`offset`, `stride`, `count`): output channel c is input channel
  offset + stride * c, same spatial layout: a view, no data moves;
- `ChannelGather` (`channels`): output channel c is input channel channels[c] (a copy);
- `Softmax` with `axis` 1 on NCHW, the channel softmax the Transpose/Softmax/Transpose
  pattern becomes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]  # "" marks an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"node '{self.name}' ({self.op})"


@dataclass
class Graph:
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    opset: int = 13
    name: str = "network"
    notes: list[str] = field(default_factory=list)  # what the import assumed (batch 1, ...)
    unread_inputs: list[str] = field(default_factory=list)  # graph inputs no node reads

    def producer(self) -> dict[str, Node]:
        return {out: n for n in self.nodes for out in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for n in self.nodes:
            for t in n.inputs:
                if t:
                    users.setdefault(t, []).append(n)
        return users

    def is_const(self, name: str) -> bool:
        return name in self.constants

    def const(self, name: str) -> np.ndarray:
        return self.constants[name]

    def prune(self) -> None:
        """Drop nodes and constants nothing needed by the outputs reads."""
        needed = set(self.outputs)
        kept: list[Node] = []
        for n in reversed(self.nodes):
            if any(o in needed for o in n.outputs):
                kept.append(n)
                needed.update(t for t in n.inputs if t)
        self.nodes = kept[::-1]
        self.constants = {k: v for k, v in self.constants.items() if k in needed}
        self.shapes = {
            k: v
            for k, v in self.shapes.items()
            if k in needed or k in self.inputs or any(k in n.outputs for n in self.nodes)
        }

    def rename_uses(self, old: str, new: str, nodes: Iterable[Node] | None = None) -> None:
        """Make readers of tensor `old` read `new` (graph outputs included)."""
        for n in nodes if nodes is not None else self.nodes:
            n.inputs = [new if t == old else t for t in n.inputs]
        self.outputs = [new if t == old else t for t in self.outputs]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts
