"""Reading a `.cu` file for the emu backend: what it includes, what it uses, what to generate.

The source is compiled unchanged; this module only (1) refuses features the emulator cannot run
faithfully, naming the feature, file and line, (2) finds `extern __shared__` arrays, which
need a definition sized for the largest dynamic shared memory, and (3) writes the translation
unit: emulation header, the `.cu` file, those definitions and one launch wrapper per kernel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gputrack.device.kernel_source import KernelSignature, read_source
from gputrack.errors import KernelError

# Checked on the source with comments and string literals blanked out. Inactive `#if` branches
# are checked too: a false alarm is loud, a silent wrong answer is not. The one exception is a
# device-only branch with a portable twin, `#ifdef __CUDA_ARCH__ ... #else ... #endif` (for an
# instruction C++ cannot ask for, such as PTX's fma.sat): the emu compiles the `#else` side
# (it never defines __CUDA_ARCH__), so only that side is checked.
UNSUPPORTED: tuple[tuple[str, str], ...] = (
    (r"\bcooperative_groups\b|\bthis_grid\s*\(|\bgrid_group\b", "cooperative groups"),
    (
        r"\b(?:tex1D|tex2D|tex3D|tex1Dfetch|texCubemap)\w*\s*[<(]|\btexture\s*<"
        r"|\bcudaTextureObject_t\b",
        "textures",
    ),
    (r"\bsurf\w*(?:read|write)\b|\bcudaSurfaceObject_t\b", "surfaces"),
    (r"\b(?:asm|__asm__|__asm)\b", "inline asm"),
    (r"\bwgmma\b|\bwmma\b|\bmma_sync\b|\bload_matrix_sync\b", "tensor-core MMA"),
    (r"\b__nanosleep\b", "__nanosleep (a spin-wait hangs: fibers are not preempted)"),
    (r"\bclock(?:64)?\s*\(|\b__globaltimer\b", "clock()/clock64()"),
    (
        r"\bvolatile\b",
        "volatile (warp-synchronous or spin-wait code needs lockstep warps and preemption)",
    ),
    (r"<<<", "dynamic parallelism (a launch inside a kernel)"),
    (r"\b__managed__\b", "__managed__ memory"),
    (r"\bmemcpy_async\b|\b__pipeline_\w+|\bcuda::(?:barrier|pipeline)\b", "asynchronous copies"),
    (r"\b__cluster_dims__\b|\bthis_cluster\b|\bcluster_group\b", "thread-block clusters"),
    (
        r"\b__(?:shfl|shfl_up|shfl_down|shfl_xor|ballot|any|all)\s*\(",
        "warp intrinsics without _sync (removed since Volta)",
    ),
    (r"\b__brkpt\b", "__brkpt"),
)

_EXTERN_SHARED = re.compile(r"\bextern\s+__shared__\s+([^;\[\]]+?)\s*\b(\w+)\s*\[\s*\]\s*;")
_ALIGN = re.compile(
    r"__align__\s*\(\s*(\d+)\s*\)|alignas\s*\(\s*(\d+)\s*\)"
    r"|__attribute__\s*\(\(\s*aligned\s*\(\s*(\d+)\s*\)\s*\)\)"
)
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


@dataclass(frozen=True)
class DynamicShared:
    """`extern __shared__ float tile[];` -> DynamicShared('tile', 'float', 16, file, line)."""

    name: str
    ctype: str
    align: int
    file: Path
    line: int


def blank_comments_and_strings(text: str) -> str:
    """The text with comments and string/char literals turned into spaces (newlines kept)."""
    out = list(text)
    i, n = 0, len(text)

    def blank(start: int, end: int) -> None:
        for k in range(start, end):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            blank(i, end)
            i = end
        elif c in "\"'" and not (c == "'" and i > 0 and text[i - 1].isalnum()):  # 1'000 separators
            k = i + 1
            while k < n and text[k] != c and text[k] != "\n":
                k += 2 if text[k] == "\\" else 1
            blank(i + 1, min(k, n))
            i = k + 1
        else:
            i += 1
    return "".join(out)


def local_sources(path: Path, include_dirs: list[Path]) -> list[Path]:
    """The file and every local header it reaches through `#include "..."`, in order."""
    found: list[Path] = []

    def visit(p: Path) -> None:
        p = p.resolve()
        if p in found:
            return
        found.append(p)
        for name in _INCLUDE.findall(read_source(p)):
            for directory in (p.parent, *include_dirs):
                candidate = directory / name
                if candidate.is_file():
                    visit(candidate)
                    break

    visit(path)
    return found


# `#ifdef __CUDA_ARCH__` (or `#if defined(__CUDA_ARCH__)`) up to its `#else`, with no other
# conditional in between (a nested one is not skipped: checked, so refused if it needs to be).
_DEVICE_ONLY = re.compile(
    r"^[ \t]*#[ \t]*(?:ifdef[ \t]+__CUDA_ARCH__"
    r"|if[ \t]+defined[ \t]*\(?[ \t]*__CUDA_ARCH__[ \t]*\)?)[ \t]*$"
    r"(?:(?!^[ \t]*#[ \t]*(?:if|else|elif|endif)).)*?"
    r"^[ \t]*#[ \t]*else\b",
    re.M | re.S,
)


def blank_device_only(text: str) -> str:
    """The text with the device side of each `#ifdef __CUDA_ARCH__ ... #else` blanked."""

    def blank(match: re.Match[str]) -> str:
        return "".join(c if c == "\n" else " " for c in match.group(0))

    return _DEVICE_ONLY.sub(blank, text)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def check_supported(files: list[Path], main: Path) -> None:
    """A `KernelError` naming the first unsupported feature, with its file and line."""
    for file in files:
        text = blank_device_only(blank_comments_and_strings(read_source(file)))
        for pattern, feature in UNSUPPORTED:
            match = re.search(pattern, text)
            if match:
                where = f"{file.name}:{_line_of(text, match.start())}"
                via = "" if file == main.resolve() else f" (included from {main.name})"
                raise KernelError(
                    f"{where}{via}: uses {feature}, which the emu backend does not support"
                )


def dynamic_shared_arrays(files: list[Path]) -> list[DynamicShared]:
    """Every `extern __shared__ T name[];`, once per name."""
    arrays: dict[str, DynamicShared] = {}
    for file in files:
        text = blank_comments_and_strings(read_source(file))
        for match in _EXTERN_SHARED.finditer(text):
            type_text, name = match.group(1), match.group(2)
            aligns = [int(g) for m in _ALIGN.finditer(type_text) for g in m.groups() if g]
            ctype = " ".join(_ALIGN.sub(" ", type_text).split())
            if name not in arrays:
                line = _line_of(text, match.start())
                arrays[name] = DynamicShared(name, ctype, max([16, *aligns]), file, line)
    return list(arrays.values())


def _c_string(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def translation_unit(
    path: Path,
    signatures: dict[str, KernelSignature],
    arrays: list[DynamicShared],
    max_dynamic_shared: int,
) -> str:
    """The C++ file g++ compiles: header, the unchanged `.cu`, definitions and wrappers."""
    lines = [
        "// Generated by gputrack's emu backend (gputrack/device/emu/source.py). Do not edit.",
        '#include "cuda_emu.h"',
        f"#include {_c_string(path)}",
        "",
        "// Dynamic shared memory: a buffer per name and OS thread, sized for the largest launch.",
    ]
    for a in arrays:
        # Errors in a definition point at the declaration in the kernel source.
        lines.append(f"#line {a.line} {_c_string(a.file)}")
        lines.append(
            f"alignas({a.align}) thread_local {a.ctype} {a.name}"
            f"[({max_dynamic_shared} + sizeof({a.ctype}) - 1) / sizeof({a.ctype})];"
        )
    lines.append(f'#line {len(lines) + 2} "gputrack-emu-wrappers.cpp"')
    # glibc before 2.40 (bug 31372): the lazy first access to a dlopen()ed module's TLS
    # through a TLS descriptor (-mtls-dialect=gnu2) may clobber vector registers that the
    # caller keeps live, and kernel values were lost that way. Touching one thread_local of
    # the module here, outside kernel code and before any fiber runs, allocates the module's
    # TLS block on this OS thread, so kernel code only ever takes the fast path.
    lines.append("static thread_local volatile char gputrack_emu_tls_anchor;")
    # Shared memory starts undefined on a GPU: every block starts with all of it poisoned
    # (static __shared__ variables too, which are thread_local like the dynamic buffers), so a
    # read of shared memory the block never wrote shows. Only the launch's dynamic bytes of each
    # dynamic buffer count: the rest, up to the largest size, is kept as it is.
    lines.append("static gputrack_emu_tls_layout gputrack_emu_layout;")
    lines.append("static const char* gputrack_emu_block_begin(size_t bytes) {")
    lines.append("    gputrack_emu_tls_anchor = 1;")
    if arrays:
        lines.append("    const gputrack_emu_span keep[] = {")
        for a in arrays:
            lines.append(
                f"        {{reinterpret_cast<const char*>({a.name}) + bytes, "
                f"sizeof({a.name}) - bytes}},"
            )
        lines.append("    };")
        keep = f"keep, {len(arrays)}"
    else:
        lines.append("    (void)bytes;")
        keep = "nullptr, 0"
    lines.append(
        "    return gputrack_emu_poison_shared(&gputrack_emu_layout, "
        f"const_cast<const char*>(&gputrack_emu_tls_anchor), {keep});"
    )
    lines.append("}")
    for sig in signatures.values():
        lines.extend(_wrapper(sig))
    return "\n".join(lines) + "\n"


def _wrapper(sig: KernelSignature) -> list[str]:
    call_args = []
    for i, p in enumerate(sig.params):
        ctype = f"{p.ctype}*" if p.pointer else p.ctype
        call_args.append(f"*reinterpret_cast<{ctype}*>(args[{i}])")
    return [
        "",
        f"static void gputrack_emu_body_{sig.name}(void** args, const gputrack_emu_ids* ids) {{",
        "    (void)args;",
        "    (void)ids;  // the built-ins are read from the fiber's stack header",
        f"    {sig.name}({', '.join(call_args)});",
        "}",
        f'extern "C" __attribute__((visibility("default"))) int gputrack_launch_{sig.name}(',
        "        unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,",
        "        size_t shared_bytes, void** args) {",
        "    const unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};",
        f"    return gputrack_emu_launch(gputrack_emu_body_{sig.name}, gputrack_emu_block_begin,",
        "                               grid, block, shared_bytes, args);",
        "}",
    ]
