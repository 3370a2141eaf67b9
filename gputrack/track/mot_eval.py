"""Score a MOTChallenge result against ground truth with `motmetrics` (CLEAR MOT and IDF1).

Which ground truth counts follows the MOTChallenge devkit (`mot_io.scored_ground_truth`):
boxes with conf 0 and classes other than pedestrian are not scored, and a hypothesis that
covers a distractor (static person, reflection, ...) is dropped, not counted as a false
positive (`not_on_distractors`). Files are scored from the rows `mot_io` parsed, so any
file that passes its checks is scored; motmetrics only accumulates and sums up.

motmetrics 1.4.0, the latest release, calls `np.asfarray`, which NumPy 2 removed (fixed
upstream, not released). `_asfarray_shim` lends NumPy that one function for the duration of
a scoring call and takes it back afterwards, so nothing else sees a patched NumPy.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from gputrack.errors import GputrackError, UsageError
from gputrack.track.mot_io import GroundTruth, read_ground_truth, read_mot_rows

DISTRACTOR_IOU = 0.5  # the devkit's, whatever IoU the scoring itself uses

METRICS = ("mota", "idf1", "num_switches", "num_false_positives", "num_misses", "motp",
           "precision", "recall", "num_objects", "num_unique_objects", "mostly_tracked",
           "mostly_lost", "num_fragmentations")
# Whole numbers: motmetrics gives every metric as a float, JSON would print 3.0 for them.
COUNTS = frozenset(("num_switches", "num_false_positives", "num_misses", "num_objects",
                    "num_unique_objects", "mostly_tracked", "mostly_lost", "num_fragmentations"))


@contextlib.contextmanager
def _asfarray_shim() -> Iterator[None]:
    if hasattr(np, "asfarray"):
        yield
        return
    np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del np.asfarray


def _motmetrics():
    try:
        import motmetrics as mm
    except ImportError:
        raise GputrackError("scoring needs the 'motmetrics' package (pip install "
                            "motmetrics)") from None
    return mm


def _summarise(mm, acc) -> dict[str, float]:
    summary = mm.metrics.create().compute(acc, metrics=list(METRICS), name="seq")
    values = {k: float(summary[k].iloc[0]) for k in METRICS}
    return {k: int(v) if k in COUNTS and np.isfinite(v) else v for k, v in values.items()}


def score_frames(
    frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], iou: float = 0.5
) -> dict[str, float]:
    """As `evaluate`, for data in memory: one `(gt_ids, gt_xywh, hyp_ids, hyp_xywh)` per
    frame, boxes as `[N, 4]` top-left x, y, width, height. Ratios are floats, counts
    (`COUNTS`) ints."""
    mm = _motmetrics()
    acc = mm.MOTAccumulator(auto_id=True)
    with _asfarray_shim(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for gt_ids, gt_box, hyp_ids, hyp_box in frames:
            dist = mm.distances.iou_matrix(np.asarray(gt_box, float).reshape(-1, 4),
                                           np.asarray(hyp_box, float).reshape(-1, 4),
                                           max_iou=1.0 - iou)
            acc.update(list(gt_ids), list(hyp_ids), dist)
        return _summarise(mm, acc)


def evaluate(gt_path: str | Path, result_path: str | Path, iou: float = 0.5) -> dict[str, float]:
    """MOTA, IDF1, ID switches, false positives, misses and more, matching at IoU >= `iou`.

    Ratios are fractions (0.627 is 62.7 %); counts (`COUNTS`) are ints."""
    _motmetrics()
    gt = read_ground_truth(gt_path)  # FILE:LINE: what is wrong, rather than a pandas error
    hyp, _ = read_mot_rows(result_path, "result file")
    return score_frames(ground_truth_frames(gt, hyp), iou)


def ground_truth_frames(
    gt: GroundTruth, hyp: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """`score_frames` input from a ground truth and result rows (frame, id, x, y, w, h, ...):
    one entry per frame that has a scored box or a hypothesis, in frame order, boxes in file
    order (as motmetrics' own loader gives them), hypotheses on distractors dropped."""
    gt_at = _by_frame(gt.rows[:, 0])
    other_at = _by_frame(gt.others[:, 0])
    hyp_at = _by_frame(hyp[:, 0])
    none = np.zeros(0, np.int64)
    frames = []
    for frame in sorted(gt_at.keys() | hyp_at.keys()):
        g = gt.rows[gt_at.get(frame, none)]
        h = hyp[hyp_at.get(frame, none)]
        o = other_at.get(frame, none)
        if len(o) and len(h):  # all boxes of the frame take part in the matching
            boxes = np.concatenate([g[:, 2:6], gt.others[o, 1:5]])
            flags = np.concatenate([np.zeros(len(g), bool), gt.distractor[o]])
            h = h[not_on_distractors(boxes, flags, h[:, 2:6])]
        frames.append((g[:, 1], g[:, 2:6], h[:, 1], h[:, 2:6]))
    return frames


def _by_frame(frames: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices per frame, each in file order."""
    if len(frames) == 0:
        return {}
    order = np.argsort(frames, kind="stable")
    values, starts = np.unique(frames[order], return_index=True)
    return {int(f): i for f, i in zip(values, np.split(order, starts[1:]), strict=True)}


def not_on_distractors(gt_xywh: np.ndarray, distractor: np.ndarray,
                         hyp_xywh: np.ndarray) -> np.ndarray:
    """Which hypotheses of one frame to keep (bool mask): the devkit matches hypotheses to
    all ground truth boxes of the frame, of any class or conf, one to one by the largest
    total IoU among pairs with IoU >= 0.5, and drops those matched to a distractor box.
    Matching to all boxes, not just distractors, keeps a hypothesis on a pedestrian who
    stands next to a static person."""
    from scipy.optimize import linear_sum_assignment

    keep = np.ones(len(hyp_xywh), bool)
    if not distractor.any() or len(hyp_xywh) == 0:
        return keep
    sim = _iou_xywh(np.asarray(gt_xywh, float), np.asarray(hyp_xywh, float))
    sim[sim < DISTRACTOR_IOU - 1e-12] = 0.0  # 1e-12: an IoU of exactly 0.5 still matches
    rows, cols = linear_sum_assignment(sim, maximize=True)
    matched = sim[rows, cols] > 0
    keep[cols[matched & distractor[rows]]] = False
    return keep


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` with every box in `b`, both `[N, 4]` x, y, w, h."""
    ax2, ay2, bx2, by2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(ax2[:, None], bx2) - np.maximum(a[:, None, 0], b[:, 0])
    ih = np.minimum(ay2[:, None], by2) - np.maximum(a[:, None, 1], b[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + b[:, 2] * b[:, 3] - inter
    return inter / union


def check_ground_truth(gt_path: str | Path) -> tuple[int, int]:
    """Before any work: the scorer is installed and the ground truth reads; returns the
    first and last frame with a scored box ((0, 0) when it has none: only distractors, other
    classes or conf 0 rows)."""
    _motmetrics()
    return read_ground_truth(gt_path).frames()


def check_ground_truth_covers(
    gt_path: str | Path, inputs: dict[str, tuple[int, int]], option: str = "--gt"
) -> GroundTruth:
    """What `track --gt` and `scripts/eval_mot.py` refuse before any work, as a `UsageError`
    (exit 2) naming `option` and the file: a ground truth with nothing to score (its MOTA
    would be -inf or 0/0), and one that shares no frame with an input (another sequence's
    file, which would score as all misses and false positives). `inputs` names each input
    with its first and last frame; leave out one without frames (an empty result).
    A malformed file is the `GputrackError` of `read_ground_truth`. Returns the ground truth
    as read, to score with (`ground_truth_frames`)."""
    _motmetrics()
    gt = read_ground_truth(gt_path)
    first, last = gt.frames()
    if first == 0:
        raise UsageError(
            f"{option} {gt_path}: has no ground truth boxes to score against (scored are rows "
            "with conf != 0 and class 1, or no class as in MOT15)"
        )
    for what, (low, high) in inputs.items():
        if last < low or first > high:
            raise UsageError(
                f"{option} {gt_path}: covers frames {first}-{last}, {what} {low}-{high}; no "
                "frame in common (another sequence's file?)"
            )
    return gt


def finite_or_none(value: float, digits: int = 4) -> float | None:
    """A metric for JSON, which has no NaN: a ratio with nothing to divide by (no ground
    truth boxes) is None. A count stays an int (round keeps it one)."""
    return round(value, digits) if np.isfinite(value) else None


def percent(value: float | None) -> str:
    """A ratio as '62.7 %', or '- %' where there was nothing to divide by."""
    return f"{100 * value:.1f} %" if value is not None and np.isfinite(value) else "- %"


def format_summary(m: dict[str, float]) -> str:
    """One line: MOTA, IDF1, IDsw, FP, misses."""
    return (f"MOTA {percent(m['mota'])}  IDF1 {percent(m['idf1'])}  "
            f"IDsw {int(m['num_switches'])}  FP {int(m['num_false_positives'])}  "
            f"misses {int(m['num_misses'])}  (GT boxes {int(m['num_objects'])})")
