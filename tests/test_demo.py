"""`gputrack demo`: the whole chain that exists, on a tiny synthetic world."""

from __future__ import annotations

import json

import cv2
import pytest

from gputrack.cli import main
from gputrack.device import probe


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_demo_runs_the_chain_and_writes_a_complete_log(backend, tmp_path, capsys):
    if not probe(backend).available:
        pytest.skip(f"{backend} unavailable: {probe(backend).reason}")
    log, image = tmp_path / "t.jsonl", tmp_path / "last.png"
    frames = 20 if backend == "cpu" else 4  # emu runs the real kernels on the CPU: keep it small
    rc = main(
        [
            "demo",
            "--frames",
            str(frames),
            "--size",
            "192x128",
            "--backend",
            backend,
            "--log",
            str(log),
            "--image",
            str(image),
            "--json",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == backend and summary["frames"] == frames
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(frames))
    assert set(lines[-1]["latency_ms"]) == {"isp", "dsp", "track", "total"}
    assert any(x["tracks"] for x in lines), "the tracker confirmed something"
    for entry in lines[-1]["tracks"]:
        assert set(entry) == {"id", "bbox", "score", "class", "state"} and len(entry["bbox"]) == 4
    assert not (tmp_path / "t.jsonl.part").exists()
    img = cv2.imread(str(image))
    assert img.shape == (128, 192, 3) and img.std() > 5, "a real picture, not a flat fill"
    if backend == "cpu":
        assert summary["mota"] > 0.5


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--size", "191x128"], "--size 191x128"),
        (["--size", "big"], "--size big"),
        (["--frames", "0"], "--frames 0"),
        (["--log", "/nonexistent/dir/x.jsonl"], "does not exist"),
    ],
)
def test_demo_bad_arguments_are_one_line(args, needle, capsys, tmp_path):
    rc = main(["demo", "--backend", "cpu", "--image", str(tmp_path / "i.png"), *args])
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
