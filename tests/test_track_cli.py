"""`gputrack track`: result file, summary, scoring, and clear errors for bad input."""

from __future__ import annotations

import json

import pytest

from gputrack.cli import main
from gputrack.errors import Terminated
from tests.conftest import shared_data

LINES = [f"{f},-1,{100 + 3 * f},{50 + f},40,80,0.9,-1,-1,-1" for f in range(1, 11)]


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_track_writes_mot_result_and_json_summary(tmp_path, capsys):
    det = write(tmp_path / "det.txt", LINES[:5] + LINES[7:])  # frames 6-7 without detections
    out = tmp_path / "result.txt"
    assert main(["track", str(det), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 10 and summary["tracks"] == 1 and summary["detections"] == 8
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5, 8, 9, 10]  # lost frames not written
    assert {r[1] for r in rows} == {"1"} and all(r[7:] == ["-1", "-1", "-1"] for r in rows)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    assert main(["track", str(det), "--out", str(out), "--write-lost"]) == 0
    assert len(out.read_text().splitlines()) == 10


@pytest.mark.parametrize(
    "line, message",
    [
        ("3,-1,1,2,40", "det.txt:3: expected at least 7"),
        ("3,-1,1,abc,40,80,0.9", "det.txt:3: 'abc' is not a number"),
        ("3.5,-1,1,2,40,80,0.9", "det.txt:3: frame must be a whole number"),
        ("3,-1,1,2,0,80,0.9", "det.txt:3: box width and height must be positive"),
        ("3,-1,1,2,40,80,nan", "det.txt:3: id, box or score is not a finite number"),
        ("3,-1,1e300,2,40,80,0.9", "det.txt:3: id, box or score is not a finite number"),
        ("1e10,-1,1,2,40,80,0.9", "det.txt:3: frame must be a whole number from 1 to"),
    ],
)
def test_malformed_line_names_file_line_and_problem(tmp_path, capsys, line, message):
    det = write(tmp_path / "det.txt", LINES[:2] + [line])
    out = tmp_path / "result.txt"
    assert main(["track", str(det), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_missing_file_and_bad_options(tmp_path, capsys):
    assert main(["track", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "r.txt")]) == 1
    assert "nope.txt: no such detection file" in capsys.readouterr().err
    det = write(tmp_path / "det.txt", LINES)
    for bad in (["--fps", "0"], ["--fps", "nan"], ["--fps", "inf"], ["--fps", "1e7"],
                ["--min-score", "nan"], ["--high-score", "inf"], ["--new-track-score", "nan"],
                ["--min-score", "0.6", "--high-score", "0.5"]):  # fmt: skip
        assert main(["track", str(det), "--out", str(tmp_path / "r.txt"), *bad]) == 2, bad
        assert bad[0] in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "r.txt").exists()
    # A usage error, found before the detection file is read (here it is not even there).
    missing = str(tmp_path / "nope.txt")
    assert main(["track", missing, "--out", str(tmp_path / "no" / "r.txt")]) == 2
    assert "--out" in (err := capsys.readouterr().err) and "does not exist" in err
    assert main(["track", str(tmp_path), "--out", str(tmp_path / "r.txt")]) == 1
    assert "is a folder, give a detection file" in capsys.readouterr().err


def test_a_byte_order_mark_is_not_a_field(tmp_path, capsys):
    det = tmp_path / "det.txt"
    det.write_bytes(b"\xef\xbb\xbf" + "\n".join(LINES).encode())
    assert main(["track", str(det), "--out", str(tmp_path / "r.txt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["detections"] == 10


def test_track_scores_against_ground_truth(tmp_path, capsys):
    det = shared_data("mot/TUD-Campus/det.txt")
    gt = shared_data("mot/TUD-Campus/gt.txt")
    out = tmp_path / "result.txt"
    assert main(["track", str(det), "--out", str(out), "--fps", "25", "--gt", str(gt),
                 "--json"]) == 0
    m = json.loads(capsys.readouterr().out)["metrics"]
    assert m["mota"] >= 0.64 and m["idf1"] >= 0.75
    # Counts are whole numbers in JSON ("num_switches": 3, not 3.0), ratios are not.
    counts = {k for k in m if k.startswith("num_") or k.startswith("mostly_")}
    assert len(counts) == 8 and all(type(m[k]) is int for k in counts), m
    assert type(m["mota"]) is float


def shifted(lines, by):
    """MOTChallenge lines with every frame number moved by `by`."""
    return [f"{int(line.split(',')[0]) + by},{line.split(',', 1)[1]}" for line in lines]


@pytest.mark.parametrize("by", [100, 10**6])
def test_a_shifted_sequence_gives_the_same_tracks(tmp_path, capsys, by):
    """The first frame with detections is the tracker's first, whatever its number: its
    tracks are confirmed at once. An empty update at frame 1 made frame 101 a later frame
    (the first 2 frames' lines went missing) and 'frames' said 110."""
    got = []
    for shift in (0, by):
        det = write(tmp_path / f"det{shift}.txt", shifted(LINES, shift))
        gt = write(tmp_path / f"gt{shift}.txt", shifted(mot17_gt(), shift))
        out = tmp_path / f"result{shift}.txt"
        assert main(["track", str(det), "--out", str(out), "--gt", str(gt), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        got.append((summary, shifted(out.read_text().splitlines(), -shift)))
    (plain, plain_lines), (moved, moved_lines) = got
    assert moved_lines == plain_lines and len(plain_lines) == 10
    assert moved["metrics"] == plain["metrics"] and plain["metrics"]["mota"] == 1.0
    assert plain["frames"] == moved["frames"] == 10
    assert (moved["first_frame"], moved["last_frame"]) == (1 + by, 10 + by)
    det = tmp_path / f"det{by}.txt"
    assert main(["track", str(det), "--out", str(tmp_path / "r.txt")]) == 0
    assert capsys.readouterr().out.startswith(f"10 frames ({1 + by}-{10 + by}), 10 detections")


def test_real_data_shifted_gives_the_same_tracks_and_scores(tmp_path, capsys):
    det = shared_data("mot/TUD-Campus/det.txt")
    gt = shared_data("mot/TUD-Campus/gt.txt")
    got = []
    for shift in (0, 100):
        d = write(tmp_path / f"det{shift}.txt", shifted(det.read_text().splitlines(), shift))
        g = write(tmp_path / f"gt{shift}.txt", shifted(gt.read_text().splitlines(), shift))
        out = tmp_path / f"result{shift}.txt"
        argv = ["track", str(d), "--out", str(out), "--fps", "25", "--gt", str(g), "--json"]
        assert main(argv) == 0
        summary = json.loads(capsys.readouterr().out)
        got.append((summary, shifted(out.read_text().splitlines(), -shift)))
    (plain, plain_lines), (moved, moved_lines) = got
    assert moved_lines == plain_lines  # was 278 lines against 290
    assert moved["metrics"] == plain["metrics"]  # was MOTA 61.6 % against 64.3 %
    assert plain["metrics"]["mota"] >= 0.64
    assert plain["frames"] == moved["frames"] == 71  # was 171 shifted


def test_an_empty_ground_truth_path_is_a_usage_error(tmp_path, capsys):
    det = write(tmp_path / "det.txt", LINES)
    out = tmp_path / "result.txt"
    assert main(["track", str(det), "--out", str(out), "--gt", ""]) == 2  # ran, unscored
    assert "--gt: empty path" in capsys.readouterr().err
    assert not out.exists()


def _stop_at(update, frame_number, stop):
    """Tracker.update_array that raises `stop` (an interrupt) at `frame_number`."""

    def stopped(self, dets, frame=None):
        if frame == frame_number:
            raise stop
        return update(self, dets, frame)

    return stopped


def test_ctrl_c_or_sigterm_keeps_the_frames_done(tmp_path, capsys, monkeypatch):
    from gputrack.track import Tracker

    real = Tracker.update_array
    det = write(tmp_path / "det.txt", LINES)
    out = tmp_path / "result.txt"
    monkeypatch.setattr(Tracker, "update_array", _stop_at(real, 6, KeyboardInterrupt))
    assert main(["track", str(det), "--out", str(out)]) == 130
    assert "stopped by Ctrl-C; " in capsys.readouterr().err
    assert [line.split(",")[0] for line in out.read_text().splitlines()] == list("12345")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # SIGTERM (a timeout, a service stop): the same, with the shell's exit code for it
    monkeypatch.setattr(Tracker, "update_array", _stop_at(real, 4, Terminated))
    assert main(["track", str(det), "--out", str(out)]) == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM; " in err and "holds frames 1-3 of 1-10" in err
    assert [line.split(",")[0] for line in out.read_text().splitlines()] == list("123")
    # Frame numbers that start later are said as they are (it said "1-103 of 110").
    det = write(tmp_path / "det.txt", shifted(LINES, 100))
    monkeypatch.setattr(Tracker, "update_array", _stop_at(real, 104, KeyboardInterrupt))
    assert main(["track", str(det), "--out", str(out)]) == 130
    assert "holds frames 101-103 of 101-110" in capsys.readouterr().err
    assert [line.split(",")[0] for line in out.read_text().splitlines()] == ["101", "102",
                                                                              "103"]
    monkeypatch.setattr(Tracker, "update_array", _stop_at(real, 101, KeyboardInterrupt))
    assert main(["track", str(det), "--out", str(out)]) == 130
    assert "holds no frame of 101-110" in capsys.readouterr().err
    assert out.read_text() == ""


def test_frame_numbers_that_jump_far_cost_nothing(tmp_path, capsys):
    far = [line.replace("10,", "1000000000,", 1) for line in LINES[9:]]
    det = write(tmp_path / "det.txt", LINES[:9] + far)
    out = tmp_path / "result.txt"
    assert main(["track", str(det), "--out", str(out), "--json"]) == 0  # at once, not hours
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 10**9 and summary["tracks"] == 1  # frames 1 to 10^9
    assert (summary["first_frame"], summary["last_frame"]) == (1, 10**9)
    frames = [int(line.split(",")[0]) for line in out.read_text().splitlines()]
    assert frames == list(range(1, 10))  # the far detection starts a track, tentative


def test_an_error_mid_run_leaves_the_earlier_result(tmp_path, capsys, monkeypatch):
    from gputrack.errors import GputrackError
    from gputrack.track import Tracker

    real = Tracker.update_array

    def failing(self, dets, frame=None):
        if frame == 6:
            raise GputrackError("disk on fire")
        return real(self, dets, frame)

    det = write(tmp_path / "det.txt", LINES)
    out = write(tmp_path / "result.txt", ["earlier result"])
    monkeypatch.setattr(Tracker, "update_array", failing)
    assert main(["track", str(det), "--out", str(out)]) == 1
    assert "disk on fire" in capsys.readouterr().err
    assert out.read_text() == "earlier result\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_ground_truth_is_checked_before_tracking(tmp_path, capsys):
    det = write(tmp_path / "det.txt", LINES)
    out = tmp_path / "result.txt"

    def track_with(gt_lines):
        gt = write(tmp_path / "gt.txt", gt_lines)
        code = main(["track", str(det), "--out", str(out), "--gt", str(gt)])
        return code, capsys.readouterr().err

    code, err = track_with(LINES[:3] + ["4,1,1,2,40,x,1"])
    assert code == 1 and "gt.txt:4: 'x' is not a number" in err
    gt = [f"{f},7,{100 + 3 * f},{50 + f},40,80,1,1,1" for f in range(1, 11)]
    code, err = track_with(gt + [gt[4]])
    assert code == 1 and "gt.txt:11: identity 7 is already in frame 5 (line 5)" in err
    code, err = track_with([g.replace(g.split(",")[0], str(500 + i), 1)
                            for i, g in enumerate(gt)])
    assert code == 2 and "covers frames 500-509, the detections 1-10" in err
    code, err = track_with(["# nothing"])
    assert code == 2 and "no ground truth boxes" in err
    assert not out.exists()  # every refusal came before the result was written
    code, _ = track_with(gt)
    assert code == 0 and out.exists()


def test_json_has_no_nan_when_a_ratio_has_nothing_to_divide_by(tmp_path, capsys):
    det = write(tmp_path / "det.txt", LINES)
    gt = write(tmp_path / "gt.txt", [f"{f},7,100,50,40,80,1,1,1" for f in range(1, 11)])
    out = tmp_path / "result.txt"
    # No track starts, so the result is empty: precision and MOTP divide by 0 matches.
    assert main(["track", str(det), "--out", str(out), "--gt", str(gt), "--json",
                 "--high-score", "0.95"]) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text and "Infinity" not in text
    m = json.loads(text)["metrics"]
    assert m["precision"] is None and m["motp"] is None and m["mota"] == 0.0


def mot17_gt(frames=range(1, 11)):
    """MOT17-style ground truth: the person of LINES (class 1), a static person (class 7,
    conf 0 as in MOT17) standing at (300, 200) and a car (class 3) at (600, 300)."""
    return [line for f in frames for line in (f"{f},1,{100 + 3 * f},{50 + f},40,80,1,1,1",
                                              f"{f},2,300,200,40,80,0,7,1",
                                              f"{f},3,600,300,80,40,1,3,1")]


def test_ground_truth_classes_are_scored_as_the_devkit(tmp_path, capsys):
    # Detections of the person and of the static person; none of the car.
    det = write(tmp_path / "det.txt", LINES + [f"{f},-1,301,201,40,80,0.9"
                                               for f in range(1, 11)])
    out = tmp_path / "result.txt"
    gt = write(tmp_path / "gt.txt", mot17_gt())
    assert main(["track", str(det), "--out", str(out), "--gt", str(gt), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tracks"] == 2 and summary["result_lines"] == 20
    # The static person's track is no false positive, the car no miss.
    m = summary["metrics"]
    assert m["num_objects"] == 10 and m["num_false_positives"] == 0 and m["num_misses"] == 0
    assert m["mota"] == 1.0


def test_ground_truth_of_only_distractors_or_ignored_rows_is_refused(tmp_path, capsys):
    det = write(tmp_path / "det.txt", LINES)
    out = tmp_path / "result.txt"
    for rows in ([f"{f},2,100,50,40,80,1,7,1" for f in range(1, 11)],  # static persons
                 [f"{f},7,100,50,40,80,0,1,1" for f in range(1, 11)],  # flagged 'ignore'
                 ["1,3,600,300,80,40,1,3,1", "2,5,100,50,40,80,1,12,1"]):  # car, reflection
        gt = write(tmp_path / "gt.txt", rows)
        assert main(["track", str(det), "--out", str(out), "--gt", str(gt)]) == 2
        assert "has no ground truth boxes to score against" in capsys.readouterr().err
        assert not out.exists()


def test_identity_twice_only_among_unscored_rows_is_no_error(tmp_path, capsys):
    det = write(tmp_path / "det.txt", LINES)
    out = tmp_path / "result.txt"
    gt = mot17_gt()
    gt = write(tmp_path / "gt.txt", gt + [g for g in gt if not g.endswith(",1,1,1")])
    assert main(["track", str(det), "--out", str(out), "--gt", str(gt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["num_objects"] == 10


def test_comment_lines_and_comma_space_in_ground_truth_are_scored(tmp_path, capsys):
    det = write(tmp_path / "det.txt", LINES)
    out = tmp_path / "result.txt"
    plain = write(tmp_path / "plain.txt", mot17_gt())
    odd = write(tmp_path / "odd.txt", ["# frame, id, x, y, w, h, conf, class, visibility"]
                + [g.replace(",", ", ") for g in mot17_gt()])
    got = []
    for gt in (plain, odd):  # motmetrics' own reader failed on the second after tracking
        assert main(["track", str(det), "--out", str(out), "--gt", str(gt), "--json"]) == 0
        got.append(json.loads(capsys.readouterr().out)["metrics"])
    assert got[0] == got[1] and got[0]["num_objects"] == 10


def test_a_high_score_no_detection_reaches_is_said(tmp_path, capsys):
    det = write(tmp_path / "det.txt", LINES)
    out = tmp_path / "result.txt"
    assert main(["track", str(det), "--out", str(out), "--high-score", "0.95"]) == 0
    assert "no detection reaches 0.95 (--high-score and --new-track-score; the highest is " \
        "0.9)" in capsys.readouterr().err
    assert out.read_text() == ""


def test_tracks_start_at_the_new_track_score(tmp_path, capsys):
    """Scores of 0.55 pass --high-score 0.3 but not the default --new-track-score 0.6: no
    track, and said so (nothing was said before); --new-track-score 0.5 starts one."""
    det = write(tmp_path / "det.txt", [line.replace(",0.9,", ",0.55,") for line in LINES])
    out = tmp_path / "result.txt"
    assert main(["track", str(det), "--out", str(out), "--high-score", "0.3"]) == 0
    assert "no detection reaches 0.6" in capsys.readouterr().err
    assert out.read_text() == ""
    argv = ["track", str(det), "--out", str(out), "--high-score", "0.3", "--new-track-score",
            "0.5", "--json"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["tracks"] == 1


def test_scores_of_any_scale_negative_too(tmp_path, capsys):
    """MOT16's DPM detections score below 0: --min-score may be negative."""
    det = write(tmp_path / "det.txt", [line.replace(",0.9,", ",-0.4,") for line in LINES])
    out = tmp_path / "result.txt"
    argv = ["track", str(det), "--out", str(out), "--min-score", "-1", "--high-score", "-0.5",
            "--new-track-score", "-0.5", "--json"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["tracks"] == 1


def test_summary_goes_to_stderr_when_the_result_is_stdout(tmp_path):
    """`--out /dev/stdout | reader`: the result stream holds result lines only."""
    import subprocess
    import sys

    det = write(tmp_path / "det.txt", LINES)
    for extra in ([], ["--json"]):
        done = subprocess.run([sys.executable, "-m", "gputrack", "track", str(det), "--out",
                               "/dev/stdout", *extra], capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) == 10 and all(line.count(",") == 9 for line in lines), lines
        assert "10 frames" in done.stderr or '"frames": 10' in done.stderr


def test_result_to_a_link_or_a_pipe_keeps_it_a_link_or_a_pipe(tmp_path):
    import os
    import threading

    det = write(tmp_path / "det.txt", LINES)
    target = write(tmp_path / "real.txt", ["old"])
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert main(["track", str(det), "--out", str(link)]) == 0
    assert link.is_symlink() and len(target.read_text().splitlines()) == 10

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    assert main(["track", str(det), "--out", str(fifo)]) == 0
    reader.join(timeout=30)
    assert fifo.is_fifo() and len(got[0].splitlines()) == 10
