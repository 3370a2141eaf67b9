"""`gputrack run`: the whole chain on the synthetic world and on a real video."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gputrack import pipeline
from gputrack.cli import main
from gputrack.device import probe
from tests.conftest import shared_data


def _run(capsys, *argv: str) -> tuple[int, dict]:
    rc = main(["run", *argv, "--json", "--no-ui"])
    out = capsys.readouterr().out
    return rc, (json.loads(out) if out.strip() else {})


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_synthetic_world_end_to_end_with_complete_outputs(backend, tmp_path, capsys):
    if not probe(backend).available:
        pytest.skip(f"{backend} unavailable: {probe(backend).reason}")
    frames = 20 if backend == "cpu" else 4  # emu runs the real kernels on the CPU: keep it small
    log, mot, image = tmp_path / "t.jsonl", tmp_path / "r.txt", tmp_path / "last.png"
    rc, s = _run(
        capsys,
        "synthetic:192x128@30",
        "--frames",
        str(frames),
        "--backend",
        backend,
        "--log",
        str(log),
        "--mot",
        str(mot),
        "--image",
        str(image),
        "--detector",
        "truth",
    )
    assert rc == 0
    assert s["backend"] == backend and s["frames"] == frames and "stand-in" in s["detector"]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(frames))
    assert set(lines[-1]["latency_ms"]) == {"sensor", "isp", "dsp", "track", "total"}
    assert any(x["tracks"] for x in lines), "the tracker confirmed something"
    for entry in lines[-1]["tracks"]:
        assert set(entry) == {"id", "bbox", "score", "class", "state"} and len(entry["bbox"]) == 4
    rows = [r.split(",") for r in mot.read_text().splitlines()]
    assert rows and all(len(r) == 10 and r[7:] == ["-1", "-1", "-1"] for r in rows)
    assert not list(tmp_path.glob("*.part*")), "temporary files renamed"
    img = cv2.imread(str(image))
    assert img.shape == (128, 192, 3) and img.std() > 5, "a real picture, not a flat fill"
    if backend == "cpu":
        assert s["mota"] > 0.5


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_synthetic_world_default_is_the_bundled_network(backend, tmp_path, capsys):
    if not probe(backend).available:
        pytest.skip(f"{backend} unavailable: {probe(backend).reason}")
    frames = 30 if backend == "cpu" else 3
    log = tmp_path / "t.jsonl"
    rc, s = _run(
        capsys, "synthetic:640x360@30", "--frames", str(frames), "--backend", backend,
        "--log", str(log),
    )  # fmt: skip
    assert rc == 0 and s["detector"] == "network synthetic_det" and s["frames"] == frames
    # gputrack's kernels run the layers as one graph per frame; onnxruntime on cpu has none
    assert s.get("network_graph") == (None if backend == "cpu" else "one graph per frame")
    if backend == "cpu":
        assert s["mota"] > 0.8, s  # measured 0.94 (30 frames)
        last = json.loads(log.read_text().splitlines()[-1])
        assert last["tracks"] and {t["class"] for t in last["tracks"]} <= {0, 1, 2}


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_real_video_with_the_network_tracks_people(backend, tmp_path, capsys):
    video = shared_data("video/vtest.avi")
    shared_data("models/FastestDet.onnx")
    if not probe(backend).available:
        pytest.skip(f"{backend} unavailable: {probe(backend).reason}")
    frames = 12 if backend == "cpu" else 3
    log = tmp_path / "t.jsonl"
    rc, s = _run(
        capsys, str(video), "--frames", str(frames), "--backend", backend, "--log", str(log)
    )
    assert rc == 0 and s["detector"].startswith("network") and s["frames"] == frames
    last = json.loads(log.read_text().splitlines()[-1])
    people = [t for t in last["tracks"] if t["class"] == 0]
    assert len(people) >= 2, "vtest.avi shows several people walking"


def test_ctrl_c_keeps_finished_frames_and_exits_130(tmp_path, capsys, monkeypatch):
    real = pipeline.Pipeline.process
    calls = {"n": 0}

    def interrupted_on_the_fourth(self, frame):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, frame)

    monkeypatch.setattr(pipeline.Pipeline, "process", interrupted_on_the_fourth)
    log = tmp_path / "t.jsonl"
    rc, s = _run(
        capsys, "synthetic:128x96", "--backend", "cpu", "--frames", "10", "--log", str(log)
    )
    assert rc == 130 and s["interrupted"] and s["stopped_by"] == "Ctrl-C" and s["frames"] == 3
    assert len(log.read_text().splitlines()) == 3 and not list(tmp_path.glob(".t.jsonl.*"))


def test_nothing_done_replaces_no_earlier_output(tmp_path, capsys, monkeypatch):
    """Ctrl-C before the first frame, or a source without frames: the outputs of an
    earlier run under those names stay as they were."""
    outputs = {o: tmp_path / f"old.{s}" for o, s in (("log", "jsonl"), ("mot", "txt"),
                                                     ("video", "avi"))}  # fmt: skip
    for path in outputs.values():
        path.write_text("an earlier run's\n")
    argv = [a for o, p in outputs.items() for a in (f"--{o}", str(p))]
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 8, 8), np.uint16))
    assert main(["run", str(empty), "--backend", "cpu", "--no-ui", *argv]) == 1
    assert "the source gave no frames" in capsys.readouterr().err

    def interrupted_at_once(self, frame):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.Pipeline, "process", interrupted_at_once)
    assert main(["run", "synthetic:64x48", "--backend", "cpu", "--no-ui", *argv]) == 130
    assert all(p.read_text() == "an earlier run's\n" for p in outputs.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["empty.npy", *(p.name for p in outputs.values())])


def test_an_error_mid_run_keeps_the_frames_done_and_says_so(tmp_path, capsys, monkeypatch):
    from gputrack.errors import GputrackError

    real = pipeline.Pipeline.process
    calls = {"n": 0}

    def failing_on_the_fourth(self, frame):
        calls["n"] += 1
        if calls["n"] == 4:
            raise GputrackError("the camera went away")
        return real(self, frame)

    monkeypatch.setattr(pipeline.Pipeline, "process", failing_on_the_fourth)
    log, mot = tmp_path / "t.jsonl", tmp_path / "r.txt"
    argv = ["synthetic:128x96", "--backend", "cpu", "--frames", "10", "--log", str(log)]
    assert main(["run", *argv, "--mot", str(mot), "--no-ui"]) == 1
    err = capsys.readouterr().err
    assert f"--log {log}, --mot {mot}: kept, with the 3 frames done before the error" in err
    assert err.rstrip().endswith("the camera went away")
    assert len(log.read_text().splitlines()) == 3 and mot.exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--frames", "0"], "--frames 0"),
        (["--log", "/nonexistent/dir/x.jsonl"], "does not exist"),
        (["no_such_video.avi"], "no_such_video.avi"),
        (["no_such_video.avi", "--detector", "truth"], "--detector truth needs the synthetic"),
        (["synthetic:64x48", "--ccm", "1,0,0,1,0,0,0,0,1"], "is singular"),
        (["synthetic:64x48", "--tone", "gamma-2"], "gamma must be from 0.1 to 10"),
        (["synthetic:64x48", "--wb", "1,1"], "three gains R,G,B from"),
        (["synthetic:64x48", "--bit-depth", "16"], "the sensor model reads out 10, 12, 14"),
        (["synthetic:64x48,frames=0"], "frames=0: must be at least 1"),
        (["synthetic:64x48", "--ui", "--json"], "--ui and --json both write"),
    ],
)
def test_bad_input_is_one_line(args, needle, capsys):
    rc = main(["run", "--backend", "cpu", "--no-ui", *args])
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1] and "Traceback" not in "".join(err)


def test_frames_in_the_synthetic_spec_count_and_the_option_wins(capsys):
    argv = ("--backend", "cpu", "--detector", "truth")
    assert _run(capsys, "synthetic:64x48,frames=4", *argv)[1]["frames"] == 4
    assert _run(capsys, "synthetic:64x48,frames=4", "--frames", "2", *argv)[1]["frames"] == 2


def test_annotated_video_has_every_frame(tmp_path, capsys):
    video = tmp_path / "tracks.avi"
    rc, s = _run(
        capsys, "synthetic:160x96", "--frames", "8", "--backend", "cpu", "--video", str(video)
    )
    assert rc == 0 and s["video"] == str(video)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    assert len(frames) == 8 and frames[0].shape == (96, 160, 3)
    assert not list(tmp_path.glob(".*tmp*")), "the temporary name was renamed"


@pytest.mark.parametrize(
    "args, needle",
    [(["--video", "x.gif"], "use one of .avi, .mp4, .mkv"), (["--log", "."], "is a folder")],
)
def test_output_paths_are_checked_before_any_work(args, needle, capsys):
    rc = main(["run", "--backend", "cpu", "--no-ui", "--frames", "1", *args])
    assert rc == 2 and needle in capsys.readouterr().err


def test_sigterm_stops_as_cleanly_as_ctrl_c(tmp_path):
    """timeout, systemd and docker stop send SIGTERM: the logs must still be complete."""
    import signal
    import subprocess
    import sys
    import time

    log, mot = tmp_path / "t.jsonl", tmp_path / "r.txt"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gputrack",
            "run",
            "synthetic:128x96",
            "--backend",
            "cpu",
            "--frames",
            "100000",
            "--no-ui",
            "--log",
            str(log),
            "--mot",
            str(mot),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the log's hidden temporary file has 3 frames
        part = next(iter(tmp_path.glob(".t.jsonl.*.part*")), None)
        if part is not None and part.read_text().count("\n") >= 3:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the run wrote no 3 frames in 120 s")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err  # the shell's code for SIGTERM, not Ctrl-C's 130
    assert "stopped by SIGTERM" in out
    lines = [json.loads(x) for x in log.read_text().splitlines()]  # every line whole
    assert len(lines) >= 3 and [x["frame"] for x in lines] == list(range(len(lines)))
    assert mot.exists() and not list(tmp_path.glob(".*.part*"))  # temporaries renamed
    assert "Traceback" not in err


@pytest.mark.parametrize("verb", ["run", "track"])
def test_unwritable_or_folder_output_is_one_line(verb, tmp_path, capsys):
    folder = tmp_path / "adir"
    folder.mkdir()
    det = tmp_path / "det.txt"
    det.write_text("1,-1,10,10,20,20,0.9,-1,-1,-1\n")
    argv = (
        ["run", "--backend", "cpu", "--no-ui", "--frames", "1", "--mot", str(folder)]
        if verb == "run"
        else ["track", str(det), "--out", str(folder)]
    )
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "is a folder" in err[-1] and str(folder) in err[-1]


def test_white_balance_colour_matrix_and_tone_reach_the_chain(capsys, tmp_path):
    """The same frames under other ISP settings: the run works and the image differs."""
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    base = ["synthetic:96x64", "--frames", "2", "--backend", "cpu", "--detector", "truth"]
    rc, s = _run(capsys, *base, "--image", str(a))
    assert rc == 0
    rc, t = _run(
        capsys, *base, "--image", str(b), "--wb", "auto", "--ccm", "identity", "--tone",
        "gamma2.2",
    )  # fmt: skip
    assert rc == 0 and t["frames"] == s["frames"] == 2
    ia, ib = (cv2.imread(str(f)).astype(int) for f in (a, b))
    assert ia.shape == ib.shape and np.abs(ia - ib).mean() > 2


def test_mot_result_to_stdout_through_a_pipe():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "gputrack", "run", "synthetic:128x96", "--frames", "3",
         "--backend", "cpu", "--no-ui", "--detector", "truth", "--mot", "/dev/stdout"],
        capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split(",") for line in done.stdout.splitlines()]
    # Result lines only: the summary went to stderr, not into the stream.
    assert rows and all(len(r) == 10 for r in rows) and {r[0] for r in rows} <= {"1", "2", "3"}
    assert "gputrack run: 3 frames" in done.stderr


def test_summary_of_a_world_without_objects_is_valid_json(capsys):
    """No ground truth boxes: MOTA and IDF1 have nothing to divide by, so they are null."""

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    rc = main(["run", "synthetic:128x96,objects=0", "--frames", "3", "--backend", "cpu",
               "--no-ui", "--json"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out, parse_constant=no_constants)
    assert rc == 0 and summary["mota"] is None and summary["idf1"] is None


def test_an_image_that_cannot_be_written_still_leaves_the_summary(tmp_path, capsys, monkeypatch):
    """--image is written after the run's other outputs are complete: its failure (a full
    disk) lost the summary, and with it what had been written. Now the summary comes, then
    the error, exit 1."""
    import gputrack.commands.run as run_verb
    from gputrack.errors import GputrackError

    def full_disk(path, *args, **kwargs):
        raise GputrackError(f"cannot write --image {path}: No space left on device")

    monkeypatch.setattr(run_verb, "write_image", full_disk)
    log = tmp_path / "t.jsonl"
    rc = main(["run", "synthetic:64x48", "--frames", "2", "--backend", "cpu", "--no-ui",
               "--detector", "truth", "--log", str(log), "--image", str(tmp_path / "x.png"),
               "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 1 and "cannot write --image" in err
    summary = json.loads(out)
    assert summary["frames"] == 2 and summary["image"] is None and summary["log"] == str(log)
    assert len(log.read_text().splitlines()) == 2


def test_a_colour_matrix_the_sensor_model_cannot_invert_is_a_bad_argument(capsys):
    """The user's --ccm, singular: exit 2 naming the option (it was exit 1, unnamed)."""
    rc = main(["run", "synthetic:64x48", "--backend", "cpu", "--no-ui", "--ccm",
               "0,0,0,0,0,0,0,0,0"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("gputrack run: error: --ccm: ") and "singular" in err[-1]


def test_a_dangling_link_names_the_folder_it_leads_into(tmp_path, capsys):
    link = tmp_path / "t.jsonl"
    link.symlink_to(tmp_path / "gone" / "x.jsonl")
    assert main(["run", "synthetic:64x48", "--no-ui", "--log", str(link)]) == 2
    err = capsys.readouterr().err
    assert f"folder {tmp_path / 'gone'} does not exist" in err, err


def test_a_track_on_an_object_too_hidden_to_score_counts_neither_way():
    """Objects under 30 % visible are not scored; a confirmed track on one was counted as a
    false positive (about 3 MOTA points on the synthetic world). It is dropped as a
    hypothesis on a distractor is; a track on nothing is still a false positive."""
    from gputrack.commands.run import _score_row
    from gputrack.track.mot_eval import score_frames
    from gputrack.track.tracker import Track

    # truth rows: x1, y1, x2, y2, id, class, visibility
    truth = np.array([[10, 10, 50, 90, 1, 0, 0.9], [200, 10, 240, 90, 2, 0, 0.1]], np.float32)
    def track(id_, x):
        return Track(id_, x, 10, 40, 80, 0.9, 0, "confirmed", 5, 5, 0.0, 0.0)

    gt_ids, gt_boxes, hyp_ids, hyp_boxes = _score_row(truth, [track(7, 10), track(8, 201)])
    assert list(gt_ids) == [1] and hyp_ids == [7] and len(hyp_boxes) == 1
    m = score_frames([_score_row(truth, [track(7, 10), track(8, 201)])])
    assert m["num_false_positives"] == 0 and m["mota"] == 1.0
    m = score_frames([_score_row(truth, [track(7, 10), track(9, 400)])])  # on nothing
    assert m["num_false_positives"] == 1


def test_a_ring_is_scored_on_one_pass(capsys):
    """At a ring's wrap the scene jumps back: scoring across it made an error-free detector
    look bad (IDF1 0.31). Scored on the first pass, and the summary says so."""
    rc = main(["run", "synthetic:160x90,seed=1,ring=5", "--frames", "12", "--detector",
               "truth", "--backend", "cpu", "--no-ui", "--json"])  # fmt: skip
    s = json.loads(capsys.readouterr().out)
    assert rc == 0 and s["frames"] == 12
    assert any("scored on the first 5 frames" in n for n in s["source_notes"]), s["source_notes"]
    rc = main(["run", "synthetic:160x90,seed=1,ring=5", "--frames", "5", "--detector",
               "truth", "--backend", "cpu", "--no-ui", "--json"])  # fmt: skip
    one_pass = json.loads(capsys.readouterr().out)
    assert rc == 0 and not one_pass["source_notes"]  # nothing past the wrap: nothing to say
    assert (s["mota"], s["idf1"]) == (one_pass["mota"], one_pass["idf1"])


def test_a_failure_while_building_the_run_closes_the_source(tmp_path, monkeypatch, capsys):
    """A model that fails to import, after the source opened: the source (a webcam, a file)
    is closed, not left open for an in-process caller."""
    from gputrack.commands import run_setup

    opened = []
    real = run_setup.open_source

    def recording(*args, **kwargs):
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(run_setup, "open_source", recording)
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model\n")
    assert main(["run", "synthetic:64x48", "--frames", "2", "--no-ui", "--backend", "cpu",
                 "--model", str(bad)]) == 1  # fmt: skip
    assert "not a readable ONNX file" in capsys.readouterr().err
    assert len(opened) == 1 and opened[0].closed


def test_the_summary_table_keeps_its_numbers_on_a_narrow_terminal(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "20")
    assert main(["run", "synthetic:64x48", "--detector", "truth", "--frames", "2", "--no-ui",
                 "--backend", "cpu"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "…" not in out and "p99 ms" in out and "total" in out
