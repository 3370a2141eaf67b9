"""The JSONL track log: one line per frame, flushed per frame, written under a unique
temporary name and renamed when complete (files.OutputFile), so a reader never sees a
half-written file under the final name, and a crash or Ctrl-C still leaves every finished frame
under the final name. A run that fails before its first frame, or whose log cannot be written
(a full disk), leaves an earlier log of that name as it was. `/dev/stdout`, a device or a FIFO
is written in place."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import TracebackType
from typing import Any

from gputrack.outputs.files import OutputFile


class TrackLogWriter:
    """`with TrackLogWriter(path) as log: log.write(frame, t, tracks, latency_ms)`."""

    def __init__(self, path: str | Path, what: str = "track log") -> None:
        self.path = Path(path)
        self.frames = 0
        # Frames written are worth keeping when the run fails; none written replaces nothing.
        self.out = OutputFile(path, what, keep_on_error=lambda: self.frames > 0)

    @property
    def kept(self) -> bool:
        """The frames written are under the final name (after the `with`)."""
        return self.out.kept

    def write(
        self, frame: int, t: float, tracks: list[dict[str, Any]], latency_ms: dict[str, float]
    ) -> None:
        line = {
            "frame": int(frame),
            "t": finite(t, 6),
            "tracks": tracks,
            "latency_ms": {k: finite(v, 3) for k, v in latency_ms.items()},
        }
        # allow_nan=False: NaN and Infinity are no JSON (jq, JSON.parse refuse the line)
        self.out.write(json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n")
        self.out.flush()  # a reader (tail -f) sees each frame as it is done
        self.frames += 1

    def mark(self) -> int | None:
        """Where the next frame's line starts (see `OutputFile.mark`)."""
        return self.out.mark()

    def rollback(self, mark: int | None) -> None:
        """Take back the last frame's line (written after `mark`): its frame did not finish."""
        self.out.rollback(mark)
        self.frames -= 1

    def close(self, complete: bool = True) -> None:
        """Close; rename to the final name when `complete` (else discard what was written)."""
        if complete:
            self.out.close()
        else:
            self.out.discard()

    def discard(self) -> None:
        """Close and remove the temporary file: the final name keeps what it had."""
        self.out.discard()

    def __enter__(self) -> TrackLogWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Ctrl-C and end of input both leave a complete log of the frames done; an error too,
        # so what was processed is never lost; an error before the first frame, or in writing
        # the log itself, replaces nothing.
        self.out.__exit__(kind, err, tb)


def finite(value: float, digits: int) -> float | None:
    """A number for the log, rounded; null where it is not finite (JSON has no NaN)."""
    v = float(value)
    return round(v, digits) if math.isfinite(v) else None


def track_entry(track: Any) -> dict[str, Any]:
    """A `Track` as the log's `{"id", "bbox": [x, y, w, h], "score", "class", "state"}`
    (docs/TRACKER.md, "The track log")."""
    return {
        "id": int(track.id),
        "bbox": [finite(v, 2) for v in (track.x, track.y, track.w, track.h)],
        "score": finite(track.score, 4),
        "class": int(track.cls),
        "state": track.state,
    }
