"""The sensor model: an RGB scene -> what the sensor reads out (a RAW Bayer frame).

It inverts the ISP's own colour steps exactly, so that scene -> sensor -> ISP is the identity
up to demosaicing, noise and quantisation:

    lin  = tone^-1(scene)           uint8/uint16 scenes are tone-encoded (the ISP's curve,
                                    inverted through its own LUT); float scenes are linear
    cam  = diag(1 / wb) @ ccm^-1 @ lin
    v    = cam[colour(x, y)] / shading(x, y)
    e    = max(v, 0) (white - black)                          (digital numbers above black)
    e   += sqrt(K e + (K read_e)^2) z,  z ~ N(0, 1)           (only with noise)
    raw  = clip(floor(e + black + 1/2), 0, white)

A response below 0 (a negative float scene, or a matrix whose inverse has negative entries
taking a saturated colour there) is negative light: no photons, read out at black (the ISP
clips it at 0 anyway); only read noise takes a pixel below black, down to 0, as on a sensor.
K = (white - black) / full_well (DN per electron). z comes from a counter-based hash of
(seed, frame, pixel) - splitmix64, Box-Muller - so NumPy, emu and the GPU draw the same noise.

`--stages demosaic` (`mosaic_only`) skips all of it: the image as given, one channel per site.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gputrack.device.base import Backend
from gputrack.errors import GputrackError
from gputrack.isp.params import IspParams, cfa_channels, pattern_offsets
from gputrack.isp.reference import shading_gain
from gputrack.sensor.frame import RawFrame, check_array, whole_number

_U64 = np.uint64
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class SensorParams:
    """The readout. `from_isp` builds one that inverts a given ISP's colour steps."""

    isp: IspParams = IspParams()
    noise: bool = False
    full_well_e: float = 10000.0  # electrons at the white level
    read_noise_e: float = 3.0  # electrons RMS
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.full_well_e <= 1e9:  # NaN fails too
            raise GputrackError(f"full well {self.full_well_e} electrons: from 1 to 1e9")
        if not 0 <= self.read_noise_e <= 1e6:
            raise GputrackError(f"read noise {self.read_noise_e} electrons: from 0 to 1e6")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise GputrackError(f"noise seed {self.seed!r}: a whole number")
        if self.seed < 0:
            raise GputrackError(f"noise seed {self.seed}: must be >= 0")
        if self.seed > _MASK64:  # hashed as 64 bits: 2**64 + s would be seed s again
            raise GputrackError(f"noise seed {self.seed}: must be below 2**64")

    @property
    def pattern(self) -> str:
        return self.isp.pattern

    @property
    def bit_depth(self) -> int:
        return self.isp.bit_depth

    def with_(self, **changes: Any) -> SensorParams:
        return replace(self, **changes)

    def wb(self) -> tuple[float, float, float]:
        """The illuminant the scene is shot under, as the ISP gains that undo it."""
        # An auto-WB ISP (or one taking a file's gains) has no fixed gains to invert; model a
        # typical daylight sensor.
        if isinstance(self.isp.wb, str):
            return (2.0, 1.0, 1.6)
        return self.isp.wb

    def colour_matrix(self) -> np.ndarray:
        """float64[3, 3]: linear sRGB -> sensor response before white balance."""
        ccm = np.asarray(self.isp.ccm, dtype=np.float64)
        if np.linalg.cond(ccm) > 1e8:  # the scene's colours cannot be recovered from the output
            raise GputrackError(
                f"colour matrix {ccm.round(4).tolist()} is singular (or nearly): the sensor "
                "model cannot invert it to make a RAW frame from an RGB image"
            )
        inv = np.linalg.inv(ccm)
        return np.diag(1.0 / np.asarray(self.wb())) @ inv

    def linear_table(self, levels: int) -> np.ndarray:
        """float64[levels]: the linear value of each code of a tone-encoded scene
        (the inverse of the ISP's tone LUT, linear interpolation in reverse)."""
        lut = self.isp.tone_lut()
        if np.any(np.diff(lut) <= 0):
            raise GputrackError(
                "the tone curve must increase strictly for the sensor model to invert it"
            )
        xs = np.linspace(0.0, 1.0, lut.size)
        return np.interp(np.arange(levels) / (levels - 1.0), lut, xs)

    def noise_gain(self) -> tuple[float, float]:
        """(K in DN per electron, read-noise variance in DN^2)."""
        k = (self.isp.white - self.isp.black) / self.full_well_e
        return k, (k * self.read_noise_e) ** 2


