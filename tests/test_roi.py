"""`gputrack run --roi X,Y,W,H`: the IMX500's region-of-interest mode. The sensor reads out a
window; the ISP, the network and the image outputs see it alone, and every box comes back in
the whole sensor's pixels."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gputrack.cli import main
from gputrack.device import get_backend
from gputrack.dsp.decode import DetectParams
from gputrack.dsp.detector import Detector, bundled_model
from gputrack.errors import GputrackError
from gputrack.isp import IspParams
from gputrack.pipeline import Pipeline
from gputrack.sensor.model import SensorModel, SensorParams
from gputrack.sensor.roi import Roi
from gputrack.sensor.sources import open_source
from gputrack.track import Tracker


def test_a_window_is_even_and_inside(rng):
    assert Roi.parse("10,20,64,48") == Roi(10, 20, 64, 48)
    for text, needle in (("1,2,64,48", "even"), ("0,0,2,48", "sides of 4"),
                         ("0,0,64", "four whole numbers"), ("a,b,c,d", "four whole")):  # fmt: skip
        with pytest.raises(GputrackError, match=needle):
            Roi.parse(text)
    with pytest.raises(GputrackError, match="reaches past"):
        Roi(100, 0, 64, 48).check_inside(160, 48, "video")
    Roi(96, 0, 64, 48).check_inside(160, 48, "video")  # exactly to the edge is inside


def test_ground_truth_as_the_window_sees_it():
    roi = Roi(100, 50, 200, 100)
    truth = np.array([
        [120, 60, 140, 90, 1, 0, 1.0],   # inside: unchanged
        [80, 60, 120, 90, 2, 1, 0.8],    # half inside: clipped, visibility halved
        [10, 10, 50, 40, 3, 2, 1.0],     # outside: dropped
    ], np.float32)  # fmt: skip
    seen = roi.truth(truth)
    assert seen[:, 4].tolist() == [1, 2]
    np.testing.assert_allclose(seen[0], truth[0])
    np.testing.assert_allclose(seen[1, :4], [100, 60, 120, 90])
    assert seen[1, 6] == pytest.approx(0.4)


def test_detections_through_a_window_are_the_cropped_frames_shifted(tmp_path):
    """A RAW frame read through a window and the same window saved as a frame of its own go
    through the same ISP and network: the same boxes, shifted by the window's corner."""
    be = get_backend("cpu")
    scene = None
    with open_source("synthetic:768x448,seed=7,objects=12") as src:
        for _ in range(3):
            scene = next(src).image
    params = IspParams()
    mosaic = SensorModel(SensorParams(isp=params, noise=False), be).render(scene).data
    roi = Roi(192, 96, 384, 224)  # the bundled model's input size: no resampling blur
    np.save(tmp_path / "whole.npy", mosaic)
    np.save(tmp_path / "window.npy", roi.crop(mosaic).copy())

    def detections(spec: str, window: Roi | None) -> np.ndarray:
        det = Detector(bundled_model(), be, DetectParams(score=0.3, max_det=50))
        pipe = Pipeline(be, det, Tracker(fps=30), isp_params=params, roi=window)
        with open_source(spec, black_level=params.black) as src:
            result = pipe.process(next(src))
        assert result.size == (roi.w, roi.h)
        return result.detections

    through_window = detections(str(tmp_path / "whole.npy"), roi)
    alone = detections(str(tmp_path / "window.npy"), None)
    assert len(alone) >= 2, "the window holds objects the model finds"
    np.testing.assert_allclose(through_window, roi.to_sensor(alone), atol=1e-3)
    inside = ((through_window[:, 0] >= roi.x - 1) & (through_window[:, 2] <= roi.x + roi.w + 1)
              & (through_window[:, 1] >= roi.y - 1)
              & (through_window[:, 3] <= roi.y + roi.h + 1))  # fmt: skip
    assert inside.all()


def _run(capsys, *argv: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    rc = main(["run", *argv, "--json", "--no-ui", "--backend", "cpu"])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if out.strip() else {}), err


def test_run_with_a_window(tmp_path, capsys):
    log, image = tmp_path / "t.jsonl", tmp_path / "last.png"
    rc, s, _ = _run(capsys, "synthetic:320x240", "--frames", "20", "--detector", "truth",
                    "--roi", "80,60,160,120", "--log", str(log), "--image", str(image))  # fmt: skip
    assert rc == 0 and s["roi"] == [80, 60, 160, 120]
    assert cv2.imread(str(image)).shape == (120, 160, 3)  # the window's picture
    boxes = [t["bbox"] for line in log.read_text().splitlines()
             for t in json.loads(line)["tracks"]]  # fmt: skip
    assert boxes, "objects cross the window"
    # in the sensor's pixels: within the window (a lost track's prediction may drift out)
    xs = [b[0] + b[2] / 2 for b in boxes]
    assert min(xs) >= 40 and max(xs) <= 280 and np.mean([80 <= x <= 240 for x in xs]) > 0.9
    assert s["mota"] is not None and s["mota"] > 0.5  # scored on what the window sees


@pytest.mark.parametrize(("argv", "needle"), [
    (["--roi", "81,60,160,120"], "even"),
    (["--roi", "200,60,160,120"], "reaches past"),
    (["--roi", "0,0,160,120", "--lens-shading", "0.2,0"], "--lens-shading"),
])  # fmt: skip
def test_a_wrong_window_is_a_usage_error(capsys, argv, needle):
    rc, _, err = _run(capsys, "synthetic:320x240", "--frames", "2", "--detector", "truth", *argv)
    assert rc == 2 and needle in err and "Traceback" not in err, err


def test_a_video_too_narrow_for_the_mjpg_writer_is_refused_before_any_work(tmp_path, capsys):
    """OpenCV's MJPG writer corrupts its heap on frames under 8 pixels wide (4x4, 6x8, 6x40
    ... : measured with OpenCV 5.0) and the process aborted, every output lost; the smallest
    window is 4x4. Refused before any work, an earlier log kept; .mp4 writes it."""
    log = tmp_path / "t.jsonl"
    log.write_text("earlier\n")
    base = ["run", "synthetic:64x48", "--frames", "2", "--backend", "cpu", "--no-ui",
            "--detector", "truth", "--roi", "8,8,6,8", "--log", str(log)]  # fmt: skip
    for name in ("x.avi", "x.mkv"):
        capsys.readouterr()
        assert main([*base, "--video", str(tmp_path / name)]) == 2
        assert "too narrow for OpenCV's MJPG writer" in capsys.readouterr().err
    assert log.read_text() == "earlier\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "t.jsonl"]  # fmt: skip
    assert main([*base, "--video", str(tmp_path / "x.mp4")]) == 0
    cap = cv2.VideoCapture(str(tmp_path / "x.mp4"))
    assert cap.read()[0] and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 6
