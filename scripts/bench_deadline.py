"""The single-frame deadline: one RAW frame in host memory -> tracks updated, at 60 fps.

Input: a ring of synthetic-world frames rendered once, each turned into the sensor model's
noisy 12-bit RAW frame (what a real sensor delivers), kept in host memory (pinned on `cuda`).
Per frame: upload the RAW, ISP (RGB8 + the network's input tensor), network ("DSP"),
decode + NMS, download the detections, tracker on the host.

On `cuda` one frame's device work (upload, ISP, network, decode, download of count + rows)
is captured as one CUDA graph per ring slot and replayed, two frames in flight (two buffer
sets on two streams). Per-stage device times come from a separate pass with CUDA events
between the stages; the frame loops use host clocks:
  - paced: frames arrive every 1/fps; latency = tracks updated - arrival, a miss when it is
    over one frame period;
  - free-running: frames launched as fast as the chain takes them: throughput.
Ratios from the same run: ISP + network device time against the memory floor (bytes that
must move / bandwidth of a 1 GiB device-to-device CuPy copy), against the IMX500's 3.1 ms,
against the same ISP work by OpenCV on the CPU, and the network against PyTorch/cuDNN.

On `cpu` and `emu` the same loops run with host clocks, stage by stage; `--engine graph` on
`emu` runs the GPU code path itself (graphs, two buffer sets, upload/download/events through the
backend) synchronously, so that its bugs show up without a GPU (tests/test_bench_deadline.py).

    .venv/bin/python scripts/bench_deadline.py [--size 3840x2160] [--fps 60] [--frames N]
        [--backend auto|cuda|emu|cpu] [--engine auto|graph|host] [--model PATH] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gputrack.commands.args import (  # noqa: E402
    ScriptParser,
    frame_rate,
    frame_size,
    positive_int,
)
from gputrack.device import get_backend, probe  # noqa: E402
from gputrack.device.bandwidth import device_copy_gbs  # noqa: E402
from gputrack.dsp.decode import FrameMapping  # noqa: E402
from gputrack.dsp.detector import Detector, default_model  # noqa: E402
from gputrack.dsp.standin import NoisyTruthDetector  # noqa: E402
from gputrack.errors import GputrackError, UsageError  # noqa: E402
from gputrack.isp import IspParams, IspPipeline, TensorSpec  # noqa: E402
from gputrack.outputs.files import atomic_path  # noqa: E402
from gputrack.sensor.model import SensorModel, SensorParams  # noqa: E402
from gputrack.sensor.synthetic import SyntheticWorld  # noqa: E402
from gputrack.track import Tracker  # noqa: E402

IMX500_MS = 3.1  # Sony's figure for the IMX500's own ISP + DSP per frame
STAGES = ("upload", "isp", "dsp", "decode", "download")
DEFAULTS = {  # backend: (size, frames)
    "cuda": ((3840, 2160), 300),
    "cpu": ((3840, 2160), 6),
    "emu": ((320, 240), 3),
}
MIN_SIDE = 16  # the synthetic world's smallest frame


# --- small helpers --------------------------------------------------------------------------
def pcts(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50": float("nan"), "p99": float("nan"), "n": 0}
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "n": len(ms)}  # fmt: skip


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)"


def cpu_times(fn: Callable[[], Any], reps: int) -> list[float]:
    fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def address(a: Any) -> int:
    """A device array's first byte: CuPy's pointer, or a host array's (emu)."""
    ptr = getattr(a.data, "ptr", None)
    return int(ptr) if ptr is not None else int(a.__array_interface__["data"][0])


def same_memory(a: Any, b: Any) -> bool:
    """Two device arrays over the same bytes (input_buffer() makes a new view each call)."""
    return address(a) == address(b) and a.shape == b.shape and a.dtype == b.dtype


# --- input: the ring of RAW frames ----------------------------------------------------------
class Ring:
    """n synthetic-world frames (host RGB), their RAW frames (host, pinned on cuda), truth."""

    def __init__(self, be: Any, w: int, h: int, n: int, fps: float, params: IspParams) -> None:
        world = SyntheticWorld(w, h, fps=fps, seed=1)
        ring = world.prerender(n)
        self.rgb = ring.frames
        self.truth = ring.truth
        self.raw = be.pinned_empty((n, h, w), np.uint16)
        sensor = SensorModel(SensorParams(isp=params, noise=True, seed=1), be)
        for i in range(n):
            raw = sensor.render(ring[i], frame=i, download=False)
            if be.is_device_array(raw) and not isinstance(raw, np.ndarray):
                be.to_host(raw, out=self.raw[i])
            else:
                self.raw[i] = raw
        self.n = n

    def __len__(self) -> int:
        return self.n


# --- one set of device buffers: ISP, network, decoder ---------------------------------------
class Chain:
    """The ISP (RGB8 + network tensor), the network and the decoder, bound to a backend."""

    def __init__(self, be: Any, model: Path | None, w: int, h: int) -> None:
        self.be = be
        self.det = Detector(model, be) if model is not None else None
        self.spec = self.det.spec if self.det else TensorSpec()
        self.isp = IspPipeline(IspParams().with_(tensor=self.spec), be)
        self.mapping = FrameMapping.of(self.spec, w, h)
        self.head_name = self.det.network.output_names[0] if self.det else None


