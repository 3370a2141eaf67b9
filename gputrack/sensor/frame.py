"""The RAW frame: what the sensor reads out, and the type at the sensor/ISP seam."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gputrack.errors import GputrackError
from gputrack.sensor.roi import Roi

BAYER_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")
BIT_DEPTHS = (8, 10, 12, 14, 16)
# Frame rates a source may claim: from one frame in 10 s (time lapse) to 1000 fps. Beyond
# them the tracker's frame counts and a video writer's timing make no sense.
MIN_FPS, MAX_FPS = 0.1, 1000.0


def check_pattern(pattern: str) -> str:
    """The pattern in upper case, or a clear error."""
    p = str(pattern).upper()
    if p not in BAYER_PATTERNS:
        raise GputrackError(
            f"unknown Bayer pattern '{pattern}' (choose from {', '.join(BAYER_PATTERNS)})"
        )
    return p


def whole_number(what: str, value: object) -> int:
    """`value` as an int if it is a whole number (an int, a NumPy integer or an integral
    float; a bool is not one), else a clear error naming `what`: a level of 256.5 or "256"
    would otherwise be truncated or compared as text somewhere downstream."""
    if not isinstance(value, (bool, np.bool_)):
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return int(value)
    raise GputrackError(f"{what} {value!r}: must be a whole number")


def check_bit_depth(bit_depth: object) -> int:
    """The bit depth as an int, or a clear error unless it is one of BIT_DEPTHS."""
    depth = whole_number("bit depth", bit_depth)
    if depth not in BIT_DEPTHS:
        raise GputrackError(f"bit depth {bit_depth} not supported (choose from {BIT_DEPTHS})")
    return depth


def is_uint16(dtype: object) -> bool:
    """uint16 in either byte order ('>u2' from a big-endian file is as good as '<u2')."""
    dt = np.dtype(dtype)  # type: ignore[call-overload]
    return dt.kind == "u" and dt.itemsize == 2


def check_array(data: object, what: str) -> None:
    """A clear error unless `data` is an array (NumPy, or a backend's device array): a list
    would fail later with an AttributeError that names nothing."""
    if not (hasattr(data, "shape") and hasattr(data, "dtype")):
        raise GputrackError(f"{what} must be an array (NumPy or a device array), got "
                            f"{type(data).__name__}")  # fmt: skip


def check_levels(black: int, white: int, bit_depth: int) -> None:
    """A clear error unless 0 <= black < white < 2**bit_depth."""
    black = whole_number("black level", black)
    white = whole_number("white level", white)
    if not 0 <= black < white < (1 << whole_number("bit depth", bit_depth)):
        raise GputrackError(
            f"black level {black} / white level {white} do not fit {bit_depth}-bit data"
        )


@dataclass
class RawFrame:
    """`uint16[H, W]` Bayer mosaic with its readout description. Even width and height."""

    data: np.ndarray
    pattern: str = "RGGB"
    bit_depth: int = 12
    black_level: int = 0
    white_level: int | None = None  # default: 2**bit_depth - 1
    index: int = 0
    timestamp: float = 0.0
    # What the file states, where it states it (DNG, camera RAW): the white balance gains as
    # shot (R, G, B; G = 1) and the camera's colour matrix (camera RGB -> linear sRGB). The ISP
    # uses them with `--wb camera` / `--ccm camera` (the defaults for such files).
    as_shot_wb: tuple[float, float, float] | None = None
    camera_ccm: tuple[tuple[float, float, float], ...] | None = None
    # A frame read out through a window (`run --roi`, or a recording of such a run): the
    # window in the sensor's pixels and the whole sensor's (width, height). Boxes found in
    # the frame map back through it. None: the frame is the whole sensor.
    window: Roi | None = None
    sensor_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.pattern = check_pattern(self.pattern)
        self.bit_depth = check_bit_depth(self.bit_depth)
        if self.white_level is None:
            self.white_level = (1 << self.bit_depth) - 1
        self.black_level = whole_number("black level", self.black_level)
        self.white_level = whole_number("white level", self.white_level)
        check_array(self.data, "RAW frame data")
        if self.data.ndim != 2:
            raise GputrackError(f"RAW frame must be 2-D (H, W), got shape {self.data.shape}")
        h, w = self.data.shape
        if h % 2 or w % 2:
            raise GputrackError(f"RAW frame size {w}x{h}: width and height must be even")
        if not is_uint16(self.data.dtype):
            raise GputrackError(f"RAW frame must be uint16, got {self.data.dtype}")
        if self.data.dtype != np.uint16:  # the other byte order: every consumer reads native
            self.data = self.data.astype(np.uint16)
        check_levels(self.black_level, self.white_level, self.bit_depth)
        if (self.window is None) != (self.sensor_size is None):
            raise GputrackError("a windowed RAW frame states both its window and the sensor's "
                                "size")  # fmt: skip
        if self.window is not None and self.sensor_size is not None:
            if (self.window.w, self.window.h) != (w, h):
                raise GputrackError(f"RAW frame {w}x{h} is not the size of its window "
                                    f"{self.window}")  # fmt: skip
            self.sensor_size = (int(self.sensor_size[0]), int(self.sensor_size[1]))
            self.window.check_inside(*self.sensor_size, "the sensor")

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    def check_values(self) -> None:
        """A clear error when the data exceeds its declared bit depth."""
        top = int(self.data.max(initial=0))
        if top >= (1 << self.bit_depth):
            raise GputrackError(
                f"RAW data reaches {top}, which exceeds the declared bit depth {self.bit_depth} "
                f"(max {(1 << self.bit_depth) - 1}); pass the right --bit-depth"
            )
