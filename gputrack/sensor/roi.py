"""The sensor's readout window: the IMX500's region-of-interest output mode.

The sensor reads out only a window of its pixels (`gputrack run --roi X,Y,W,H`, in sensor
pixels): the ISP, the network and the image outputs see the window alone, while detections,
tracks and logs stay in the whole sensor's pixels (as the IMX500 maps boxes back through its
crop). Every side and offset is even, so the window's Bayer pattern is the sensor's.

A frame read out through a window says so (`RawFrame.window`, `RawFrame.sensor_size`): the
pipeline maps its boxes back through it, `--raw` records it in each DNG and a recording's
playback gives it back (`outputs/dng.py`, `sensor/sources/camera_raw.py`), so a windowed
recording plays back in the sensor's pixels as the run saw it. `--roi` on such a playback
must lie within the recorded window (`Roi.check_within`) and is cut from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gputrack.errors import GputrackError

MIN_SIDE = 4  # the ISP's smallest frame


@dataclass(frozen=True)
class Roi:
    x: int
    y: int
    w: int
    h: int

    def __post_init__(self) -> None:
        if min(self.x, self.y) < 0 or min(self.w, self.h) < MIN_SIDE:
            raise GputrackError(f"window {self}: offsets from 0, sides of {MIN_SIDE} or more")
        if any(v % 2 for v in (self.x, self.y, self.w, self.h)):
            raise GputrackError(f"window {self}: every offset and side must be even (a Bayer "
                                "window keeps the sensor's 2x2 pattern)")  # fmt: skip

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"

    @classmethod
    def parse(cls, text: str) -> Roi:
        """'X,Y,W,H' in sensor pixels."""
        try:
            x, y, w, h = (int(v) for v in text.split(","))
        except ValueError:
            raise GputrackError(f"'{text}': give X,Y,W,H, four whole numbers") from None
        return cls(x, y, w, h)

    def check_inside(self, width: int, height: int, what: str) -> None:
        """A clear error unless the window lies within a `width` x `height` sensor."""
        if self.x + self.w > width or self.y + self.h > height:
            raise GputrackError(f"window {self} ({self.w}x{self.h} at {self.x},{self.y}) "
                                f"reaches past {what}'s {width}x{height} frame")  # fmt: skip

    def check_within(self, outer: Roi, what: str) -> None:
        """A clear error unless the window lies within `outer`, a window already read out
        (a recording of a windowed run holds only those sensor pixels)."""
        if (self.x < outer.x or self.y < outer.y or self.x + self.w > outer.x + outer.w
                or self.y + self.h > outer.y + outer.h):  # fmt: skip
            raise GputrackError(f"window {self} ({self.w}x{self.h} at {self.x},{self.y}) "
                                f"reaches past {what}'s window {outer} ({outer.w}x{outer.h} "
                                f"at {outer.x},{outer.y}), the only sensor pixels it "
                                "holds")  # fmt: skip

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The window of an image or mosaic (a view: the caller copies where it must)."""
        return image[self.y : self.y + self.h, self.x : self.x + self.w]

    def to_sensor(self, detections: np.ndarray) -> np.ndarray:
        """Detections (N x 6, x1 y1 x2 y2 ...) in window pixels -> sensor pixels (a copy)."""
        out = np.array(detections, dtype=np.float32, copy=True)
        out[:, [0, 2]] += self.x
        out[:, [1, 3]] += self.y
        return out

    def truth(self, truth: np.ndarray) -> np.ndarray:
        """Ground truth (N x 7: x1 y1 x2 y2 id class visibility, sensor pixels) as the window
        sees it: boxes clipped to it, visibility scaled by the share of the box inside, and
        objects wholly outside dropped."""
        boxes = truth[:, :4].astype(np.float64)
        x0, y0, x1, y1 = self.x, self.y, self.x + self.w, self.y + self.h
        clipped = np.stack([np.clip(boxes[:, 0], x0, x1), np.clip(boxes[:, 1], y0, y1),
                            np.clip(boxes[:, 2], x0, x1), np.clip(boxes[:, 3], y0, y1)],
                           axis=1)  # fmt: skip
        area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        inside = np.prod(clipped[:, 2:] - clipped[:, :2], axis=1)
        keep = inside > 0
        out = truth[keep].copy()
        out[:, :4] = clipped[keep]
        share = inside[keep] / np.maximum(area[keep], 1e-9)
        out[:, 6] = out[:, 6] * np.minimum(share, 1.0)
        return out
