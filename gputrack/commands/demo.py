"""`gputrack demo`: the chain that exists today, end to end, on the synthetic world.

synthetic scene -> sensor model (RAW Bayer) -> ISP (kernels on cuda/emu, NumPy on cpu) ->
detections -> Kalman tracker -> JSONL track log and an annotated last frame, with per-stage
latency and tracking accuracy (MOTA/IDF1) against the world's ground truth.

The on-sensor network is not built yet, so the detections come from a stand-in that says so:
the world's ground truth with box noise, missed detections and scores, as a detector would
give them. Everything else is the real code path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np

from gputrack.device import CHOICES, get_backend
from gputrack.errors import UsageError
from gputrack.isp.params import IspParams
from gputrack.isp.pipeline import IspPipeline
from gputrack.outputs.tracklog import TrackLogWriter, track_entry
from gputrack.sensor.model import SensorModel, SensorParams
from gputrack.sensor.synthetic import SyntheticWorld
from gputrack.track import Tracker
from gputrack.track.mot_eval import score_frames
from gputrack.ui import LiveView


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthetic world -> sensor -> ISP -> tracker, measured",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--frames", type=int, default=90, help="frames to run (default 90)")
    p.add_argument("--size", default="960x540", help="frame size WxH (default 960x540)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the world (default 30)")
    p.add_argument("--seed", type=int, default=0, help="world and noise seed (default 0)")
    p.add_argument("--backend", default="auto", choices=CHOICES, help="kernel backend")
    p.add_argument("--log", default="demo_tracks.jsonl", help="JSONL track log to write")
    p.add_argument("--image", default="demo_last.png", help="annotated last frame to write")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--ui", action=argparse.BooleanOptionalAction, default=None,
                   help="live terminal view (default: on when the output is a terminal)")
    p.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {text}: expected WxH, e.g. 1280x720") from None
    if w < 64 or h < 64 or w % 2 or h % 2:
        raise UsageError(f"--size {text}: width and height must be even and at least 64")
    return w, h


class NoisyTruthDetector:
    """Stand-in for the on-sensor network: ground truth -> detections as a detector gives them
    (boxes jittered by 3 % of their size, 5 % missed, mostly-hidden objects unseen)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, truth: np.ndarray) -> np.ndarray:
        seen = truth[(truth[:, 6] >= 0.3) & (self.rng.random(len(truth)) > 0.05)]
        wh = seen[:, 2:4] - seen[:, :2]
        dets = np.empty((len(seen), 6), np.float32)
        dets[:, :4] = seen[:, :4] + self.rng.normal(0, 0.03, (len(seen), 4)) * np.tile(wh, 2)
        dets[:, 4] = self.rng.uniform(0.55, 1.0, len(seen))
        dets[:, 5] = seen[:, 5]
        return dets


