"""`gputrack detect`: a vtest.avi frame gives people; --json, --out; one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
    # a folder where a file belongs is named as one (it said "no such file")
    assert main(["detect", str(tmp_path), "--backend", "cpu", "--model", str(img)]) == 1
    assert "a folder, not an image or a video" in capsys.readouterr().err
    assert main(["detect", str(img), "--backend", "cpu", "--model", str(tmp_path)]) == 1
    assert "a folder, not an ONNX file" in capsys.readouterr().err


def test_detect_knows_a_video_by_its_content(tmp_path, capfd, monkeypatch):
    """An MPEG-1 .mpg is no extension detect lists: its first frame is read all the same;
    a file that is neither image nor video is one line, without FFmpeg's own log."""
    monkeypatch.delenv("OPENCV_FFMPEG_LOGLEVEL", raising=False)
    video = tmp_path / "clip.mpg"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mpg1"), 25, (96, 64))
    if not writer.isOpened():
        pytest.skip("this OpenCV writes no MPEG-1")
    for i in range(3):
        writer.write(np.full((64, 96, 3), 60 + 40 * i, np.uint8))
    writer.release()
    assert main(["detect", str(video), "--backend", "cpu", "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["frame"] == [96, 64]
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    # A fresh process: FFmpeg reads its log level once, and the writer above loaded it here.
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    argv = [sys.executable, "-m", "gputrack", "detect", str(text), "--backend", "cpu"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    err = done.stderr.strip()
    assert done.returncode == 1 and "neither an image nor a video" in err
    assert err.count("\n") == 0, err


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
               [tensor("x", [1, 3, "height", 64])], [tensor("y", [1, 3, "height", 64])]):
            "shapes must be static, got (1, 3, height, 64)",
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


def _poisoned_model(path):
    """A 32x32 -> 1x7x4x4 two-conv "detector" whose head is non-finite where the image says:
    x1 = 1e30 * rgb (1x1, stride 8); obj = 0.9 + 1e30 * g' (inf where g = 1), box x term
    = inf * r' (NaN where r = 0, +inf elsewhere: tanh = 1, a finite box), class 0.8 / 0.2."""
    from onnx import TensorProto, helper, numpy_helper

    w1 = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1) * np.float32(1e30)
    w2 = np.zeros((7, 3, 1, 1), np.float32)
    w2[0, 1] = 1e30
    w2[1, 0] = np.inf
    b2 = np.array([0.9, 0, 0, 0, 0, 0.8, 0.2], np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (w2, "w2"), (b2, "b2")]]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], strides=[8, 8]),
        helper.make_node("Conv", ["h", "w2", "b2"], ["y"]),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
          for n, s in [("x", [1, 3, 32, 32]), ("y", [1, 7, 4, 4])]]  # fmt: skip
    return _model(path, nodes, io[:1], io[1:], inits)


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} in the JSON output")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_detect_json_drops_non_finite_model_outputs(backend, tmp_path, capsys):
    """NaN box terms (finite score) and inf scores never reach the output: strict JSON."""
    model = _poisoned_model(tmp_path / "poisoned.onnx")
    img = np.zeros((32, 32, 3), np.uint8)  # BGR; cells sample pixels 0, 8 | 16, 24
    img[:, :, 2] = 255  # red everywhere: finite boxes...
    img[:16, 16:, 2] = 0  # ...but the top-right quadrant: NaN box terms
    img[16:, :16, 1] = 255  # bottom-left: green, an infinite objectness
    path = tmp_path / "quadrants.png"
    cv2.imwrite(str(path), img)
    args = ["detect", str(path), "--model", model, "--backend", backend, "--json"]
    assert main([*args, "--iou", "1", "--max-det", "16"]) == 0
    report = _strict_json(capsys.readouterr().out)
    dets = report["detections"]
    # only the top-left and bottom-right quadrants' cells, equal scores so in cell order; a
    # cell's box: cx = (gx + tanh(inf)) / 4, cy = gy / 4, w = h = sigmoid(0) = 0.5, clipped
    cells = [(gy, gx) for gy in range(4) for gx in range(4) if (gy < 2) == (gx < 2)]
    want = [[8 * gx, max(0, 8 * gy - 8), min(32, 8 * gx + 16), 8 * gy + 8] for gy, gx in cells]
    assert [d["bbox"] for d in dets] == want, dets
    assert all(d["score"] == round(0.9**0.6 * 0.8**0.4, 4) for d in dets), dets


def test_detect_refuses_to_print_a_non_finite_detection(tmp_path, capsys, monkeypatch):
    """Should a NaN get past the decoder, it is a one-line error, never NaN in the output."""
    from gputrack.dsp import detector

    row = np.array([[1, 2, np.nan, 4, 0.9, 0]], np.float32)
    monkeypatch.setattr(detector.Detector, "__call__", lambda self, rgb, *a, **k: row)
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.full((32, 32, 3), 90, np.uint8))
    model = _poisoned_model(tmp_path / "poisoned.onnx")
    for extra in (["--json"], []):
        assert main(["detect", str(img), "--backend", "cpu", "--model", model, *extra]) == 1
        out, err = capsys.readouterr()
        assert out == "" and "\n" not in err.strip(), err
        assert "poisoned.onnx" in err and "detection 0 has a non-finite value" in err, err


def test_a_named_batch_is_taken_as_1_and_said(tmp_path, capsys):
    """A model exported with a symbolic batch ('N') runs, and detect and run say so."""
    import onnx

    from gputrack.models import SYNTHETIC_DET
    from gputrack.sensor.synthetic import SyntheticWorld

    model = onnx.load(str(SYNTHETIC_DET))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    path = tmp_path / "batch_n.onnx"
    onnx.save(model, str(path))
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), SyntheticWorld(384, 216, seed=1).render(5)[..., ::-1])
    assert main(["detect", str(image), "--model", str(path), "--backend", "emu", "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any("batch 'N' taken as 1" in n for n in notes), notes
    assert main(["run", "synthetic:96x64", "--frames", "2", "--no-ui", "--backend", "cpu",
                 "--model", str(path), "--json"]) == 0  # fmt: skip
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any("batch 'N' taken as 1" in n for n in notes), notes
