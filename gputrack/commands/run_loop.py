"""The frame loop of `gputrack run`: every frame through the pipeline into every output and
the live view, timed and scored; Ctrl-C or SIGTERM stops it between frames."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from gputrack.commands.args import check_sensor_ccm
from gputrack.commands.run_score import RunScoring
from gputrack.commands.run_setup import RunParts
from gputrack.errors import GputrackError
from gputrack.latency import LatencyStats
from gputrack.outputs.sinks import RunOutputs
from gputrack.pipeline import STAGES, FrameResult
from gputrack.ui import LiveView


@dataclass
class RunResult:
    """What the frame loop leaves for the summary."""

    result: FrameResult  # the last frame that went to every output
    outputs: RunOutputs  # closed by now
    stage_ms: dict[str, LatencyStats]  # STAGES and "total"
    misses: int  # frames over the deadline
    scorer: Any  # a StreamScorer, None when no frame had ground truth
    interrupted: KeyboardInterrupt | None  # what stopped the run early, if anything


def run_frames(args: argparse.Namespace, parts: RunParts) -> RunResult:
    """Every frame of the source through the pipeline, its outputs and the live view; the
    outputs are closed (kept or not, as they decide) when this returns or raises."""
    source, pipe = parts.source, parts.pipe
    # bounded for runs of days: exact percentiles up to EXACT_FRAMES, then a histogram
    stage_ms = {k: LatencyStats() for k in (*STAGES, "total")}
    deadline = 1000.0 / source.fps
    misses = 0
    scoring = RunScoring(source, parts.frames, args.roi)
    result = None
    interrupted: KeyboardInterrupt | None = None
    with ExitStack() as stack:
        stack.enter_context(source)
        if not source.is_raw:  # a matrix the sensor model cannot invert: said before frame 1
            check_sensor_ccm(parts.sensor)
        outputs = RunOutputs(
            stack,
            log=args.log,
            mot=args.mot,
            video=args.video,
            fps=source.fps,
            names=parts.names,
            raw=args.raw,
            nv12=args.nv12,
        )
        view = None
        if parts.show_ui:
            window = parts.window
            view = stack.enter_context(
                LiveView(
                    f"gputrack run · {source.name} · {parts.backend.name}",
                    source.size,
                    source.fps,
                    parts.names,
                    parts.frames,
                    window=None if window is None else (
                        window.x, window.y, window.w, window.h),  # fmt: skip
                )
            )
        try:
            with stops_between_frames() as whole_frame:
                for frame in source:
                    with whole_frame():  # a stop inside takes effect after its outputs
                        done = pipe.process(frame)
                        for k, v in done.stage_ms.items():
                            stage_ms[k].add(v)
                        misses += done.stage_ms["total"] > deadline
                        outputs.write(done, pipe.last_image, pipe.last_raw, pipe.last_nv12)
                        result = done
                        if view:
                            view.update(result.index, result.tracks, result.stage_ms)
                        scoring.add(frame.truth, result.tracks)
        except KeyboardInterrupt as stop:
            if outputs.frames == 0:  # nothing done: earlier outputs stay as they were
                raise
            interrupted = stop
        # On an error, `outputs` says which outputs were kept with the frames done, once it
        # knows (an output whose own write failed is not renamed into place).
        if result is None:  # raised inside the outputs' context: nothing replaced
            raise GputrackError(f"{args.source}: the source gave no frames")
    return RunResult(result, outputs, stage_ms, misses, scoring.scorer, interrupted)


@contextmanager
def stops_between_frames() -> Iterator[Any]:
    """`with stops_between_frames() as whole_frame: ... with whole_frame(): one frame`.

    Ctrl-C or SIGTERM arriving inside `whole_frame()` is held until the frame is through:
    its outputs all get it, or none does (a stop while the video is written would leave the
    log a frame ahead of it; a stop in the detector, the ISP's picture of a frame that
    no output has). A second one while held stops at once. Outside a frame (waiting for the
    source) a stop is at once, as before."""
    held: list[int] = []
    inside = [False]
    saved: dict[int, Any] = {}

    def hold(signum: int, frame: Any) -> None:
        if inside[0] and not held:
            held.append(signum)
            return
        saved[signum](signum, frame)  # raises KeyboardInterrupt (or Terminated)

    @contextmanager
    def whole_frame() -> Iterator[None]:
        inside[0] = True
        try:
            yield
        finally:
            inside[0] = False
        if held:
            signum = held.pop()
            saved[signum](signum, None)

    # Python sets signal handlers from the main thread only; elsewhere stops stay as they are
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if callable(handler):  # not one that is ignored, or left to the system
                saved[signum] = handler
                signal.signal(signum, hold)
    try:
        yield whole_frame
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
