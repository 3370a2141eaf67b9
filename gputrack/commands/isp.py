"""`gputrack isp`: an RGB image through the sensor model and the ISP, or a RAW file through
the ISP.

- INPUT an RGB image (PNG/JPEG/..., as a viewer shows it; a uint8/uint16 .npy HxWx3; a
  float TIFF or .npy as linear light): the sensor model makes its RAW
  frame with the exact inverse of the ISP's colour steps (noise only with --noise), the ISP
  turns it back into an image, and --json reports the round-trip CPSNR against the input.
- --stages demosaic: the demosaicing benchmark setting; the image is only mosaicked as given
  and the ISP only demosaics.
- INPUT a RAW frame (.raw with --size, uint16 .npy, DNG/camera RAW; a .raw's size and a .raw's
  or .npy's pattern and bit depth may come from its name): its ISP image. A DNG or camera RAW
  is developed with the white balance and colour matrix it states (--wb camera, --ccm
  camera); other RAW input with grey-world white balance; --wb and --ccm override.

OUTPUT: .png (or another image format: 16-bit in .png/.tif/.ppm for a 16-bit or float
input) or .npy (float32 tone-encoded RGB in [0, 1]), by the extension, written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gputrack.commands.args import (
    add_isp_options,
    bayer_pattern,
    bit_depth,
    check_sensor_bit_depth,
    check_sensor_ccm,
    isp_choices,
    non_negative_int,
    seed,
    size_wxh,
    stated_colour,
    white_balance,
)
from gputrack.device import CHOICES, get_backend
from gputrack.errors import GputrackError, UsageError
from gputrack.isp.params import DEFAULT_WB, DEMOSAIC_METHODS, IspParams, demosaic_only
from gputrack.isp.pipeline import IspPipeline
from gputrack.isp.quality import round_trip_cpsnr
from gputrack.opencv_files import read_rgb
from gputrack.outputs.files import (
    OutputFile,
    is_stdout,
    refuse_overwriting_inputs,
    write_image,
)
from gputrack.outputs.sinks import check_output_path
from gputrack.sensor import model
from gputrack.sensor.frame import RawFrame

RAW_EXTS = {".raw", ".dng"}
IMAGE_OUT_EXTS = {".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".ppm", ".webp"}
# Formats that hold 16 bits: a 16-bit input is written at 16 bits there, not cut to 8
SIXTEEN_BIT_EXTS = {".png", ".tif", ".tiff", ".ppm"}
BORDER = 8


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "isp",
        help="run an image through the sensor model and the ISP, or a RAW frame through the ISP",
        description="RGB image -> sensor model -> RAW -> ISP -> image, or RAW file -> ISP -> "
        "image. Reports the round-trip CPSNR for RGB inputs with --json.",
    )
    p.add_argument("input", metavar="INPUT", help="RGB image, or RAW (.raw, uint16 .npy, .dng)")
    p.add_argument(
        "--out", required=True, metavar="OUTPUT", help="output image (.png, .tif, .jpg ...) or .npy"
    )
    p.add_argument("--backend", default="auto", choices=CHOICES, help="default: auto")
    p.add_argument(
        "--demosaic",
        default="mhc",
        choices=DEMOSAIC_METHODS,
        metavar="METHOD",
        help=f"{' | '.join(DEMOSAIC_METHODS)} (default mhc; directional: edge-directed, "
        "the highest quality)",
    )
    p.add_argument(
        "--pattern",
        type=bayer_pattern,
        default=None,
        metavar="PATTERN",
        help="Bayer pattern RGGB | GRBG | GBRG | BGGR (default RGGB, or the RAW file name's)",
    )
    p.add_argument(
        "--bit-depth",
        type=bit_depth,
        default=None,
        metavar="N",
        help="bit depth: of the sensor model for an RGB input, 10 | 12 | 14 (default 12); of "
        "a .raw or .npy RAW file, 8, 10, 12, 14 or 16 (default: the file name's, else 12); a "
        "DNG or camera RAW states its own",
    )
    p.add_argument(
        "--black-level",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="black level (default: 64 at 10 bits, 256 at 12, 1024 at 14 for the "
        "sensor model; 0 for RAW files)",
    )
    p.add_argument(
        "--wb",
        type=white_balance,
        default=None,
        metavar="auto|camera|R,G,B",
        help="white balance: grey world, the gains a DNG or camera RAW states as shot, or "
        "fixed gains (default: camera where stated, else auto for RAW input; "
        f"{','.join(f'{g:g}' for g in DEFAULT_WB)} for the sensor model)",
    )
    add_isp_options(p)
    p.add_argument("--noise", action="store_true", help="add shot and read noise (sensor model)")
    p.add_argument(
        "--seed", type=seed, default=None, help="noise seed (default 0; with --noise)"
    )
    p.add_argument(
        "--stages",
        default="full",
        choices=("full", "demosaic"),
        help="full chain (default), or demosaic only (the benchmark setting)",
    )
    p.add_argument(
        "--size", type=size_wxh, default=None, metavar="WxH", help="size of a headerless .raw"
    )
    p.add_argument("--json", action="store_true", help="print what was done as one JSON object")
    p.set_defaults(func=run)


def _is_raw_input(path: Path) -> bool:
    ext = path.suffix.lower()
    if ext in RAW_EXTS:
        return True
    if ext == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise GputrackError(f"{path}: not a readable .npy array ({err})") from None
        raw = arr.dtype.kind == "u" and arr.dtype.itemsize == 2  # either byte order
        # uint16 H x W x 3 is a 16-bit RGB image (a RAW frame is at least 4 wide, not 3)
        if raw:
            stacked = arr.ndim == 3 and arr.shape[-1] != 3
        else:
            stacked = arr.ndim == 4 and arr.shape[-1] == 3
        if stacked:
            raise UsageError(
                f"{path}: holds {arr.shape[0]} frames; isp takes one (gputrack run reads them "
                "all)"
            )
        return raw and arr.ndim == 2
    from gputrack.sensor.sources import CAMERA_RAW_EXTS

    return ext in CAMERA_RAW_EXTS


def _read_rgb(path: Path) -> tuple[np.ndarray, list[str]]:
    """The RGB image as a viewer shows it (EXIF orientation applied, 8 or 16 bits, or float
    linear light), with notes on what it leaves out (transparency)."""
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
        unsigned = arr.dtype.kind == "u" and arr.dtype.itemsize in (1, 2)
        if arr.ndim != 3 or arr.shape[2] != 3 or not (unsigned or arr.dtype.kind == "f"):
            raise GputrackError(
                f"{path}: array {arr.dtype.str}{list(arr.shape)} is neither RAW (uint16 HxW) "
                "nor RGB (uint8/uint16/float HxWx3)"
            )
    got = read_rgb(path, floats=True)  # a big-endian .npy (>u2) comes in native order
    if got is None:
        raise GputrackError(f"{path}: not an image OpenCV can read")
    image, notes = got
    if image.dtype.kind == "f":
        image = _linear_scene(path, image, notes)
    return image, notes


def _linear_scene(path: Path, image: np.ndarray, notes: list[str]) -> np.ndarray:
    """A float image is linear light, as the sensor model takes it (0 black, 1.0 the sensor's
    white): what lies outside [0, 1] clips there, as an HDR scene's highlights do on a
    sensor, which the notes say."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    if not np.isfinite(image).all():
        raise GputrackError(f"{path}: holds NaN or infinite values (a float image is linear "
                            "light: 0 black, 1.0 white)")  # fmt: skip
    outside = float(np.mean(((image < 0) | (image > 1)).any(axis=2)))
    if outside:
        notes.append(f"{path}: float linear light from {image.min():.4g} to {image.max():.4g}; "
                     f"{100 * outside:.3g} % of its pixels lie outside [0, 1] and clip at the "
                     "sensor's black or white level")  # fmt: skip
    return image


