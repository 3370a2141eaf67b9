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

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np

from gputrack.commands.args import (
    add_isp_options,
    bayer_pattern,
    bit_depth,
    check_sensor_bit_depth,
    check_sensor_ccm,
    fraction,
    isp_choices,
    max_detections,
    seed,
    size_wxh,
    source_frame_rate,
    stated_colour,
    white_balance,
)
from gputrack.device import CHOICES, get_backend
from gputrack.dsp.coco import class_name
from gputrack.dsp.decode import DetectParams
from gputrack.dsp.detector import Detector, bundled_model, default_model, model_classes
from gputrack.dsp.standin import NoisyTruthDetector
from gputrack.errors import GputrackError, UsageError, interrupted_by
from gputrack.isp import IspParams
from gputrack.isp.params import DEFAULT_WB
from gputrack.latency import REL_ERROR, LatencyStats
from gputrack.outputs.dng import MIN_DNG_SIDE, check_raw_folder, unstated_colour
from gputrack.outputs.draw import draw_tracks
from gputrack.outputs.files import (
    is_stdout,
    refuse_overwriting_inputs,
    write_image,
    written_in_place,
)
from gputrack.outputs.sinks import VIDEO_CODECS, RunOutputs, check_output_path
from gputrack.pipeline import STAGES, Pipeline
from gputrack.sensor.roi import Roi
from gputrack.sensor.sources import (
    FOLDER_FRAME_EXTS,
    is_headerless_raw,
    is_synthetic,
    open_source,
)
from gputrack.sensor.synthetic import ALL_CLASSES
from gputrack.track import Tracker
from gputrack.ui import LiveView

SCORE, MAX_DET = 0.45, 50  # the network detector's defaults
SCORED_VISIBILITY = 0.3  # objects less visible than this are not scored (MOTA, IDF1)
SYNTHETIC_FRAMES = 300  # an endless source needs an end when no --frames is given
# Scoring keeps a count per (truth id, track id) pair (IDF1), ~190 bytes each: measured 1.5
# new pairs a second in the default synthetic world. Past this many (~190 MB, about a week)
# scoring stops, and the summary says so.
MAX_SCORED_PAIRS = 1_000_000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="live tracking: source -> sensor -> ISP -> detector -> tracks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source",
        nargs="?",
        default="synthetic",
        help="synthetic[:WxH@FPS,seed=N], a video file, a webcam index (0), an "
        "image folder or RAW files (default: synthetic)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help=f"stop after N frames (synthetic default {SYNTHETIC_FRAMES})",
    )
    p.add_argument(
        "--fps",
        type=source_frame_rate,
        default=None,
        help="frame rate of a source that states none: an image folder, RAW files (a --raw "
        "recording states its own), a video without one (default 30); the synthetic world's "
        "(also synthetic:WxH@FPS)",
    )
    p.add_argument("--backend", default="auto", choices=CHOICES, help="kernel backend")
    p.add_argument(
        "--detector",
        default="auto",
        choices=("auto", "network", "truth"),
        help="network, ground-truth stand-in (synthetic only), or auto",
    )
    p.add_argument(
        "--model",
        default=None,
        help="ONNX detector (default: the bundled synthetic-world model on the synthetic "
        "source, FastestDet otherwise)",
    )
    p.add_argument(
        "--score", type=fraction, default=None, help=f"detection score threshold ({SCORE})"
    )
    p.add_argument(
        "--max-det",
        type=max_detections,
        default=None,
        help=f"most detections per frame ({MAX_DET})",
    )
    p.add_argument("--log", default=None, help="JSONL track log (one line per frame)")
    p.add_argument("--mot", default=None, help="MOTChallenge result file")
    p.add_argument("--image", default=None, help="write the annotated last frame (PNG/JPEG)")
    p.add_argument(
        "--video", default=None, help="write the annotated ISP video (.avi MJPG, .mp4, .mkv)"
    )
    p.add_argument(
        "--nv12",
        default=None,
        metavar="FILE",
        help="write the ISP's own video, unannotated, as raw NV12 frames (BT.709 limited "
        "range; e.g. out.yuv or /dev/stdout into an encoder)",
    )
    p.add_argument(
        "--roi",
        type=_window,
        default=None,
        metavar="X,Y,W,H",
        help="read out only this window of the sensor (even numbers, sensor pixels): the ISP, "
        "the network and the image outputs see it alone; boxes and logs stay in sensor pixels",
    )
    p.add_argument(
        "--raw",
        default=None,
        metavar="FOLDER",
        help="write each frame's RAW Bayer frame as DNG into FOLDER (frame_NNNNNN.dng, "
        "numbered as the log; made if missing)",
    )
    p.add_argument(
        "--seed", type=seed, default=0, help="sensor noise and stand-in seed (0 to 2**64 - 1)"
    )
    p.add_argument(
        "--size", type=size_wxh, default=None, help="RAW input size WxH (headerless .raw files)"
    )
    p.add_argument(
        "--bit-depth",
        type=bit_depth,
        default=None,
        help="bit depth: of .raw or .npy RAW input (8, 10, 12, 14, 16; default the file "
        "name's, else 12), or of the sensor model for RGB sources (10, 12 or 14; default 12); "
        "a DNG or camera RAW states its own",
    )
    p.add_argument(
        "--pattern",
        type=bayer_pattern,
        default=None,
        help="Bayer pattern: of RAW input, or of the sensor model for RGB sources",
    )
    p.add_argument(
        "--wb",
        type=white_balance,
        default=None,
        metavar="auto|camera|R,G,B",
        help="white balance: grey world on each frame, each DNG's or camera RAW's gains as "
        "shot, or fixed gains (default: camera for such files, auto for other RAW input, "
        f"{','.join(f'{g:g}' for g in DEFAULT_WB)} for RGB sources: the sensor model shoots "
        "them under the illuminant that these gains undo)",
    )
    add_isp_options(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--ui",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live terminal view (default: on when the output is a terminal)",
    )
    p.set_defaults(func=run)


