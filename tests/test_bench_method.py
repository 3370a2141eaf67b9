"""The benchmarks' method, not their speed: the bytes each memory floor counts, the statistics
printed and stored, the baselines' algorithm and settings. Nothing here is timed."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from gputrack.device import probe
from gputrack.isp import TensorSpec
from tests.conftest import load_script

needs_emu = pytest.mark.skipif(not probe("emu").available, reason="emu backend unavailable")

W, H = 3840, 2160
PX = W * H


def tensor_bytes(spec: TensorSpec) -> int:
    return 3 * 4 * spec.width * spec.height  # float32 planes


# --- bench_deadline: ISP + network against the memory floor ---------------------------------


def test_deadline_floor_counts_the_tensor_pass_read_of_rgb8():
    """isp_tensor reads the RGB8 image isp_main wrote: 3 bytes a pixel the floor had left out
    (45.6 MB instead of 70.5 MB at 4K with FastestDet: the 52x of the H200 run was 33x)."""
    bench = load_script("bench_deadline")
    t = tensor_bytes(TensorSpec(352, 352))
    net, head = 1_125_764, 4_000  # weights and head: any figures
    got, what = bench.floor_bytes(PX, t, net, head, True)
    assert got == 2 * PX + 3 * PX + 3 * PX + 2 * t + net + head
    assert "RGB8 out + in" in what
    got, what = bench.floor_bytes(PX, t, 0, 0, False)  # stand-in: no network reads the tensor
    assert got == 2 * PX + 3 * PX + 3 * PX + t
    assert "no network" in what


def test_deadline_percentiles():
    bench = load_script("bench_deadline")
    p = bench.pcts([float(v) for v in range(1, 101)])  # 1 .. 100
    assert p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.01) and p["n"] == 100
    assert bench.pcts([])["n"] == 0


# --- bench_isp: the kernel table ----------------------------------------------------------


def test_isp_own_floor_reads_the_raw_once_and_writes_each_output_once():
    bench = load_script("bench_isp")
    t = tensor_bytes(bench.TENSOR)
    assert bench.isp_bytes(W, H, nv12=True, tensor=bench.TENSOR) == 6.5 * PX + t
    assert bench.isp_bytes(W, H, nv12=False, tensor=None) == 5 * PX
    # 58.8 MB at 4K: the whole-ISP row's sum of kernel floors (100.3 MB) is 1.7 times that.
    assert bench.isp_bytes(W, H, True, bench.TENSOR) == pytest.approx(58.8e6, rel=1e-3)


def test_table_row_stores_what_it_prints():
    """p90 and x floor were printed but not in the JSON; the median and p90 are those of the
    single launches, the ring's x floor against the same floor."""
    bench = load_script("bench_isp")
    r = {"what": "k", "ms": [float(v) for v in range(10, 0, -1)], "floor_ms": 2.0,
         "ring_ms": [3.0, 1.0, 2.0], "isp_floor_ms": 0.5}  # fmt: skip
    line = bench.table_row(r)
    assert r["median_ms"] == 5.5 and r["p90_ms"] == pytest.approx(9.1)
    assert r["x_floor"] == pytest.approx(2.75) and r["ring_median_ms"] == 2.0
    assert r["ring_x_floor"] == 1.0 and r["x_isp_floor"] == pytest.approx(11.0)
    assert line.split()[1:] == ["5.5000", "9.1000", "2.0000", "2.75", "2.0000", "1.00"]
    json.dumps(r)  # plain floats


@needs_emu
def test_kernel_table_bytes_on_emu(tmp_path):
    """Each row's floor: every byte its kernel must read and write (RAW uint16 in, RGB8 / NV12
    / float32 tensor out, the tensor's read of RGB8, the sensor's RGB8 scene in), over the copy
    bandwidth measured in the run, read + write counted as the kernels' bytes are."""
    bench = load_script("bench_isp")
    out = tmp_path / "isp.json"
    w, h = 64, 32
    assert bench.main(["--device", "emu", "--size", f"{w}x{h}", "--reps", "1", "--no-cpu",
                       "--json", str(out)]) == 0  # fmt: skip
    table = json.loads(out.read_text())["gpu"]
    px, bw = w * h, table["copy_bandwidth_gbs"] * 1e9
    t640, t352 = tensor_bytes(TensorSpec(640, 640)), tensor_bytes(TensorSpec(352, 352))
    want = {
        "isp_awb_stats": 2 * px,
        "isp_main -> RGB8": 5 * px,
        "isp_main -> RGB8 + NV12": 2 * px + 3 * px + px * 3 // 2,
        "isp_main_dir -> RGB8 (directional)": 5 * px,
        "isp_tensor 640x640 area": 3 * px + t640,
        "isp_tensor 352x352 area (fractional scale)": 3 * px + t352,
        "whole ISP: AWB + main (RGB8+NV12) + tensor": 2 * px + 2 * px + 4.5 * px + 3 * px + t640,
        "sensor_from_u8 (scene -> RAW, noise)": 3 * px + 2 * px,
    }
    rows = {r["what"]: r for r in table["rows"]}
    assert set(rows) == set(want)
    for name, nbytes in want.items():
        r = rows[name]
        assert r["bytes"] == nbytes, name
        assert r["floor_ms"] == pytest.approx(nbytes / bw * 1e3)
        for key in ("median_ms", "p90_ms", "x_floor"):
            assert key in r, (name, key)
    whole = rows["whole ISP: AWB + main (RGB8+NV12) + tensor"]
    assert whole["isp_bytes"] == 2 * px + 4.5 * px + t640
    assert whole["x_isp_floor"] == pytest.approx(whole["median_ms"] / whole["isp_floor_ms"])


# --- bench_tracker: SORT as published, on one thread -----------------------------------------


def test_sort_skips_the_hungarian_step_where_published_sort_does(monkeypatch):
    """abewley/sort matches directly when every detection and track has at most one partner
    over the threshold; the baseline had run the Hungarian assignment every frame."""
    bench = load_script("bench_tracker")
    calls = []

    def hungarian(cost):
        calls.append(cost.shape)
        from scipy.optimize import linear_sum_assignment

        return linear_sum_assignment(cost)

    monkeypatch.setattr(bench, "linear_sum_assignment", hungarian)
    one_to_one = np.array([[0.0, 0.8, 0.1], [0.9, 0.0, 0.0], [0.0, 0.2, 0.0]])
    assert sorted(bench.sort_pairs(one_to_one, 0.3)) == [(0, 1), (1, 0)]
    assert calls == []
    rivals = np.array([[0.5, 0.4], [0.45, 0.0]])  # detection 0 over the threshold with both
    assert sorted(bench.sort_pairs(rivals, 0.3)) == [(0, 1), (1, 0)]  # summed IoU 0.85
    assert calls == [(2, 2)]


def test_sort_baseline_blas_is_single_threaded_whatever_the_environment(monkeypatch):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "4")
    load_script("bench_tracker")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        assert os.environ[var] == "1", var


def test_every_tracker_gets_the_same_frames(monkeypatch, capsys):
    bench = load_script("bench_tracker")
    seen = []

    def rate(step, frames, seconds):
        seen.append(frames)
        return 1.0

    monkeypatch.setattr(bench, "rate", rate)
    monkeypatch.setattr(bench.os, "sched_setaffinity", lambda *a: None, raising=False)
    assert bench.main(["--objects", "3", "--frames", "8", "--seconds", "0.01"]) == 0
    assert len(seen) == 3 and seen[0] is seen[1] is seen[2]