# --- the frame loops (shared by every backend) ------------------------------------------------
def frame_loop(engine: Any, ring: Ring, n: int, fps: float, paced: bool,
               standin: list[np.ndarray] | None) -> dict[str, Any]:  # fmt: skip
    """n frames through `engine` (launch(i) -> token, finish(token) -> detections).

    paced: frame i arrives at t0 + i / fps and is launched no earlier; latency is counted from
    its arrival. Free-running: launched as soon as a slot is free; latency from the launch."""
    period = 1.0 / fps
    tracker = Tracker(fps=fps)
    clock = time.perf_counter
    inflight: deque = deque()
    lat, trk = [], []
    nxt = done = 0
    # paced: frame 0 arrives just after the start; free-running: the clock starts now (2 ms
    # in the future, a short fast run had come out at a negative or inflated frame rate)
    t0 = clock() + (0.002 if paced else 0.0)
    while done < n:
        now = clock()
        arrival = t0 + nxt * period if paced else now
        if nxt < n and len(inflight) < engine.depth and arrival <= now:
            inflight.append((nxt, arrival, engine.launch(nxt)))
            nxt += 1
            continue
        if inflight:
            i, arr, token = inflight.popleft()
            dets = engine.finish(token)
            if standin is not None:
                dets = standin[i % len(standin)]
            a = clock()
            tracker.update_array(dets, i)
            b = clock()
            trk.append((b - a) * 1e3)
            lat.append((b - arr) * 1e3)
            done += 1
            continue
        time.sleep(max(0.0, arrival - now))
    wall = clock() - t0
    misses = sum(x > period * 1e3 for x in lat)
    return {"latency_ms": lat, "track_ms": trk, "wall_s": wall, "fps": n / wall,
            "misses": int(misses), "frames": n, "tracks_end": len(tracker)}  # fmt: skip


class HostEngine:
    """cpu / emu (or `--engine host` on cuda): every stage runs inside launch(), the device
    waited for after each (a cuda launch returns at once); host clocks per stage."""

    depth = 1

    def __init__(self, be: Any, chain: Chain, ring: Ring) -> None:
        self.be, self.c, self.ring = be, chain, ring
        self.stage_ms: dict[str, list[float]] = {s: [] for s in STAGES}

    def launch(self, i: int) -> np.ndarray:
        be, c, perf = self.be, self.c, time.perf_counter

        def clock() -> float:  # the stage's work done, not only launched
            be.synchronize()
            return perf()

        t = [perf()]
        dev_raw = be.to_device(self.ring.raw[i % len(self.ring)])
        t.append(clock())
        out = c.isp.process(dev_raw, download=False)
        t.append(clock())
        dets = np.zeros((0, 6), np.float32)
        if c.det is not None:
            head = c.det.network.run(out.tensor, download=False)[c.head_name]
            t.append(clock())
            if be.runs_kernels:  # emu, cuda: the decode kernel, then the two small downloads
                rows, count = c.det.decoder.launch(head, c.mapping)
                t.append(clock())
                k = int(be.to_host(count)[0])
                dets = be.to_host(rows)[:k].copy()
            else:  # cpu: NumPy decode on the host, nothing to move
                dets = c.det.decoder(head, c.mapping)
                t.append(clock())
            t.append(clock())
        for s, a, b in zip(STAGES, t, t[1:], strict=False):
            self.stage_ms[s].append((b - a) * 1e3)
        return dets

    def finish(self, token: np.ndarray) -> np.ndarray:
        return token


