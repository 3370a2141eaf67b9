"""scripts/sass_report.py: the SASS parsing on a fixed listing, and the whole report on a real
kernel built by NVRTC (the dev extra installs cuobjdump)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_script, needs_sass_tools

REPO = Path(__file__).resolve().parent.parent

LISTING = """
	code for sm_90
		Function : first
	.headerflags	@"EF_CUDA_TEXMODE_UNIFIED EF_CUDA_64BIT_ADDRESS EF_CUDA_SM90"
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/               @P0 FFMA.SAT R2, R3, R4, R5 ;
        /*0020*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0030*/              @!P1 BRA 0x60 ;
        /*0040*/                   STS.128 [R0], R4 ;
        /*0050*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*10000*/                  EXIT ;
		..........
		Function : second
        /*0000*/                   EXIT ;
"""


def test_parse_counts_instructions_per_kernel_and_between_barriers():
    sass = load_script("sass_report")
    functions = sass.parse_sass(LISTING)
    assert set(functions) == {"first", "second"}
    first = functions["first"]
    assert len(first) == 7 and first[1] == "@P0 FFMA.SAT R2, R3, R4, R5"  # 5-digit address too
    assert [sass.opcode(i) for i in first[:4]] == ["LDC", "FFMA", "BAR", "BRA"]
    # 2 before the first barrier; the barrier and 2 more; the second barrier and EXIT
    assert sass.barrier_segments(first) == [2, 3, 2]
    assert sass.barrier_segments(functions["second"]) == [1]


def test_load_batches_end_where_loaded_data_is_first_used():
    sass = load_script("sass_report")
    listing = [
        "LDG.E.128.CONSTANT R4, desc[UR4][R2.64]",  # R4..R7
        "@P0 LDG.E.64.CONSTANT R8, desc[UR4][R2.64+0x10]",  # R8, R9
        "IADD3 R1, R2, R3, RZ",  # writes R1 only: the loads stay in flight
        "FADD R12, R5, R1",  # reads R5: the warp waits here; batch of 2
        "LDG.E R20, desc[UR4][R10.64]",
        "STG.E desc[UR4][R2.64], R20",  # a store reads its value operand: batch of 1
        "LDG.E R30, desc[UR4][R10.64]",
        "BAR.SYNC.DEFER_BLOCKING 0x0",  # a barrier ends a batch too
        "LDG.E R31, desc[UR4][R14.64]",
        "FFMA R2, R8, R9, R2",  # reads R8, R9, which no load of this batch wrote
        "EXIT",
    ]
    assert sass.load_batches(listing) == [2, 1, 1, 1]


@needs_sass_tools
def test_report_on_a_real_kernel(capsys, tmp_path):
    sass = load_script("sass_report")
    isp = str(REPO / "kernels" / "isp.cu")
    assert sass.main([isp, "isp_main", "--segments", "3", "--dump", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("isp_main:"))
    count = int(line.split()[1])
    assert count > 1000 and "0 B spills" in line
    assert "between barriers:" in out
    # the listing: every counted instruction, one a line, as parse_sass reads them
    listing = (tmp_path / "isp_main.sass").read_text().splitlines()
    assert len(listing) == count and "EXIT" in {sass.opcode(i) for i in listing}
    assert sum(sass.opcode(i) == "BAR" for i in listing) >= 2


@needs_sass_tools
def test_unknown_kernel_is_an_error(capsys):
    sass = load_script("sass_report")
    assert sass.main([str(REPO / "kernels" / "sensor.cu"), "no_such_kernel"]) == 1
    assert "no_such_kernel" in capsys.readouterr().err


def _loop_body(sass, capsys, *argv: str) -> int:
    """isp_main's third barrier segment (the first Bayer phase's tile loop), as reported."""
    assert sass.main([str(REPO / "kernels" / "isp.cu"), "isp_main", "--segments", "3", *argv]) == 0
    out = capsys.readouterr().out
    segments = next(ln for ln in out.splitlines() if "between barriers:" in ln)
    return int(segments.split(":")[1].split("|")[2])


@needs_sass_tools
def test_common_path_drops_the_edge_paths_and_two_cells_cost_less_per_pixel(capsys):
    """--common-path counts what a whole interior tile runs; by that count a thread's tile
    step with two cells (8 pixels) costs less per pixel than with one (4 pixels): the reason
    ISP_CELLS is 2 (docs/ISP.md)."""
    sass = load_script("sass_report")
    whole = _loop_body(sass, capsys, "-D", "ISP_CELLS=2")
    two = _loop_body(sass, capsys, "-D", "ISP_CELLS=2", "--common-path")
    one = _loop_body(sass, capsys, "-D", "ISP_CELLS=1", "--common-path")
    assert two < whole / 2  # the edge paths were most of the loop's code
    assert two / 8 < 0.9 * one / 4


def test_common_path_refuses_a_file_it_has_no_rules_for(tmp_path):
    sass = load_script("sass_report")
    other = tmp_path / "other.cu"
    other.write_text("__global__ void k() {}\n")
    with pytest.raises(ValueError, match="no edge conditions known for other.cu"):
        sass.common_path_source(other)


def test_common_path_refuses_a_condition_that_left_the_source(tmp_path):
    sass = load_script("sass_report")
    assert "if (true)" in sass.common_path_source(REPO / "kernels" / "isp.cu")
    copy = tmp_path / "isp.cu"
    text = (REPO / "kernels" / "isp.cu").read_text()
    copy.write_text(text.replace("if (shade[3] == 0.0f)", "if (shade[3] == 0.0f && true)"))
    with pytest.raises(ValueError, match=r"'if \(shade\[3\] == 0.0f\)' is no longer in isp.cu"):
        sass.common_path_source(copy)
