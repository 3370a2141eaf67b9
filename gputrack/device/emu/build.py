"""g++ for the emu backend: the runtime library once, each kernel module on demand.

Both are cached under `$XDG_CACHE_HOME/gputrack/emu/` (default `~/.cache`), keyed by a hash of
everything that goes into them, and written under a temporary name then renamed, so parallel
test workers never load a half-written library.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from gputrack.device import kernel_source
from gputrack.device.emu import source
from gputrack.errors import KernelError

EMU_DIR = Path(__file__).resolve().parent
INCLUDE_DIR = EMU_DIR / "include"
RUNTIME_SOURCE = EMU_DIR / "runtime.cpp"

# The most dynamic shared memory one block may ask for: sm_90's opt-in maximum.
MAX_DYNAMIC_SHARED = 227 * 1024

# -ffp-contract=off: nvcc fuses a*b+c into an FMA by default and GCC with FMA enabled fuses at
# other places, which changed most outputs of a stencil (cancellation near zero). Keeping every
# product rounded makes emu results reproducible; tests compare with a tolerance, and the GPU
# side can pass --fmad=false where bit-exactness is wanted.
# -fno-strict-aliasing: CUDA code reinterprets buffers (float4 loads of float arrays); nvcc
# tolerates that, GCC's aliasing rules would miscompile it.
# -fno-math-errno: lets sqrtf & co. be inlined; results are the same.
KERNEL_FLAGS = (
    "-std=c++20",
    "-O2",
    "-fPIC",
    "-shared",
    "-ffp-contract=off",
    "-fno-strict-aliasing",
    "-fno-math-errno",
    "-fvisibility=hidden",
    "-fno-exceptions",
    # TLS descriptors: __shared__ arrays are thread_local in a dlopen()ed library, and the
    # default __tls_get_addr call per access (never hoisted out of loops) cost a third of a
    # stencil's time. (Other targets use descriptors by default.)
    *(("-mtls-dialect=gnu2",) if platform.machine() in ("x86_64", "AMD64") else ()),
)
RUNTIME_FLAGS = ("-std=c++20", "-O2", "-fPIC", "-shared", "-pthread")

compile_count = 0  # g++ runs for kernel modules in this process (tests check cache reuse)

_DEFINE_NAME = re.compile(r"[A-Za-z_]\w*")


def compiler() -> str:
    """The C++ compiler: `GPUTRACK_EMU_CXX`, else g++ on PATH."""
    cxx = os.environ.get("GPUTRACK_EMU_CXX") or shutil.which("g++")
    if not cxx:
        raise KernelError("the emu backend needs g++ (or GPUTRACK_EMU_CXX); none found on PATH")
    return cxx


@cache
def compiler_version(cxx: str) -> str:
    try:
        done = subprocess.run([cxx, "-dumpfullversion"], capture_output=True, text=True, timeout=30)
    except OSError as err:
        raise KernelError(f"the emu backend cannot run {cxx}: {err}") from None
    if done.returncode != 0:
        raise KernelError(f"the emu backend cannot run {cxx}: {done.stderr.strip()}")
    return done.stdout.strip()


def cache_dir() -> Path:
    given = os.environ.get("XDG_CACHE_HOME")
    base = given or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "gputrack" / "emu"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # XDG_CACHE_HOME a file, or a path under one; a read-only home
        origin = "XDG_CACHE_HOME" if given else "the home folder's .cache"
        raise KernelError(
            f"the emu cache folder {path} (from {origin}) cannot be made: "
            f"{err.strerror or err}"
        ) from None
    return path


def _complete_elf(path: Path) -> bool:
    """Whether `path` is an ELF file holding every byte its headers point at: a library cut
    short (a build killed as it was copied, a full disk, a crash before the data reached the
    disk) would crash the process with SIGBUS when dlopen maps it, not fail."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return False
    end = "<" if data[5] == 1 else ">"
    # (word, where e_phoff/e_shoff and then e_phentsize.. lie, a program header's p_offset)
    word, offs, sizes, p_offset = ("Q", 32, 54, 8) if data[4] == 2 else ("I", 28, 42, 4)
    phoff, shoff = struct.unpack_from(end + word * 2, data, offs)
    phentsize, phnum, shentsize, shnum = struct.unpack_from(end + "HHHH", data, sizes)
    size = len(data)
    if phoff + phnum * phentsize > size or shoff + shnum * shentsize > size:
        return False
    for i in range(phnum):  # p_filesz lies 3 words after p_offset (ELF32 and ELF64 alike)
        at = phoff + i * phentsize + p_offset
        (offset,) = struct.unpack_from(end + word, data, at)
        (filesz,) = struct.unpack_from(end + word, data, at + 3 * p_offset)
        if offset + filesz > size:
            return False
    return True


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(os.fsencode(p))  # a path's bytes, whatever the locale
        digest.update(p.read_bytes())
    return digest.hexdigest()[:24]


