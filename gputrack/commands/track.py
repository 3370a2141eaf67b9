"""`gputrack track`: run the tracker over a MOTChallenge detection file, write the result.

The whole detection file is read and checked first, so a malformed line stops the run before
anything is written. The result is written under a temporary name beside RESULT and renamed
when done. On Ctrl-C the frames finished so far are kept: the partial result is renamed to
RESULT (every frame in it is complete) and the command says how far it got. Any other error
leaves an earlier RESULT as it was. --gt is read and checked before tracking starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gputrack.commands.args import finite_float, frame_rate
from gputrack.errors import UsageError, interrupted_by
from gputrack.outputs.files import OutputFile, is_stdout, refuse_overwriting_inputs
from gputrack.outputs.sinks import check_output_path
from gputrack.track import Tracker, TrackerParams
from gputrack.track.mot_io import (
    frames_to_update,
    parse_mot_rows,
    read_detections,
    result_lines,
)

# py-motmetrics' loader keeps result lines with conf >= -1 only (its min_confidence default)
MOTMETRICS_MIN_CONF = -1.0


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
        type=frame_rate,
        default=d.fps,
        help="frame rate of the video (default %(default)g); "
        "times in the tracker become frame counts through it",
    )
    p.add_argument(
        "--min-score",
        type=finite_float,
        default=d.low_score,
        help="ignore detections below this score (default %(default)g; any scale a "
        "detection file uses, negative too)",
    )
    p.add_argument(
        "--high-score",
        type=finite_float,
        default=d.high_score,
        help="detections at or above this score are matched first (default %(default)g)",
    )
    p.add_argument(
        "--new-track-score",
        type=finite_float,
        default=d.new_track_score,
        help="an unmatched detection starts a track when its score is at least this and "
        "--high-score (default %(default)g)",
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
        "(MOTChallenge gt.txt): MOTA, IDF1, ID switches, FP, misses; as the MOTChallenge "
        "devkit, only pedestrians with conf != 0 count, hypotheses on distractors are dropped",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.min_score > args.high_score:
        raise UsageError(f"--min-score {args.min_score:g} is above --high-score "
                         f"{args.high_score:g}")  # fmt: skip
    if args.gt == "":  # else falsy: the run would silently not score
        raise UsageError("--gt: empty path, give a ground truth file")
    check_output_path("--out", args.out)  # before the detection file is read
    refuse_overwriting_inputs(
        {"detection file": args.detections, "--gt": args.gt}, {"--out": args.out}
    )
    frames = read_detections(args.detections)
    first, last = (min(frames), max(frames)) if frames else (0, 0)
    gt = None
    if args.gt is not None:  # read and checked now: a bad --gt found after tracking wastes the run
        from gputrack.track.mot_eval import check_ground_truth_covers

        # Read once and scored as read: a pipe (--gt <(...)) has no second reading.
        spans = {"the detections": (first, last)} if frames else {}
        gt = check_ground_truth_covers(args.gt, spans)
    start = max(args.new_track_score, args.high_score)  # what the tracker starts tracks at
    top = max((float(d[:, 4].max()) for d in frames.values()), default=None)
    if top is not None and top < start:
        sys.stderr.write(f"gputrack track: note: no detection reaches {start:g} (--high-score "
                         f"and --new-track-score; the highest is {top:g}), so no track can "
                         "start\n")  # fmt: skip
    out = Path(args.out)
    params = TrackerParams(
        fps=args.fps,
        low_score=args.min_score,
        high_score=args.high_score,
        new_track_score=args.new_track_score,
    )
    tracker = Tracker(params)
    done, lines, busy = first - 1, 0, 0.0  # done: the last frame the result holds complete
    # The lines as written, scored with --gt: RESULT is not read back, which /dev/null, a pipe
    # or an appended stdout would not give back as written (or would wait on forever).
    written: list[str] = []
    below = 0  # result lines py-motmetrics' loader would drop
    interrupted = False
    # Written under a temporary name and renamed at the end; on Ctrl-C (or SIGTERM) the
    # frames finished so far are renamed to --out too, and said so; any other error leaves
    # an earlier --out as it was.
    with OutputFile(out, "--out", keep_on_error=lambda: interrupted) as f:
        try:
            for frame, dets in frames_to_update(frames, lambda: len(tracker) > 0):
                done = frame - 1  # frames skipped before this one are complete too
                t0 = time.perf_counter()
                rows = tracker.update_array(dets, frame)
                busy += time.perf_counter() - t0
                new = result_lines(frame, rows, include_lost=args.write_lost)
                f.writelines(new)
                lines += len(new)
                if new and (rows[:, 5] < MOTMETRICS_MIN_CONF).any():  # as written, rounded
                    below += sum(float(s.split(",")[6]) < MOTMETRICS_MIN_CONF for s in new)
                if gt is not None:
                    written += new
                done = frame
        except KeyboardInterrupt as stop:
            interrupted = True
            held = f"frames {first}-{done}" if done >= first else "no frame"
            sys.stderr.write(
                f"gputrack track: stopped by {interrupted_by(stop)[0]}; {out} holds {held} "
                f"of {first}-{last}\n"
            )
            raise

    summary = {
        # Frames of the sequence, from the first with detections to the last (those between
        # without detections included), however the numbers start: not the last number.
        "frames": last - first + 1 if frames else 0,
        "first_frame": first if frames else None,
        "last_frame": last if frames else None,
        "detections": int(sum(len(d) for d in frames.values())),
        "tracks": tracker.next_id - 1,
        "result_lines": lines,
        "updates_per_s": round(tracker.updates / busy, 1) if busy > 0 else None,
        "out": str(out),
    }
    if below:
        sys.stderr.write(f"gputrack track: note: {below} result lines have a score below -1, "
                         "which py-motmetrics' loader drops (min_confidence=-1 by default; "
                         "TrackEval and --gt keep them)\n")  # fmt: skip
    if gt is not None:
        from gputrack.track.mot_eval import (
            finite_or_none,
            format_summary,
            ground_truth_frames,
            score_frames,
        )

        hyp, _ = parse_mot_rows(written, out)
        metrics = score_frames(ground_truth_frames(gt, hyp))
        # JSON has no NaN: a ratio with nothing to divide by (no ground truth boxes) is null
        summary["metrics"] = {k: finite_or_none(v) for k, v in metrics.items()}
    # The result itself on stdout (--out /dev/stdout): the summary goes beside it, on stderr.
    report = sys.stderr if is_stdout(out) else sys.stdout
    if args.json:
        print(json.dumps(summary, allow_nan=False), file=report)
    else:
        rate = summary["updates_per_s"]
        span = f" ({first}-{last})" if frames else ""
        print(
            f"{summary['frames']} frames{span}, {summary['detections']} detections -> "
            f"{summary['tracks']} tracks ({lines} lines) in {out}; "
            f"{rate if rate is not None else '-'} updates/s",
            file=report,
        )
        if gt is not None:
            print(format_summary(metrics), file=report)
    return 0