def _check_raw_output(args: argparse.Namespace) -> None:
    """--raw names a folder that may hold the recording: not the source folder (its frames
    would be read by the next run over it), not another output's file, no earlier recording;
    and the ISP's colour is one a DNG can state (what a file states already is)."""
    if args.raw is None:
        return
    problem = unstated_colour(args.wb if isinstance(args.wb, tuple) else None,
                              args.ccm if isinstance(args.ccm, tuple) else None)  # fmt: skip
    if problem:
        raise UsageError(f"--raw {args.raw}: {problem}, or the recording plays back into "
                         "other images")  # fmt: skip
    folder = Path(args.raw).expanduser()
    source = _local_path(args.source)
    for what, other in [("the source folder", source if source.is_dir() else None),
                        *((f"--{o}", getattr(args, o))
                          for o in ("log", "mot", "video", "image", "nv12"))
                        ]:  # fmt: skip
        if not other:
            continue
        where = Path(other).expanduser().resolve()
        if where == folder.resolve():
            raise UsageError(f"--raw {args.raw}: is {what}; give the recording a folder of "
                             "its own")  # fmt: skip
        if folder.resolve() in where.parents:  # it would be played back as a frame
            raise UsageError(f"{what} {other}: is inside the --raw folder {args.raw}, which "
                             "holds the recording's frames alone")  # fmt: skip
    check_raw_folder(args.raw)  # after the above, which say more than "holds a file"


def _check_streams(args: argparse.Namespace) -> bool:
    """Whether an output goes to stdout (the summary then goes to stderr). NV12 frames are
    binary and back to back: no log line may land between them, and the live view, which
    draws on stdout, may not share stdout with an output."""
    if args.nv12 is not None and written_in_place(args.nv12):
        for option in ("log", "mot"):
            other = getattr(args, option)
            if other is not None and _same_stream(args.nv12, other):
                raise UsageError(f"--nv12 {args.nv12} and --{option} {other} are one stream: "
                                 "NV12 frames need it to themselves")  # fmt: skip
    if args.log is not None and args.mot is not None and written_in_place(args.log) and \
            written_in_place(args.mot) and _same_stream(args.log, args.mot):
        # (files are told apart elsewhere; two formats in one stream are neither's)
        raise UsageError(f"--log {args.log} and --mot {args.mot} are one stream: JSON lines "
                         "and MOT lines mixed would be read as neither")  # fmt: skip
    given = [(f"--{o}", getattr(args, o)) for o in ("log", "mot", "nv12")]
    on_stdout = [f"{o} {p}" for o, p in given if is_stdout(p)]
    if on_stdout and args.ui:
        raise UsageError(f"--ui and {on_stdout[0]} both write to stdout; choose one")
    return bool(on_stdout)


