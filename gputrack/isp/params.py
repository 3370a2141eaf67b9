"""ISP parameters: what the ISP does to a RAW frame, independent of how it is run.

Defaults suit a 12-bit RGGB sensor: black level 256, white level 4095, fixed white balance
(R 2.0, G 1.0, B 1.6), a typical colour matrix (rows sum to 1, so grey stays grey), the sRGB
transfer curve, Malvar-He-Cutler demosaicing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from gputrack.errors import GputrackError
from gputrack.sensor.frame import (
    BAYER_PATTERNS,
    check_bit_depth,
    check_levels,
    check_pattern,
    whole_number,
)

DEMOSAIC_METHODS = ("mhc", "bilinear", "directional")
TONE_CURVES = ("srgb", "linear", "gamma2.2")
GAMMA_RANGE = (0.1, 10.0)  # gammaX: the X a tone curve may have
LUT_SIZE = 4097  # samples of the tone curve on [0, 1], linearly interpolated
TONE8_SIZE = 4096  # 12-bit codes of the linear value -> 8-bit output (isp.cu TONE8_N)

# A typical sensor-to-sRGB matrix: rows sum to 1 (grey stays grey), its inverse is positive
# (every in-gamut sRGB colour maps to a physical, non-negative camera response).
DEFAULT_CCM = (
    (1.70, -0.55, -0.15),
    (-0.25, 1.45, -0.20),
    (0.05, -0.60, 1.55),
)
DEFAULT_WB = (2.0, 1.0, 1.6)


def default_black_level(bit_depth: int) -> int:
    """64 at 10 bits, 256 at 12, 1024 at 14 (the same fraction of full scale); 0 at 8 bits."""
    return 0 if bit_depth <= 8 else 64 << (bit_depth - 10)


def pattern_offsets(pattern: str) -> tuple[int, int]:
    """(x, y) of the red site in the 2x2 cell: RGGB (0,0), GRBG (1,0), GBRG (0,1), BGGR (1,1)."""
    return {"RGGB": (0, 0), "GRBG": (1, 0), "GBRG": (0, 1), "BGGR": (1, 1)}[check_pattern(pattern)]


def cfa_channels(pattern: str) -> np.ndarray:
    """int[2, 2]: the colour (0 R, 1 G, 2 B) at each position of the 2x2 cell."""
    rx, ry = pattern_offsets(pattern)
    ch = np.ones((2, 2), dtype=np.int64)
    ch[ry, rx] = 0
    ch[1 - ry, 1 - rx] = 2
    return ch


@dataclass(frozen=True)
class TensorSpec:
    """The network's input: size, letterbox, normalisation `(pixel - mean) * scale`, layout."""

    width: int = 352
    height: int = 352
    letterbox: bool = True  # keep the aspect ratio and pad; False stretches to the size
    pad_value: float = 114.0  # 8-bit units, before normalisation
    resize: str = "area"  # "area" (box filter over the exact footprint) | "bilinear"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # 8-bit units, in output channel order
    scale: tuple[float, float, float] = (1 / 255, 1 / 255, 1 / 255)
    channel_order: str = "RGB"  # or "BGR"
    dtype: str = "float32"  # or "float16"

    def __post_init__(self) -> None:
        for name in ("width", "height"):  # 32.5 or "32" would fail in the middle of a frame
            object.__setattr__(self, name, whole_number(f"tensor {name}", getattr(self, name)))
        if self.width < 1 or self.height < 1:
            raise GputrackError(f"tensor size {self.width}x{self.height} must be positive")
        object.__setattr__(self, "letterbox", check_flag("tensor letterbox", self.letterbox))
        if self.resize not in ("area", "bilinear"):
            raise GputrackError(f"tensor resize '{self.resize}' unknown (area or bilinear)")
        if self.channel_order not in ("RGB", "BGR"):
            raise GputrackError(f"tensor channel order '{self.channel_order}' (RGB or BGR)")
        if self.dtype not in ("float32", "float16"):
            raise GputrackError(f"tensor dtype '{self.dtype}' (float32 or float16)")
        for name in ("mean", "scale"):
            try:
                values = tuple(real_number(v) for v in getattr(self, name))
            except TypeError:
                values = ()
            if len(values) != 3 or not (np.abs(values) <= MAX_VALUE).all():  # NaN fails too
                raise GputrackError(f"tensor {name} {getattr(self, name)!r}: three finite "
                                    f"numbers within +-{MAX_VALUE:g}")  # fmt: skip
            object.__setattr__(self, name, values)
        pad = real_number(self.pad_value)
        if not abs(pad) <= MAX_VALUE:  # NaN fails too
            raise GputrackError(f"tensor pad value {self.pad_value!r}: a finite number within "
                                f"+-{MAX_VALUE:g}")  # fmt: skip
        object.__setattr__(self, "pad_value", pad)

    def geometry(self, src_w: int, src_h: int) -> tuple[int, int, int, int]:
        """(content_w, content_h, pad_x, pad_y): where the resized image sits in the tensor."""
        if not self.letterbox:
            return self.width, self.height, 0, 0
        s = min(self.width / src_w, self.height / src_h)
        cw = max(1, min(self.width, int(round(src_w * s))))
        ch = max(1, min(self.height, int(round(src_h * s))))
        return cw, ch, (self.width - cw) // 2, (self.height - ch) // 2


