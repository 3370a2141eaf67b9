"""`gputrack run` recording track logs headless: the outputs agree with each other, frame for
frame, also when the run is stopped (Ctrl-C, SIGTERM) in the middle of a frame."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from gputrack import pipeline
from gputrack.cli import main
from gputrack.outputs import sinks
from gputrack.sensor.sources import open_source

STOPS = [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")]


def _summary(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def _video_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _signal_on_call(monkeypatch, owner, name: str, call: int, signum: int) -> None:
    """`owner.name` sends this process `signum` on its `call`th call, then goes on: the
    signal lands in the middle of that frame's work, as a real Ctrl-C or `timeout` does."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)


@pytest.mark.parametrize("signum, code, by", STOPS)
def test_a_stop_while_a_frame_is_written_ends_every_output_on_one_frame(
    signum, code, by, tmp_path, capsys, monkeypatch
):
    # The video is written last of the outputs: a stop there used to leave the log and the
    # MOT result (and the summary) one frame ahead of the video.
    _signal_on_call(monkeypatch, sinks.RunOutputs, "_write_video", 4, signum)
    log, mot, video = tmp_path / "t.jsonl", tmp_path / "r.txt", tmp_path / "v.avi"
    argv = ["run", "synthetic:128x96", "--backend", "cpu", "--frames", "12", "--no-ui",
            "--json", "--detector", "truth", "--log", str(log), "--mot", str(mot),
            "--video", str(video)]  # fmt: skip
    assert main(argv) == code
    s = _summary(capsys)
    assert s["interrupted"] and s["stopped_by"] == by
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    mot_frames = {int(r.split(",")[0]) for r in mot.read_text().splitlines()}
    assert s["frames"] == len(lines) == _video_frames(video)
    assert [x["frame"] for x in lines] == list(range(s["frames"]))
    assert mot_frames and max(mot_frames) <= s["frames"]  # 1-based
    assert max(mot_frames) == max(x["frame"] for x in lines if any(
        t["state"] == "confirmed" for t in x["tracks"])) + 1


@pytest.mark.parametrize("signum, code, by", STOPS)
def test_the_last_image_of_a_stopped_run_is_the_picture_of_its_last_frame(
    signum, code, by, tmp_path, capsys, monkeypatch
):
    """A stop while the detector runs: the ISP has already made the next picture. The
    --image must still show the frame whose tracks it draws, the log's last line."""
    argv = ["run", "synthetic:160x96", "--backend", "cpu", "--no-ui", "--json"]
    full = tmp_path / "full.png"
    assert main([*argv, "--frames", "4", "--image", str(full)]) == 0
    capsys.readouterr()
    _signal_on_call(monkeypatch, pipeline.Pipeline, "_detect", 4, signum)
    stopped, log = tmp_path / "stopped.png", tmp_path / "t.jsonl"
    assert main([*argv, "--frames", "12", "--image", str(stopped), "--log", str(log)]) == code
    s = _summary(capsys)
    assert s["stopped_by"] == by and s["frames"] == 4
    assert len(log.read_text().splitlines()) == 4
    assert np.array_equal(cv2.imread(str(stopped)), cv2.imread(str(full)))


