"""Scoring against MOTChallenge ground truth: which boxes count (the devkit's rule), and that
scoring from gputrack's own parsed rows equals motmetrics' loader on real data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gputrack.cli import main
from gputrack.errors import GputrackError
from gputrack.track.mot_eval import (
    _asfarray_shim,
    _motmetrics,
    _summarise,
    check_ground_truth,
    evaluate,
    not_on_distractors,
    percent,
)
from gputrack.track.mot_io import read_ground_truth
from tests.conftest import shared_data

FRAMES = range(1, 6)
PERSON, STATIC, CAR, IGNORED = (100, 50, 40, 80), (300, 50, 40, 80), (500, 50, 80, 40), (
    700, 50, 40, 80)


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def gt_line(frame, ident, box, conf, cls, vis=1.0):
    return f"{frame},{ident},{box[0]},{box[1]},{box[2]},{box[3]},{conf},{cls},{vis}"


def hyp_line(frame, ident, box):
    return f"{frame},{ident},{box[0]},{box[1]},{box[2]},{box[3]},1,-1,-1,-1"


def mot17(tmp_path):
    """A pedestrian, a static person (class 7, conf 0 as in MOT17), a car (class 3, conf 1)
    and a pedestrian flagged 'ignore' (conf 0), in frames 1-5."""
    return write(tmp_path / "gt.txt", [
        line for f in FRAMES for line in (
            gt_line(f, 1, PERSON, 1, 1), gt_line(f, 2, STATIC, 0, 7),
            gt_line(f, 3, CAR, 1, 3), gt_line(f, 4, IGNORED, 0, 1))])


def test_a_hypothesis_on_a_distractor_is_neither_false_positive_nor_miss(tmp_path):
    gt = mot17(tmp_path)
    hyp = write(tmp_path / "r.txt", [line for f in FRAMES for line in (
        hyp_line(f, 1, PERSON), hyp_line(f, 2, STATIC))])
    m = evaluate(gt, hyp)
    # Only the pedestrian counts: the static person's hypothesis is dropped, the car and
    # the conf-0 pedestrian are no misses.
    assert m["num_objects"] == 5 and m["num_unique_objects"] == 1
    assert m["num_false_positives"] == 0 and m["num_misses"] == 0 and m["mota"] == 1.0


def test_a_hypothesis_on_an_ignored_box_is_a_false_positive(tmp_path):
    # As the devkit: only distractor classes (2, 7, 8, 12) take hypotheses away.
    gt = mot17(tmp_path)
    hyp = write(tmp_path / "r.txt", [line for f in FRAMES for line in (
        hyp_line(f, 1, PERSON), hyp_line(f, 3, CAR), hyp_line(f, 4, IGNORED))])
    m = evaluate(gt, hyp)
    assert m["num_objects"] == 5 and m["num_misses"] == 0
    assert m["num_false_positives"] == 10


def test_a_hypothesis_near_a_distractor_but_on_a_person_is_kept(tmp_path):
    # A person in front of a static person: the hypothesis overlaps both (IoU 0.6 with the
    # static person), the matching gives it to the person it covers better.
    near = (110, 50, 40, 80)
    gt = write(tmp_path / "gt.txt", [gt_line(1, 1, PERSON, 1, 1), gt_line(1, 2, near, 0, 7)])
    hyp = write(tmp_path / "r.txt", [hyp_line(1, 1, PERSON)])
    m = evaluate(gt, hyp)
    assert m["num_false_positives"] == 0 and m["num_misses"] == 0 and m["mota"] == 1.0
    # Just under IoU 0.5 with the distractor: not dropped, a false positive.
    off = (114, 50, 40, 80)  # IoU 26/54 = 0.48
    gt = write(tmp_path / "gt.txt", [gt_line(1, 1, (600, 50, 40, 80), 1, 1),
                                     gt_line(1, 2, PERSON, 0, 7)])
    hyp = write(tmp_path / "r.txt", [hyp_line(1, 1, off)])
    assert evaluate(gt, hyp)["num_false_positives"] == 1


def test_not_on_distractors_is_one_to_one():
    boxes = np.array([PERSON, PERSON], float)  # a pedestrian and a distractor, same place
    hyps = np.array([PERSON, PERSON, (100, 50, 40, 79)], float)
    keep = not_on_distractors(boxes, np.array([False, True]), hyps)
    assert keep.sum() == 2  # exactly one hypothesis goes to the distractor
    assert not_on_distractors(boxes, np.array([False, False]), hyps).all()
    assert not_on_distractors(boxes, np.array([False, True]), np.zeros((0, 4))).shape == (0,)


def test_mot15_ground_truth_has_no_classes(tmp_path):
    # MOT15: conf 1, then -1,-1,-1 (world coordinates unused); every conf != 0 row counts.
    gt = write(tmp_path / "gt.txt", [f"{f},1,100,50,40,80,1,-1,-1,-1" for f in FRAMES]
               + [f"{f},2,300,50,40,80,0,-1,-1,-1" for f in FRAMES]
               + ["6,3,10,10,20,20,1", "6,4,50,10,20,20,0.5"])  # 7 fields: no class;
    # a 'consider' flag of 0.5 is 0 to the devkit, which reads it as a whole number
    hyp = write(tmp_path / "r.txt", [hyp_line(f, 1, PERSON) for f in FRAMES])
    m = evaluate(gt, hyp)
    assert m["num_objects"] == 6 and m["num_misses"] == 1 and m["num_false_positives"] == 0
    assert check_ground_truth(gt) == (1, 6)


def test_duplicates_only_among_unscored_rows_pass(tmp_path):
    rows = [gt_line(1, 1, PERSON, 1, 1), gt_line(1, 2, STATIC, 0, 7),
            gt_line(1, 2, STATIC, 0, 7), gt_line(1, 4, CAR, 0, 1), gt_line(1, 4, CAR, 0, 1)]
    assert len(read_ground_truth(write(tmp_path / "gt.txt", rows)).rows) == 1
    with pytest.raises(GputrackError, match=r"gt.txt:3: identity 1 is already in frame 1"):
        read_ground_truth(write(tmp_path / "gt.txt", rows[:1] + [rows[1], rows[0]]))


def test_only_distractors_is_no_ground_truth(tmp_path):
    gt = write(tmp_path / "gt.txt", [gt_line(f, 2, STATIC, 1, 7) for f in FRAMES]
               + [gt_line(1, 3, CAR, 1, 3), gt_line(1, 4, PERSON, 0, 1)])
    assert check_ground_truth(gt) == (0, 0)


def test_bad_class_field_names_the_line(tmp_path):
    gt = write(tmp_path / "gt.txt", [gt_line(1, 1, PERSON, 1, 1), "2,1,1,2,40,80,1,ped,1"])
    with pytest.raises(GputrackError, match=r"gt.txt:2: class \(field 8\) must be a whole "
                       r"number, got 'ped'"):
        check_ground_truth(gt)
    for bad in ("nan", "1.5", "inf"):
        gt = write(tmp_path / "gt.txt", [f"2,1,1,2,40,80,1,{bad},1"])
        with pytest.raises(GputrackError, match=rf"gt.txt:1: class .* got '{bad}'"):
            check_ground_truth(gt)
    # 10 fields (MOT15, results) end in world coordinates, not a class; a blank is no class
    gt = write(tmp_path / "gt.txt", ["2,1,1,2,40,80,1,7.5,3,0", "3,1,1,2,40,80,1,"])
    assert check_ground_truth(gt) == (2, 3)


def test_comments_and_comma_space_score_as_the_plain_file(tmp_path):
    det = shared_data("mot/TUD-Campus/det.txt")
    plain = shared_data("mot/TUD-Campus/gt.txt")
    lines = plain.read_text().splitlines()
    odd = write(tmp_path / "gt.txt", ["# TUD-Campus, frame,id,x,y,w,h,conf,x,y,z"]
                + [line.replace(",", ", ") for line in lines[:100]] + ["", "  # half-way"]
                + lines[100:])
    out = tmp_path / "result.txt"
    assert main(["track", str(det), "--out", str(out), "--fps", "25", "--gt", str(odd)]) == 0
    assert evaluate(odd, out) == evaluate(plain, out)


def _motmetrics_loader(gt, result, iou: float = 0.5) -> dict[str, float]:
    """The scoring as it was: motmetrics reads both files (pandas), min_confidence=1."""
    mm = _motmetrics()
    with _asfarray_shim(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = mm.io.loadtxt(str(gt), fmt="mot15-2D", min_confidence=1)
        h = mm.io.loadtxt(str(result), fmt="mot15-2D")
        return _summarise(mm, mm.utils.compare_to_groundtruth(g, h, "iou", distth=1.0 - iou))


@pytest.mark.parametrize("fps", [25, 30])
def test_tud_campus_scores_as_motmetrics_own_loader(tmp_path, capsys, fps):
    det = shared_data("mot/TUD-Campus/det.txt")
    gt = shared_data("mot/TUD-Campus/gt.txt")
    out = tmp_path / "result.txt"
    assert main(["track", str(det), "--out", str(out), "--fps", str(fps)]) == 0
    for iou in (0.5, 0.3):
        ours, theirs = evaluate(gt, out, iou), _motmetrics_loader(gt, out, iou)
        assert ours.keys() == theirs.keys()
        for k, v in theirs.items():  # MOTP alone sums float distances (X, Y shifted by 1)
            assert ours[k] == pytest.approx(v, rel=1e-12, abs=1e-12), (k, ours[k], v)
    assert theirs["num_objects"] == 359 and theirs["num_false_positives"] > 0


def test_percent_of_nothing():
    assert percent(float("nan")) == "- %" and percent(None) == "- %"
    assert percent(0.6274) == "62.7 %"
