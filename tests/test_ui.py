"""The live terminal view: what a user sees for a frame."""

from __future__ import annotations

import io

from rich.console import Console

from gputrack.track.tracker import Track
from gputrack.ui import LiveView


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
    console = Console(file=out, width=120, color_system=None, force_terminal=False)
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
