"""Sources of frames behind one interface: the synthetic world, video files, webcams, image
folders and RAW files (headerless ``.raw``, ``.npy``, DNG and camera RAW through rawpy).

``open_source(spec, **options)`` picks the kind from the spec. A source is an iterator of
:class:`Frame` (each with ``index``, ``timestamp`` and either an RGB ``image`` or a
:class:`RawFrame`), has ``fps`` and ``size``, and closes as a context manager.

Bad input is a :class:`GputrackError` naming the input. Frames that cannot be read:

- live input (webcam, a URL without a frame count): the frame is skipped and counted in
  ``dropped``;
  only ``max_drops`` failed reads in a row (default 30, about a second) end the run, with an
  error, because the camera is then gone;
- a video file: a frame that fails to decode before the end is skipped and counted in
  ``dropped`` (the decoder resumes at the next frame, and frame indices keep the gap so
  timing stays true); if ``max_drops`` reads in a row fail, the source ends cleanly there and
  says why in ``end_reason``;
- an image folder: an unreadable image is skipped and counted the same way.
RAW files are different: a file whose size, bit depth or pattern is wrong is a configuration
error, never skipped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gputrack.errors import GputrackError, UsageError
from gputrack.opencv_files import opencv_name, read_image
from gputrack.sensor.frame import BIT_DEPTHS, RawFrame, check_pattern
from gputrack.sensor.synthetic import (
    ALL_CLASSES,
    MAX_OBJECTS,
    MAX_SEED,
    FrameRing,
    SyntheticWorld,
)

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
# Camera RAW formats rawpy (LibRaw) reads. ".raw" is absent on purpose: it means headerless.
CAMERA_RAW_EXTS = {
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf",
    ".rw2", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".kdc", ".dcr", ".mrw", ".erf", ".mef",
}
# Frame rates a source may claim: from one frame in 10 s (time lapse) to 1000 fps. Beyond
# them the tracker's frame counts and a video writer's timing make no sense.
MIN_FPS, MAX_FPS = 0.1, 1000.0
NAMED_SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "1440p": (2560, 1440),
               "4k": (3840, 2160), "2160p": (3840, 2160), "uhd": (3840, 2160)}
# Every option any source understands; a source ignores the ones that do not concern it
# (a --pattern given with a video input is for the sensor model, not for the source).
KNOWN_OPTIONS = {
    "size", "bit_depth", "pattern", "black_level", "white_level", "fps", "frames", "loop",
    "max_drops", "seed", "num_objects", "objects", "classes", "ring",
}
# Keys of the synthetic spec string (``synthetic:WxH@FPS,key=value,...``); "size" and "fps"
# may also be written as keys. "loop" is not one: the synthetic world is endless.
SYNTHETIC_KEYS = ("size", "fps", "seed", "objects", "num_objects", "classes", "ring", "frames")
# Webcam indices: OpenCV reads a number of 100 or more as a backend choice plus an index
# (200 = V4L2 camera 0), so only 0 to 99 name a camera.
MAX_WEBCAM = 99
URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def is_synthetic(spec: str | None) -> bool:
    """Whether ``spec`` names the synthetic world: ``None`` (no input given), exactly
    ``synthetic``, or ``synthetic:...`` (lower case, no spaces). The one test every caller
    uses. Any other spelling (``Synthetic``, `` synthetic``) is a path like any other.

    An empty or blank spec is a :class:`UsageError`: it is more likely a mistake (an unset
    shell variable) than a request for the default.
    """
    if spec is None:
        return True
    text = str(spec)
    if not text.strip():
        raise UsageError(f"source {text!r} is empty: give a file, a folder, a webcam index, "
                         "a URL or 'synthetic'")  # fmt: skip
    return text == "synthetic" or text.startswith("synthetic:")


def is_headerless_raw(spec: str) -> bool:
    """Whether :func:`open_source` reads ``spec`` as headerless ``.raw``: a ``.raw`` file or a
    folder with ``.raw`` files (the extension in any case, as everywhere in the sources)."""
    if is_synthetic(spec) or URL.match(spec):
        return False
    path = Path(spec).expanduser()
    try:
        if path.is_dir():
            return any(f.suffix.lower() == ".raw" for f in _files_in(path))
    except OSError:
        return False
    return path.suffix.lower() == ".raw"


@dataclass
class Frame:
    """One frame from a source: an RGB image or a RAW Bayer frame, never both."""

    index: int  # position in the source; a dropped frame leaves a gap
    timestamp: float  # seconds: index / fps for files, capture time for live input
    image: np.ndarray | None = None  # uint8[H, W, 3] RGB
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
        self.size = (int(size[0]), int(size[1]))  # width, height
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


# ---- synthetic ---------------------------------------------------------------------------


class SyntheticSource(Source):
    """The synthetic world; endless unless ``frames`` is given. Frames carry ground truth.

    With ``ring=N`` the first N frames are rendered once and replayed (for benchmarks at 4K).
    """

    kind = "synthetic"

    def __init__(self, size: tuple[int, int] = (1280, 720), fps: float = 30.0, seed: int = 0,
                 num_objects: int = 8, classes: Sequence[str] = ALL_CLASSES,
                 ring: int | None = None, frames: int | None = None,
                 name: str = "synthetic") -> None:
        super().__init__(name, fps, size, frames=frames)
        try:
            self.world = SyntheticWorld(size[0], size[1], fps, seed, num_objects, classes)
            self.ring: FrameRing | None = (None if ring is None
                                           else self.world.prerender(int(ring)))  # fmt: skip
        except GputrackError as err:  # the world's own checks (size bounds): name the spec
            raise type(err)(f"{name}: {err}") from None
        self.class_names = self.world.class_names
        self._i = 0

    def _read(self) -> Frame:
        i = self._i
        self._i += 1
        if self.ring is not None:
            image, truth = self.ring[i], self.ring.ground_truth(i)  # read-only view, no copy
        else:
            image, truth = self.world.render(i), self.world.ground_truth(i)
        return Frame(i, i / self.fps, image=image, truth=truth)


def _parse_synthetic(spec: str) -> dict[str, Any]:
    """``synthetic[:WxH|720p|4k][@FPS][,key=value...]`` → constructor arguments."""
    out: dict[str, Any] = {}
    _, _, rest = spec.partition(":")
    for token in filter(None, (t.strip() for t in rest.split(","))):
        if "=" in token:
            key, _, value = token.partition("=")
            out[key.strip().lower()] = value.strip()
            continue
        size, _, fps = token.partition("@")
        if size:
            out["size"] = size
        if fps:
            out["fps"] = fps
    return out


# ---- video files, webcams, streams -------------------------------------------------------


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs warnings of its own on a failed open; the user gets our one line instead."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _prop(capture: Any, prop: int) -> float:
    """A capture property as a finite number; 0 where OpenCV has none (NaN, inf, error)."""
    try:
        v = float(capture.get(prop) or 0)
    except (TypeError, ValueError, cv2.error):
        return 0.0
    return v if math.isfinite(v) else 0.0


class VideoSource(Source):
    """A video file, a webcam (``device`` index) or a network stream, through OpenCV.

    ``live=None`` decides: a webcam is live; a URL is live unless its capture reports a
    frame count (a ``file://`` or ``http://.../clip.mp4`` is a file that ends; an RTSP
    camera has no count). ``capture`` may be any object with OpenCV's ``VideoCapture``
    methods (tests use a fake). The container's frame rate is used when it is from 0.1 to
    1000 fps; otherwise ``fps`` (or 30) is assumed, and ``notes`` says so.
    Live input skips frames that fail to read and counts them; ``max_drops`` failures in a
    row raise an error. A file skips and counts frames that fail to decode; after each
    ``max_drops`` failures in a row it seeks past them (a damaged stretch can leave the decoder
    stuck where later frames would decode), and it ends cleanly (``end_reason`` says why) where
    no frame decodes up to the end or the seek fails.
    """

    kind = "video"

    def __init__(self, target: str | int, *, live: bool | None = None, capture: Any = None,
                 size: tuple[int, int] | None = None, fps: float | None = None,
                 max_drops: int | None = None, frames: int | None = None,
                 loop: bool = False) -> None:
        webcam = isinstance(target, int)
        stream = not webcam and bool(URL.match(str(target)))
        what = (f"webcam {target}" if webcam else f"stream '{target}'" if stream
                else f"video '{target}'")  # fmt: skip
        if webcam and not 0 <= target <= MAX_WEBCAM:  # beyond: a backend choice, or no C int
            raise UsageError(f"{what}: no such camera index (0 to {MAX_WEBCAM})")
        if capture is None:
            # FFmpeg prints its own line per bad packet; we report drops once, through logging.
            # Read by OpenCV when it first loads FFmpeg; a value the user set wins.
            os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
            with _quiet_opencv():
                capture = cv2.VideoCapture(target if webcam else opencv_name(target, "video"))
                if webcam and capture.isOpened():
                    if size:  # a request: the camera picks the nearest mode it has
                        capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
                        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
                    if fps:
                        capture.set(cv2.CAP_PROP_FPS, fps)
        if not capture.isOpened():
            if isinstance(target, int):
                raise GputrackError(f"webcam {target} did not open (no camera at that index, "
                                    "or another program is using it)")
            raise GputrackError(f"{what}: OpenCV cannot open it (not a video, or a codec "
                                "this OpenCV build lacks)")
        self._cap = capture
        self._what = what
        count = max(0, int(_prop(capture, cv2.CAP_PROP_FRAME_COUNT)))
        # A URL with a frame count is a finite file (it ends at its end); without one it is
        # a live stream (a camera: skip what fails, give up after max_drops in a row).
        self.live = (webcam or count == 0) if live is None else live
        w = int(_prop(capture, cv2.CAP_PROP_FRAME_WIDTH))
        h = int(_prop(capture, cv2.CAP_PROP_FRAME_HEIGHT))
        if 0 < w < 4 or 0 < h < 4:  # the sensor model's Bayer frame needs 4x4 after cropping
            capture.release()
            raise GputrackError(f"{what}: frames are {w}x{h}; the sensor needs at least 4x4 "
                                "pixels")  # fmt: skip
        got_fps = _prop(capture, cv2.CAP_PROP_FPS)
        note = None
        if not MIN_FPS <= got_fps <= MAX_FPS:  # a container without a rate, or a wrong one
            rate = float(fps or 30.0)
            said = ("states no frame rate" if got_fps <= 0 else
                    f"states {got_fps:g} fps, outside {MIN_FPS:g} to {MAX_FPS:g}")
            note = f"{what}: {said}; {rate:g} fps assumed"
            log.warning("%s", note)
            got_fps = rate
        known = count if count > 0 and not self.live else None
        super().__init__(str(target), got_fps, (w, h), num_frames=known, frames=frames,
                         loop=loop and not self.live)
        if note:
            self.notes.append(note)
        self._gone = "camera" if webcam else "stream"
        self.max_drops = int(max_drops or 30)
        self._pos = 0  # reads attempted in this pass = index of the next frame
        self._t0 = time.monotonic()

    def _read(self) -> Frame | None:
        pending = 0  # failures since the last good frame
        while True:
            ok, bgr = self._cap.read()
            pos = self._pos
            self._pos += 1
            if ok and bgr is not None:
                if bgr.shape[0] < 4 or bgr.shape[1] < 4:
                    raise GputrackError(f"{self._what}: frame {pos} is {bgr.shape[1]}x"
                                        f"{bgr.shape[0]}; the sensor needs at least 4x4 pixels")
                if pending:
                    self.dropped += pending  # failures followed by a good frame were drops
                    log.warning("%s: %d frame(s) unreadable before frame %d, skipped",
                                self._what, pending, pos)
                t = time.monotonic() - self._t0 if self.live else pos / self.fps
                return Frame(pos, t, image=_to_rgb(bgr))
            pending += 1
            first_bad = pos - pending + 1
            if self.live:
                if pending >= self.max_drops:
                    self.dropped += pending
                    raise GputrackError(f"{self._what}: no frame in {pending} reads in a row "
                                        f"({self._gone} disconnected?)")
                continue
            at_end = self.num_frames is None or pos >= self.num_frames - 1
            # After max_drops failures in a row the decoder may be stuck in a damaged stretch:
            # a seek past the last failed frame restarts it (from the keyframe before), so the
            # frames after the damage are still read. A failed read at the end is the end; a
            # run of them up to it, or a seek that fails, ends the file early, and the user is
            # told where.
            restarted = (not at_end and pending % self.max_drops == 0
                         and bool(self._cap.set(cv2.CAP_PROP_POS_FRAMES, pos + 1)))
            if at_end or (pending % self.max_drops == 0 and not restarted):
                if pending > 1 or not at_end:
                    self.end_reason = (f"{self._what}: frames from {first_bad} on cannot be "
                                       f"decoded (the file says it has {self.num_frames}); "
                                       "ended there")
                    log.warning("%s", self.end_reason)
                return None

    def _rewind(self) -> bool:
        ok = bool(self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0))
        self._pos = 0
        return ok

    def _release(self) -> None:
        self._cap.release()


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


# ---- image folders ----------------------------------------------------------------------


def natural_key(path: Path) -> list:
    """Sort key: 'img2' before 'img10'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class ImageFolderSource(Source):
    """Images in natural name order (or one image). Unreadable images are skipped and counted;
    an image of a different size from the first is an error (the pipeline needs one size)."""

    kind = "images"

    def __init__(self, files: Sequence[Path], name: str, fps: float | None = None,
                 frames: int | None = None, loop: bool = False) -> None:
        self.files = list(files)
        self._first: tuple[int, np.ndarray] | None = None
        for k, f in enumerate(self.files):  # the size comes from the first readable image
            img = read_image(f)
            if img is not None:
                self._first = (k, img)
                break
        if self._first is None:
            raise GputrackError(f"{name}: no readable image among {len(self.files)} file(s)")
        h, w = self._first[1].shape[:2]
        if w < 4 or h < 4:  # the sensor model's Bayer frame needs 4x4 after cropping to even
            raise GputrackError(f"{self.files[self._first[0]]}: image is {w}x{h}; the sensor "
                                "needs at least 4x4 pixels")  # fmt: skip
        super().__init__(name, fps or 30.0, (w, h), num_frames=len(self.files), frames=frames,
                         loop=loop)
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
                img = read_image(path)
            if img is None:
                self.dropped += 1
                log.warning("%s: cannot read image, skipped", path)
                continue
            if (img.shape[1], img.shape[0]) != self.size:
                raise GputrackError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, but the "
                                    f"folder's first image is {self.size[0]}x{self.size[1]}")
            return Frame(k, k / self.fps, image=_to_rgb(img), meta={"file": str(path)})
        return None

    def _rewind(self) -> bool:
        self._k = 0
        return True


