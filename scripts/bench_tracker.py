"""Tracker speed: updates per second for 10, 100 and 1000 objects per frame, on one CPU core,
for gputrack's tracker and for SORT's algorithm run the same way.

The SORT baseline below is written for this benchmark from the SORT paper (Bewley et al.
2016) and its published code (abewley/sort): one filterpy `KalmanFilter` per track on
`[u, v, s, r, u', v', s']` (centre, area, aspect ratio), IoU cost, Hungarian assignment (skipped,
as the published code skips it, when every detection and every track has at most one partner
over the IoU threshold), `max_age=1`, `min_hits=3`, IoU >= 0.3.

    .venv/bin/python scripts/bench_tracker.py [--objects 10 100 1000] [--seconds 2]
"""

from __future__ import annotations

import os

# One core, also for NumPy's BLAS: the figure asked for is single-core (set, not defaulted: a
# thread count left in the environment would otherwise change the baseline's BLAS).
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from filterpy.kalman import KalmanFilter  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gputrack.commands.args import (  # noqa: E402
    ScriptParser,
    int_at_least,
    positive_float,
    positive_int,
)
from gputrack.errors import GputrackError  # noqa: E402
from gputrack.track import Tracker  # noqa: E402
from gputrack.track.association import iou_matrix  # noqa: E402

# -- SORT's algorithm, compactly ---------------------------------------------------------------


def _to_z(b: np.ndarray) -> np.ndarray:
    w, h = b[2] - b[0], b[3] - b[1]
    return np.array([b[0] + w / 2, b[1] + h / 2, w * h, w / max(h, 1e-9)]).reshape(4, 1)


def _to_box(x: np.ndarray) -> np.ndarray:
    w = np.sqrt(max(x[2, 0] * x[3, 0], 0.0))
    h = x[2, 0] / max(w, 1e-9)
    return np.array([x[0, 0] - w / 2, x[1, 0] - h / 2, x[0, 0] + w / 2, x[1, 0] + h / 2])


