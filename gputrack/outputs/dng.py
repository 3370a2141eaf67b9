"""The RAW output mode: the whole RAW frame, as the IMX500 can send it, written as DNG.

Each frame's Bayer mosaic goes into one DNG file (pidng writes it: 16-bit samples, not
compressed) with what a raw developer needs to read it as gputrack's ISP does: pattern, bit
depth, black and white level, the white balance of that frame (`AsShotNeutral`, the
reciprocal of the ISP's gains) and the colour matrix (`ColorMatrix1`, XYZ to camera RGB: the
inverse of the ISP's colour matrix after XYZ to linear sRGB, D65). rawpy, LibRaw, darktable
and Lightroom read them; so do gputrack's own sources (`gputrack run FOLDER`, `gputrack isp
FILE.dng`), bit-identical. Given the run's frame rate, a file also states it (CinemaDNG's
`FrameRate`), which rawpy does not read but gputrack's source does (through tifffile).

A frame read out through a window (`run --roi`) states where the window lies on the sensor
and the sensor's whole size, so that its playback maps boxes back to the sensor's pixels as
the run did. No DNG or TIFF tag means that (`ActiveArea` and `DefaultCropOrigin`/`Size` are
areas inside the stored image, which here is the window alone; TIFF's `XPosition` is a page
offset in resolution units), so it is a line of the `ImageDescription`, versioned
(`window_line`, `read_window`):

    gputrack-window/1 roi=X,Y,W,H sensor=WxH

X, Y, W, H the window in sensor pixels (the --roi syntax; W x H is the image's own size),
the sensor W x H; decimal, even offsets and sides. A frame without a window writes no line.

`RawRecorder` writes a recording: `FOLDER/frame_NNNNNN.dng`, numbered as the track log's
frames, each file complete before it has its name (a killed run keeps every frame written).
Played back, each frame keeps the number of its name, so the logs line up, gaps included.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from contextlib import suppress
from fractions import Fraction
from pathlib import Path

import numpy as np

from gputrack.errors import GputrackError, UsageError
from gputrack.outputs.files import OutputFile
from gputrack.sensor.frame import RawFrame
from gputrack.sensor.roi import Roi

# XYZ (D65) -> linear sRGB, IEC 61966-2-1
XYZ_TO_SRGB = np.array(
    [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]
)
_DENOMINATOR = 1_000_000  # rationals to 1e-6: far finer than any gain or matrix entry needs
FRAME_NAME = "frame_{:06d}.dng"
# LibRaw 0.21 (rawpy, darktable) refuses a DNG with a side under 22 pixels (measured)
MIN_DNG_SIDE = 22
# How far a green gain or a matrix row's sum may be from 1 (a row normalised by a developer
# moves by as much: a thousandth is under a third of an 8-bit step)
_STATED_TOLERANCE = 1e-3
# A windowed frame's place on the sensor: one line of the ImageDescription (module docstring)
WINDOW_PREFIX = "gputrack-window/"
WINDOW_VERSION = 1
_WINDOW_V1 = re.compile(r"roi=([0-9]+),([0-9]+),([0-9]+),([0-9]+) sensor=([0-9]+)x([0-9]+)")
_WINDOW_FORM = f"{WINDOW_PREFIX}{WINDOW_VERSION} roi=X,Y,W,H sensor=WxH"


def _rationals(values: Sequence[float]) -> list[list[int]]:
    return [[round(float(v) * _DENOMINATOR), _DENOMINATOR] for v in values]


def frame_rate_rational(fps: float) -> tuple[int, int]:
    """`fps` as CinemaDNG's FrameRate (a signed 32-bit rational): the simplest fraction within
    1e-6 of it, so 29.97 is 2997/100 and NTSC's 29.97002997... is 30000/1001, read back as
    the same float."""
    rate = float(fps)
    f = Fraction(rate).limit_denominator(_DENOMINATOR) if math.isfinite(rate) else Fraction(0)
    if rate <= 0 or not 0 < f.numerator < 2**31:
        raise GputrackError(f"frame rate {fps!r}: a DNG cannot state it (a positive fraction "
                            "of 32-bit numbers, to 1e-6)")  # fmt: skip
    return f.numerator, f.denominator


def window_line(window: Roi, sensor_size: tuple[int, int]) -> str:
    """The ImageDescription line that states a frame's window on a `sensor_size` sensor."""
    return f"{WINDOW_PREFIX}{WINDOW_VERSION} roi={window} sensor={sensor_size[0]}x{sensor_size[1]}"