# ---- RAW: headerless .raw ---------------------------------------------------------------


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


def _hints(path: Path) -> dict[str, Any]:
    """Size, bit depth and pattern written in a file name, e.g. ``x_1920x1080_rggb_10bit.raw``."""
    name = path.name.lower()
    out: dict[str, Any] = {}
    if m := re.search(r"(?<!\d)(\d{2,5})x(\d{2,5})(?!\d)", name):
        out["size"] = (int(m.group(1)), int(m.group(2)))
    if m := re.search(r"(?<!\d)(8|10|12|14|16)[-_ ]?bits?(?![a-z])", name):
        out["bit_depth"] = int(m.group(1))
    if m := re.search(r"(?<![a-z])(rggb|grbg|gbrg|bggr)(?![a-z])", name):
        out["pattern"] = m.group(1).upper()
    return out


def _show(key: str, value: Any) -> str:
    """A file-name hint as the user wrote it: '96x64', '10-bit', 'BGGR'."""
    if key == "size":
        return f"{value[0]}x{value[1]}"
    return f"{value}-bit" if key == "bit_depth" else str(value)


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


class RawFileSource(Source):
    """Headerless little-endian uint16 RAW files, one frame per file (one file or a folder).

    ``size`` (``WxH``), ``bit_depth`` (default 12), ``pattern`` (default RGGB) and
    ``black_level`` come from the options, else from the file names (``_1920x1080_``,
    ``_10bit``, ``_rggb``), read for every file: files whose names state different values
    are an error (a stream has one format); a file whose name states none takes the others'.
    Each file's byte size is checked up front.
    """

    kind = "raw"

    def __init__(self, files: Sequence[Path], name: str, size: Any = None, bit_depth: Any = None,
                 pattern: Any = None, black_level: Any = None, white_level: Any = None,
                 fps: float | None = None, frames: int | None = None, loop: bool = False) -> None:
        self.files = list(files)
        hint = self._folder_hints(name, size is None, bit_depth is None, pattern is None)
        from_name = size is None and "size" in hint
        size = size if size is not None else hint.get("size")
        if size is None:
            raise GputrackError(f"{name}: a headerless .raw needs its size (--size WxH); "
                                f"{self.files[0].stat().st_size} bytes could be many sizes")
        w, h = parse_size(size, f"{name}: size")
        self.params = _raw_params(
            name, bit_depth if bit_depth is not None else hint.get("bit_depth"),
            pattern if pattern is not None else hint.get("pattern"), black_level, white_level)
        if w % 2 or h % 2:
            raise GputrackError(f"{name}: RAW size {w}x{h} is odd; a Bayer frame needs even "
                                "width and height")
        need = w * h * 2
        for f in self.files:
            got = f.stat().st_size
            if got != need:
                fits = ""
                if got and got % (2 * h) == 0:
                    fits = f" (that would be {got // (2 * h)}x{h})"
                elif got and got % (2 * w) == 0:
                    fits = f" (that would be {w}x{got // (2 * w)})"
                why = ("; the size comes from the file name: the file is truncated or "
                       "misnamed (--size overrides the name)" if from_name else "; check --size")
                raise GputrackError(f"{f}: {got} bytes, but {w}x{h} 16-bit RAW needs {need}"
                                    f"{fits}{why}")
        super().__init__(name, fps or 30.0, (w, h), is_raw=True, num_frames=len(self.files),
                         frames=frames, loop=loop)
        self._k = 0

    def _folder_hints(self, name: str, size: bool, bit_depth: bool,
                      pattern: bool) -> dict[str, Any]:
        """The size, bit depth and pattern the files' names state (only those asked for,
        i.e. not given as options); two files that state different values are an error."""
        keys = [k for k, ask in (("size", size), ("bit_depth", bit_depth),
                                 ("pattern", pattern)) if ask]  # fmt: skip
        out: dict[str, Any] = {}
        first: dict[str, Path] = {}
        for f in self.files:
            hint = _hints(f)
            for key in keys:
                if key not in hint:
                    continue
                if key not in out:
                    out[key], first[key] = hint[key], f
                elif hint[key] != out[key]:
                    flag = "--" + key.replace("_", "-")
                    raise GputrackError(
                        f"{name}: {first[key].name} is {_show(key, out[key])} but {f.name} is "
                        f"{_show(key, hint[key])} by their names; one stream has one format "
                        f"(separate the files, or set {flag})")
        return out

    def _read(self) -> Frame | None:
        if self._k >= len(self.files):
            return None
        k = self._k
        self._k += 1
        path = self.files[k]
        w, h = self.size
        try:
            data = np.fromfile(path, dtype="<u2", count=w * h).astype(np.uint16, copy=False)
        except OSError as err:  # gone or unreadable since the start: name the file
            raise GputrackError(f"{path}: {err.strerror or err}") from None
        if data.size != w * h:
            raise GputrackError(f"{path}: file shrank while reading ({data.size * 2} bytes)")
        raw = _make_raw(str(path), data.reshape(h, w), self.params, k, k / self.fps)
        return Frame(k, k / self.fps, raw=raw, meta={"file": str(path)})

    def _rewind(self) -> bool:
        self._k = 0
        return True


