"""The one interface every backend implements: load kernels, move arrays, launch, time.

A stage written against `Backend` runs unchanged on `cuda` (CuPy), `pycuda`, `emu` (the same
CUDA source compiled for the host CPU) and, for stages that have a NumPy reference, `cpu`.
Launch arguments are checked against the kernel's parsed signature here, once for all
backends: wrong count, wrong array dtype or a scalar out of range is a `KernelError` that names
the kernel and the parameter.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from gputrack.device import kernel_source
from gputrack.device.kernel_source import KernelSignature, Param
from gputrack.errors import KernelError

Dim = int | Sequence[int]

MAX_THREADS_PER_BLOCK = 1024
MAX_GRID = (2**31 - 1, 65535, 65535)


def dim3(value: Dim, what: str) -> tuple[int, int, int]:
    """(x, y, z) from an int or a 1-3 tuple; every component must be a positive int."""
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3:
        raise KernelError(f"{what} must have 1 to 3 dimensions, got {value!r}")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    if any(d < 1 for d in dims):
        raise KernelError(f"{what} dimensions must be >= 1, got {value!r}")
    return dims  # type: ignore[return-value]


def check_launch(name: str, grid: tuple[int, int, int], block: tuple[int, int, int]) -> None:
    threads = block[0] * block[1] * block[2]
    if threads > MAX_THREADS_PER_BLOCK:
        raise KernelError(f"kernel {name}: block {block} has {threads} threads (max 1024)")
    if block[2] > 64:
        raise KernelError(f"kernel {name}: block z dimension {block[2]} exceeds 64")
    for g, limit in zip(grid, MAX_GRID, strict=True):
        if g > limit:
            raise KernelError(f"kernel {name}: grid {grid} exceeds the limit {MAX_GRID}")


def _to_c_scalar(value: Any, dtype: np.dtype) -> Any:
    """`value` as a NumPy scalar of `dtype`; raises when it would not be the same number."""
    if dtype.kind in "iu":
        if isinstance(value, (bool, np.bool_, int, np.integer)):
            exact = int(value)  # exact for 64-bit values too (no detour through float)
        elif isinstance(value, (float, np.floating)) and float(value).is_integer():
            exact = int(value)
        else:
            raise ValueError("not an integer")
        info = np.iinfo(dtype)
        if not info.min <= exact <= info.max:
            raise OverflowError
        return dtype.type(exact)
    with np.errstate(over="raise", invalid="raise"):
        return dtype.type(value)


class Timer:
    """Host-clock timer for synchronous backends; `cuda` replaces it with CUDA events."""

    def __init__(self) -> None:
        self._t0 = self._t1 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self._t1 = time.perf_counter()

    def elapsed_ms(self) -> float:
        return (self._t1 - self._t0) * 1e3


class Event:
    """A point in a stream's work: `record(stream)`, then `synchronize()` waits for it.
    Synchronous backends have done the work when `record` is called."""

    def record(self, stream: Any = None) -> None:
        return None

    def synchronize(self) -> None:
        return None


class Graph:
    """A recorded sequence of launches. Synchronous backends replay by calling it again."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn

    def replay(self, stream: Any = None) -> None:
        self._fn()


class Kernel:
    """One kernel of a loaded module: `kernel(grid, block, args, shared_mem=0, stream=None)`."""

    def __init__(self, backend: Backend, native: Any, signature: KernelSignature) -> None:
        self.backend = backend
        self.native = native
        self.signature = signature
        self.name = signature.name

    def __call__(
        self,
        grid: Dim,
        block: Dim,
        args: Sequence[Any],
        shared_mem: int = 0,
        stream: Any = None,
    ) -> None:
        g, b = dim3(grid, f"kernel {self.name}: grid"), dim3(block, f"kernel {self.name}: block")
        check_launch(self.name, g, b)
        converted = self.backend.convert_args(self.signature, args)
        self.backend.launch(self, g, b, converted, int(shared_mem), stream)

    def bind(self, grid: Dim, block: Dim, args: Sequence[Any], shared_mem: int = 0) -> BoundLaunch:
        """Check and convert a launch once, for launches repeated with the same buffers and
        sizes (a network's layers): calling the result skips the per-launch Python checks."""
        g, b = dim3(grid, f"kernel {self.name}: grid"), dim3(block, f"kernel {self.name}: block")
        check_launch(self.name, g, b)
        return BoundLaunch(self, g, b, self.backend.convert_args(self.signature, args), shared_mem)

    def __repr__(self) -> str:
        return f"<Kernel {self.signature.file}:{self.name} on {self.backend.name}>"


