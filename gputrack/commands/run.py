"""`gputrack run [SOURCE]`: live tracking, the main job.

SOURCE (default: the synthetic world) -> sensor model (RGB sources) -> ISP (kernels on
cuda/emu, NumPy on cpu) -> detector -> Kalman tracker -> live terminal view, JSONL track log
(flushed every frame), MOTChallenge result, the annotated last frame; then a summary with
per-stage latency against the frame deadline (and MOTA/IDF1 where the source has ground truth).

Detector `auto` = `network`, through gputrack's own kernels: on the synthetic world the model
bundled with gputrack (gputrack/models/synthetic_det.onnx: person, car, ball, trained on that
world by scripts/train_detector.py), on every other source FastestDet (COCO-80, from
GPUTRACK_DATA); --model overrides either. `--detector truth` (synthetic only) is a stand-in
made from the ground truth instead. The summary names the one used.
Ctrl-C (or SIGTERM) stops cleanly: the frame in hand is finished and written to every output
(a second Ctrl-C stops at once), so every output ends on the same frame; then the summary.
"""

# The verb in steps, one module each: run_options (the options, and their checks),
# run_setup (the source, detector and pipeline), run_loop (the frames; run_score scores them
# against ground truth), run_summary (the summary and its printing).

from __future__ import annotations

import argparse
import sys

from gputrack.commands.run_loop import run_frames
from gputrack.commands.run_options import add_run_options, check_options
from gputrack.commands.run_score import score_row as _score_row  # noqa: F401 (tests' old name)
from gputrack.commands.run_setup import RunParts, build_run
from gputrack.commands.run_summary import make_summary, report_summary
from gputrack.errors import GputrackError, interrupted_by
from gputrack.outputs.draw import draw_tracks
from gputrack.outputs.files import write_image
from gputrack.pipeline import FrameResult


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="live tracking: source -> sensor -> ISP -> detector -> tracks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The run: options checked, the run built, every frame, the last image, the summary.
    Returns the exit code: 0, 130 or 143 when stopped (Ctrl-C, SIGTERM), 1 when only the
    --image could not be written."""
    choices = check_options(args)
    parts = build_run(args, choices)
    done = run_frames(args, parts)
    image, image_error = _write_last_image(args.image, parts, done.result)
    stopped_by, code = interrupted_by(done.interrupted) if done.interrupted else (None, 0)
    summary = make_summary(args, parts, done, image, stopped_by)
    report_summary(summary, args.json, choices.on_stdout)
    if image_error is not None:  # after the summary, which lists what was written
        sys.stderr.write(f"gputrack run: error: {image_error}\n")
        return code or image_error.exit_code
    return code


def _write_last_image(
    image: str | None, parts: RunParts, result: FrameResult
) -> tuple[str | None, GputrackError | None]:
    """--image: the last finished frame, annotated. Written after the other outputs are
    complete, so a failure here (a full disk) still leaves the summary: returns the file
    written (None: none) and the error to report after the summary."""
    if not image:
        return image, None
    rgb8 = parts.pipe.last_image()
    if rgb8 is None:  # stopped at once in a frame whose ISP wrote over the last finished one
        sys.stderr.write(f"gputrack run: --image {image}: not written, the picture of the "
                         f"last finished frame was gone when the run stopped\n")  # fmt: skip
        return None, None
    try:
        write_image(image, draw_tracks(rgb8, result.tracks, parts.names, result.origin),
                    "--image")  # fmt: skip
    except GputrackError as err:  # the other outputs are complete: summary still due
        return None, err
    return image, None
