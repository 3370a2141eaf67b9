"""Every kernel compiles for sm_90, through NVRTC and (where installed) nvcc, with no spills."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gputrack.device import compile_report
from gputrack.device.compile_report import (
    NOT_CHECKED,
    compile_nvcc,
    compile_nvrtc,
    nvrtc_version,
    parse_ptxas_log,
    report_all,
)
from gputrack.device.kernel_source import kernel_files, signatures_of

TEST_KERNELS = Path(__file__).parent / "kernels"
ALL_FILES = kernel_files() + sorted(TEST_KERNELS.glob("*.cu"))


def test_there_are_kernels_to_check():
    assert kernel_files(), "kernels/ holds no .cu files"


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_compiles_with_nvrtc_for_sm90_without_spills(path):
    version, why = nvrtc_version()
    if version is None:
        pytest.fail(f"NVRTC must be installed for the tests (pip install -e '.[dev]'): {why}")
    report = compile_nvrtc(path)
    assert report.compiled, f"{path.name}: {report.error}\n{report.log}"
    names = {k.name for k in report.kernels}
    assert names == set(signatures_of(path)), 'every extern "C" __global__ kernel is reported'
    for k in report.kernels:
        assert k.spills == 0, f"{k.name} spills {k.spills} bytes"
        assert 0 < k.registers <= 255


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_compiles_with_nvcc_for_sm90(path):
    report = compile_nvcc(path)
    assert report.compiled, f"{path.name}: {report.error}\n{report.log}"
    assert all(k.spills == 0 for k in report.kernels)


def test_ptxas_report_parser_reads_registers_spills_and_shared_memory():
    log = """ptxas info    : Compiling entry function 'tile' for 'sm_90'
ptxas info    : Function properties for tile
ptxas         .     16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 1296 bytes smem
ptxas info    : Compiling entry function 'plain' for 'sm_90'
ptxas info    : Function properties for plain
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers
"""
    tile, plain = parse_ptxas_log(log, "f.cu", "nvrtc")
    assert (tile.name, tile.registers, tile.spills, tile.stack_bytes, tile.shared_bytes) == (
        "tile",
        40,
        12,
        16,
        1296,
    )
    assert (plain.name, plain.registers, plain.spills, plain.shared_bytes) == ("plain", 10, 0, 0)


def test_a_broken_kernel_reports_the_error(tmp_path):
    bad = tmp_path / "bad.cu"
    bad.write_text('extern "C" __global__ void k(float* x) { x[0] = undefined_thing; }\n')
    report = compile_nvrtc(bad)
    assert not report.compiled and "undefined_thing" in report.error


def no_nvrtc(monkeypatch: pytest.MonkeyPatch) -> None:
    """As where CuPy (so NVRTC) is not installed."""
    monkeypatch.setattr(
        compile_report, "nvrtc_version", lambda: (None, "CuPy not installed (cupy_backends)")
    )


def no_nvcc(monkeypatch: pytest.MonkeyPatch) -> None:
    which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda n, *a, **k: None if n == "nvcc" else which(n, *a, **k)
    )


SMALLEST = min(kernel_files(), key=lambda p: p.stat().st_size)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_without_nvrtc_the_report_compiles_with_nvcc(monkeypatch):
    no_nvrtc(monkeypatch)
    (report,) = report_all([SMALLEST], arch="sm_90")
    assert report.checked and report.compiled, f"{report.error}\n{report.log}"
    assert report.compiler.startswith("nvcc")
    assert {k.name for k in report.kernels} == set(signatures_of(SMALLEST))
    assert all(k.compiler == report.compiler and k.registers > 0 for k in report.kernels)


def test_without_nvrtc_or_nvcc_the_kernels_are_not_checked_not_failed(monkeypatch):
    no_nvrtc(monkeypatch)
    no_nvcc(monkeypatch)
    reports = report_all()
    assert [r.file for r in reports] == [p.name for p in kernel_files()]
    for r in reports:
        assert not r.checked and not r.compiled and not r.kernels
        assert r.error == NOT_CHECKED and r.error.startswith("not checked: no NVRTC")