def _draw(rgb8: np.ndarray, tracks: list, names: tuple[str, ...]) -> np.ndarray:
    bgr = cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR)
    for t in tracks:
        if t.state == "tentative":
            continue
        colour = (0, 220, 0) if t.state == "confirmed" else (0, 160, 255)
        p0, p1 = (int(t.x), int(t.y)), (int(t.x + t.w), int(t.y + t.h))
        cv2.rectangle(bgr, p0, p1, colour, 2)
        cv2.putText(
            bgr,
            f"{t.id} {names[t.cls]}",
            (p0[0], max(12, p0[1] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colour,
            1,
            cv2.LINE_AA,
        )
    return bgr


def run(args: argparse.Namespace) -> int:
    width, height = parse_size(args.size)
    if args.frames < 1:
        raise UsageError(f"--frames {args.frames}: must be at least 1")
    backend = get_backend(args.backend, verbose=True)
    world = SyntheticWorld(width, height, fps=args.fps, seed=args.seed)
    isp_params = IspParams()  # a 12-bit RGGB sensor with the default colour chain
    sensor = SensorModel(SensorParams(isp=isp_params, noise=True, seed=args.seed), backend)
    isp = IspPipeline(isp_params, backend)
    detect = NoisyTruthDetector(args.seed)
    tracker = Tracker(fps=args.fps)

    stages = {"render": [], "sensor": [], "isp": [], "detect": [], "track": []}
    scored = []
    tracks: list = []
    rgb8 = None
    clock = time.perf_counter
    show_ui = sys.stdout.isatty() and not args.json if args.ui is None else args.ui
    view = (LiveView(f"gputrack demo on {backend.name}", (width, height), args.fps,
                     world.class_names, args.frames) if show_ui else nullcontext())
    with TrackLogWriter(args.log) as log, view:
        for i in range(args.frames):
            t0 = clock()
            scene = world.render(i)
            truth = world.ground_truth(i)
            t1 = clock()
            raw = sensor.render(scene, frame=i)
            t2 = clock()
            rgb8 = isp.process(raw).rgb8
            t3 = clock()
            dets = detect(truth)
            t4 = clock()
            tracks = tracker.update(dets, i)
            t5 = clock()
            for name, a, b in (
                ("render", t0, t1),
                ("sensor", t1, t2),
                ("isp", t2, t3),
                ("detect", t3, t4),
                ("track", t4, t5),
            ):
                stages[name].append((b - a) * 1e3)
            shown = [t for t in tracks if t.state == "confirmed"]
            log.write(
                i,
                i / args.fps,
                [track_entry(t) for t in tracks if t.state != "tentative"],
                {
                    "isp": (t3 - t2) * 1e3,
                    "dsp": (t4 - t3) * 1e3,
                    "track": (t5 - t4) * 1e3,
                    "total": (t5 - t1) * 1e3,
                },
            )
            if show_ui:
                view.update(i, tracks, {k: v[-1] for k, v in stages.items()})
            gt = truth[truth[:, 6] >= 0.3]
            scored.append(
                (
                    gt[:, 4],
                    np.column_stack([gt[:, :2], gt[:, 2:4] - gt[:, :2]]),
                    [t.id for t in shown],
                    [(t.x, t.y, t.w, t.h) for t in shown],
                )
            )
    assert rgb8 is not None
    image = Path(args.image)
    if not cv2.imwrite(str(image), _draw(rgb8, tracks, world.class_names)):
        raise UsageError(f"--image {image}: could not write (unknown extension or folder?)")

    metrics = score_frames(scored)
    summary = {
        "backend": backend.name,
        "frames": args.frames,
        "size": [width, height],
        "detector": "stand-in: synthetic ground truth + noise (network not built yet)",
        "stage_ms_p50": {k: round(float(np.median(v)), 3) for k, v in stages.items()},
        "stage_ms_p99": {k: round(float(np.percentile(v, 99)), 3) for k, v in stages.items()},
        "mota": round(metrics["mota"], 4),
        "idf1": round(metrics["idf1"], 4),
        "id_switches": int(metrics["num_switches"]),
        "tracks_confirmed": int(tracker.next_id - 1),
        "log": str(Path(args.log)),
        "image": str(image),
    }
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_summary(summary)
    return 0


def _print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(
        title=f"gputrack demo: {s['frames']} frames {s['size'][0]}x{s['size'][1]} on {s['backend']}"
    )
    table.add_column("stage")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    for k in s["stage_ms_p50"]:
        table.add_row(k, f"{s['stage_ms_p50'][k]:.2f}", f"{s['stage_ms_p99'][k]:.2f}")
    console.print(table)
    console.print(f"detector: {s['detector']}")
    console.print(
        f"tracking vs ground truth: MOTA {100 * s['mota']:.1f} %, IDF1 "
        f"{100 * s['idf1']:.1f} %, {s['id_switches']} identity switches, "
        f"{s['tracks_confirmed']} tracks confirmed"
    )
    console.print(f"wrote {s['log']} and {s['image']}")
