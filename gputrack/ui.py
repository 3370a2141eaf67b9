"""The terminal UI (rich): tracks, per-stage latency against the frame deadline, and a
character map of where the tracks are, refreshed live while frames run."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STATE_STYLE = {"confirmed": "green", "lost": "yellow", "tentative": "dim"}


class LiveView:
    """`with LiveView(...) as ui: ui.update(frame, tracks, stage_ms)` once per frame."""

    def __init__(
        self,
        title: str,
        size: tuple[int, int],
        fps: float,
        class_names: Sequence[str],
        total_frames: int | None = None,
        console: Console | None = None,
        map_width: int = 64,
    ) -> None:
        self.title = title
        self.size = size
        self.deadline_ms = 1000.0 / fps
        self.class_names = list(class_names)
        self.total = total_frames
        self.map_width = map_width
        self.history: dict[str, deque[float]] = {}
        self.console = console or Console()
        self._live = Live(console=self.console, refresh_per_second=8, transient=False)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.__exit__(kind, err, tb)

    def update(self, frame: int, tracks: Sequence[Any], stage_ms: dict[str, float]) -> None:
        for name, ms in stage_ms.items():
            self.history.setdefault(name, deque(maxlen=300)).append(ms)
        self._live.update(self.render(frame, tracks))

    # --- what is drawn ----------------------------------------------------------------------
    def render(self, frame: int, tracks: Sequence[Any]) -> Panel:
        done = f"{frame + 1}/{self.total}" if self.total else str(frame + 1)
        body = Group(self._latency_table(), self._track_table(tracks), self._map(tracks))
        return Panel(body, title=f"{self.title} · frame {done}", border_style="blue")

    def _latency_table(self) -> Table:
        table = Table(title=f"latency (deadline {self.deadline_ms:.2f} ms)", expand=False)
        for col in ("stage", "last ms", "p50 ms", "p99 ms"):
            table.add_column(col, justify="right" if col != "stage" else "left")
        for name, values in self.history.items():
            v = np.fromiter(values, float)
            p99 = float(np.percentile(v, 99))
            style = "red" if p99 > self.deadline_ms else ""
            table.add_row(name, f"{v[-1]:.2f}", f"{np.median(v):.2f}", Text(f"{p99:.2f}", style))
        return table

    def _track_table(self, tracks: Sequence[Any]) -> Table:
        table = Table(title="tracks", expand=False)
        for col in ("id", "class", "state", "x", "y", "w", "h", "vx px/s", "vy px/s", "age"):
            table.add_column(col, justify="right")
        shown = sorted((t for t in tracks if t.state != "tentative"), key=lambda t: t.id)
        for t in shown[:20]:
            name = self.class_names[t.cls] if 0 <= t.cls < len(self.class_names) else str(t.cls)
            table.add_row(
                str(t.id),
                name,
                Text(t.state, STATE_STYLE.get(t.state, "")),
                *(f"{v:.0f}" for v in (t.x, t.y, t.w, t.h, t.vx, t.vy)),
                str(t.age),
            )
        if len(shown) > 20:
            table.caption = f"... and {len(shown) - 20} more"
        return table

    def _map(self, tracks: Sequence[Any]) -> Text:
        """Each confirmed/lost track's centre as its id's last digit, on a frame-shaped grid."""
        w, h = self.size
        cols = self.map_width
        rows = max(4, round(cols * h / w / 2))  # terminal cells are about twice as tall
        grid = [["·"] * cols for _ in range(rows)]
        for t in tracks:
            if t.state == "tentative":
                continue
            c = int(np.clip((t.x + t.w / 2) / w * cols, 0, cols - 1))
            r = int(np.clip((t.y + t.h / 2) / h * rows, 0, rows - 1))
            grid[r][c] = str(t.id % 10)
        text = Text()
        for row in grid:
            for ch in row:
                text.append(ch, style="dim" if ch == "·" else "bold green")
            text.append("\n")
        return text