@dataclass(frozen=True)
class IspParams:
    """Everything the ISP does. `wb="auto"` measures grey-world gains on each frame."""

    pattern: str = "RGGB"
    bit_depth: int = 12
    black_level: int | None = None  # None: default_black_level(bit_depth)
    white_level: int | None = None  # None: 2**bit_depth - 1
    # R, G, B gains; "auto" (grey world on each frame); "camera" (the gains the RAW frame
    # states as shot: a DNG's or camera RAW's, resolved per frame by IspPipeline.effective)
    wb: tuple[float, float, float] | str = DEFAULT_WB
    awb_clip: float = 0.95  # grey world ignores 2x2 cells with a pixel above this fraction
    ccm: tuple[tuple[float, ...], ...] = DEFAULT_CCM  # camera RGB -> linear sRGB
    tone: str = "srgb"  # "srgb" | "linear" | "gammaX" (power 1/X)
    lens_shading: tuple[float, float] = (0.0, 0.0)  # gain 1 + k1 r^2 + k2 r^4, r: half-diagonal
    demosaic: str = "mhc"
    nv12: bool = False  # also produce NV12 (BT.709 limited range) for video encoding
    tensor: TensorSpec | None = None  # also produce the network input
    lut: tuple[float, ...] | None = field(default=None, repr=False)  # a custom tone LUT

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", check_pattern(self.pattern))
        object.__setattr__(self, "bit_depth", check_bit_depth(self.bit_depth))
        for name in ("black_level", "white_level"):  # 256.5 would be truncated by `black`
            if getattr(self, name) is not None:
                what = name.replace("_", " ")
                object.__setattr__(self, name, whole_number(what, getattr(self, name)))
        object.__setattr__(self, "nv12", check_flag("nv12", self.nv12))  # "no" is truthy
        if self.tensor is not None and not isinstance(self.tensor, TensorSpec):
            raise GputrackError(f"tensor {self.tensor!r}: a TensorSpec or None")
        if self.demosaic not in DEMOSAIC_METHODS:
            raise GputrackError(
                f"demosaic method '{self.demosaic}' unknown "
                f"(choose from {', '.join(DEMOSAIC_METHODS)})"
            )
        if isinstance(self.wb, str):
            if self.wb not in ("auto", "camera"):
                raise GputrackError(
                    f"white balance '{self.wb}': give three gains, 'auto' or 'camera'"
                )
        else:
            object.__setattr__(self, "wb", check_wb_gains(self.wb))
        clip = real_number(self.awb_clip)
        if not 0 < clip <= 1:  # NaN fails too
            raise GputrackError(f"awb_clip {self.awb_clip!r}: a fraction of white in (0, 1]")
        object.__setattr__(self, "awb_clip", clip)
        object.__setattr__(self, "lens_shading", check_shading(self.lens_shading))
        object.__setattr__(self, "ccm", check_ccm(self.ccm))
        tone_curve(self.tone)  # validates
        if self.lut is not None:
            lut = self.tone_lut()  # validates
            if not isinstance(self.lut, tuple):
                # A tuple, as the other colour parameters: an array would make the parameters
                # unhashable, and the kernel backends key their constants on them.
                object.__setattr__(self, "lut", tuple(lut.tolist()))
        check_levels(self.black, self.white, self.bit_depth)

    @property
    def black(self) -> int:
        return (
            default_black_level(self.bit_depth)
            if self.black_level is None
            else int(self.black_level)
        )

    @property
    def white(self) -> int:
        return (1 << self.bit_depth) - 1 if self.white_level is None else int(self.white_level)

    @property
    def auto_wb(self) -> bool:
        return self.wb == "auto"

    def with_(self, **changes: object) -> IspParams:
        return replace(self, **changes)

    def tone_lut(self) -> np.ndarray:
        """float64[LUT_SIZE]: the tone curve sampled at i / (LUT_SIZE - 1)."""
        if self.lut is not None:
            try:
                lut = np.asarray(self.lut, dtype=np.float64)
            except (TypeError, ValueError):
                raise GputrackError("a custom tone LUT must hold numbers") from None
            if lut.ndim != 1 or not 2 <= lut.size <= LUT_SIZE:
                # isp_main keeps the LUT in shared memory, sized for LUT_SIZE samples
                raise GputrackError(
                    f"a custom tone LUT needs 2 to {LUT_SIZE} samples, got shape {lut.shape}"
                )
            if not (np.abs(lut) <= MAX_VALUE).all():  # NaN fails too
                raise GputrackError(f"a custom tone LUT must hold finite numbers within "
                                    f"+-{MAX_VALUE:g}")  # fmt: skip
            return lut
        return tone_curve(self.tone)(np.linspace(0.0, 1.0, LUT_SIZE))


