"""The terminal UI (rich): tracks, per-stage latency against the frame deadline, and a
character map of where the tracks are, refreshed live while frames run.

The view is laid out when it is drawn, at the console's size then (a resized terminal gets a
new layout on the next refresh): the latency table, the track table and the map share the
terminal's rows. The tables come first and the map takes the rows they leave, keeping the
frame's shape (a cell is about twice as tall as it is wide) within `MAP_MIN` and `MAP_MAX`
cells; the track table lists as many tracks as fit above the smallest map; a table with no room
becomes one line, and a terminal too small for a map shows one line saying so. The tables
take at most half the rows, so the map stays readable at 80x24; a table too narrow for its
numbers drops columns (velocities, age) rather than cut them short.

The view is drawn between frames, in the thread that runs them (not by a timer thread), at
most `REFRESH_HZ` times a second: drawing a large terminal takes milliseconds of Python, and
drawn while a frame runs it would hold the GIL inside the latencies the view reports.
"""

from __future__ import annotations

import heapq
import math
import time
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
TRACK_MIN_ROWS = 8  # a track table's rows for three tracks: kept before the latency table
SPARE_ROWS = 1  # Live's cursor line: a view as tall as the terminal would scroll it
PANEL_COLS, PANEL_ROWS = 4, 2  # the panel's border and padding
TOO_SMALL = "terminal too small for the live view"
REFRESH_HZ = 8  # the most redraws a second (a frame at a time: fewer on slow sources)
RATE_FRAMES = 30  # the achieved frame rate is over the last this many frames


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
    marks: Iterable[tuple[float, ...]],
    cols: int,
    rows: int,
    window: tuple[float, float, float, float] | None = None,
) -> Text:
    """A `cols` x `rows` grid of dots with each mark `(fx, fy, id[, lost])` (its centre as a
    fraction of the frame's width and height) drawn as its id's last digit, green, or yellow
    for a lost track (its position predicted); `*` where tracks share a cell; O(marks +
    cells). A centre off the frame (a lost track coasting out) or, with `window` (x0, y0, x1,
    y1 as fractions: the part the sensor reads out, the cells outside it blank), off the
    window is not drawn: nothing is seen there."""
    if window is None:
        grid = [["·"] * cols for _ in range(rows)]
    else:
        x0, y0, x1, y1 = window
        inside_c = [x0 <= (c + 0.5) / cols <= x1 for c in range(cols)]
        grid = [["·" if y0 <= (r + 0.5) / rows <= y1 and inside else " " for inside in inside_c]
                for r in range(rows)]  # fmt: skip
    x0, y0, x1, y1 = window if window is not None else (0.0, 0.0, 1.0, 1.0)
    drawn: dict[int, str] = {}  # offset in the text: style
    for fx, fy, id_, *lost in marks:
        if not (x0 <= fx <= x1 and y0 <= fy <= y1):  # NaN fails too
            continue
        c = min(int(fx * cols), cols - 1)
        r = min(int(fy * rows), rows - 1)
        offset = r * (cols + 1) + c
        style = "yellow" if lost and lost[0] else "bold green"
        if offset in drawn:  # two tracks in one cell: neither digit would be true
            grid[r][c], drawn[offset] = "*", "bold magenta"
        else:
            grid[r][c], drawn[offset] = str(int(id_) % 10), style
    text = Text("\n".join("".join(row) for row in grid), style="dim", no_wrap=True)
    for offset, style in sorted(drawn.items()):
        text.stylize(style, offset, offset + 1)
    return text


