"""The bundled detector (gputrack/models/synthetic_det.onnx): it ships, gputrack's importer
takes it, our kernels on emu agree with onnxruntime, and it finds the synthetic world's
objects in worlds it was not trained on. No torch here (CI has none)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gputrack.device import get_backend, probe
from gputrack.dsp.decode import DetectParams
from gputrack.dsp.detector import Detector, bundled_model, model_classes
from gputrack.dsp.runner import Network
from gputrack.models import SYNTHETIC_DET, SYNTHETIC_DET_INFO
from gputrack.models.evaluate import evaluate, held_out_frames, isp_frame, match
from gputrack.sensor.synthetic import ALL_CLASSES, SyntheticWorld

PARAMS = DetectParams(score=0.55, iou=0.65, max_det=50)


def test_bundled_model_ships_with_its_description():
    assert bundled_model() == SYNTHETIC_DET and SYNTHETIC_DET.stat().st_size < 2_000_000
    info = json.loads(SYNTHETIC_DET_INFO.read_text())
    assert info["classes"] == list(ALL_CLASSES) == model_classes(SYNTHETIC_DET)
    net = Network(SYNTHETIC_DET, get_backend("cpu"))
    assert net.input_shape == (1, 3, info["input"]["height"], info["input"]["width"])
    assert info["held_out"]["recall"] >= 0.8 and info["held_out"]["precision"] >= 0.8


def test_match_counts_faint_objects_as_neither():
    truth = np.array([[0, 0, 10, 10, 1, 0, 1.0], [20, 20, 30, 30, 2, 1, 0.2]], np.float32)
    dets = np.array([[0, 0, 10, 9, 0.9, 0], [20, 20, 30, 30, 0.8, 1], [50, 50, 60, 60, 0.7, 2],
                     [0, 0, 10, 10, 0.6, 0]], np.float32)  # fmt: skip
    assert match(dets, truth) == (1, 2, 1)  # the duplicate and the empty box are false


def test_held_out_worlds_recall_and_precision():
    """Worlds 0-9 (never trained on; seed 0 is `gputrack run`'s), 3 frames each, at 640x360,
    960x540 and 640x480, with gputrack's detector on `cpu` (onnxruntime + our decode)."""
    det = Detector(SYNTHETIC_DET, get_backend("cpu"), PARAMS)
    frames = held_out_frames(range(10), per_seed=3, sizes=((640, 360), (960, 540), (640, 480)))
    s = evaluate(det, frames)
    assert s.gt > 150
    # measured: recall 0.994 (166 of 167), precision 0.938 (11 false positives)
    assert s.recall >= 0.95, s.as_dict()
    assert s.precision >= 0.88, s.as_dict()


def test_emu_kernels_match_onnxruntime_on_a_held_out_frame():
    if not probe("emu").available:
        pytest.skip(f"emu unavailable: {probe('emu').reason}")
    world = SyntheticWorld(960, 540, 30.0, seed=3)
    rgb8 = isp_frame(world, 120, noise_seed=3)
    cpu = Detector(SYNTHETIC_DET, get_backend("cpu"), PARAMS)
    emu = Detector(SYNTHETIC_DET, get_backend("emu"), PARAMS)
    x = cpu.tensor(rgb8)
    ref = cpu.network.run(x)["head"]
    out = emu.network.run(x)["head"]
    assert out.shape == ref.shape == (1, 8, 14, 24)
    assert np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()  # measured 9e-7
    a, b = cpu(rgb8), emu(rgb8)
    assert len(a) == len(b) >= 3
    np.testing.assert_array_equal(a[:, 5], b[:, 5])
    np.testing.assert_allclose(a[:, :5], b[:, :5], atol=0.05)


def test_detect_names_the_bundled_models_classes(tmp_path, capsys):
    """`gputrack detect --model` names classes from the JSON beside the model, as `run` does
    (it printed COCO's names, a ball as 'car', for any model)."""
    import cv2

    from gputrack.cli import main

    world = SyntheticWorld(960, 540, 30.0, seed=3)
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), isp_frame(world, 120, noise_seed=3)[..., ::-1])
    argv = ["detect", str(image), "--model", str(SYNTHETIC_DET), "--backend", "cpu",
            "--score", "0.45", "--json"]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["detections"]
    assert len(rows) >= 3
    names = model_classes(SYNTHETIC_DET)
    assert all(r["class"] == names[r["class_id"]] for r in rows)
    gt = world.ground_truth(120)
    for r in rows:  # each named as the object it found: the best-overlapping truth's class
        x1, y1, x2, y2 = r["bbox"]
        iw = np.clip(np.minimum(gt[:, 2], x2) - np.maximum(gt[:, 0], x1), 0, None)
        ih = np.clip(np.minimum(gt[:, 3], y2) - np.maximum(gt[:, 1], y1), 0, None)
        union = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]) + (x2 - x1) * (y2 - y1)
        iou = iw * ih / (union - iw * ih)
        assert iou.max() > 0.5 and r["class"] == ALL_CLASSES[int(gt[iou.argmax(), 5])], r