# --- the graph engine (cuda; on emu it runs the same code to check it) ---------------------
class GraphEngine:
    """Two buffer sets on two streams; one CUDA graph per ring slot (slot parity = set).
    Only backend calls (upload/download/events/capture), so `--engine graph` on emu runs this
    very code synchronously: tests/test_bench_deadline.py does, before any GPU sees it."""

    def __init__(self, be: Any, chains: list[Chain], ring: Ring, notes: list[str]) -> None:
        self.be, self.chains, self.ring, self.notes = be, chains, ring, notes
        h, w = ring.raw.shape[1:]
        self.streams = [be.stream() for _ in chains]
        self.dev_raw = [be.empty((h, w), np.uint16) for _ in chains]
        self.heads: list[Any] = []
        self.count_h, self.rows_h = [], []
        for b, c in enumerate(chains):
            s = self.streams[b]
            if c.det is not None:
                # The ISP writes the tensor straight into the network's input buffer.
                c.isp._buffers["tensor32"] = c.det.network.input_buffer()
            self._upload(b, b)
            out = c.isp.process(self.dev_raw[b], download=False, stream=s)  # warm-up: buffers
            if c.det is not None:
                assert same_memory(out.tensor, c.det.network.input_buffer())
                c.det.network.launch(s)
                head = c.det.network.plan.array(c.head_name)
                rows, _ = c.det.decoder.launch(head, c.mapping, s)
                self.heads.append(head)
                self.count_h.append(be.pinned_empty((1,), np.int32))
                self.rows_h.append(be.pinned_empty(tuple(rows.shape), np.float32))
            be.synchronize(s)
        self.depth = len(chains)
        if len(ring) % self.depth:
            raise GputrackError(f"ring of {len(ring)} frames: must be a multiple of {self.depth}")
        self.graphs: list[Any] = []
        self.events = [be.event() for _ in chains]
        # Per-piece graphs (the stage pass); None where capture failed: plain launches.
        self.piece: list[dict[str, Any]] = []
        for b in range(self.depth):
            pieces = {}
            for name, fn in (("isp", self._isp), ("dsp", self._dsp), ("decode", self._decode)):
                if name != "isp" and chains[b].det is None:
                    continue
                pieces[name] = self._try_capture(lambda f=fn, b=b: f(b), self.streams[b],
                                                 f"{name} (set {b})")  # fmt: skip
            self.piece.append(pieces)
        whole_ok = True
        for k in range(len(ring)):
            b = k % self.depth
            g = self._try_capture(lambda k=k, b=b: self._frame_plain(k, b, False),
                                  self.streams[b], None)  # fmt: skip
            if g is None:
                whole_ok = False
            self.graphs.append(g)
        self.whole_graph = whole_ok
        if not whole_ok:
            notes.append("the whole frame could not be captured as one graph: its pieces are "
                         "replayed one by one (captured pieces) or launched plainly")  # fmt: skip

    # pieces: queue work, no host synchronisation
    def _upload(self, k: int, b: int) -> None:
        self.be.upload(self.dev_raw[b], self.ring.raw[k % len(self.ring)], self.streams[b])

    def _isp(self, b: int) -> None:
        self.chains[b].isp.process(self.dev_raw[b], download=False, stream=self.streams[b])

    def _dsp(self, b: int) -> None:
        self.chains[b].det.network.launch(self.streams[b])

    def _decode(self, b: int) -> None:
        c = self.chains[b]
        c.det.decoder.launch(self.heads[b], c.mapping, self.streams[b])

    def _download(self, b: int) -> None:
        c = self.chains[b]
        if c.det is None:
            return
        dec = c.det.decoder
        for dst, src in ((self.count_h[b], dec._count), (self.rows_h[b], dec._out)):
            self.be.download(dst, src, self.streams[b])

    def _frame_plain(self, k: int, b: int, piece_graphs: bool = True) -> None:
        """One frame's work as pieces: captured pieces replayed, the rest launched (the
        whole-frame capture itself launches every piece plainly: no graph inside a graph)."""
        self._upload(k, b)
        for name, fn in (("isp", self._isp), ("dsp", self._dsp), ("decode", self._decode)):
            if name in self.piece[b]:
                g = self.piece[b][name] if piece_graphs else None
                g.replay(self.streams[b]) if g is not None else fn(b)
        self._download(b)

    def _try_capture(self, fn: Callable[[], None], stream: Any, what: str | None) -> Any:
        try:
            g = self.be.capture(fn, stream)
            self.be.synchronize(stream)
            return g
        except Exception as err:  # a piece that cannot be captured is launched plainly
            if what is not None:
                self.notes.append(f"{what}: not capturable ({type(err).__name__}: "
                                  f"{str(err)[:120]}), timed as plain launches")  # fmt: skip
            with contextlib.suppress(Exception):
                self.be.synchronize(stream)
            return None

    # frame loop interface
    def launch(self, i: int) -> tuple[int, int]:
        k = i % len(self.ring)
        b = k % self.depth
        g = self.graphs[k]
        if g is not None:
            g.replay(self.streams[b])
        else:
            self._frame_plain(k, b)
        self.events[b].record(self.streams[b])
        return k, b

    def finish(self, token: tuple[int, int]) -> np.ndarray:
        _, b = token
        self.events[b].synchronize()
        if self.chains[b].det is None:
            return np.zeros((0, 6), np.float32)
        n = int(self.count_h[b][0])
        if not 0 <= n <= len(self.rows_h[b]):
            raise GputrackError(f"detection count {n} out of range: the download is wrong")
        return self.rows_h[b][:n].copy()

    # the stage pass: timers (CUDA events on cuda) around the pieces, on set 0
    def stage_pass(self, n: int) -> dict[str, list[float]]:
        be, b, s = self.be, 0, self.streams[0]
        names = ["upload", "isp"] + (["dsp", "decode", "download"] if self.heads else [])
        ms: dict[str, list[float]] = {x: [] for x in names}
        ms["frame (one graph)"] = []
        for j in range(n + 3):
            k = (2 * j) % len(self.ring)  # even slots: set 0's graphs
            timers = {x: be.timer(s) for x in [*names, "frame (one graph)"]}
            for name in names:
                timers[name].start()
                if name == "upload":
                    self._upload(k, b)
                elif name == "download":
                    self._download(b)
                else:
                    g = self.piece[b][name]
                    g.replay(s) if g is not None else getattr(self, f"_{name}")(b)
                timers[name].stop()
            whole = timers["frame (one graph)"]
            whole.start()
            self.launch(k)  # the whole-frame graph of slot k (set 0)
            whole.stop()
            be.synchronize(s)
            if j < 3:  # warm-up
                continue
            for name, t in timers.items():
                ms[name].append(t.elapsed_ms())
        return ms

    def check_against_plain(self) -> str:
        """The graph's detections for slot 0 == a plain run of the same frame (no graph)."""
        c = self.chains[0]
        if c.det is None:
            return "no network"
        self.count_h[0][...] = -1
        self.rows_h[0][...] = np.nan
        got = self.finish(self.launch(0))
        dev = self.be.to_device(self.ring.raw[0], stream=self.streams[0])
        out = c.isp.process(dev, download=False, stream=self.streams[0])
        # The ISP wrote the tensor into the network's input buffer: launch on it directly
        # (Network.run's copy of its input is not queued on the given stream).
        assert same_memory(out.tensor, c.det.network.input_buffer())
        c.det.network.launch(self.streams[0])
        ref = c.det.decoder(self.heads[0], c.mapping, stream=self.streams[0])
        same = got.shape == ref.shape and np.array_equal(got, ref)
        return f"{'same' if same else 'DIFFERENT'} ({len(got)} vs {len(ref)} detections)"


