"""Each ISP kernel launched once at 3840x2160, for a profiler to read (no timing here).

Nsight Compute profiles every launch it is given, so this runs each kernel of kernels/isp.cu
and kernels/sensor.cu exactly once, in the order isp_main (RGB8), isp_main (RGB8 + NV12),
AWB, isp_main, isp_tensor, isp_main_dir, sensor_from_u8. scripts/gpu_profile.sh runs it under `ncu`.

    python3 scripts/profile_isp.py [--size 3840x2160] [--device cuda|emu] [--schedule K=V ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_isp import TENSOR, make_frame  # noqa: E402

from gputrack.device import get_backend  # noqa: E402
from gputrack.isp import IspPipeline  # noqa: E402
from gputrack.sensor import model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="3840x2160")
    ap.add_argument("--device", choices=("cuda", "emu"), default="cuda")
    ap.add_argument("--schedule", nargs="*", default=[], metavar="KNOB=N",
                    help="isp_main schedule knobs, e.g. ISP_STRIP=8")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    knobs = {k: int(v) for k, v in (kv.split("=", 1) for kv in args.schedule)}
    scene, raw, params = make_frame(w, h)
    be = get_backend(args.device)
    dev_raw = be.to_device(raw)
    runs = [
        ("isp_main -> RGB8", IspPipeline(params, be, schedule=knobs)),
        ("isp_main -> RGB8 + NV12", IspPipeline(params.with_(nv12=True), be, schedule=knobs)),
        ("AWB + isp_main + isp_tensor",
         IspPipeline(params.with_(wb="auto", tensor=TENSOR), be, schedule=knobs)),
        ("isp_main_dir -> RGB8", IspPipeline(params.with_(demosaic="directional"), be)),
    ]  # fmt: skip
    sensor = model.SensorModel(model.SensorParams(isp=params, noise=True), be)
    for name, pipe in runs:
        out = pipe.process(dev_raw, download=True)
        print(f"{name}: rgb8 mean {float(np.mean(out.rgb8)):.1f}")
    sensor.render(be.to_device(np.ascontiguousarray(scene)), download=False)
    be.synchronize()
    print("sensor_from_u8: done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
