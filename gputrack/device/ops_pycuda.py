"""`pycuda`: the same kernel sources through PyCUDA's `SourceModule`, for users whose stack is
PyCUDA (optional extra: pip install 'gputrack[pycuda]')."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gputrack.device import kernel_source
from gputrack.device.base import Backend, Event, Kernel, Module, Timer
from gputrack.device.compile_report import FTZ_FLAG, include_flags
from gputrack.errors import KernelError

_context = None


def probe() -> tuple[bool, str]:
    try:
        import pycuda
        import pycuda.driver as drv
    except ImportError:
        return False, "PyCUDA not installed (pip install 'gputrack[pycuda]')"
    try:
        drv.init()
        count = drv.Device.count()
    except drv.Error as err:
        return False, f"no usable CUDA driver or GPU ({err})"
    if count == 0:
        return False, "no CUDA device found"
    return True, f"{drv.Device(0).name()}, PyCUDA {pycuda.VERSION_TEXT}"


def _ensure_context() -> None:
    """One primary context for the process, released at exit."""
    global _context
    if _context is None:
        import atexit

        import pycuda.driver as drv

        drv.init()
        _context = drv.Device(0).retain_primary_context()
        _context.push()
        atexit.register(_context.pop)


@contextlib.contextmanager
def gpu_errors(drv: Any, what: str) -> Iterator[None]:
    """PyCUDA's CUDA errors (`pycuda.driver.Error`: launch failures, faults reported at the
    next synchronisation, out of memory) as one-line `KernelError`s naming what failed."""
    try:
        yield
    except drv.Error as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise KernelError(f"{what}: {text}") from None


class PycudaBackend(Backend):
    name = "pycuda"

    def __init__(self) -> None:
        super().__init__()
        _ensure_context()
        import pycuda.driver as drv
        import pycuda.gpuarray as gpuarray

        self.drv = drv
        self.gpuarray = gpuarray

    def compile(self, path: Path, defines: dict[str, str]) -> Any:
        from pycuda.compiler import SourceModule

        options = ["-std=c++17", FTZ_FLAG, *(f"-D{k}={v}" for k, v in defines.items())]
        dirs = [flag[2:] for flag in include_flags(path)]
        try:
            return SourceModule(
                kernel_source.read_source(path),
                options=options,
                include_dirs=dirs,
                no_extern_c=True,
            )
        except self.drv.CompileError as err:
            raise KernelError(f"{path.name} failed to compile: {str(err).strip()[:500]}") from None
        except self.drv.Error as err:  # compiled, but the driver refuses the module
            raise KernelError(f"{path.name} failed to load: {' '.join(str(err).split())}") from None

    def get_function(self, module: Module, name: str) -> Any:
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
        raw = [
            np.intp(0) if a is None else a.gpudata if self.is_device_array(a) else a for a in args
        ]
        what = f"kernel {kernel.name} ({kernel.signature.file}), grid {grid}, block {block}"
        with gpu_errors(self.drv, what):
            kernel.native(*raw, block=block, grid=grid, shared=shared_mem, stream=stream)

    def is_device_array(self, value: Any) -> bool:
        return isinstance(value, self.gpuarray.GPUArray)

    def address(self, array: Any) -> int:
        return int(array.gpudata)

    def empty(self, shape: int | Sequence[int], dtype: Any) -> Any:
        return self.gpuarray.empty(shape, dtype=dtype)

    def to_device(self, host: np.ndarray, stream: Any = None) -> Any:
        return self.gpuarray.to_gpu(np.ascontiguousarray(host))

    def to_host(self, array: Any, out: np.ndarray | None = None, stream: Any = None) -> np.ndarray:
        with gpu_errors(self.drv, "CUDA error before a download"):
            result = array.get()
        if out is None:
            return result
        np.copyto(out, result)
        return out

    def _copy(self, dst: Any, src: Any, stream: Any) -> None:
        self.drv.memcpy_dtod_async(dst.gpudata, src.gpudata, src.nbytes, stream)

    def _upload(self, dst: Any, host: np.ndarray, stream: Any) -> None:
        self.drv.memcpy_htod_async(dst.gpudata, host, stream)

    def _download(self, host: np.ndarray, src: Any, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(host, src.gpudata, stream)

    def event(self) -> Event:
        return PycudaEvent(self.drv, self.drv.Event())

    def pinned_empty(self, shape: int | Sequence[int], dtype: Any) -> np.ndarray:
        return self.drv.pagelocked_empty(shape, dtype)

    def stream(self) -> Any:
        return self.drv.Stream()

    def synchronize(self, stream: Any = None) -> None:
        with gpu_errors(self.drv, "CUDA error in the work queued before"):
            (stream or self.drv.Context).synchronize()

    def timer(self, stream: Any = None) -> Timer:
        # Launches return at once: a host clock would time the queueing, not the work.
        return PycudaTimer(self.drv, stream)


class PycudaEvent(Event):
    def __init__(self, drv: Any, event: Any) -> None:
        self._drv = drv
        self._event = event

    def record(self, stream: Any = None) -> None:
        self._event.record(stream)

    def synchronize(self) -> None:
        with gpu_errors(self._drv, "CUDA error in the work before an event"):
            self._event.synchronize()


class PycudaTimer(Timer):
    """CUDA events on a stream (None: the default stream): device time, not host time."""

    def __init__(self, drv: Any, stream: Any) -> None:
        self._drv = drv
        self._stream = stream
        self._start = drv.Event()
        self._stop = drv.Event()

    def start(self) -> None:
        self._start.record(self._stream)

    def stop(self) -> None:
        self._stop.record(self._stream)

    def elapsed_ms(self) -> float:
        with gpu_errors(self._drv, "CUDA error in the timed work"):
            self._stop.synchronize()
            return float(self._start.time_till(self._stop))


def create() -> PycudaBackend:
    return PycudaBackend()
