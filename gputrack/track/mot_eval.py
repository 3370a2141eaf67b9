"""Score a MOTChallenge result against ground truth with `motmetrics` (CLEAR MOT and IDF1).

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

from gputrack.errors import GputrackError
from gputrack.track.mot_io import read_ground_truth, read_mot_rows

METRICS = ("mota", "idf1", "num_switches", "num_false_positives", "num_misses", "motp",
           "precision", "recall", "num_objects", "num_unique_objects", "mostly_tracked",
           "mostly_lost", "num_fragmentations")


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
    return {k: float(summary[k].iloc[0]) for k in METRICS}


def score_frames(
    frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], iou: float = 0.5
) -> dict[str, float]:
    """As `evaluate`, for data in memory: one `(gt_ids, gt_xywh, hyp_ids, hyp_xywh)` per
    frame, boxes as `[N, 4]` top-left x, y, width, height."""
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

    Ratios are fractions (0.627 is 62.7 %); counts are whole numbers."""
    mm = _motmetrics()
    check_ground_truth(gt_path)  # FILE:LINE: what is wrong, rather than a pandas error
    read_mot_rows(result_path, "result file")
    with _asfarray_shim(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas FutureWarnings from inside motmetrics
        try:
            gt = mm.io.loadtxt(str(gt_path), fmt="mot15-2D", min_confidence=1)
            hyp = mm.io.loadtxt(str(result_path), fmt="mot15-2D")
        except Exception as err:  # pandas parser errors come in many types
            raise GputrackError(f"cannot read {gt_path} or {result_path}: {err}") from None
        acc = mm.utils.compare_to_groundtruth(gt, hyp, "iou", distth=1.0 - iou)
        return _summarise(mm, acc)


def check_ground_truth(gt_path: str | Path) -> tuple[int, int]:
    """Before any work: the scorer is installed and the ground truth reads; returns the
    first and last frame it covers ((0, 0) when it has no boxes)."""
    _motmetrics()
    rows = read_ground_truth(gt_path)
    if len(rows) == 0:
        return 0, 0
    return int(rows[:, 0].min()), int(rows[:, 0].max())


def finite_or_none(value: float, digits: int = 4) -> float | None:
    """A metric for JSON, which has no NaN: a ratio with nothing to divide by (no ground
    truth boxes) is None."""
    return round(value, digits) if np.isfinite(value) else None


def percent(value: float | None) -> str:
    """A ratio as '62.7 %', or '- %' where there was nothing to divide by."""
    return f"{100 * value:.1f} %" if value is not None and np.isfinite(value) else "- %"


def format_summary(m: dict[str, float]) -> str:
    """One line: MOTA, IDF1, IDsw, FP, misses."""
    return (f"MOTA {percent(m['mota'])}  IDF1 {percent(m['idf1'])}  "
            f"IDsw {int(m['num_switches'])}  FP {int(m['num_false_positives'])}  "
            f"misses {int(m['num_misses'])}  (GT boxes {int(m['num_objects'])})")