def read_window(description: str) -> tuple[Roi, tuple[int, int]] | None:
    """The window and sensor size an ImageDescription states (`window_line`); None when it
    states none. A line that claims a window but cannot be read (another version, a malformed
    or impossible window) is an error, not "no window": that would put every box off by the
    window's corner."""
    lines = [line for line in description.splitlines() if line.startswith(WINDOW_PREFIX)]
    if not lines:
        return None
    if len(lines) > 1:
        raise GputrackError(f"states its readout window {len(lines)} times")
    line = lines[0]
    version, _, rest = line[len(WINDOW_PREFIX) :].partition(" ")
    if version != str(WINDOW_VERSION):
        raise GputrackError(f"states its readout window as '{line}', a form this gputrack "
                            f"does not read (it reads '{_WINDOW_FORM}')")  # fmt: skip
    m = _WINDOW_V1.fullmatch(rest)
    if m is None:
        raise GputrackError(f"states its readout window as '{line}', not as '{_WINDOW_FORM}'")
    x, y, w, h, sw, sh = (int(v) for v in m.groups())
    try:
        window = Roi(x, y, w, h)
        window.check_inside(sw, sh, "the sensor")
    except GputrackError as err:
        raise GputrackError(f"states an impossible readout window '{line}': {err}") from None
    return window, (sw, sh)


