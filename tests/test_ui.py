"""The live terminal view: what a user sees for a frame."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.cells import cell_len
from rich.console import Console

from gputrack.track.tracker import Track
from gputrack.ui import MAP_MAX, MAP_MIN, TOO_SMALL, LiveView, map_size, track_map


def _track(id_: int, state: str, x: float, cls: int = 0) -> Track:
    return Track(
        id=id_,
        x=x,
        y=50,
        w=20,
        h=40,
        score=0.9,
        cls=cls,
        state=state,
        age=5,
        hits=4,
        vx=12.0,
        vy=-3.0,
    )


def test_view_shows_tracks_latency_and_deadline_misses():
    out = io.StringIO()
    console = Console(file=out, width=120, height=40, color_system=None, force_terminal=False)
    view = LiveView(
        "test", (640, 360), fps=60, class_names=("person", "car"), total_frames=10, console=console
    )
    tracks = [
        _track(7, "confirmed", 100, cls=1),
        _track(8, "lost", 400),
        _track(-1, "tentative", 300),
    ]
    view.history = {"isp": [0.5, 0.7], "track": [20.0, 30.0]}  # 30 ms misses the 16.7 ms deadline
    console.print(view.render(3, tracks))
    text = out.getvalue()
    assert "frame 4/10" in text and "deadline 16.67 ms" in text
    assert "car" in text and "confirmed" in text and "lost" in text
    assert "tentative" not in text, "tentative tracks have no identity to show"
    map_lines = [ln for ln in text.splitlines() if "·" in ln]
    assert any("7" in ln for ln in map_lines) and any("8" in ln for ln in map_lines)


STAGES = {k: [1.0, 2.0, 40.0] for k in ("isp", "dsp", "track", "total")}
QUADRANTS = {1: (0.1, 0.1), 2: (0.9, 0.1), 3: (0.1, 0.9), 4: (0.9, 0.9)}  # id: centre


def _at(id_: int, fx: float, fy: float, size: tuple[int, int]) -> Track:
    """A confirmed 2x2 track centred at (fx, fy) of the frame."""
    x, y = fx * size[0] - 1, fy * size[1] - 1
    return Track(id_, x, y, 2, 2, 0.9, 0, "confirmed", 5, 4, 0.0, 0.0)


def _draw(size: tuple[int, int], tracks: list[Track], width: int, height: int) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, height=height, color_system=None)
    view = LiveView("gputrack run · synthetic", size, 30, ("person",), 100, console=console)
    view.history = dict(STAGES)
    console.print(view.render(9, tracks))
    return out.getvalue().splitlines()


def _map_lines(lines: list[str]) -> list[str]:
    """The map's rows: what is inside the panel's border and is only dots and digits."""
    inner = [ln[2:-2].rstrip() for ln in lines if ln.startswith("│ ")]
    return [ln for ln in inner if ln and set(ln) <= set("·0123456789*")]


@pytest.mark.parametrize("width,height", [(40, 20), (80, 24), (200, 60)])
@pytest.mark.parametrize("size", [(1920, 1080), (32, 2048), (4096, 16)])
def test_view_fits_the_terminal_and_the_map_puts_tracks_where_they_are(size, width, height):
    tracks = [_at(i, fx, fy, size) for i, (fx, fy) in QUADRANTS.items()]
    lines = _draw(size, tracks, width, height)
    assert len(lines) < height, "fits, with the cursor's line to spare"
    assert all(cell_len(ln) <= width for ln in lines), "nothing wraps"
    rows = _map_lines(lines)
    cols = {len(r) for r in rows}
    assert len(cols) == 1, "a rectangle"
    ncols = cols.pop()
    assert MAP_MIN[0] <= ncols <= min(MAP_MAX[0], width - 4)
    assert MAP_MIN[1] <= len(rows) <= MAP_MAX[1]
    for id_, (fx, fy) in QUADRANTS.items():
        (r, c), *more = [(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row)
                         if ch == str(id_)]  # fmt: skip
        assert not more
        assert (c < ncols / 2) == (fx < 0.5) and (r < len(rows) / 2) == (fy < 0.5), (id_, r, c)


def test_map_keeps_the_frame_shape_and_its_bounds():
    cols, rows = map_size((1920, 1080), 116, 40)  # a cell is about twice as tall as wide
    assert cols == 116 and abs(cols / rows / 2 - 16 / 9) < 0.1
    cols, rows = map_size((1920, 1080), 500, 12)  # rows are short: narrower, same shape
    assert rows == 12 and abs(cols / rows / 2 - 16 / 9) < 0.1
    assert map_size((32, 2048), 196, 40) == (MAP_MIN[0], 40)
    assert map_size((4096, 16), 116, 40) == (116, MAP_MIN[1])
    assert map_size((4096, 16), 1, 1) == MAP_MIN and map_size((32, 2048), 1, 1) == MAP_MIN


def test_huge_terminal_does_not_make_a_huge_map():
    lines = _draw((32, 2048), [_at(1, 0.5, 0.5, (32, 2048))], 1000, 500)
    rows = _map_lines(lines)
    assert len(rows) == MAP_MAX[1] and len(lines) < 80
    lines = _draw((4096, 16), [_at(1, 0.5, 0.5, (4096, 16))], 1000, 500)
    assert {len(r) for r in _map_lines(lines)} == {MAP_MAX[0]}


@pytest.mark.parametrize("width,height", [(10, 5), (80, 6), (11, 40)])
def test_too_small_a_terminal_gets_one_line_saying_so(width, height):
    lines = _draw((1920, 1080), [_at(1, 0.5, 0.5, (1920, 1080))], width, height)
    assert len(lines) == 1 and cell_len(lines[0]) <= width
    assert lines[0].rstrip("…") and TOO_SMALL.startswith(lines[0].rstrip("…"))


def test_many_tracks_list_what_fits_and_all_are_on_the_map():
    size = (1920, 1080)
    tracks = [_at(i, (i % 25 + 0.5) / 25, (i // 25 + 0.5) / 20, size) for i in range(500)]
    start = time.perf_counter()
    for width, height in [(80, 24), (200, 60)]:
        lines = _draw(size, tracks, width, height)
        assert len(lines) < height and all(cell_len(ln) <= width for ln in lines)
        text = "\n".join(lines)
        listed = [ln for ln in lines if re.search(r"│ +\d+ │ person", ln)]
        assert listed and f"and {500 - len(listed)} more" in text
        assert sum(ch.isdigit() or ch == "*" for r in _map_lines(lines) for ch in r) > 20
    assert time.perf_counter() - start < 10, "linear in tracks and cells; generous bound"


def test_track_map_draws_each_centre_in_its_cell():
    """Off the frame (a lost track coasting out) or NaN: not drawn (it was pinned to the edge,
    as if something were there); two in one cell: '*', since neither digit is true; a lost
    track in yellow, a confirmed one in green."""
    marks = [(0.0, 0.0, 11), (0.99, 0.99, 2, True), (5.0, -3.0, 7), (float("nan"), 0, 3),
             (0.6, 0.4, 4), (0.61, 0.41, 5)]  # fmt: skip
    text = track_map(marks, 8, 4)
    rows = text.plain.split("\n")
    assert rows == ["1·······", "····*···", "········", "·······2"]
    styles = {text.plain[s.start]: str(s.style) for s in text.spans}
    assert styles == {"1": "bold green", "2": "yellow", "*": "bold magenta"}


def test_the_map_shows_the_readout_window():
    """With --roi the map blanks what the sensor does not read out: the window's cells keep
    their dots, a track is still drawn where it is in the sensor."""
    text = track_map([(0.6, 0.4, 5)], 8, 4, window=(0.25, 0.25, 0.75, 0.75))
    assert text.plain.split("\n") == ["        ", "  ··5·  ", "  ····  ", "        "]
    out = io.StringIO()
    console = Console(file=out, width=80, height=30, color_system=None)
    view = LiveView("t", (640, 480), 30, ("person",), console=console, window=(320, 0, 320, 480))
    console.print(view.render(0, [_track(3, "confirmed", x=400)]))
    inner = [ln[2:-2] for ln in out.getvalue().splitlines() if ln.startswith("│ ")]
    rows = [r.rstrip() for r in inner if r.strip() and set(r.strip()) <= set("·0123456789")]
    assert rows and all(r.startswith(" ") for r in rows)  # the window's right half only
    blank = {len(r) - len(r.lstrip()) for r in rows}
    assert len(blank) == 1 and blank.pop() == len(rows[0]) // 2
    assert any("3" in r for r in rows)


def test_a_view_is_laid_out_at_the_size_it_is_drawn_at():
    """Live redraws the same view after a resize: it takes the new size."""
    view = LiveView("t", (1920, 1080), 30, ("person",), console=Console(file=io.StringIO()))
    frame = view.render(0, [_at(1, 0.5, 0.5, (1920, 1080))])
    widths = []
    for width, height in [(60, 30), (160, 50)]:
        out = io.StringIO()
        Console(file=out, width=width, height=height, color_system=None).print(frame)
        widths.append({len(r) for r in _map_lines(out.getvalue().splitlines())})
    assert widths[0] != widths[1] and all(len(w) == 1 for w in widths)


def test_live_view_in_a_small_terminal():
    out = io.StringIO()
    console = Console(file=out, width=50, height=16, force_terminal=True, color_system=None)
    with LiveView("t", (32, 2048), 30, ("person",), 3, console=console) as view:
        for f in range(3):
            view.update(f, [_at(3, 0.9, 0.1, (32, 2048))], {"isp": 1.0, "track": 2.0})
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).splitlines()
    last = lines[-15:]
    assert all(cell_len(ln) <= 50 for ln in lines) and "frame 3/3" in last[0]
    rows = _map_lines(last)
    (r,) = [i for i, row in enumerate(rows) if row.endswith("3")]  # top right, as the track
    assert r < len(rows) / 2


def test_a_view_with_no_track_is_drawn_at_every_size():
    """An empty scene (a webcam on an empty room) hung the view for ever at 80x20 and many
    other sizes: the track table's fitting loop shrank a table that had no rows to lose.
    Drawn in a thread here, so that a regression fails instead of hanging the suite."""
    import threading

    sizes = [(w, h) for w in (12, 20, 40, 80, 100, 200) for h in range(5, 26)]
    done: list[tuple[int, int]] = []

    def draw_all() -> None:
        for w, h in sizes:
            for tracks in ([], [Track(1, 10, 10, 4, 4, 0.5, 0, "tentative", 1, 1, 0, 0)]):
                lines = _draw((1920, 1080), tracks, w, h)
                assert len(lines) < h or h <= 6 and len(lines) == 1
            done.append((w, h))

    worker = threading.Thread(target=draw_all, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), f"hung after {done[-1] if done else 'nothing'}"
    assert len(done) == len(sizes)


@pytest.mark.parametrize("width,height", [(40, 30), (60, 30), (80, 24), (120, 40)])
def test_numbers_are_never_cut_short(width, height):
    """At 60x30 the track table's numbers were squeezed to 'x = -1…': the table drops its
    last columns (velocities, age), or becomes one line, rather than cut a number."""
    size = (1920, 1080)
    tracks = [Track(i, -1234.5 + 300 * i, 50, 220, 40, 0.9, 0, "lost", 12, 4, 2345.0, -3456.0)
              for i in range(1, 4)]  # fmt: skip
    lines = _draw(size, tracks, width, height)
    table = [ln for ln in lines if re.search(r"│ +\d+ │", ln)]
    for ln in table:
        assert "…" not in ln, ln
    assert all(cell_len(ln) < width for ln in lines), "the last column stays free"


def test_the_view_says_the_rate_achieved_the_misses_and_the_track_count():
    out = io.StringIO()
    console = Console(file=out, width=100, height=30, color_system=None)
    view = LiveView("a very long source name " * 4, (640, 360), fps=30, class_names=("p",),
                    total_frames=50, console=console)  # fmt: skip
    for f, total in enumerate([10.0, 50.0, 12.0, 40.0]):
        view.update(f, [_track(1, "confirmed", 100), _track(2, "lost", 300)],
                    {"isp": 1.0, "total": total})
        view._times[-1] = f / 20  # as if shown at 20 frames a second
    console.print(view.render(3, [_track(1, "confirmed", 100), _track(2, "lost", 300)]))
    text = out.getvalue()
    assert "20.0 fps (source 30)" in text and "2 over the deadline" in text
    assert "2 tracks" in text and "Ctrl-C stops" in text
    assert "frame 4/50 · a very long" in text, "the counter before the name an ellipsis cuts"


def test_the_view_ends_with_a_newline_when_not_on_a_terminal():
    out = io.StringIO()
    console = Console(file=out, width=60, height=20, color_system=None, force_terminal=False)
    with LiveView("t", (640, 360), 30, ("p",), 1, console=console) as view:
        view.update(0, [], {"total": 1.0})
    assert out.getvalue().endswith("╯\n")  # the summary printed next starts its own line


def test_each_redraw_is_one_synchronized_update_on_a_terminal():
    """Drawn between 'begin' and 'end synchronized update', so a terminal never shows a
    half-erased view (the QA caught one mid-redraw); not on a file."""
    for terminal in (True, False):
        out = io.StringIO()
        console = Console(file=out, width=60, height=20, force_terminal=terminal)
        with LiveView("t", (640, 360), 30, ("p",), 2, console=console) as view:
            view.update(0, [_track(1, "confirmed", 100)], {"total": 1.0})
        text = out.getvalue()
        begins, ends = text.count("\x1b[?2026h"), text.count("\x1b[?2026l")
        assert (begins, ends) == ((1, 1) if terminal else (0, 0))  # the one frame drawn
        if terminal:
            assert text.index("\x1b[?2026h") < text.index("frame 1/2") < text.rindex("\x1b[?2026l")