def _read_raw(path: Path, args: argparse.Namespace) -> RawFrame:
    from gputrack.sensor.sources import open_source

    with open_source(
        str(path),
        size=args.size,
        bit_depth=args.bit_depth,
        pattern=args.pattern,
        black_level=args.black_level,
    ) as src:
        frame = next(iter(src), None)
    if frame is None or frame.raw is None:
        raise GputrackError(f"{path}: holds no RAW frame")
    return frame.raw


def _written(out: Path, rgb8: np.ndarray, rgbf: np.ndarray, sixteen: bool) -> np.ndarray:
    """The image as the output file holds it: float32 for .npy, 16 bits for a 16-bit (or
    float) input where the format holds them, else the ISP's 8-bit image."""
    ext = out.suffix.lower()
    if ext == ".npy":
        return rgbf
    if sixteen and ext in SIXTEEN_BIT_EXTS:
        return np.rint(np.clip(rgbf, 0.0, 1.0) * 65535.0).astype(np.uint16)
    return rgb8


def _write(out: Path, image: np.ndarray) -> None:
    if out.suffix.lower() == ".npy":
        with OutputFile(out, "--out") as f:  # write errors name the file
            np.save(f, image)
    else:
        write_image(out, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), "--out")


def _depth_of(src: Path) -> str:
    """An RGB input's bit depth in words, for a message (the image is read only then)."""
    try:
        return f"{_read_rgb(src)[0].dtype.itemsize * 8}-bit"
    except GputrackError:
        return "at its own bit depth"