class BoundLaunch:
    """A launch whose arguments were checked and converted by `Kernel.bind`; the arrays it
    holds must stay alive and in place (they do: it keeps references to them)."""

    def __init__(
        self,
        kernel: Kernel,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        args: list[Any],
        shared_mem: int,
    ) -> None:
        self.kernel, self.grid, self.block = kernel, grid, block
        self.args, self.shared_mem = args, int(shared_mem)

    def __call__(self, stream: Any = None) -> None:
        k = self.kernel
        k.backend.launch(k, self.grid, self.block, self.args, self.shared_mem, stream)


class Module:
    """The kernels of one `.cu` file, compiled for one backend."""

    def __init__(self, backend: Backend, path: Path, native: Any) -> None:
        self.backend = backend
        self.path = path
        self.native = native
        self.signatures = kernel_source.signatures_of(path)
        self._kernels: dict[str, Kernel] = {}

    def kernel(self, name: str) -> Kernel:
        if name not in self._kernels:
            if name not in self.signatures:
                known = ", ".join(sorted(self.signatures)) or "none"
                raise KernelError(f"{self.path.name}: no kernel named '{name}' (has: {known})")
            native = self.backend.get_function(self, name)
            self._kernels[name] = Kernel(self.backend, native, self.signatures[name])
        return self._kernels[name]

    __getitem__ = kernel

    @property
    def names(self) -> list[str]:
        return sorted(self.signatures)


