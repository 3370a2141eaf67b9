"""No verb writes over what it reads: an output that names an input (or another output) is a
usage error before any work, and the input is left as it was."""

from __future__ import annotations

import hashlib
import json
import os

import cv2
import numpy as np
import pytest

from gputrack.cli import main
from gputrack.errors import UsageError
from gputrack.outputs.files import refuse_overwriting_inputs


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def photo(tmp_path, rng):
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    return path


def _refused(capsys, argv: list[str], verb: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"gputrack {verb}: error:") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_isp_refuses_to_write_over_its_input_under_any_spelling(capsys, tmp_path, photo):
    before = _digest(photo)
    other = tmp_path / "sub" / ".." / photo.name  # the same file, spelled differently
    (tmp_path / "sub").mkdir()
    for out in (photo, other):
        msg = _refused(capsys, ["isp", str(photo), "--out", str(out), "--backend", "cpu"], "isp")
        assert "is the input" in msg and str(out) in msg
    link = tmp_path / "link.png"
    os.link(photo, link)  # a hard link: another name, the same file
    assert "is the input" in _refused(capsys, ["isp", str(photo), "--out", str(link)], "isp")
    assert _digest(photo) == before


def test_run_refuses_outputs_over_its_source_or_each_other(capsys, tmp_path, photo):
    before = _digest(photo)
    msg = _refused(capsys, ["run", str(photo), "--no-ui", "--image", str(photo)], "run")
    assert "--image" in msg and "is the source" in msg
    log = str(tmp_path / "t.jsonl")
    msg = _refused(capsys, ["run", "synthetic", "--no-ui", "--log", log, "--mot", log], "run")
    assert "--mot and --log name the same file" in msg
    assert _digest(photo) == before and not (tmp_path / "t.jsonl").exists()
    # a file:// URL (OpenCV opens it) names the same file: an output over it was written
    for option in ("--mot", "--log", "--video"):
        out = str(photo) if option != "--video" else str(photo.with_suffix(".avi"))
        src = photo.as_uri() if option != "--video" else photo.with_suffix(".avi").as_uri()
        if option == "--video":
            photo.with_suffix(".avi").write_bytes(b"not really a video")
        msg = _refused(capsys, ["run", src, "--no-ui", option, out], "run")
        assert "is the source" in msg and option in msg
    assert _digest(photo) == before
    assert photo.with_suffix(".avi").read_bytes() == b"not really a video"


def test_run_on_a_folder_refuses_to_write_over_a_frame_it_reads(capsys, tmp_path, photo):
    frames = tmp_path / "frames"
    frames.mkdir()
    frame = frames / "0001.png"
    frame.write_bytes(photo.read_bytes())
    msg = _refused(capsys, ["run", str(frames), "--no-ui", "--image", str(frame)], "run")
    assert "one of the files of the input folder" in msg
    assert _digest(frame) == _digest(photo)
    # A new image there would be a frame of the next run over the folder: refused too.
    msg = _refused(capsys, ["run", str(frames), "--no-ui", "--image", str(frames / "x.JPG")],
                   "run")  # fmt: skip
    assert "a later run would read it from as one of its frames" in msg
    assert sorted(p.name for p in frames.iterdir()) == ["0001.png"]
    # A file the folder source does not read may be written there (a second run's log).
    refuse_overwriting_inputs({"source": frames}, {"--log": frames / "log.jsonl"}, {".png"})
    (frames / "log.jsonl").write_text("{}\n")
    refuse_overwriting_inputs({"source": frames}, {"--log": frames / "log.jsonl"}, {".png"})


def test_track_and_detect_refuse_to_write_over_their_inputs(capsys, tmp_path, photo):
    det = tmp_path / "det.txt"
    det.write_text("1,-1,10,10,20,20,0.9\n")
    before = _digest(det)
    msg = _refused(capsys, ["track", str(det), "--out", str(det)], "track")
    assert "is the detection file" in msg
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,20,20,1,1,1\n")
    assert "is the --gt" in _refused(
        capsys, ["track", str(det), "--out", str(gt), "--gt", str(gt)], "track"
    )
    assert _digest(det) == before
    before = _digest(photo)
    msg = _refused(capsys, ["detect", str(photo), "--out", str(photo)], "detect")
    assert "is the input" in msg
    assert _digest(photo) == before


def test_distinct_paths_pass(tmp_path):
    refuse_overwriting_inputs(
        {"input": tmp_path / "a.png", "--gt": None},
        {"--out": tmp_path / "b.png", "--log": None, "--mot": tmp_path / "c.txt"},
    )
    with pytest.raises(UsageError, match="is the input"):
        refuse_overwriting_inputs({"input": tmp_path / "a.png"}, {"--out": tmp_path / "a.png"})


def test_an_image_output_opencv_cannot_write_is_refused_before_the_run(capsys, tmp_path, photo):
    for verb, argv in (
        ("run", ["run", "synthetic:64x48", "--frames", "2", "--no-ui", "--backend", "cpu"]),
        ("detect", ["detect", str(photo), "--backend", "cpu"]),
    ):
        option = "--image" if verb == "run" else "--out"
        for name, why in (("last.xyz", "'.xyz'"), ("last", "a name without a suffix"),
                          ("last.pgm", "'.pgm'")):  # fmt: skip  (.pgm: grey only)
            msg = _refused(capsys, [*argv, option, str(tmp_path / name)], verb)
            assert f"OpenCV writes no colour image as {why}" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