def splitmix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (wrapping arithmetic; `z` is not changed)."""
    z = z + _U64(0x9E3779B97F4A7C15)
    # in place from here on: a frame's noise is a few passes over one array, not ten
    z ^= z >> _U64(30)
    z *= _U64(0xBF58476D1CE4E5B9)
    z ^= z >> _U64(27)
    z *= _U64(0x94D049BB133111EB)
    z ^= z >> _U64(31)
    return z


def frame_key(seed: int, frame: int) -> int:
    """The noise key of one frame: splitmix64(splitmix64(seed) ^ frame), computed once per
    frame (the kernels take it as an argument and hash only the pixel index with it)."""
    with np.errstate(over="ignore"):
        s = splitmix64(np.array([seed & _MASK64], dtype=_U64))
        return int(splitmix64(s ^ np.array([frame & _MASK64], dtype=_U64))[0])


def pixel_hash(seed: int, frame: int, index: np.ndarray) -> np.ndarray:
    """uint64 hash of (seed, frame, pixel index); the kernel computes the same."""
    with np.errstate(over="ignore"):
        return splitmix64(_U64(frame_key(seed, frame)) ^ index.astype(_U64))


def gaussian(seed: int, frame: int, index: np.ndarray) -> np.ndarray:
    """Standard normal numbers by Box-Muller from two 24-bit uniforms of the hash (24 bits, so
    a float32 kernel holds them exactly)."""
    with np.errstate(over="ignore"):
        return gaussian_of_hash(pixel_hash(seed, frame, index))


def gaussian_of_hash(h: np.ndarray) -> np.ndarray:
    """Box-Muller on uint64 hashes (changed in place): the draw the kernels' gt_gaussian makes
    of the same hash."""
    # sqrt(-2 log u1) cos(2 pi u2) with u1 = (h[40:64] + 1) / 2^24 in (0, 1] (log is finite)
    # and u2 = h[16:40] / 2^24, in place; scaling by 2^-24 is exact, so the order is free
    r = (h >> _U64(40)).astype(np.float64)
    r += 1.0
    r *= 1.0 / 16777216.0
    np.log(r, out=r)
    r *= -2.0
    np.sqrt(r, out=r)
    h >>= _U64(16)
    h &= _U64(0xFFFFFF)
    a = h.astype(np.float64)
    a *= 2.0 * np.pi / 16777216.0
    np.cos(a, out=a)
    r *= a
    return r


def check_scene(scene: np.ndarray) -> None:
    check_array(scene, "scene")
    if scene.ndim != 3 or scene.shape[2] != 3:
        raise GputrackError(f"scene must be an RGB image (H, W, 3), got shape {scene.shape}")
    h, w = scene.shape[:2]
    if h % 2 or w % 2:
        raise GputrackError(f"image size {w}x{h}: width and height must be even for a Bayer sensor")
    if h < 4 or w < 4:
        raise GputrackError(f"image size {w}x{h}: at least 4x4 pixels")
    # NaN would become a RAW value of 0 (or anything: the cast is undefined), inf white; a
    # device array is not read back for this.
    if isinstance(scene, np.ndarray) and scene.dtype.kind == "f" and not np.isfinite(scene).all():
        raise GputrackError("scene holds NaN or infinite values: a float scene must be finite "
                            "(linear light, 0 black, 1 white)")  # fmt: skip


def native(scene: Any) -> Any:
    """A host array in the machine's byte order (a '>u2' scene is as good as a '<u2' one, but
    the dtype checks and the kernels know only native types); others as they are."""
    if isinstance(scene, np.ndarray) and not scene.dtype.isnative:
        return scene.astype(scene.dtype.newbyteorder("="))
    return scene


def check_frame(frame: object) -> int:
    """The frame number as an int (it keys the noise), or a clear error."""
    number = whole_number("frame number", frame)
    if not 0 <= number < 1 << 64:
        raise GputrackError(f"frame number {frame}: must be from 0 to 2^64 - 1")
    return number


def scene_linear(scene: np.ndarray, params: SensorParams) -> np.ndarray:
    """float64 linear RGB: uint8/uint16 through the inverse tone table, float as is."""
    if scene.dtype == np.uint8:
        return params.linear_table(256)[scene]
    if scene.dtype == np.uint16:
        return params.linear_table(65536)[scene]
    if scene.dtype.kind == "f":
        return scene.astype(np.float64)
    raise GputrackError(f"scene dtype {scene.dtype} not supported (uint8, uint16 or float)")


def reference(scene: np.ndarray, params: SensorParams, frame: int = 0) -> np.ndarray:
    """The sensor model in float64: uint16[H, W] RAW mosaic."""
    check_scene(scene)
    return _reference(native(scene), params, check_frame(frame))


def _reference(scene: np.ndarray, params: SensorParams, frame: int) -> np.ndarray:
    """`reference` on a scene and frame number already checked (`SensorModel.render` has)."""
    h, w = scene.shape[:2]
    isp = params.isp
    lin = scene_linear(scene, params)
    cfa = cfa_channels(isp.pattern)
    m = params.colour_matrix()
    # One row of the matrix per site: only the sensed channel is ever computed.
    v = np.empty((h, w))
    for py in (0, 1):
        for px in (0, 1):
            v[py::2, px::2] = lin[py::2, px::2] @ m[cfa[py, px]]
    k1, k2 = isp.lens_shading
    if k1 or k2:
        v = v / shading_gain(h, w, k1, k2)
    e = np.maximum(v, 0.0) * float(isp.white - isp.black)  # no negative light
    if params.noise:
        k, read_var = params.noise_gain()
        z = gaussian(params.seed, frame, np.arange(h * w, dtype=np.uint64)).reshape(h, w)
        e = e + np.sqrt(k * e + read_var) * z
    return np.clip(np.floor(e + isp.black + 0.5), 0, isp.white).astype(np.uint16)


def mosaic_only(scene: np.ndarray, pattern: str) -> RawFrame:
    """The demosaicing benchmark's mosaic: the image as given, one channel per site."""
    check_scene(scene)
    scene = native(scene)
    if scene.dtype == np.uint8:
        depth = 8
    elif scene.dtype == np.uint16:
        depth = 16
    else:
        raise GputrackError(f"--stages demosaic needs an 8- or 16-bit image, got {scene.dtype}")
    cfa = cfa_channels(pattern)
    raw = np.empty(scene.shape[:2], dtype=np.uint16)
    for py in (0, 1):
        for px in (0, 1):
            raw[py::2, px::2] = scene[py::2, px::2, cfa[py, px]]
    return RawFrame(
        raw, pattern=pattern, bit_depth=depth, black_level=0, white_level=(1 << depth) - 1
    )