def _emu_files() -> list[Path]:
    """Everything of the emulator that shapes a kernel module."""
    files = [EMU_DIR / "cuda_emu.h", EMU_DIR / "emu_abi.h", Path(source.__file__)]
    return files + sorted(p for p in INCLUDE_DIR.rglob("*") if p.is_file())


def summarize_log(log: str, limit: int = 10) -> str:
    """The first error of a compiler log and the lines that explain it."""
    lines = log.splitlines()
    first = next(
        (i for i, line in enumerate(lines) if "error:" in line or "undefined reference" in line),
        None,
    )
    if first is None:
        return "\n".join(lines[-limit:])
    return "\n".join(lines[first : first + limit])


def _run_compiler(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise KernelError(f"{what}: g++ did not run: {err}") from None
    if done.returncode != 0:
        raise KernelError(f"{what}: g++ failed:\n{summarize_log(done.stderr + done.stdout)}")


def _build_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Build into a temporary file beside `target` and rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        build(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _write_atomically(target: Path, text: str) -> None:
    # paths in it (its #include) as the bytes they are, whatever the locale's encoding
    _build_atomically(target, lambda tmp: tmp.write_bytes(os.fsencode(text)))


@cache
def runtime_library() -> Path:
    """The runtime shared library (scheduler, fibers, thread pool), built once per version."""
    cxx = compiler()
    flags = list(RUNTIME_FLAGS)
    if os.environ.get("GPUTRACK_EMU_UCONTEXT"):  # the portable context switch, for testing it
        flags.append("-DGPUTRACK_EMU_UCONTEXT")
    key = _hash_files([RUNTIME_SOURCE, EMU_DIR / "emu_abi.h"])
    key = hashlib.sha256(f"{key} {flags} {compiler_version(cxx)}".encode()).hexdigest()
    target = cache_dir() / f"libgputrack_emu_rt-{key[:24]}.so"
    if not _complete_elf(target):  # absent, or cut short: built (again)
        _build_atomically(
            target,
            lambda tmp: _run_compiler(
                [cxx, *flags, f"-I{EMU_DIR}", str(RUNTIME_SOURCE), "-o", str(tmp)],
                "emu runtime library",
            ),
        )
    return target


def _define_flags(defines: dict[str, str]) -> list[str]:
    flags = []
    for name, value in sorted(defines.items()):
        if not _DEFINE_NAME.fullmatch(name):
            raise KernelError(f"define '{name}': not a valid C macro name")
        flags.append(f"-D{name}={value}")
    return flags


def module_library(path: Path, defines: dict[str, str]) -> Path:
    """The shared library of one `.cu` file: checked, generated, compiled (or from the cache)."""
    global compile_count
    include_dirs = [path.parent.resolve(), kernel_source.kernels_dir().resolve()]
    files = source.local_sources(path, include_dirs)
    source.check_supported(files, path)

    cxx = compiler()
    runtime = runtime_library()
    define_flags = _define_flags(defines)
    extra = " ".join(
        [
            *KERNEL_FLAGS,
            *define_flags,
            compiler_version(cxx),
            runtime.name,
            _hash_files(_emu_files()),
            _hash_files(files),
            # the folders' bytes as text, whatever the locale (the digest hashes UTF-8)
            *(os.fsencode(d).decode("utf-8", "backslashreplace") for d in include_dirs),
        ]
    )
    digest = kernel_source.source_digest(path, extra=extra)
    target = cache_dir() / f"{path.stem}-{digest}.so"
    if _complete_elf(target):  # one cut short is built again
        return target

    arrays = source.dynamic_shared_arrays(files)
    unit = source.translation_unit(
        path.resolve(), kernel_source.signatures_of(path), arrays, MAX_DYNAMIC_SHARED
    )
    generated = cache_dir() / f"{path.stem}-{digest}.cpp"
    _write_atomically(generated, unit)
    command = [
        cxx,
        *KERNEL_FLAGS,
        f"-I{EMU_DIR}",
        f"-I{INCLUDE_DIR}",
        *(f"-I{d}" for d in include_dirs),
        *define_flags,
        str(generated),
        str(runtime),
        "-Wl,--no-undefined",
    ]
    compile_count += 1
    return _build_atomically(
        target, lambda tmp: _run_compiler([*command, "-o", str(tmp)], path.name)
    )