def copy_bandwidth(be: Any, on_gpu: bool) -> tuple[float, float]:
    """(device-to-device GB/s, read + write counted; host-to-device pinned GB/s)."""
    s = be.stream()
    d2d = device_copy_gbs(be, s)
    m = (256 << 20) if on_gpu else (1 << 20)
    host = be.pinned_empty((m,), np.uint8)
    host[...] = 1
    dev = be.empty(m, np.uint8)
    h2d = []
    for _ in range(8):
        t = be.timer(s)
        t.start()
        be.upload(dev, host, s)
        t.stop()
        h2d.append(t.elapsed_ms())
    return d2d, m / (max(statistics.median(h2d[2:]), 1e-6) * 1e-3) / 1e9


def host_bandwidth() -> float:
    """Host memcpy GB/s (read + write counted): the CPU's memory floor."""
    n = 256 << 20
    src = np.ones(n, np.uint8)
    dst = np.empty_like(src)
    ms = cpu_times(lambda: np.copyto(dst, src), 4)
    return 2 * n / (statistics.median(ms) * 1e-3) / 1e9


# --- comparisons ---------------------------------------------------------------------------
def opencv_isp(raw: np.ndarray, params: IspParams, spec: TensorSpec, reps: int) -> list[float]:
    """The ISP's work by OpenCV on the CPU: demosaic, WB + colour matrix, tone LUT, and the
    network tensor (area resize into the letterbox). Less than the kernels do: bilinear
    demosaicing (theirs is MHC), the tensor left interleaved (theirs is planar). The 12-bit
    LUT lookup is NumPy's (cv2.LUT takes 8-bit indices only), on one thread."""
    p = params
    lut = (np.clip(p.tone_lut(), 0, 1) * 255 + 0.5).astype(np.uint8)  # linear -> 8-bit
    levels = lut.size
    # BGR in, BGR out: the CCM (RGB order) with WB and black/white folded in, reversed.
    m = np.asarray(p.ccm, np.float64) @ np.diag(np.asarray(p.wb, np.float64))
    m = m[::-1, ::-1] * (levels - 1) / (p.white - p.black)
    mat = np.hstack([m, -m.sum(axis=1, keepdims=True) * p.black]).astype(np.float32)
    h, w = raw.shape
    cw, ch, px, py = spec.geometry(w, h)
    tensor = np.full((spec.height, spec.width, 3), spec.pad_value, np.float32)

    def run() -> None:
        bgr = cv2.demosaicing(raw, cv2.COLOR_BayerBG2BGR)  # RGGB (OpenCV names row 2)
        lin = cv2.transform(bgr, mat)  # uint16 as its input: LUT indices, rounded, saturated
        idx = np.clip(lin, 0, levels - 1).astype(np.uint16)
        out = np.take(lut, idx)
        small = cv2.resize(out, (cw, ch), interpolation=cv2.INTER_AREA)
        tensor[py : py + ch, px : px + cw] = small
        np.multiply(tensor, 1 / 255, out=tensor)

    return cpu_times(run, reps)