# ---- RAW and RGB: .npy ------------------------------------------------------------------


class NpySource(Source):
    """``.npy`` arrays (one file or a folder): ``uint16[H, W]`` or ``uint16[N, H, W]`` are RAW
    frames, ``uint8[H, W, 3]`` or ``uint8[N, H, W, 3]`` are RGB frames."""

    kind = "npy"

    def __init__(self, files: Sequence[Path], name: str, bit_depth: Any = None,
                 pattern: Any = None, black_level: Any = None, white_level: Any = None,
                 fps: float | None = None, frames: int | None = None, loop: bool = False) -> None:
        self.files = list(files)
        shapes = [self._load(f) for f in self.files]
        first_raw = shapes[0][0]
        first_hw = shapes[0][1]
        for f, (is_raw, hw, _) in zip(self.files, shapes, strict=True):
            if is_raw != first_raw or hw != first_hw:
                raise GputrackError(f"{f}: holds {'RAW' if is_raw else 'RGB'} {hw[1]}x{hw[0]}, "
                                    f"unlike {self.files[0].name}")
        self._counts = [n for _, _, n in shapes]
        self.params = (_raw_params(name, bit_depth, pattern, black_level, white_level)
                       if first_raw else None)
        super().__init__(name, fps or 30.0, (first_hw[1], first_hw[0]), is_raw=first_raw,
                         num_frames=sum(self._counts), frames=frames, loop=loop)
        self._k = 0  # file
        self._j = 0  # frame within the file
        self._i = 0  # frame overall
        self._arr: np.ndarray | None = None

    @staticmethod
    def _open(path: Path) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except OSError as err:  # gone or unreadable: name the file, not the folder
            raise GputrackError(f"{path}: {err.strerror or err}") from None
        except (ValueError, EOFError) as err:
            raise GputrackError(f"{path}: not a readable .npy array ({err})") from None

    def _load(self, path: Path) -> tuple[bool, tuple[int, int], int]:
        """(is_raw, (h, w), frames) of one file, or a clear error."""
        a = self._open(path)
        if a.dtype.kind == "u" and a.dtype.itemsize == 2 and a.ndim in (2, 3):  # either order
            return True, a.shape[-2:], 1 if a.ndim == 2 else a.shape[0]
        if a.dtype == np.uint8 and a.ndim in (3, 4) and a.shape[-1] == 3:
            return False, a.shape[-3:-1], 1 if a.ndim == 3 else a.shape[0]
        raise GputrackError(
            f"{path}: array {a.dtype}{list(a.shape)} is neither a RAW frame (uint16 HxW or "
            "NxHxW) nor an RGB image (uint8 HxWx3 or NxHxWx3)")

    def _read(self) -> Frame | None:
        while self._k < len(self.files) and self._j >= self._counts[self._k]:
            self._k += 1
            self._j = 0
            self._arr = None
        if self._k >= len(self.files):
            return None
        path = self.files[self._k]
        if self._arr is None:
            self._arr = self._open(path)
        a = self._arr
        one = a.ndim == (2 if self.is_raw else 3)
        # a copy (the map stays read-only), in this machine's byte order
        data = np.array(a if one else a[self._j], dtype=np.uint16 if self.is_raw else np.uint8)
        i = self._i
        self._j += 1
        self._i += 1
        t = i / self.fps
        meta = {"file": str(path)}
        if self.is_raw:
            assert self.params is not None
            return Frame(i, t, raw=_make_raw(str(path), data, self.params, i, t), meta=meta)
        return Frame(i, t, image=data, meta=meta)

    def _rewind(self) -> bool:
        self._k = self._j = self._i = 0
        self._arr = None
        return True