def _refuse_options_that_do_not_apply(args: argparse.Namespace, src: Path, is_raw: bool) -> None:
    """An option this input or stage would ignore is a usage error, not a silent no-op."""
    if args.size is not None and src.suffix.lower() != ".raw":
        raise UsageError(f"--size applies to headerless .raw input, not to {src}")
    if args.seed is not None and not args.noise:
        raise UsageError("--seed sets the sensor model's noise: it applies with --noise")
    if is_raw and args.noise:
        raise UsageError("--noise applies to RGB inputs (the sensor model), not RAW files")
    if args.stages == "demosaic":
        # From the options themselves, not isp_choices: that leaves out --ccm camera
        # (resolved from the file), which this stage would ignore as well
        colour = (("--ccm", args.ccm), ("--tone", args.tone),
                  ("--lens-shading", args.lens_shading), ("--wb", args.wb))  # fmt: skip
        given = [o for o, v in colour if v is not None]
        if given:
            raise UsageError(
                f"{', '.join(given)} {_verb(given)} to --stages full (the demosaicing "
                "benchmark uses "
                "the identity matrix, a linear tone, no shading and no white balance)"
            )
        if not is_raw:  # `is not None`: --black-level 0 is given too
            sensor = (("--noise", args.noise or None), ("--bit-depth", args.bit_depth),
                      ("--black-level", args.black_level))  # fmt: skip
            given = [o for o, v in sensor if v is not None]
            if given:
                raise UsageError(
                    f"{', '.join(given)} {_verb(given)} to --stages full: with --stages "
                    "demosaic the "
                    f"image is only mosaicked as given ({_depth_of(src)}, no black level, no "
                    "noise)"
                )


def _check_sensor_values(args: argparse.Namespace) -> None:
    """The user's values the sensor model (an RGB input, full chain) cannot take: usage errors
    now, before any work, as a value out of range anywhere else (not exit 1 later)."""
    check_sensor_bit_depth(args.bit_depth)
    depth = 12 if args.bit_depth is None else args.bit_depth
    white = (1 << depth) - 1
    if args.black_level is not None and args.black_level >= white:
        raise UsageError(f"--black-level {args.black_level}: {depth}-bit data takes a black "
                         f"level from 0 to {white - 1}, below its white level")  # fmt: skip
    if isinstance(args.ccm, tuple):  # 'camera' is refused for RGB input by stated_colour
        check_sensor_ccm(IspParams(ccm=args.ccm))


