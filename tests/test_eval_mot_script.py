"""scripts/eval_mot.py: gputrack's figures are `gputrack track`'s, frame numbers that jump
far cost nothing, and ground truth is checked as `track --gt` checks it, before any output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gputrack.cli import main as gputrack
from tests.conftest import SCRIPTS, load_script, shared_data
from tests.test_track_cli import LINES, mot17_gt, shifted, write


@pytest.fixture(scope="module")
def eval_mot():
    return load_script("eval_mot")


def table(stdout: str) -> dict[str, list[str]]:
    """The script's table: the fields of each row after the header, by result name."""
    rows = [line.rsplit(None, 6) for line in stdout.splitlines()[1:]]
    return {name.strip(): fields for name, *fields in rows}


def test_frame_numbers_that_jump_far_cost_nothing(tmp_path):
    """Both trackers ran once per frame number up to 10^9 (hours); now they skip as `track`."""
    det = write(tmp_path / "jump.txt", ["1000000000,-1,10,10,20,30,0.9", "1,-1,10,10,20,30,0.9"])
    gt = write(tmp_path / "gt_jump.txt", ["1,1,10,10,20,30,1", "1000000000,1,10,10,20,30,1"])
    done = subprocess.run([sys.executable, str(SCRIPTS / "eval_mot.py"), str(gt), "--det",
                           str(det)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = table(done.stdout)
    # Frame 1 is each tracker's first: its box is shown at once; frame 10^9's only starts one.
    assert rows["gputrack (fps 30)"][3:] == ["0", "1", "2"]  # FP, misses, GT boxes
    assert rows["SORT baseline"][3:] == ["0", "1", "2"]


@pytest.mark.parametrize("by", [0, 100])
def test_gputrack_figures_and_result_are_those_of_gputrack_track(tmp_path, capsys, eval_mot,
                                                                 by):  # fmt: skip
    det = write(tmp_path / "det.txt", shifted(LINES[:4] + LINES[6:], by))  # a gap of 2
    gt = write(tmp_path / "gt.txt", shifted(mot17_gt(), by))
    out = tmp_path / "track.txt"
    assert gputrack(["track", str(det), "--out", str(out), "--gt", str(gt), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)["metrics"]
    assert eval_mot.main([str(gt), "--det", str(det)]) == 0
    got = table(capsys.readouterr().out)["gputrack (fps 30)"]
    assert got == [f"{100 * m['mota']:.1f}%", f"{100 * m['idf1']:.1f}%",
                   *(str(m[k]) for k in ("num_switches", "num_false_positives", "num_misses",
                                         "num_objects"))]  # fmt: skip
    assert got[0] == "80.0%"  # 8 of 10 boxes (not 6: the first two lost to an update at 1)
    ours = tmp_path / "ours.txt"  # the very lines `track` wrote
    eval_mot.run_gputrack(eval_mot.read_detections(det), ours, 30.0)
    assert ours.read_text() == out.read_text() and len(out.read_text().splitlines()) == 8


def test_sort_baseline_tracks_a_shifted_sequence_the_same(tmp_path, capsys, eval_mot):
    """SORT shows every track in its first 3 frames: those are the first with detections."""
    rows = []
    for by in (0, 100):
        det = write(tmp_path / f"det{by}.txt", shifted(LINES, by))
        gt = write(tmp_path / f"gt{by}.txt", shifted(mot17_gt(), by))
        assert eval_mot.main([str(gt), "--det", str(det)]) == 0
        rows.append(table(capsys.readouterr().out)["SORT baseline"])
    assert rows[0] == rows[1] == ["100.0%", "100.0%", "0", "0", "0", "10"]  # was 80 % shifted


def test_real_data_figures_equal_gputrack_track_and_the_published_sort(tmp_path, capsys,
                                                                       eval_mot):  # fmt: skip
    det = shared_data("mot/TUD-Campus/det.txt")
    gt = shared_data("mot/TUD-Campus/gt.txt")
    out = tmp_path / "track.txt"
    argv = ["track", str(det), "--out", str(out), "--fps", "25", "--gt", str(gt), "--json"]
    assert gputrack(argv) == 0
    m = json.loads(capsys.readouterr().out)["metrics"]
    assert eval_mot.main([str(gt), "--det", str(det), "--fps", "25"]) == 0
    rows = table(capsys.readouterr().out)
    assert rows["gputrack (fps 25)"] == [f"{100 * m['mota']:.1f}%", f"{100 * m['idf1']:.1f}%",
                                         str(m["num_switches"]),
                                         str(m["num_false_positives"]), str(m["num_misses"]),
                                         str(m["num_objects"])]  # fmt: skip
    assert rows["SORT baseline"] == ["62.7%", "60.6%", "6", "15", "113", "359"]  # published


def test_bad_ground_truth_is_refused_as_track_refuses_it(tmp_path, capsys, eval_mot):
    """Nothing to score printed -inf % and another sequence's file a MOTA of -80 %, both with
    exit code 0; the messages are `track --gt`'s, exit code 2, nothing on stdout."""
    det = write(tmp_path / "det.txt", LINES)
    result = tmp_path / "result.txt"
    assert gputrack(["track", str(det), "--out", str(result)]) == 0
    capsys.readouterr()
    cases = [([f"{f},7,100,50,40,80,0,1,1" for f in range(1, 11)], "has no ground truth boxes "
              "to score against (scored are rows with conf != 0 and class 1, or no class as in "
              "MOT15)"),
             (shifted(mot17_gt(), 500), "covers frames 501-510, {what} 1-10; no frame in "
              "common (another sequence's file?)")]  # fmt: skip
    for rows, message in cases:
        gt = write(tmp_path / "gt.txt", rows)
        for argv, what in (([str(result)], f"result {result}"), (["--det", str(det)],
                                                                 "the detections")):
            assert eval_mot.main([str(gt), *argv]) == 2, argv
            out, err = capsys.readouterr()
            assert out == "" and err == f"eval_mot: error: gt {gt}: " \
                f"{message.format(what=what)}\n"
        # `track --gt` says the same of the same file
        assert gputrack(["track", str(det), "--out", str(tmp_path / "r.txt"), "--gt",
                         str(gt)]) == 2  # fmt: skip
        assert f"--gt {gt}: {message.format(what='the detections')}" in capsys.readouterr().err


def test_a_malformed_result_prints_no_half_table(tmp_path, capsys, eval_mot):
    gt = write(tmp_path / "gt.txt", mot17_gt())
    good = write(tmp_path / "good.txt", [f"{f},1,{100 + 3 * f},{50 + f},40,80,1,-1,-1,-1"
                                         for f in range(1, 11)])  # fmt: skip
    bad = write(tmp_path / "bad.txt", ["1,1,100,50,-40,80,1,-1,-1,-1"])
    assert eval_mot.main([str(gt), str(good), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # the header and good.txt's line came before the error
    assert err == f"eval_mot: error: {bad}:1: box width and height must be positive, got -40 " \
        "x 80\n"
    assert eval_mot.main([str(gt), str(good)]) == 0
    assert table(capsys.readouterr().out)[str(good)][:2] == ["100.0%", "100.0%"]


def test_fps_without_det_is_a_usage_error(tmp_path, capsys, eval_mot):
    gt = write(tmp_path / "gt.txt", mot17_gt())
    with pytest.raises(SystemExit) as stop:
        eval_mot.main([str(gt), str(gt), "--fps", "25"])  # was silently ignored
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "--fps" in err and "--det" in err