class SensorModel:
    """Runs the sensor model on a backend: `kernels/sensor.cu` where kernels run, else NumPy.

    Device buffers are kept between frames of the same size.
    """

    BLOCK = (64, 4, 1)  # a thread per horizontal pixel pair

    def __init__(self, params: SensorParams, backend: Backend) -> None:
        self.params = params
        self.backend = backend
        self._module = backend.load("sensor.cu") if backend.runs_kernels else None
        self._cfg = None
        self._tables: dict[int, Any] = {}
        self._buffers: dict[str, Any] = {}

    def _config(self) -> Any:
        if self._cfg is None:
            p = self.params
            k, read_var = p.noise_gain() if p.noise else (0.0, 0.0)
            cfg = np.zeros(16, dtype=np.float32)
            cfg[0:9] = p.colour_matrix().ravel()
            cfg[9] = p.isp.black
            cfg[10] = p.isp.white - p.isp.black
            cfg[11] = p.isp.white
            cfg[12] = k
            cfg[13] = read_var
            cfg[14], cfg[15] = p.isp.lens_shading
            self._cfg = self.backend.to_device(cfg)
        return self._cfg

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        buf = self._buffers.get(name)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != np.dtype(dtype):
            buf = self.backend.empty(shape, dtype)
            self._buffers[name] = buf
        return buf

    def render(self, scene: Any, frame: int = 0, download: bool = True) -> RawFrame | Any:
        """RGB scene (host or device array) -> RawFrame (or the device mosaic if not download)."""
        p = self.params
        check_scene(scene)
        scene, frame = native(scene), check_frame(frame)
        if self._module is None:
            host = scene if isinstance(scene, np.ndarray) else self.backend.to_host(scene)
            raw = _reference(host, p, frame)  # checked above: once a frame
            return self.raw_frame(raw, frame) if download else raw
        if isinstance(scene, np.ndarray) and scene.dtype not in (np.uint8, np.float32):
            # A host scene with no kernel of its own (uint16 from a 16-bit image folder, every
            # frame): linear float32 here, not uploaded, downloaded and uploaded again.
            return self.render(scene_linear(scene, p).astype(np.float32), frame, download)
        h, w = scene.shape[:2]
        rx, ry = pattern_offsets(p.pattern)
        dev = self.backend.contiguous(scene)
        out = self._buffer("raw", (h, w), np.uint16)
        grid = (-(-(w // 2) // self.BLOCK[0]), -(-h // self.BLOCK[1]))
        key = frame_key(p.seed, frame)
        common = (
            np.int32(w),
            np.int32(h),
            np.int32(rx),
            np.int32(ry),
            self._config(),
            np.uint32(key & 0xFFFFFFFF),
            np.uint32(key >> 32),
            np.int32(int(p.noise)),
            out,
        )
        if dev.dtype == np.uint8:
            if 256 not in self._tables:
                self._tables[256] = self.backend.to_device(p.linear_table(256).astype(np.float32))
            self._module.kernel("sensor_from_u8")(
                grid, self.BLOCK, (dev, self._tables[256], *common)
            )
        elif dev.dtype == np.float32:
            self._module.kernel("sensor_from_f32")(grid, self.BLOCK, (dev, *common))
        elif dev.dtype == np.uint16 or dev.dtype.kind == "f":
            lin = scene_linear(self.backend.to_host(dev), p).astype(np.float32)
            return self.render(lin, frame, download)
        else:
            raise GputrackError(f"scene dtype {dev.dtype} not supported (uint8, uint16 or float)")
        if not download:
            return out
        return self.raw_frame(self.backend.to_host(out), frame)

    def raw_frame(self, raw: np.ndarray, frame: int) -> RawFrame:
        """A host mosaic this model made, with the readout it was made with."""
        p = self.params.isp
        return RawFrame(
            raw,
            pattern=p.pattern,
            bit_depth=p.bit_depth,
            black_level=p.black,
            white_level=p.white,
            index=frame,
        )