# ---- RAW: DNG and camera RAW through rawpy ----------------------------------------------


class CameraRawSource(Source):
    """DNG and camera RAW files (one or a folder) through rawpy: the visible sensor area, its
    Bayer pattern, black and white level. An odd edge row or column is cropped off (the
    pattern is anchored at the top-left, so it does not change). Non-Bayer sensors (X-Trans,
    four-colour) are an error. ``meta`` carries the per-channel black levels and the camera's
    white balance and colour matrix."""

    kind = "camera-raw"

    def __init__(self, files: Sequence[Path], name: str, bit_depth: Any = None,
                 fps: float | None = None, frames: int | None = None, loop: bool = False) -> None:
        try:
            import rawpy  # noqa: F401  (optional dependency: only DNG/camera RAW needs it)
        except ImportError:
            raise GputrackError(f"{name}: reading DNG/camera RAW needs rawpy "
                                "(pip install rawpy)") from None
        self.files = list(files)
        self._bit_depth = bit_depth
        first = self._load(self.files[0], 0, 0.0)
        self._first: Frame | None = first
        h, w = first.raw.data.shape  # type: ignore[union-attr]
        super().__init__(name, fps or 30.0, (w, h), is_raw=True, num_frames=len(self.files),
                         frames=frames, loop=loop)
        self._k = 0

    def _load(self, path: Path, index: int, t: float) -> Frame:
        import rawpy

        try:
            with rawpy.imread(str(path)) as r:
                pattern = _rawpy_pattern(r, path)
                data = np.array(r.raw_image_visible, dtype=np.uint16)
                blacks = [int(b) for b in r.black_level_per_channel]
                white = int(r.white_level)
                meta = {
                    "file": str(path),
                    "black_level_per_channel": blacks,
                    "camera_whitebalance": [float(x) for x in r.camera_whitebalance],
                    "rgb_xyz_matrix": np.array(r.rgb_xyz_matrix).tolist(),
                }
        except Exception as err:  # any decoder failure on a user's file is a bad input
            raise GputrackError(f"{path}: rawpy cannot read it ({type(err).__name__}: "
                                f"{err})") from None
        h, w = data.shape
        data = data[: h - h % 2, : w - w % 2]
        depth = self._bit_depth
        if depth is None:  # the smallest depth that holds the white level
            depth = next((b for b in BIT_DEPTHS if white < (1 << b)), 16)
        white = min(white, (1 << int(depth)) - 1)
        params = _raw_params(str(path), depth, pattern, round(float(np.mean(blacks))), white)
        raw = _make_raw(str(path), np.ascontiguousarray(data), params, index, t)
        return Frame(index, t, raw=raw, meta=meta)

    def _read(self) -> Frame | None:
        if self._k >= len(self.files):
            return None
        k = self._k
        self._k += 1
        if k == 0 and self._first is not None:
            frame, self._first = self._first, None
            return frame
        return self._load(self.files[k], k, k / self.fps)

    def _rewind(self) -> bool:
        self._k = 0
        return True


