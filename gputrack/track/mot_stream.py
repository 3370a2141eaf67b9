"""CLEAR MOT and IDF1 scored frame by frame, in memory that does not grow with the frames.

`score_frames` (mot_eval.py) hands every frame to a motmetrics accumulator, which keeps an
event row per object and hypothesis per frame and sums them up at the end: fine for a
sequence, gigabytes (and a long pause at the end) for a day of frames. `StreamScorer` makes
the same per-frame decisions as motmetrics' `MOTAccumulator.update` (carry last frame's
matches forward, assign the rest with motmetrics' own solver, a changed match is a switch)
and keeps only what the figures are sums of:

- MOTA: misses, false positives, switches and objects, four counters;
- IDF1: for each (truth id, hypothesis id) the frames they were within the IoU threshold.
  motmetrics' global assignment minimises IDFP + IDFN, which is the same as maximising the
  frames shared by the pairs matched one to one, so IDTP is a maximum-weight bipartite
  matching over those counts (solved sparse, here).
Memory grows with the ids seen (each truth id's last match, each pair's count), not with
the frames: in the synthetic world about one new object a second.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching

from gputrack.track.mot_eval import _asfarray_shim, _motmetrics


class StreamScorer:
    """`update(gt_ids, gt_xywh, hyp_ids, hyp_xywh)` once a frame (as `score_frames` takes
    them); `metrics()` at any time: the figures `score_frames` gives for those frames. Ids
    are unique within a frame (a tracker's and the synthetic world's are): an id given twice
    in one frame counts twice here, where motmetrics' IDF1 counts it once per frame."""

    def __init__(self, iou: float = 0.5) -> None:
        mm = _motmetrics()
        self._iou_matrix = mm.distances.iou_matrix
        self._assign = mm.lap.linear_sum_assignment  # motmetrics' solver: the same ties
        self.max_d = 1.0 - iou
        self.frames = 0
        self.objects = self.predictions = 0
        self.misses = self.false_positives = self.switches = self.matches = 0
        self.distance = 0.0  # summed over matches and switches, for MOTP
        self._last: dict[float, float] = {}  # truth id -> hypothesis of its last match
        self._shared: dict[tuple[float, float], int] = {}  # frames within the IoU threshold

    @property
    def pairs(self) -> int:
        """(truth id, hypothesis id) pairs counted: what the memory grows with."""
        return len(self._shared)

    def update(self, gt_ids: Sequence[float] | np.ndarray, gt_xywh: np.ndarray,
               hyp_ids: Sequence[float] | np.ndarray, hyp_xywh: np.ndarray) -> None:
        oids = np.asarray(gt_ids, float).tolist()
        hids = np.asarray(hyp_ids, float).tolist()
        with _asfarray_shim(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = self._iou_matrix(np.asarray(gt_xywh, float).reshape(-1, 4),
                                 np.asarray(hyp_xywh, float).reshape(-1, 4), max_iou=self.max_d)
        d = np.atleast_2d(d).astype(float).reshape(len(oids), len(hids))
        self.frames += 1
        self.objects += len(oids)
        self.predictions += len(hids)
        for i, j in zip(*np.nonzero(np.isfinite(d)), strict=True):
            key = (oids[i], hids[j])
            self._shared[key] = self._shared.get(key, 0) + 1
        o_done = np.zeros(len(oids), bool)
        h_done = np.zeros(len(hids), bool)
        if len(oids) and len(hids):
            # 1. last frame's matches that still hold
            for i, o in enumerate(oids):
                h = self._last.get(o)
                j = next((j for j, x in enumerate(hids) if x == h and not h_done[j]), None)
                if j is not None and np.isfinite(d[i, j]):
                    o_done[i] = h_done[j] = True
                    self._match(d[i, j], switch=False)
            # 2. the rest by minimum total distance; a new partner for a matched truth id
            # is a switch
            rest = d.copy()
            rest[o_done, :] = np.nan
            rest[:, h_done] = np.nan
            for i, j in zip(*self._assign(rest), strict=True):
                if not np.isfinite(rest[i, j]):
                    continue
                o, h = oids[i], hids[j]
                self._match(rest[i, j], switch=o in self._last and self._last[o] != h)
                self._last[o] = h
                o_done[i] = h_done[j] = True
        self.misses += int((~o_done).sum())
        self.false_positives += int((~h_done).sum())

    def _match(self, dist: float, switch: bool) -> None:
        if switch:
            self.switches += 1
        else:
            self.matches += 1
        self.distance += float(dist)

    def idtp(self) -> int:
        """Frames of truth boxes matched by identity under the best one-to-one id matching."""
        if not self._shared:
            return 0
        keys = list(self._shared)
        counts = np.fromiter(self._shared.values(), np.float64, len(keys))
        o_index = {o: k for k, o in enumerate(dict.fromkeys(o for o, _ in keys))}
        h_index = {h: k for k, h in enumerate(dict.fromkeys(h for _, h in keys))}
        o_of = np.array([o_index[o] for o, _ in keys], np.intp)
        h_of = np.array([h_index[h] for _, h in keys], np.intp)
        # Ids that never shared a frame do not compete: each connected group of pairs is
        # matched on its own (most are one truth id and a track or two).
        no = len(o_index)
        linked = csr_matrix((np.ones(len(keys)), (o_of, no + h_of)),
                            shape=(no + len(h_index),) * 2)  # fmt: skip
        group = connected_components(linked, directed=False)[1][o_of]
        order = np.argsort(group, kind="stable")
        bounds = np.flatnonzero(np.diff(group[order])) + 1
        total = 0.0
        for part in np.split(order, bounds):
            if len(part) == 1:
                total += counts[part[0]]
                continue
            total += _max_matching(o_of[part], h_of[part], counts[part])
        return int(total)

    def metrics(self) -> dict[str, float]:
        """mota, idf1, motp, precision, recall as floats (NaN where nothing divides), and
        the counts as ints, as `score_frames` names them."""
        detections = self.matches + self.switches
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = lambda a, b: float(np.float64(a) / np.float64(b))  # noqa: E731
            return {
                "mota": 1.0 - ratio(self.misses + self.switches + self.false_positives,
                                    self.objects),
                "idf1": ratio(2 * self.idtp(), self.objects + self.predictions),
                "motp": ratio(self.distance, detections),
                "precision": ratio(detections, self.false_positives + detections),
                "recall": ratio(detections, self.objects),
                "num_switches": self.switches,
                "num_false_positives": self.false_positives,
                "num_misses": self.misses,
                "num_objects": self.objects,
                "num_predictions": self.predictions,
            }


DENSE_CELLS = 1 << 20  # a group's truth x track ids matched as a dense matrix up to this


def _max_matching(rows: np.ndarray, cols: np.ndarray, counts: np.ndarray) -> float:
    """The largest total of `counts` over pairs `(rows[k], cols[k])` matched one to one."""
    r_ids, r = np.unique(rows, return_inverse=True)
    c_ids, c = np.unique(cols, return_inverse=True)
    no, nh = len(r_ids), len(c_ids)
    if no * nh <= DENSE_CELLS:
        weight = np.zeros((no, nh))
        weight[r, c] = counts
        took = linear_sum_assignment(weight, maximize=True)
        return float(weight[took].sum())
    # Sparse: a full matching of the rows at least cost, each row also able to take a
    # column of its own (cost `big`, no frames); `big - count` > 0 keeps every edge in the
    # matrix. Whole numbers: the optimum is exact.
    big = counts.max() + 1.0
    own = np.arange(no)
    cost = csr_matrix((np.concatenate([big - counts, np.full(no, big)]),
                       (np.concatenate([r, own]), np.concatenate([c, nh + own]))),
                      shape=(no, nh + no))  # fmt: skip
    took_r, took_c = min_weight_full_bipartite_matching(cost)
    took = np.empty(no, np.intp)
    took[took_r] = took_c  # every row is matched (its own column at worst)
    return float(counts[took[r] == c].sum())
