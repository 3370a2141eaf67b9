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
    assert rc == 1 and "--engine graph needs a backend that runs kernels" in capsys.readouterr().err


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q"]))