@dataclass(frozen=True)
class _Snapshot:
    """What one frame shows, copied when it is rendered (the tracker goes on meanwhile)."""

    title: str
    status: str  # the bottom line: rate achieved, misses, tracks, how to stop
    stages: list[tuple[str, float, float, float]]  # name, last, p50, p99 (ms)
    rows: list[tuple[str, ...]]  # the first TRACK_ROWS confirmed/lost tracks by id
    shown: int  # how many confirmed/lost tracks there are
    marks: list[tuple[float, float, int, bool]]  # every confirmed/lost track: x, y, id, lost


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
        self.fps = fps
        self.misses = 0  # frames whose total latency was over the deadline
        self._times: deque[float] = deque(maxlen=RATE_FRAMES)  # when frames were shown
        self._drawn_at = -math.inf
        self._pending: tuple[int, Sequence[Any]] | None = None  # the last frame, not drawn yet
        self.console = console or Console()
        # Drawn by `update` alone (see the module's docstring), not by Live's timer thread
        self._live = Live(console=self.console, auto_refresh=False, transient=False)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        self._live.update(Text("starting: the first frame (kernels compile on first use) ...",
                               no_wrap=True, overflow="ellipsis"), refresh=True)  # fmt: skip
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._draw()  # the last frame as it ended, whenever the one before was drawn
        self._live.__exit__(kind, err, tb)
        if not self.console.is_terminal:  # Live ends a file's last view without a newline
            self.console.line()

    def update(self, frame: int, tracks: Sequence[Any], stage_ms: dict[str, float]) -> None:
        for name, ms in stage_ms.items():
            self.history.setdefault(name, deque(maxlen=300)).append(ms)
        self.misses += stage_ms.get("total", 0.0) > self.deadline_ms
        now = time.monotonic()
        self._times.append(now)
        self._pending = (frame, tracks)  # drawn now if due, else at the next due or the end
        if now - self._drawn_at >= 1.0 / REFRESH_HZ:
            self._draw()
            self._drawn_at = now

    def _draw(self) -> None:
        if self._pending is None:  # a frame's view is built only when it is drawn
            return
        # One synchronized update (DEC mode 2026): the terminal shows the view once it is all
        # drawn, not line by line as rich erases and redraws it (tearing over ssh); terminals
        # without the mode ignore it; a dumb one (TERM=dumb) would print it as text
        sync = self.console.is_terminal and not self.console.is_dumb_terminal
        if sync:
            self.console.file.write("\x1b[?2026h")
        try:
            self._live.update(self.render(*self._pending), refresh=True)
        finally:
            if sync:
                self.console.file.write("\x1b[?2026l")
                self.console.file.flush()
        self._pending = None

    def achieved_fps(self) -> float | None:
        """Frames a second over the last `RATE_FRAMES` frames shown (None before two)."""
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return None
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])

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
        marks = [((t.x + t.w / 2) / w, (t.y + t.h / 2) / h, t.id, t.state == "lost")
                 for t in shown]  # fmt: skip
        rows = []
        for t in heapq.nsmallest(TRACK_ROWS, shown, key=lambda t: t.id):
            name = self.class_names[t.cls] if 0 <= t.cls < len(self.class_names) else str(t.cls)
            nums = (f"{v:.0f}" for v in (t.x, t.y, t.w, t.h, t.vx, t.vy))
            rows.append((str(t.id), name, t.state, *nums, str(t.age)))
        # the frame counter first: a long source name is what an ellipsis may cut
        title = f"frame {done} · {self.title}"
        rate = self.achieved_fps()
        status = " · ".join([
            f"{rate:.1f} fps (source {self.fps:g})" if rate is not None else
            f"source {self.fps:g} fps",
            f"{self.misses} over the deadline", f"{len(shown)} tracks", "Ctrl-C stops"])
        return _Frame(self, _Snapshot(title, status, stages, rows, len(shown), marks))

    def layout(self, snap: _Snapshot, console: Console, options: ConsoleOptions) -> RenderableType:
        """The view in `options.max_width` columns and the console's rows (less `SPARE_ROWS`):
        the latency table, then as many tracks as fit leaving the map `MAP_MIN` rows, then the
        map in the rows left."""
        # The last column stays free: a key echoed at the end of a full-width line (^C) would
        # wrap it, and the next redraw would start a line too low.
        width = options.max_width - 1
        inner = width - PANEL_COLS
        space = (options.height or options.max_height) - SPARE_ROWS - PANEL_ROWS
        if inner < MAP_MIN[0] or space < MAP_MIN[1] + 2:  # a map and a line for each table
            return Text(TOO_SMALL, no_wrap=True, overflow="ellipsis")
        opts = options.update(width=inner, height=None)
        # The map's share: what its shape wants, up to half the rows (at least MAP_MIN)
        wanted = map_size(self.size, min(inner, self.map_width), MAP_MAX[1])[1]
        keep = max(MAP_MIN[1], min(wanted, space // 2))
        # the latency table only where a few tracks fit beside it: they say more at 80x24
        listing = TRACK_MIN_ROWS if snap.shown else 1
        latency_table = self._latency_table(snap)
        latency = _fit(latency_table, console, opts, space - keep - listing)
        space -= _rows(latency := latency or self._latency_line(snap))
        tracks = self._fit_tracks(snap, console, opts, space - keep)
        space -= _rows(tracks := tracks or self._track_line(snap))
        cols, rows = map_size(self.size, min(inner, self.map_width), min(space, MAP_MAX[1]))
        body = Group(latency, tracks, track_map(snap.marks, cols, rows, self.window))
        # cut to the border's length here: rich widens a panel to fit a longer title
        title, status = (Text(t, no_wrap=True) for t in (snap.title, snap.status))
        for text in (title, status):
            text.truncate(width - 6, overflow="ellipsis")
        return Panel(body, title=title, subtitle=status, border_style="blue", width=width)

    def _latency_table(self, snap: _Snapshot) -> Table:
        table = Table(title=f"latency (deadline {self.deadline_ms:.2f} ms)", expand=False)
        for col in ("stage", "last ms", "p50 ms", "p99 ms"):
            table.add_column(col, justify="right" if col != "stage" else "left")
        for name, last, p50, p99 in snap.stages:
            style = "red" if p99 > self.deadline_ms else ""
            table.add_row(name, f"{last:.2f}", f"{p50:.2f}", Text(f"{p99:.2f}", style))
        return table

    def _latency_line(self, snap: _Snapshot) -> Text:
        """One line, the total first: what an ellipsis leaves is the number that matters."""
        text = Text("p99 ms", no_wrap=True, overflow="ellipsis")
        stages = sorted(snap.stages, key=lambda s: s[0] != "total")
        for name, _, _, p99 in stages:
            text.append(f" {name} ")
            text.append(f"{p99:.2f}", "red" if p99 > self.deadline_ms else "")
        text.append(f" (deadline {self.deadline_ms:.2f})")
        return text

    def _fit_tracks(
        self, snap: _Snapshot, console: Console, options: ConsoleOptions, room: int
    ) -> _Lines | None:
        """The track table listing as many tracks as fit in `room` rows, drawn; None where
        there is none to list, not one fits, or even its fewest columns would be cut short."""
        if not snap.shown:  # an empty table says less than the one line does
            return None
        columns = next((n for n in TRACK_COLUMNS
                        if _fits_unsqueezed(self._track_table(snap, len(snap.rows), n), console,
                                            options)), None)  # fmt: skip
        if columns is None:
            return None
        bare = console.render_lines(self._track_table(snap, 0, columns), options, pad=False)
        k = min(len(snap.rows), room - len(bare))  # a row a line, unless a cell wraps
        while k >= 1:  # k falls every pass: the loop ends
            table = self._track_table(snap, k, columns)
            lines = console.render_lines(table, options, pad=False)
            if len(lines) <= room:
                return _Lines(lines)
            k -= len(lines) - room
        return None

    def _track_table(self, snap: _Snapshot, k: int, columns: int = 10) -> Table:
        """The first `k` tracks in the first `columns` columns (id, class, state, x, y, w, h,
        vx, vy, age: the last ones go first when the terminal is narrow)."""
        table = Table(title="tracks", expand=False)
        names = ("id", "class", "state", "x", "y", "w", "h", "vx px/s", "vy px/s", "age")
        for col in names[:columns]:
            table.add_column(col, justify="right", no_wrap=True)
        for row in snap.rows[:k]:
            cells = (*row[:2], Text(row[2], STATE_STYLE.get(row[2], "")), *row[3:])
            table.add_row(*cells[:columns])
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


TRACK_COLUMNS = (10, 7, 3)  # the track table's columns, as many as the width allows


def _fits_unsqueezed(
    renderable: RenderableType, console: Console, options: ConsoleOptions
) -> bool:
    """Whether `renderable` fits its widest cells: rich would otherwise cut numbers to '2…'."""
    return _widest(renderable, console, options) <= options.max_width


def _widest(renderable: RenderableType, console: Console, options: ConsoleOptions) -> int:
    """The width `renderable` takes unsqueezed (rich clamps a measurement to the width it is
    given, so it is measured in a width it cannot fill)."""
    return Measurement.get(console, options.update_width(1 << 16), renderable).maximum


def _rows(renderable: _Lines | Text) -> int:
    return len(renderable.lines) if isinstance(renderable, _Lines) else 1


def _fit(
    renderable: RenderableType, console: Console, options: ConsoleOptions, max_rows: int
) -> _Lines | None:
    """`renderable` drawn in `options.max_width` columns, or None where it takes more than
    `max_rows` rows or would have to be squeezed (its numbers cut short)."""
    if not _fits_unsqueezed(renderable, console, options):
        return None
    lines = console.render_lines(renderable, options, pad=False)
    return _Lines(lines) if len(lines) <= max_rows else None
