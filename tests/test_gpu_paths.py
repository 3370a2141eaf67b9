"""The GPU-only code paths (ops_cuda, ops_pycuda, the benchmarks' stream use), checked without
a GPU: CuPy's own error classes raised by stand-ins for the driver, a fake PyCUDA, and `emu`
with CUDA's stream-ordering rules enforced (`StreamAudit`). A bug found here is one a GPU
session does not spend its minutes on."""

from __future__ import annotations

import contextlib
import json
import sys
import types
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from gputrack.device import probe
from gputrack.device.base import Event, Graph, Timer
from gputrack.errors import KernelError
from tests.conftest import load_script

cupy = pytest.importorskip("cupy")
needs_emu = pytest.mark.skipif(not probe("emu").available, reason="emu backend unavailable")


def cupy_backend():
    from gputrack.device.ops_cuda import CudaBackend

    return CudaBackend()  # imports CuPy only: no device is touched until a call needs one


class DriverError(cupy.cuda.driver.CUDADriverError):
    """CuPy's driver error (its constructor asks libcuda for the message: none here)."""

    def __init__(self, message: str) -> None:
        RuntimeError.__init__(self, message)


def illegal_address() -> Exception:
    return cupy.cuda.runtime.CUDARuntimeError(700)  # cudaErrorIllegalAddress


class FakeStream:
    """A CuPy stream as the backend uses it: a context manager, capture, synchronize."""

    def __init__(self, name: str, fail: Exception | None = None) -> None:
        self.name, self.fail, self.capturing = name, fail, False

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def synchronize(self) -> None:
        if self.fail is not None:
            raise self.fail

    def begin_capture(self) -> None:
        self.capturing = True

    def end_capture(self) -> Any:
        self.capturing = False
        return FakeGraph()

    def __repr__(self) -> str:
        return self.name


class FakeGraph:
    def __init__(self) -> None:
        self.launched_on: list[Any] = []

    def launch(self, stream: Any = None) -> None:
        self.launched_on.append(stream)


# --- cuda: GPU errors are one line -----------------------------------------------------------
def test_a_launch_the_driver_refuses_is_a_kernel_error_naming_the_kernel():
    """cuLaunchKernel's errors (too many registers or shared memory for the block, a grid
    over the limit) came out as a CUDADriverError traceback: the CLI prints only
    GputrackErrors as one line."""
    be = cupy_backend()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise DriverError("CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: too many resources requested")

    kernel = SimpleNamespace(native=refuse, name="isp_main",
                             signature=SimpleNamespace(file="isp.cu"))  # fmt: skip
    with pytest.raises(KernelError, match=r"kernel isp_main \(isp.cu\).*OUT_OF_RESOURCES"):
        be.launch(kernel, (4, 1, 1), (1024, 1, 1), [np.int32(1)], 0, FakeStream("s"))


def test_a_kernel_fault_reported_at_a_synchronisation_is_a_kernel_error():
    """An illegal address shows at the next synchronize / download / event / timer: each
    was a CUDARuntimeError traceback out of `gputrack run`."""
    be = cupy_backend()
    with pytest.raises(KernelError, match="cudaErrorIllegalAddress"):
        be.synchronize(FakeStream("s", fail=illegal_address()))

    class Faulted:
        def get(self, **kwargs: Any) -> None:
            raise illegal_address()

    with pytest.raises(KernelError, match="before a download: cudaErrorIllegalAddress"):
        be.to_host(Faulted(), stream=FakeStream("s"))

    from gputrack.device.ops_cuda import CudaEvent, CudaTimer

    class FaultedEvent:
        def record(self, stream: Any = None) -> None:
            return None

        def synchronize(self) -> None:
            raise illegal_address()

    with pytest.raises(KernelError, match="cudaErrorIllegalAddress"):
        CudaEvent(cupy, FaultedEvent()).synchronize()
    fake_cp = SimpleNamespace(cuda=SimpleNamespace(
        Event=FaultedEvent, driver=cupy.cuda.driver, runtime=cupy.cuda.runtime,
        memory=cupy.cuda.memory))  # fmt: skip
    timer = CudaTimer(fake_cp, FakeStream("s"))
    timer.start()
    timer.stop()
    with pytest.raises(KernelError, match="timed work: cudaErrorIllegalAddress"):
        timer.elapsed_ms()