def _rawpy_pattern(r: Any, path: Path) -> str:
    """The 2x2 Bayer pattern at the top-left of the visible area, as 'RGGB' etc."""
    pat = r.raw_pattern
    desc = r.color_desc.decode("ascii", "replace")
    if pat is None or pat.shape != (2, 2) or sorted(desc[:3]) != ["B", "G", "R"]:
        raise GputrackError(f"{path}: not a Bayer RAW (colours '{desc}'); only 2x2 RGB Bayer "
                            "sensors are supported")
    s = r.sizes
    # raw_pattern is anchored at the full sensor's corner; the visible area starts at margins
    letters = [desc[pat[(s.top_margin + i) % 2, (s.left_margin + j) % 2]]
               for i in (0, 1) for j in (0, 1)]
    return check_pattern("".join(letters))


# ---- choosing a source ------------------------------------------------------------------


def _files_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                  key=natural_key)


def open_source(spec: str | None = None, **options: Any) -> Source:
    """Open a source from a spec; options as the CLI passes them (``None`` means unset).

    - ``None``, ``synthetic`` or ``synthetic:1920x1080@60,seed=3,objects=12,
      classes=person+car,ring=60,frames=300``: the synthetic world (:func:`is_synthetic`);
      an empty spec is a usage error;
    - ``0`` to ``99``: a webcam; ``rtsp://…`` and other URLs: a live stream, unless OpenCV
      reports a frame count (``file://…``, ``http://…/clip.mp4``): then a file;
    - a folder: its images, or its ``.raw`` / ``.npy`` / camera RAW files, in natural order;
    - ``*.raw``: headerless RAW (``size``, ``bit_depth``, ``pattern``, ``black_level``);
    - ``*.npy``: RAW (uint16) or RGB (uint8) arrays;
    - ``*.dng`` and camera RAW (``.cr2``, ``.nef``, ``.arw``…): through rawpy;
    - an image file: a one-frame source; anything else: a video file through OpenCV.
    Common options: ``fps`` (where the input has none), ``frames`` (stop after N),
    ``loop`` (restart finite inputs), ``max_drops`` (video/webcam).
    """
    opts = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(opts) - KNOWN_OPTIONS)
    if unknown:
        raise GputrackError(f"unknown source option(s) {', '.join(unknown)} (known: "
                            f"{', '.join(sorted(KNOWN_OPTIONS))})")
    synthetic = is_synthetic(spec)
    text = "synthetic" if spec is None else str(spec)
    common = {k: opts[k] for k in ("frames", "loop") if k in opts}
    if "frames" in common:
        common["frames"] = _int(common["frames"], "frames", text)
    fps = _float(opts["fps"], "fps", text) if "fps" in opts else None

    if synthetic:  # every error here is in the spec or the options: a usage error
        try:
            return _open_synthetic(text, opts, fps)
        except UsageError:
            raise
        except GputrackError as err:
            raise UsageError(str(err)) from None
    if re.fullmatch(r"[0-9]+", text):  # ASCII digits only ('²' is a digit to str.isdigit)
        return _open_webcam(text, opts, fps, common.get("frames"))
    if URL.match(text):
        return VideoSource(text, live=None, max_drops=opts.get("max_drops"), fps=fps,
                           **common)

    path = Path(text).expanduser()
    if not path.exists():
        like = text.strip().lower()
        hint = (" (the synthetic world is spelled 'synthetic' or 'synthetic:...', lower case, "
                "no spaces)" if like == "synthetic" or like.startswith("synthetic:") else "")
        raise GputrackError(f"input '{text}' not found{hint}")
    raw_opts = {k: opts.get(k) for k in ("bit_depth", "pattern", "black_level", "white_level")}
    if path.is_dir():
        files = _files_in(path)
        groups = {
            "images": [f for f in files if f.suffix.lower() in IMAGE_EXTS],
            "raw": [f for f in files if f.suffix.lower() == ".raw"],
            "npy": [f for f in files if f.suffix.lower() == ".npy"],
            "camera": [f for f in files if f.suffix.lower() in CAMERA_RAW_EXTS],
        }
        found = [k for k, v in groups.items() if v]
        if not found:
            raise GputrackError(f"folder '{text}' has no images, .raw, .npy or DNG/camera RAW "
                                "files")
        if len(found) > 1:
            raise GputrackError(f"folder '{text}' mixes {' and '.join(found)} files; put one "
                                "kind per folder")
        kind, members = found[0], groups[found[0]]
    else:
        ext = path.suffix.lower()
        kind = ("raw" if ext == ".raw" else "npy" if ext == ".npy" else
                "camera" if ext in CAMERA_RAW_EXTS else "images" if ext in IMAGE_EXTS else "video")
        members = [path]
    name = text
    try:
        if kind == "images":
            return ImageFolderSource(members, name, fps=fps, **common)
        if kind == "raw":
            return RawFileSource(members, name, size=opts.get("size"), fps=fps, **raw_opts,
                                 **common)
        if kind == "npy":
            return NpySource(members, name, fps=fps, **raw_opts, **common)
        if kind == "camera":
            stated = [k for k in ("pattern", "black_level", "white_level") if k in opts]
            if stated:
                flags = ", ".join(f"--{k.replace('_', '-')}" for k in stated)
                raise UsageError(f"{name}: a DNG/camera RAW file states its own Bayer pattern, "
                                 f"black and white level; {flags} does not apply")
            return CameraRawSource(members, name, bit_depth=opts.get("bit_depth"), fps=fps,
                                   **common)
        return VideoSource(str(path), live=False, fps=fps, max_drops=opts.get("max_drops"),
                           **common)
    except OSError as err:
        raise GputrackError(f"{name}: {err.strerror or err}") from None


