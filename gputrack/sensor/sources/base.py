"""What every source shares: the :class:`Frame` and :class:`Source` interface, the constants
of the inputs (file extensions, frame rates, options), and the helpers several sources use
(option values, folder listing, RGB conversion, RAW frame checks)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gputrack.errors import GputrackError
from gputrack.sensor.frame import BIT_DEPTHS, MAX_FPS, MIN_FPS, RawFrame, check_pattern
from gputrack.sensor.roi import Roi

# One logger for every source, named for the package (as when it was one module).
log = logging.getLogger("gputrack.sensor.sources")

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
# Camera RAW formats rawpy (LibRaw) reads. ".raw" is absent on purpose: it means headerless.
CAMERA_RAW_EXTS = {
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf",
    ".rw2", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".kdc", ".dcr", ".mrw", ".erf", ".mef",
}
# What a folder source reads as frames: no output may land among them
FOLDER_FRAME_EXTS = IMAGE_EXTS | CAMERA_RAW_EXTS | {".raw", ".npy"}
NAMED_SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "1440p": (2560, 1440),
               "4k": (3840, 2160), "2160p": (3840, 2160), "uhd": (3840, 2160)}
# Every option any source understands; a source ignores the ones that do not concern it
# (a --pattern given with a video input is for the sensor model, not for the source).
KNOWN_OPTIONS = {
    "size", "bit_depth", "pattern", "black_level", "white_level", "fps", "frames", "loop",
    "max_drops", "seed", "num_objects", "objects", "classes", "ring",
}
URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


@dataclass
class Frame:
    """One frame from a source: an RGB image or a RAW Bayer frame, never both."""

    index: int  # position in the source; a dropped frame leaves a gap
    timestamp: float  # seconds: index / fps for files, capture time for live input
    image: np.ndarray | None = None  # uint8[H, W, 3] RGB (uint16 from 16-bit image files)
    raw: RawFrame | None = None
    truth: np.ndarray | None = None  # synthetic world: float32[N, 7] ground truth
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. the file, DNG white balance

    @property
    def is_raw(self) -> bool:
        return self.raw is not None

    @property
    def data(self) -> np.ndarray | RawFrame:
        return self.raw if self.raw is not None else self.image  # type: ignore[return-value]


class Source:
    """A stream of :class:`Frame`. Iterate it; ``close()`` it (or use ``with``)."""

    kind = "source"

    def __init__(self, name: str, fps: float, size: tuple[int, int], *, is_raw: bool = False,
                 num_frames: int | None = None, frames: int | None = None,
                 loop: bool = False) -> None:
        self.name = name
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))  # width, height: the sensor's
        # A recording of a windowed run (`run --roi`): every frame is this window of the
        # `size` sensor (its RawFrame says so too); None: every frame is the whole sensor.
        self.window: Roi | None = None
        self.is_raw = is_raw
        self.num_frames = num_frames  # frames in one pass, None when unknown or endless
        self.dropped = 0  # frames that could not be read and were skipped
        self.end_reason: str | None = None  # why a source ended early, when it did
        self.notes: list[str] = []  # what the user should know (an assumed frame rate)
        self.closed = False
        if frames is not None and int(frames) < 1:
            raise GputrackError(f"{name}: frames={frames}: must be at least 1")
        self.limit = None if frames is None else int(frames)  # stop after this many
        self._loop = bool(loop)
        self._emitted = 0
        self._offset = 0  # index offset added on each loop pass
        self._last = -1

    @property
    def expected_frames(self) -> int | None:
        """How many frames iterating gives, where known: the limit, one pass's frames (not
        when looping), the fewer (a source that fails early gives fewer still)."""
        one_pass = None if self._loop else self.num_frames
        return min((n for n in (self.limit, one_pass) if n), default=None)

    # subclasses: the next frame with its index within one pass, or None at the end
    def _read(self) -> Frame | None:
        raise NotImplementedError

    def _rewind(self) -> bool:
        return False

    def _release(self) -> None:
        pass

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        if self.closed or (self.limit is not None and self._emitted >= self.limit):
            raise StopIteration
        try:
            frame = self._read()
            if frame is None and self._loop and self._last >= 0 and self._rewind():
                self._offset += self._last + 1
                frame = self._read()
        except GputrackError:
            raise
        except OSError as err:
            raise GputrackError(f"{self.name}: {err.strerror or err}") from None
        except cv2.error as err:
            raise GputrackError(f"{self.name}: OpenCV failed: {str(err).strip()}") from None
        if frame is None:
            raise StopIteration
        if self._offset:
            frame.index += self._offset
            frame.timestamp += self._offset / self.fps
        self._last = frame.index - self._offset
        self._emitted += 1
        return frame

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._release()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.size
        kind = "RAW" if self.is_raw else "RGB"
        return f"<{type(self).__name__} {self.name!r} {w}x{h} {kind} @ {self.fps:g} fps>"


# ---- option values -----------------------------------------------------------------------


def parse_size(value: Any, what: str = "size") -> tuple[int, int]:
    """``'1920x1080'``, ``'4k'``, ``(1920, 1080)`` → ``(1920, 1080)``, or a clear error."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in NAMED_SIZES:
            return NAMED_SIZES[v]
        m = re.fullmatch(r"(\d+)\s*[x×,]\s*(\d+)", v)
        if not m:
            raise GputrackError(f"{what} '{value}' is not WIDTHxHEIGHT (e.g. 1920x1080)")
        w, h = int(m.group(1)), int(m.group(2))
    else:
        try:
            w, h = (int(x) for x in value)
        except (TypeError, ValueError):
            raise GputrackError(f"{what} {value!r} is not (width, height)") from None
    if w <= 0 or h <= 0:
        raise GputrackError(f"{what} {w}x{h} must be positive")
    return w, h


