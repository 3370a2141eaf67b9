"""Every kernel compiles for sm_90, through NVRTC and (where installed) nvcc, with no spills."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gputrack.device.compile_report import (
    compile_nvcc,
    compile_nvrtc,
    nvrtc_version,
    parse_ptxas_log,
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
