"""Tracks drawn on the ISP image, for the annotated frame and video outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

STATE_BGR = {"confirmed": (0, 220, 0), "lost": (0, 160, 255)}


def draw_tracks(
    rgb8: np.ndarray,
    tracks: Sequence[Any],
    names: Sequence[str],
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """A BGR copy of `rgb8` with each confirmed (green) and lost (orange) track's box, id and
    class; tentative tracks have no identity yet and are not drawn. `origin`: where the image
    lies in the tracks' coordinates (a readout window's corner in the sensor's pixels)."""
    bgr = cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR)
    ox, oy = origin
    for t in tracks:
        colour = STATE_BGR.get(t.state)
        if colour is None:
            continue
        p0 = (int(t.x) - ox, int(t.y) - oy)
        p1 = (int(t.x + t.w) - ox, int(t.y + t.h) - oy)
        cv2.rectangle(bgr, p0, p1, colour, 2)
        label = names[t.cls] if 0 <= t.cls < len(names) else str(t.cls)
        cv2.putText(
            bgr,
            f"{t.id} {label}",
            (p0[0], max(12, p0[1] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colour,
            1,
            cv2.LINE_AA,
        )
    return bgr
