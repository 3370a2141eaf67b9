"""`gputrack track`: run the tracker over a MOTChallenge detection file, write the result.

The whole detection file is read and checked first, so a malformed line stops the run before
anything is written. The result is written under a temporary name beside RESULT and renamed
when done. On Ctrl-C the frames finished so far are kept: the partial result is renamed to
RESULT (every frame in it is complete) and the command says how far it got.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from gputrack.errors import UsageError
from gputrack.outputs.files import atomic_path, refuse_overwriting_inputs
from gputrack.track import Tracker, TrackerParams
from gputrack.track.mot_io import read_detections, write_results


def register(subparsers: argparse._SubParsersAction) -> None:
    d = TrackerParams()
    p = subparsers.add_parser(
        "track",
        help="track a MOTChallenge detection file (Kalman filter + IoU matching)",
        description="Turn per-frame detections (MOTChallenge 'frame,id,x,y,w,h,score,...') "
        "into tracks with stable IDs; write a MOTChallenge result "
        "'frame,id,x,y,w,h,score,-1,-1,-1' of the confirmed tracks.",
    )
    p.add_argument("detections", metavar="DETECTIONS", help="MOTChallenge detection file")
    p.add_argument("--out", required=True, metavar="RESULT", help="result file to write")
    p.add_argument(
        "--fps",
        type=float,
        default=d.fps,
        help="frame rate of the video (default %(default)g); "
        "times in the tracker become frame counts through it",
    )
    p.add_argument(
        "--min-score",
        type=float,
        default=d.low_score,
        help="ignore detections below this score (default %(default)g)",
    )
    p.add_argument(
        "--high-score",
        type=float,
        default=d.high_score,
        help="detections at or above this score are matched first and may start "
        "tracks (default %(default)g)",
    )
    p.add_argument(
        "--write-lost",
        action="store_true",
        help="also write lost tracks (the prediction while the detector misses)",
    )
    p.add_argument(
        "--gt",
        metavar="GT",
        help="score the result against this ground truth "
        "(MOTChallenge gt.txt): MOTA, IDF1, ID switches, FP, misses",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.fps <= 0:
        raise UsageError(f"--fps must be positive, got {args.fps:g}")
    if not 0 <= args.min_score <= args.high_score:
        raise UsageError("--min-score must be >= 0 and <= --high-score")
    refuse_overwriting_inputs(
        {"detection file": args.detections, "--gt": args.gt}, {"--out": args.out}
    )
    frames = read_detections(args.detections)
    out = Path(args.out)
    params = TrackerParams(
        fps=args.fps,
        low_score=args.min_score,
        high_score=args.high_score,
        new_track_score=max(TrackerParams().new_track_score, args.high_score),
    )
    tracker = Tracker(params)
    empty = np.zeros((0, 6), np.float32)
    last = max(frames, default=0)
    done, lines, busy = 0, 0, 0.0
    # Written under a temporary name and renamed at the end; on Ctrl-C (or SIGTERM) the
    # frames finished so far are renamed to --out too, and said so.
    with atomic_path(out, keep_on_error=True) as tmp, tmp.open("w") as f:
        try:
            # Every frame up to the last is an update, also those without detections.
            for frame in range(1, last + 1):
                t0 = time.perf_counter()
                rows = tracker.update_array(frames.get(frame, empty), frame)
                busy += time.perf_counter() - t0
                lines += write_results(f, frame, rows, include_lost=args.write_lost)
                done = frame
        except KeyboardInterrupt:
            sys.stderr.write(
                f"gputrack track: interrupted; {out} holds frames 1-{done} of {last}\n"
            )
            raise

    summary = {
        "frames": done,
        "detections": int(sum(len(d) for d in frames.values())),
        "tracks": tracker.next_id - 1,
        "result_lines": lines,
        "updates_per_s": round(done / busy, 1) if busy > 0 else None,
        "out": str(out),
    }
    if args.gt:
        from gputrack.track.mot_eval import evaluate, format_summary

        metrics = evaluate(args.gt, out)
        summary["metrics"] = {k: round(v, 4) for k, v in metrics.items()}
    if args.json:
        print(json.dumps(summary))
    else:
        rate = summary["updates_per_s"]
        print(
            f"{done} frames, {summary['detections']} detections -> {summary['tracks']} tracks "
            f"({lines} lines) in {out}; {rate if rate is not None else '-'} updates/s"
        )
        if args.gt:
            print(format_summary(metrics))
    return 0