class Backend(ABC):
    """What a stage needs from a device. Subclasses live in `ops_<name>.py`, one file each."""

    name: ClassVar[str]
    runs_kernels: ClassVar[bool] = True

    def __init__(self) -> None:
        self._modules: dict[tuple[Path, tuple[tuple[str, str], ...]], Module] = {}

    # --- kernels -------------------------------------------------------------------------
    def load(self, file: str | Path, defines: dict[str, Any] | None = None) -> Module:
        """Compile (or fetch from cache) one kernel file, optionally with `-D` defines."""
        if not self.runs_kernels:
            raise KernelError(f"the {self.name} backend runs no CUDA kernels")
        path = kernel_source.resolve(file)
        key = (path, tuple(sorted((k, str(v)) for k, v in (defines or {}).items())))
        if key not in self._modules:
            native = self.compile(path, dict(key[1]))
            self._modules[key] = Module(self, path, native)
        return self._modules[key]

    def compile(self, path: Path, defines: dict[str, str]) -> Any:
        raise KernelError(f"the {self.name} backend runs no CUDA kernels")

    def get_function(self, module: Module, name: str) -> Any:
        raise KernelError(f"the {self.name} backend runs no CUDA kernels")

    def launch(
        self,
        kernel: Kernel,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        args: list[Any],
        shared_mem: int,
        stream: Any,
    ) -> None:
        raise KernelError(f"the {self.name} backend runs no CUDA kernels")

    def convert_args(self, signature: KernelSignature, args: Sequence[Any]) -> list[Any]:
        """Check each argument against its parameter and convert scalars to the C type."""
        if len(args) != len(signature.params):
            raise KernelError(
                f"kernel {signature.name}: takes {len(signature.params)} arguments "
                f"({', '.join(p.name for p in signature.params)}), got {len(args)}"
            )
        return [
            self._convert(signature.name, p, a) for p, a in zip(signature.params, args, strict=True)
        ]

    def _convert(self, kernel: str, param: Param, value: Any) -> Any:
        if param.pointer:
            if value is None:
                return None
            if not self.is_device_array(value):
                raise KernelError(
                    f"kernel {kernel}: parameter '{param.name}' needs a {self.name} device array, "
                    f"got {type(value).__name__}"
                )
            if param.dtype is not None and value.dtype != param.dtype:
                raise KernelError(
                    f"kernel {kernel}: parameter '{param.name}' is {param.ctype}*, "
                    f"got an array of {value.dtype}"
                )
            if not value.flags.c_contiguous:
                raise KernelError(
                    f"kernel {kernel}: parameter '{param.name}' needs a C-contiguous array "
                    f"(got strides {value.strides}); pass a contiguous copy"
                )
            return value
        if self.is_device_array(value) or isinstance(value, np.ndarray):
            raise KernelError(
                f"kernel {kernel}: parameter '{param.name}' is a scalar {param.ctype}"
            )
        assert param.dtype is not None
        try:
            converted = _to_c_scalar(value, param.dtype)
        except (OverflowError, ValueError, TypeError, FloatingPointError):
            raise KernelError(
                f"kernel {kernel}: parameter '{param.name}' ({param.ctype}) cannot hold {value!r}"
            ) from None
        return converted

    # --- memory --------------------------------------------------------------------------
    @abstractmethod
    def is_device_array(self, value: Any) -> bool: ...

    @abstractmethod
    def address(self, array: Any) -> int:
        """The address of a device array's first element (kernels with vector loads check
        its alignment: a view that starts mid-allocation need not be aligned)."""

    @abstractmethod
    def empty(self, shape: int | Sequence[int], dtype: Any) -> Any: ...

    @abstractmethod
    def to_device(self, host: np.ndarray, stream: Any = None) -> Any: ...

    @abstractmethod
    def to_host(
        self, array: Any, out: np.ndarray | None = None, stream: Any = None
    ) -> np.ndarray: ...

    def contiguous(self, array: Any) -> Any:
        """`array` as a C-contiguous device array: itself, or a copy of a strided view (a
        kernel's pointer parameters need one; cropping an odd frame to even makes a view)."""
        if self.is_device_array(array) and array.flags.c_contiguous:
            return array
        host = array if isinstance(array, np.ndarray) else self.to_host(array)
        return self.to_device(np.ascontiguousarray(host))

    def copy(self, dst: Any, src: Any, stream: Any = None) -> None:
        """Device-to-device copy of equal shapes, queued on `stream` (in order with launches)."""
        _check_same("copy", dst, src)
        self._copy(dst, src, stream)

    def upload(self, dst: Any, host: np.ndarray, stream: Any = None) -> None:
        """Host array -> an existing device array of its shape, queued on `stream` and
        graph-capturable (asynchronous on a GPU when `host` is from `pinned_empty`)."""
        _check_same("upload", dst, host)
        if not host.flags.c_contiguous or not dst.flags.c_contiguous:
            raise KernelError(
                f"upload: both arrays must be C-contiguous (host strides {host.strides})"
            )
        self._upload(dst, host, stream)

    def download(self, host: np.ndarray, src: Any, stream: Any = None) -> None:
        """An existing device array -> a host array of its shape, queued on `stream` and
        graph-capturable: the host values are there once an event recorded after it (or the
        stream) is synchronised."""
        _check_same("download", host, src)
        if not (host.flags.c_contiguous and host.flags.writeable and src.flags.c_contiguous):
            raise KernelError("download: both arrays must be C-contiguous, the host one writeable")
        self._download(host, src, stream)

    def event(self) -> Event:
        return Event()

    def _copy(self, dst: Any, src: Any, stream: Any) -> None:
        np.copyto(dst, src)

    def _upload(self, dst: Any, host: np.ndarray, stream: Any) -> None:
        np.copyto(dst, host)

    def _download(self, host: np.ndarray, src: Any, stream: Any) -> None:
        np.copyto(host, src)

    def full(self, shape: int | Sequence[int], value: Any, dtype: Any) -> Any:
        """An array filled with `value`: tests poison outputs with it."""
        return self.to_device(np.full(shape, value, dtype=dtype))

    def pinned_empty(self, shape: int | Sequence[int], dtype: Any) -> np.ndarray:
        """A host buffer for fast async copies (page-locked on `cuda`)."""
        return np.empty(shape, dtype=dtype)

    # --- streams, timing, graphs -----------------------------------------------------------
    def stream(self) -> Any:
        return None

    def synchronize(self, stream: Any = None) -> None:
        return None

    def timer(self, stream: Any = None) -> Timer:
        return Timer()

    def capture(self, fn: Callable[[], Any], stream: Any = None) -> Graph:
        """Record `fn`'s launches once; `graph.replay()` repeats them (a CUDA graph on `cuda`)."""
        return Graph(fn)

    def describe(self) -> str:
        return self.name


class HostArrayBackend(Backend):
    """Backends whose device arrays are NumPy arrays in host memory (`emu`, `cpu`)."""

    def is_device_array(self, value: Any) -> bool:
        return isinstance(value, np.ndarray)

    def contiguous(self, array: Any) -> Any:
        return np.ascontiguousarray(array)

    def address(self, array: Any) -> int:
        return int(array.ctypes.data)

    def empty(self, shape: int | Sequence[int], dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def to_device(self, host: np.ndarray, stream: Any = None) -> np.ndarray:
        # A copy, as on a GPU: later changes to the host buffer do not reach the device.
        return np.array(host, copy=True, order="C")

    def to_host(
        self, array: np.ndarray, out: np.ndarray | None = None, stream: Any = None
    ) -> np.ndarray:
        if out is None:
            return np.array(array, copy=True)
        np.copyto(out, array)
        return out


def _check_same(what: str, dst: Any, src: Any) -> None:
    if tuple(dst.shape) != tuple(src.shape) or np.dtype(dst.dtype) != np.dtype(src.dtype):
        raise KernelError(
            f"{what}: {tuple(src.shape)} {np.dtype(src.dtype)} into "
            f"{tuple(dst.shape)} {np.dtype(dst.dtype)}"
        )
