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


def _model(path, nodes, inputs, outputs, inits=()):
    from onnx import helper, save

    graph = helper.make_graph(nodes, path.stem, inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save(model, str(path))
    return str(path)


def test_a_model_that_is_not_a_one_input_detector_is_one_line(tmp_path, capsys):
    from onnx import TensorProto, helper, numpy_helper

    def tensor(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    def conv(name, channels, stride, hw):  # a 1x1 convolution: 3 -> channels, strided
        w = numpy_helper.from_array(np.full((channels, 3, 1, 1), 0.1, np.float32), "w")
        node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[stride, stride])
        out = [1, channels, -(-hw[0] // stride), -(-hw[1] // stride)]
        return _model(tmp_path / f"{name}.onnx", [node], [tensor("x", [1, 3, *hw])],
                      [tensor("y", out)], [w])

    cases = {
        _model(tmp_path / "empty.onnx", [], [], []): "has 0 (none)",
        _model(tmp_path / "two.onnx", [helper.make_node("Add", ["a", "b"], ["y"])],
               [tensor("a", [1, 3, 8, 8]), tensor("b", [1, 3, 8, 8])],
               [tensor("y", [1, 3, 8, 8])]): "one input (the image) is needed, this one has 2",
        _model(tmp_path / "dyn.onnx", [helper.make_node("Relu", ["x"], ["y"])],
               [tensor("x", ["batch", 3, 64, 64])], [tensor("y", ["batch", 3, 64, 64])]):
            "shapes must be static, got (batch, 3, 64, 64)",
        conv("per_pixel", 6, 1, (32, 32)): "grid of cells of 4 or more pixels",
        conv("uneven", 6, 3, (64, 64)): "its grid is 22x22",
        conv("big_grid", 6, 4, (160, 160)): "at most 1024 cells; 40x40 has 1600",
        conv("few_channels", 5, 16, (64, 64)): "1 x (5 + classes) x H x W; it is 1 x 5 x 4 x 4",
    }
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.full((48, 64, 3), 90, np.uint8))
    for model, needle in cases.items():
        assert main(["detect", str(img), "--backend", "cpu", "--model", model]) == 1, model
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and needle in err, (model, err)
    assert main(["detect", str(img), "--backend", "cpu", "--max-det", "1025"]) == 2
    assert "--max-det: '1025' is not a whole number from 1 to 1024" in capsys.readouterr().err
