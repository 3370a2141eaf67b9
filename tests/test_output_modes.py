"""`gputrack run`'s IMX500 output modes combined with each other and with the other options:
--raw (DNG), --roi, --nv12 with the logs, the UI, odd sources and played-back recordings."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from gputrack.cli import main
from gputrack.errors import GputrackError
from gputrack.outputs.dng import dng_bytes
from gputrack.sensor.frame import RawFrame
from gputrack.sensor.sources import open_source

rawpy = pytest.importorskip("rawpy")
pytest.importorskip("pidng")

CCM = np.array([[1.7, -0.55, -0.15], [-0.25, 1.45, -0.2], [0.05, -0.6, 1.55]])
RUN = [sys.executable, "-m", "gputrack", "run", "synthetic:64x48", "--frames", "2",
       "--backend", "cpu", "--detector", "truth"]  # fmt: skip
FRAME = 64 * 48 * 3 // 2  # one NV12 frame of synthetic:64x48


def _run(capsys, *argv: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    rc = main(["run", *argv, "--json", "--no-ui", "--backend", "cpu"])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if out.strip() else {}), err


@pytest.mark.parametrize("other", [["--log", "/dev/stdout"], ["--mot", "/dev/stdout"],
                                   ["--ui"]])  # fmt: skip
def test_nv12_on_stdout_has_the_stream_to_itself(other):
    """NV12 frames are binary, back to back: a log line or the live view in the same stream
    breaks every frame after it for the encoder, and the log for its reader."""
    done = subprocess.run([*RUN, "--nv12", "/dev/stdout", *other], capture_output=True,
                          timeout=120)  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 2 and done.stdout == b"", err
    assert "--nv12" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_log_and_the_mot_result_do_not_share_a_stream():
    """JSON lines and MOT lines interleaved in one stream are read as neither: refused as
    NV12 with either is (each on its own stream, or one in a file, is fine)."""
    done = subprocess.run([*RUN, "--log", "/dev/stdout", "--mot", "/dev/stdout"],
                          capture_output=True, timeout=120)  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 2 and done.stdout == b"" and "are one stream" in err, err
    done = subprocess.run([*RUN, "--log", "/dev/stdout", "--mot", "/dev/stderr"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert [json.loads(line)["frame"] for line in done.stdout.splitlines()] == [0, 1]


def test_nv12_on_stdout_with_the_log_in_a_file(tmp_path):
    log = tmp_path / "t.jsonl"
    done = subprocess.run([*RUN, "--nv12", "/dev/stdout", "--log", str(log)],
                          capture_output=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert len(done.stdout) == 2 * FRAME and len(log.read_text().splitlines()) == 2


@pytest.mark.parametrize(("option", "value"), [("--wb", "2,1.5,1.6"),
                                               ("--ccm", "1.2,0,0,0,1,0,0,0,0.9")])  # fmt: skip
def test_colour_a_dng_cannot_state_is_refused_before_recording(tmp_path, capsys, option, value):
    """A DNG states white balance relative to green and a colour matrix that keeps white white
    (LibRaw normalises it so): other gains or matrices would play back into other images."""
    rec = tmp_path / "rec"
    rc, _, err = _run(capsys, "synthetic:64x48", "--frames", "2", "--detector", "truth",
                      "--raw", str(rec), option, value)  # fmt: skip
    assert rc == 2 and option in err and "--raw" in err and "Traceback" not in err, err
    assert not rec.exists()


@pytest.mark.parametrize("colour", [["--wb", "1.5,1,1.2"], ["--ccm", "identity"],
                                    ["--wb", "auto"]])  # fmt: skip
def test_a_recording_plays_back_into_the_same_isp_video(tmp_path, capsys, colour):
    rec, first, again = tmp_path / "rec", tmp_path / "a.yuv", tmp_path / "b.yuv"
    rc, s, _ = _run(capsys, "synthetic:160x120", "--frames", "3", "--detector", "truth",
                    "--roi", "32,16,96,64", "--raw", str(rec), "--nv12", str(first),
                    *colour)  # fmt: skip
    assert rc == 0 and s["raw_frames"] == 3 and s["frame_size"] == [96, 64]
    with rawpy.imread(str(rec / "frame_000002.dng")) as r:
        assert r.raw_image_visible.shape == (64, 96)
        if colour[0] == "--wb" and colour[1] != "auto":
            assert list(r.camera_whitebalance)[:3] == pytest.approx([1.5, 1, 1.2], rel=1e-5)
    rc, s, _ = _run(capsys, str(rec), "--model", "gputrack/models/synthetic_det.onnx",
                    "--nv12", str(again))  # fmt: skip
    assert rc == 0 and s["frame_size"] == [96, 64]
    a, b = (np.fromfile(p, np.uint8).astype(int) for p in (first, again))
    assert a.shape == b.shape == (3 * 96 * 64 * 3 // 2,)
    assert np.abs(a - b).max() <= 1


def _dng(path, shape, value=1000):
    raw = RawFrame(np.full(shape, value, np.uint16), pattern="BGGR", bit_depth=12,
                   black_level=200)  # fmt: skip
    path.write_bytes(dng_bytes(raw, (2.0, 1.0, 1.5), CCM))


def test_a_dng_folder_of_mixed_sizes_is_one_clear_error(tmp_path, capsys):
    """As an image folder's: a frame of another size would change the NV12 stream's frame
    size mid-stream and break the video (told as 'is the disk full?')."""
    src = tmp_path / "in"
    src.mkdir()
    _dng(src / "a.dng", (48, 64))
    _dng(src / "b.dng", (64, 96))
    with open_source(str(src)) as frames:
        next(frames)
        with pytest.raises(GputrackError, match=r"b\.dng.*96x64.*64x48"):
            next(frames)
    nv12 = tmp_path / "out.yuv"
    rc, _, err = _run(capsys, str(src), "--model", "gputrack/models/synthetic_det.onnx",
                      "--nv12", str(nv12), "--video", str(tmp_path / "v.avi"))  # fmt: skip
    assert rc == 1 and "96x64" in err and "disk full" not in err, err
    assert nv12.stat().st_size == FRAME  # the one frame done, whole


def test_an_odd_source_note_names_the_window(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f"{i}.png"), np.full((51, 81, 3), 90 + i, np.uint8))
    rc, s, _ = _run(capsys, str(src), "--model", "gputrack/models/synthetic_det.onnx",
                    "--roi", "16,8,32,24")  # fmt: skip
    assert rc == 0 and s["frame_size"] == [32, 24]
    (note,) = s["source_notes"]
    assert "81x51" in note and "32x24" in note and "are 80x50" not in note, note


def _frames_in(log, mot, raw, video) -> tuple[int, int, int, int]:
    cap = cv2.VideoCapture(str(video))
    n_video = 0
    while cap.read()[0]:
        n_video += 1
    mot_frames = {int(line.split(",")[0]) for line in mot.read_text().splitlines()}
    return (len(log.read_text().splitlines()), max(mot_frames, default=0),
            len(list(raw.glob("frame_*.dng"))), n_video)  # fmt: skip


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE as Linux has it")
def test_an_output_failing_mid_run_leaves_every_output_kept_on_the_same_frame(tmp_path):
    """The NV12 file hits a size limit on frame 5: the log, the MOT result, the DNG frames
    and the video had been written one after another and ended on different frames (5, 5, 5
    and 4), while the message said 4. What was written of the unfinished frame is taken back,
    so every output kept holds the frames the message names."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 1024, 20 * 1024))

    out = {k: tmp_path / n for k, n in (("log", "t.jsonl"), ("mot", "t.txt"), ("raw", "rec"),
                                        ("video", "t.avi"), ("nv12", "t.yuv"))}  # fmt: skip
    cmd = [sys.executable, "-m", "gputrack", "run", "synthetic:64x48", "--frames", "10",
           "--backend", "cpu", "--no-ui", "--detector", "truth",
           *(a for k, p in out.items() for a in (f"--{k}", str(p)))]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert done.returncode == 1 and "cannot write --nv12" in done.stderr, done.stderr
    kept = done.stderr.split("kept, with the ")[1]
    n = int(kept.split()[0])
    assert 1 <= n < 10 and not out["nv12"].exists()
    assert _frames_in(out["log"], out["mot"], out["raw"], out["video"]) == (n, n, n, n)


def test_an_output_failing_on_the_first_frame_replaces_no_earlier_file(tmp_path, capsys):
    """--nv12 /dev/full fails on frame 0: the earlier log stays as it was (it was replaced
    by one line), no DNG stays in the recording folder."""
    if not __import__("os").path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    log = tmp_path / "t.jsonl"
    log.write_text("earlier\n")
    rec = tmp_path / "rec"
    rec.mkdir()
    rc = main(["run", "synthetic:64x48", "--frames", "3", "--backend", "cpu", "--no-ui",
               "--detector", "truth", "--nv12", "/dev/full", "--log", str(log),
               "--raw", str(rec)])  # fmt: skip
    assert rc == 1 and "cannot write --nv12 /dev/full" in capsys.readouterr().err
    assert log.read_text() == "earlier\n" and list(rec.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec", "t.jsonl"]
