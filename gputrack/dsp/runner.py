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
from gputrack.dsp.onnx_import import errors_named, load_model
from gputrack.errors import GputrackError

ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


class Network:
    def __init__(self, model: str | Path | Any, backend: Backend) -> None:
        self.backend = backend
        with errors_named(model):  # whatever goes wrong: one line naming the model
            self.graph: Graph = fuse.optimise(load_model(model))
        self.notes = list(self.graph.notes)  # what the import assumed: a batch taken as 1
        self.input_name = self.graph.inputs[0]
        self.input_shape = self.graph.shapes[self.input_name]
        self.output_names = list(self.graph.outputs)
        self._session = None
        self.plan: plan.Plan | None = None
        if backend.runs_kernels:
            self._module = backend.load("nn.cu")
            with errors_named(model):
                self.plan = plan.build(self.graph, backend)
            kernels = {s.kernel: self._module.kernel(s.kernel) for s in self.plan.steps}
            # Checked once here: the buffers and sizes never change after planning.
            self._launches = [
                kernels[s.kernel].bind(s.grid, s.block, s.args) for s in self.plan.steps
            ]
        else:
            self._session = _onnxruntime_session(model)
            # onnxruntime wants every graph input fed, even one no node reads: zeros
            self._unused = {
                i.name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in i.shape],
                                 ORT_TYPES.get(i.type, np.float32))
                for i in self._session.get_inputs() if i.name in self.graph.unread_inputs
            }  # fmt: skip
        self._graph: Any = None  # the plan as one CUDA graph, captured on first use
        self.graph_error: str | None = None  # why graphs are off, after a failed capture

    def launch(self, stream: Any = None) -> None:
        """The plan's kernels on the input already in `input_buffer()` (graph-capturable)."""
        for launch in self._launches:
            launch(stream)

    def launch_graph(self, stream: Any = None) -> None:
        """As `launch`, replayed from a graph captured on first use: one host call per frame
        instead of one per layer (a network's many small launches otherwise keep the GPU
        waiting for Python). Falls back to `launch` where capture fails, and says why in
        `graph_error`. Not inside another capture: a graph does not nest in one."""
        if self.graph_error is None:
            if self._graph is None:
                try:
                    self._graph = self.backend.capture(lambda: self.launch(stream), stream)
                except Exception as err:  # any capture failure: plain launches from now on
                    self.graph_error = f"{type(err).__name__}: {err}"
                    self.backend.synchronize(stream)
            if self._graph is not None:
                self._graph.replay(stream)  # a graph runs on whichever stream it is given
                return
        self.launch(stream)

    def input_buffer(self) -> Any:
        assert self.plan is not None
        return self.plan.array(self.input_name)

    def run(
        self, tensor: Any, stream: Any = None, download: bool = True, graph: bool = False
    ) -> dict[str, Any]:
        """One inference. `tensor`: float32 of the input shape, on the host or the device.
        `graph`: replay the layers as one graph (`launch_graph`)."""
        if tuple(tensor.shape) != tuple(self.input_shape):
            raise GputrackError(
                f"network input must have shape {self.input_shape}, got {tuple(tensor.shape)}"
            )
        if self._session is not None:
            feeds = {**self._unused, self.input_name: np.asarray(tensor, dtype=np.float32)}
            try:
                outs = self._session.run(self.output_names, feeds)
            except Exception as err:  # onnxruntime's own types: one line, as gputrack's are
                raise GputrackError(f"onnxruntime could not run the model: "
                                    f"{_first_line(err)}") from None  # fmt: skip
            return dict(zip(self.output_names, outs, strict=True))
        dst = self.input_buffer()
        if isinstance(tensor, np.ndarray):
            tensor = self.backend.to_device(np.ascontiguousarray(tensor, np.float32), stream=stream)
        self.backend.copy(dst, tensor, stream)  # on `stream`, ordered after the ISP's tensor pass
        if graph:
            self.launch_graph(stream)
        else:
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


def _ort_source(model: str | Path | Any) -> str | bytes:
    """What onnxruntime opens: the path (external weights are found beside it), or the file's
    bytes where the path is no UTF-8 text (a name not in the locale's encoding), which
    onnxruntime refuses with a message that names nothing."""
    if not isinstance(model, (str, Path)):
        return model.SerializeToString()
    try:
        str(model).encode("utf-8")
        return str(model)
    except UnicodeEncodeError:
        return Path(model).read_bytes()


def _onnxruntime_session(model: str | Path | Any) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise GputrackError(
            "the cpu backend runs networks with onnxruntime: not installed"
        ) from None
    source = _ort_source(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    with errors_named(model):
        try:
            return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own types: one line, as gputrack's are
            raise GputrackError(f"onnxruntime cannot run it: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