def test_out_of_device_memory_is_a_kernel_error():
    be = cupy_backend()

    def no_memory(*args: Any, **kwargs: Any) -> None:
        raise cupy.cuda.memory.OutOfMemoryError(1 << 40, 0, 0)

    be.cp = SimpleNamespace(empty=no_memory, cuda=cupy.cuda)
    with pytest.raises(KernelError, match=r"device array \(1024, 1024\) uint16: Out of memory"):
        be.empty((1024, 1024), np.uint16)


# --- cuda: graphs replay where the caller's work is -------------------------------------------
def fake_cupy(current: FakeStream) -> Any:
    """CuPy as ops_cuda uses it for streams and graphs, with `current` the current stream."""
    made: list[FakeStream] = []

    def stream(non_blocking: bool = False) -> FakeStream:
        made.append(FakeStream(f"private{len(made)}"))
        return made[-1]

    cuda = SimpleNamespace(
        Stream=stream, get_current_stream=lambda: current, driver=cupy.cuda.driver,
        runtime=cupy.cuda.runtime, memory=cupy.cuda.memory)  # fmt: skip
    return SimpleNamespace(cuda=cuda, made=made)


def test_a_graph_captured_without_a_stream_replays_on_the_current_stream():
    """capture(fn) with no stream captures on a private non-blocking stream, and replay()
    launched the graph there: unordered with the current stream, so `Network.run(x,
    graph=True)` could run the network before its input copy (queued on the current stream)
    landed, and the device-wide synchronize after it was the only thing keeping the read
    back right."""
    be = cupy_backend()
    current = FakeStream("current")
    be.cp = fake_cupy(current)
    graph = be.capture(lambda: None)
    assert be.cp.made and not be.cp.made[0].capturing  # captured on its own, and ended
    graph.replay()
    mine = FakeStream("mine")
    graph.replay(mine)
    assert graph._graph.launched_on == [current, mine]


def test_a_capture_the_driver_refuses_is_a_kernel_error():
    be = cupy_backend()
    be.cp = fake_cupy(FakeStream("current"))

    class Invalidated(FakeStream):
        def end_capture(self) -> Any:
            raise cupy.cuda.runtime.CUDARuntimeError(901)  # cudaErrorStreamCaptureInvalidated

    refusing = Invalidated("s")
    with pytest.raises(KernelError, match="graph capture: cudaErrorStreamCaptureInvalidated"):
        be.capture(lambda: None, refusing)


# --- pycuda: a fake PyCUDA ---------------------------------------------------------------------
@pytest.fixture
def pycuda_backend(monkeypatch):
    """PycudaBackend over a stand-in PyCUDA (none is installed here or on the GPU machine)."""

    class Error(Exception):
        pass

    class FakeEvent:
        log: list[tuple[str, Any]] = []

        def record(self, stream: Any = None) -> None:
            self.log.append(("record", stream))

        def synchronize(self) -> None:
            self.log.append(("synchronize", self))

        def time_till(self, end: Any) -> float:
            return 1.25

    drv = types.ModuleType("pycuda.driver")
    drv.Error = Error
    drv.CompileError = type("CompileError", (Error,), {})
    drv.Event = FakeEvent
    drv.Stream = lambda: FakeStream("pycuda stream")
    gpuarray = types.ModuleType("pycuda.gpuarray")
    gpuarray.GPUArray = type("GPUArray", (), {})
    pkg = types.ModuleType("pycuda")
    pkg.driver, pkg.gpuarray = drv, gpuarray
    for name, module in (("pycuda", pkg), ("pycuda.driver", drv), ("pycuda.gpuarray", gpuarray)):
        monkeypatch.setitem(sys.modules, name, module)
    from gputrack.device import ops_pycuda

    monkeypatch.setattr(ops_pycuda, "_context", object())  # no context to make
    return ops_pycuda.PycudaBackend()


