"""Compile kernel files for a GPU architecture without a GPU, and read the resource report.

NVRTC (through CuPy's low-level binding, which works with no driver) and, where it is on the
PATH, nvcc both compile every kernel for `sm_90` with `-Xptxas -v`; the report gives registers,
spills, stack frame and static shared memory per kernel. The tests compile with both;
`gputrack check` (`report_all`) with NVRTC, or with nvcc where NVRTC is unavailable, and marks
the files "not checked" where neither is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from gputrack.device import kernel_source

DEFAULT_ARCH = "sm_90"

_ENTRY_RE = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
_SPILL_RE = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
)
_USED_RE = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


@dataclass
class KernelReport:
    file: str
    name: str
    compiled: bool
    registers: int = 0
    spills: int = 0  # spill stores + spill loads, bytes
    stack_bytes: int = 0
    shared_bytes: int = 0
    compiler: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FileReport:
    file: str
    compiled: bool
    compiler: str
    kernels: list[KernelReport] = field(default_factory=list)
    error: str = ""
    log: str = ""
    checked: bool = True  # False: no compiler here, so `compiled` says nothing about the source


def cuda_include_dirs() -> list[str]:
    """Header folders a kernel may need beyond its own (cuda_fp16.h and friends): a CUDA
    toolkit (CUDA_PATH, CUDA_HOME, /usr/local/cuda) or the headers of NVIDIA's PyPI wheels."""
    roots = [os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    candidates = [Path(r, "include") for r in roots if r]
    for entry in sys.path:  # e.g. site-packages/nvidia/cu13/include from cuda-toolkit[cudart]
        candidates += sorted(Path(entry).glob("nvidia/*/include"))
    for folder in candidates:
        if (folder / "cuda_fp16.h").is_file():
            return [str(folder)]
    return []


# Flush denormals to zero, as CuPy compiles every RawModule (it appends -ftz=true itself), so
# the cuda backend runs FTZ code. The compile report and the pycuda backend ask for the same:
# one build is checked, run and measured (FTZ changes code generation: FFMA.SAT, for one).
FTZ_FLAG = "-ftz=true"


def include_flags(path: Path) -> list[str]:
    dirs = [str(kernel_source.kernels_dir()), str(path.parent), *cuda_include_dirs()]
    seen: list[str] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return [f"-I{d}" for d in seen]


def parse_ptxas_log(log: str, file: str, compiler: str) -> list[KernelReport]:
    """Per-kernel resources from a `ptxas -v` log (the same text from nvcc and NVRTC)."""
    reports: dict[str, KernelReport] = {}
    current: KernelReport | None = None
    for line in log.splitlines():
        if m := _ENTRY_RE.search(line):
            current = reports.setdefault(
                m.group(1), KernelReport(file, m.group(1), True, compiler=compiler)
            )
        elif current and (m := _SPILL_RE.search(line)):
            current.stack_bytes = int(m.group(1))
            current.spills = int(m.group(2)) + int(m.group(3))
        elif current and (m := _USED_RE.search(line)):
            current.registers = int(m.group(1))
            current.shared_bytes = int(m.group(2) or 0)
    return list(reports.values())


_ARCH_RE = re.compile(r"(sm|compute)_(\d{2,3})[af]?")


def check_arch(arch: str) -> str:
    """`sm_90`, `compute_90`, `sm_90a`...: a `ValueError` naming what NVRTC supports when
    the name is malformed or the number is not one of them (where NVRTC can say)."""
    m = _ARCH_RE.fullmatch(arch)
    try:
        from cupy_backends.cuda.libs import nvrtc

        supported = tuple(nvrtc.getSupportedArchs())
    except Exception:  # no NVRTC here: the compile itself will say so
        supported = ()
    listed = ", ".join(f"sm_{n}" for n in supported)
    if m is None:
        raise ValueError(f"'{arch}' is not a GPU architecture such as sm_90"
                         + (f" (NVRTC compiles for {listed})" if listed else ""))  # fmt: skip
    if supported and int(m.group(2)) not in supported:
        raise ValueError(f"'{arch}': this NVRTC compiles for {listed}")
    return arch


def nvrtc_version() -> tuple[str | None, str]:
    """('13.0', '') or (None, why not)."""
    try:
        from cupy_backends.cuda.libs import nvrtc
    except ImportError as err:
        return None, f"CuPy not installed ({err.name})"
    try:
        major, minor = nvrtc.getVersion()
    except Exception as err:  # the shared library is missing or unloadable
        return None, f"NVRTC library not found ({err}); pip install 'cuda-toolkit[nvrtc]==13.*'"
    return f"{major}.{minor}", ""


def _nvrtc_options(path: Path, arch: str, defines: dict[str, str] | None) -> list[str]:
    options = [f"-arch={arch}", "-Xptxas=-v", "-std=c++17", FTZ_FLAG, *include_flags(path)]
    options += [f"-D{k}={v}" for k, v in (defines or {}).items()]
    # CuPy hands NVRTC each option as UTF-8; a folder's name read under a locale that is not
    # UTF-8 (LC_ALL=POSIX with PYTHONCOERCECLOCALE=0, latin-1) is given as its bytes
    return [os.fsencode(o).decode("utf-8", "surrogateescape") for o in options]


def _whole_cubin(program: int, version: str) -> bytes:
    """The program's cubin through NVRTC's C API: CuPy's getCUBIN drops the last byte (it
    takes the size for a C string's), which leaves an ELF that cuobjdump refuses."""
    import ctypes

    lib = ctypes.CDLL(f"libnvrtc.so.{version.split('.')[0]}")  # the one CuPy loaded
    size = ctypes.c_size_t()
    handle = ctypes.c_void_p(program)
    if lib.nvrtcGetCUBINSize(handle, ctypes.byref(size)) != 0:
        raise RuntimeError("nvrtcGetCUBINSize failed")
    buf = ctypes.create_string_buffer(size.value)
    if lib.nvrtcGetCUBIN(handle, buf) != 0:
        raise RuntimeError("nvrtcGetCUBIN failed")
    return buf.raw


def compile_nvrtc(
    path: Path, arch: str = DEFAULT_ARCH, defines: dict[str, str] | None = None
) -> FileReport:
    """Compile one file to a cubin with NVRTC and report each kernel's resources."""
    report, _ = compile_cubin(path, arch, defines)
    return report


def compile_cubin(
    path: Path, arch: str = DEFAULT_ARCH, defines: dict[str, str] | None = None
) -> tuple[FileReport, bytes | None]:
    """The report of compile_nvrtc and the cubin itself (None where it failed): the code the
    cuda backend runs, for reading its SASS (scripts/sass_report.py)."""
    version, why = nvrtc_version()
    if version is None:
        return FileReport(path.name, False, "nvrtc", error=why), None
    from cupy_backends.cuda.libs import nvrtc

    compiler = f"nvrtc {version}"
    try:  # CuPy hands NVRTC UTF-8: a name whose bytes are not (b'\xff') cannot be given it
        options = _nvrtc_options(path, arch, defines)
        "".join([path.name, *options]).encode()
    except UnicodeEncodeError:
        where = os.fsencode(path.resolve().parent).decode("utf-8", "backslashreplace")
        return FileReport(path.name, False, compiler, error=f"NVRTC takes UTF-8 paths: {where}"
                          f"/{path.name!a} is not one"), None  # fmt: skip
    program = nvrtc.createProgram(kernel_source.read_source(path), path.name, [], [])
    try:
        try:
            nvrtc.compileProgram(program, options)
        except nvrtc.NVRTCError:
            log = nvrtc.getProgramLog(program)
            return FileReport(path.name, False, compiler, error=_first_error(log), log=log), None
        log = nvrtc.getProgramLog(program)
        cubin = _whole_cubin(program, version)
    finally:
        nvrtc.destroyProgram(program)
    kernels = parse_ptxas_log(log, path.name, compiler)
    return FileReport(path.name, True, compiler, kernels, log=log), cubin


@cache
def _nvcc_run(nvcc: str) -> tuple[str, str]:
    """(`nvcc --version`'s output, '') or ('', why it did not run): once per process."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "", "it did not answer --version within 60 s"
    except (OSError, subprocess.SubprocessError) as err:
        return "", str(err)
    return out.stdout, ""


def nvcc_version(nvcc: str) -> str:
    """'13.0' from `nvcc --version` ('release 13.0, V13.0.88'), or '' where it does not say."""
    m = re.search(r"release (\d+\.\d+)", _nvcc_run(nvcc)[0])
    return m.group(1) if m else ""


def compile_nvcc(
    path: Path, arch: str = DEFAULT_ARCH, defines: dict[str, str] | None = None
) -> FileReport:
    """Compile one file to a cubin with nvcc, where nvcc is installed."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return FileReport(path.name, False, "nvcc", error="nvcc not on PATH")
    compiler = f"nvcc {nvcc_version(nvcc)}".strip()
    why = _nvcc_run(nvcc)[1]
    if why:  # not a file that runs, or one that hangs: the kernels are not checked by it
        return FileReport(path.name, False, compiler, error=f"not checked: {nvcc} cannot run: "
                          f"{why}", checked=False)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            nvcc,
            "-std=c++17",
            FTZ_FLAG,
            f"-arch={arch}",
            "-cubin",
            "-Xptxas",
            "-v",
            *include_flags(path),
            *[f"-D{k}={v}" for k, v in (defines or {}).items()],
            "-o",
            str(Path(tmp, "k.cubin")),
            str(path),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as err:
            return FileReport(path.name, False, compiler, error=f"not checked: {nvcc} did not "
                              f"finish: {err}", checked=False)  # fmt: skip
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        return FileReport(path.name, False, compiler, error=_first_error(log), log=log)
    kernels = parse_ptxas_log(log, path.name, compiler)
    return FileReport(path.name, True, compiler, kernels, log=log)


NOT_CHECKED = "not checked: no NVRTC (pip install -e '.[dev]' or '.[cuda]') and no nvcc"


def compile_any(
    path: Path, arch: str = DEFAULT_ARCH, defines: dict[str, str] | None = None
) -> FileReport:
    """NVRTC's report (the compiler the cuda backend uses); nvcc's where NVRTC is unavailable;
    with neither, a report with `checked` False, which says nothing about the source."""
    if nvrtc_version()[0] is not None:
        return compile_nvrtc(path, arch, defines)
    if shutil.which("nvcc") is not None:
        return compile_nvcc(path, arch, defines)
    return FileReport(path.name, False, "", error=NOT_CHECKED, checked=False)


def _first_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if "error" in ln.lower()]
    return (lines[0] if lines else log.strip().splitlines()[0] if log.strip() else "failed")[:300]


def report_all(files: list[Path] | None = None, arch: str = DEFAULT_ARCH) -> list[FileReport]:
    """A report for every kernel file (kernels/*.cu by default), through `compile_any`."""
    return [compile_any(p, arch) for p in (files or kernel_source.kernel_files())]
