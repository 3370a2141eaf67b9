"""scripts/bench_deadline.py runs end to end on the cpu backend and writes its JSON.

No timing is judged here (timings live in the benchmark): only that every figure is there
and positive. With shared data the network runs (onnxruntime); without it, or with
GPUTRACK_DATA pointing at an empty folder, the chain runs on the ground-truth stand-in and
says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gputrack.data import data_dir
from gputrack.dsp.detector import DEFAULT_MODEL
from tests.conftest import load_script


def _bench():
    return load_script("bench_deadline")


def _run(tmp_path: Path) -> dict:
    out = tmp_path / "deadline.json"
    rc = _bench().main(["--backend", "cpu", "--size", "96x64", "--frames", "3", "--json", str(out)])
    assert rc == 0
    return json.loads(out.read_text())


def _positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def _check_common(res: dict) -> None:
    assert res["backend"] == "cpu" and res["size"] == [96, 64] and res["frames"] == 3
    assert any("GPU part not run" in n for n in res["notes"])
    for mode in ("paced", "free"):
        r = res[mode]
        assert len(r["latency_ms"]) == 3 and all(_positive(v) for v in r["latency_ms"])
        assert len(r["track_ms"]) == 3
        assert _positive(r["fps"]) and 0 <= r["misses"] <= 3
    for stage in ("upload", "isp", "track (host)"):
        assert _positive(res["stage_ms"][stage]["p50"]), stage
        assert res["stage_ms"][stage]["p99"] >= res["stage_ms"][stage]["p50"]
    for key in ("floor_ms", "x_floor", "x_imx500", "x_opencv", "host_copy_gbs", "isp_net_ms"):
        assert _positive(res[key]), key
    assert _positive(res["opencv_isp_ms"]["p50"])
    assert "skipped" in res["torch"]
    s = res["summary"]
    for key in (
        "where",
        "isp p50/p99",
        "track (host) p50/p99",
        "end-to-end paced p50/p99",
        "throughput (free)",
        "deadline misses (paced)",
        "ISP+network vs memory floor",
        "ISP+network vs IMX500 3.1 ms",
        "ISP vs OpenCV CPU",
        "network vs PyTorch/cuDNN",
    ):
        assert isinstance(s[key], str) and s[key], key


def test_bench_deadline_cpu(tmp_path):
    res = _run(tmp_path)
    _check_common(res)
    if (data_dir() / DEFAULT_MODEL).is_file():
        assert res["model"] and "dsp" in res["stage_ms"]
        for stage in ("dsp", "decode"):
            assert _positive(res["stage_ms"][stage]["p50"]), stage
    else:
        assert res["model"] is None and "dsp" not in res["stage_ms"]


def test_bench_deadline_cpu_without_model(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUTRACK_DATA", str(tmp_path / "no-data"))
    res = _run(tmp_path)
    _check_common(res)
    assert res["model"] is None and "dsp" not in res["stage_ms"]
    assert any("no network" in n for n in res["notes"])
    # The floor: RAW in, RGB8 out and read back (the tensor pass), the tensor written; no
    # network reads it back.
    assert res["floor_bytes"] == 96 * 64 * (2 + 3 + 3) + 3 * 4 * 352 * 352


def test_bench_deadline_bad_model(tmp_path, capsys):
    out = tmp_path / "d.json"
    rc = _bench().main(
        ["--backend", "cpu", "--model", str(tmp_path / "x.onnx"), "--json", str(out)]
    )
    assert rc == 1
    assert "no such file" in capsys.readouterr().err
    assert "error" in json.loads(out.read_text())["summary"]


@pytest.mark.parametrize("with_model", [True, False])
def test_bench_deadline_graph_engine_on_emu(tmp_path, monkeypatch, with_model):
    """The GPU code path (graphs per ring slot, two frames in flight, upload/download and
    events through the backend, the graph-vs-plain check) run synchronously on emu."""
    from gputrack.device import probe
    from gputrack.dsp.detector import bundled_model

    if not probe("emu").available:
        pytest.skip("emu backend unavailable")
    out = tmp_path / "graph.json"
    model = ["--model", str(bundled_model())] if with_model else []
    argv = ["--backend", "emu", "--engine", "graph", "--size", "96x64", "--frames", "2"]
    if not with_model:
        monkeypatch.setenv("GPUTRACK_DATA", str(tmp_path / "no-data"))  # the stand-in
    assert _bench().main([*argv, *model, "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["engine"] == "graph" and res["in_flight"] == 2
    assert res["graph"] == "one CUDA graph per frame"
    assert _positive(res["d2d_gbs"]) and _positive(res["h2d_gbs"])
    stages = {"upload", "isp", "frame (one graph)", "track (host)"}
    if with_model:
        stages |= {"dsp", "decode", "download"}
        assert res["graph_vs_plain"].startswith("same"), res["graph_vs_plain"]
    else:
        assert res["graph_vs_plain"] == "no network"
    assert stages <= set(res["stage_ms"]), res["stage_ms"].keys()
    for mode in ("paced", "free"):
        assert len(res[mode]["latency_ms"]) == 2


def test_graph_engine_needs_a_kernel_backend(tmp_path, capsys):
    rc = _bench().main(["--backend", "cpu", "--engine", "graph", "--json", str(tmp_path / "g")])
    # two arguments that do not go together: a usage error (2), as the README's table says
    assert rc == 2 and "--engine graph needs a backend that runs kernels" in capsys.readouterr().err


class _InstantEngine:
    """An engine whose frames take no time: what the loop's own clocks then say."""

    depth = 1

    def launch(self, i: int) -> np.ndarray:
        return np.zeros((0, 6), np.float32)

    def finish(self, token: np.ndarray) -> np.ndarray:
        return token


