"""`gputrack detect INPUT`: the on-sensor detector on one image (or a video's first frame).

The image becomes the network input exactly as the ISP's tensor pass makes it (letterbox,
RGB/255), the network runs on the chosen backend (kernels on cuda/emu, onnxruntime on cpu),
the head is decoded with class-aware NMS, and the detections are printed in frame pixels
(one line each, or --json); --out writes the image with the boxes drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from gputrack.commands.args import fraction, max_detections
from gputrack.device import CHOICES, get_backend
from gputrack.dsp.coco import class_name
from gputrack.dsp.decode import DetectParams
from gputrack.dsp.detector import Detector, default_model, model_classes
from gputrack.errors import GputrackError, UsageError
from gputrack.opencv_files import looks_like_image, opencv_name
from gputrack.opencv_files import read_rgb as read_rgb_image
from gputrack.outputs.files import refuse_overwriting_inputs, write_image
from gputrack.outputs.sinks import check_output_path

VIDEO_EXTS = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect",
        help="run the detector on an image (or a video's first frame)",
        description="Image -> network input (letterbox) -> network -> decode + NMS -> "
        "detections in frame pixels.",
    )
    p.add_argument("input", metavar="INPUT", help="image file, or a video (first frame)")
    p.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="ONNX model (default: FastestDet from GPUTRACK_DATA)",
    )
    p.add_argument("--backend", default="auto", choices=CHOICES, help="default: auto")
    p.add_argument("--score", type=fraction, default=0.55, help="score threshold (0.55)")
    p.add_argument("--iou", type=fraction, default=0.65, help="NMS IoU threshold (0.65)")
    p.add_argument("--max-det", type=max_detections, default=10, help="most detections kept (10)")
    p.add_argument("--out", default=None, metavar="IMAGE", help="write the annotated image")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def read_rgb(path: Path) -> tuple[np.ndarray, list[str]]:
    """uint8 RGB as a viewer shows the image (EXIF orientation applied), or a video's first
    frame; with notes on what the colours leave out (transparency)."""
    if not path.is_file():
        raise GputrackError(f"input {path}: " + ("a folder, not an image or a video"
                                                 if path.is_dir() else "no such file"))
    video = path.suffix.lower() in VIDEO_EXTS
    got = None if video else read_rgb_image(path)
    if got is not None:
        rgb, notes = got
        if rgb.dtype == np.uint16:  # the network sees RGB8, as the ISP makes it
            rgb = np.rint(rgb / 257.0).astype(np.uint8)
        return rgb, notes
    if not video and looks_like_image(path):
        # FFmpeg would decode what it can of a truncated image and pad the rest silently
        raise GputrackError(f"input {path}: a damaged or unsupported image (OpenCV cannot "
                            "decode it)")  # fmt: skip
    # a video by its name, or by its content (.mpg, .ts, no extension ...)
    cap = cv2.VideoCapture(opencv_name(path, "input"))
    ok, bgr = cap.read()
    cap.release()
    if not ok:
        what = "no frame could be read from the video" if video else (
            "neither an image nor a video OpenCV can read")
        raise GputrackError(f"input {path}: {what}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), []


def class_namer(model: Path) -> Callable[[int], str]:
    """A model's class names, from the JSON beside it (the bundled model's ball, car, person)
    or COCO-80's (FastestDet's, which has none), as `run` names them."""
    names = model_classes(model)
    if names is None:
        return class_name
    return lambda i: names[i] if 0 <= i < len(names) else f"class{i}"


def annotate(rgb: np.ndarray, dets: np.ndarray,
             name: Callable[[int], str] = class_name) -> np.ndarray:  # fmt: skip
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    # Lines and labels grow with the image, so that they show when a photo of 8000 pixels
    # is viewed whole (2-pixel lines would vanish); up to 1000 pixels as they were
    k = max(1.0, max(rgb.shape[:2]) / 1000.0)
    for x1, y1, x2, y2, score, cls in dets:
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(bgr, p1, p2, (0, 255, 0), int(round(2 * k)))
        label = f"{name(int(cls))} {score:.2f}"
        cv2.putText(
            bgr,
            label,
            (p1[0], max(int(10 * k), p1[1] - int(3 * k))),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * k,
            (0, 255, 0),
            int(round(k)),
            cv2.LINE_AA,
        )
    return bgr


def check_finite(dets: np.ndarray, model: Path) -> None:
    """The decoder drops non-finite outputs; should one get through, say so rather than print
    NaN (invalid JSON) or draw it."""
    bad = ~np.isfinite(np.asarray(dets, dtype=np.float64)).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GputrackError(
            f"model {model}: detection {i} has a non-finite value "
            f"({', '.join(str(float(v)) for v in dets[i])}); "
            f"{int(bad.sum())} of {len(dets)} detections are not finite"
        )


def run(args: argparse.Namespace) -> int:
    params = DetectParams(score=args.score, iou=args.iou, max_det=args.max_det)
    if args.out and Path(args.out).suffix.lower() in (".json", ".txt", ".csv"):
        # --out is the annotated image; say where the detections are rather than that
        # OpenCV has no .json writer
        raise UsageError(f"--out {args.out}: --out writes the annotated image (.png, .jpg ...); "
                         f"the detections are printed: --json > {args.out}")  # fmt: skip
    check_output_path("--out", args.out, image=True)
    model = Path(args.model) if args.model else default_model()  # the default is an input too
    refuse_overwriting_inputs({"input": args.input, "model": model}, {"--out": args.out})
    rgb, notes = read_rgb(Path(args.input))
    backend = get_backend(args.backend, verbose=not args.json)
    detector = Detector(model, backend, params)
    notes += detector.notes  # what the import decided (a named batch taken as 1, ...)
    t0 = time.perf_counter()
    dets = detector(rgb)
    ms = (time.perf_counter() - t0) * 1e3
    check_finite(dets, model)
    name = class_namer(model)
    if args.out:
        write_image(Path(args.out), annotate(rgb, dets, name), "--out")
    rows = [
        {
            "class": name(int(d[5])),
            "class_id": int(d[5]),
            "score": round(float(d[4]), 4),
            "bbox": [round(float(v), 1) for v in d[:4]],
        }
        for d in dets
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "input": args.input,
                    "model": str(model),
                    "backend": backend.name,
                    "frame": [int(rgb.shape[1]), int(rgb.shape[0])],
                    "ms": round(ms, 2),
                    "detections": rows,
                    "notes": notes,
                },
                allow_nan=False,  # never NaN/Infinity in the output: they are not JSON
            )
        )
    else:
        for note in notes:
            sys.stderr.write(f"gputrack detect: note: {note}\n")
        for r in rows:
            x1, y1, x2, y2 = r["bbox"]
            print(f"{r['class']:<14} {r['score']:.3f}  {x1:7.1f} {y1:7.1f} {x2:7.1f} {y2:7.1f}")
        sys.stderr.write(
            f"gputrack detect: {len(rows)} detection{'' if len(rows) == 1 else 's'}, "
            f"{ms:.1f} ms on {backend.name}\n"
        )
    return 0
