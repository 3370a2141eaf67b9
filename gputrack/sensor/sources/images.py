"""Image files, one or a folder in natural name order: :class:`ImageFolderSource`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gputrack.errors import GputrackError
from gputrack.opencv_files import read_rgb
from gputrack.sensor.sources.base import Frame, Source, log


class ImageFolderSource(Source):
    """Images in natural name order (or one image). Unreadable images are skipped and counted;
    an image of a different size from the first is an error (the pipeline needs one size)."""

    kind = "images"

    def __init__(self, files: Sequence[Path], name: str, fps: float | None = None,
                 frames: int | None = None, loop: bool = False) -> None:
        self.files = list(files)
        self._first: tuple[int, np.ndarray] | None = None
        notes: list[str] = []
        for k, f in enumerate(self.files):  # the size comes from the first readable image
            img = read_rgb(f)  # upright, 8 or 16 bits as stored
            if img is not None:
                self._first, notes = (k, img[0]), img[1]
                break
        if self._first is None:
            if len(self.files) == 1:
                raise GputrackError(f"{self.files[0]}: cannot read it as an image (not an image, "
                                    "damaged, or a format this OpenCV build cannot decode)")
            raise GputrackError(f"{name}: no readable image among {len(self.files)} file(s)")
        h, w = self._first[1].shape[:2]
        if w < 4 or h < 4:  # the sensor model's Bayer frame needs 4x4 after cropping to even
            raise GputrackError(f"{self.files[self._first[0]]}: image is {w}x{h}; the sensor "
                                "needs at least 4x4 pixels")  # fmt: skip
        super().__init__(name, fps or 30.0, (w, h), num_frames=len(self.files), frames=frames,
                         loop=loop)
        self.notes.extend(notes)  # the first image's transparency: the sensor sees colour only
        self._k = 0

    def _read(self) -> Frame | None:
        while self._k < len(self.files):
            k = self._k
            self._k += 1
            path = self.files[k]
            if self._first is not None and self._first[0] == k:
                img = self._first[1]
                self._first = None
            else:
                got = read_rgb(path, transparency=False)
                img = None if got is None else got[0]
            if img is None:
                self.dropped += 1
                log.warning("%s: cannot read image, skipped", path)
                continue
            if (img.shape[1], img.shape[0]) != self.size:
                raise GputrackError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, but the "
                                    f"folder's first image is {self.size[0]}x{self.size[1]}")
            return Frame(k, k / self.fps, image=img, meta={"file": str(path)})
        return None

    def _rewind(self) -> bool:
        self._k = 0
        return True

