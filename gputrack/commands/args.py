"""Argument types shared by the verbs: a bad value is caught by argparse, so it is one line
naming the option, with exit code 2, before any work starts."""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from gputrack.errors import GputrackError, UsageError
from gputrack.isp.params import MAX_GAIN, check_ccm, check_shading, check_wb_gains, tone_curve
from gputrack.sensor.frame import BIT_DEPTHS, check_pattern


def bayer_pattern(text: str) -> str:
    try:
        return check_pattern(text)
    except GputrackError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def bit_depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value not in BIT_DEPTHS:
        raise argparse.ArgumentTypeError(
            f"bit depth '{text}' not supported (choose from {', '.join(map(str, BIT_DEPTHS))})"
        )
    return value


SENSOR_BIT_DEPTHS = (10, 12, 14)  # what the sensor model reads out (RAW files: BIT_DEPTHS)


def check_sensor_bit_depth(depth: int | None) -> None:
    """--bit-depth for the sensor model (an RGB input): 10, 12 or 14, else a usage error."""
    if depth is not None and depth not in SENSOR_BIT_DEPTHS:
        raise UsageError(
            f"--bit-depth {depth}: the sensor model reads out "
            f"{', '.join(map(str, SENSOR_BIT_DEPTHS))} bits (RAW files 8, 10, 12, 14 or 16)"
        )


def check_sensor_ccm(isp: Any) -> None:
    """The colour matrix of `isp` (IspParams) inverts for the sensor model (an RGB input),
    else a usage error: the matrix is the user's --ccm."""
    from gputrack.sensor.model import SensorParams

    try:
        SensorParams(isp=isp).colour_matrix()
    except GputrackError as err:
        raise UsageError(f"--ccm: {err}") from None


def _number(text: str) -> float:
    """`text` as a float, NaN when it is not a number (so every range check refuses it)."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number in [0, 1]")
    return value


def finite_float(text: str) -> float:
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:  # NaN fails too
        raise argparse.ArgumentTypeError(f"'{text}' is not a number > 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number >= 1")
    return value


def max_detections(text: str) -> int:
    """--max-det: 1 to MAX_CELLS (the decode keeps at most one candidate per grid cell)."""
    from gputrack.dsp.decode import MAX_CELLS

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_CELLS:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number from 1 to {MAX_CELLS}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number >= 0")
    return value


def seed(text: str) -> int:
    """A generator seed: 0 to 2**64 - 1 (a larger one would wrap onto a smaller one)."""
    value = non_negative_int(text)
    if value > 2**64 - 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a seed from 0 to 2**64 - 1")
    return value


def size_wxh(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        w = h = 0
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size WxH, e.g. 1920x1080")
    return w, h


def int_at_least(low: int, even: bool = False) -> Callable[[str], int]:
    """A type for a whole number >= `low` (`even`: and even, e.g. a Bayer mosaic's side)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (even and value % 2):
            kind = "an even whole number" if even else "a whole number"
            raise argparse.ArgumentTypeError(f"'{text}' is not {kind} >= {low}")
        return value

    return parse


def frame_size(min_side: int) -> Callable[[str], tuple[int, int]]:
    """A type for a Bayer frame's size WxH: both even (whole 2x2 cells) and >= `min_side`."""

    def parse(text: str) -> tuple[int, int]:
        w, h = size_wxh(text)
        if w % 2 or h % 2:
            raise argparse.ArgumentTypeError(
                f"'{text}': width and height must be even for a Bayer sensor"
            )
        if w < min_side or h < min_side:
            raise argparse.ArgumentTypeError(f"'{text}': at least {min_side}x{min_side}")
        return w, h

    return parse


def positive_fraction(text: str) -> float:
    """A number in (0, 1], e.g. an IoU threshold (0 would match boxes that do not overlap)."""
    value = _number(text)
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"'{text}' is not a number in (0, 1]")
    return value


def frame_rate(text: str) -> float:
    """A frame rate the tracker takes: > 0 and at most its limit (PARAM_RANGES['fps'])."""
    from gputrack.track.tracker import PARAM_RANGES

    high = PARAM_RANGES["fps"][1]
    value = _number(text)
    if not 0.0 < value <= high:  # NaN and inf fail too
        raise argparse.ArgumentTypeError(f"'{text}' is not a frame rate > 0 and <= {high:g}")
    return value


def source_frame_rate(text: str) -> float:
    """A frame rate a source takes (MIN_FPS to MAX_FPS)."""
    from gputrack.sensor.sources import MAX_FPS, MIN_FPS

    value = _number(text)
    if not MIN_FPS <= value <= MAX_FPS:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a frame rate from {MIN_FPS:g} to {MAX_FPS:g}"
        )
    return value


def input_file(text: str) -> Path:
    """An existing file to read: a missing one is refused before any work, not after it. A
    pipe or a device passes too (`<(sort r.txt)`, /dev/stdin): such inputs are read once."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a folder, give a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"'{text}': no such file")
    return path


def output_folder(text: str) -> Path:
    """A folder to write into, made later if absent: refused now when it is a file or when
    the nearest existing folder above it cannot be written (nothing is created here)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a file, give a folder")
    existing = path.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}': {existing} is a file, not a folder")
    try:  # really try: permission bits do not tell root about read-only file systems
        tempfile.TemporaryDirectory(dir=existing).cleanup()
    except OSError as err:
        raise argparse.ArgumentTypeError(f"'{text}': cannot write in {existing} "
                                         f"({err.strerror})") from None  # fmt: skip
    return path


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def macro_define(text: str) -> tuple[str, str]:
    """-D NAME[=VALUE] as nvcc and gcc take it: NAME alone defines it to 1."""
    name, eq, value = text.partition("=")
    if not _IDENTIFIER.fullmatch(name):
        raise argparse.ArgumentTypeError(f"'{text}': give NAME or NAME=VALUE, NAME a C identifier")
    return name, value if eq else "1"


