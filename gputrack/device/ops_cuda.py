"""`cuda`: the product backend. CuPy arrays; `kernels/*.cu` compiled by NVRTC through
CuPy's `RawModule` (CuPy caches the binaries); streams, pinned host memory, CUDA events and
CUDA-graph capture/replay."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gputrack.device import kernel_source
from gputrack.device.base import Backend, Event, Graph, Kernel, Module, Timer
from gputrack.device.compile_report import include_flags
from gputrack.errors import KernelError

_DEFAULT_DYNAMIC_SHARED = 48 * 1024


def probe() -> tuple[bool, str]:
    try:
        import cupy
    except ImportError:
        return False, "CuPy not installed (pip install 'gputrack[cuda]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as err:
        return False, f"no usable CUDA driver or GPU ({err})"
    if count == 0:
        return False, "no CUDA device found"
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return True, f"{name}, CuPy {cupy.__version__}"


def gpu_info() -> dict[str, Any] | None:
    """Name, memory and compute capability of GPU 0, or None."""
    ok, _ = probe()
    if not ok:
        return None
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return {
        "name": name,
        "memory_gb": round(props["totalGlobalMem"] / 2**30, 1),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "multiprocessors": props["multiProcessorCount"],
        "driver": cupy.cuda.runtime.driverGetVersion(),
    }


@contextlib.contextmanager
def gpu_errors(cp: Any, what: str) -> Iterator[None]:
    """CuPy's CUDA errors as one-line `KernelError`s naming what failed. A kernel that faults
    (an illegal address) surfaces at the next synchronisation, not at its launch; CUDA then
    refuses every later call in the process."""
    kinds = (
        cp.cuda.driver.CUDADriverError,
        cp.cuda.runtime.CUDARuntimeError,
        cp.cuda.memory.OutOfMemoryError,
    )
    try:
        yield
    except kinds as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise KernelError(f"{what}: {text}") from None


class CudaTimer(Timer):
    """CUDA events on a stream: measures device time, not host time."""

    def __init__(self, cp: Any, stream: Any) -> None:
        self._cp = cp
        self._stream = stream
        self._start = cp.cuda.Event()
        self._stop = cp.cuda.Event()

    def start(self) -> None:
        self._start.record(self._stream)

    def stop(self) -> None:
        self._stop.record(self._stream)

    def elapsed_ms(self) -> float:
        with gpu_errors(self._cp, "CUDA error in the timed work"):
            self._stop.synchronize()
            return float(self._cp.cuda.get_elapsed_time(self._start, self._stop))


class CudaEvent(Event):
    def __init__(self, cp: Any, event: Any) -> None:
        self._cp = cp
        self._event = event

    def record(self, stream: Any = None) -> None:
        self._event.record(stream or self._cp.cuda.get_current_stream())

    def synchronize(self) -> None:
        with gpu_errors(self._cp, "CUDA error in the work before an event"):
            self._event.synchronize()


class CudaGraph(Graph):
    def __init__(self, cp: Any, graph: Any, stream: Any) -> None:
        self._cp = cp
        self._graph = graph
        self._stream = stream  # the capture's stream: kept alive with the graph

    def replay(self, stream: Any = None) -> None:
        # None is the current stream, as for every other call: a capture with no stream was
        # made on a private non-blocking one, where a replay would not wait for the work
        # queued before it (Network.run's input copy), nor later work for the replay.
        with gpu_errors(self._cp, "CUDA graph replay"):
            self._graph.launch(stream or self._cp.cuda.get_current_stream())


class CudaBackend(Backend):
    name = "cuda"

    def __init__(self) -> None:
        super().__init__()
        import cupy

        self.cp = cupy

    def describe(self) -> str:
        return f"cuda ({probe()[1]})"

    # --- kernels -------------------------------------------------------------------------
    def compile(self, path: Path, defines: dict[str, str]) -> Any:
        # CuPy appends -ftz=true (compile_report.FTZ_FLAG) to these itself.
        options = ("-std=c++17", *include_flags(path), *(f"-D{k}={v}" for k, v in defines.items()))
        module = self.cp.RawModule(
            code=kernel_source.read_source(path), options=options, backend="nvrtc"
        )
        try:
            with gpu_errors(self.cp, f"{path.name} failed to load"):  # e.g. a PTX too new
                module.compile()
        except self.cp.cuda.compiler.CompileException as err:
            raise KernelError(f"{path.name} failed to compile: {str(err).strip()[:500]}") from None
        return module

    def get_function(self, module: Module, name: str) -> Any:
        with gpu_errors(self.cp, f"{module.path.name}: kernel {name}"):
            return module.native.get_function(name)

    def launch(
        self,
        kernel: Kernel,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        args: list[Any],
        shared_mem: int,
        stream: Any,
    ) -> None:
        function = kernel.native
        if (
            shared_mem > _DEFAULT_DYNAMIC_SHARED
            and function.max_dynamic_shared_size_bytes < shared_mem
        ):
            function.max_dynamic_shared_size_bytes = shared_mem
        args = [np.uint64(0) if a is None else a for a in args]  # NULL pointer
        what = f"kernel {kernel.name} ({kernel.signature.file}), grid {grid}, block {block}"
        with gpu_errors(self.cp, what), stream or self.cp.cuda.get_current_stream():
            function(grid, block, tuple(args), shared_mem=shared_mem)

    # --- memory --------------------------------------------------------------------------
    def is_device_array(self, value: Any) -> bool:
        return isinstance(value, self.cp.ndarray)

    def contiguous(self, array: Any) -> Any:
        if self.is_device_array(array):
            return self.cp.ascontiguousarray(array)  # on the device, no round trip
        return self.to_device(np.ascontiguousarray(array))

    def address(self, array: Any) -> int:
        return int(array.data.ptr)

    def empty(self, shape: int | Sequence[int], dtype: Any) -> Any:
        with gpu_errors(self.cp, f"device array {shape} {np.dtype(dtype)}"):
            return self.cp.empty(shape, dtype=dtype)

    def to_device(self, host: np.ndarray, stream: Any = None) -> Any:
        with gpu_errors(self.cp, f"upload of {host.shape} {host.dtype}"):
            out = self.cp.empty(host.shape, dtype=host.dtype)
            out.set(np.ascontiguousarray(host), stream=stream)
        return out

    def to_host(self, array: Any, out: np.ndarray | None = None, stream: Any = None) -> np.ndarray:
        # The copy waits for the work before it: a kernel's fault is reported here.
        with gpu_errors(self.cp, "CUDA error before a download"):
            result = array.get(stream=stream, out=out)
            if stream is None:
                self.cp.cuda.get_current_stream().synchronize()
        return result

    def _copy(self, dst: Any, src: Any, stream: Any) -> None:
        with stream or self.cp.cuda.get_current_stream():  # ordered with that stream's launches
            dst[...] = src

    def _stream_ptr(self, stream: Any) -> int:
        return (stream or self.cp.cuda.get_current_stream()).ptr

    def _upload(self, dst: Any, host: np.ndarray, stream: Any) -> None:
        rt = self.cp.cuda.runtime
        ptr = self._stream_ptr(stream)
        rt.memcpyAsync(dst.data.ptr, host.ctypes.data, host.nbytes, rt.memcpyHostToDevice, ptr)

    def _download(self, host: np.ndarray, src: Any, stream: Any) -> None:
        rt = self.cp.cuda.runtime
        ptr = self._stream_ptr(stream)
        rt.memcpyAsync(host.ctypes.data, src.data.ptr, host.nbytes, rt.memcpyDeviceToHost, ptr)

    def pinned_empty(self, shape: int | Sequence[int], dtype: Any) -> np.ndarray:
        import cupyx

        return cupyx.empty_pinned(shape, dtype=dtype)

    # --- streams, timing, graphs -----------------------------------------------------------
    def stream(self) -> Any:
        return self.cp.cuda.Stream(non_blocking=True)

    def synchronize(self, stream: Any = None) -> None:
        with gpu_errors(self.cp, "CUDA error in the work queued before"):
            if stream is None:
                self.cp.cuda.Device().synchronize()
            else:
                stream.synchronize()

    def timer(self, stream: Any = None) -> Timer:
        return CudaTimer(self.cp, stream or self.cp.cuda.get_current_stream())

    def event(self) -> Event:
        return CudaEvent(self.cp, self.cp.cuda.Event(disable_timing=True))

    def capture(self, fn: Callable[[], Any], stream: Any = None) -> Graph:
        """Run `fn` once under stream capture; its launches become one CUDA graph."""
        stream = stream or self.stream()
        with gpu_errors(self.cp, "CUDA graph capture"), stream:
            stream.begin_capture()
            try:
                fn()
            finally:
                graph = stream.end_capture()
        return CudaGraph(self.cp, graph, stream)


def create() -> CudaBackend:
    return CudaBackend()
