"""`Network(model, backend).run(tensor) -> {output name: array}`.

On a backend that runs kernels the model is imported, fused and planned once (buffers
allocated once); `run` uploads the input into its buffer and launches the plan's kernels in
order on the given stream, with no host synchronisation in between, so that a caller can
capture one run as a CUDA graph. On the `cpu` backend onnxruntime runs the original model:
the reference, and the practical fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gputrack.device.base import Backend
from gputrack.dsp import fuse, plan
from gputrack.dsp.ir import Graph
from gputrack.dsp.onnx_import import load_model
from gputrack.errors import GputrackError


class Network:
    def __init__(self, model: str | Path | Any, backend: Backend) -> None:
        self.backend = backend
        self.graph: Graph = fuse.optimise(load_model(model))
        self.input_name = self.graph.inputs[0]
        self.input_shape = self.graph.shapes[self.input_name]
        self.output_names = list(self.graph.outputs)
        self._session = None
        self.plan: plan.Plan | None = None
        if backend.runs_kernels:
            self._module = backend.load("nn.cu")
            self.plan = plan.build(self.graph, backend)
            self._kernels = {s.kernel: self._module.kernel(s.kernel) for s in self.plan.steps}
        else:
            self._session = _onnxruntime_session(model)

    def launch(self, stream: Any = None) -> None:
        """The plan's kernels on the input already in `input_buffer()` (graph-capturable)."""
        assert self.plan is not None
        for s in self.plan.steps:
            self._kernels[s.kernel](s.grid, s.block, s.args, stream=stream)

    def input_buffer(self) -> Any:
        assert self.plan is not None
        return self.plan.array(self.input_name)

    def run(self, tensor: Any, stream: Any = None, download: bool = True) -> dict[str, Any]:
        """One inference. `tensor`: float32 of the input shape, on the host or the device."""
        if tuple(tensor.shape) != tuple(self.input_shape):
            raise GputrackError(
                f"network input must have shape {self.input_shape}, got {tuple(tensor.shape)}"
            )
        if self._session is not None:
            host = np.asarray(tensor, dtype=np.float32)
            outs = self._session.run(self.output_names, {self.input_name: host})
            return dict(zip(self.output_names, outs, strict=True))
        dst = self.input_buffer()
        if isinstance(tensor, np.ndarray):
            tensor = self.backend.to_device(np.ascontiguousarray(tensor, np.float32), stream=stream)
        self.backend.copy(dst, tensor, stream)  # on `stream`, ordered after the ISP's tensor pass
        self.launch(stream)
        assert self.plan is not None
        outs = {name: self.plan.array(name) for name in self.output_names}
        if not download:
            return outs
        self.backend.synchronize(stream)
        return {k: self.backend.to_host(v, stream=stream) for k, v in outs.items()}

    def layer_table(self) -> list[dict[str, Any]]:
        """Per launch: node, kernel, output shape, FLOPs, bytes (for docs and benchmarks)."""
        assert self.plan is not None
        return [
            {
                "node": s.name,
                "kernel": s.kernel,
                "shape": s.shape,
                "flops": s.flops,
                "bytes": s.bytes,
            }
            for s in self.plan.steps
        ]


def _onnxruntime_session(model: str | Path | Any) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise GputrackError(
            "the cpu backend runs networks with onnxruntime: not installed"
        ) from None
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
