"""Matching tracks to detections: a similarity matrix and a linear assignment.

The similarity is the IoU of the predicted box and the detection. Small or fast objects can
miss the prediction entirely (IoU 0) although the detection is obviously theirs, so a second
term scores the centre distance measured in standard deviations of the predicted centre;
the larger of the two counts.
A detection of another class scores nothing, so classes never steal each other's tracks.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a[N, 4]` with every box in `b[M, 4]` (x1, y1, x2, y2)."""
    a = a[:, None, :4]
    b = b[None, :, :4]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def centre_similarity(a: np.ndarray, std: np.ndarray, b: np.ndarray, gate: float) -> np.ndarray:
    """`1 - d / gate`, clipped at 0, where d is the centre distance of boxes `a[N, 4]` and
    `b[M, 4]` in standard deviations `std[N, 2]` (x, y) of each track's predicted centre
    (the Kalman innovation): a new or lost track, whose position is uncertain, reaches
    further than one followed for a while. Boxes of very different size score 0."""
    ca = 0.5 * (a[:, None, :2] + a[:, None, 2:4])
    cb = 0.5 * (b[None, :, :2] + b[None, :, 2:4])
    d = np.sqrt((((ca - cb) / std[:, None, :]) ** 2).sum(axis=-1))
    sim = 1.0 - d / gate
    # A box twice as large (or small) is another object, not the same one further away.
    sa = np.sqrt(np.maximum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), 1e-9))[:, None]
    sb = np.sqrt(np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9))[None, :]
    sim[np.maximum(sa, sb) > 2.0 * np.minimum(sa, sb)] = 0.0
    return np.clip(sim, 0.0, None)


def similarity(
    tracks: np.ndarray,
    track_cls: np.ndarray,
    dets: np.ndarray,
    det_cls: np.ndarray,
    track_std: np.ndarray | None = None,
    centre_gate: float = 3.0,
    centre_weight: float = 0.5,
) -> np.ndarray:
    """`[N, M]` similarity in [0, 1] of track boxes to detection boxes (x1, y1, x2, y2):
    the IoU, or `centre_weight` times the centre similarity where that is larger."""
    if len(tracks) == 0 or len(dets) == 0:
        return np.zeros((len(tracks), len(dets)))
    sim = iou_matrix(tracks, dets)
    if centre_weight > 0 and track_std is not None:
        sim = np.maximum(sim, centre_weight * centre_similarity(tracks, track_std, dets,
                                                                centre_gate))
    sim[track_cls[:, None] != det_cls[None, :]] = 0.0
    return sim


def assign(sim: np.ndarray, min_sim: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-similarity one-to-one matching; pairs below `min_sim` are not matches.

    Returns `(matches[K, 2] as (row, col), unmatched rows, unmatched cols)`.
    """
    n, m = sim.shape
    if n == 0 or m == 0:
        return np.empty((0, 2), dtype=np.intp), np.arange(n), np.arange(m)
    # Pairs below the threshold are made worthless so they never displace a valid pair.
    cost = np.where(sim >= min_sim, -sim, 0.0)
    rows, cols = linear_sum_assignment(cost)
    ok = sim[rows, cols] >= min_sim
    rows, cols = rows[ok], cols[ok]
    free_rows = np.setdiff1d(np.arange(n), rows, assume_unique=True)
    free_cols = np.setdiff1d(np.arange(m), cols, assume_unique=True)
    return np.stack([rows, cols], axis=1), free_rows, free_cols
