"""Score MOTChallenge results against ground truth (motmetrics; works with NumPy 2).

    .venv/bin/python scripts/eval_mot.py GT.txt RESULT.txt [RESULT2.txt ...]
    .venv/bin/python scripts/eval_mot.py GT.txt --det DET.txt [--fps 25]

With `--det`, runs gputrack's tracker (defaults) and the SORT baseline of
`scripts/bench_tracker.py` on the detections first and scores both. Prints MOTA, IDF1,
identity switches, false positives and misses, one line per result.
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
from gputrack.track.mot_eval import evaluate  # noqa: E402
from gputrack.track.mot_io import read_detections, write_results  # noqa: E402


def run_gputrack(det: Path, out: Path, fps: float) -> None:
    frames = read_detections(det)
    tr = Tracker(TrackerParams(fps=fps))
    with out.open("w") as f:
        for i in range(1, max(frames, default=0) + 1):
            write_results(f, i, tr.update_array(frames.get(i, np.zeros((0, 6))), i))


def run_sort(det: Path, out: Path) -> None:
    from bench_tracker import Sort

    frames = read_detections(det)
    sort = Sort()
    with out.open("w") as f:
        for i in range(1, max(frames, default=0) + 1):
            for x1, y1, x2, y2, tid in sort.update(frames.get(i, np.zeros((0, 6)))):
                f.write(f"{i},{int(tid)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                        f"1,-1,-1,-1\n")


def main(argv: list[str] | None = None) -> int:
    ap = ScriptParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gt", type=input_file, help="ground truth, MOTChallenge gt.txt")
    ap.add_argument("results", type=input_file, nargs="*", help="result files to score")
    ap.add_argument("--det", type=input_file, help="detections: run gputrack and SORT on them")
    ap.add_argument("--fps", type=frame_rate, default=30.0, help="frame rate for gputrack")
    ap.add_argument("--iou", type=positive_fraction, default=0.5,
                    help="IoU for a match, in (0, 1] (default 0.5)")
    args = ap.parse_args(argv)
    if not args.results and not args.det:
        ap.error("give result files, or --det")
    named = [(str(p), p) for p in args.results]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.det:
                ours, sort = Path(tmp, "gputrack.txt"), Path(tmp, "sort.txt")
                run_gputrack(args.det, ours, args.fps)
                run_sort(args.det, sort)
                named += [(f"gputrack (fps {args.fps:g})", ours), ("SORT baseline", sort)]
            width = max(len(n) for n, _ in named)
            print(f"{'result':<{width}}  {'MOTA':>6} {'IDF1':>6} {'IDsw':>5} {'FP':>5} "
                  f"{'misses':>6} {'GT':>5}")
            for name, path in named:
                m = evaluate(args.gt, path, iou=args.iou)
                print(f"{name:<{width}}  {100 * m['mota']:5.1f}% {100 * m['idf1']:5.1f}% "
                      f"{int(m['num_switches']):5d} {int(m['num_false_positives']):5d} "
                      f"{int(m['num_misses']):6d} {int(m['num_objects']):5d}")
    except GputrackError as err:
        print(f"eval_mot: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