def _int(value: Any, key: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise GputrackError(f"{where}: {key}={value!r} is not a whole number") from None


def _float(value: Any, key: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GputrackError(f"{where}: {key}={value!r} is not a number") from None
    if not MIN_FPS <= v <= MAX_FPS:  # NaN fails too
        raise GputrackError(f"{where}: {key}={value!r} must be from {MIN_FPS:g} to "
                            f"{MAX_FPS:g}")  # fmt: skip
    return v


# ---- files and images --------------------------------------------------------------------


def natural_key(path: Path) -> list:
    """Sort key: 'img2' before 'img10'. The numbers are the runs ``\\d`` matches (decimal
    digits, any script): ``isdigit`` would also take '²', which ``int`` refuses."""
    return [int(t) if t.isdecimal() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _files_in(folder: Path) -> list[Path]:
    """A folder's frames: its files, hidden ones (``.name``, macOS's ``._IMG.JPG``) left
    out, in natural order; the name itself breaks ties ('A1', 'a1', 'a01'), so the order
    never depends on the file system's. A broken link stays in: it is a frame that cannot be
    read, and its source says so, rather than a frame that silently is not there."""
    return sorted((p for p in folder.iterdir()
                   if (p.is_file() or (p.is_symlink() and not p.exists()))
                   and not p.name.startswith(".")),
                  key=lambda p: (natural_key(p), p.name))


def _to_rgb(img: np.ndarray) -> np.ndarray:
    """OpenCV's BGR / grey / BGRA / 16-bit into uint8 RGB."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise GputrackError(f"image type {img.dtype} is not supported (8- or 16-bit only)")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ---- RAW frames --------------------------------------------------------------------------


def _raw_params(name: str, bit_depth: Any, pattern: Any, black_level: Any,
                white_level: Any) -> dict[str, Any]:
    try:
        depth = 12 if bit_depth is None else int(bit_depth)
    except (TypeError, ValueError):
        raise GputrackError(f"{name}: bit depth {bit_depth!r} is not a number") from None
    if depth not in BIT_DEPTHS:
        raise GputrackError(f"{name}: bit depth {depth} not supported (choose from "
                            f"{', '.join(map(str, BIT_DEPTHS))})")
    try:
        pat = check_pattern("RGGB" if pattern is None else pattern)
    except GputrackError as err:
        raise GputrackError(f"{name}: {err}") from None
    black = _int(black_level or 0, "black_level", name)
    white = None if white_level is None else _int(white_level, "white_level", name)
    return {"bit_depth": depth, "pattern": pat, "black_level": black, "white_level": white}


def _make_raw(name: str, data: np.ndarray, params: dict[str, Any], index: int,
              timestamp: float) -> RawFrame:
    """A checked RawFrame; any problem is reported against ``name``."""
    h, w = data.shape
    if w % 2 or h % 2:
        raise GputrackError(f"{name}: RAW size {w}x{h} is odd; a Bayer frame needs even "
                            "width and height")
    if w < 4 or h < 4:
        raise GputrackError(f"{name}: RAW size {w}x{h}: at least 4x4 pixels")
    try:
        frame = RawFrame(data, index=index, timestamp=timestamp, **params)
        frame.check_values()
    except GputrackError as err:
        raise GputrackError(f"{name}: {err}") from None
    return frame
