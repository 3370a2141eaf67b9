"""A stand-in for the network where ground truth exists (the synthetic world): detections as
a detector gives them, made from the truth, so the tracker and the pipeline can be measured
before a network trained on that world exists. Every summary that uses it says so."""

from __future__ import annotations

import numpy as np


class NoisyTruthDetector:
    """Ground truth `float32[N, 7]` (x1, y1, x2, y2, id, class, visibility) -> Detections
    `float32[N, 6]`: boxes jittered by `jitter` of their size, `miss` of them dropped at
    random, objects less than `min_visible` visible unseen, scores in [0.55, 1)."""

    name = "ground truth + noise (stand-in)"

    def __init__(
        self, seed: int = 0, jitter: float = 0.03, miss: float = 0.05, min_visible: float = 0.3
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.jitter, self.miss, self.min_visible = jitter, miss, min_visible

    def __call__(self, truth: np.ndarray) -> np.ndarray:
        keep = (truth[:, 6] >= self.min_visible) & (self.rng.random(len(truth)) >= self.miss)
        seen = truth[keep]
        wh = seen[:, 2:4] - seen[:, :2]
        dets = np.empty((len(seen), 6), np.float32)
        dets[:, :4] = seen[:, :4] + self.rng.normal(0, self.jitter, (len(seen), 4)) * np.tile(wh, 2)
        dets[:, 4] = self.rng.uniform(0.55, 1.0, len(seen))
        dets[:, 5] = seen[:, 5]
        return dets