def srgb_encode(x: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1), linear [0, 1] -> encoded [0, 1]."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def srgb_decode(v: np.ndarray) -> np.ndarray:
    """Inverse of `srgb_encode`."""
    v = np.clip(np.asarray(v, dtype=np.float64), 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, np.power((v + 0.055) / 1.055, 2.4))


# Bounds on the colour parameters: far beyond any real sensor's, and so far inside float32's
# range that no product of them with a pixel overflows (a gain of 1e39 did, on one backend).
MAX_GAIN = 64.0  # white balance gains from 1/64 to 64; the lens shading gain up to 64
MAX_CCM = 16.0  # colour matrix entries within +-16 (real ones stay within +-3)
# A custom tone LUT's samples, and the tensor's mean, scale and pad value: the kernels hold them
# as float32 (a LUT sample of 1e39 became inf there, and the float image NaN).
MAX_VALUE = 1e6


def check_wb_gains(gains: object) -> tuple[float, float, float]:
    """Three white-balance gains R, G, B, each from 1/MAX_GAIN to MAX_GAIN."""
    try:
        wb = tuple(float(g) for g in gains)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        wb = ()
    if len(wb) != 3 or not all(1 / MAX_GAIN <= g <= MAX_GAIN for g in wb):  # NaN fails too
        raise GputrackError(f"white balance gains {gains}: need three numbers from "
                            f"{1 / MAX_GAIN:g} to {MAX_GAIN:g}")  # fmt: skip
    return wb  # type: ignore[return-value]


def check_ccm(matrix: object) -> tuple[tuple[float, ...], ...]:
    """A 3x3 colour matrix with finite entries within +-MAX_CCM."""
    try:
        ccm = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise GputrackError(f"colour matrix {matrix!r}: give 3x3 numbers") from None
    if ccm.shape != (3, 3):
        raise GputrackError(f"colour matrix must be 3x3, got shape {ccm.shape}")
    if not (np.abs(ccm) <= MAX_CCM).all():  # NaN fails too
        raise GputrackError(f"colour matrix {ccm.tolist()}: every entry must be a number "
                            f"within +-{MAX_CCM:g}")  # fmt: skip
    return tuple(tuple(float(v) for v in row) for row in ccm)