def test_pycuda_times_device_work_with_events(pycuda_backend):
    """pycuda had the host-clock Timer: launches return at once, so device_copy_gbs (which
    counts pycuda as a GPU) timed the queueing of a 1 GiB copy, not the copy."""
    be = pycuda_backend
    stream = be.stream()
    timer = be.timer(stream)
    timer.start()
    timer.stop()
    assert timer.elapsed_ms() == 1.25
    log = be.drv.Event.log
    assert [(what, s) for what, s in log if what == "record"] == [("record", stream)] * 2
    assert ("synchronize", timer._stop) in log  # the stop event waited for before reading


def test_pycuda_errors_are_kernel_errors(pycuda_backend):
    be = pycuda_backend
    with pytest.raises(KernelError, match="queued before: cuCtxSynchronize failed"):
        be.synchronize(FakeStream("s", fail=be.drv.Error("cuCtxSynchronize failed: an "
                                                         "illegal memory access")))  # fmt: skip

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise be.drv.Error("cuLaunchKernel failed: too many resources requested for launch")

    kernel = SimpleNamespace(native=refuse, name="nn_conv", signature=SimpleNamespace(file="nn.cu"))
    with pytest.raises(KernelError, match=r"kernel nn_conv \(nn.cu\).*too many resources"):
        be.launch(kernel, (1, 1, 1), (1024, 1, 1), [], 0, None)


# --- emu with CUDA's stream ordering enforced ----------------------------------------------------
def stream_audit():
    """An emu backend that keeps CUDA's ordering rules: work queued on a stream (None: the
    default stream; `stream()` makes non-blocking ones, as cuda does) is unfinished until that
    stream or the device is synchronised (or an event/timer on it waited for); a kernel or a
    download touching memory that unfinished work on another stream writes is a race, recorded
    in `races`. Uploads without a stream count as done on return (CuPy's set() of a pageable
    array returns once the bytes are staged)."""
    from gputrack.device.ops_emu import EmuBackend

    class Token:
        def __init__(self, n: int) -> None:
            self.n = n

        def __repr__(self) -> str:
            return f"stream{self.n}"

    class StreamAudit(EmuBackend):
        def __init__(self) -> None:
            super().__init__()
            self.pending: list[tuple[Any, np.ndarray, str]] = []  # (stream, written, by)
            self.races: list[str] = []
            self._streams = 0

        def _touch(self, what: str, stream: Any, reads: list[Any], writes: list[Any]) -> None:
            for a in reads + writes:
                for s, w, by in self.pending:
                    if s is not stream and np.may_share_memory(a, w):
                        self.races.append(f"{what} on {stream} touches what {by} on {s} writes")
            self.pending += [(stream, w, what) for w in writes]

        def _done(self, stream: Any) -> None:
            self.pending = [p for p in self.pending if p[0] is not stream]

        def stream(self) -> Any:
            self._streams += 1
            return Token(self._streams)

        def launch(self, kernel, grid, block, args, shared_mem, stream) -> None:
            params = kernel.signature.params
            ptrs = [(p, a) for p, a in zip(params, args, strict=True)
                    if p.pointer and a is not None]  # fmt: skip
            self._touch(f"kernel {kernel.name}", stream, [a for p, a in ptrs if p.const],
                        [a for p, a in ptrs if not p.const])  # fmt: skip
            super().launch(kernel, grid, block, args, shared_mem, stream)

        def _copy(self, dst, src, stream) -> None:
            self._touch("copy", stream, [src], [dst])
            super()._copy(dst, src, stream)

        def _upload(self, dst, host, stream) -> None:
            self._touch("upload", stream, [], [dst])
            super()._upload(dst, host, stream)

        def _download(self, host, src, stream) -> None:
            self._touch("download", stream, [src], [host])
            super()._download(host, src, stream)

        def to_host(self, array, out=None, stream=None):
            self._touch("to_host", stream, [array], [])
            self._done(stream)  # a blocking copy: that stream has finished
            return super().to_host(array, out, stream)

        def synchronize(self, stream: Any = None) -> None:
            if stream is None:
                self.pending = []
            else:
                self._done(stream)

        def timer(self, stream: Any = None) -> Timer:
            audit = self

            class AuditTimer(Timer):
                def elapsed_ms(self) -> float:
                    audit._done(stream)
                    return max(super().elapsed_ms(), 1e-6)

            return AuditTimer()

        def event(self) -> Event:
            audit = self

            class AuditEvent(Event):
                stream: Any = None

                def record(self, stream: Any = None) -> None:
                    self.stream = stream

                def synchronize(self) -> None:
                    audit._done(self.stream)

            return AuditEvent()

        def capture(self, fn, stream=None) -> Graph:
            return Graph(fn)  # replay runs fn's launches, each on its own stream

    return StreamAudit()