def sort_pairs(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(detection, track) candidates as SORT's `associate_detections_to_trackers` makes them:
    where every row and column has at most one IoU over the threshold, those pairs directly;
    otherwise the Hungarian assignment maximising the summed IoU (the caller drops pairs
    under the threshold)."""
    over = iou > threshold
    if over.sum(axis=1).max() == 1 and over.sum(axis=0).max() == 1:
        return list(zip(*(x.tolist() for x in np.nonzero(over)), strict=True))
    return list(zip(*(x.tolist() for x in linear_sum_assignment(-iou)), strict=True))


class SortTrack:
    def __init__(self, box: np.ndarray) -> None:
        kf = KalmanFilter(dim_x=7, dim_z=4)
        kf.F = np.eye(7)
        kf.F[0, 4] = kf.F[1, 5] = kf.F[2, 6] = 1.0
        kf.H = np.eye(4, 7)
        kf.R[2:, 2:] *= 10.0  # area and aspect are measured less well than the centre
        kf.P[4:, 4:] *= 1000.0  # the velocity of a new track is unknown
        kf.P *= 10.0
        kf.Q[-1, -1] *= 0.01
        kf.Q[4:, 4:] *= 0.01
        kf.x[:4] = _to_z(box)
        self.kf, self.misses, self.streak, self.id = kf, 0, 0, 0

    def predict(self) -> np.ndarray:
        if self.kf.x[6, 0] + self.kf.x[2, 0] <= 0:  # the area would turn negative
            self.kf.x[6, 0] = 0.0
        self.kf.predict()
        if self.misses > 0:
            self.streak = 0
        self.misses += 1
        return _to_box(self.kf.x)

    def update(self, box: np.ndarray) -> None:
        self.kf.update(_to_z(box))
        self.misses, self.streak = 0, self.streak + 1


class Sort:
    """SORT: returns `[K, 5]` rows x1, y1, x2, y2, id of the tracks shown this frame."""

    def __init__(self, max_age: int = 1, min_hits: int = 3, iou_threshold: float = 0.3):
        self.max_age, self.min_hits, self.iou_threshold = max_age, min_hits, iou_threshold
        self.tracks: list[SortTrack] = []
        self.frames, self.next_id = 0, 1

    def update(self, dets: np.ndarray) -> np.ndarray:
        self.frames += 1
        pred = np.array([t.predict() for t in self.tracks]).reshape(-1, 4)
        ok = np.isfinite(pred).all(axis=1)
        self.tracks = [t for t, k in zip(self.tracks, ok, strict=True) if k]
        pred = pred[ok]
        matched_t, matched_d = set(), set()
        if len(pred) and len(dets):
            iou = iou_matrix(dets[:, :4].astype(np.float64), pred)
            for d, t in sort_pairs(iou, self.iou_threshold):
                if iou[d, t] >= self.iou_threshold:
                    self.tracks[t].update(dets[d, :4])
                    matched_t.add(t)
                    matched_d.add(d)
        self.tracks += [SortTrack(dets[d, :4]) for d in range(len(dets)) if d not in matched_d]
        out = []
        for t in self.tracks:
            if t.misses < 1 and (t.streak >= self.min_hits or self.frames <= self.min_hits):
                if t.id == 0:
                    t.id, self.next_id = self.next_id, self.next_id + 1
                out.append([*_to_box(t.kf.x), t.id])
        self.tracks = [t for t in self.tracks if t.misses <= self.max_age]
        return np.array(out).reshape(-1, 5)


# -- the scene -------------------------------------------------------------------------------


def scene(n: int, frames: int, seed: int = 0) -> list[np.ndarray]:
    """`n` objects on a grid, each moving at its own speed, detected with 2 % box noise."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    cell = 100.0
    centre = (np.stack(np.divmod(np.arange(n), side), axis=1) + 0.5) * cell
    size = rng.uniform(20, 40, (n, 2))
    vel = rng.uniform(-1.5, 1.5, (n, 2))
    out = []
    for f in range(frames):
        c = centre + vel * f
        boxes = np.concatenate([c - size / 2, c + size / 2], axis=1)
        boxes += rng.normal(0, 0.02, boxes.shape) * np.tile(size, 2)
        d = np.zeros((n, 6), np.float32)
        d[:, :4] = boxes
        d[:, 4] = rng.uniform(0.6, 1.0, n)
        out.append(d[rng.permutation(n)])
    return out


WARM_UP = 5  # frames before the timing: rate() needs at least one more


def rate(step, frames: list[np.ndarray], seconds: float) -> float:
    """Updates per second, over as many frames as fit in `seconds` (after the warm-up)."""
    for d in frames[:WARM_UP]:
        step(d)
    done, t0 = 0, time.perf_counter()
    for d in frames[WARM_UP:]:
        step(d)
        done += 1
        if time.perf_counter() - t0 > seconds:
            break
    return done / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = ScriptParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=positive_int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--frames", type=int_at_least(WARM_UP + 1), default=400,
                    help=f"frames per scene, the first {WARM_UP} a warm-up (default 400)")
    ap.add_argument("--seconds", type=positive_float, default=2.0, help="time per measurement")
    args = ap.parse_args(argv)
    try:
        bench(args)
    except GputrackError as err:
        print(f"bench_tracker: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


def bench(args: argparse.Namespace) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"pinned to one; numpy {np.__version__}")
    print(f"{'objects':>8} {'update_array':>14} {'update':>10} {'SORT':>8}   ms per update "
          f"(array / Tracks / SORT)  speed-up")
    for n in args.objects:
        frames = scene(n, args.frames)
        arrays = Tracker(fps=30)
        fast = rate(lambda d, t=arrays: t.update_array(d), frames, args.seconds)
        objs = Tracker(fps=30)
        full = rate(lambda d, t=objs: t.update(d), frames, args.seconds)
        sort = Sort()
        base = rate(sort.update, frames, args.seconds)
        print(f"{n:>8} {fast:>12.0f}/s {full:>8.0f}/s {base:>6.0f}/s   {1000 / fast:6.3f} / "
              f"{1000 / full:6.3f} / {1000 / base:7.3f}      {full / base:6.1f}x", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
