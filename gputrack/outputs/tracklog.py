"""The JSONL track log: one line per frame, flushed per frame, written under a temporary
name and renamed when complete, so a reader never sees a half-written file under the final
name, and a crash or Ctrl-C still leaves every finished frame under the final name. A run that
fails before its first frame leaves an earlier log of that name as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from gputrack.errors import GputrackError


class TrackLogWriter:
    """`with TrackLogWriter(path) as log: log.write(frame, t, tracks, latency_ms)`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise GputrackError(f"track log {self.path}: is a folder, give a file name")
        if not self.path.parent.exists():
            raise GputrackError(f"track log {self.path}: folder {self.path.parent} does not exist")
        # A link's target is replaced (the link stays); a device or a pipe (/dev/stdout, a
        # FIFO) is written in place, as renaming over it would replace it with a plain file.
        self.target = self.path.resolve() if self.path.is_symlink() else self.path
        self.in_place = self.target.exists() and not self.target.is_file()
        self.partial = (
            self.target if self.in_place else self.target.with_name(self.target.name + ".part")
        )
        self._file = open(self.partial, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.frames = 0

    def write(
        self, frame: int, t: float, tracks: list[dict[str, Any]], latency_ms: dict[str, float]
    ) -> None:
        line = {
            "frame": int(frame),
            "t": round(float(t), 6),
            "tracks": tracks,
            "latency_ms": {k: round(float(v), 3) for k, v in latency_ms.items()},
        }
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._file.flush()
        self.frames += 1

    def close(self, complete: bool = True) -> None:
        """Close; rename to the final name when `complete` (else keep the `.part` file)."""
        if self._file.closed:
            return
        self._file.close()
        if complete and not self.in_place:
            os.replace(self.partial, self.target)

    def discard(self) -> None:
        """Close and remove the `.part` file: the final name keeps what it had."""
        self._file.close()
        if not self.in_place:
            self.partial.unlink(missing_ok=True)

    def __enter__(self) -> TrackLogWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Ctrl-C and end of input both leave a complete log of the frames done; an error too,
        # so what was processed is never lost; an error before the first frame replaces
        # nothing.
        if kind is not None and self.frames == 0:
            self.discard()
        else:
            self.close(complete=True)


def track_entry(track: Any) -> dict[str, Any]:
    """A `Track` as the log's `{"id", "bbox": [x, y, w, h], "score", "class", "state"}`."""
    return {
        "id": int(track.id),
        "bbox": [round(float(v), 2) for v in (track.x, track.y, track.w, track.h)],
        "score": round(float(track.score), 4),
        "class": int(track.cls),
        "state": track.state,
    }
