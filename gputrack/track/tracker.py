"""The tracker: per-frame detections in, tracks with stable identities out.

Each frame (`Tracker.update`):
  1. predict every track one frame ahead (batched Kalman filter, `kalman.py`);
  2. match confident detections to the tracks seen in the last frame (IoU, centre-distance
     fallback), then what is left of them to lost tracks (a matching cascade: a recent track
     is trusted over a long extrapolation);
  3. match the weak detections to confirmed tracks still unmatched (ByteTrack's second stage:
     a partly occluded person gets a low score, but is still the same person);
  4. match what is left of the confident detections to tentative tracks;
  5. correct matched tracks with their detection; unmatched confirmed tracks become `lost`
     (predicted, reported, and still matchable) and are removed after `lost_time`;
     unmatched tentative tracks are dropped;
  6. start tentative tracks on unmatched confident detections; a tentative track that was
     matched in `confirm_time` worth of consecutive frames is confirmed and only then gets its
     ID, so IDs count up without gaps.
Times are in seconds and become frame counts through `fps`, so defaults hold at 30 and 60 fps.
Parameters are checked when made (`PARAM_RANGES`), detections and the frame index before an
update changes anything (`check_detections`, `frame_steps`): a refused update loses nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np

from gputrack.errors import GputrackError
from gputrack.track.association import match as match_boxes
from gputrack.track.kalman import BatchKalman, MotionNoise

TENTATIVE, CONFIRMED, LOST = 0, 1, 2
STATE_NAMES = ("tentative", "confirmed", "lost")

# Columns of `Tracker.update_array`'s result.
COLUMNS = ("id", "x", "y", "w", "h", "score", "class", "state", "age", "hits", "vx", "vy",
           "det_index")


@dataclass(slots=True)
class Track:
    """One track as seen after a frame's update.

    `x, y, w, h`: the filtered box (top-left corner and size, pixels); for a `lost` track the
    prediction. `vx, vy`: centre velocity in pixels per second. `id` is -1 while tentative.
    `det_index`: row of this frame's detections that updated the track, -1 if none.
    `age`: frames since the track started; `hits`: detections it was matched to.
    """

    id: int
    x: float
    y: float
    w: float
    h: float
    score: float
    cls: int
    state: str
    age: int
    hits: int
    vx: float
    vy: float
    det_index: int = -1


# The range of each number in `TrackerParams` and `MotionNoise`: (low, high, low allowed).
# Scores are compared with the detector's own scores, whatever their scale (a MOTChallenge
# file's may be any number), so only their order is checked.
PARAM_RANGES: dict[str, tuple[float, float, bool]] = {
    "fps": (0.0, 1e6, False),
    "high_score": (-math.inf, math.inf, True),
    "low_score": (-math.inf, math.inf, True),
    "new_track_score": (-math.inf, math.inf, True),
    "match_sim": (0.0, 1.0, False),
    "low_match_sim": (0.0, 1.0, False),
    "tentative_match_sim": (0.0, 1.0, False),
    "confirm_time": (0.0, 1e6, True),
    "lost_time": (0.0, 1e6, False),
    "centre_gate": (0.0, 1e6, False),
    "centre_margin": (0.0, 1e6, True),
    "centre_weight": (0.0, 1.0, True),
}
NOISE_RANGES: dict[str, tuple[float, float, bool]] = {
    "accel": (0.0, 1e6, True),
    "size_accel": (0.0, 1e6, True),
    "measure": (0.0, 1e6, False),  # 0 would divide by zero in the Kalman gain
    "init_velocity": (0.0, 1e6, True),
}


@dataclass(frozen=True)
class TrackerParams:
    """Defaults meant for 25-60 fps video and detector scores in [0, 1]. Every number is
    checked against `PARAM_RANGES` (and `NOISE_RANGES`), and `low_score <= high_score`."""

    fps: float = 30.0
    high_score: float = 0.5  # detections at/above: first-stage matching, may start tracks
    low_score: float = 0.1  # below: ignored; in between: second stage only
    new_track_score: float = 0.6  # a track starts only on a detection this sure (ByteTrack)
    match_sim: float = 0.2  # least similarity for a first-stage match
    low_match_sim: float = 0.5  # weak detections must overlap more to count
    tentative_match_sim: float = 0.3
    confirm_time: float = 0.1  # seconds of consecutive hits before a track is confirmed
    lost_time: float = 1.0  # seconds a lost track is kept and predicted
    centre_gate: float = 3.0  # centre distance, in std of the prediction, scoring 0
    centre_margin: float = 0.5  # box sizes added to the prediction's std for that distance
    centre_weight: float = 0.5  # weight of centre similarity against IoU (0 turns it off)
    noise: MotionNoise = field(default_factory=MotionNoise)

    def __post_init__(self) -> None:
        for name, limits in PARAM_RANGES.items():
            object.__setattr__(self, name, check_number(name, getattr(self, name), *limits))
        if self.low_score > self.high_score:
            raise GputrackError(f"tracker parameter low_score={self.low_score:g} is above "
                                f"high_score={self.high_score:g}: must be <= it")
        if not isinstance(self.noise, MotionNoise):
            raise GputrackError(f"tracker parameter noise={self.noise!r}: must be a MotionNoise")
        for name, limits in NOISE_RANGES.items():
            check_number(f"noise.{name}", getattr(self.noise, name), *limits)

    @property
    def min_hits(self) -> int:
        return max(1, math.ceil(self.confirm_time * self.fps - 1e-9))

    @property
    def max_lost(self) -> int:
        return max(1, round(self.lost_time * self.fps))


class Tracker:
    """Multi-object tracker; call `update(detections, frame_index)` once per frame."""

    def __init__(self, params: TrackerParams | None = None, **overrides: object) -> None:
        base = params or TrackerParams()
        unknown = sorted(set(overrides) - {f.name for f in fields(TrackerParams)})
        if unknown:
            raise GputrackError(f"unknown tracker parameter {unknown[0]!r}")
        self.params = replace(base, **overrides) if overrides else base  # checked again
        self.kf = BatchKalman(self.params.fps, self.params.noise)
        self.next_id = 1
        self.frame: int | None = None
        self.updates = 0
        # Per-track columns, one row per track, the same rows as self.kf.
        self.cols = {
            "id": np.zeros(0, np.int64),
            "cls": np.zeros(0, np.int64),
            "score": np.zeros(0),
            "state": np.zeros(0, np.int8),
            "age": np.zeros(0, np.int64),
            "hits": np.zeros(0, np.int64),
            "missed": np.zeros(0, np.int64),  # frames since the last matched detection
            "det": np.zeros(0, np.int64),  # detection row that updated it this frame
        }

    def __len__(self) -> int:
        return len(self.kf)

    # -- the frame update -------------------------------------------------------------------

    def update(self, detections: np.ndarray, frame_index: int | None = None) -> list[Track]:
        """Advance one frame with `detections[N, 6]` (x1, y1, x2, y2, score, class).

        `frame_index`: a whole number from 0 to `MAX_FRAME_INDEX`, above the last one given
        (frames skipped in between are predicted through); None is the next frame. Bad
        detections (`check_detections`) or a frame index that does not count up are a
        `GputrackError`, and the tracker is left exactly as it was.
        """
        return to_tracks(self.update_array(detections, frame_index))

    def update_array(self, detections: np.ndarray, frame_index: int | None = None) -> np.ndarray:
        """As `update`, but returns `float64[T, 13]` with the columns of `COLUMNS`."""
        p, c = self.params, self.cols
        # Everything is checked before anything changes: a refused update loses nothing.
        dets = check_detections(detections)
        frame, steps = frame_steps(self.frame, frame_index)
        self.frame = frame
        # Skipped frames (frame_index jumping) are predicted through, not ignored.
        if steps > 1:
            # A track unseen for more than max_lost of the skipped frames would have been
            # removed in them; removing it first also bounds the predictions below, so a
            # jump of a billion frames costs no more than one of max_lost.
            stale = c["missed"] + (steps - 1) > p.max_lost
            if stale.any():
                self._keep(~stale)
        for _ in range(steps if len(self.kf) else 0):
            self.kf.predict()
        c["age"] += steps
        c["missed"] += steps
        c["det"][:] = -1

        boxes = self.kf.x[:, :4]
        # Where a detection of each track may be: the filter's own uncertainty plus a margin
        # in box sizes for motion the model cannot foresee (a bounce, a turn).
        centre_std = np.sqrt(self.kf.innovation_std()[:, :2] ** 2
                             + (p.centre_margin * self.kf.x[:, 2:4]) ** 2)
        score, dcls = dets[:, 4], dets[:, 5].astype(np.int64)
        det_boxes = _xyxy_to_cxcywh(dets)
        # An empty box (one clipped to the frame's edge) is no detection.
        usable = (det_boxes[:, 2:4] >= MIN_SIZE).all(axis=1) & (score >= p.low_score)
        high = np.flatnonzero(usable & (score >= p.high_score))
        low = np.flatnonzero(usable & (score < p.high_score))
        state = c["state"]
        no_pairs = np.empty((0, 2), np.intp)

        def match(rows: np.ndarray, cand: np.ndarray, min_sim: float):
            if len(rows) == 0 or len(cand) == 0:
                return no_pairs, rows, cand
            pairs, free_rows, free_cands = match_boxes(
                boxes[rows], centre_std[rows], c["cls"][rows], det_boxes[cand], dcls[cand],
                min_sim, p.centre_gate, p.centre_weight)
            return (np.stack([rows[pairs[:, 0]], cand[pairs[:, 1]]], axis=1),
                    rows[free_rows], cand[free_cands])

        # Tracks seen in the last frame choose first; lost tracks only get the confident
        # detections they leave (DeepSORT's matching cascade, in two levels). A lost track's
        # predicted uncertainty grows every frame, so its centre gate reaches ever further;
        # in one joint assignment that lets a stale extrapolation outbid a track that is
        # sharply localised next to the detection (see docs/TRACKER.md, "Lost tracks").
        m1, rest_tracks, rest_high = match(np.flatnonzero(state == CONFIRMED), high,
                                           p.match_sim)
        m1b, _, rest_high = match(np.flatnonzero(state == LOST), rest_high, p.match_sim)
        m2, _, _ = match(rest_tracks, low, p.low_match_sim)
        m3, _, rest_high = match(np.flatnonzero(state == TENTATIVE), rest_high,
                                 p.tentative_match_sim)
        matches = np.concatenate([m1, m1b, m2, m3])

        rows, di = matches[:, 0], matches[:, 1]
        self.kf.update(rows, det_boxes[di])
        c["hits"][rows] += 1
        c["missed"][rows] = 0
        c["score"][rows] = score[di]
        c["det"][rows] = di
        state[rows[state[rows] == LOST]] = CONFIRMED

        # Unmatched: confirmed -> lost; lost too long, tentative, or collapsed -> removed.
        missed = c["missed"] > 0
        state[missed & (state == CONFIRMED)] = LOST
        size = self.kf.x[:, 2:4]
        drop = (missed & (state == TENTATIVE)) | (c["missed"] > p.max_lost)
        # Collapsed (a shrinking prediction run out), not merely small: 1-2 px objects exist.
        drop |= ~np.isfinite(self.kf.x).all(axis=1) | (size < MIN_SIZE).any(axis=1)
        if drop.any():
            self._keep(~drop)

        new = rest_high[score[rest_high] >= p.new_track_score]
        self._start(dets[new], new)
        # On the first frame there is no history to wait for: what is there is there (as
        # SORT and ByteTrack do); afterwards a new track must prove itself first.
        self._confirm(everything=self.updates == 0)
        self.updates += 1
        return self._rows()

    # -- helpers ---------------------------------------------------------------------------

    def boxes_xyxy(self) -> np.ndarray:
        """Current boxes of all tracks as `[T, 4]` x1, y1, x2, y2."""
        cx, cy, w, h = self.kf.x[:, :4].T
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)

    def _keep(self, mask: np.ndarray) -> None:
        self.kf.keep(mask)
        for k in self.cols:
            self.cols[k] = self.cols[k][mask]

    def _start(self, dets: np.ndarray, indices: np.ndarray) -> None:
        n = len(dets)
        if n == 0:
            return
        self.kf.add(_xyxy_to_cxcywh(dets[:, :4]))
        new = {
            "id": np.full(n, -1), "cls": dets[:, 5].astype(np.int64), "score": dets[:, 4],
            "state": np.full(n, TENTATIVE, np.int8), "age": np.zeros(n, np.int64),
            "hits": np.ones(n, np.int64), "missed": np.zeros(n, np.int64), "det": indices,
        }
        for k, v in new.items():
            self.cols[k] = np.concatenate([self.cols[k], v.astype(self.cols[k].dtype)])

    def _confirm(self, everything: bool = False) -> None:
        """Tentative tracks with enough hits become confirmed and take the next IDs."""
        c = self.cols
        enough = everything or c["hits"] >= self.params.min_hits
        ready = np.flatnonzero((c["state"] == TENTATIVE) & enough)
        c["state"][ready] = CONFIRMED
        c["id"][ready] = np.arange(self.next_id, self.next_id + len(ready))
        self.next_id += len(ready)

    def _rows(self) -> np.ndarray:
        c, x = self.cols, self.kf.x
        out = np.empty((len(x), len(COLUMNS)))
        out[:, 0] = c["id"]
        out[:, 1:3] = x[:, :2] - x[:, 2:4] / 2
        out[:, 3:5] = x[:, 2:4]
        out[:, 5] = c["score"]
        out[:, 6] = c["cls"]
        out[:, 7] = c["state"]
        out[:, 8] = c["age"]
        out[:, 9] = c["hits"]
        out[:, 10:12] = x[:, 4:6]
        out[:, 12] = c["det"]
        return out


def to_tracks(rows: np.ndarray) -> list[Track]:
    """`Tracker.update_array` rows as `Track` objects."""
    ints = rows[:, [0, 6, 7, 8, 9, 12]].astype(np.int64).T.tolist()
    floats = rows[:, [1, 2, 3, 4, 5, 10, 11]].T.tolist()
    tid, cls, state, age, hits, det = ints
    x, y, w, h, score, vx, vy = floats
    names = [STATE_NAMES[k] for k in state]
    return list(map(Track, tid, x, y, w, h, score, cls, names, age, hits, vx, vy, det))


# -- input checks ------------------------------------------------------------------------

MAX_FRAME_INDEX = 2**53  # frame numbers and ages stay exact in update_array's float64 rows
MAX_COORD = 1e7  # px, corners and sizes (MOT files too): beyond, a box is broken data
MAX_CLASS = 2**31 - 1  # int32, as the detector's labels
# px: a narrower box is empty (result files write 2 decimals: it would read back as 0).
MIN_SIZE = 0.01
_FLOAT_MAX = float(np.finfo(np.float64).max)

# What a detection may hold, with its box as top-left corner and size (as a MOTChallenge line
# gives it, so every box mot_io reads passes). A class must also be a whole number. An empty
# box (clipped to the frame's edge by the detector) passes, and is then ignored.
DETECTION_RANGES: dict[str, tuple[float, float]] = {
    "x1": (-MAX_COORD, MAX_COORD),
    "y1": (-MAX_COORD, MAX_COORD),
    "width x2 - x1": (0.0, MAX_COORD),
    "height y2 - y1": (0.0, MAX_COORD),
    "score": (-_FLOAT_MAX, _FLOAT_MAX),  # any finite number: detectors have their own scales
    "class": (0.0, MAX_CLASS),
}
_LOW, _HIGH = np.array(list(DETECTION_RANGES.values())).T


def frame_steps(last: int | None, frame_index: object) -> tuple[int | None, int]:
    """(this frame's number, frames to predict ahead) after frame `last`; None numbers the
    frame after `last`. A frame index that is no whole number in [0, `MAX_FRAME_INDEX`], or
    not above `last`, is a `GputrackError`."""
    if frame_index is None:
        return (None if last is None else last + 1), 1
    frame = _frame_number(frame_index)
    if last is None:
        return frame, 1
    if frame <= last:
        raise GputrackError(f"frame_index {frame} after frame {last}: frame indices must "
                            "count up (a frame given twice, or out of order?)")
    return frame, frame - last


def _frame_number(frame_index: object) -> int:
    number = _real(frame_index)
    if number is not None and number.is_integer():  # NaN and inf are not
        # An int as it is: above 2**53 its float is rounded.
        frame = int(frame_index) if isinstance(frame_index, (int, np.integer)) else int(number)
        if 0 <= frame <= MAX_FRAME_INDEX:
            return frame
    raise GputrackError(f"frame_index {_show(frame_index)}: must be a whole number from 0 "
                        f"to {MAX_FRAME_INDEX}")


def check_number(name: str, value: object, low: float, high: float, low_ok: bool) -> float:
    """`value` as a float if it is a finite real number from `low` to `high` (`low` itself
    only if `low_ok`); else a `GputrackError` naming the parameter, the value and the range."""
    number = _real(value)
    if number is not None and math.isfinite(number) and number <= high and (
            number >= low if low_ok else number > low):
        return number
    if math.isinf(high):
        allowed = "a finite number"
    else:
        allowed = f"a number in {'[' if low_ok else '('}{low:g}, {high:g}]"
    raise GputrackError(f"tracker parameter {name}={_show(value)}: must be {allowed}")


def _real(value: object) -> float | None:
    """`value` as a float if it is a real number (a bool is not), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond any float: out of every range
        return math.inf


def _show(value: object) -> str:
    """`value` for a message: NumPy scalars as the plain numbers they hold."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def check_detections(detections: np.ndarray) -> np.ndarray:
    """`detections[N, 6+]` as `float64[N, 6]` (x1, y1, x2, y2, score, class), or a
    `GputrackError` naming the first bad row and what is wrong with it (`DETECTION_RANGES`)."""
    dets = _as_table(detections)
    sized = dets.copy()
    with np.errstate(over="ignore", invalid="ignore"):  # 1e308 - -1e308: inf, refused below
        sized[:, 2:4] -= dets[:, :2]  # x1, y1, width, height, score, class
    fits = (sized >= _LOW) & (sized <= _HIGH)  # NaN fits nowhere
    whole = sized[:, 5] == np.floor(sized[:, 5])
    if not (fits.all() and whole.all()):
        _refuse(dets, sized, np.flatnonzero(~(fits.all(axis=1) & whole)))
    return dets


def _as_table(detections: np.ndarray) -> np.ndarray:
    try:
        dets = np.asarray(detections)
        # Numbers only: complex would lose its imaginary part, text and bools are no boxes.
        if dets.dtype.kind not in "iuf" and dets.size:
            raise TypeError(f"its type is {dets.dtype}")
        dets = dets.astype(np.float64, copy=False)
    except (TypeError, ValueError) as err:
        raise GputrackError(f"detections must be an N x 6 array of numbers ({err})") from None
    if dets.shape == (0,):  # no detections, as [] or np.array([]) give them
        return np.zeros((0, 6))
    if dets.ndim != 2 or dets.shape[1] < 6:
        raise GputrackError(
            f"detections must be an N x 6 array (x1, y1, x2, y2, score, class), got shape "
            f"{dets.shape}")
    return dets[:, :6]


def _refuse(dets: np.ndarray, sized: np.ndarray, rows: np.ndarray) -> None:
    """The `GputrackError` for the first of the bad `rows`, naming its first bad column."""
    r = rows[0]
    col = next((k for k in range(6) if not _LOW[k] <= sized[r, k] <= _HIGH[k]), 5)
    name, (low, high) = list(DETECTION_RANGES.items())[col]
    if col == 4:
        what = "the score must be a finite number"
    elif col == 5:
        what = f"the class must be a whole number from 0 to {MAX_CLASS}"
    else:
        what = f"{name} = {sized[r, col]:g} is not in [{low:g}, {high:g}] px"
    n = len(rows) - 1
    more = f" ({n} more bad row{'s' if n > 1 else ''})" if n else ""
    values = ", ".join(f"{v:g}" for v in dets[r].tolist())
    raise GputrackError(f"detection row {r} [{values}]: {what}{more}")


def _xyxy_to_cxcywh(b: np.ndarray) -> np.ndarray:
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                     b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
