"""What `gputrack run` writes as frames go by: the JSONL track log, the MOTChallenge result
and the annotated ISP video. Each is flushed per frame, written under a temporary name and
renamed when the run ends (Ctrl-C and errors included), so nothing finished is lost."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gputrack.errors import GputrackError, UsageError
from gputrack.opencv_files import can_write_colour, opencv_name
from gputrack.outputs.draw import draw_tracks
from gputrack.outputs.files import atomic_path
from gputrack.outputs.tracklog import TrackLogWriter, track_entry

VIDEO_CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".mkv": "MJPG"}


def check_output_path(
    option: str, path: str | None, suffixes: Sequence[str] = (), image: bool = False
) -> None:
    """A clear error before any work when an output cannot be written where asked; `image`:
    also when OpenCV has no writer for the name's suffix (found out at the end otherwise)."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {path}: is a folder, give a file name")
    if p.exists() and not p.is_file() and not suffixes and not image:
        # A device or a pipe (/dev/stdout, a FIFO): written in place, nothing to probe beside
        # it (the folder of a piped /dev/stdout resolves into /proc)
        if not os.access(p, os.W_OK):
            raise UsageError(f"{option} {path}: cannot write there (permission denied)")
        return
    if not p.resolve().parent.is_dir():
        raise UsageError(f"{option} {path}: folder {p.parent} does not exist")
    try:  # really try: permission bits do not tell root about read-only file systems
        tempfile.TemporaryFile(dir=p.resolve().parent).close()
    except OSError as err:
        raise UsageError(f"{option} {path}: cannot write there ({err.strerror})") from None
    if suffixes and p.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {path}: use one of {', '.join(suffixes)}")
    if suffixes:  # a video, which OpenCV writes under the name itself
        try:
            opencv_name(p, option)
        except GputrackError as err:
            raise UsageError(str(err)) from None
    if image and not can_write_colour(p.suffix):
        what = f"'{p.suffix}'" if p.suffix else "a name without a suffix"
        raise UsageError(f"{option} {path}: OpenCV writes no colour image as {what} (use .png "
                         "or .jpg)")  # fmt: skip


class RunOutputs:
    """`outputs.write(result, image)` once per frame; enter it into the run's ExitStack."""

    def __init__(
        self,
        stack: ExitStack,
        *,
        log: str | None,
        mot: str | None,
        video: str | None,
        fps: float,
        names: Sequence[str],
    ) -> None:
        self.names = names
        self.fps = fps
        self.frames = 0  # written: an error before the first replaces no earlier file
        self.log = stack.enter_context(TrackLogWriter(log)) if log else None
        self.mot = None
        keep = self._any_frame
        if mot:
            tmp = stack.enter_context(atomic_path(mot, keep_on_error=keep))
            self.mot = stack.enter_context(tmp.open("w", encoding="utf-8"))
        self.video_path = video
        self._video_tmp = (
            stack.enter_context(atomic_path(video, keep_on_error=keep)) if video else None
        )
        self._video: Any = None
        stack.callback(self._close_video)

    def _any_frame(self) -> bool:
        return self.frames > 0

    @property
    def wants_image(self) -> bool:
        return self._video_tmp is not None

    def write(self, result: Any, image: Callable[[], np.ndarray | None]) -> None:
        """One frame: `result` a pipeline FrameResult; `image()` fetches its ISP image (only
        called when an output needs pixels, so a headless run never downloads them)."""
        shown = [t for t in result.tracks if t.state != "tentative"]
        if self.log:
            ms = result.stage_ms
            self.log.write(
                result.index,
                result.timestamp,
                [track_entry(t) for t in shown],
                {k: ms[k] for k in ("isp", "dsp", "track", "total")},
            )
        if self.mot:
            for t in shown:
                if t.state == "confirmed":  # MOTChallenge frames count from 1
                    self.mot.write(
                        f"{result.index + 1},{t.id},{t.x:.2f},{t.y:.2f},{t.w:.2f},"
                        f"{t.h:.2f},{t.score:.4f},-1,-1,-1\n"
                    )
            self.mot.flush()
        if self._video_tmp is not None:
            rgb8 = image()
            if rgb8 is not None:
                self._write_video(draw_tracks(rgb8, result.tracks, self.names))
        self.frames += 1

    def _write_video(self, bgr: np.ndarray) -> None:
        if self._video is None:
            assert self._video_tmp is not None
            codec = VIDEO_CODECS[self._video_tmp.suffix.lower()]
            h, w = bgr.shape[:2]
            self._video = cv2.VideoWriter(
                opencv_name(self._video_tmp, "--video"),
                cv2.VideoWriter_fourcc(*codec),
                self.fps,
                (w, h),
            )
            if not self._video.isOpened():
                raise UsageError(f"--video {self.video_path}: OpenCV cannot write {codec} video")
        self._video.write(bgr)

    def _close_video(self) -> None:
        if self._video is not None:
            self._video.release()
