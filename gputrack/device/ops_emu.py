"""`emu`: the CUDA sources of `kernels/` compiled with g++ and run on the host CPU.

Arrays are NumPy arrays. Blocks run in parallel on a pool of OS threads; the threads of a block
run as fibers, so `__syncthreads()`, `__shared__` memory, warp shuffles and votes and atomics
behave as on a GPU (see `emu/runtime.cpp`). Launches are synchronous. A kernel that uses what
the emulator cannot run faithfully fails at load, naming the feature. A thread that spin-waits
for another thread or block hangs: fibers are never preempted.

Checks that a GPU would not make, to catch kernel bugs that pass by luck:

- Every block starts with all its shared memory, static `__shared__` variables and the launch's
  dynamic shared memory alike, filled with the poison pattern 0x7FFF per aligned 2 bytes: NaN
  in half, bfloat16, float and double, a large positive number (never 0 or -1) in integers. A
  read of shared memory the block never wrote shows (on a GPU it would be garbage).
- A warp collective whose mask leaves out its caller, or names a lane that has not exited and
  does not call it with the same mask (it waits at a barrier, say), fails the launch: on a GPU
  it is undefined (a hang or garbage). A shuffle that reads an exited lane, or one outside its
  mask, gets the poison pattern (unspecified on a GPU). After a warp collective, as after a
  barrier, the lanes resume in the launch's thread order (`set_thread_order`), so a missing
  `__syncwarp()` shows in one of the two orders.
- `GPUTRACK_EMU_GUARD=after` (or `before`), off by default: each launch runs on copies of its
  device arrays placed right against a no-access page, after their end (16-byte aligned, so an
  array whose size is not a multiple of 16 may end up to 15 bytes short of it) or before their
  start (exact), and copied back afterwards. An out-of-bounds access there, or any other
  invalid access in kernel code, fails the launch with a `KernelError` naming the kernel, the
  parameter, the byte offset and the CUDA thread. Results are the same; launches get slower.
"""

from __future__ import annotations

import ctypes
import os
import threading
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from gputrack.device.base import HostArrayBackend, Kernel, Module
from gputrack.device.emu import build
from gputrack.errors import KernelError

MAX_DYNAMIC_SHARED = build.MAX_DYNAMIC_SHARED
GUARD_ENV = "GPUTRACK_EMU_GUARD"
_PROBE_SOURCE = build.EMU_DIR / "probe.cu"

_runtime_lock = threading.Lock()


@cache
def _runtime() -> ctypes.CDLL:
    """The runtime library, loaded once with its symbols global so kernel modules bind to it."""
    with _runtime_lock:
        path = build.runtime_library()
        try:
            lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            raise KernelError(f"emu runtime {path.name}: cannot load it: {err}") from None
        lib.gputrack_emu_last_error.restype = ctypes.c_char_p
        lib.gputrack_emu_worker_count.restype = ctypes.c_int
        lib.gputrack_emu_context_switch.restype = ctypes.c_char_p
        lib.gputrack_emu_guard_alloc.restype = ctypes.c_void_p
        lib.gputrack_emu_guard_alloc.argtypes = [ctypes.c_size_t, ctypes.c_int, ctypes.c_char_p]
        lib.gputrack_emu_guard_free.restype = None
        lib.gputrack_emu_guard_free.argtypes = [ctypes.c_void_p]
        return lib


class EmuModule:
    """A loaded kernel library: `gputrack_launch_<kernel>` per kernel."""

    def __init__(self, source: Path, library: Path) -> None:
        _runtime()
        self.source = source
        self.library = library
        try:
            self.lib = ctypes.CDLL(str(library))
        except OSError as err:
            raise KernelError(f"{source.name}: cannot load its emu library: {err}") from None


_LAUNCH_ARGTYPES = [ctypes.c_uint] * 6 + [ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]


class EmuBackend(HostArrayBackend):
    name = "emu"

    def compile(self, path: Path, defines: dict[str, str]) -> EmuModule:
        return EmuModule(path, build.module_library(path, defines))

    def get_function(self, module: Module, name: str) -> Any:
        native: EmuModule = module.native
        try:
            fn = getattr(native.lib, f"gputrack_launch_{name}")
        except AttributeError:
            raise KernelError(
                f"{module.path.name}: kernel {name} is missing from its emu library"
            ) from None
        fn.argtypes = _LAUNCH_ARGTYPES
        fn.restype = ctypes.c_int
        return fn

    def launch(
        self,
        kernel: Kernel,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        args: list[Any],
        shared_mem: int,
        stream: Any,
    ) -> None:
        if not 0 <= shared_mem <= MAX_DYNAMIC_SHARED:
            raise KernelError(
                f"kernel {kernel.name}: shared_mem={shared_mem} bytes; the emu backend allows "
                f"0 to {MAX_DYNAMIC_SHARED} (227 KiB, the sm_90 maximum)"
            )
        holders: list[Any] = []  # keeps every argument's storage alive during the call
        pointers = (ctypes.c_void_p * max(1, len(args)))()
        arrays: list[tuple[int, Any, np.ndarray]] = []  # (index, param, array) of device arrays
        for i, (param, value) in enumerate(zip(kernel.signature.params, args, strict=True)):
            if param.pointer:
                if value is not None:
                    _check_array(kernel.name, param.name, value, param.const)
                    arrays.append((i, param, value))
                holder = ctypes.c_void_p(None if value is None else value.ctypes.data)
                pointers[i] = ctypes.addressof(holder)
            else:
                holder = np.array([value], dtype=param.dtype)  # the exact bytes of the C type
                pointers[i] = holder.ctypes.data
            holders.append(holder)
        guard = _guard_mode()
        if guard is None:
            status = kernel.native(*grid, *block, shared_mem, pointers)
        else:
            with _Guarded(arrays, guard == "before", holders) as guarded:
                status = kernel.native(*grid, *block, shared_mem, pointers)
                guarded.copy_back()
        if status != 0:
            reason = _runtime().gputrack_emu_last_error().decode(errors="replace")
            raise KernelError(f"kernel {kernel.name} ({kernel.signature.file}): {reason}")

    def set_thread_order(self, order: str) -> None:
        """`forward` (thread 0 first) or `reverse`. Running a kernel both ways and comparing
        reveals races between the threads of a block that a fixed order would hide."""
        if order not in ("forward", "reverse"):
            raise KernelError(f"thread order '{order}': choose forward or reverse")
        _runtime().gputrack_emu_set_reverse_order(int(order == "reverse"))

    def describe(self) -> str:
        return f"emu ({probe()[1]})"


