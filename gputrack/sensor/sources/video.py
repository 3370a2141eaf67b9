"""Video files, webcams and network streams through OpenCV: :class:`VideoSource`."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2

from gputrack.errors import GputrackError, UsageError
from gputrack.opencv_files import opencv_name
from gputrack.sensor.sources.base import (
    MAX_FPS,
    MIN_FPS,
    URL,
    Frame,
    Source,
    _to_rgb,
    log,
    parse_size,
)

# Webcam indices: OpenCV reads a number of 100 or more as a backend choice plus an index
# (200 = V4L2 camera 0), so only 0 to 99 name a camera.
MAX_WEBCAM = 99


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
            why = ("the server did not answer or refused it, or it carries a protocol or "
                   "codec this OpenCV build lacks" if stream else
                   "not a video, a damaged or cut-short one, or a codec this OpenCV build "
                   "lacks")  # fmt: skip
            raise GputrackError(f"{what}: OpenCV cannot open it ({why})")
        self._cap = capture
        self._what = what
        count = max(0, int(_prop(capture, cv2.CAP_PROP_FRAME_COUNT)))
        # A URL with a frame count is a finite file (it ends at its end); without one it is
        # a live stream (a camera: skip what fails, give up after max_drops in a row).
        self.live = (webcam or count == 0) if live is None else live
        w = int(_prop(capture, cv2.CAP_PROP_FRAME_WIDTH))
        h = int(_prop(capture, cv2.CAP_PROP_FRAME_HEIGHT))
        # The frames' size is the first frame's, which is kept for the first read: what a
        # capture states can differ (0x0 for some streams until they have decoded a frame; a
        # camera stating the mode asked for and delivering another; a phone video whose
        # rotation OpenCV applies to the frames but, in some versions, not to the size), and
        # every frame would then be refused as the wrong size. A first read that fails is
        # kept as that, for the first read to count.
        self._peeked: Any = None
        self._peeked_at = 0.0
        self._peek_failed = False
        self._t0 = time.monotonic()  # a live frame's timestamp counts from here (the peek too)
        ok, bgr = capture.read()
        if ok and bgr is not None:
            self._peeked, self._peeked_at = bgr, time.monotonic()
            h, w = bgr.shape[:2]
        elif w <= 0 or h <= 0:
            capture.release()
            raise GputrackError(f"{what}: states no frame size, and its first frame cannot "
                                "be read")  # fmt: skip
        else:
            self._peek_failed = True
        if w < 4 or h < 4:  # the sensor model's Bayer frame needs 4x4 after cropping
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
        self._first_at: float | None = None  # a live source's first frame, on that clock
        self._index = -1  # a live source's last frame index

    def _read(self) -> Frame | None:
        pending = 0  # failures since the last good frame
        while True:
            if self._peeked is not None:
                ok, bgr, self._peeked = True, self._peeked, None
                now = self._peeked_at
            elif self._peek_failed:  # the first read, made when the source opened
                ok, bgr, self._peek_failed = False, None, False
                now = self._peeked_at
            else:
                ok, bgr = self._cap.read()
                now = time.monotonic()
            pos = self._pos
            self._pos += 1
            if ok and bgr is not None:
                # The pipeline runs at one size (its outputs and --roi are set up for it): a
                # frame of another (a camera that switched mode) is an error, as an image
                # folder's, not a frame whose boxes and outputs silently disagree.
                if (bgr.shape[1], bgr.shape[0]) != self.size:
                    raise GputrackError(f"{self._what}: frame {pos} is {bgr.shape[1]}x"
                                        f"{bgr.shape[0]}, but its frames are {self.size[0]}x"
                                        f"{self.size[1]}")  # fmt: skip
                index = self._live_index(now, pending) if self.live else pos
                if pending:
                    self.dropped += pending  # failures followed by a good frame were drops
                    log.warning("%s: %d frame(s) unreadable before frame %d, skipped",
                                self._what, pending, index)
                t = now - self._t0 if self.live else pos / self.fps
                return Frame(index, t, image=_to_rgb(bgr))
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

    def _live_index(self, now: float, failed: int) -> int:
        """A live frame's index: its capture time in frame periods since the first frame, and
        at least one more than the last plus the reads that `failed` in between. Frames the
        camera dropped while the pipeline was busy leave a gap, as unreadable ones do, so the
        tracker predicts across the time that passed rather than one period."""
        if self._first_at is None:
            self._first_at = now
        elapsed = round((now - self._first_at) * self.fps)
        self._index = max(self._index + 1 + failed, elapsed)
        return self._index

    def _rewind(self) -> bool:
        self._peeked, self._peek_failed = None, False
        ok = bool(self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0))
        self._pos = 0
        return ok

    def _release(self) -> None:
        self._cap.release()


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
