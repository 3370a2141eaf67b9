"""`gputrack track`: result file, summary, scoring, and clear errors for bad input."""

from __future__ import annotations

import json

import pytest

from gputrack.cli import main
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
        ("3,-1,1,2,40,80,nan", "det.txt:3: box or score is not finite"),
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
    assert main(["track", str(det), "--out", str(tmp_path / "r.txt"), "--fps", "0"]) == 2
    assert main(["track", str(det), "--out", str(tmp_path / "no" / "r.txt")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_track_scores_against_ground_truth(tmp_path, capsys):
    det = shared_data("mot/TUD-Campus/det.txt")
    gt = shared_data("mot/TUD-Campus/gt.txt")
    out = tmp_path / "result.txt"
    assert main(["track", str(det), "--out", str(out), "--fps", "25", "--gt", str(gt),
                 "--json"]) == 0
    m = json.loads(capsys.readouterr().out)["metrics"]
    assert m["mota"] >= 0.64 and m["idf1"] >= 0.75


def test_ctrl_c_keeps_the_frames_done(tmp_path, capsys, monkeypatch):
    from gputrack.track import Tracker

    real = Tracker.update_array

    def interrupted(self, dets, frame=None):
        if frame == 6:
            raise KeyboardInterrupt
        return real(self, dets, frame)

    monkeypatch.setattr(Tracker, "update_array", interrupted)
    det = write(tmp_path / "det.txt", LINES)
    out = tmp_path / "result.txt"
    assert main(["track", str(det), "--out", str(out)]) == 130
    assert "holds frames 1-5 of 10" in capsys.readouterr().err
    assert [line.split(",")[0] for line in out.read_text().splitlines()] == list("12345")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