def run(args: argparse.Namespace) -> int:
    src, out = Path(args.input), Path(args.out)
    if not src.exists():
        raise GputrackError(f"input '{src}' not found")
    if src.is_dir():
        raise UsageError(f"{src}: a folder; isp takes one file (gputrack run reads folders)")
    if out.suffix.lower() not in IMAGE_OUT_EXTS | {".npy"}:
        if str(out).startswith("/dev/") or (out.exists() and not out.is_file()):
            # A descriptor, device or FIFO has no extension to name the format by: a link
            # with one leads there (the summary then goes to stderr)
            raise UsageError(
                f"--out {out}: the format comes from the extension (.png, .npy, ...), which "
                f"{out} lacks; give a name with one that leads there (ln -s {out} o.png; "
                "--out o.png)"
            )
        known = ", ".join(sorted(IMAGE_OUT_EXTS | {".npy"}))
        raise UsageError(f"--out {out}: unknown format (use one of {known})")
    # A folder, a missing folder, an unwritable one: usage errors (exit 2), as run's outputs.
    check_output_path("--out", args.out, image=out.suffix.lower() != ".npy")
    refuse_overwriting_inputs({"input": src}, {"--out": out})
    is_raw = _is_raw_input(src)
    _refuse_options_that_do_not_apply(args, src, is_raw)
    if not is_raw and args.stages == "full":
        _check_sensor_values(args)
    chosen = isp_choices(args)
    backend = get_backend(args.backend, verbose=True)
    info: dict[str, Any] = {
        "input": str(src),
        "output": str(out),
        "backend": backend.name,
        "stages": args.stages,
        "demosaic": args.demosaic,
    }
    t0 = time.perf_counter()

    stated_ccm = False  # the colour matrix is the one the file states
    notes: list[str] = []  # what the user should know about the input or the output
    if is_raw:
        raw = _read_raw(src, args)
        if args.stages == "demosaic":
            params = demosaic_only(raw.pattern, raw.bit_depth, args.demosaic)
        else:
            colour = stated_colour(args, raw, str(src), "auto")
            stated_ccm = "ccm" in colour
            params = IspParams(demosaic=args.demosaic, **colour, **chosen)
        info["kind"] = "raw"
        image = None
    else:
        image, notes = _read_rgb(src)
        h, w = image.shape[:2]
        if h % 2 or w % 2:
            raise GputrackError(
                f"{src}: image size {w}x{h} is odd; a Bayer sensor needs even width and height"
            )
        if h < 4 or w < 4:
            raise GputrackError(f"{src}: image size {w}x{h}: at least 4x4 pixels")
        pattern = args.pattern or "RGGB"
        if args.stages == "demosaic":
            if image.dtype.kind == "f":
                raise GputrackError(f"{src}: --stages demosaic mosaics the image as given and "
                                    "needs 8 or 16 bits, not float")  # fmt: skip
            raw = model.mosaic_only(image, pattern)
            params = demosaic_only(pattern, raw.bit_depth, args.demosaic)
        else:
            depth = 12 if args.bit_depth is None else args.bit_depth
            params = IspParams(
                pattern=pattern,
                bit_depth=depth,
                black_level=args.black_level,
                demosaic=args.demosaic,
                **stated_colour(args, None, str(src), DEFAULT_WB),
                **chosen,
            )
            sensor = model.SensorModel(
                model.SensorParams(isp=params, noise=args.noise, seed=args.seed or 0), backend
            )
            raw = sensor.render(image)
        info["kind"] = "rgb"
        info["noise"] = bool(args.noise)

    raw.check_values()
    isp = IspPipeline(params, backend, float_output=True)
    result = isp.process(raw)
    elapsed = time.perf_counter() - t0
    deep = image is not None and image.dtype != np.uint8  # 16-bit or float input
    written = _written(out, result.rgb8, result.rgb, deep)
    if deep and written.dtype == np.uint8:
        bits = "16-bit" if image.dtype == np.uint16 else "float"
        notes.append(f"{src} is {bits}; {out.suffix} holds 8 bits, so the output is 8-bit "
                     "(.png, .tif, .ppm or .npy keep the precision)")  # fmt: skip
    _write(out, written)

    info.update(
        width=raw.width,
        height=raw.height,
        pattern=raw.pattern,
        bit_depth=raw.bit_depth,
        black_level=raw.black_level,
        white_level=raw.white_level,
    )
    if result.gains is not None:
        info["wb_gains"] = [round(float(g), 5) for g in result.gains]
    # A stated matrix comes through LibRaw in float32: its noise (1.6999361515045166) is not
    # what the file states, so 6 decimals; the user's own numbers are printed as given
    info["ccm"] = [[round(v, 6) if stated_ccm else v for v in row] for row in params.ccm]
    info["tone"] = params.tone
    info["lens_shading"] = list(params.lens_shading)
    said = ""  # the round trip's quality in words, for the text line
    if image is not None:
        # What was written against the input, on the 8-bit scale: a 16-bit input's figure
        # must not describe float values that an 8-bit file no longer holds. A float input
        # is linear light: what a perfect sensor and ISP make of it is its tone-encoded value
        if image.dtype == np.uint8:
            ref = image
        elif image.dtype == np.uint16:  # float32 (exact enough) spares memory at 48 MP
            ref = image * np.float32(1 / 257.0)
        else:
            lut = params.tone_lut()
            ref = np.interp(np.clip(image, 0, 1), np.linspace(0, 1, lut.size), lut) * 255.0
        scale = {np.dtype(np.uint8): 1.0, np.dtype(np.uint16): 1 / 257.0}
        got = result.rgb8 if image.dtype == np.uint8 else (
            written * np.float32(scale.get(written.dtype, 255.0)))
        db, border = round_trip_cpsnr(got, ref, BORDER)
        # An exact round trip (every pixel) has infinite CPSNR, which JSON cannot hold: null,
        # and say so; cpsnr_border_px says which pixels a finite figure covers
        info["cpsnr_db"] = round(db, 3) if np.isfinite(db) else None
        info["exact"] = bool(not np.isfinite(db))
        info["cpsnr_border_px"] = border
        said = _quality_words(db, border, min(image.shape[:2]) > 2 * BORDER)
    info["output_bits"] = 32 if written.dtype == np.float32 else written.itemsize * 8
    info["notes"] = notes
    info["seconds"] = round(elapsed, 4)
    # Not into the image when --out leads to stdout (a link named o.png to /dev/stdout)
    stream = sys.stderr if is_stdout(out) else sys.stdout
    if args.json:
        stream.write(json.dumps(info) + "\n")
    else:
        for note in notes:
            sys.stderr.write(f"gputrack isp: note: {note}\n")
        stream.write(
            f"{out}: {raw.width}x{raw.height} {raw.pattern} {raw.bit_depth}-bit, "
            f"{args.stages}, {args.demosaic}, {backend.name}{said}\n"
        )
    return 0


def _quality_words(db: float, border: int, has_inside: bool) -> str:
    """The round trip's CPSNR for the text line, saying which pixels it covers."""
    if not np.isfinite(db):
        return ", exact round trip"
    if border:
        return f", CPSNR {db:.2f} dB ({border}-pixel border excluded)"
    if has_inside:  # round_trip_cpsnr dropped the border: the inside alone is exact
        return f", CPSNR {db:.2f} dB (whole image; exact inside the {BORDER}-pixel border)"
    return f", CPSNR {db:.2f} dB (whole image)"


def _verb(options: list[str]) -> str:
    """'applies' after one option, 'apply' after several."""
    return "applies" if len(options) == 1 else "apply"