@needs_emu
def test_the_audit_sees_a_download_racing_a_stream():
    be = stream_audit()
    s = be.stream()
    dst = be.empty((4,), np.float32)
    be.copy(dst, be.to_device(np.ones(4, np.float32)), s)
    be.to_host(dst)  # the default stream does not wait for a non-blocking one
    assert be.races and "to_host on None" in be.races[0]
    be.races.clear()
    be.copy(dst, be.to_device(np.ones(4, np.float32)), s)
    be.synchronize(s)
    be.to_host(dst)
    assert not be.races


@needs_emu
def test_bench_isp_kernel_table_keeps_stream_order(monkeypatch, tmp_path):
    """bench_isp read the ISP's image back on the default stream while the ISP ran on its
    own non-blocking stream (the tensor rows' input frames could be partly unwritten), and
    before each capture waited for that stream alone while the sensor row's first run was
    on the default one."""
    bench = load_script("bench_isp")
    audit = stream_audit()
    monkeypatch.setattr(bench, "get_backend", lambda name: audit)
    out = tmp_path / "isp.json"
    assert bench.main(["--device", "emu", "--size", "64x32", "--reps", "1", "--no-cpu",
                       "--json", str(out)]) == 0  # fmt: skip
    assert json.loads(out.read_text())["gpu"]["rows"]
    assert audit.races == []


@needs_emu
def test_bench_isp_keeps_the_kernel_table_when_the_cpu_part_is_cut_short(monkeypatch, tmp_path):
    """gpu_check.sh gives bench_isp a time limit; the JSON was written only after the CPU
    comparison, so a limit reached there lost the GPU table the session came for."""
    bench = load_script("bench_isp")

    def cut_short(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # what a time limit does to the CPU part, as far as the JSON goes

    monkeypatch.setattr(bench, "bench_cpu", cut_short)
    out = tmp_path / "isp.json"
    with contextlib.suppress(KeyboardInterrupt):
        bench.main(["--device", "emu", "--size", "64x32", "--reps", "1", "--json", str(out)])
    res = json.loads(out.read_text())
    assert res["gpu"]["rows"] and any(k.startswith("gpu isp_main") for k in res["summary"])


@needs_emu
def test_bench_deadline_graph_engine_keeps_stream_order(monkeypatch, tmp_path):
    """The deadline benchmark's GPU path (two buffer sets on two streams, per-frame graphs,
    pinned downloads read after an event) under the audit: no read of unfinished work."""
    bench = load_script("bench_deadline")
    audit = stream_audit()
    monkeypatch.setattr(bench, "get_backend", lambda name: audit)
    monkeypatch.setattr(bench, "opencv_isp", lambda *a, **k: [1.0])  # not what is checked
    out = tmp_path / "deadline.json"
    argv = ["--backend", "emu", "--engine", "graph", "--size", "64x48", "--frames", "2",
            "--json", str(out)]  # fmt: skip
    assert bench.main(argv) == 0
    assert audit.races == []
