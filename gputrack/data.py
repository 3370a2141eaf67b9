"""Where the shared real data lives (video, RAW frames, Kodak, MOT, models)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """`GPUTRACK_DATA`, else `../shared/data` beside the project root."""
    env = os.environ.get("GPUTRACK_DATA")
    if env:
        return Path(env).expanduser()
    return PROJECT_ROOT.parent / "shared" / "data"


def data_file(relative: str) -> Path | None:
    """The path of a shared data file, or None when it is absent."""
    path = data_dir() / relative
    return path if path.exists() else None
