"""The README's Python example runs as written and tracks what the synthetic world holds."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_python_example_tracks_the_synthetic_world():
    blocks = python_blocks()
    assert len(blocks) == 1, "the README has one Python example; this test runs it"
    scope: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(blocks[0], "README.md", "exec"), scope)
    tracks, world = scope["tracks"], scope["world"]
    confirmed = [t for t in tracks if t.state == "confirmed"]
    truth = world.ground_truth(29)
    visible = truth[truth[:, 6] >= 0.5]
    # most objects well in view are tracked, and each confirmed track sits on one of them
    assert len(confirmed) >= 0.6 * len(visible) > 0
    for t in confirmed:
        cx, cy = t.x + t.w / 2, t.y + t.h / 2
        assert any(x1 <= cx <= x2 and y1 <= cy <= y2 for x1, y1, x2, y2 in truth[:, :4])
    assert printed.getvalue().startswith("[(")
