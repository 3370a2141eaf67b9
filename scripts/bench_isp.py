"""ISP speed at 3840x2160, 12-bit RGGB.

On a GPU (`cuda` backend): each kernel of kernels/isp.cu and kernels/sensor.cu captured in a
CUDA graph and timed with CUDA events (warm-up, then the median of many single replays, L2
flushed before each), against the memory floor of that kernel: the bytes it must move divided
by the device-to-device copy bandwidth measured in this run (a 1 GiB CuPy copy, read + write
counted). The whole-ISP row's floor is the sum of its kernels' (the RAW read by the AWB stats
and again by the main pass, RGB8 written and read back by the tensor pass); it is also given
against the ISP's own floor (`isp_bytes`: RAW read once, the outputs written once), which is
what a fused ISP would have to beat. Inside that row's graph no flush separates the kernels,
so a re-read may come from L2, as in the pipeline.
The ISP's rows have a second figure, "ring": a graph of RING_GPU launches, each on
a frame of its own (its own RAW and output buffers, together far larger than L2), per launch.
A single-launch graph carries the graph launch's fixed cost (a few microseconds, as much as a
small kernel's floor); back to back, as in a frame's graph, most of it is hidden.

On the CPU: the `cpu` backend (the NumPy/OpenCV reference in float32) against OpenCV's own
demosaicing of the same frame (`cv2.demosaicing`, COLOR_BayerBG2BGR for RGGB: OpenCV names
the pattern from the second row and column), which does far less: no white balance, colour
matrix, tone curve or 8-bit output. Optionally (--emu) the real kernels on the CPU emulator.

    .venv/bin/python scripts/bench_isp.py [--size 3840x2160] [--reps 200] [--emu] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gputrack.commands.args import ScriptParser, frame_size, positive_int  # noqa: E402
from gputrack.device import get_backend, probe  # noqa: E402
from gputrack.device.bandwidth import device_copy_gbs  # noqa: E402
from gputrack.errors import BackendUnavailable, GputrackError, UsageError  # noqa: E402
from gputrack.isp import IspParams, IspPipeline, TensorSpec  # noqa: E402
from gputrack.isp import reference as ref  # noqa: E402
from gputrack.isp.params import pattern_offsets  # noqa: E402
from gputrack.isp.pipeline import (  # noqa: E402
    AWB_BLOCK,
    AWB_ROWS,
    AWB_WORDS,
    MAIN_BLOCK,
    TENSOR_BLOCK,
    TILE,
    awb_grid,
)
from gputrack.outputs.files import atomic_path  # noqa: E402
from gputrack.sensor import model  # noqa: E402
from gputrack.sensor.synthetic import SyntheticWorld  # noqa: E402

# Frames in the ring timing: 8 x (16.6 MB RAW + 25 MB RGB8 [+ 12 MB NV12]) at 4K, several
# times an H100's or H200's L2 (50 / 60 MB), so each launch reads and writes DRAM.
RING_GPU = 8
TENSOR = TensorSpec(640, 640)  # a YOLO-sized input: 3840x2160 -> 640x360 letterboxed
# FastestDet's input, as the deadline benchmark makes it: 3840x2160 -> 352x198, a fractional
# scale (10.9), where a footprint's end rows are partial.
TENSOR_DET = TensorSpec(352, 352)

# --sweep: isp_main's (cells per thread, strip, blocks per SM, direct stores), then
# isp_awb_stats' cell rows. One cell per thread, strip 4, 4 blocks per SM is the schedule
# timed at 0a2f719 (16-row tiles; strip 2 and 2 blocks per SM lost clearly then); with one
# cell, 5 blocks per SM (48 registers) no longer spills. Two cells per thread (the default,
# strip 2: the same 64 rows per block) take 45.7 KB of shared memory per block: 4 blocks per
# SM at most.
OLD_MAIN = (1, 4, 4, 0)
MAIN_SWEEP = [OLD_MAIN, (1, 8, 4, 0), (1, 4, 5, 0), (1, 4, 4, 1),
              (2, 1, 4, 0), (2, 4, 4, 0), (2, 2, 3, 0), (2, 2, 4, 1)]  # fmt: skip
SWEEP: list[dict[str, int]] = [
    {"ISP_CELLS": c, "ISP_STRIP": s, "ISP_MIN_BLOCKS": b, "ISP_DIRECT_STORE": d}
    for c, s, b, d in MAIN_SWEEP
] + [{"AWB_ROWS": r} for r in (2, 3, 8)]  # 3: all 6 loads before the first use


def kernel_resources(module: Any, name: str, block: tuple[int, ...]) -> str:
    """', 48 regs, 0 B local, 5 blocks/SM' as the driver has the built kernel (cuda only): a
    sweep variant that spilled or missed its occupancy shows it in its row."""
    try:
        fn = module.kernel(name).native  # a CuPy RawKernel
        text = f", {fn.num_regs} regs, {fn.local_size_bytes} B local"
    except Exception:  # noqa: BLE001 - a label, never a reason to stop the benchmark
        return ""
    try:
        from cupy.cuda import driver

        threads = int(np.prod(block))
        blocks = driver.occupancyMaxActiveBlocksPerMultiprocessor(fn.kernel.ptr, threads, 0)
        text += f", {blocks} resident"
    except Exception:  # noqa: BLE001
        pass
    return text


def isp_bytes(w: int, h: int, nv12: bool, tensor: TensorSpec | None) -> int:
    """The ISP's own floor, as one pass would move it: the RAW (uint16) read once, RGB8 (and
    NV12) and the float32 tensor written once. The kernels' floors add the second read of the
    RAW (grey-world stats, then the main pass) and the tensor pass's read of RGB8: bytes that
    two kernels move, not bytes the ISP must move."""
    px = w * h
    out = 3 * px + (px * 3 // 2 if nv12 else 0)
    return 2 * px + out + (3 * 4 * tensor.width * tensor.height if tensor else 0)


def make_frame(w: int, h: int) -> tuple[np.ndarray, np.ndarray, IspParams]:
    """A synthetic-world scene and its noisy 12-bit RAW frame (sensor model reference)."""
    scene = SyntheticWorld(w, h, seed=1).render(30)
    params = IspParams()
    raw = model.reference(scene, model.SensorParams(isp=params, noise=True, seed=1))
    return scene, raw, params


def cpu_times(fn, reps: int) -> list[float]:
    fn()  # warm-up: allocations, caches
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def bench_cpu(
    scene: np.ndarray, raw: np.ndarray, params: IspParams, reps: int, emu: bool
) -> list[dict]:
    rows = []
    cpu = get_backend("cpu")
    isp = IspPipeline(params, cpu)
    isp_all = IspPipeline(params.with_(wb="auto", nv12=True, tensor=TENSOR), cpu)
    rows.append({"what": "cpu backend: ISP -> RGB8 (fixed WB, MHC)",
                 "ms": cpu_times(lambda: isp.process(raw), reps)})  # fmt: skip
    rows.append({"what": "cpu backend: ISP -> RGB8 + NV12 + tensor, auto WB",
                 "ms": cpu_times(lambda: isp_all.process(raw), reps)})  # fmt: skip
    rows.append(
        {
            "what": "cpu backend: MHC demosaic alone (float32)",
            "ms": cpu_times(lambda: ref.demosaic(raw.astype(np.float32), "RGGB"), reps),
        }
    )
    rows.append(
        {
            "what": "OpenCV demosaicing bilinear (uint16, COLOR_BayerBG2BGR)",
            "ms": cpu_times(lambda: cv2.demosaicing(raw, cv2.COLOR_BayerBG2BGR), reps),
        }
    )
    rows.append(
        {
            "what": "OpenCV demosaicing EA (uint16, COLOR_BayerBG2BGR_EA)",
            "ms": cpu_times(lambda: cv2.demosaicing(raw, cv2.COLOR_BayerBG2BGR_EA), reps),
        }
    )
    sensor = model.SensorModel(model.SensorParams(isp=params, noise=True), cpu)
    rows.append(
        {
            "what": "cpu backend: sensor model (scene -> RAW, noise)",
            "ms": cpu_times(lambda: sensor.render(scene), max(1, reps // 2)),
        }
    )
    if emu:
        if probe("emu").available:
            be = get_backend("emu")
            eisp = IspPipeline(params, be)
            dev = be.to_device(raw)
            rows.append(
                {
                    "what": "emu backend: isp_main kernel on the CPU emulator",
                    "ms": cpu_times(lambda: eisp.process(dev, download=False), 2),
                }
            )
        else:
            print(f"emu unavailable: {probe('emu').reason}")
    return rows


def bench_device(
    backend: str,
    scene: np.ndarray,
    raw: np.ndarray,
    params: IspParams,
    reps: int,
    sweep: list[dict[str, int]],
) -> dict[str, Any]:
    """The kernel table. On `cuda` the measurement; on `emu` the same code path at small sizes
    (tests/test_bench_isp.py runs it so that a GPU session does not find its bugs)."""
    be = get_backend(backend)
    on_gpu = backend == "cuda"
    ring = RING_GPU if on_gpu else 2
    stream = be.stream()
    h, w = raw.shape
    px = w * h

    # L2 (50 MB on an H100) would hold much of a 4K frame between back-to-back runs; a write
    # of a buffer larger than L2 before each timed run makes every run read from DRAM, as a
    # pipeline frame does. The flush is queued before the start event, so the GPU never
    # waits for the host inside the timed window.
    flush_src = be.full((128 << 20) if on_gpu else 4096, 1, np.uint8)
    flush_dst = be.empty(flush_src.shape, np.uint8)

    def timed(fn, n: int = reps) -> list[float]:
        fn()  # first call: constants and buffers are made here, outside the graph
        be.synchronize()  # all of it: uploads and the sensor row run on the default stream
        graph = be.capture(fn, stream)  # replayed: no Python launch overhead in the timing
        for _ in range(5):
            graph.replay(stream)
        out = []
        for _ in range(n):
            be.copy(flush_dst, flush_src, stream)
            t = be.timer(stream)
            t.start()
            graph.replay(stream)
            t.stop()
            out.append(t.elapsed_ms())
        return out

    bw = device_copy_gbs(be, stream) * 1e9  # bytes per second, read + write counted

    dev_raw = be.to_device(raw)
    dev_scene = be.to_device(np.ascontiguousarray(scene))
    rx, ry = pattern_offsets(params.pattern)
    i32 = np.int32
    isp = IspPipeline(params, be)
    isp_nv12 = IspPipeline(params.with_(nv12=True), be)
    isp_all = IspPipeline(params.with_(wb="auto", nv12=True, tensor=TENSOR), be)
    isp_dir = IspPipeline(params.with_(demosaic="directional"), be)
    mod = be.load("isp.cu")
    isp.process(dev_raw, download=False, stream=stream)
    rgb8 = isp._buffers["rgb8"]
    stats = be.full((AWB_WORDS,), 0, np.uint64)
    tensor = be.empty((1, 3, TENSOR.height, TENSOR.width), np.float32)
    tcfg = be.to_device(np.array([0, 0, 0, 1 / 255, 1 / 255, 1 / 255, 114, 0], np.float32))
    sensor = model.SensorModel(model.SensorParams(isp=params, noise=True), be)

    def awb(module: Any = mod, rows: int = AWB_ROWS, src: Any = dev_raw, out: Any = stats) -> None:
        module.kernel("isp_awb_stats")(awb_grid(w, h, rows), AWB_BLOCK, (src, i32(w), i32(h),
                                       i32(rx), i32(ry), i32(params.black),
                                       i32(ref.awb_threshold(params)), out),
                                       stream=stream)  # fmt: skip

    def awb_frame() -> Any:  # a frame of the ring: its own RAW and sums
        src, out = be.to_device(raw), be.full((AWB_WORDS,), 0, np.uint64)
        return lambda: awb(src=src, out=out)

    def isp_frame(p: IspParams) -> Any:
        def make() -> Any:  # a frame of the ring: its own RAW and pipeline (output buffers)
            src, pipe = be.to_device(raw), IspPipeline(p, be)
            return lambda: pipe.process(src, download=False, stream=stream)

        return make

    def ring_ms(make: Any) -> list[float]:
        frames = [make() for _ in range(ring)]
        return [t / ring for t in timed(lambda: [f() for f in frames])]

    def tensor_pass(src: Any = rgb8, out: Any = tensor, spec: TensorSpec = TENSOR) -> None:
        cw, ch, padx, pady = spec.geometry(w, h)
        tgrid = (-(-spec.width // TENSOR_BLOCK[0]), -(-spec.height // TENSOR_BLOCK[1]))
        mod.kernel("isp_tensor")(tgrid, TENSOR_BLOCK, (src, i32(w), i32(h), tcfg,
                                 i32(spec.width), i32(spec.height), i32(cw), i32(ch),
                                 i32(padx), i32(pady), i32(0), i32(0), out, None),
                                 stream=stream)  # fmt: skip

    host_rgb8 = be.to_host(rgb8, stream=stream)  # written on `stream`, not the default

    def tensor_frame(spec: TensorSpec = TENSOR) -> Any:
        def make() -> Any:  # a frame of the ring: its own image and tensor
            src = be.to_device(host_rgb8)
            out = be.empty((1, 3, spec.height, spec.width), np.float32)
            return lambda: tensor_pass(src, out, spec)

        return make

    def tensor_out(spec: TensorSpec) -> int:  # bytes written: 3 float32 planes
        return 3 * 4 * spec.width * spec.height

    det_out = be.empty((1, 3, TENSOR_DET.height, TENSOR_DET.width), np.float32)
    cases = [  # (row, one launch, bytes it must move, a ring frame's maker or None)
        ("isp_awb_stats", awb, 2 * px, awb_frame),
        ("isp_main -> RGB8", lambda: isp.process(dev_raw, download=False, stream=stream),
         2 * px + 3 * px, isp_frame(isp.params)),
        ("isp_main -> RGB8 + NV12", lambda: isp_nv12.process(dev_raw, download=False,
                                                               stream=stream), 2 * px + 4.5 * px,
         isp_frame(isp_nv12.params)),
        ("isp_main_dir -> RGB8 (directional)", lambda: isp_dir.process(dev_raw, download=False,
                                                                        stream=stream),
         2 * px + 3 * px, isp_frame(isp_dir.params)),
        ("isp_tensor 640x640 area", tensor_pass, 3 * px + tensor_out(TENSOR), tensor_frame()),
        ("isp_tensor 352x352 area (fractional scale)",
         lambda: tensor_pass(rgb8, det_out, TENSOR_DET),
         3 * px + tensor_out(TENSOR_DET), tensor_frame(TENSOR_DET)),
        ("whole ISP: AWB + main (RGB8+NV12) + tensor",
         lambda: isp_all.process(dev_raw, download=False, stream=stream),
         2 * px + 2 * px + 4.5 * px + 3 * px + tensor_out(TENSOR), isp_frame(isp_all.params)),
        ("sensor_from_u8 (scene -> RAW, noise)",
         lambda: sensor.render(dev_scene, download=False), 3 * px + 2 * px, None),
    ]  # fmt: skip
    for knobs in sweep:  # the schedule knobs: the same result, other speeds
        variant = IspPipeline(params, be, schedule=knobs)
        if "AWB_ROWS" in knobs:
            rows = knobs["AWB_ROWS"]
            cases.append((f"isp_awb_stats [{rows} cell rows/thread]",
                          lambda m=variant._module, r=rows: awb(m, r), 2 * px, None))  # fmt: skip
            continue
        cells, strip, min_blocks = knobs["ISP_CELLS"], knobs["ISP_STRIP"], knobs["ISP_MIN_BLOCKS"]
        direct = ", direct" if knobs["ISP_DIRECT_STORE"] else ""  # stores
        res = kernel_resources(variant._module, "isp_main", MAIN_BLOCK) if on_gpu else ""
        shape = f"{cells} cell{'s' if cells > 1 else ''}, strip {strip}"
        cases.append((f"isp_main -> RGB8 [{shape}, {min_blocks} blocks/SM{direct}{res}]",
                      lambda v=variant: v.process(dev_raw, download=False, stream=stream),
                      2 * px + 3 * px, None))  # fmt: skip
        old = (cells, strip, min_blocks, knobs["ISP_DIRECT_STORE"]) == OLD_MAIN
        if old or knobs["ISP_DIRECT_STORE"] or min_blocks > 4:  # NV12 too
            nv12_variant = IspPipeline(params.with_(nv12=True), be, schedule=knobs)
            cases.append((f"isp_main -> RGB8 + NV12 [{shape}, {min_blocks}/SM{direct}]",
                          lambda v=nv12_variant: v.process(dev_raw, download=False,
                                                           stream=stream),
                          2 * px + 4.5 * px, None))  # fmt: skip
        if knobs["ISP_DIRECT_STORE"] and cells == 1:  # isp_main_dir: no cells, strip, blocks
            dir_variant = IspPipeline(params.with_(demosaic="directional"), be, schedule=knobs)
            cases.append((f"isp_main_dir -> RGB8 [{direct[2:]}]",
                          lambda v=dir_variant: v.process(dev_raw, download=False,
                                                          stream=stream),
                          2 * px + 3 * px, None))  # fmt: skip
    rows = []
    for name, fn, nbytes, frame in cases:
        row = {"what": name, "ms": timed(fn), "bytes": nbytes, "floor_ms": nbytes / bw * 1e3}
        if frame is not None:
            row["ring_ms"] = ring_ms(frame)
        if name.startswith("whole ISP"):  # also against the ISP's own floor (isp_bytes)
            row["isp_bytes"] = own = isp_bytes(w, h, nv12=True, tensor=TENSOR)
            row["isp_floor_ms"] = own / bw * 1e3
        rows.append(row)
    _ = (MAIN_BLOCK, TILE)  # launch shapes are the pipeline's own
    from gputrack.device.ops_cuda import gpu_info

    device = gpu_info() if on_gpu else {"name": be.describe()}
    return {"backend": backend, "copy_bandwidth_gbs": bw / 1e9, "rows": rows, "gpu": device,
            "ring_frames": ring}  # fmt: skip


# The synthetic world's smallest frame; even sides: whole Bayer cells.
MIN_SIDE = 16


def main(argv: list[str] | None = None) -> int:
    ap = ScriptParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=frame_size(MIN_SIDE), default=(3840, 2160), metavar="WxH",
                    help="frame size, even, at least 16x16 (default 3840x2160)")
    ap.add_argument("--reps", type=positive_int, default=200,
                    help="GPU repetitions (CPU: reps // 40, at least 3)")
    ap.add_argument("--emu", action="store_true", help="also time isp_main on the emulator")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--sweep", action="store_true",
                    help="GPU: also time the schedule knobs (isp_main's ISP_CELLS, ISP_STRIP, "
                    "ISP_MIN_BLOCKS and ISP_DIRECT_STORE, isp_awb_stats' AWB_ROWS)")
    ap.add_argument("--no-cpu", action="store_true", help="only the kernel table")
    ap.add_argument("--device", choices=("auto", "cuda", "emu"), default="auto",
                    help="backend of the kernel table (auto: cuda when there is one; emu only "
                    "checks that the table runs)")
    args = ap.parse_args(argv)
    ap.check_output("--json", args.json)  # now, not after minutes of timing
    try:
        return bench(args)
    except GputrackError as err:
        print(f"bench_isp: error: {err}", file=sys.stderr)
        return err.exit_code


def bench(args: argparse.Namespace) -> int:
    cuda = probe("cuda")
    device = "cuda" if args.device == "auto" and cuda.available else args.device
    if device != "auto" and not probe(device).available:  # asked for by name: not a skip
        raise BackendUnavailable(f"--device {device}: unavailable ({probe(device).reason})")
    if device == "auto" and args.no_cpu:
        raise UsageError(f"--no-cpu: nothing to time (cuda unavailable: {cuda.reason})")
    if args.sweep and device == "auto":  # (on emu it runs: that checks its code path)
        print("--sweep: no kernel table without cuda, so no schedule sweep either")
    w, h = args.size
    t0 = time.perf_counter()
    scene, raw, params = make_frame(w, h)
    print(f"frame {w}x{h} 12-bit RGGB from the synthetic world ({time.perf_counter() - t0:.1f} s); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads)")  # fmt: skip
    result: dict[str, Any] = {"size": [w, h], "summary": {}}

    if device != "auto":
        sweep = SWEEP if args.sweep else []
        g = bench_device(device, scene, raw, params, args.reps, sweep)
        result["gpu"] = g
        print(f"\n{device}: {g['gpu']}; device-to-device copy "
              f"{g['copy_bandwidth_gbs']:.0f} GB/s")  # fmt: skip
        print(f"{'kernel':<48} {'median ms':>10} {'p90 ms':>8} {'floor ms':>9} {'x floor':>8} "
              f"{'ring ms':>8} {'x floor':>8}")  # fmt: skip
        for r in g["rows"]:
            print(table_row(r))
            summary = f"{r['median_ms']:.4f} ms ({r['x_floor']:.2f}x floor)"
            if "ring_ms" in r:
                summary += f"; ring {r['ring_median_ms']:.4f} ms ({r['ring_x_floor']:.2f}x)"
            if "isp_floor_ms" in r:
                summary += f"; {r['x_isp_floor']:.2f}x the ISP's own floor"
                print(f"  {r['what']}: the ISP's own floor (RAW read once, outputs written once) "
                      f"{r['isp_bytes'] / 1e6:.1f} MB, {r['isp_floor_ms']:.4f} ms: "
                      f"{r['x_isp_floor']:.2f}x")  # fmt: skip
            result["summary"][f"gpu {r['what']}"] = summary
        if not args.no_cpu:  # now too: a CPU part cut short by a time limit keeps the table
            finish(result, args.json)
    else:
        print(f"\ncuda unavailable ({cuda.reason}): kernel table skipped")
        result["summary"]["gpu"] = f"cuda unavailable: {cuda.reason}"

    if args.no_cpu:
        return finish(result, args.json)
    rows = bench_cpu(scene, raw, params, max(3, args.reps // 40), args.emu)
    result["cpu"] = rows
    print(f"\nCPU ({os.cpu_count()} cores)")
    print(f"{'what':<58} {'median ms':>10} {'min ms':>9}")
    for r in rows:
        med = statistics.median(r["ms"])
        r["median_ms"] = med
        print(f"{r['what']:<58} {med:>10.1f} {min(r['ms']):>9.1f}")
    cv_ms = statistics.median(rows[3]["ms"])
    ratio = statistics.median(rows[0]["ms"]) / cv_ms
    print(f"cpu backend ISP -> RGB8 (the whole chain) / OpenCV bilinear demosaic alone: "
          f"{ratio:.1f}x")  # fmt: skip
    result["summary"]["cpu ISP -> RGB8"] = f"{rows[0]['median_ms']:.1f} ms"
    result["summary"]["OpenCV bilinear demosaic"] = f"{cv_ms:.1f} ms"
    return finish(result, args.json)


def table_row(r: dict[str, Any]) -> str:
    """A kernel row's printed line; the figures it prints are stored in the row (the JSON)
    first: median and p90 (of the single launches), x floor, and the ring's."""
    r["median_ms"] = med = statistics.median(r["ms"])
    r["p90_ms"] = p90 = float(np.percentile(r["ms"], 90))
    r["x_floor"] = med / r["floor_ms"]
    ring = ""
    if "ring_ms" in r:
        r["ring_median_ms"] = rmed = statistics.median(r["ring_ms"])
        r["ring_x_floor"] = rmed / r["floor_ms"]
        ring = f" {rmed:>8.4f} {r['ring_x_floor']:>8.2f}"
    if "isp_floor_ms" in r:
        r["x_isp_floor"] = med / r["isp_floor_ms"]
    return (f"{r['what']:<48} {med:>10.4f} {p90:>8.4f} {r['floor_ms']:>9.4f} "
            f"{r['x_floor']:>8.2f}{ring}")  # fmt: skip


def finish(result: dict[str, Any], json_path: str | None) -> int:
    if json_path:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
