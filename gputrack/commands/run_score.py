"""Scoring a run's tracks against the source's ground truth as the frames go (MOTA, IDF1), in
bounded memory."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gputrack.sensor.roi import Roi
from gputrack.sensor.sources import Source

SCORED_VISIBILITY = 0.3  # objects less visible than this are not scored (MOTA, IDF1)
# Scoring keeps a count per (truth id, track id) pair (IDF1), ~190 bytes each: measured 1.5
# new pairs a second in the default synthetic world. Past this many (~190 MB, about a week)
# scoring stops, and the summary says so.
MAX_SCORED_PAIRS = 1_000_000


class RunScoring:
    """`scoring.add(frame.truth, tracks)` once per frame; `scoring.scorer` is then the
    StreamScorer (None: no frame had ground truth). What limits the scoring is told in the
    source's notes."""

    def __init__(self, source: Source, frames: int | None, roi: Roi | None) -> None:
        self.source = source
        self.roi = roi
        self.scorer: Any = None  # a StreamScorer from the first frame with ground truth
        # A ring of prerendered frames jumps back at its wrap: tracking is scored on one pass
        ring = getattr(source, "ring", None)
        self.frames_to_score = len(ring) if ring is not None else math.inf
        if ring is not None and (frames is None or frames > len(ring)):
            source.notes.append(f"ring={len(ring)}: tracking is scored on the first "
                                f"{len(ring)} frames, one pass of the ring (the scene jumps "
                                "back at its wrap)")  # fmt: skip

    def add(self, truth: np.ndarray | None, tracks: list) -> None:
        """Score one frame's tracks against its ground truth (None: the frame has none)."""
        done = self.scorer.frames if self.scorer is not None else 0
        if truth is None or done >= self.frames_to_score:
            return
        if self.roi is not None:  # scored on what the window sees
            truth = self.roi.truth(truth)
        if self.scorer is None:
            self.scorer = new_scorer()
        self.scorer.update(*score_row(truth, tracks))
        if self.scorer.pairs >= MAX_SCORED_PAIRS:  # no more: memory stays bounded
            self.frames_to_score = self.scorer.frames
            self.source.notes.append(
                f"tracking is scored on the first {self.frames_to_score} frames: "
                f"{self.scorer.pairs} truth/track id pairs, the most kept")


def score_row(truth: np.ndarray, tracks: list) -> tuple:
    """One frame for `score_frames`: the objects at least SCORED_VISIBILITY visible against
    the confirmed tracks. A track on an object less visible (entering, leaving, mostly
    hidden) counts neither way, as one on a distractor in the MOT devkit: the same matching
    (`not_on_distractors`) drops it; scored as a false positive it cost ~3 MOTA points."""
    from gputrack.track.mot_eval import not_on_distractors

    boxes = np.column_stack([truth[:, :2], truth[:, 2:4] - truth[:, :2]])
    hidden = truth[:, 6] < SCORED_VISIBILITY
    shown = [t for t in tracks if t.state == "confirmed"]
    hyp = np.array([(t.x, t.y, t.w, t.h) for t in shown], np.float64).reshape(-1, 4)
    keep = not_on_distractors(boxes, hidden, hyp)
    return (truth[~hidden, 4], boxes[~hidden], [t.id for t, k in zip(shown, keep, strict=True)
                                                if k], hyp[keep])  # fmt: skip


def new_scorer() -> Any:
    # imported here: only runs with ground truth pay for it
    from gputrack.track.mot_stream import StreamScorer

    return StreamScorer()