def _same_stream(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _local_path(source: str) -> Path:
    """The file a source reads: a path, or the one a file:// URL names (OpenCV opens those
    too, and an output over it must be refused as over the path)."""
    url = urlparse(source)
    if url.scheme.lower() == "file" and url.netloc in ("", "localhost"):
        return Path(url2pathname(url.path))
    return Path(source).expanduser()


def _window(text: str) -> Roi:
    try:
        return Roi.parse(text)
    except GputrackError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    if args.ui and args.json:
        raise UsageError("--ui and --json both write to the terminal's output; choose one")
    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames {args.frames}: must be at least 1")
    for option in ("log", "mot", "video", "image", "nv12", "raw", "model"):
        if getattr(args, option) == "":  # `--raw "$OUT"` with OUT unset: not "no --raw"
            raise UsageError(f"--{option}: an empty name (an unset shell variable?)")
    for option in ("log", "mot", "image", "nv12"):
        check_output_path(f"--{option}", getattr(args, option), image=option == "image")
    check_output_path("--video", args.video, tuple(VIDEO_CODECS))
    _check_raw_output(args)
    on_stdout = _check_streams(args)
    if args.roi is not None and args.lens_shading is not None and any(args.lens_shading):
        raise UsageError("--roi with --lens-shading: the ISP corrects shading about the "
                         "centre of the frame it sees, not the sensor's; use one or the "
                         "other")  # fmt: skip
    synthetic = is_synthetic(args.source)  # the sources' own test; '' is a usage error
    kind = "network" if args.detector == "auto" else args.detector
    if kind == "truth":
        given = [o for o in ("model", "score", "max_det") if getattr(args, o) is not None]
        if given:
            names = ", ".join("--" + o.replace("_", "-") for o in given)
            raise UsageError(f"{names}: for the network detector, not for --detector truth")
    # The model is an input too, the default one included: no output may be written over it.
    model = None
    if kind == "network":
        model = args.model or (bundled_model() if synthetic else default_model())
    source_path = _local_path(args.source)
    refuse_overwriting_inputs(
        {"source": source_path if source_path.exists() else None, "model": model},
        {f"--{o}": getattr(args, o) for o in ("log", "mot", "video", "image", "nv12")},
        folder_reads=FOLDER_FRAME_EXTS,
    )
    if args.size and not is_headerless_raw(args.source):
        raise UsageError(
            f"--size applies to headerless .raw input (for the synthetic world: "
            f"synthetic:WxH), not to {args.source}"
        )
    if kind == "truth" and not synthetic:
        raise UsageError("--detector truth needs the synthetic world (it has ground truth)")

    backend = get_backend(args.backend, verbose=True)
    source = open_source(
        args.source,
        frames=args.frames,
        size=args.size,
        bit_depth=args.bit_depth,
        pattern=args.pattern,
        fps=args.fps,
    )
    _note_source(args, source)
    if synthetic and source.limit is None:  # neither --frames nor frames= in the spec
        source.limit = SYNTHETIC_FRAMES
    frames = source.expected_frames  # for the live view's counter
    try:
        if not source.is_raw:  # the bit depth is the sensor model's
            check_sensor_bit_depth(args.bit_depth)
        # a DNG or camera RAW source's own white balance and colour matrix, unless given;
        # other RAW input grey world (as `gputrack isp`): fixed gains only undo the
        # illuminant the sensor model shoots RGB sources under
        colour = stated_colour(args, getattr(source, "first_raw", None), source.name,
                               "auto" if source.is_raw else DEFAULT_WB)  # fmt: skip
        w, h = source.size  # the sensor: the source's frame, even-sized for RGB
        if not source.is_raw:
            w, h = w - w % 2, h - h % 2
        shading = args.lens_shading is not None and any(args.lens_shading)
        if source.window is not None and shading:  # refused as with --roi: a window's frames
            raise UsageError(f"--lens-shading: {source.name} is a recording of the window "
                             f"{source.window}; the ISP would correct shading about its centre, "
                             "not the sensor's")  # fmt: skip
        if args.roi is not None:
            try:
                args.roi.check_inside(w, h, source.name)
                if source.window is not None:  # a windowed recording holds only its pixels
                    args.roi.check_within(source.window, "the recording")
            except GputrackError as err:
                raise UsageError(f"--roi {err}") from None
        # what the sensor reads out: --roi's window, or the one a windowed recording states
        window = args.roi if args.roi is not None else source.window
        if window is not None:
            w, h = window.w, window.h
        if args.video and VIDEO_CODECS[Path(args.video).suffix.lower()] == "MJPG" and w < 8:
            # OpenCV's MJPG writer corrupts its heap on such frames and aborts the process
            raise UsageError(f"--video {args.video}: frames {w}x{h} are too narrow for OpenCV's "
                             "MJPG writer (8 pixels at least); use .mp4")  # fmt: skip
        if args.raw is not None and min(w, h) < MIN_DNG_SIDE:
            # LibRaw (rawpy, darktable) refuses smaller DNGs: nothing could play it back
            raise UsageError(f"--raw {args.raw}: frames {w}x{h}; LibRaw reads DNG frames of "
                             f"{MIN_DNG_SIDE} pixels a side or more, so the recording could "
                             "not be played back")  # fmt: skip
    except UsageError:
        source.close()
        raise
    if kind == "truth":
        # Class numbers as the bundled network's (person, car, ball), whatever subset the
        # world has: the log's "class" means the same with either detector.
        names: list[str] = list(ALL_CLASSES)
        detector: Any = _TruthInAllClasses(args.seed, getattr(source, "class_names", ALL_CLASSES))
    else:
        params = DetectParams(
            score=SCORE if args.score is None else args.score,
            max_det=args.max_det or MAX_DET,
        )
        assert model is not None
        detector = Detector(model, backend, params)
        names = model_classes(model) or [class_name(i) for i in range(80)]
    tracker = Tracker(fps=source.fps)
    # For RGB sources the sensor model makes the RAW frame with this pattern and bit depth;
    # a RAW source's own frames carry theirs, which the ISP uses instead.
    sensor = IspParams(
        pattern=args.pattern or "RGGB",
        bit_depth=args.bit_depth or 12,
        **colour,
        **isp_choices(args),
        nv12=args.nv12 is not None,
    )
    pipe = Pipeline(backend, detector, tracker, isp_params=sensor, seed=args.seed, roi=args.roi)
    if args.ui is None:  # not over the JSON summary, nor into an output on stdout
        show_ui = sys.stdout.isatty() and not args.json and not on_stdout
    else:
        show_ui = args.ui

    # bounded for runs of days: exact percentiles up to EXACT_FRAMES, then a histogram
    stage_ms = {k: LatencyStats() for k in (*STAGES, "total")}
    deadline = 1000.0 / source.fps
    misses = 0
    # A ring of prerendered frames jumps back at its wrap: tracking is scored on one pass
    ring = getattr(source, "ring", None)
    scored_frames = len(ring) if ring is not None else math.inf
    if ring is not None and (frames is None or frames > len(ring)):
        source.notes.append(f"ring={len(ring)}: tracking is scored on the first {len(ring)} "
                            "frames, one pass of the ring (the scene jumps back at its wrap)")
    scored: Any = None  # a StreamScorer from the first frame with ground truth
    result = None
    interrupted: KeyboardInterrupt | None = None  # what stopped the run early, if anything
    with ExitStack() as stack:
        stack.enter_context(source)
        if not source.is_raw:  # a matrix the sensor model cannot invert: said before frame 1
            check_sensor_ccm(sensor)
        outputs = RunOutputs(
            stack,
            log=args.log,
            mot=args.mot,
            video=args.video,
            fps=source.fps,
            names=names,
            raw=args.raw,
            nv12=args.nv12,
        )
        view = None
        if show_ui:
            view = stack.enter_context(
                LiveView(
                    f"gputrack run · {source.name} · {backend.name}",
                    source.size,
                    source.fps,
                    names,
                    frames,
                    window=None if window is None else (
                        window.x, window.y, window.w, window.h),  # fmt: skip
                )
            )
        try:
            with _stops_between_frames() as whole_frame:
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
                        done_scoring = scored.frames if scored is not None else 0
                        if frame.truth is not None and done_scoring < scored_frames:
                            # scored on what the window sees
                            truth = frame.truth if args.roi is None else args.roi.truth(
                                frame.truth)  # fmt: skip
                            scored = scored or _scorer()
                            scored.update(*_score_row(truth, result.tracks))
                            if scored.pairs >= MAX_SCORED_PAIRS:  # no more: memory stays bounded
                                scored_frames = scored.frames
                                source.notes.append(
                                    f"tracking is scored on the first {scored_frames} frames: "
                                    f"{scored.pairs} truth/track id pairs, the most kept")
        except KeyboardInterrupt as stop:
            if outputs.frames == 0:  # nothing done: earlier outputs stay as they were
                raise
            interrupted = stop
        # On an error, `outputs` says which outputs were kept with the frames done, once it
        # knows (an output whose own write failed is not renamed into place).
        if result is None:  # raised inside the outputs' context: nothing replaced
            raise GputrackError(f"{args.source}: the source gave no frames")
    image = args.image
    image_error: GputrackError | None = None
    if image:
        rgb8 = pipe.last_image()
        if rgb8 is not None:
            try:
                write_image(image, draw_tracks(rgb8, result.tracks, names, result.origin),
                            "--image")  # fmt: skip
            except GputrackError as err:  # the other outputs are complete: summary still due
                image_error, image = err, None
        else:  # stopped at once inside a frame whose ISP wrote over the last finished picture
            sys.stderr.write(f"gputrack run: --image {image}: not written, the picture of the "
                             f"last finished frame was gone when the run stopped\n")  # fmt: skip
            image = None
    summary = _summary(args, source, backend.name, detector, stage_ms, misses, scored, tracker)
    summary["image"] = image
    summary["raw_frames"] = outputs.raw.frames if outputs.raw is not None else 0
    summary["frame_size"] = list(result.size)  # what the ISP made: the window with --roi
    summary["classes"] = list(names)  # the logs' class numbers, in words
    # what the ISP's colour came from: a DNG source's own, the options, or the defaults
    wb = colour["wb"]
    summary["white_balance"] = wb if isinstance(wb, str) else list(wb)
    summary["colour_matrix"] = ("camera" if "ccm" in colour else
                                "given" if args.ccm is not None else "default")  # fmt: skip
    stopped_by, code = interrupted_by(interrupted) if interrupted else (None, 0)
    summary["interrupted"] = stopped_by is not None
    summary["stopped_by"] = stopped_by
    summary["notes"] = _recording_notes(args) if outputs.raw is not None else []
    summary["notes"] += getattr(detector, "notes", [])  # the model's import (batch taken as 1)
    # The track log, the MOT result or the NV12 frames on stdout (--mot /dev/stdout | reader):
    # the summary goes beside it, on stderr, so the stream holds that output only.
    report = sys.stderr if on_stdout else sys.stdout
    if args.json:
        json.dump(summary, report, indent=2)
        report.write("\n")
    else:
        _print_summary(summary, report)
    if image_error is not None:  # after the summary, which lists what was written
        sys.stderr.write(f"gputrack run: error: {image_error}\n")
        return code or image_error.exit_code
    return code


class _TruthInAllClasses(NoisyTruthDetector):
    """The stand-in with class numbers into ALL_CLASSES, not into the world's own list
    (`classes=car+ball` numbers car 0)."""

    def __init__(self, seed: int, world_classes: Any) -> None:
        super().__init__(seed)
        self.to_all = np.array([ALL_CLASSES.index(c) for c in world_classes], np.float32)

    def __call__(self, truth: np.ndarray) -> np.ndarray:
        dets = super().__call__(truth)
        dets[:, 5] = self.to_all[dets[:, 5].astype(np.intp)]
        return dets


def _note_source(args: argparse.Namespace, source: Any) -> None:
    """What the summary's source notes must tell about the frames as the pipeline sees them."""
    if args.fps is not None and source.fps != args.fps:
        source.notes.append(f"--fps {args.fps:g} not used: {source.name} states "
                            f"{source.fps:g} fps")  # fmt: skip
    w, h = source.size
    if not source.is_raw and (w % 2 or h % 2):
        even = f"{w - w % 2}x{h - h % 2}"
        shown = even if args.roi is None else f"the --roi window's {args.roi.w}x{args.roi.h}"
        source.notes.append(
            f"frames are {w}x{h}; the sensor's Bayer mosaic needs even sides, so the sensor is "
            f"{even} (the last column or row cropped off): boxes are in the source's pixels, "
            f"the image outputs are {shown}"
        )


@contextmanager
def _stops_between_frames() -> Iterator[Any]:
    """`with _stops_between_frames() as whole_frame: ... with whole_frame(): one frame`.

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


def _score_row(truth: np.ndarray, tracks: list) -> tuple:
    """One frame for `score_frames`: the objects at least SCORED_VISIBILITY visible against
    the confirmed tracks. A track on an object less visible (entering, leaving, mostly
    hidden) counts neither way, as one on a distractor in the MOT devkit: the same matching
    (`not_on_distractors`) drops it; scored as a false positive it cost ~3 MOTA points."""
    from gputrack.track.mot_eval import not_on_distractors

    boxes = np.column_stack([truth[:, :2], truth[:, 2:4] - truth[:, :2]])
    hidden = truth[:, 6] < SCORED_VISIBILITY
    shown = [t for t in tracks if t.state == "confirmed"]
    hyp = np.array([(t.x, t.y, t.w, t.h) for t in shown], np.float64).reshape(-1, 4)
    keep = not_on_distractors(boxes, hidden, hyp)
    return (truth[~hidden, 4], boxes[~hidden], [t.id for t, k in zip(shown, keep, strict=True)
                                                if k], hyp[keep])  # fmt: skip


def _scorer() -> Any:
    from gputrack.track.mot_stream import StreamScorer

    return StreamScorer()


def _summary(args, source, backend: str, detector, stage_ms, misses, scored, tracker) -> dict:
    deadline = 1000.0 / source.fps
    total = stage_ms["total"]
    roi = args.roi if args.roi is not None else source.window  # a windowed recording's too
    summary: dict[str, Any] = {
        "source": source.name,
        "backend": backend,
        "detector": detector.name,
        "frames": total.count,
        "dropped_frames": source.dropped,
        # why the source ended before its end (frames from there on undecodable), or null
        "source_end_reason": source.end_reason,
        "source_notes": list(source.notes),  # e.g. a frame rate assumed for a video
        "fps": source.fps,
        "deadline_ms": round(deadline, 3),
        "deadline_misses": int(misses),
        "stage_ms_p50": {k: round(v.percentile(50), 3) for k, v in stage_ms.items() if v.count},
        "stage_ms_p99": {k: round(v.percentile(99), 3) for k, v in stage_ms.items() if v.count},
        # whether p50/p99 are of every frame's latency, or (a long run) of a histogram's,
        # within stage_ms_rel_error of those
        "stage_ms_exact": total.exact,
        "stage_ms_rel_error": 0.0 if total.exact else REL_ERROR,
        "tracks_confirmed": int(tracker.next_id - 1),
        "log": args.log,
        "mot": args.mot,
        "image": args.image,
        "video": args.video,
        "raw": args.raw,  # a folder of DNG frames
        "nv12": args.nv12,
        "roi": None if roi is None else [roi.x, roi.y, roi.w, roi.h],
    }
    network = getattr(detector, "network", None)
    if network is not None and network.plan is not None:  # the network on gputrack's kernels
        summary["network_graph"] = network.graph_error or "one graph per frame"
    if scored is not None:
        from gputrack.track.mot_eval import finite_or_none

        m = scored.metrics()
        summary.update(
            mota=finite_or_none(m["mota"]),
            idf1=finite_or_none(m["idf1"]),
            id_switches=int(m["num_switches"]),
            scored_frames=scored.frames,
        )
    return summary


def _recording_notes(args: argparse.Namespace) -> list[str]:
    """What a --raw recording does not state of the ISP this run had: given again on
    playback, it develops into the same images (a DNG has no field raw developers apply)."""
    unstated = [f"--tone {args.tone}" if args.tone is not None else None,
                "--lens-shading " + ",".join(f"{k:g}" for k in args.lens_shading)
                if args.lens_shading is not None and any(args.lens_shading) else None]
    return [f"--raw {args.raw}: the DNG frames do not state {o}; give it again to play them "
            "back as this run developed them" for o in unstated if o]  # fmt: skip


def _print_summary(s: dict, stream: TextIO) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from gputrack.track.mot_eval import percent

    # no guessed colours in names and paths; lines left whole (a file or a pipe gets no
    # breaks at 80 columns in mid-phrase: the terminal wraps what it shows)
    console = Console(file=stream, highlight=False, soft_wrap=True)
    # The heading on a line of its own: as a table title it wraps to the narrow table's width.
    console.print(
        f"gputrack run: {s['frames']} frame{'' if s['frames'] == 1 else 's'} of "
        f"{escape(s['source'])} on "
        f"{s['backend']} (deadline {s['deadline_ms']:.2f} ms)"
    )
    table = Table()
    for col in ("stage", "p50 ms", "p99 ms"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for k in s["stage_ms_p50"]:
        table.add_row(k, f"{s['stage_ms_p50'][k]:.2f}", f"{s['stage_ms_p99'][k]:.2f}")
    console.print(table)
    if not s["stage_ms_exact"]:
        from gputrack import latency

        console.print(f"latency: past {latency.EXACT_FRAMES} frames p50 and p99 come from a "
                      f"histogram, within {100 * s['stage_ms_rel_error']:g} % of the exact "
                      "figures")  # fmt: skip
    console.print(
        f"detector: {escape(s['detector'])}; {s['tracks_confirmed']} tracks confirmed; "
        f"{s['deadline_misses']} frames over the deadline; "
        f"{s['dropped_frames']} dropped by the source"
    )
    for note in (*s["source_notes"], *filter(None, [s["source_end_reason"]])):
        console.print(f"source: {escape(note)}")
    for note in s["notes"]:
        console.print(f"note: {escape(note)}")
    if "network_graph" in s:
        console.print(f"network: {escape(s['network_graph'])}")
    if "mota" in s:
        console.print(
            f"tracking vs ground truth: MOTA {percent(s['mota'])}, IDF1 "
            f"{percent(s['idf1'])}, {s['id_switches']} identity switches"
        )
    wrote = [p for p in (s["log"], s["mot"], s["image"], s["video"], s["nv12"]) if p]
    if s["raw"]:
        wrote.append(f"{s['raw']} ({s['raw_frames']} DNG frames)")
    if s["nv12"]:  # headerless frames: what reads them must be told their size and rate
        w, h = s["frame_size"]
        read_from = "- (piped)" if is_stdout(s["nv12"]) else shlex.quote(s["nv12"])
        # one line, quoted for the shell: a command to paste, not wrapped text
        console.print(escape(f"--nv12 is {w}x{h} at {s['fps']:g} fps; plays with: ffplay -f "
                             f"rawvideo -pixel_format nv12 -video_size {w}x{h} -framerate "
                             f"{s['fps']:g} {read_from}"), soft_wrap=True)  # fmt: skip
    if wrote:
        console.print("wrote " + ", ".join(escape(p) for p in wrote))
    if s.get("interrupted"):
        console.print(f"stopped by {s['stopped_by']}; everything above is complete")
