"""Running the ISP on a backend: `IspPipeline(params, backend).process(raw) -> IspOutputs`.

On a backend that runs kernels (`cuda`, `pycuda`, `emu`) a frame costs up to three launches
of `kernels/isp.cu` - grey-world statistics (a reduction that resets itself; only with
`wb="auto"`), the fused main pass (RAW -> RGB8 [+ NV12] [+ float RGB]) and the tensor pass -
on device buffers that are allocated once per frame size and reused. The `cpu` backend runs
the NumPy reference (`gputrack.isp.reference`) in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gputrack.device.base import Backend
from gputrack.errors import GputrackError
from gputrack.isp import reference as ref
from gputrack.isp.params import IspParams, pattern_offsets
from gputrack.sensor.frame import RawFrame, check_array, is_uint16

MAIN_BLOCK = (32, 8, 1)  # isp.cu: ISP_BX x ISP_BY, one thread per 2x2 cell
TILE = (64, 16)  # pixels per tile of isp_main (and isp_main_dir) with one cell per thread
CELLS = 2  # isp.cu ISP_CELLS: isp_main's 2x2 cells per thread and tile step, stacked down
STRIP = 2  # isp.cu ISP_STRIP: tiles (of 16 CELLS rows) per block of isp_main, stacked down
TENSOR_BLOCK = (32, 8, 1)  # isp.cu TEN_BX x TEN_BY
AWB_BLOCK = (32, 8, 1)  # isp.cu AWB_BX x AWB_BY
AWB_ROWS = 4  # isp.cu AWB_ROWS: cell rows per thread of isp_awb_stats
# isp_awb_stats' buffer (uint64): this frame's sums R, G, B, cells (read by isp_main and the
# host); the running sums; the count of blocks done. Zero at creation: the kernel's last block
# leaves the running sums and the count at zero again (no clearing launch per frame).
AWB_WORDS = 9


def awb_grid(w: int, h: int, rows: int = AWB_ROWS) -> tuple[int, int]:
    """isp_awb_stats' grid: a thread per 8 pixel columns and `rows` cell rows (2 RAW rows)."""
    bx, by, _ = AWB_BLOCK
    return -(-w // (8 * bx)), -(-(h // 2) // (by * rows))


# isp.cu's tuning knobs (-D defines) and the values it builds with (its static_asserts, and
# a strip of 0 tiles would divide by zero): they change the speed, never the result.
SCHEDULE_RANGES = {
    "ISP_STRIP": (1, 64),
    "ISP_CELLS": (1, 2),
    "ISP_MIN_BLOCKS": (1, 16),
    "ISP_DIRECT_STORE": (0, 1),
    "AWB_ROWS": (1, 16),
}
SCHEDULE_KNOBS = frozenset(SCHEDULE_RANGES)

DEMOSAIC_CODES = {"mhc": 0, "bilinear": 1, "directional": 2}  # isp_main's `method`
# The directional method has its own entry (a wider halo, staged through shared memory), so
# the MHC/bilinear kernel stays as it was.
DIRECTIONAL_KERNEL = "isp_main_dir"


@dataclass
class IspOutputs:
    """The ISP's products for one frame: host arrays, or device arrays with `download=False`."""

    rgb8: Any  # uint8[H, W, 3]
    nv12: Any | None = None  # uint8[H * 3 / 2, W]: Y plane, then interleaved Cb Cr
    tensor: Any | None = None  # float32 or float16 [1, 3, h, w]
    rgb: Any | None = None  # float32[H, W, 3] tone-encoded, before quantisation
    gains: tuple[float, float, float] | None = None  # white balance used (None: not read back)


def check_raw(raw: RawFrame | np.ndarray | Any, what: str = "RAW frame") -> tuple[int, int]:
    """(h, w) of a mosaic, or a clear error: 2-D, even sides, at least 4x4."""
    data = raw.data if isinstance(raw, RawFrame) else raw
    check_array(data, what)
    if len(data.shape) != 2:
        raise GputrackError(f"{what} must be 2-D (H, W), got shape {tuple(data.shape)}")
    h, w = (int(s) for s in data.shape)
    if h % 2 or w % 2:
        raise GputrackError(f"{what} size {w}x{h}: width and height must be even")
    if h < 4 or w < 4:
        raise GputrackError(f"{what} size {w}x{h}: at least 4x4 pixels")
    if not is_uint16(data.dtype):
        raise GputrackError(f"{what} must be uint16, got {data.dtype}")
    return h, w


def check_raw_values(data: np.ndarray, bit_depth: int, what: str = "RAW frame") -> None:
    """A clear error when a host mosaic holds values its bit depth cannot (16-bit data given
    as 12-bit): the ISP would clip them all to white without a word."""
    top = int(data.max(initial=0))
    if top >= 1 << bit_depth:
        raise GputrackError(f"{what} reaches {top}, which exceeds its bit depth {bit_depth} "
                            f"(max {(1 << bit_depth) - 1}); give the right bit depth")  # fmt: skip


class IspPipeline:
    """The ISP bound to a backend. A `RawFrame`'s readout description (pattern, bit depth,
    black and white level) overrides the parameters' own; a bare array uses the parameters."""

    def __init__(
        self,
        params: IspParams,
        backend: Backend,
        *,
        float_output: bool = False,
        schedule: dict[str, int] | None = None,
    ) -> None:
        """`schedule`: isp.cu's tuning knobs (SCHEDULE_KNOBS) as `-D` defines, for benchmarks;
        they change the speed, never the result."""
        self.params = params
        self.backend = backend
        self.float_output = float_output
        self.schedule = dict(schedule or {})
        unknown = set(self.schedule) - SCHEDULE_KNOBS
        if unknown:
            raise GputrackError(f"unknown ISP schedule knobs: {', '.join(sorted(unknown))}")
        for knob, value in self.schedule.items():
            low, high = SCHEDULE_RANGES[knob]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
                low <= value <= high
            ):
                raise GputrackError(f"ISP schedule knob {knob}={value!r}: a whole number "
                                    f"from {low} to {high}")  # fmt: skip
        self.strip = int(self.schedule.get("ISP_STRIP", STRIP))
        self.cells = int(self.schedule.get("ISP_CELLS", CELLS))
        self.awb_rows = int(self.schedule.get("AWB_ROWS", AWB_ROWS))
        self._module = backend.load("isp.cu", self.schedule) if backend.runs_kernels else None
        self._buffers: dict[str, Any] = {}
        self._host: dict[str, np.ndarray] = {}
        self._consts: dict[tuple, Any] = {}

    # --- parameters --------------------------------------------------------------------
    def effective(self, raw: RawFrame | Any) -> IspParams:
        """The parameters for this frame: the frame's readout description wins, and
        `wb="camera"` becomes the gains the frame states as shot."""
        p = self.params
        if p.wb == "camera":
            gains = raw.as_shot_wb if isinstance(raw, RawFrame) else None
            if gains is None:
                raise GputrackError("white balance 'camera': this RAW frame states no white "
                                    "balance as shot; give auto or R,G,B gains")  # fmt: skip
            p = p.with_(wb=gains)
        if not isinstance(raw, RawFrame):
            return p
        if (raw.pattern, raw.bit_depth, raw.black_level, raw.white_level) == (
            p.pattern,
            p.bit_depth,
            p.black,
            p.white,
        ):
            return p
        return p.with_(
            pattern=raw.pattern,
            bit_depth=raw.bit_depth,
            black_level=raw.black_level,
            white_level=raw.white_level,
        )

    def _const(self, key: tuple, make) -> Any:
        if key not in self._consts:
            self._consts[key] = self.backend.to_device(make())
            # From pageable memory the copy may return before its DMA lands, and the kernels
            # read it on another (non-blocking) stream: wait once, when it is made.
            self.backend.synchronize()
        return self._consts[key]

    def _cfg(self, p: IspParams) -> Any:
        def make() -> np.ndarray:
            cfg = np.zeros(16, dtype=np.float32)
            cfg[0] = p.black
            cfg[1] = 1.0 / (p.white - p.black)
            cfg[2:5] = (1.0, 1.0, 1.0) if p.auto_wb else p.wb
            cfg[5:14] = np.asarray(p.ccm, dtype=np.float64).ravel()
            cfg[14], cfg[15] = p.lens_shading
            return cfg

        return self._const(("cfg", p.black, p.white, p.wb, p.ccm, p.lens_shading), make)

    def _lut(self, p: IspParams) -> Any:
        return self._const(("lut", p.tone, p.lut), lambda: p.tone_lut().astype(np.float32))

    def _lut8(self, p: IspParams) -> Any:
        return self._const(("lut8", p.tone, p.lut), lambda: ref.tone_lut8(p))

    def _tcfg(self, p: IspParams) -> Any:
        t = p.tensor
        assert t is not None

        def make() -> np.ndarray:
            cfg = np.zeros(8, dtype=np.float32)
            cfg[0:3] = t.mean
            cfg[3:6] = t.scale
            cfg[6] = t.pad_value
            return cfg

        return self._const(("tcfg", t.mean, t.scale, t.pad_value), make)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: Any, fill: Any = None) -> Any:
        buf = self._buffers.get(name)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != np.dtype(dtype):
            buf = (
                self.backend.empty(shape, dtype)
                if fill is None
                else self.backend.full(shape, fill, dtype)
            )
            self._buffers[name] = buf
        return buf

    def _aligned(self, raw: Any, stream: Any) -> Any:
        """A device mosaic whose first pixel is 16-byte aligned, as the kernels' 16-byte RAW
        loads need (a misaligned load stops a GPU's whole context): the array itself, or a copy
        of a view that starts elsewhere."""
        if self.backend.address(raw) % 16 == 0:
            return raw
        copy = self._buffer("raw_aligned", tuple(raw.shape), np.uint16)
        self.backend.copy(copy, raw, stream)
        return copy

    def poison(self, value: int = 0xA5) -> None:
        """Fill every kept output buffer with a pattern (tests: nothing may survive a frame)."""
        for name, buf in list(self._buffers.items()):
            if name in ("raw", "raw_aligned", "awb"):
                continue
            host = np.empty(tuple(buf.shape), dtype=buf.dtype)
            host.view(np.uint8)[...] = value
            self._buffers[name] = self.backend.to_device(host)

    # --- running -----------------------------------------------------------------------
    def process(self, raw: RawFrame | Any, download: bool = True, stream: Any = None) -> IspOutputs:
        """One frame. `raw`: a RawFrame, or a uint16 mosaic on the host or the device."""
        p = self.effective(raw)
        data = raw.data if isinstance(raw, RawFrame) else raw
        h, w = check_raw(data)
        if isinstance(data, np.ndarray):  # host data (and emu's device arrays): cheap to check
            data = data.astype(np.uint16, copy=False)  # native byte order, as kernels read it
            check_raw_values(data, p.bit_depth)
        if self._module is None:
            return self._process_cpu(data, p)
        return self._process_kernels(data, p, h, w, download, stream)

    def _process_cpu(self, data: Any, p: IspParams) -> IspOutputs:
        host = data if isinstance(data, np.ndarray) else self.backend.to_host(data)
        r = ref.process(host, p, dtype=np.float32, float_output=self.float_output)
        tensor = None
        if r.tensor is not None:
            assert p.tensor is not None
            tensor = r.tensor.astype(p.tensor.dtype)
        rgb = r.rgb.astype(np.float32) if r.rgb is not None else None
        return IspOutputs(r.rgb8, r.nv12, tensor, rgb, r.gains)

    def _process_kernels(
        self, data: Any, p: IspParams, h: int, w: int, download: bool, stream: Any
    ) -> IspOutputs:
        be, mod = self.backend, self._module
        assert mod is not None
        if isinstance(data, np.ndarray):  # a host mosaic: upload (a copy, on emu too)
            dev_raw = be.to_device(np.ascontiguousarray(data), stream=stream)
        else:
            dev_raw = self._aligned(data, stream)  # already on the device
        rx, ry = pattern_offsets(p.pattern)
        i32 = np.int32

        stats = None
        if p.auto_wb:
            stats = self._buffer("awb", (AWB_WORDS,), np.uint64, fill=0)
            mod.kernel("isp_awb_stats")(
                awb_grid(w, h, self.awb_rows),
                AWB_BLOCK,
                (
                    dev_raw,
                    i32(w),
                    i32(h),
                    i32(rx),
                    i32(ry),
                    i32(p.black),
                    i32(ref.awb_threshold(p)),
                    stats,
                ),
                stream=stream,
            )

        rgb8 = self._buffer("rgb8", (h, w, 3), np.uint8)
        nv12 = self._buffer("nv12", (h * 3 // 2, w), np.uint8) if p.nv12 else None
        rgbf = self._buffer("rgbf", (h, w, 3), np.float32) if self.float_output else None
        lut = self._lut(p)
        grid = (-(-w // TILE[0]), -(-h // TILE[1]))
        if p.demosaic != "directional":  # a block of isp_main: a strip of taller tiles
            grid = (grid[0], -(-h // (TILE[1] * self.cells * self.strip)))
        tail = (self._cfg(p), stats, lut, i32(int(lut.shape[0])), self._lut8(p), rgb8, rgbf, nv12)
        head = (dev_raw, i32(w), i32(h), i32(rx), i32(ry))
        if p.demosaic == "directional":
            mod.kernel(DIRECTIONAL_KERNEL)(grid, MAIN_BLOCK, head + tail, stream=stream)
        elif rgbf is not None:  # the float image too: its own kernel (more registers)
            args = head + (i32(DEMOSAIC_CODES[p.demosaic]),) + tail
            mod.kernel("isp_main_float")(grid, MAIN_BLOCK, args, stream=stream)
        else:
            cfg, stats, _, _, lut8, rgb8, _, nv12 = tail
            args = head + (i32(DEMOSAIC_CODES[p.demosaic]), cfg, stats, lut8, rgb8, nv12)
            mod.kernel("isp_main")(grid, MAIN_BLOCK, args, stream=stream)

        tensor = None
        if p.tensor is not None:
            t = p.tensor
            cw, ch, px, py = t.geometry(w, h)
            if max(w * cw, h * ch) >= 2**31:  # isp.cu's exact area footprints are 32-bit
                raise GputrackError(
                    f"tensor {t.width}x{t.height} from a {w}x{h} frame: frame size times "
                    "content size must stay below 2^31 on each axis"
                )
            half = t.dtype == "float16"
            shape = (1, 3, t.height, t.width)
            out32 = None if half else self._buffer("tensor32", shape, np.float32)
            out16 = self._buffer("tensor16", shape, np.uint16) if half else None
            tgrid = (-(-t.width // TENSOR_BLOCK[0]), -(-t.height // TENSOR_BLOCK[1]))
            mod.kernel("isp_tensor")(
                tgrid,
                TENSOR_BLOCK,
                (
                    rgb8,
                    i32(w),
                    i32(h),
                    self._tcfg(p),
                    i32(t.width),
                    i32(t.height),
                    i32(cw),
                    i32(ch),
                    i32(px),
                    i32(py),
                    i32(0 if t.resize == "area" else 1),
                    i32(t.channel_order == "BGR"),
                    out32,
                    out16,
                ),
                stream=stream,
            )
            tensor = out16.view(np.float16) if half else out32

        gains = None if p.auto_wb else p.wb  # type: ignore[assignment]
        if not download:
            return IspOutputs(rgb8, nv12, tensor, rgbf, gains)  # type: ignore[arg-type]
        be.synchronize(stream)
        out = IspOutputs(
            self._download("rgb8", rgb8, stream),
            self._download("nv12", nv12, stream) if nv12 is not None else None,
            self._download("tensor", tensor, stream) if tensor is not None else None,
            self._download("rgbf", rgbf, stream) if rgbf is not None else None,
            gains,  # type: ignore[arg-type]
        )
        if stats is not None:
            out.gains = ref.awb_gains(be.to_host(stats)[:4])
        be.synchronize(stream)
        return out

    def _download(self, name: str, dev: Any, stream: Any) -> np.ndarray:
        shape, dtype = tuple(dev.shape), np.dtype(dev.dtype)
        host = self._host.get(name)
        if host is None or host.shape != shape or host.dtype != dtype:
            host = self.backend.pinned_empty(shape, dtype)
            self._host[name] = host
        # A fresh copy for the caller: the kept host buffer is overwritten next frame.
        return np.array(self.backend.to_host(dev, out=host, stream=stream), copy=True)