class ScriptParser(argparse.ArgumentParser):
    """argparse for scripts/: a bad argument is one line naming it and exit code 2, as the
    gputrack command's parser does (no usage block)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)

    def check_output(self, option: str, path: str | Path | None) -> None:
        """An output file that cannot be written (no such folder, a folder, read-only) is a
        usage error now, before the work whose result it was to hold."""
        from gputrack.outputs.sinks import check_output_path

        try:
            check_output_path(option, None if path is None else str(path))
        except GputrackError as err:
            self.error(str(err))


def colour_matrix(text: str) -> tuple[tuple[float, float, float], ...]:
    """--ccm: 'identity', 'camera' (a DNG's or camera RAW's own matrix), or 9 numbers row by
    row (camera RGB -> linear sRGB)."""
    if text.strip().lower() == "camera":
        return "camera"  # type: ignore[return-value]
    if text.strip().lower() == "identity":
        return ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 9:
        raise argparse.ArgumentTypeError(
            f"'{text}': give 'identity', 'camera' or 9 numbers, the 3x3 colour matrix row by row"
        )
    try:
        return check_ccm([values[3 * r : 3 * r + 3] for r in range(3)])
    except GputrackError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def tone(text: str) -> str:
    """--tone: srgb, linear or gammaX (e.g. gamma2.2), in any case as --wb and --ccm take
    their names."""
    name = text.strip().lower()
    try:
        tone_curve(name)
    except GputrackError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return name


def white_balance(text: str) -> str | tuple[float, float, float]:
    """--wb: 'auto' (grey world), 'camera' (a DNG's or camera RAW's as-shot gains) or R,G,B."""
    if text.strip().lower() in ("auto", "camera"):
        return text.strip().lower()
    try:
        return check_wb_gains(text.split(","))
    except GputrackError:
        raise argparse.ArgumentTypeError(
            f"'{text}': give 'auto', 'camera' or three gains R,G,B from {1 / MAX_GAIN:g} to "
            f"{MAX_GAIN:g}"
        ) from None


def lens_shading(text: str) -> tuple[float, float]:
    """--lens-shading K1,K2: the gain 1 + k1 r^2 + k2 r^4, r from 0 (centre) to 1 (corner)."""
    try:
        return check_shading(tuple(float(v) for v in text.split(",")))
    except (ValueError, GputrackError) as err:
        msg = str(err) if isinstance(err, GputrackError) else f"'{text}': give two numbers K1,K2"
        raise argparse.ArgumentTypeError(msg) from None


def add_isp_options(p: argparse.ArgumentParser) -> None:
    """--ccm, --tone and --lens-shading, for `gputrack isp` and `gputrack run`."""
    p.add_argument(
        "--ccm",
        type=colour_matrix,
        default=None,
        metavar="identity|camera|9 numbers",
        help="colour matrix camera RGB -> linear sRGB, row by row; camera: the one a DNG or "
        "camera RAW states (default: that where stated, else a typical sensor's)",
    )
    p.add_argument(
        "--tone",
        type=tone,
        default=None,
        metavar="srgb|linear|gammaX",
        help="tone curve: sRGB (default), linear, or a power 1/X (e.g. gamma2.2)",
    )
    p.add_argument(
        "--lens-shading",
        type=lens_shading,
        default=None,
        metavar="K1,K2",
        help="lens shading the ISP corrects (and the sensor model applies to RGB input): "
        "gain 1 + K1 r^2 + K2 r^4, r from 0 at the centre to 1 at a corner (default none)",
    )


def isp_choices(args: argparse.Namespace) -> dict[str, Any]:
    """The IspParams fields add_isp_options' flags set (none given: the defaults); a --ccm
    camera is resolved by `stated_colour` instead."""
    given = (("ccm", args.ccm), ("tone", args.tone), ("lens_shading", args.lens_shading))
    return {k: v for k, v in given if v is not None and v != "camera"}


def stated_colour(
    args: argparse.Namespace, raw: Any, input_name: str, default_wb: Any
) -> dict[str, Any]:
    """White balance and colour matrix for IspParams, from --wb and --ccm, where not given
    from what the RAW input states (`raw`: its first RawFrame, None for RGB input: a DNG's or
    camera RAW's gains as shot and the camera's matrix), else `default_wb` and the default
    matrix. 'camera' for an input that states none is a usage error."""
    wb_stated = getattr(raw, "as_shot_wb", None)
    ccm_stated = getattr(raw, "camera_ccm", None)
    for option, value, stated in (("--wb", args.wb, wb_stated), ("--ccm", args.ccm, ccm_stated)):
        if value == "camera" and stated is None:
            what = "white balance as shot" if option == "--wb" else "colour matrix"
            raise UsageError(f"{option} camera: {input_name} states no {what} (a DNG or "
                             "camera RAW file may)")  # fmt: skip
    chosen: dict[str, Any] = {"wb": args.wb if args.wb is not None else (
        "camera" if wb_stated is not None else default_wb)}  # fmt: skip
    if args.ccm == "camera" or (args.ccm is None and ccm_stated is not None):
        chosen["ccm"] = ccm_stated
    return chosen