class _Ring:
    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize("paced", [True, False])
def test_frame_loop_wall_time_holds_every_frame(paced):
    """frames/s = frames / wall time, the wall time spanning every frame's latency: the
    free-running loop had started its clock 2 ms in the future (the paced loop's first
    arrival), so a short fast run came out at a negative or inflated frame rate."""
    r = _bench().frame_loop(_InstantEngine(), _Ring(), 2, 60.0, paced, None)
    assert r["wall_s"] > 0 and r["fps"] == pytest.approx(2 / r["wall_s"])
    if paced:  # frame 1 arrives one period after frame 0
        assert r["wall_s"] >= 1 / 60.0
    else:  # one frame in flight: the latencies are disjoint stretches of the loop
        assert r["wall_s"] >= sum(r["latency_ms"]) / 1e3


def _result(isp_ms: float, net_ms: float, opencv_ms: float) -> dict:
    """What run() hands report(), with the figures that matter here."""
    lat = {"latency_ms": [2.0, 2.5], "fps": 900.0, "misses": 0, "frames": 2}
    isp_net = isp_ms + net_ms
    return {
        "size": [3840, 2160], "gpu": {"name": "H200", "memory_gb": 139.8}, "backend": "cuda",
        "deadline_ms": 1e3 / 60, "cpu": "Xeon (16 CPUs)", "fps": 60.0, "frames": 2,
        "model": "FastestDet.onnx", "graph": "one CUDA graph per frame", "in_flight": 2,
        "notes": [], "stage_ms": {"isp": {"p50": isp_ms, "p99": isp_ms},
                                  "dsp": {"p50": net_ms, "p99": net_ms}},
        "paced": lat, "free": lat, "d2d_gbs": 4100.0, "h2d_gbs": 50.0,
        "floor_bytes": 45.6e6, "floor_ms": 45.6e6 / 4100e9 * 1e3, "isp_net_ms": isp_net,
        "floor_what": "RAW in, RGB8 out, tensor out + in, weights, head",
        "x_floor": isp_net / (45.6e6 / 4100e9 * 1e3), "x_imx500": isp_net / 3.1,
        "x_opencv": isp_ms / opencv_ms, "opencv_isp_ms": {"p50": opencv_ms, "p99": opencv_ms},
        "opencv_threads": 16, "torch": {"skipped": "test"}, "engine": "graph",
    }  # fmt: skip