def torch_network(model: Path, tensor_host: np.ndarray, head_ref: np.ndarray,
                  reps: int) -> dict[str, Any]:  # fmt: skip
    """The same ONNX network in PyTorch (cuDNN, float32, TF32 off), from its initializers."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return {"skipped": "PyTorch not importable"}
    import onnx
    from onnx import numpy_helper

    if not torch.cuda.is_available():
        return {"skipped": "PyTorch sees no CUDA device"}
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    m = onnx.load(str(model))
    const: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            const[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    weights = {k: torch.from_numpy(np.array(v)).to(dev) for k, v in const.items()
               if v.dtype.kind == "f"}  # fmt: skip
    inp = [i.name for i in m.graph.input if i.name not in const][0]
    out_name = m.graph.output[0].name
    nodes = [n for n in m.graph.node if n.op_type != "Constant"]
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 13)

    def attrs(n: Any) -> dict[str, Any]:
        return {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}

    def pad4(a: dict[str, Any]) -> tuple[int, int, int, int]:
        p = list(a.get("pads", [0, 0, 0, 0]))
        return p[0], p[1], p[2], p[3]  # top, left, bottom, right

    def forward(x: Any) -> Any:
        env: dict[str, Any] = {inp: x}

        def get(name: str) -> Any:
            return env[name] if name in env else weights[name]

        for n in nodes:
            a, op, i = attrs(n), n.op_type, n.input
            if op == "Conv":
                t, left, b, r = pad4(a)
                xx = get(i[0])
                if (t, left) != (b, r):
                    xx, t, left = F.pad(xx, (left, r, t, b)), 0, 0
                y = F.conv2d(
                    xx,
                    get(i[1]),
                    get(i[2]) if len(i) > 2 and i[2] else None,
                    stride=tuple(a.get("strides", (1, 1))),
                    padding=(t, left),
                    dilation=tuple(a.get("dilations", (1, 1))),
                    groups=a.get("group", 1),
                )
            elif op == "Relu":
                y = F.relu(get(i[0]))
            elif op == "Sigmoid":
                y = torch.sigmoid(get(i[0]))
            elif op == "Softmax":
                xx, ax = get(i[0]), a.get("axis", -1 if opset >= 13 else 1)
                if opset >= 13:
                    y = torch.softmax(xx, dim=ax)
                else:  # before opset 13: over all dimensions from `axis` on
                    ax %= xx.dim()
                    flat = xx.reshape(int(np.prod(xx.shape[:ax], dtype=np.int64)), -1)
                    y = torch.softmax(flat, dim=1).reshape(xx.shape)
            elif op == "Add":
                y = get(i[0]) + get(i[1])
            elif op == "Concat":
                y = torch.cat([get(v) for v in i], dim=a["axis"])
            elif op == "Reshape":
                xx = get(i[0])
                shape = [int(v) if v != 0 else xx.shape[j] for j, v in enumerate(const[i[1]])]
                y = xx.reshape(shape)
            elif op == "Transpose":
                y = get(i[0]).permute(*a["perm"])
            elif op == "Gather":
                idx = const[i[1]]
                ax = a.get("axis", 0)
                if idx.ndim == 0:
                    y = get(i[0]).select(ax, int(idx))
                else:
                    sel = torch.as_tensor(idx.ravel(), device=dev, dtype=torch.long)
                    xx = get(i[0])
                    y = xx.index_select(ax, sel).reshape(
                        *xx.shape[:ax], *idx.shape, *xx.shape[ax + 1 :]
                    )
            elif op in ("MaxPool", "AveragePool"):
                t, left, b, r = pad4(a)
                if (t, left) != (b, r):
                    raise GputrackError(f"{op} with asymmetric pads")
                k, st = tuple(a["kernel_shape"]), tuple(a.get("strides", (1, 1)))
                if op == "MaxPool":
                    y = F.max_pool2d(
                        get(i[0]), k, st, (t, left), ceil_mode=bool(a.get("ceil_mode", 0))
                    )
                else:
                    y = F.avg_pool2d(
                        get(i[0]),
                        k,
                        st,
                        (t, left),
                        ceil_mode=bool(a.get("ceil_mode", 0)),
                        count_include_pad=bool(a.get("count_include_pad", 0)),
                    )
            elif op == "Pad":
                pads = [int(v) for v in const[i[1]]]
                if a.get("mode", b"constant") not in (b"constant", "constant"):
                    raise GputrackError("Pad mode other than constant")
                value = float(const[i[2]]) if len(i) > 2 and i[2] else 0.0
                nd = len(pads) // 2
                tp: list[int] = []
                for d in reversed(range(nd)):
                    tp += [pads[d], pads[d + nd]]
                y = F.pad(get(i[0]), tuple(tp), value=value)
            elif op == "Resize":
                if a.get("mode", b"nearest") not in (b"nearest", "nearest") or a.get(
                    "coordinate_transformation_mode", b""
                ) not in (b"asymmetric", "asymmetric"):
                    raise GputrackError("Resize other than nearest/asymmetric")
                scales = const.get(i[2]) if len(i) > 2 and i[2] else None
                if scales is not None and scales.size == 4:
                    y = F.interpolate(
                        get(i[0]), scale_factor=tuple(float(v) for v in scales[2:]), mode="nearest"
                    )
                else:
                    y = F.interpolate(
                        get(i[0]), size=tuple(int(v) for v in const[i[3]][2:]), mode="nearest"
                    )
            elif op in ("Identity", "Flatten"):
                y = get(i[0]) if op == "Identity" else torch.flatten(get(i[0]), a.get("axis", 1))
            else:
                raise GputrackError(f"op {op} not in the benchmark's PyTorch interpreter")
            env[n.output[0]] = y
        return env[out_name]

    try:
        x = torch.from_numpy(np.ascontiguousarray(tensor_host)).to(dev)
        with torch.no_grad():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    y = forward(x)
            torch.cuda.current_stream().wait_stream(side)
            got = y.float().cpu().numpy()
            err = float(np.linalg.norm(got - head_ref) / max(np.linalg.norm(head_ref), 1e-30))
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                y = forward(x)
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ms = []
            for j in range(reps + 5):
                a.record()
                graph.replay()
                b.record()
                b.synchronize()
                if j >= 5:
                    ms.append(a.elapsed_time(b))
    except Exception as err:  # report, never stop the benchmark
        return {"skipped": f"PyTorch run failed: {type(err).__name__}: {str(err)[:160]}"}
    return {"ms": ms, "rel_err": err, "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version()}  # fmt: skip


# --- the benchmark -------------------------------------------------------------------------
def run(args: argparse.Namespace, res: dict[str, Any] | None = None) -> dict[str, Any]:
    """The benchmark; its results go into `res` (a new dict if None) as they are measured, so
    that a run stopped part way (gpu_check's time limit) still has what it measured."""
    res = {} if res is None else res
    name = args.backend
    if name == "auto":
        name = "cuda" if probe("cuda").available else "cpu"
    be = get_backend(name)
    size, frames = DEFAULTS.get(name, DEFAULTS["cpu"])
    w, h = args.size or size
    frames = args.frames or frames
    notes: list[str] = []
    model: Path | None
    if args.model:
        model = Path(args.model)
        if not model.is_file():
            raise GputrackError(f"--model {model}: no such file")
    else:
        try:
            model = default_model()
        except GputrackError as err:
            model = None
            notes.append(f"no network: {err}; detections come from the ground-truth stand-in, "
                         "the dsp/decode/download stages are not run")  # fmt: skip
    res.update({"backend": name, "size": [w, h], "fps": args.fps,
                "deadline_ms": 1e3 / args.fps, "frames": frames,
                "model": str(model) if model else None, "cpu": cpu_name(),
                "notes": notes})  # fmt: skip
    graphs = args.engine == "graph" or (args.engine == "auto" and name == "cuda")
    if graphs and not be.runs_kernels:
        raise UsageError(f"--engine graph needs a backend that runs kernels, not {name}")
    res["engine"] = "graph" if graphs else "host"
    if name != "cuda":
        why = probe("cuda").reason if not probe("cuda").available else f"--backend {name}"
        how = ("the GPU code path, synchronously" if graphs
               else "host clocks, no graphs, one frame in flight")  # fmt: skip
        notes.append(f"GPU part not run ({why}): {how}")
    t0 = time.perf_counter()
    n_ring = 8 if name == "cuda" else 2 if graphs else max(1, min(frames, 4))
    params = IspParams()
    ring = Ring(be, w, h, n_ring, args.fps, params)
    res["setup_ring_s"] = time.perf_counter() - t0
    standin = None
    if model is None:
        sd = NoisyTruthDetector(seed=1)
        standin = [sd(t) for t in ring.truth]

    if graphs:
        if name == "cuda":
            from gputrack.device.ops_cuda import gpu_info

            res["gpu"] = gpu_info()
        chains = [Chain(be, model, w, h) for _ in range(2)]
        engine: Any = GraphEngine(be, chains, ring, notes)
        res["graph"] = "one CUDA graph per frame" if engine.whole_graph else "pieces"
        res["in_flight"] = engine.depth
        res["graph_vs_plain"] = engine.check_against_plain()
        d2d, h2d = copy_bandwidth(be, name == "cuda")
        res["d2d_gbs"], res["h2d_gbs"] = d2d, h2d
        stage = engine.stage_pass(min(frames, 200))
    else:
        chains = [Chain(be, model, w, h)]
        engine = HostEngine(be, chains[0], ring)
        res["graph"] = "none (synchronous backend)"
        res["in_flight"] = 1
        res["host_copy_gbs"] = host_bandwidth()
        stage = engine.stage_ms  # filled by the loops below

    if not graphs:  # warm-up: first-call costs (onnxruntime, emu module loads)
        engine.launch(0)
        for v in engine.stage_ms.values():
            v.clear()
    res["paced"] = frame_loop(engine, ring, frames, args.fps, True, standin)
    res["free"] = frame_loop(engine, ring, frames, args.fps, False, standin)
    res["stage_ms"] = {k: pcts(v) for k, v in stage.items() if v}  # no network: no dsp
    track = res["paced"]["track_ms"] + res["free"]["track_ms"]
    res["stage_ms"]["track (host)"] = pcts(track)

    # the ratios
    c = chains[0]
    px = w * h
    t = c.spec
    tensor_bytes = 3 * 4 * t.width * t.height
    net_bytes = head_bytes = 0
    if c.det is not None:
        g = c.det.network.graph
        used = {x for node in g.nodes for x in node.inputs}
        net_bytes = sum(int(v.nbytes) for k, v in g.constants.items() if k in used)
        head_bytes = int(np.prod(g.shapes[c.head_name])) * 4
    res["floor_bytes"], res["floor_what"] = floor_bytes(
        px, tensor_bytes, net_bytes, head_bytes, c.det is not None
    )
    isp_net = res["stage_ms"]["isp"]["p50"] + (
        res["stage_ms"]["dsp"]["p50"] if "dsp" in res["stage_ms"] else 0.0)  # fmt: skip
    res["isp_net_ms"] = isp_net
    bw = res.get("d2d_gbs") or res.get("host_copy_gbs")
    res["floor_ms"] = res["floor_bytes"] / (bw * 1e9) * 1e3
    res["x_floor"] = isp_net / res["floor_ms"]
    res["x_imx500"] = isp_net / IMX500_MS
    reps = 5 if px > 2_000_000 else 10
    cv_ms = opencv_isp(ring.raw[0], params, t, reps)
    res["opencv_isp_ms"] = pcts(cv_ms)
    res["opencv_threads"] = cv2.getNumThreads()
    res["x_opencv"] = res["stage_ms"]["isp"]["p50"] / res["opencv_isp_ms"]["p50"]
    if name == "cuda" and c.det is not None:
        net = c.det.network
        tensor_host = be.to_host(net.input_buffer())
        head_ref = be.to_host(net.plan.array(c.head_name))
        res["torch"] = torch_network(model, tensor_host, head_ref, 100)  # type: ignore[arg-type]
    elif name != "cuda":
        res["torch"] = {"skipped": "GPU part not run"}
    else:
        res["torch"] = {"skipped": "no network"}
    return res


def floor_bytes(px: int, tensor_bytes: int, net_bytes: int, head_bytes: int,
                network: bool) -> tuple[int, str]:  # fmt: skip
    """Bytes the ISP + network stages must move, and what they are: the RAW (uint16) read, RGB8
    written by isp_main and read back by isp_tensor, the float32 tensor written (and read by the
    network; the stand-in reads nothing), the weights read and the head written."""
    isp = 2 * px + 3 * px + 3 * px + tensor_bytes
    if not network:
        return isp, "RAW in, RGB8 out + in, tensor out; no network"
    return (isp + tensor_bytes + net_bytes + head_bytes,
            "RAW in, RGB8 out + in, tensor out + in, weights, head")  # fmt: skip


def ratio(x: float) -> str:
    """A ratio in three significant digits at any scale (0.00039, 0.185, 33.5), whole above
    100 (2565)."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def report(res: dict[str, Any]) -> dict[str, str]:
    """Print the results; return the flat summary for gpu_check.sh."""
    w, h = res["size"]
    gpu = res.get("gpu")
    where = f"{gpu['name']} ({gpu['memory_gb']} GB)" if gpu else res["cpu"]
    # CUDA events: the graph engine's stage pass on cuda; the host engine uses host clocks
    cuda_events = res["backend"] == "cuda" and res["engine"] == "graph"
    clock = "CUDA events" if cuda_events else "host clock"
    dl = res["deadline_ms"]
    cpu = f"; CPU {res['cpu']}" if gpu else ""
    print(f"\ndeadline benchmark: {w}x{h} 12-bit RGGB from the synthetic world, backend "
          f"{res['backend']} on {where}{cpu}; {res['fps']:g} fps "
          f"(deadline {dl:.2f} ms); {res['frames']} frames; model "
          f"{res['model'] or 'none'}; graph: {res['graph']}; frames in flight: "
          f"{res['in_flight']}")  # fmt: skip
    if "graph_vs_plain" in res:
        print(f"graph replay vs plain launches, detections of one frame: {res['graph_vs_plain']}")
    for n in res["notes"]:
        print(f"note: {n}")
    print(f"\n{'stage':<20} {'p50 ms':>9} {'p99 ms':>9}  clock")
    for k, v in res["stage_ms"].items():
        ck = "host clock" if k.startswith("track") else clock
        print(f"{k:<20} {v['p50']:>9.3f} {v['p99']:>9.3f}  {ck}")
    for mode in ("paced", "free"):
        r = res[mode]
        lp = pcts(r["latency_ms"])
        print(f"{'end-to-end ' + mode:<20} {lp['p50']:>9.3f} {lp['p99']:>9.3f}  host clock, "
              f"RAW in host memory -> tracks updated; {r['fps']:.1f} frames/s, "
              f"{r['misses']}/{r['frames']} over {dl:.2f} ms")  # fmt: skip
    bw = res.get("d2d_gbs")
    bwtxt = (f"device-to-device copy {bw:.0f} GB/s (read + write), host-to-device "
             f"{res['h2d_gbs']:.1f} GB/s" if bw else
             f"host memcpy {res['host_copy_gbs']:.1f} GB/s (read + write)")  # fmt: skip
    print(f"\nmemory floor of ISP + network: {res['floor_bytes'] / 1e6:.1f} MB "
          f"({res['floor_what']}) / {bwtxt} = "
          f"{res['floor_ms']:.3f} ms")  # fmt: skip
    cv = res["opencv_isp_ms"]
    print(f"OpenCV ISP on the CPU ({res['opencv_threads']} threads: demosaicing + colour matrix "
          f"+ LUT + area resize to the tensor): p50 {cv['p50']:.2f} ms")  # fmt: skip
    tr = res["torch"]
    if "ms" in tr:
        tp = pcts(tr["ms"])
        print(
            f"PyTorch {tr['torch']} / cuDNN {tr['cudnn']} network (float32, TF32 off, CUDA "
            f"graph): p50 {tp['p50']:.3f} ms, rel. error vs gputrack {tr['rel_err']:.1e}"
        )
    else:
        print(f"PyTorch network: skipped ({tr['skipped']})")

    s: dict[str, str] = {}
    s["where"] = f"{res['backend']} on {where}, {w}x{h}, {res['frames']} frames"
    s["graph / in flight"] = f"{res['graph']} / {res['in_flight']}"
    for k, v in res["stage_ms"].items():
        s[f"{k} p50/p99"] = f"{v['p50']:.3f} / {v['p99']:.3f} ms"
    for mode in ("paced", "free"):
        r = res[mode]
        lp = pcts(r["latency_ms"])
        s[f"end-to-end {mode} p50/p99"] = f"{lp['p50']:.3f} / {lp['p99']:.3f} ms"
    s["throughput (free)"] = f"{res['free']['fps']:.1f} frames/s"
    s["deadline misses (paced)"] = (f"{res['paced']['misses']}/{res['paced']['frames']} over "
                                    f"{dl:.2f} ms")  # fmt: skip
    s["ISP+network vs memory floor"] = (f"{res['isp_net_ms']:.3f} ms = {res['x_floor']:.1f}x "
                                        f"floor {res['floor_ms']:.3f} ms")  # fmt: skip
    s["ISP+network vs IMX500 3.1 ms"] = f"{ratio(res['x_imx500'])}x"
    x = res["x_opencv"]  # on a GPU a few ten-thousandths: .3f had printed 0.000x
    faster = f"; the ISP {ratio(1 / x)}x faster" if 0 < x < 1 else ""
    s["ISP vs OpenCV CPU"] = (f"{ratio(x)}x (OpenCV {cv['p50']:.2f} ms, "
                              f"{res['opencv_threads']} threads{faster})")  # fmt: skip
    if "ms" in tr:
        tp = pcts(tr["ms"])
        dsp = res["stage_ms"].get("dsp", {}).get("p50", float("nan"))
        s["network vs PyTorch/cuDNN"] = (f"{dsp / tp['p50']:.2f}x (PyTorch {tp['p50']:.3f} ms, "
                                         f"rel err {tr['rel_err']:.1e})")  # fmt: skip
    else:
        s["network vs PyTorch/cuDNN"] = f"skipped: {tr['skipped']}"

    print("\n" + "-" * 78)
    for k, v in s.items():
        print(f"{k:<32} {v}")
    return s


def main(argv: list[str] | None = None) -> int:
    ap = ScriptParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=frame_size(MIN_SIDE), default=None, metavar="WxH",
                    help="frame size, even, at least 16x16 (default 3840x2160; emu 320x240)")
    ap.add_argument("--fps", type=frame_rate, default=60.0)
    ap.add_argument("--frames", type=positive_int, default=None,
                    help="default 300 on cuda, few on CPU")
    ap.add_argument("--backend", default="auto", choices=("auto", "cuda", "emu", "cpu"))
    ap.add_argument("--engine", default="auto", choices=("auto", "graph", "host"),
                    help="graph: the GPU path (graphs, two frames in flight), also on emu to "
                    "check it; host: stage by stage with host clocks (auto: graph on cuda)")
    ap.add_argument("--model", default=None, help="ONNX model (default: FastestDet)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args(argv)
    ap.check_output("--json", args.json)  # now, not after the benchmark
    res: dict[str, Any] = {}
    try:
        with stopped_by_sigterm():
            run(args, res)
        res["summary"] = report(res)
    except Stopped:  # `timeout` (gpu_check.sh's step limit): keep what was measured
        print("bench_deadline: stopped by SIGTERM; partial results written", file=sys.stderr)
        with contextlib.suppress(GputrackError, OSError):
            write_json(args.json, {**res, "summary": {"error": "stopped by SIGTERM before "
                                                      "the end: partial results"}})
        return 143
    except (GputrackError, ValueError, OSError) as err:
        print(f"bench_deadline: error: {err}", file=sys.stderr)
        # gpu_check.sh's summary table shows the error from the JSON; failing to write it
        # adds nothing to the error just printed
        with contextlib.suppress(GputrackError, OSError):
            write_json(args.json, {"summary": {"error": str(err)}})
        return getattr(err, "exit_code", 1)
    try:
        write_json(args.json, res)
    except (GputrackError, OSError) as err:  # e.g. the folder went away during the run
        print(f"bench_deadline: error: {err}", file=sys.stderr)
        return 1
    return 0


class Stopped(Exception):
    """SIGTERM arrived during the benchmark."""


@contextlib.contextmanager
def stopped_by_sigterm():
    """SIGTERM raises `Stopped` inside (and is restored after): `timeout` ends a step of
    gpu_check.sh so, and the results measured until then are still written."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise Stopped

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def finite_json(value: Any) -> Any:
    """`value` with NumPy scalars and arrays as Python ones and every NaN or infinity as None:
    json.dumps would write them as NaN/Infinity, which strict JSON readers refuse."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [finite_json(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_json(path: str | None, data: dict[str, Any]) -> None:
    """Written whole or not at all (atomic_path): never a partial JSON file; strict JSON."""
    if path:
        text = json.dumps(finite_json(data), indent=1, allow_nan=False)
        with atomic_path(path) as tmp:
            tmp.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
