"""The kernel sources in `kernels/`: where they are, and the signatures of their kernels.

Every backend reads the same `.cu` files. Each `extern "C" __global__` kernel's parameter list
is parsed here once, so that every backend converts and checks launch arguments the same way
(a float64 array passed where the kernel reads `float*` is an error, not a silent wrong answer).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from gputrack.errors import KernelError

_PACKAGE_DIR = Path(__file__).resolve().parent.parent

# C type spelling -> NumPy dtype. `__half` maps to float16.
_SCALAR_TYPES: dict[str, np.dtype] = {
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    "__half": np.dtype(np.float16),
    "half": np.dtype(np.float16),
    "char": np.dtype(np.int8),
    "signed char": np.dtype(np.int8),
    "int8_t": np.dtype(np.int8),
    "unsigned char": np.dtype(np.uint8),
    "uint8_t": np.dtype(np.uint8),
    "short": np.dtype(np.int16),
    "int16_t": np.dtype(np.int16),
    "unsigned short": np.dtype(np.uint16),
    "uint16_t": np.dtype(np.uint16),
    "int": np.dtype(np.int32),
    "int32_t": np.dtype(np.int32),
    "unsigned": np.dtype(np.uint32),
    "unsigned int": np.dtype(np.uint32),
    "uint32_t": np.dtype(np.uint32),
    "long long": np.dtype(np.int64),
    "int64_t": np.dtype(np.int64),
    "unsigned long long": np.dtype(np.uint64),
    "uint64_t": np.dtype(np.uint64),
    "size_t": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
}

_KERNEL_RE = re.compile(
    r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+'
    r"(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)",
    re.S,
)
_INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


@dataclass(frozen=True)
class Param:
    """One kernel parameter: `const float* __restrict__ x` -> Param('x', float32, pointer)."""

    name: str
    ctype: str
    dtype: np.dtype | None  # None for `void*`
    pointer: bool
    const: bool


@dataclass(frozen=True)
class KernelSignature:
    file: str
    name: str
    params: tuple[Param, ...]


def kernels_dir() -> Path:
    """`GPUTRACK_KERNELS`, else the repository's `kernels/`, else the copy inside the wheel."""
    env = os.environ.get("GPUTRACK_KERNELS")
    if env:
        return Path(env)
    repo = _PACKAGE_DIR.parent / "kernels"
    if repo.is_dir():
        return repo
    return _PACKAGE_DIR / "_kernels"


def kernel_files(directory: Path | None = None) -> list[Path]:
    """All `.cu` files of a kernel directory, sorted."""
    return sorted((directory or kernels_dir()).glob("*.cu"))


def resolve(file: str | Path) -> Path:
    """A kernel file by name (`isp.cu`) or by path; a clear error when it does not exist."""
    path = Path(file)
    if not path.is_absolute() and not path.exists():
        path = kernels_dir() / path
    if not path.is_file():
        raise KernelError(f"kernel file {file}: not found (looked in {kernels_dir()})")
    return path


def _strip_comments(source: str) -> str:
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    return re.sub(r"//[^\n]*", "", source)


def _parse_param(text: str, kernel: str) -> Param:
    text = " ".join(text.replace("__restrict__", " ").split())
    match = re.fullmatch(r"(.*?)([\s*&]+)(\w+)", text)
    if not match:
        raise KernelError(f"kernel {kernel}: cannot parse parameter '{text}'")
    type_part, stars, name = match.group(1), match.group(2), match.group(3)
    pointer = "*" in stars or "*" in type_part
    words = [w for w in type_part.replace("*", " ").split() if w not in ("const", "volatile")]
    const = "const" in type_part.split()
    ctype = " ".join(words)
    if ctype == "void" and pointer:
        return Param(name, ctype, None, True, const)
    if ctype not in _SCALAR_TYPES:
        raise KernelError(f"kernel {kernel}: parameter '{name}' has unsupported type '{ctype}'")
    return Param(name, ctype, _SCALAR_TYPES[ctype], pointer, const)


def parse_signatures(source: str, file: str = "<source>") -> dict[str, KernelSignature]:
    """Every `extern "C" __global__` kernel of a source text, by name."""
    found: dict[str, KernelSignature] = {}
    for match in _KERNEL_RE.finditer(_strip_comments(source)):
        name, params_text = match.group(1), match.group(2).strip()
        parts = [p for p in params_text.split(",") if p.strip()] if params_text else []
        params = tuple(_parse_param(p, name) for p in parts)
        found[name] = KernelSignature(file, name, params)
    return found


@cache
def _read(path: Path, mtime_ns: int) -> str:
    return path.read_text()


def read_source(path: Path) -> str:
    return _read(path, path.stat().st_mtime_ns)


def source_digest(path: Path, extra: str = "") -> str:
    """A hash of a source and every local header it includes (recursively), for caches."""
    digest = hashlib.sha256(extra.encode())
    seen: set[Path] = set()

    def visit(p: Path) -> None:
        if p in seen or not p.is_file():
            return
        seen.add(p)
        text = read_source(p)
        digest.update(p.name.encode())
        digest.update(text.encode())
        for inc in _INCLUDE_RE.findall(text):
            visit(p.parent / inc)

    visit(path)
    return digest.hexdigest()[:24]


def signatures_of(path: Path) -> dict[str, KernelSignature]:
    return parse_signatures(read_source(path), path.name)
