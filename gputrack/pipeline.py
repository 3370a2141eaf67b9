"""The frame loop's one step: the only place that knows the order of the stages.

    frame (RGB or RAW) -> sensor model (RGB only) -> ISP (image + network input tensor)
        -> network + decode/NMS (or the ground-truth stand-in) -> tracker -> tracks

Device data stays on the device between stages; only the detections come back (and the ISP
image when `keep_image` asks for it). Stage times are host clocks around each stage with a
synchronise at its end, so they are latencies as the tracker sees them; the deadline
benchmark times device work with CUDA events instead.

A frame read out through a window (`roi`, or a RAW frame that is one already: a recording of
a windowed run states its window) goes through the ISP and the network alone; its boxes map
back to the sensor's pixels through that window, one way for both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gputrack.device.base import Backend
from gputrack.dsp.decode import FrameMapping
from gputrack.dsp.detector import Detector
from gputrack.dsp.standin import NoisyTruthDetector
from gputrack.errors import GputrackError
from gputrack.isp import IspParams, IspPipeline
from gputrack.isp.reference import awb_gains, awb_stats
from gputrack.sensor.frame import RawFrame
from gputrack.sensor.model import SensorModel, SensorParams
from gputrack.sensor.roi import Roi
from gputrack.sensor.sources import Frame
from gputrack.track import Track, Tracker

STAGES = ("sensor", "isp", "dsp", "track")


@dataclass
class FrameResult:
    index: int
    timestamp: float
    tracks: list[Track]
    detections: np.ndarray  # float32[N, 6] in frame pixels
    stage_ms: dict[str, float] = field(default_factory=dict)  # STAGES + "total"
    size: tuple[int, int] = (0, 0)  # width, height of the processed frame (the window's)
    origin: tuple[int, int] = (0, 0)  # where the processed frame lies in the sensor's pixels


class Pipeline:
    """`Pipeline(backend, detector, tracker).process(frame) -> FrameResult`, once per frame."""

    def __init__(
        self,
        backend: Backend,
        detector: Detector | NoisyTruthDetector,
        tracker: Tracker,
        isp_params: IspParams | None = None,
        sensor_noise: bool = True,
        seed: int = 0,
        roi: Roi | None = None,
    ) -> None:
        self.backend = backend
        # The sensor's readout window: the ISP and the network see it alone; detections and
        # tracks are in the whole sensor's pixels.
        self.roi = roi
        self.detector = detector
        self.tracker = tracker
        base = isp_params or IspParams()
        if isinstance(detector, Detector):  # the ISP also makes the network's input
            base = base.with_(tensor=detector.spec)
        self.isp_params = base
        self.isp = IspPipeline(base, backend)
        self.sensor = SensorModel(SensorParams(isp=base, noise=sensor_noise, seed=seed), backend)
        self.stream = backend.stream()
        # The ISP image of the last frame that went through every stage. The kernel backends
        # write each frame's image into one buffer, so a frame stopped in or after its ISP
        # (Ctrl-C in the detector) may have overwritten it: `_overwritten` then says so.
        self._last_rgb8: Any = None
        self._last_nv12: Any = None  # with IspParams(nv12=True): the same frame as NV12
        self._overwritten = False
        # The last finished frame's RAW frame (the source's RawFrame, or the sensor model's
        # mosaic on the host or the device), its index, the white balance the ISP used, and
        # where it lies on the sensor (a window and the sensor's size, or None).
        self._last_raw: tuple[Any, int, tuple[float, float, float] | None, Any] | None = None

    def process(self, frame: Frame) -> FrameResult:
        clock = time.perf_counter
        sync = self.backend.synchronize
        t0 = clock()
        # `window`: where the frame the ISP gets lies on the sensor (None: it is the sensor)
        if frame.raw is not None:
            raw = self._window_raw(frame.raw)
            window, sensor = raw.window, raw.sensor_size
        else:
            scene = _even(frame.image)
            window, sensor = self.roi, (scene.shape[1], scene.shape[0])
            if window is not None:
                window.check_inside(*sensor, "the source")
                scene = window.crop(scene)
            raw = self.sensor.render(scene, frame=frame.index, download=False)
        sync()  # the sensor model launches on the default stream; the ISP reads its output
        # on self.stream (non-blocking on cuda), so the whole device must be done first
        t1 = clock()
        overwritten, self._overwritten = self._overwritten, True  # until the ISP says where
        out = self.isp.process(raw, download=False, stream=self.stream)
        self._overwritten = overwritten or out.rgb8 is self._last_rgb8
        sync(self.stream)
        t2 = clock()
        h, w = int(out.rgb8.shape[0]), int(out.rgb8.shape[1])
        dets = self._detect(frame, out.tensor, w, h, window)
        t3 = clock()
        tracks = self.tracker.update(dets, frame.index)
        t4 = clock()
        ms = {
            name: (b - a) * 1e3
            for name, a, b in zip(STAGES, (t0, t1, t2, t3), (t1, t2, t3, t4), strict=True)
        }
        ms["total"] = (t4 - t0) * 1e3
        self._last_rgb8, self._overwritten = out.rgb8, False  # the frame is done
        self._last_nv12 = out.nv12
        self._last_raw = (raw, frame.index, out.gains, None if window is None else (window, sensor))
        origin = (window.x, window.y) if window is not None else (0, 0)
        return FrameResult(frame.index, frame.timestamp, tracks, dets, ms, (w, h), origin)

    def _window_raw(self, raw: RawFrame) -> RawFrame:
        """A RAW source's frame as the window reads it out (its readout and what it states
        kept: the window's offsets are even, so its pattern is the frame's), stating where it
        lies. A frame that is a window already (a windowed recording) keeps its own without
        `roi`; `roi`, in the sensor's pixels too, must lie within it and is cut from it."""
        if self.roi is None:
            return raw
        if raw.window is None or raw.sensor_size is None:
            held, sensor = Roi(0, 0, raw.width, raw.height), (raw.width, raw.height)
            self.roi.check_inside(*sensor, "the RAW")
        else:
            held, sensor = raw.window, raw.sensor_size
            self.roi.check_inside(*sensor, "the recorded sensor")
            self.roi.check_within(held, "the recording")
        cut = Roi(self.roi.x - held.x, self.roi.y - held.y, self.roi.w, self.roi.h)
        data = np.ascontiguousarray(cut.crop(raw.data))
        return replace(raw, data=data, window=self.roi, sensor_size=sensor)

    def _detect(self, frame: Frame, tensor: Any, w: int, h: int, window: Roi | None) -> np.ndarray:
        if isinstance(self.detector, NoisyTruthDetector):
            if frame.truth is None:
                raise GputrackError(
                    "the ground-truth detector needs a source with ground truth "
                    "(the synthetic world); use --detector network"
                )
            # what the window sees, in the sensor's pixels already
            truth = frame.truth if window is None else window.truth(frame.truth)
            return self.detector(truth)
        net = self.detector.network
        outs = net.run(tensor, stream=self.stream, download=False, graph=True)
        mapping = FrameMapping.of(self.detector.spec, w, h)
        dets = self.detector.decoder(outs[net.output_names[0]], mapping, stream=self.stream)
        return dets if window is None else window.to_sensor(dets)  # back to sensor pixels

    def last_image(self) -> np.ndarray | None:
        """The ISP image (uint8[H, W, 3] RGB) of the last frame `process` finished, on the
        host, fetched on request; None before the first, or when a frame stopped part way
        (an exception out of `process`) has written over it in the ISP's buffer."""
        if self._last_rgb8 is None or self._overwritten:
            return None
        if isinstance(self._last_rgb8, np.ndarray):
            return self._last_rgb8.copy()
        return self.backend.to_host(self._last_rgb8, stream=self.stream)

    def last_nv12(self) -> np.ndarray | None:
        """The last finished frame's ISP image as NV12 (uint8[H * 3 / 2, W], BT.709 limited
        range) on the host, when the ISP makes it (`IspParams(nv12=True)`); fetched on
        request, before the next `process`."""
        if self._last_nv12 is None:
            return None
        if isinstance(self._last_nv12, np.ndarray):
            return self._last_nv12.copy()
        return self.backend.to_host(self._last_nv12, stream=self.stream)

    def last_raw(self) -> RawShot | None:
        """The RAW frame of the last frame `process` finished, on the host, with the white
        balance and colour matrix its ISP image was made with (the RAW output mode); fetched
        on request. Call it before the next `process`: the sensor model reuses its buffer."""
        if self._last_raw is None:
            return None
        raw, index, gains, placed = self._last_raw
        if not isinstance(raw, RawFrame):  # the sensor model's mosaic (of the window, if any)
            host = raw if isinstance(raw, np.ndarray) else self.backend.to_host(raw)
            raw = self.sensor.raw_frame(np.array(host, dtype=np.uint16), index)
            if placed is not None:  # a recording states where: its playback maps boxes back
                raw = replace(raw, window=placed[0], sensor_size=placed[1])
        p = self.isp.effective(raw)
        if gains is None:  # not read back from the device: fixed, or grey world measured
            # again on the host (the same integer sums as the kernel's, so the same gains)
            gains = awb_gains(awb_stats(raw.data, p)) if p.auto_wb else p.wb
        return RawShot(raw, tuple(float(g) for g in gains), np.array(p.ccm, dtype=np.float64))


@dataclass
class RawShot:
    """A RAW frame as the RAW output mode writes it (`outputs/dng.py`)."""

    raw: RawFrame
    wb_gains: tuple[float, ...]  # R, G, B gains the ISP applied
    ccm: np.ndarray  # 3x3 camera RGB -> linear sRGB


def _even(image: np.ndarray) -> np.ndarray:
    """A Bayer sensor has even width and height: an odd RGB frame loses its last row/column."""
    h, w = image.shape[:2]
    return image if h % 2 == 0 and w % 2 == 0 else image[: h - h % 2, : w - w % 2]
