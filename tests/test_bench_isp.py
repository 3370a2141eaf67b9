"""scripts/bench_isp.py's kernel table runs end to end on `emu` (the code path a GPU session
runs on `cuda`) and writes its JSON. No timing is judged: only that every row is there."""

from __future__ import annotations

import json
import math

import pytest

from gputrack.device import probe
from tests.conftest import load_script

needs_emu = pytest.mark.skipif(not probe("emu").available, reason="emu backend unavailable")


@needs_emu
def test_kernel_table_runs_on_emu(tmp_path):
    bench = load_script("bench_isp")
    out = tmp_path / "isp.json"
    argv = ["--device", "emu", "--size", "128x64", "--reps", "2", "--sweep", "--json", str(out)]
    assert bench.main(argv) == 0
    res = json.loads(out.read_text())
    table = res["gpu"]
    assert table["backend"] == "emu" and table["copy_bandwidth_gbs"] > 0
    names = [r["what"] for r in table["rows"]]
    for kernel in ("isp_awb_stats", "isp_main -> RGB8", "isp_main_dir", "isp_tensor 640",
                   "isp_tensor 352", "sensor"):
        assert any(kernel in n for n in names), kernel
    assert sum("strip" in n for n in names) == 12  # the schedule sweep: 8 isp_main, 4 + NV12
    assert sum("1 cell, strip 4, 4 blocks/SM]" in n for n in names) == 1  # timed at 0a2f719
    assert sum("2 cells" in n for n in names) == 5
    assert sum("5 blocks/SM" in n or "5/SM" in n for n in names) == 2
    assert sum("direct]" in n for n in names) == 5
    assert sum("cell rows/thread" in n for n in names) == 3
    for r in table["rows"]:
        assert len(r["ms"]) == 2 and all(math.isfinite(v) and v > 0 for v in r["ms"])
        assert r["floor_ms"] > 0 and r["bytes"] > 0
    # The ISP's rows are timed in a ring of frames as well (per launch).
    ringed = [r["what"] for r in table["rows"] if "ring_ms" in r]
    assert ringed == names[:7] and table["ring_frames"] == 2
    for r in table["rows"][:7]:
        assert len(r["ring_ms"]) == 2 and all(v > 0 for v in r["ring_ms"])
        assert "; ring " in res["summary"][f"gpu {r['what']}"]
    assert res["cpu"] and res["summary"]["cpu ISP -> RGB8"].endswith(" ms")


@needs_emu
def test_kernel_table_alone_skips_the_cpu_part(tmp_path):
    bench = load_script("bench_isp")
    out = tmp_path / "isp.json"
    argv = ["--device", "emu", "--size", "64x32", "--reps", "1", "--no-cpu", "--json", str(out)]
    assert bench.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["gpu"]["rows"] and "cpu" not in res


@needs_emu
def test_profile_driver_runs_each_kernel_on_emu(capsys):
    """scripts/profile_isp.py, the program gpu_profile.sh hands to Nsight Compute."""
    prof = load_script("profile_isp")
    assert prof.main(["--device", "emu", "--size", "128x64", "--schedule", "ISP_STRIP=2"]) == 0
    out = capsys.readouterr().out
    for line in ("isp_main -> RGB8:", "RGB8 + NV12:", "isp_tensor:", "isp_main_dir -> RGB8:",
                 "sensor_from_u8: done"):
        assert line in out


def test_a_device_asked_for_by_name_and_missing_is_an_error(capsys):
    """`--device cuda` without a GPU said 'table skipped' and exited 0: a GPU session's log
    would have looked like a run. Named and missing is exit 1; --no-cpu with no device has
    nothing to time (exit 2); both before the frame is made."""
    if probe("cuda").available:
        pytest.skip("a GPU is here")
    bench = load_script("bench_isp")
    assert bench.main(["--device", "cuda", "--size", "64x32"]) == 1
    err = capsys.readouterr().err
    assert "--device cuda: unavailable" in err
    assert bench.main(["--size", "64x32", "--no-cpu"]) == 2
    out, err = capsys.readouterr()
    assert "--no-cpu: nothing to time" in err and "frame 64x32" not in out
