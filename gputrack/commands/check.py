"""`gputrack check`: what this machine can run — versions, backends (with the reason when one
is unavailable), the GPU, NVRTC, and whether every kernel compiles for sm_90 with no spills
(through NVRTC, or nvcc where NVRTC is unavailable; with neither, the kernels are not checked)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import shutil
import sys
from typing import Any

from gputrack import __version__
from gputrack.device import BACKEND_NAMES, auto_choice, probe
from gputrack.device.compile_report import (
    DEFAULT_ARCH,
    NOT_CHECKED,
    check_arch,
    nvcc_version,
    nvrtc_version,
    report_all,
)
from gputrack.errors import UsageError

_PACKAGES = (
    "numpy",
    "scipy",
    "opencv-python-headless",
    "opencv-python",
    "filterpy",
    "rich",
    "onnx",
    "onnxruntime",
    "cupy-cuda13x",
    "cupy-cuda12x",
    "pycuda",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="report versions, backends, GPU and kernel compilation", description=__doc__
    )
    p.add_argument("--json", action="store_true", help="print one JSON object for programs")
    p.add_argument("--no-kernels", action="store_true", help="skip compiling the kernels")
    p.add_argument(
        "--arch", default=DEFAULT_ARCH, type=gpu_arch, help="GPU architecture to compile for"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="also fail (exit 1) when a kernel does not compile or spills registers, or when "
        "no compiler is here to check them (neither NVRTC nor nvcc)",
    )
    p.set_defaults(func=run)


def gpu_arch(text: str) -> str:
    try:
        return check_arch(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "gputrack": __version__}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _nvcc_version() -> str | None:
    nvcc = shutil.which("nvcc")
    if not nvcc:
        return None
    return nvcc_version(nvcc) or "unknown"


def collect(compile_kernels: bool = True, arch: str = DEFAULT_ARCH) -> dict[str, Any]:
    """The whole report as a JSON-ready dict."""
    backends = {}
    for name in BACKEND_NAMES:
        state = probe(name)
        backends[name] = {"available": state.available, "reason": state.reason}
    from gputrack.device.ops_cuda import gpu_info

    chosen, why = auto_choice()
    version, why_not = nvrtc_version()
    report: dict[str, Any] = {
        "versions": _versions(),
        "gpu": gpu_info(),
        "backends": backends,
        "auto": {"backend": chosen, "reason": why},
        "nvrtc": {"version": version, "reason": why_not},
        "nvcc": _nvcc_version(),
        "arch": arch,
        "compiler": None,  # what compiled the kernels: 'nvrtc 13.0', 'nvcc 13.0' or None
        "kernels": [],
        "kernel_errors": [],  # files that do not compile
        "kernels_not_checked": [],  # files no compiler here could check
    }
    if compile_kernels:
        for file in report_all(arch=arch):
            if not file.checked:
                report["kernels_not_checked"].append({"file": file.file, "reason": file.error})
                continue
            report["compiler"] = report["compiler"] or file.compiler
            if file.compiled:
                report["kernels"] += [k.as_dict() for k in file.kernels]
            else:
                report["kernel_errors"].append({"file": file.file, "error": file.error})
    return report


def _print_human(report: dict[str, Any], compiled: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    v = report["versions"]
    console.print(f"[bold]gputrack {v['gputrack']}[/] on Python {v['python']}")
    console.print(
        "  " + ", ".join(f"{k} {val}" for k, val in v.items() if k not in ("python", "gputrack"))
    )
    gpu = report["gpu"]
    console.print(f"GPU: {gpu['name']}, {gpu['memory_gb']} GB" if gpu else "GPU: none")
    nv = report["nvrtc"]
    console.print(
        f"NVRTC: {nv['version']}"
        if nv["version"]
        else f"NVRTC: unavailable ({escape(nv['reason'])})"
    )
    console.print(f"nvcc: {report['nvcc'] or 'not on PATH'}")

    table = Table(title="backends")
    for col in ("backend", "available", "reason"):
        table.add_column(col)
    for name, state in report["backends"].items():
        mark = "[green]yes[/]" if state["available"] else "[red]no[/]"
        table.add_row(name, mark, escape(state["reason"]))
    console.print(table)
    console.print(
        f"auto -> [bold]{report['auto']['backend']}[/] ({escape(report['auto']['reason'])})"
    )

    if not compiled:
        return
    table = Table(title=f"kernels ({report['arch']}, {report['compiler'] or 'no compiler'})")
    for col in ("file", "kernel", "registers", "spills (B)", "smem (B)"):
        table.add_column(col)
    for k in report["kernels"]:
        spill = f"[red]{k['spills']}[/]" if k["spills"] else "0"
        table.add_row(k["file"], k["name"], str(k["registers"]), spill, str(k["shared_bytes"]))
    for err in report["kernel_errors"]:
        table.add_row(err["file"], "[red]does not compile[/]", "", "", escape(err["error"][:60]))
    for row in report["kernels_not_checked"]:
        table.add_row(row["file"], f"[yellow]{escape(row['reason'])}[/]", "", "", "")
    console.print(table)


def run(args: argparse.Namespace) -> int:
    if args.no_kernels and (args.strict or args.arch != DEFAULT_ARCH):
        # both are about compiling the kernels: silently ignored they would pass unchecked
        given = "--strict" if args.strict else f"--arch {args.arch}"
        raise UsageError(f"{given} checks the kernels' compilation: not with --no-kernels")
    report = collect(compile_kernels=not args.no_kernels, arch=args.arch)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_human(report, compiled=not args.no_kernels)
    if not any(b["available"] for b in report["backends"].values()):
        return 1
    if args.strict and report["kernels_not_checked"]:
        why = report["kernels_not_checked"][0]["reason"]  # no compiler, or nvcc cannot run
        why = "neither NVRTC nor nvcc" if why == NOT_CHECKED else why
        sys.stderr.write(f"gputrack check: error: --strict: the kernels could not be compiled "
                         f"here ({why}), so whether they compile is unknown\n")  # fmt: skip
        return 1
    if args.strict and (report["kernel_errors"] or any(k["spills"] for k in report["kernels"])):
        return 1
    return 0
