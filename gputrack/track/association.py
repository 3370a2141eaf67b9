"""Matching tracks to detections: a similarity and a linear assignment.

The similarity is the IoU of the predicted box and the detection. Small or fast objects can
miss the prediction entirely (IoU 0) although the detection is obviously theirs, so a second
term scores the centre distance measured in standard deviations of the predicted centre;
the larger of the two counts.
A detection of another class scores nothing, so classes never steal each other's tracks.

`match` is what the tracker uses: it scores only pairs that can score at all (found by a
sort along x), matches pairs that have no rival directly and solves the rest with one
linear assignment. That gives the same matches as `assign(similarity(...))` on the whole
matrix, in time that grows with the number of nearby pairs instead of tracks x detections.
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
    return np.stack([rows, cols], axis=1), _free(n, rows), _free(m, cols)


def _free(n: int, taken: np.ndarray) -> np.ndarray:
    free = np.ones(n, bool)
    free[taken] = False
    return np.flatnonzero(free)


def _compact(idx: np.ndarray, n: int) -> np.ndarray:
    """The sorted distinct values of `idx` (all in 0..n-1), cheaper than np.unique."""
    seen = np.zeros(n, bool)
    seen[idx] = True
    return np.flatnonzero(seen)


def pairs_near(
    a: np.ndarray, a_std: np.ndarray, b: np.ndarray, gate: float, centre_weight: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair `(i, j)` of track `a[i]` and detection `b[j]` (boxes as cx, cy, w, h) whose
    similarity can be above 0, with that similarity (as in `similarity`).

    A pair scores only if the boxes overlap or (centre term on) the centres are within `gate`
    std on both axes, so a window along x over the detections sorted by x finds them all.
    """
    if centre_weight <= 0:
        gate = 0.0
    ha, hb = 0.5 * a[:, 2:4], 0.5 * b[:, 2:4]
    order = np.argsort(b[:, 0], kind="stable")
    xs = b[order, 0]
    rx = np.maximum(ha[:, 0] + hb[:, 0].max(), gate * a_std[:, 0])
    lo = np.searchsorted(xs, a[:, 0] - rx, "left")
    n = np.searchsorted(xs, a[:, 0] + rx, "right") - lo
    i = np.repeat(np.arange(len(a)), n)
    j = order[np.arange(n.sum()) - np.repeat(np.cumsum(n) - n - lo, n)]
    # The same coarse test along y (cheap, and most of a crowded window goes here),
    ry = np.maximum(ha[:, 1] + hb[:, 1].max(), gate * a_std[:, 1])
    near = np.abs(a[i, 1] - b[j, 1]) < ry[i]
    i, j = i[near], j[near]
    # then the exact one, and the IoU from centre distance and half sizes of what is left.
    ha_i, hb_j = ha[i], hb[j]
    d = np.abs(a[i, :2] - b[j, :2])
    near = (d < np.maximum(ha_i + hb_j, gate * a_std[i])).all(axis=1)
    i, j, d, ha_i, hb_j = i[near], j[near], d[near], ha_i[near], hb_j[near]
    overlap = np.clip(np.minimum(ha_i + hb_j - d, 2.0 * np.minimum(ha_i, hb_j)), 0.0, None)
    inter = overlap[:, 0] * overlap[:, 1]
    area_a, area_b = 4.0 * ha_i[:, 0] * ha_i[:, 1], 4.0 * hb_j[:, 0] * hb_j[:, 1]
    sim = inter / np.maximum(area_a + area_b - inter, 1e-9)
    if centre_weight > 0:
        dist = np.sqrt(((d / a_std[i]) ** 2).sum(axis=1))
        # A box twice as large (or small) is another object, not the same one further away.
        odd = np.maximum(area_a, area_b) > 4.0 * np.minimum(area_a, area_b)
        centre = np.where(odd, 0.0, 1.0 - dist / gate)
        sim = np.maximum(sim, centre_weight * np.clip(centre, 0.0, None))
    return i, j, sim


def match(
    tracks: np.ndarray,
    track_std: np.ndarray,
    track_cls: np.ndarray,
    dets: np.ndarray,
    det_cls: np.ndarray,
    min_sim: float,
    centre_gate: float = 3.0,
    centre_weight: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`assign(similarity(...), min_sim)` on nearby pairs only (see module doc); boxes here
    are `cx, cy, w, h`, the Kalman filter's measurement, and `min_sim` must be above 0.

    Returns `(matches[K, 2] as (track, detection), unmatched tracks, unmatched detections)`.
    """
    n, m = len(tracks), len(dets)
    if n == 0 or m == 0:
        return np.empty((0, 2), dtype=np.intp), np.arange(n), np.arange(m)
    i, j, sim = pairs_near(tracks, track_std, dets, centre_gate, centre_weight)
    ok = (sim >= min_sim) & (track_cls[i] == det_cls[j])
    i, j, sim = i[ok], j[ok], sim[ok]
    # A pair whose track and detection have no other valid partner is matched as it is.
    lone = (np.bincount(i, minlength=n)[i] == 1) & (np.bincount(j, minlength=m)[j] == 1)
    pairs = [np.stack([i[lone], j[lone]], axis=1)]
    if not lone.all():
        i, j, sim = i[~lone], j[~lone], sim[~lone]
        rows, cols = _compact(i, n), _compact(j, m)
        sub = np.zeros((len(rows), len(cols)))
        sub[np.searchsorted(rows, i), np.searchsorted(cols, j)] = sim
        got, _, _ = assign(sub, min_sim)
        pairs.append(np.stack([rows[got[:, 0]], cols[got[:, 1]]], axis=1))
    pairs = np.concatenate(pairs)
    return pairs, _free(n, pairs[:, 0]), _free(m, pairs[:, 1])
