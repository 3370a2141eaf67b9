"""Score MOTChallenge results against ground truth (motmetrics; works with NumPy 2).

    .venv/bin/python scripts/eval_mot.py GT.txt RESULT.txt [RESULT2.txt ...]
    .venv/bin/python scripts/eval_mot.py GT.txt --det DET.txt [--fps 25]

With `--det`, runs gputrack's tracker (defaults, as `gputrack track`: the same updates, the
same figures) and the SORT baseline of `scripts/bench_tracker.py` on the detections first and
scores both. Prints MOTA, IDF1, identity switches, false positives and misses, one line per
result, once every input has been read and checked (the ground truth as `track --gt` checks
it: nothing to score or no frame in common is exit code 2, a malformed line 1).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from gputrack.commands.args import (  # noqa: E402
    ScriptParser,
    frame_rate,
    input_file,
    positive_fraction,
)
from gputrack.errors import GputrackError  # noqa: E402
from gputrack.track import Tracker, TrackerParams  # noqa: E402
from gputrack.track.mot_eval import (  # noqa: E402
    check_ground_truth_covers,
    ground_truth_frames,
    score_frames,
)
from gputrack.track.mot_io import (  # noqa: E402
    frames_to_update,
    read_detections,
    read_mot_rows,
    write_results,
)


def run_gputrack(frames: dict[int, np.ndarray], out: Path, fps: float) -> None:
    """As `gputrack track` with its defaults: the same updates, the same result lines."""
    tr = Tracker(TrackerParams(fps=fps))
    with out.open("w") as f:
        for i, dets in frames_to_update(frames, lambda: len(tr) > 0):
            write_results(f, i, tr.update_array(dets, i))


def run_sort(frames: dict[int, np.ndarray], out: Path) -> None:
    from bench_tracker import Sort

    sort = Sort()
    done = None
    with out.open("w") as f:
        for i, dets in frames_to_update(frames, lambda: len(sort.tracks) > 0):
            if done is not None:  # frames skipped without tracks still count for SORT's start
                sort.frames += i - done - 1
            done = i
            for x1, y1, x2, y2, tid in sort.update(dets):
                f.write(f"{i},{int(tid)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                        f"1,-1,-1,-1\n")


def main(argv: list[str] | None = None) -> int:
    ap = ScriptParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gt", type=input_file, help="ground truth, MOTChallenge gt.txt")
    ap.add_argument("results", type=input_file, nargs="*", help="result files to score")
    ap.add_argument("--det", type=input_file, help="detections: run gputrack and SORT on them")
    ap.add_argument("--fps", type=frame_rate, help="frame rate for gputrack, with --det "
                    f"(default {TrackerParams().fps:g})")
    ap.add_argument("--iou", type=positive_fraction, default=0.5,
                    help="IoU for a match, in (0, 1] (default 0.5)")
    args = ap.parse_args(argv)
    if not args.results and not args.det:
        ap.error("give result files, or --det")
    if args.fps is not None and not args.det:  # it would change nothing: say so
        ap.error("--fps is gputrack's frame rate for --det; result files were tracked already")
    fps = TrackerParams().fps if args.fps is None else args.fps
    try:
        # Every input read and checked (as `track --gt` checks) before a line is printed.
        spans: dict[str, tuple[int, int]] = {}
        frames = read_detections(args.det) if args.det else {}
        if frames:
            spans["the detections"] = (min(frames), max(frames))
        named = []
        for path in args.results:
            hyp, _ = read_mot_rows(path, "result file")
            if len(hyp):  # an empty result (no track) scores, all misses
                spans[f"result {path}"] = (int(hyp[:, 0].min()), int(hyp[:, 0].max()))
            named.append((str(path), hyp))
        gt = check_ground_truth_covers(args.gt, spans, option="gt")
        if args.det:
            with tempfile.TemporaryDirectory() as tmp:
                ours, sort = Path(tmp, "gputrack.txt"), Path(tmp, "sort.txt")
                run_gputrack(frames, ours, fps)
                run_sort(frames, sort)
                named += [(f"gputrack (fps {fps:g})", read_mot_rows(ours, "result file")[0]),
                          ("SORT baseline", read_mot_rows(sort, "result file")[0])]
        scores = [(name, score_frames(ground_truth_frames(gt, hyp), args.iou))
                  for name, hyp in named]
    except GputrackError as err:
        print(f"eval_mot: error: {err}", file=sys.stderr)
        return err.exit_code
    width = max(len(n) for n, _ in scores)
    print(f"{'result':<{width}}  {'MOTA':>6} {'IDF1':>6} {'IDsw':>5} {'FP':>5} "
          f"{'misses':>6} {'GT':>5}")
    for name, m in scores:
        print(f"{name:<{width}}  {100 * m['mota']:5.1f}% {100 * m['idf1']:5.1f}% "
              f"{m['num_switches']:5d} {m['num_false_positives']:5d} "
              f"{m['num_misses']:6d} {m['num_objects']:5d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
