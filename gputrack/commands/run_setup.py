"""Building what one `gputrack run` needs from its checked options: the backend, the source,
the detector with its class names, the tracker and the pipeline that ties them together."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from gputrack.commands.args import isp_choices
from gputrack.commands.run_options import (
    MAX_DET,
    SCORE,
    SYNTHETIC_FRAMES,
    RunChoices,
    check_against_source,
)
from gputrack.device import Backend, get_backend
from gputrack.dsp.coco import class_name
from gputrack.dsp.decode import DetectParams
from gputrack.dsp.detector import Detector, model_classes
from gputrack.dsp.standin import NoisyTruthDetector
from gputrack.isp import IspParams
from gputrack.pipeline import Pipeline
from gputrack.sensor.roi import Roi
from gputrack.sensor.sources import Source, open_source
from gputrack.sensor.synthetic import ALL_CLASSES
from gputrack.track import Tracker


@dataclass
class RunParts:
    """What one run is made of."""

    backend: Backend
    source: Source
    frames: int | None  # how many the source will give, where known (the live view's counter)
    colour: dict[str, Any]  # the ISP's white balance and colour matrix, and where from
    window: Roi | None  # what the sensor reads out: --roi's, a windowed recording's, or None
    detector: Any  # a Detector, or the ground-truth stand-in
    names: list[str]  # the detector's class names, by class number
    tracker: Tracker
    sensor: IspParams  # as the options give it (the pipeline adds the network's input)
    pipe: Pipeline
    show_ui: bool


def build_run(args: argparse.Namespace, choices: RunChoices) -> RunParts:
    """Open the backend and the source, check the options against the source, then build
    the detector and the pipeline. (The source is entered into the run's ExitStack only by
    the frame loop.)"""
    backend = get_backend(args.backend, verbose=True)
    source = open_source(
        args.source,
        frames=args.frames,
        size=args.size,
        bit_depth=args.bit_depth,
        pattern=args.pattern,
        fps=args.fps,
    )
    try:  # until the frame loop owns it, a failure here closes the source (a webcam, a file)
        _note_source(args, source)
        if choices.synthetic and source.limit is None:  # neither --frames nor frames= given
            source.limit = SYNTHETIC_FRAMES
        frames = source.expected_frames  # for the live view's counter
        colour, window = check_against_source(args, source)
        detector, names = _make_detector(args, choices, backend, source)
        tracker = Tracker(fps=source.fps)
        # For RGB sources the sensor model makes the RAW frame with this pattern and bit
        # depth; a RAW source's own frames carry theirs, which the ISP uses instead.
        sensor = IspParams(
            pattern=args.pattern or "RGGB",
            bit_depth=args.bit_depth or 12,
            **colour,
            **isp_choices(args),
            nv12=args.nv12 is not None,
        )
        pipe = Pipeline(backend, detector, tracker, isp_params=sensor, seed=args.seed,
                        roi=args.roi)  # fmt: skip
    except BaseException:
        source.close()
        raise
    if args.ui is None:  # not over the JSON summary, nor into an output on stdout
        show_ui = sys.stdout.isatty() and not args.json and not choices.on_stdout
    else:
        show_ui = args.ui
    return RunParts(backend, source, frames, colour, window, detector, names, tracker, sensor,
                    pipe, show_ui)  # fmt: skip


def _make_detector(
    args: argparse.Namespace, choices: RunChoices, backend: Backend, source: Source
) -> tuple[Any, list[str]]:
    """The detector the options chose, with its class names by class number."""
    if choices.kind == "truth":
        # Class numbers as the bundled network's (person, car, ball), whatever subset the
        # world has: the log's "class" means the same with either detector.
        names: list[str] = list(ALL_CLASSES)
        detector: Any = _TruthInAllClasses(args.seed, getattr(source, "class_names", ALL_CLASSES))
    else:
        params = DetectParams(
            score=SCORE if args.score is None else args.score,
            max_det=args.max_det or MAX_DET,
        )
        assert choices.model is not None
        detector = Detector(choices.model, backend, params)
        names = model_classes(choices.model) or [class_name(i) for i in range(80)]
    return detector, names


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


def _note_source(args: argparse.Namespace, source: Source) -> None:
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