@pytest.mark.parametrize(
    "raw, needle",
    [
        (np.full((31, 47), 100, np.uint16), "odd"),  # refused at its first frame
        (np.full((32, 48), 65000, np.uint16), "exceeds the declared bit depth"),
    ],
)
def test_a_run_that_fails_before_its_first_frame_leaves_earlier_outputs_alone(
    capsys, tmp_path, raw, needle
):
    """--log, --mot and --video of an earlier run survive a run whose input turns out wrong
    only when its first frame is read: no frame done, nothing to keep, nothing replaced."""
    src = tmp_path / "frame.npy"
    np.save(src, raw)
    outs = {opt: tmp_path / f"earlier{ext}" for opt, ext in
            (("--log", ".jsonl"), ("--mot", ".txt"), ("--video", ".mp4"))}  # fmt: skip
    for path in outs.values():
        path.write_text("precious\n")
    argv = ["run", str(src), "--backend", "cpu", "--no-ui", "--bit-depth", "12"]
    for opt, path in outs.items():
        argv += [opt, str(path)]
    assert main(argv) == 1
    assert needle in capsys.readouterr().err
    for path in outs.values():
        assert path.read_text() == "precious\n", path.name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["frame.npy", *(p.name for p in outs.values())]
    ), "no temporary file left behind"


def test_run_refuses_to_write_over_the_default_model(capsys, tmp_path, photo, monkeypatch):
    """The model run loads when no --model is given is an input like any other."""
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    model = data / "models" / "FastestDet.onnx"
    model.write_bytes(b"a model's bytes")
    monkeypatch.setenv("GPUTRACK_DATA", str(data))
    msg = _refused(capsys, ["run", str(photo), "--no-ui", "--mot", str(model)], "run")
    assert "--mot" in msg and "is the model" in msg
    assert model.read_bytes() == b"a model's bytes"
    bundled = tmp_path / "synthetic_det.onnx"  # the bundled model, stood in for: not at risk
    bundled.write_bytes(b"bundled")
    monkeypatch.setattr("gputrack.commands.run_options.bundled_model", lambda: bundled)
    msg = _refused(capsys, ["run", "synthetic:64x48", "--no-ui", "--log", str(bundled)], "run")
    assert "is the model" in msg and bundled.read_bytes() == b"bundled"


def test_options_of_the_network_detector_are_refused_with_the_truth_stand_in(capsys):
    for option, value in (("--model", "m.onnx"), ("--score", "0.3"), ("--max-det", "5")):
        msg = _refused(capsys, ["run", "synthetic:64x48", "--no-ui", "--detector", "truth",
                                option, value], "run")  # fmt: skip
        assert f"{option}: for the network detector, not for --detector truth" in msg


def test_temporary_files_have_unique_names_and_never_touch_an_existing_file(capsys, tmp_path):
    """The track log's temporary file was '<log>.part', opened with 'w': an unrelated
    'notes.part' was lost, `--log y --mot y.part` swapped the outputs. Every temporary name is
    now hidden, unique and created exclusively."""
    notes = tmp_path / "notes.part"
    notes.write_text("precious notes\n")
    run = ["run", "synthetic:64x48", "--frames", "2", "--backend", "cpu", "--detector",
           "truth", "--no-ui", "--json"]  # fmt: skip
    assert main([*run, "--log", str(tmp_path / "notes")]) == 0
    y = tmp_path / "y"
    assert main([*run, "--log", str(y), "--mot", str(tmp_path / "y.part")]) == 0
    capsys.readouterr()
    assert notes.read_text() == "precious notes\n"
    assert y.read_text().startswith('{"frame":0')
    assert (tmp_path / "y.part").read_text().startswith("1,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "notes.part", "y", "y.part"]


def test_a_source_named_like_a_temporary_file_is_read_not_written(capsys, tmp_path):
    """`run clip.part --log clip` truncated the input video (a browser's partial download
    is named so) while reading it, then renamed it to the log."""
    clip = tmp_path / "clip.part"
    writer = cv2.VideoWriter(str(tmp_path / "c.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (64, 48))  # fmt: skip
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    (tmp_path / "c.avi").rename(clip)
    before = _digest(clip)
    log = tmp_path / "clip"
    assert main(["run", str(clip), "--backend", "cpu", "--no-ui", "--json", "--log", str(log)]) == 0
    capsys.readouterr()
    assert _digest(clip) == before
    assert [json.loads(x)["frame"] for x in log.read_text().splitlines()] == [0, 1, 2]


def test_two_writers_of_one_log_do_not_mix(tmp_path):
    """Two runs on the same --log: each writes its own temporary file; the last to finish
    replaces the log whole (before, the second run renamed the first's half-written file)."""
    from gputrack.outputs.tracklog import TrackLogWriter

    path = tmp_path / "conc.jsonl"
    first, second = TrackLogWriter(path), TrackLogWriter(path)
    with first, second:
        for frame in range(3):
            first.write(frame, 0.0, [], {"total": 1.0})
            second.write(100 + frame, 0.0, [], {"total": 2.0})
        assert len(list(tmp_path.glob(".conc.jsonl.*.part.jsonl"))) == 2
        second.close()
        assert [json.loads(x)["frame"] for x in path.read_text().splitlines()] == [100, 101, 102]
    assert [json.loads(x)["frame"] for x in path.read_text().splitlines()] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conc.jsonl"]
