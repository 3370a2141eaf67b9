"""MOTChallenge text files: detections in, tracking results out.

Detection and result lines are `frame,id,x,y,w,h,score,...` (1-based frames, top-left box).
MOT15 detection files carry world coordinates in columns 8-10, not a class, so every
detection read here is class 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import numpy as np

from gputrack.errors import GputrackError

from .tracker import CONFIRMED, LOST


def read_detections(path: str | Path) -> dict[int, np.ndarray]:
    """Detections per frame, each `float32[N, 6]` (x1, y1, x2, y2, score, class 0), in file
    order. A malformed line is a `GputrackError` naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GputrackError(f"{path}: no such detection file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise GputrackError(f"{path}: cannot read detections ({err})") from None
    frames: dict[int, list[list[float]]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(",")
        if len(fields) < 7:
            raise GputrackError(
                f"{path}:{lineno}: expected at least 7 comma-separated fields "
                f"(frame,id,x,y,w,h,score), got {len(fields)}")
        try:
            values = [float(f) for f in fields[:7]]
        except ValueError:
            bad = next(f for f in fields[:7] if not _is_number(f))
            raise GputrackError(f"{path}:{lineno}: '{bad.strip()}' is not a number") from None
        frame, _, x, y, w, h, score = values
        if not frame.is_integer() or frame < 1:
            raise GputrackError(f"{path}:{lineno}: frame must be a whole number >= 1, "
                                f"got {fields[0].strip()}")
        if not all(np.isfinite(values)):
            raise GputrackError(f"{path}:{lineno}: box or score is not finite")
        if w <= 0 or h <= 0:
            raise GputrackError(f"{path}:{lineno}: box width and height must be positive, "
                                f"got {w:g} x {h:g}")
        frames.setdefault(int(frame), []).append([x, y, x + w, y + h, score, 0.0])
    return {f: np.asarray(rows, dtype=np.float32) for f, rows in sorted(frames.items())}


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def write_results(out: TextIO, frame: int, rows: np.ndarray, include_lost: bool = False) -> int:
    """Write one frame of `Tracker.update_array` rows as MOTChallenge result lines; only
    confirmed tracks (and lost ones, if asked) have IDs worth writing. Returns lines written."""
    states = (CONFIRMED, LOST) if include_lost else (CONFIRMED,)
    keep = rows[np.isin(rows[:, 7], states)]
    lines: Iterable[str] = (
        f"{frame},{int(r[0])},{r[1]:.2f},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.4f},-1,-1,-1\n"
        for r in keep.tolist()
    )
    out.writelines(lines)
    return len(keep)
