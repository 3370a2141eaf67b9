"""The track verb's files as MOTChallenge tooling uses them: what `track --gt` scores is the
result it wrote (whatever RESULT is: /dev/null, a pipe) against the ground truth it read
(once: a pipe has no second reading), separators py-motmetrics and TrackEval accept, a
detection file joined to itself, scores py-motmetrics' loader would drop, and the JSONL
track log's fields (never NaN)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from gputrack.cli import main
from gputrack.outputs.tracklog import TrackLogWriter, track_entry
from gputrack.track.mot_eval import _asfarray_shim, _motmetrics, _summarise

ROOT = Path(__file__).resolve().parent.parent

# Two people walking right for 12 frames; person 2 is missed in frames 6-7.
DET = [f"{f},-1,{100 + 4 * f},{50 + f},40,80,0.9,-1,-1,-1" for f in range(1, 13)] + [
    f"{f},-1,{300 - 3 * f},60,50,100,0.8,-1,-1,-1" for f in range(1, 13) if f not in (6, 7)]
GT = [f"{f},1,{100 + 4 * f},{50 + f},40,80,1,-1,-1,-1" for f in range(1, 13)] + [
    f"{f},2,{300 - 3 * f},60,50,100,1,-1,-1,-1" for f in range(1, 13)]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def track_json(capsys, *argv: str) -> dict:
    assert main(["track", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def pipe_holding(text: str) -> str:
    """A /dev/fd path of a pipe that holds `text` and then ends: it reads only once."""
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, text.encode()), os.close(w)))
    writer.start()
    return f"/dev/fd/{r}"


def test_scores_are_of_the_result_written_not_of_the_file_read_back(tmp_path, capsys):
    det, gt = write(tmp_path / "det.txt", DET), write(tmp_path / "gt.txt", GT)
    want = track_json(capsys, str(det), "--out", str(tmp_path / "r.txt"), "--gt", str(gt))
    assert want["metrics"]["num_objects"] == 24 and want["metrics"]["mota"] > 0.8
    # /dev/null reads back empty: it scored all misses (MOTA 0) with exit code 0.
    null = track_json(capsys, str(det), "--out", os.devnull, "--gt", str(gt))
    assert null["metrics"] == want["metrics"]
    # A ground truth in a pipe reads once: scoring read it again, empty ('GT boxes 0').
    piped = track_json(capsys, str(det), "--out", str(tmp_path / "r2.txt"), "--gt",
                       pipe_holding((tmp_path / "gt.txt").read_text()))
    assert piped["metrics"] == want["metrics"]


def test_result_to_a_pipe_with_gt_does_not_hang(tmp_path, capsys):
    # Scoring read --out back: from the pipe that is its own output, it waited forever.
    det, gt = write(tmp_path / "det.txt", DET), write(tmp_path / "gt.txt", GT)
    want = track_json(capsys, str(det), "--out", str(tmp_path / "r.txt"), "--gt", str(gt))
    run = subprocess.run([sys.executable, "-m", "gputrack", "track", str(det), "--out",
                          "/dev/stdout", "--gt", str(gt), "--json"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0 and run.stdout == (tmp_path / "r.txt").read_text()
    assert json.loads(run.stderr)["metrics"] == want["metrics"]


def motmetrics_reads(gt: Path, result: Path) -> dict[str, float]:
    """py-motmetrics' own loader and scoring, as its eval_motchallenge app runs them."""
    mm = _motmetrics()
    with _asfarray_shim(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = mm.io.loadtxt(str(gt), fmt="mot15-2D", min_confidence=1)
        h = mm.io.loadtxt(str(result), fmt="mot15-2D")
        return _summarise(mm, mm.utils.compare_to_groundtruth(g, h, "iou", distth=0.5))


@pytest.mark.parametrize("sep", [" ", "\t", "  "])
def test_whitespace_separated_files_read_as_py_motmetrics_and_trackeval_do(tmp_path, capsys,
                                                                           sep):
    det, gt = write(tmp_path / "det.txt", DET), write(tmp_path / "gt.txt", GT)
    want = track_json(capsys, str(det), "--out", str(tmp_path / "r.txt"), "--gt", str(gt))
    det_ws = write(tmp_path / "det_ws.txt", [line.replace(",", sep) for line in DET])
    gt_ws = write(tmp_path / "gt_ws.txt", [line.replace(",", sep) for line in GT])
    got = track_json(capsys, str(det_ws), "--out", str(tmp_path / "r_ws.txt"), "--gt",
                     str(gt_ws))
    assert got["metrics"] == want["metrics"] and got["detections"] == len(DET)
    assert (tmp_path / "r_ws.txt").read_text() == (tmp_path / "r.txt").read_text()
    assert motmetrics_reads(gt_ws, tmp_path / "r.txt")["mota"] == pytest.approx(
        want["metrics"]["mota"], abs=1e-4)


def test_a_repeated_detection_row_is_dropped_and_named(tmp_path, capsys, caplog):
    # `cat det.txt det.txt`: every person was tracked twice, half the boxes false positives.
    det, gt = write(tmp_path / "det.txt", DET + DET), write(tmp_path / "gt.txt", GT)
    once = track_json(capsys, str(write(tmp_path / "once.txt", DET)), "--out",
                      str(tmp_path / "r1.txt"), "--gt", str(gt))
    twice = track_json(capsys, str(det), "--out", str(tmp_path / "r2.txt"), "--gt", str(gt))
    assert twice["metrics"] == once["metrics"] and twice["detections"] == len(DET)
    assert (tmp_path / "r2.txt").read_text() == (tmp_path / "r1.txt").read_text()
    warned = [r.getMessage() for r in caplog.records if "repeated" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].startswith(f"{det}:{len(DET) + 1}: the same detection as line 1 ")
    assert warned[0].endswith(f"; {len(DET)} repeated row(s) dropped")
    caplog.clear()
    # The same box with another score, or in another frame, is no repeat.
    other = DET[0].replace(",0.9,", ",0.7,")
    assert main(["track", str(write(det, DET + [other])), "--out", str(tmp_path / "r4.txt")]) == 0
    later = "13" + DET[0][DET[0].index(","):]  # frame 1's box again, in frame 13
    assert main(["track", str(write(det, DET + [later])), "--out", str(tmp_path / "r5.txt")]) == 0
    assert not caplog.records


def test_scores_below_minus_one_are_said_py_motmetrics_drops_them(tmp_path, capsys):
    low = [line.replace(",0.9,", ",-2.1,").replace(",0.8,", ",-2.2,") for line in DET]
    det, gt = write(tmp_path / "det.txt", low), write(tmp_path / "gt.txt", GT)
    out = tmp_path / "r.txt"
    assert main(["track", str(det), "--out", str(out), "--gt", str(gt), "--min-score", "-3",
                 "--high-score", "-2.5", "--new-track-score", "-2.5"]) == 0
    err = capsys.readouterr().err
    assert "score below -1" in err and "py-motmetrics" in err and err.count("\n") == 1
    # What the note is about: motmetrics' loader (min_confidence=-1) sees an empty result.
    assert motmetrics_reads(gt, out)["num_false_positives"] == 0
    # Scores of -1 and above say nothing.
    assert main(["track", str(write(det, DET)), "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""


def test_gt_score_equals_py_motmetrics_on_the_result_file(tmp_path, capsys):
    det, gt = write(tmp_path / "det.txt", DET), write(tmp_path / "gt.txt", GT)
    out = tmp_path / "r.txt"
    ours = track_json(capsys, str(det), "--out", str(out), "--gt", str(gt))["metrics"]
    theirs = motmetrics_reads(gt, out)
    for k in ("mota", "idf1", "num_switches", "num_false_positives", "num_misses"):
        assert ours[k] == pytest.approx(theirs[k], abs=1e-4), k
    for line in out.read_text().splitlines():  # frame,id,x,y,w,h,conf,-1,-1,-1
        f = line.split(",")
        assert len(f) == 10 and f[0].isdigit() and f[1].isdigit() and f[7:] == ["-1"] * 3
        assert "e" not in line.lower()


def test_track_log_never_writes_nan_or_inf(tmp_path):
    class T:
        id, x, y, w, h, score, cls, state = 3, 1.0, math.nan, 5.0, math.inf, math.nan, 0, "lost"

    path = tmp_path / "t.jsonl"
    with TrackLogWriter(path) as log:
        log.write(0, math.nan, [track_entry(T)], {"isp": math.inf, "total": 1.5})
    text = path.read_text()

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in the log: {text}")

    line = json.loads(text, parse_constant=refuse)
    assert line["t"] is None and line["latency_ms"] == {"isp": None, "total": 1.5}
    assert line["tracks"][0]["bbox"] == [1.0, None, 5.0, None]
    assert line["tracks"][0]["score"] is None


def eval_mot_script():
    spec = importlib.util.spec_from_file_location("eval_mot", ROOT / "scripts" / "eval_mot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_mot_reads_a_pipe(tmp_path, capsys):
    # `eval_mot.py gt.txt <(sort r.txt)` was refused: "'/dev/fd/63': no such file".
    det, gt = write(tmp_path / "det.txt", DET), write(tmp_path / "gt.txt", GT)
    out = tmp_path / "r.txt"
    assert main(["track", str(det), "--out", str(out)]) == 0
    capsys.readouterr()
    eval_mot = eval_mot_script()
    assert eval_mot.main([str(gt), str(out)]) == 0
    want = capsys.readouterr().out.splitlines()[1].split()[1:]
    assert eval_mot.main([str(gt), pipe_holding(out.read_text())]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[1:] == want
    # A file that is not there is still refused before any work, exit 2.
    with pytest.raises(SystemExit) as stop:
        eval_mot.main([str(gt), str(tmp_path / "nope.txt")])
    assert stop.value.code == 2 and "no such file" in capsys.readouterr().err