def dng_bytes(
    raw: RawFrame,
    wb_gains: Sequence[float],
    ccm: np.ndarray,
    description: str = "",
    fps: float | None = None,
) -> bytes:
    """One frame as a DNG file's bytes. `wb_gains`: the R, G, B gains the ISP applied (fixed
    or measured on this frame); `ccm`: its 3x3 camera RGB -> linear sRGB matrix; `fps`: the
    stream's frame rate (CinemaDNG's FrameRate tag), None to state none. A windowed frame
    (`raw.window`) states its window in a line after the description."""
    from pidng.core import RAW2DNG
    from pidng.defs import CalibrationIlluminant, CFAPattern, PhotometricInterpretation
    from pidng.dng import DNGTags, Tag

    gains = np.asarray(wb_gains, dtype=np.float64)
    if gains.shape != (3,) or not np.all(np.isfinite(gains)) or np.any(gains <= 0):
        raise GputrackError(f"white balance gains {list(gains)}: three positive numbers")
    try:
        camera_from_xyz = np.linalg.inv(np.asarray(ccm, dtype=np.float64)) @ XYZ_TO_SRGB
    except np.linalg.LinAlgError:
        raise GputrackError("the colour matrix is singular: a DNG needs its inverse") from None
    text = description or f"frame {raw.index}"
    if WINDOW_PREFIX in text:  # the playback would read it as the window
        raise GputrackError(f"description {text!r}: '{WINDOW_PREFIX}' is for the window line")
    if raw.window is not None and raw.sensor_size is not None:
        text += "\n" + window_line(raw.window, raw.sensor_size)
    h, w = raw.data.shape
    # Samples stored as 16 bits whatever the depth (the white level states it): pidng 4.0.9's
    # 14-bit packing is broken, and unpacked samples cost a live recording no packing time.
    tags = DNGTags()
    for tag, value in [
        (Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.TileWidth, w), (Tag.TileLength, h),
        (Tag.Orientation, 1),
        (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
        (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 16),
        (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, getattr(CFAPattern, raw.pattern)),
        (Tag.BlackLevel, int(raw.black_level)), (Tag.WhiteLevel, int(raw.white_level or 0)),
        (Tag.ColorMatrix1, _rationals(camera_from_xyz.ravel())),
        (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
        (Tag.AsShotNeutral, _rationals(gains[1] / gains)),
        (Tag.Make, "gputrack"), (Tag.Model, "sensor emulation"),
        (Tag.UniqueCameraModel, "gputrack sensor emulation"),
        (Tag.ImageDescription, text),
    ]:  # fmt: skip
        tags.set(tag, value)
    if fps is not None:
        tags.set(Tag.FrameRate, [list(frame_rate_rational(fps))])
    writer = RAW2DNG()
    writer.options(tags, path="", compress=False)
    return bytes(writer.convert(np.ascontiguousarray(raw.data, dtype=np.uint16)))


def unstated_colour(
    wb_gains: Sequence[float] | None, ccm: Sequence[Sequence[float]] | None
) -> str | None:
    """Why a DNG cannot state this white balance or colour matrix so that it develops into
    the ISP's image (None: it can). A DNG states white balance relative to green
    (`AsShotNeutral`), and raw developers, LibRaw included, scale each row of the colour
    matrix so that white stays white: a green gain other than 1, or a matrix whose rows do
    not each sum to 1, would play back into another image."""
    if wb_gains is not None and abs(float(wb_gains[1]) - 1.0) > _STATED_TOLERANCE:
        return (f"--wb {','.join(f'{g:g}' for g in wb_gains)}: a DNG states white balance "
                "relative to green; give gains with G = 1")  # fmt: skip
    if ccm is not None:
        sums = np.asarray(ccm, dtype=np.float64).sum(axis=1)
        if np.any(np.abs(sums - 1.0) > _STATED_TOLERANCE):
            rows = ", ".join(f"{v:g}" for v in sums)
            return (f"--ccm: its rows sum to {rows}; a DNG's colour matrix keeps white white, "
                    "so give one whose rows each sum to 1")  # fmt: skip
    return None


def check_raw_folder(folder: str | Path, option: str = "--raw") -> Path:
    """Before any work: `folder` exists or can be made (its parent exists), is a folder, and
    holds no frames: no recording this one would write over, no other file its playback
    would read as one (notes and hidden files may stay)."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {folder}: not a folder (a recording is one DNG per frame)")
    if not path.exists() and not path.parent.is_dir():
        raise UsageError(f"{option} {folder}: its folder {path.parent} does not exist")
    if path.is_dir():
        earlier = sorted(path.glob("frame_*.dng"))
        if earlier:
            raise UsageError(
                f"{option} {folder}: holds a recording already ({earlier[0].name} and "
                f"{len(earlier) - 1} more); writing this one there would lose it"
            )
        # A recording is played back as the folder's frames: any other file a folder source
        # reads (images, a camera's DNGs) would be read with it, or make it unreadable.
        # (imported here: the sources import this module for the recording's file names)
        from gputrack.sensor.sources.base import FOLDER_FRAME_EXTS

        frames = sorted(p.name for p in path.iterdir()
                        if p.suffix.lower() in FOLDER_FRAME_EXTS and not p.name.startswith("."))
        if frames:
            more = f" and {len(frames) - 1} more" if len(frames) > 1 else ""
            raise UsageError(f"{option} {folder}: holds {frames[0]}{more}, which its playback "
                             "would read as frames; give the recording a folder of its own")
    return path


class RawRecorder:
    """`RawRecorder(folder, fps=...).write(raw, gains, ccm)` once per frame:
    `frame_NNNNNN.dng`, each stating `fps` (the run's frame rate; None: no rate stated)."""

    def __init__(self, folder: str | Path, option: str = "--raw",
                 fps: float | None = None) -> None:  # fmt: skip
        self.folder = check_raw_folder(folder, option)
        self.option = option
        self.frames = 0
        if fps is not None:
            frame_rate_rational(fps)  # a rate no DNG can state: said before any frame
        self.fps = fps
        try:
            import pidng.core  # noqa: F401  (said now, not after the first frame's work)
        except ImportError:
            raise GputrackError(
                f"{option}: writing DNG needs pidng (pip install pidng)"
            ) from None
        self._made = not self.folder.exists()  # removed again if no frame is written
        try:
            self.folder.mkdir(exist_ok=True)
        except OSError as err:
            raise GputrackError(f"{option} {folder}: cannot make it ({err.strerror})") from None

    def close(self) -> None:
        """A folder this recorder made and wrote no frame into goes again (a run stopped
        before its first frame leaves nothing behind, as the other outputs do)."""
        if self._made and self.frames == 0:
            with suppress(OSError):  # something else put a file there: it stays
                self.folder.rmdir()

    def unwrite(self, path: Path) -> None:
        """Take back a frame written (`write`'s path): its frame did not finish elsewhere."""
        with suppress(OSError):
            path.unlink()
            self.frames -= 1

    def write(self, raw: RawFrame, wb_gains: Sequence[float], ccm: np.ndarray, index: int) -> Path:
        """Frame `index` (the track log's frame number), complete before it has its name."""
        path = self.folder / FRAME_NAME.format(index)
        data = dng_bytes(raw, wb_gains, ccm, description=f"gputrack frame {index}",
                         fps=self.fps)  # fmt: skip
        with OutputFile(path, self.option) as f:
            f.write(data)
        self.frames += 1
        return path
