"""`gputrack run`'s options: declared, then checked before any work.

The checks run in a fixed order, and the first problem found is the one reported (exit 2):
`check_options` before the source is opened, `check_against_source` once it is open and
its frame size, colour and window are known.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from gputrack.commands.args import (
    add_isp_options,
    bayer_pattern,
    bit_depth,
    check_sensor_bit_depth,
    fraction,
    max_detections,
    seed,
    size_wxh,
    source_frame_rate,
    stated_colour,
    white_balance,
)
from gputrack.device import CHOICES
from gputrack.dsp.detector import bundled_model, default_model
from gputrack.errors import GputrackError, UsageError
from gputrack.isp.params import DEFAULT_WB
from gputrack.outputs.dng import MIN_DNG_SIDE, check_raw_folder, unstated_colour
from gputrack.outputs.files import is_stdout, refuse_overwriting_inputs, written_in_place
from gputrack.outputs.sinks import VIDEO_CODECS, check_output_path
from gputrack.sensor.roi import Roi
from gputrack.sensor.sources import (
    FOLDER_FRAME_EXTS,
    Source,
    is_headerless_raw,
    is_synthetic,
)

SCORE, MAX_DET = 0.45, 50  # the network detector's defaults
SYNTHETIC_FRAMES = 300  # an endless source needs an end when no --frames is given


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Every option of `gputrack run`, on its parser."""
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


def _window(text: str) -> Roi:
    try:
        return Roi.parse(text)
    except GputrackError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


@dataclass
class RunChoices:
    """What the options decide before the source is opened."""

    synthetic: bool  # the source is the synthetic world
    kind: str  # the detector: "network" or "truth"
    model: Any  # the network's ONNX file (the default one too), None for "truth"
    on_stdout: bool  # an output goes to stdout: the summary goes to stderr


def check_options(args: argparse.Namespace) -> RunChoices:
    """Every check the options allow without opening the source, in the order that decides
    which error is reported when several options are wrong."""
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
    return RunChoices(synthetic=synthetic, kind=kind, model=model, on_stdout=on_stdout)


def check_against_source(
    args: argparse.Namespace, source: Source
) -> tuple[dict[str, Any], Roi | None]:
    """The checks that need the open source; returns the ISP's colour (white balance and
    matrix, for IspParams) and the window the sensor reads out (None: the whole sensor).
    On a usage error the source is closed: the run ends before it is used."""
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
    return colour, window


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