def test_an_exception_inside_a_frame_leaves_the_last_finished_picture(
    tmp_path, capsys, monkeypatch
):
    """KeyboardInterrupt raised straight out of the detector (no signal to hold): the frame
    is lost, and the --image is the previous frame's picture with its tracks."""
    argv = ["run", "synthetic:160x96", "--backend", "cpu", "--no-ui", "--json"]
    three = tmp_path / "three.png"
    assert main([*argv, "--frames", "3", "--image", str(three)]) == 0
    capsys.readouterr()
    real = pipeline.Pipeline._detect
    calls = {"n": 0}

    def stopped_on_the_fourth(self, *args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(pipeline.Pipeline, "_detect", stopped_on_the_fourth)
    stopped = tmp_path / "stopped.png"
    assert main([*argv, "--frames", "12", "--image", str(stopped)]) == 130
    assert _summary(capsys)["frames"] == 3
    assert np.array_equal(cv2.imread(str(stopped)), cv2.imread(str(three)))


def test_a_reused_isp_buffer_overwritten_by_an_unfinished_frame_is_no_last_image():
    """Kernel backends write every frame's picture into one buffer: once an unfinished frame
    has written there, the last finished frame's picture is gone, and none is better than the
    wrong one under the old tracks."""
    from gputrack.device import get_backend
    from gputrack.dsp.standin import NoisyTruthDetector
    from gputrack.isp.pipeline import IspOutputs
    from gputrack.track import Tracker

    class OneBuffer:  # an ISP that reuses its output buffer, as the kernel backends do
        def __init__(self) -> None:
            self.rgb8 = np.zeros((48, 64, 3), np.uint8)

        def process(self, raw, download=True, stream=None):
            self.rgb8[...] = np.random.default_rng().integers(0, 255, self.rgb8.shape)
            return IspOutputs(self.rgb8)

    class Failing(NoisyTruthDetector):
        fail = False

        def __call__(self, truth):
            if self.fail:
                raise KeyboardInterrupt
            return super().__call__(truth)

    detector = Failing()
    pipe = pipeline.Pipeline(get_backend("cpu"), detector, Tracker(fps=30))
    pipe.isp = OneBuffer()
    with open_source("synthetic:64x48", frames=2) as src:
        first, second = list(src)
    pipe.process(first)
    kept = pipe.last_image()
    assert kept is not None and np.array_equal(kept, pipe.isp.rgb8)
    detector.fail = True
    with pytest.raises(KeyboardInterrupt):
        pipe.process(second)
    assert pipe.last_image() is None


def _folder(tmp_path: Path, w: int, h: int, n: int) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    with open_source(f"synthetic:{w + w % 2}x{h + h % 2}", frames=n) as src:
        for f in src:
            assert f.image is not None
            cv2.imwrite(str(folder / f"f{f.index:03d}.png"),
                        cv2.cvtColor(f.image[:h, :w], cv2.COLOR_RGB2BGR))  # fmt: skip
    return folder


def test_fps_sets_the_rate_of_an_image_folder_in_every_output(tmp_path, capsys):
    """An image folder states no frame rate: --fps gives it to the timestamps, the tracker,
    the deadline and the video (30 fps was assumed, with no way to say otherwise)."""
    folder = _folder(tmp_path, 96, 64, 6)
    log, video = tmp_path / "t.jsonl", tmp_path / "v.avi"
    model = str(Path(pipeline.__file__).parent / "models" / "synthetic_det.onnx")
    rc = main(["run", str(folder), "--fps", "12.5", "--model", model, "--backend", "cpu",
               "--no-ui", "--json", "--log", str(log), "--video", str(video)])  # fmt: skip
    assert rc == 0
    s = _summary(capsys)
    assert s["fps"] == 12.5 and s["deadline_ms"] == 80.0
    assert [json.loads(x)["t"] for x in log.read_text().splitlines()] == [
        round(k / 12.5, 6) for k in range(6)]  # fmt: skip
    cap = cv2.VideoCapture(str(video))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.5)
    cap.release()


