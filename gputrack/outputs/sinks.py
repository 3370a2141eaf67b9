"""What `gputrack run` writes as frames go by: the JSONL track log, the MOTChallenge result,
the annotated ISP video and the RAW frames (one DNG each, `outputs/dng.py`: each file
complete when it has its name). Each of the others is flushed per frame, written under a
unique temporary name and renamed when the run ends (Ctrl-C and errors included), so nothing
finished is lost; an output whose own writing failed (a full disk) is never renamed, and the
earlier file stays. The video is reopened before it is renamed: OpenCV's writer reports no
write error."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gputrack.errors import GputrackError, UsageError
from gputrack.native_stderr import quiet_native_stderr
from gputrack.opencv_files import can_write_colour, opencv_name
from gputrack.outputs.dng import RawRecorder
from gputrack.outputs.draw import draw_tracks
from gputrack.outputs.files import OutputFile, atomic_path, check_descriptor
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
    # /dev/stdout, /dev/fd/N: written through the descriptor, nothing to probe beside it (the
    # folder of a piped /dev/stdout resolves into /proc)
    if not check_descriptor(f"{option} {path}", p):
        if p.exists() and not p.is_file() and not suffixes and not image:
            # A device or a FIFO: written in place
            if not os.access(p, os.W_OK):
                raise UsageError(f"{option} {path}: cannot write there (permission denied)")
            return
        if not p.resolve().parent.is_dir():
            # a link names the folder it leads into, which is the one missing
            missing = p.resolve().parent if p.is_symlink() else p.parent
            raise UsageError(f"{option} {path}: folder {missing} does not exist")
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
    """`outputs.write(result, image)` once per frame; enter it into the run's ExitStack.

    When the run stops on an error, it says which outputs were kept with the frames done
    (only those really renamed into place or written in place)."""

    def __init__(
        self,
        stack: ExitStack,
        *,
        log: str | None,
        mot: str | None,
        video: str | None,
        fps: float,
        names: Sequence[str],
        raw: str | None = None,
        nv12: str | None = None,
    ) -> None:
        self.names = names
        self.fps = fps
        self.frames = 0  # written: an error before the first replaces no earlier file
        self._given = {"--log": log, "--mot": mot, "--video": video, "--raw": raw,
                       "--nv12": nv12}  # as the user spelt them  # fmt: skip
        self.raw = RawRecorder(raw, fps=fps) if raw else None  # the rate the log is timed at
        if self.raw is not None:
            stack.callback(self.raw.close)
        stack.push(self._report)  # first in, last out: after every output was closed
        self.log = stack.enter_context(TrackLogWriter(log, "--log")) if log else None
        keep = self._any_frame
        self.mot = (
            stack.enter_context(OutputFile(mot, "--mot", keep_on_error=keep)) if mot else None
        )
        # The ISP's own video, unannotated: NV12 frames one after another (rawvideo), for an
        # encoder (ffmpeg -f rawvideo -pix_fmt nv12 -s WxH -r FPS -i FILE ...)
        self.nv12 = (
            stack.enter_context(OutputFile(nv12, "--nv12", keep_on_error=keep)) if nv12 else None
        )
        self.video_path = video
        self._video_tmp = (
            stack.enter_context(atomic_path(video, keep_on_error=self._video_good, what="--video"))
            if video
            else None
        )
        self._video: Any = None
        self._video_frames = 0
        self._video_ok = False  # reopened after release and found whole
        stack.push(self._close_video)  # before atomic_path decides to rename

    def _any_frame(self) -> bool:
        return self.frames > 0

    def _video_good(self) -> bool:
        return self.frames > 0 and self._video_ok

    @property
    def wants_image(self) -> bool:
        return self._video_tmp is not None

    def write(
        self,
        result: Any,
        image: Callable[[], np.ndarray | None],
        raw: Callable[[], Any] | None = None,
        nv12: Callable[[], np.ndarray | None] | None = None,
    ) -> None:
        """One frame: `result` a pipeline FrameResult; `image()` fetches its ISP image and
        `raw()` its RAW frame (a pipeline RawShot), each only called when an output needs it,
        so a headless run never downloads them."""
        # What each output wrote of this frame is taken back if another one fails on it, so
        # that the outputs kept all end on the last whole frame (files written in place, a
        # pipe, cannot be cut back). The video goes last: its writer cannot take a frame back.
        undo: list[Callable[[], None]] = []
        try:
            if self.raw is not None and raw is not None:  # first: the sensor reuses its buffer
                shot = raw()
                if shot is not None:
                    path = self.raw.write(shot.raw, shot.wb_gains, shot.ccm, index=result.index)
                    undo.append(lambda: self.raw.unwrite(path))  # type: ignore[union-attr]
            shown = [t for t in result.tracks if t.state != "tentative"]
            if self.log:
                ms = result.stage_ms
                log, mark = self.log, self.log.mark()
                log.write(
                    result.index,
                    result.timestamp,
                    [track_entry(t) for t in shown],
                    {k: ms[k] for k in ("sensor", "isp", "dsp", "track", "total")},
                )
                undo.append(lambda: log.rollback(mark))
            if self.mot:
                mot, mot_mark = self.mot, self.mot.mark()
                undo.append(lambda: mot.rollback(mot_mark))  # lines may precede a failed one
                for t in shown:
                    if t.state == "confirmed":  # MOTChallenge frames count from 1
                        mot.write(
                            f"{result.index + 1},{t.id},{t.x:.2f},{t.y:.2f},{t.w:.2f},"
                            f"{t.h:.2f},{t.score:.4f},-1,-1,-1\n"
                        )
                mot.flush()
            if self.nv12 is not None and nv12 is not None:
                frame = nv12()
                if frame is not None:
                    out, nv12_mark = self.nv12, self.nv12.mark()
                    out.write(np.ascontiguousarray(frame).tobytes())
                    out.flush()
                    undo.append(lambda: out.rollback(nv12_mark))
            if self._video_tmp is not None:
                rgb8 = image()
                if rgb8 is not None:
                    self._write_video(draw_tracks(rgb8, result.tracks, self.names,
                                                  result.origin))  # fmt: skip
        except BaseException:
            for take_back in reversed(undo):
                take_back()
            raise
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
        self._video_frames += 1

    def _close_video(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: object
    ) -> None:
        """Release the writer and reopen what it wrote: OpenCV ignores write errors (a full
        disk leaves an unplayable file), so a video that does not read back with every frame
        is not renamed over an earlier one."""
        if self._video_tmp is None:
            return
        if self._video is not None:
            self._video.release()
            self._video = None
        if self.frames == 0:
            return  # nothing done: nothing replaced, nothing to say
        problem = _video_problem(self._video_tmp, self._video_frames)
        self._video_ok = problem is None
        if problem and kind is None:  # with an error already on its way, that one is told
            earlier = Path(self.video_path or "").exists()
            what = "the earlier file is kept unchanged" if earlier else "not saved"
            raise GputrackError(f"cannot write --video {self.video_path}: {problem} ({what})")

    def _report(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: object
    ) -> None:
        """After an error (not Ctrl-C, not a reader that left the pipe), name the outputs that
        hold the frames done; one whose writing failed is not among them."""
        if not isinstance(err, Exception) or isinstance(err, BrokenPipeError) or not self.frames:
            return
        kept_by = {"--log": self.log is not None and self.log.kept,
                   "--mot": self.mot is not None and self.mot.kept,
                   "--video": self._video_good(),
                   "--raw": self.raw is not None and self.raw.frames > 0,
                   "--nv12": self.nv12 is not None and self.nv12.kept}  # fmt: skip
        kept = [f"{o} {self._given[o]}" for o, kept in kept_by.items() if kept]
        if kept:
            n = self.frames
            sys.stderr.write(f"gputrack run: {', '.join(kept)}: kept, with the {n} "
                             f"frame{'s' if n > 1 else ''} done before the error\n")  # fmt: skip


def _video_problem(path: Path, frames: int) -> str | None:
    """Why the video at `path` is not the `frames` frames written to it (None: it is). Cheap
    for any length: the container's frame count, then the last frame decoded (a file cut
    short by a full disk can still have a header that counts every frame)."""
    if frames == 0:
        return "no frame had an image to write"
    if not path.exists() or path.stat().st_size == 0:
        return "the video writer left no data; is the disk full?"
    with quiet_native_stderr(unless_env="OPENCV_LOG_LEVEL"):  # FFmpeg probing
        cap = cv2.VideoCapture(opencv_name(path, "--video"))
        try:
            if not cap.isOpened():
                return "the file written does not open as a video; is the disk full?"
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            last = cap.set(cv2.CAP_PROP_POS_FRAMES, frames - 1) and cap.read()[0]
        finally:
            cap.release()
    if not count >= 1 or abs(count - frames) > max(1, frames // 100) or not last:
        return f"the file written does not hold the {frames} frames; is the disk full?"
    return None