def test_report_names_host_clocks_for_the_host_engine_on_cuda(capsys):
    """`--engine host --backend cuda` times its stages with host clocks: the table must not
    call them CUDA events (only the graph engine's stage pass uses events)."""
    res = _result(0.069, 0.503, 177.0)
    _bench().report(res)
    assert "CUDA events" in capsys.readouterr().out
    res["engine"] = "host"
    _bench().report(res)
    stages = capsys.readouterr().out.split("clock\n", 1)[1].split("end-to-end")[0]
    assert "isp" in stages and "CUDA events" not in stages


def test_host_engine_waits_for_each_stage_on_an_asynchronous_backend(monkeypatch):
    """On cuda a launch returns at once: the host engine's per-stage host clock measured the
    launches alone unless it waits for the device after each stage."""
    from gputrack.device import get_backend

    bench = _bench()
    be = get_backend("cpu")
    calls = []
    ring = bench.Ring(be, 32, 32, 1, 60.0, bench.IspParams())
    engine = bench.HostEngine(be, bench.Chain(be, None, 32, 32), ring)
    monkeypatch.setattr(be, "synchronize", lambda stream=None: calls.append(stream))
    engine.launch(0)
    assert len(calls) >= 2  # after the upload and after the ISP
    assert all(len(v) == 1 for k, v in engine.stage_ms.items() if k in ("upload", "isp"))


def _leading_number(text: str) -> float:
    return float(text.split("x")[0])


def test_report_ratios_readable_at_gpu_speed(capsys):
    """On an H200 the ISP took 0.069 ms against OpenCV's 177 ms: the ratio (0.00039) must not
    print as 0.000x, nor the IMX500 one at a few microseconds as 0.00x."""
    s = _bench().report(_result(0.069, 0.503, 177.0))
    assert _leading_number(s["ISP vs OpenCV CPU"]) == pytest.approx(0.069 / 177.0, rel=0.01)
    assert "2565x faster" in s["ISP vs OpenCV CPU"]
    assert _leading_number(s["ISP+network vs IMX500 3.1 ms"]) == pytest.approx(0.572 / 3.1,
                                                                             rel=0.01)
    s = _bench().report(_result(0.004, 0.0, 177.0))  # the ISP alone, no network
    assert _leading_number(s["ISP+network vs IMX500 3.1 ms"]) == pytest.approx(0.004 / 3.1,
                                                                             rel=0.01)
    # the CPU case reads as before: the NumPy ISP slower than OpenCV
    s = _bench().report(_result(639.0, 4.6, 153.0))
    assert _leading_number(s["ISP vs OpenCV CPU"]) == pytest.approx(639 / 153, rel=0.01)
    assert "faster" not in s["ISP vs OpenCV CPU"]


def test_json_is_strict_json(tmp_path):
    """NaN or infinity (e.g. PyTorch's relative error on a broken head) is written as null,
    not as the NaN that strict JSON readers refuse."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} in the JSON")

    out = tmp_path / "r.json"
    _bench().write_json(str(out), {"torch": {"rel_err": float("nan")},
                                   "ms": [1.0, float("inf")], "x": np.float64("nan")})  # fmt: skip
    got = json.loads(out.read_text(), parse_constant=refuse)
    assert got == {"torch": {"rel_err": None}, "ms": [1.0, None], "x": None}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q"]))


def test_sigterm_part_way_writes_what_was_measured(tmp_path, monkeypatch):
    """gpu_check.sh ends a step over its time limit with SIGTERM (`timeout`): the JSON then
    holds what was measured so far, and says it stopped, instead of nothing."""
    import os
    import signal

    bench = _bench()
    real = bench.frame_loop

    calls = []

    def loop_then_term(*args, **kwargs):  # SIGTERM during the second loop (free-running)
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "frame_loop", loop_then_term)
    out = tmp_path / "deadline.json"
    rc = bench.main(["--backend", "cpu", "--size", "96x64", "--frames", "3", "--json", str(out)])
    res = json.loads(out.read_text())
    assert rc == 143 and "SIGTERM" in res["summary"]["error"]
    assert res["backend"] == "cpu" and res["paced"]["frames"] == 3 and "free" not in res
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is undone