def _check_array(kernel: str, param: str, array: np.ndarray, const: bool) -> None:
    if not array.flags.c_contiguous:
        raise KernelError(f"kernel {kernel}: parameter '{param}' needs a C-contiguous array")
    if not const and not array.flags.writeable:
        raise KernelError(
            f"kernel {kernel}: parameter '{param}' is writable but the array is read-only"
        )


def _guard_mode() -> str | None:
    value = os.environ.get(GUARD_ENV, "").strip().lower()
    if value in ("", "0", "off", "no", "none"):
        return None
    if value not in ("after", "before"):
        raise KernelError(f"{GUARD_ENV}={value!r}: choose after or before, or leave it unset")
    return value


class _Guarded:
    """The device arrays of one launch, copied next to a no-access page (`GPUTRACK_EMU_GUARD`).

    Arrays that share memory (the same array twice, overlapping views) share one copy, so the
    kernel sees the aliasing it would see without the guard. The launch's pointer holders are
    redirected to the copies; `copy_back` writes the copies of writable parameters back.
    """

    def __init__(self, arrays: list[tuple[int, Any, np.ndarray]], before: bool, holders: list[Any]):
        self.before = before
        self.holders = holders
        # Byte ranges, merged where they overlap: [start, end, [(index, param, array), ...]]
        spans = sorted(
            ((a.ctypes.data, a.ctypes.data + a.nbytes, (i, p, a)) for i, p, a in arrays),
            key=lambda s: (s[0], s[1]),
        )
        self.groups: list[tuple[int, int, list[tuple[int, Any, np.ndarray]]]] = []
        for start, end, member in spans:
            if self.groups and start < self.groups[-1][1]:
                last_start, last_end, members = self.groups[-1]
                self.groups[-1] = (last_start, max(last_end, end), [*members, member])
            else:
                self.groups.append((start, end, [member]))
        self.copies: list[int] = []

    def __enter__(self) -> _Guarded:
        rt = _runtime()
        try:
            for start, end, members in self.groups:
                names = ", ".join(f"'{p.name}'" for _, p, _ in members)
                label = f"parameter{'s' if len(members) > 1 else ''} {names}"
                copy = rt.gputrack_emu_guard_alloc(end - start, int(self.before), label.encode())
                if not copy:
                    raise KernelError(f"{GUARD_ENV}: cannot map guarded memory for {label}")
                self.copies.append(copy)
                ctypes.memmove(copy, start, end - start)
                for i, _, array in members:
                    self.holders[i].value = copy + (array.ctypes.data - start)
        except BaseException:
            self._free()
            raise
        return self

    def copy_back(self) -> None:
        for (start, _, members), copy in zip(self.groups, self.copies, strict=True):
            for _, param, array in members:
                if not param.const:
                    offset = array.ctypes.data - start
                    ctypes.memmove(array.ctypes.data, copy + offset, array.nbytes)

    def __exit__(self, *exc: object) -> None:
        self._free()

    def _free(self) -> None:
        rt = _runtime()
        for copy in self.copies:
            rt.gputrack_emu_guard_free(copy)
        self.copies.clear()


@cache
def probe() -> tuple[bool, str]:
    """Whether g++ builds the emulator and a tiny kernel runs correctly on it, and why not."""
    try:
        version = build.compiler_version(build.compiler())
        backend = EmuBackend()
        kernel = backend.load(_PROBE_SOURCE).kernel("gputrack_emu_probe")
        data = np.arange(100, dtype=np.int32)
        out = np.zeros(2, dtype=np.int32)
        kernel(2, 64, (data, out, np.int32(100)))
        if out.tolist() != [int(data[:64].sum()), int(data[64:].sum())]:
            return False, f"g++ {version}: the probe kernel gave wrong results {out.tolist()}"
    except KernelError as err:
        return False, str(err).splitlines()[0]
    runtime = _runtime()
    threads = runtime.gputrack_emu_worker_count()
    switch = runtime.gputrack_emu_context_switch().decode()
    return True, f"g++ {version}, {threads} worker threads, {switch} context switch"


def create() -> EmuBackend:
    return EmuBackend()
