"""`gputrack detect`: a vtest.avi frame gives people; --json, --out; one-line errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gputrack.cli import main
from tests.conftest import shared_data


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_detect_finds_people_in_vtest(backend, tmp_path, capsys, monkeypatch):
    video = shared_data("video/vtest.avi")
    model = shared_data("models/FastestDet.onnx")
    out = tmp_path / "annotated.png"
    rc = main(
        [
            "detect",
            str(video),
            "--model",
            str(model),
            "--backend",
            backend,
            "--json",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    classes = [d["class"] for d in report["detections"]]
    assert classes.count("person") >= 1, report
    assert len(classes) <= 10 and report["frame"] == [768, 576]
    assert all(d["score"] >= 0.55 for d in report["detections"])
    assert cv2.imread(str(out)).shape == (576, 768, 3)


def test_detect_text_output_and_thresholds(capsys):
    video = shared_data("video/vtest.avi")
    model = shared_data("models/FastestDet.onnx")
    assert (
        main(
            [
                "detect",
                str(video),
                "--model",
                str(model),
                "--backend",
                "cpu",
                "--score",
                "0.7",
                "--max-det",
                "2",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("person") for line in lines)


def test_detect_errors_are_one_line(tmp_path, capsys, monkeypatch):
    missing_model = str(tmp_path / "m.onnx")
    args = ["detect", str(tmp_path / "none.png"), "--backend", "cpu", "--model", missing_model]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "none.png" in err and "no such file" in err
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    assert main(["detect", str(img), "--backend", "cpu", "--model", missing_model]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "m.onnx" in err and "no such file" in err
    monkeypatch.setenv("GPUTRACK_DATA", str(tmp_path))
    assert main(["detect", str(img), "--backend", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no default model" in err and "--model" in err
    assert (
        main(["detect", str(tmp_path / "none.png"), "--backend", "cpu", "--model", str(img)]) == 1
    )
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "none.png" in err
    assert main(["detect", str(img), "--backend", "cpu", "--model", str(img)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a readable ONNX" in err
    assert main(["detect", str(img), "--backend", "cpu", "--iou", "2"]) == 2  # a bad argument
    assert "--iou" in capsys.readouterr().err