def _open_webcam(text: str, opts: dict[str, Any], fps: float | None,
                 frames: int | None) -> VideoSource:
    """Webcam ``text`` (ASCII digits): an index from 0 to MAX_WEBCAM. Where a file of that
    name is in the current folder, a failure says how to read the file instead."""
    also = (f"; to read the file named '{text}' here, pass './{text}'"
            if Path(text).exists() else "")  # fmt: skip
    size = parse_size(opts["size"]) if "size" in opts else None
    try:
        return VideoSource(int(text), live=True, size=size, fps=fps,
                           max_drops=opts.get("max_drops"), frames=frames)
    except GputrackError as err:
        if also:
            raise type(err)(f"{err}{also}") from None
        raise


def _int(value: Any, key: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise GputrackError(f"{where}: {key}={value!r} is not a whole number") from None


def _seed(value: Any, where: str) -> int:
    seed = _int(value, "seed", where)
    if not 0 <= seed <= MAX_SEED:  # 64-bit: a larger one would wrap onto a smaller one
        raise GputrackError(f"{where}: seed={value!r} must be from 0 to 2**64 - 1")
    return seed


def _float(value: Any, key: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GputrackError(f"{where}: {key}={value!r} is not a number") from None
    if not MIN_FPS <= v <= MAX_FPS:  # NaN fails too
        raise GputrackError(f"{where}: {key}={value!r} must be from {MIN_FPS:g} to "
                            f"{MAX_FPS:g}")  # fmt: skip
    return v


def _open_synthetic(spec: str, opts: dict[str, Any], fps: float | None) -> SyntheticSource:
    parsed = _parse_synthetic(spec)
    unknown = sorted(set(parsed) - set(SYNTHETIC_KEYS))
    if unknown:
        raise GputrackError(f"{spec}: unknown synthetic option(s) {', '.join(unknown)} "
                            f"(known: WxH@FPS, {', '.join(SYNTHETIC_KEYS)})")
    merged = {**parsed, **opts}  # explicit options win over the spec string
    size = parse_size(merged.get("size", (1280, 720)), f"{spec}: size")
    rate = fps if fps is not None else (_float(merged["fps"], "fps", spec)
                                        if "fps" in merged else 30.0)
    classes = merged.get("classes", ALL_CLASSES)
    if isinstance(classes, str):
        classes = [c for c in re.split(r"[+ ;|/]", classes) if c]
    objects = _int(merged.get("num_objects", merged.get("objects", 8)), "objects", spec)
    if not 0 <= objects <= MAX_OBJECTS:
        raise GputrackError(f"{spec}: objects={objects} must be from 0 to {MAX_OBJECTS}")
    ring = _int(merged["ring"], "ring", spec) if "ring" in merged else None
    if ring is not None and ring < 1:  # leave ring out to render every frame
        raise GputrackError(f"{spec}: ring={ring} must be at least 1 (leave it out to render "
                            "every frame)")  # fmt: skip
    return SyntheticSource(
        size=size, fps=rate, seed=_seed(merged.get("seed", 0), spec),
        num_objects=objects, classes=classes, ring=ring,
        frames=_int(merged["frames"], "frames", spec) if "frames" in merged else None,
        name=spec,
    )