@pytest.mark.parametrize("value", ["0", "-3", "nan", "2000", "fast"])
def test_a_bad_fps_is_one_usage_line(value, capsys):
    assert main(["run", "synthetic:64x48", "--fps", value, "--backend", "cpu", "--no-ui"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fps" in err[0] and value in err[0]


def test_fps_a_video_states_itself_is_kept_and_the_summary_says_so(tmp_path, capsys):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 24, (64, 48))
    for k in range(3):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    model = str(Path(pipeline.__file__).parent / "models" / "synthetic_det.onnx")
    assert main(["run", str(clip), "--fps", "10", "--model", model, "--backend", "cpu",
                 "--no-ui", "--json"]) == 0  # fmt: skip
    s = _summary(capsys)
    assert s["fps"] == 24.0
    assert any("--fps 10" in n and "24 fps" in n for n in s["source_notes"]), s["source_notes"]


def test_an_odd_sized_source_is_cropped_to_even_and_the_summary_says_so(tmp_path, capsys):
    """The sensor's Bayer mosaic has even sides: a 97x65 folder loses its last column and row.
    Boxes stay in the source's pixels (the crop is at the far edges); the picture outputs are
    96x64, and the summary says so rather than leaving the user to find out."""
    folder = _folder(tmp_path, 97, 65, 4)
    log, image = tmp_path / "t.jsonl", tmp_path / "last.png"
    model = str(Path(pipeline.__file__).parent / "models" / "synthetic_det.onnx")
    rc = main(["run", str(folder), "--model", model, "--backend", "cpu", "--no-ui", "--json",
               "--log", str(log), "--image", str(image)])  # fmt: skip
    assert rc == 0
    s = _summary(capsys)
    assert any("97x65" in n and "96x64" in n for n in s["source_notes"]), s["source_notes"]
    assert cv2.imread(str(image)).shape == (64, 96, 3)
    boxes = [t["bbox"] for x in log.read_text().splitlines() for t in json.loads(x)["tracks"]]
    assert boxes, "the bundled model finds the synthetic world's objects"


def test_no_last_image_rather_than_a_later_picture_under_earlier_tracks(
    tmp_path, capsys, monkeypatch
):
    """On a kernel backend (one ISP buffer for every frame) a frame stopped at once after its
    ISP leaves no picture of the last finished frame: --image is not written (an earlier file
    stays), and the run says so in one line; the other outputs are complete."""
    from gputrack.device import probe

    if not probe("emu").available:
        pytest.skip(f"emu unavailable: {probe('emu').reason}")
    real = pipeline.Pipeline._detect
    calls = {"n": 0}

    def stopped_on_the_third(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(pipeline.Pipeline, "_detect", stopped_on_the_third)
    image, log = tmp_path / "last.png", tmp_path / "t.jsonl"
    image.write_bytes(b"an earlier run's")
    rc = main(["run", "synthetic:64x48", "--backend", "emu", "--frames", "6", "--no-ui",
               "--json", "--image", str(image), "--log", str(log)])  # fmt: skip
    assert rc == 130
    captured = capsys.readouterr()
    s = json.loads(captured.out)
    assert s["frames"] == 2 and s["image"] is None and len(log.read_text().splitlines()) == 2
    assert image.read_bytes() == b"an earlier run's"
    assert f"--image {image}: not written" in captured.err and "Traceback" not in captured.err


def test_class_numbers_mean_the_same_with_either_detector(tmp_path, capsys):
    """The log's "class" is a number: on the synthetic world it must name the same class for
    the ground-truth stand-in as for the bundled network (person, car, ball), also in a world
    of some classes only, whose own list starts elsewhere (classes=car+ball: car first)."""
    from gputrack.dsp.detector import bundled_model, model_classes

    log = tmp_path / "t.jsonl"
    rc = main(["run", "synthetic:128x96,classes=car+ball,seed=2", "--detector", "truth",
               "--frames", "6", "--backend", "cpu", "--no-ui", "--json", "--log", str(log)])
    assert rc == 0
    capsys.readouterr()
    names = model_classes(bundled_model())
    seen = {t["class"] for x in log.read_text().splitlines() for t in json.loads(x)["tracks"]}
    assert seen and {names[c] for c in seen} <= {"car", "ball"}, seen


def _log(path: Path) -> list[tuple[int, float]]:
    return [(x["frame"], x["t"]) for x in map(json.loads, path.read_text().splitlines())]


def test_a_recording_plays_back_with_its_frame_numbers_and_rate(tmp_path, capsys, rng):
    """A `--raw` recording with a gap (frames 1, 2 and 4: the run's source skipped 3) stating
    25 fps: the playback's log numbers and times its frames as the recording's names and rate
    say; --fps does not override a stated rate (as for a video: the summary says so); a
    recording stating none plays at 30 fps, and says so."""
    pytest.importorskip("rawpy")
    pytest.importorskip("pidng")
    pytest.importorskip("tifffile")
    from gputrack.outputs.dng import RawRecorder
    from gputrack.sensor.frame import RawFrame

    model = str(Path(pipeline.__file__).parent / "models" / "synthetic_det.onnx")
    ccm = np.eye(3)
    for fps, folder in ((25, tmp_path / "rec"), (None, tmp_path / "plain")):
        rec = RawRecorder(folder, fps=fps)
        for i in (1, 2, 4):
            data = rng.integers(256, 4096, (48, 64), dtype=np.uint16)
            rec.write(RawFrame(data, bit_depth=12, black_level=256), (2.0, 1.0, 1.5), ccm, i)

    def play(folder: Path, *argv: str) -> tuple[dict, list[tuple[int, float]]]:
        log = tmp_path / "back.jsonl"
        capsys.readouterr()  # what came before (the rng fixture prints its seed)
        assert main(["run", str(folder), "--model", model, "--backend", "cpu", "--no-ui",
                     "--json", "--log", str(log), *argv]) == 0  # fmt: skip
        return _summary(capsys), _log(log)

    s, log = play(tmp_path / "rec")
    assert s["fps"] == 25.0 and s["source_notes"] == []
    assert log == [(1, 0.04), (2, 0.08), (4, 0.16)]
    s, log = play(tmp_path / "rec", "--fps", "10")
    assert s["fps"] == 25.0 and log == [(1, 0.04), (2, 0.08), (4, 0.16)]
    assert any("--fps 10 not used" in n and "25 fps" in n for n in s["source_notes"]), s
    s, log = play(tmp_path / "plain")
    assert s["fps"] == 30.0 and log == [(1, round(1 / 30, 6)), (2, round(2 / 30, 6)),
                                        (4, round(4 / 30, 6))]  # fmt: skip
    (note,) = s["source_notes"]
    assert "states no frame rate; 30 fps assumed" in note, note


def test_a_playback_log_lines_up_with_the_recording_runs(tmp_path, capsys):
    """Frame numbers and times of the playback's log are the recording run's, also where the
    recording lacks a frame."""
    pytest.importorskip("rawpy")
    pytest.importorskip("pidng")
    rec, first, again = tmp_path / "rec", tmp_path / "first.jsonl", tmp_path / "again.jsonl"
    assert main(["run", "synthetic:64x48@25", "--detector", "truth", "--frames", "4",
                 "--backend", "cpu", "--no-ui", "--json", "--raw", str(rec),
                 "--log", str(first)]) == 0  # fmt: skip
    capsys.readouterr()
    (rec / "frame_000002.dng").unlink()  # as if the source had skipped it
    model = str(Path(pipeline.__file__).parent / "models" / "synthetic_det.onnx")
    assert main(["run", str(rec), "--model", model, "--backend", "cpu",
                 "--no-ui", "--json", "--log", str(again)]) == 0  # fmt: skip
    capsys.readouterr()
    assert _log(again) == [row for row in _log(first) if row[0] != 2]
    assert [row[0] for row in _log(again)] == [0, 1, 3]


def test_a_recording_states_the_runs_frame_rate(tmp_path, capsys):
    pytest.importorskip("rawpy")
    pytest.importorskip("pidng")
    pytest.importorskip("tifffile")
    rec = tmp_path / "rec"
    assert main(["run", "synthetic:64x48@25", "--detector", "truth", "--frames", "2",
                 "--backend", "cpu", "--no-ui", "--json", "--raw", str(rec)]) == 0  # fmt: skip
    with open_source(str(rec)) as back:
        assert back.fps == 25.0 and back.notes == []