def check_shading(k: object) -> tuple[float, float]:
    """(k1, k2) of the shading gain 1 + k1 r^2 + k2 r^4 (r from 0 at the centre to 1 at a
    corner): finite, and the gain positive everywhere (the sensor model divides by it)."""
    try:
        k1, k2 = (float(v) for v in k)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise GputrackError(f"lens shading {k!r}: give two numbers k1, k2") from None
    # The gain's extremes on [0, 1] (x = r^2): the ends, and where k1 + 2 k2 x = 0 inside (a
    # minimum for k2 > 0, a maximum for k2 < 0: (200, -150) peaks at 67.7, (1e6, 62 - 1e6)
    # at 250016 with 63 at the corners, and both had passed).
    t = [0.0, 1.0] + ([-k1 / (2 * k2)] if k2 != 0 and 0 < -k1 / (2 * k2) < 1 else [])
    gains = [1 + k1 * x + k2 * x * x for x in t] if np.isfinite([k1, k2]).all() else [0.0]
    if min(gains) <= 0 or max(gains) > MAX_GAIN:
        raise GputrackError(
            f"lens shading k1={k1:g}, k2={k2:g}: the gain 1 + k1 r^2 + k2 r^4 must stay "
            f"above 0 and at most {MAX_GAIN:g} from the centre (r = 0) to the corners (r = 1)"
        )
    return (k1, k2)


def real_number(value: object) -> float:
    """`value` as a float if it is a real number, else NaN (which every range check
    refuses): text such as "0.9" and bools are not numbers here."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        return math.nan
    try:
        return float(value)
    except OverflowError:  # an int beyond any float
        return math.inf


def check_flag(what: str, value: object) -> bool:
    """`value` if it is a bool (or NumPy's), else a clear error: "no" or 0.5 is not a switch."""
    if not isinstance(value, (bool, np.bool_)):
        raise GputrackError(f"{what} {value!r}: must be True or False")
    return bool(value)


def tone_curve(name: str):
    """The forward curve for a tone name."""
    if not isinstance(name, str):
        raise GputrackError(f"tone curve {name!r} unknown (srgb, linear, gammaX)")
    if name == "srgb":
        return srgb_encode
    if name == "linear":
        return lambda x: np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    if name.startswith("gamma"):
        try:
            g = float(name[5:])
        except ValueError:
            g = 0.0
        # Beyond these the 12-bit table flattens (x^(1/0.01) is 0 below x = 0.0005), and the
        # sensor model could not invert it; no display gamma is anywhere near them.
        if not (GAMMA_RANGE[0] <= g <= GAMMA_RANGE[1]):  # NaN fails too
            raise GputrackError(f"tone curve '{name}': gamma must be from {GAMMA_RANGE[0]:g} "
                                f"to {GAMMA_RANGE[1]:g} (e.g. gamma2.2)")  # fmt: skip
        return lambda x: np.power(np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0), 1 / g)
    raise GputrackError(f"tone curve '{name}' unknown (srgb, linear, gammaX)")


def demosaic_only(pattern: str = "RGGB", bit_depth: int = 8, method: str = "mhc") -> IspParams:
    """The benchmark setting: no black level, unit gains, identity matrix, linear tone."""
    return IspParams(
        pattern=pattern,
        bit_depth=bit_depth,
        black_level=0,
        white_level=(1 << bit_depth) - 1,
        wb=(1.0, 1.0, 1.0),
        ccm=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
        tone="linear",
        demosaic=method,
    )


__all__ = [
    "BAYER_PATTERNS",
    "DEFAULT_CCM",
    "DEFAULT_WB",
    "DEMOSAIC_METHODS",
    "IspParams",
    "LUT_SIZE",
    "TensorSpec",
    "cfa_channels",
    "default_black_level",
    "demosaic_only",
    "pattern_offsets",
    "srgb_decode",
    "srgb_encode",
    "tone_curve",
]
