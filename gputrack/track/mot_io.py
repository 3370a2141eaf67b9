"""MOTChallenge text files: detections in, tracking results out.

Detection and result lines are `frame,id,x,y,w,h,score,...` (1-based frames, top-left box).
MOT15 detection files carry world coordinates in columns 8-10, not a class, so every
detection read here is class 0.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from gputrack.errors import GputrackError

from .tracker import CONFIRMED, LOST, MAX_COORD

log = logging.getLogger(__name__)

MAX_FRAME = 2**31 - 1  # what MOTChallenge tools (and int32 frame columns) hold


def read_detections(path: str | Path) -> dict[int, np.ndarray]:
    """Detections per frame, each `float32[N, 6]` (x1, y1, x2, y2, score, class 0), in file
    order. A malformed line is a `GputrackError` naming the file and line. A row repeating an
    earlier one is dropped, with a warning naming both lines (`_drop_repeats`)."""
    rows, lines = read_mot_rows(path, "detection file")
    rows = _drop_repeats(path, rows, lines)
    frames: dict[int, list[list[float]]] = {}
    for frame, _, x, y, w, h, score in rows.tolist():
        frames.setdefault(int(frame), []).append([x, y, x + w, y + h, score, 0.0])
    return {f: np.asarray(r, dtype=np.float32) for f, r in sorted(frames.items())}


def _drop_repeats(path: str | Path, rows: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """`rows` without those that repeat an earlier row's frame, box and score (whatever the
    id, which detection files leave -1): a file joined to itself (`cat det.txt det.txt`)
    would start every track twice. Dropped with a warning rather than refused, as a public
    detection file with one stray repeat should still run."""
    key = rows[:, [0, 2, 3, 4, 5, 6]]
    order = np.lexsort((lines, *key.T[::-1]))  # equal rows together, the earliest line first
    again = (key[order[1:]] == key[order[:-1]]).all(axis=1)
    if not again.any():
        return rows
    repeat = order[1:][again]  # indices of the rows that repeat an earlier one
    first = repeat[np.argmin(lines[repeat])]
    original = lines[order[np.flatnonzero(order == first)[0] - 1]]
    log.warning("%s:%d: the same detection as line %d (frame %g, same box and score); %d "
                "repeated row(s) dropped", path, lines[first], original, rows[first, 0],
                len(repeat))
    return np.delete(rows, repeat, axis=0)


def frames_to_update(
    frames: dict[int, np.ndarray], alive: Callable[[], bool]
) -> Iterator[tuple[int, np.ndarray]]:
    """The tracker updates that track a detection file (`read_detections`): `(frame,
    detections)` from the first frame with detections to the last, frames without detections
    in between included (tracks are predicted and age through them), except while `alive()`
    (asked after the caller's update of the frame before) says no track is alive: such a
    frame changes nothing, so it is skipped and a jump to frame 10^9 costs nothing.

    The first update is the first frame with detections, whatever its number: it is the
    tracker's first frame, whose tracks are confirmed at once, so a sequence whose frame
    numbers are all shifted is tracked the same. Frames before it would only be empty updates
    that make it a later frame."""
    numbers = sorted(frames)
    if not numbers:
        return
    empty = np.zeros((0, 6), np.float32)
    frame, last = numbers[0], numbers[-1]
    while frame <= last:
        if frame not in frames and not alive():
            frame = numbers[bisect.bisect(numbers, frame)]  # the next frame with detections
        yield frame, frames.get(frame, empty)
        frame += 1


# MOT16/17/20 classes (column 8). Only pedestrians are scored; a hypothesis on a distractor
# is neither right nor wrong (the devkit drops it rather than count a false positive).
PEDESTRIAN = 1
DISTRACTOR_CLASSES = (2, 7, 8, 12)  # person on vehicle, static person, distractor, reflection
NO_CLASS = -1.0  # MOT15 and result files: no class, every box is a pedestrian


@dataclass(frozen=True)
class GroundTruth:
    """A ground truth file as it is scored (see `scored_ground_truth`)."""

    rows: np.ndarray  # float64[N, 7] scored boxes: frame, id, x, y, w, h, conf; file order
    lines: np.ndarray  # int64[N], the line of each scored row
    others: np.ndarray  # float64[K, 5] frame, x, y, w, h of every box not scored
    distractor: np.ndarray  # bool[K]: that box is a distractor (a hypothesis on it is dropped)

    def frames(self) -> tuple[int, int]:
        """First and last frame with a scored box ((0, 0) when there is none)."""
        if len(self.rows) == 0:
            return 0, 0
        return int(self.rows[:, 0].min()), int(self.rows[:, 0].max())


def scored_ground_truth(rows: np.ndarray, lines: np.ndarray) -> GroundTruth:
    """The MOTChallenge devkit's rule for which ground truth counts, from
    `read_mot_rows(..., with_class=True)` rows: a box is scored when its conf (the 'consider'
    flag) is not 0 and its class is 1 (pedestrian) or none (MOT15). Every other box is kept,
    with whether it is a distractor, only to take hypotheses away
    (`mot_eval.not_on_distractors`)."""
    rows = np.asarray(rows, np.float64).reshape(-1, 8)
    cls = rows[:, 7]
    # The devkit reads the flag as an integer: 0.5 is 0 there (and was below motmetrics' 1).
    considered = np.trunc(rows[:, 6]) != 0
    scored = considered & ((cls == PEDESTRIAN) | (cls == NO_CLASS))
    rest = rows[~scored]
    return GroundTruth(
        rows=rows[scored, :7],
        lines=np.asarray(lines, np.int64)[scored],
        others=rest[:, [0, 2, 3, 4, 5]],
        distractor=np.isin(rest[:, 7], DISTRACTOR_CLASSES),
    )


def read_ground_truth(path: str | Path) -> GroundTruth:
    """A MOTChallenge ground truth (or result) file checked line by line and cut down to
    what is scored (`scored_ground_truth`); an identity twice in one frame among the scored
    boxes is a `GputrackError` naming both lines (a scorer would count one of them as a
    miss). Twice among boxes that are not scored harms nothing and passes."""
    gt = scored_ground_truth(*read_mot_rows(path, "ground truth file", with_class=True))
    rows, lines = gt.rows, gt.lines
    order = np.lexsort((lines, rows[:, 1], rows[:, 0]))  # by frame, then id, then line
    pairs = rows[order, :2]
    twice = np.flatnonzero((pairs[1:] == pairs[:-1]).all(axis=1))
    if len(twice):
        a, b = lines[order[twice[0]]], lines[order[twice[0] + 1]]
        frame, ident = rows[order[twice[0]], :2]
        raise GputrackError(f"{path}:{b}: identity {ident:g} is already in frame {frame:g} "
                            f"(line {a})")  # fmt: skip
    return gt


def read_mot_rows(
    path: str | Path, what: str, with_class: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The first 7 fields of each line of a file as `parse_mot_rows` gives them; a missing or
    unreadable file is a `GputrackError`. The file is read once (it may be a pipe)."""
    path = Path(path)
    if path.is_dir():
        raise GputrackError(f"{path}: is a folder, give a {what}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from a Windows editor is no field
    except FileNotFoundError:
        raise GputrackError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise GputrackError(f"{path}: cannot read this {what} ({err})") from None
    return parse_mot_rows(text.splitlines(), path, with_class)


def parse_mot_rows(
    lines: Iterable[str], path: str | Path, with_class: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The first 7 fields of each line as `float64[N, 7]`, with each row's line number;
    comments (#) and blank lines skipped, a malformed line a `GputrackError` naming `path`.
    Fields are separated by commas, spaces around them allowed, or, on a line without a
    comma, by spaces or tabs (py-motmetrics and TrackEval read both). `with_class` adds an
    8th column, the MOT16/17/20 class (`NO_CLASS` for other files, see `_class_field`)."""
    rows: list[list[float]] = []
    numbers: list[int] = []
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(",") if "," in line else line.split()
        if len(fields) < 7:
            raise GputrackError(
                f"{path}:{lineno}: expected at least 7 fields separated by commas "
                f"(frame,id,x,y,w,h,score), got {len(fields)}")
        try:
            values = [float(f) for f in fields[:7]]
        except ValueError:
            bad = next(f for f in fields[:7] if not _is_number(f))
            raise GputrackError(f"{path}:{lineno}: '{bad.strip()}' is not a number") from None
        frame, ident, x, y, w, h, score = values
        if not frame.is_integer() or not 1 <= frame <= MAX_FRAME:
            raise GputrackError(f"{path}:{lineno}: frame must be a whole number from 1 to "
                                f"{MAX_FRAME}, got {fields[0].strip()}")  # fmt: skip
        if not all(np.isfinite(values)) or max(abs(x), abs(y), w, h) > MAX_COORD:
            raise GputrackError(f"{path}:{lineno}: id, box or score is not a finite number "
                                f"(boxes up to {MAX_COORD:g} px)")  # fmt: skip
        if w <= 0 or h <= 0:
            raise GputrackError(f"{path}:{lineno}: box width and height must be positive, "
                                f"got {w:g} x {h:g}")
        if with_class:
            values.append(_class_field(Path(path), lineno, fields))
        rows.append(values)
        numbers.append(lineno)
    width = 8 if with_class else 7
    return np.asarray(rows, np.float64).reshape(-1, width), np.asarray(numbers, np.int64)


def _class_field(path: Path, lineno: int, fields: list[str]) -> float:
    """Field 8 of a line of 8 or 9 fields (MOT16/17/20 ground truth); `NO_CLASS` for 7 fields
    and for 10 (MOT15 ground truth and result files end in 3 world coordinates, not a
    class)."""
    text = fields[7].strip() if len(fields) in (8, 9) else ""
    if not text:  # a trailing comma is no class either
        return NO_CLASS
    if not _is_number(text) or not float(text).is_integer():
        raise GputrackError(f"{path}:{lineno}: class (field 8) must be a whole number, "
                            f"got '{text}'")
    return float(text)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def result_lines(frame: int, rows: np.ndarray, include_lost: bool = False) -> list[str]:
    """One frame of `Tracker.update_array` rows as MOTChallenge result lines
    (`frame,id,x,y,w,h,score,-1,-1,-1`); only confirmed tracks (and lost ones, if asked) have
    IDs worth writing."""
    states = (CONFIRMED, LOST) if include_lost else (CONFIRMED,)
    keep = rows[np.isin(rows[:, 7], states)]
    return [
        f"{frame},{int(r[0])},{r[1]:.2f},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.4f},-1,-1,-1\n"
        for r in keep.tolist()
    ]


def write_results(out: TextIO, frame: int, rows: np.ndarray, include_lost: bool = False) -> int:
    """Write `result_lines` of one frame; returns the lines written."""
    lines = result_lines(frame, rows, include_lost)
    out.writelines(lines)
    return len(lines)
