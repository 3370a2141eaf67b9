"""The terminal UI (rich): tracks, per-stage latency against the frame deadline, and a
character map of where the tracks are, refreshed live while frames run.

The view is laid out when it is drawn, at the console's size then (a resized terminal gets a
new layout on the next refresh): the latency table, the track table and the map share the
terminal's rows. The tables come first and the map takes the rows they leave, keeping the
frame's shape (a cell is about twice as tall as it is wide) within `MAP_MIN` and `MAP_MAX`
cells; the track table lists as many tracks as fit above the smallest map; a table with no room
becomes one line, and a terminal too small for a map shows one line saying so.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.measure import Measurement
from rich.panel import Panel
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

STATE_STYLE = {"confirmed": "green", "lost": "yellow", "tentative": "dim"}
MAP_MIN = (8, 4)  # columns, rows: below this the map says nothing
MAP_MAX = (120, 40)  # a huge terminal does not make the map (and each refresh) slow
TRACK_ROWS = 20  # the most tracks the table lists
SPARE_ROWS = 1  # Live's cursor line: a view as tall as the terminal would scroll it
PANEL_COLS, PANEL_ROWS = 4, 2  # the panel's border and padding
TOO_SMALL = "terminal too small for the live view"


def map_size(frame: tuple[int, int], max_cols: int, max_rows: int) -> tuple[int, int]:
    """(columns, rows) of a map of a `frame` (width, height in pixels) as large as fits in
    `max_cols` x `max_rows` cells keeping the frame's shape, within `MAP_MIN`; an extreme
    shape (32x2048, 4096x16) is stretched to the minimum on its short side."""
    w, h = max(1, frame[0]), max(1, frame[1])
    max_cols, max_rows = max(MAP_MIN[0], max_cols), max(MAP_MIN[1], max_rows)
    cols = max_cols
    rows = round(cols * h / w / 2)  # terminal cells are about twice as tall as wide
    if rows > max_rows:
        rows = max_rows
        cols = round(rows * 2 * w / h)
    return min(max(cols, MAP_MIN[0]), max_cols), min(max(rows, MAP_MIN[1]), max_rows)


def track_map(
    marks: Iterable[tuple[float, float, int]],
    cols: int,
    rows: int,
    window: tuple[float, float, float, float] | None = None,
) -> Text:
    """A `cols` x `rows` grid of dots with each mark `(fx, fy, id)` (its centre as a fraction
    of the frame's width and height) drawn as its id's last digit; O(marks + cells).
    `window` (x0, y0, x1, y1 as fractions): the part of the frame the sensor reads out; cells
    outside it are blank, so the map shows where the window lies."""
    if window is None:
        grid = [["·"] * cols for _ in range(rows)]
    else:
        x0, y0, x1, y1 = window
        inside_c = [x0 <= (c + 0.5) / cols <= x1 for c in range(cols)]
        grid = [["·" if y0 <= (r + 0.5) / rows <= y1 and inside else " " for inside in inside_c]
                for r in range(rows)]  # fmt: skip
    drawn: set[int] = set()
    for fx, fy, id_ in marks:
        if not (math.isfinite(fx) and math.isfinite(fy)):
            continue
        c = min(max(int(fx * cols), 0), cols - 1)
        r = min(max(int(fy * rows), 0), rows - 1)
        grid[r][c] = str(id_ % 10)
        drawn.add(r * (cols + 1) + c)
    text = Text("\n".join("".join(row) for row in grid), style="dim", no_wrap=True)
    for offset in sorted(drawn):
        text.stylize("bold green", offset, offset + 1)
    return text


@dataclass(frozen=True)
class _Snapshot:
    """What one frame shows, copied when it is rendered (the tracker goes on meanwhile)."""

    title: str
    stages: list[tuple[str, float, float, float]]  # name, last, p50, p99 (ms)
    rows: list[tuple[str, ...]]  # the first TRACK_ROWS confirmed/lost tracks by id
    shown: int  # how many confirmed/lost tracks there are
    marks: list[tuple[float, float, int]]  # every confirmed/lost track on the map


class _Frame:
    """A frame's view, laid out at the size it is drawn at."""

    def __init__(self, view: LiveView, snap: _Snapshot) -> None:
        self.view, self.snap = view, snap

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.view.layout(self.snap, console, options)


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
        map_width: int = MAP_MAX[0],
        window: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.title = title
        self.size = size
        # the sensor's readout window (x, y, w, h in its pixels), shown on the map
        self.window = None
        if window is not None:
            x, y, ww, wh = window
            fw, fh = max(1, size[0]), max(1, size[1])
            self.window = (x / fw, y / fh, (x + ww) / fw, (y + wh) / fh)
        self.deadline_ms = 1000.0 / fps
        self.class_names = list(class_names)
        self.total = total_frames
        self.map_width = min(map_width, MAP_MAX[0])  # the widest the map may grow
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
    def render(self, frame: int, tracks: Sequence[Any]) -> RenderableType:
        """The view of `frame`; it takes the size of the console it is printed on."""
        done = f"{frame + 1}/{self.total}" if self.total else str(frame + 1)
        stages = []
        for name, values in self.history.items():
            v = np.fromiter(values, float)
            if v.size:
                last, p50, p99 = float(v[-1]), float(np.median(v)), float(np.percentile(v, 99))
                stages.append((name, last, p50, p99))
        shown = [t for t in tracks if t.state != "tentative"]
        w, h = max(1, self.size[0]), max(1, self.size[1])
        marks = [((t.x + t.w / 2) / w, (t.y + t.h / 2) / h, t.id) for t in shown]
        rows = []
        for t in heapq.nsmallest(TRACK_ROWS, shown, key=lambda t: t.id):
            name = self.class_names[t.cls] if 0 <= t.cls < len(self.class_names) else str(t.cls)
            nums = (f"{v:.0f}" for v in (t.x, t.y, t.w, t.h, t.vx, t.vy))
            rows.append((str(t.id), name, t.state, *nums, str(t.age)))
        title = f"{self.title} · frame {done}"
        return _Frame(self, _Snapshot(title, stages, rows, len(shown), marks))

    def layout(self, snap: _Snapshot, console: Console, options: ConsoleOptions) -> RenderableType:
        """The view in `options.max_width` columns and the console's rows (less `SPARE_ROWS`):
        the latency table, then as many tracks as fit leaving the map `MAP_MIN` rows, then the
        map in the rows left."""
        inner = options.max_width - PANEL_COLS
        space = (options.height or options.max_height) - SPARE_ROWS - PANEL_ROWS
        if inner < MAP_MIN[0] or space < MAP_MIN[1] + 2:  # a map and a line for each table
            return Text(TOO_SMALL, no_wrap=True, overflow="ellipsis")
        opts = options.update(width=inner, height=None)
        latency_table = self._latency_table(snap)
        latency = _fit(latency_table, console, opts, space - MAP_MIN[1] - 1)
        space -= _rows(latency := latency or self._latency_line(snap))
        tracks = self._fit_tracks(snap, console, opts, space - MAP_MIN[1])
        space -= _rows(tracks := tracks or self._track_line(snap))
        cols, rows = map_size(self.size, min(inner, self.map_width), min(space, MAP_MAX[1]))
        body = Group(latency, tracks, track_map(snap.marks, cols, rows, self.window))
        title = Text(snap.title, no_wrap=True, overflow="ellipsis")
        return Panel(body, title=title, border_style="blue")

    def _latency_table(self, snap: _Snapshot) -> Table:
        table = Table(title=f"latency (deadline {self.deadline_ms:.2f} ms)", expand=False)
        for col in ("stage", "last ms", "p50 ms", "p99 ms"):
            table.add_column(col, justify="right" if col != "stage" else "left")
        for name, last, p50, p99 in snap.stages:
            style = "red" if p99 > self.deadline_ms else ""
            table.add_row(name, f"{last:.2f}", f"{p50:.2f}", Text(f"{p99:.2f}", style))
        return table

    def _latency_line(self, snap: _Snapshot) -> Text:
        text = Text(f"deadline {self.deadline_ms:.2f} ms · p99", no_wrap=True, overflow="ellipsis")
        for name, _, _, p99 in snap.stages:
            text.append(f" {name} ")
            text.append(f"{p99:.2f}", "red" if p99 > self.deadline_ms else "")
        return text

    def _fit_tracks(
        self, snap: _Snapshot, console: Console, options: ConsoleOptions, room: int
    ) -> _Lines | None:
        """The track table listing as many tracks as fit in `room` rows, drawn; None where
        not one track (or, with none, the header) fits or the columns would be squeezed."""
        bare = console.render_lines(self._track_table(snap, 0), options, pad=False)
        k = min(len(snap.rows), room - len(bare))  # a row a line, unless a cell wraps
        if snap.shown and k < 1:
            return None
        table = self._track_table(snap, k)
        if Measurement.get(console, options, table).minimum > options.max_width:
            return None
        while len(lines := console.render_lines(table, options, pad=False)) > room:
            k -= len(lines) - room
            if snap.shown and k < 1:
                return None
            table = self._track_table(snap, k)
        return _Lines(lines)

    def _track_table(self, snap: _Snapshot, k: int) -> Table:
        table = Table(title="tracks", expand=False)
        for col in ("id", "class", "state", "x", "y", "w", "h", "vx px/s", "vy px/s", "age"):
            table.add_column(col, justify="right")
        for row in snap.rows[:k]:
            table.add_row(*row[:2], Text(row[2], STATE_STYLE.get(row[2], "")), *row[3:])
        if snap.shown > k:
            table.caption = f"... and {snap.shown - k} more"
        return table

    def _track_line(self, snap: _Snapshot) -> Text:
        return Text(f"tracks: {snap.shown} (on the map)", no_wrap=True, overflow="ellipsis")


class _Lines:
    """Lines already drawn (a table measured by drawing it is not drawn twice)."""

    def __init__(self, lines: list[list[Segment]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines:
            yield from line
            yield Segment.line()


def _rows(renderable: _Lines | Text) -> int:
    return len(renderable.lines) if isinstance(renderable, _Lines) else 1


def _fit(
    renderable: RenderableType, console: Console, options: ConsoleOptions, max_rows: int
) -> _Lines | None:
    """`renderable` drawn in `options.max_width` columns, or None where it takes more than
    `max_rows` rows or would have to be squeezed below its narrowest."""
    if Measurement.get(console, options, renderable).minimum > options.max_width:
        return None
    lines = console.render_lines(renderable, options, pad=False)
    return _Lines(lines) if len(lines) <= max_rows else None
