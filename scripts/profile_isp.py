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

from gputrack.commands.args import ScriptParser, frame_size  # noqa: E402
from gputrack.device import get_backend  # noqa: E402
from gputrack.errors import GputrackError  # noqa: E402
from gputrack.isp import IspPipeline  # noqa: E402
from gputrack.isp.pipeline import SCHEDULE_RANGES  # noqa: E402
from gputrack.sensor import model  # noqa: E402


def schedule_knob(text: str) -> tuple[str, int]:
    """KNOB=N, KNOB one of isp.cu's schedule knobs and N in the range it builds with."""
    name, eq, value = text.partition("=")
    if name not in SCHEDULE_RANGES:
        raise argparse.ArgumentTypeError(
            f"'{text}': the knobs are {', '.join(sorted(SCHEDULE_RANGES))}"
        )
    low, high = SCHEDULE_RANGES[name]
    if not eq or not value.isdigit() or not low <= int(value) <= high:
        raise argparse.ArgumentTypeError(f"'{text}': give {name}=N, N from {low} to {high}")
    return name, int(value)


def main(argv: list[str] | None = None) -> int:
    ap = ScriptParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=frame_size(16), default=(3840, 2160), metavar="WxH",
                    help="frame size, even, at least 16x16 (default 3840x2160)")
    ap.add_argument("--device", choices=("cuda", "emu"), default="cuda")
    ap.add_argument("--schedule", nargs="*", type=schedule_knob, default=[], metavar="KNOB=N",
                    help="isp_main schedule knobs, e.g. ISP_STRIP=8")
    args = ap.parse_args(argv)
    try:
        return profile(*args.size, args.device, dict(args.schedule))
    except GputrackError as err:  # e.g. no GPU, or a schedule the kernels refuse
        print(f"{ap.prog}: error: {err}", file=sys.stderr)
        return err.exit_code


def profile(w: int, h: int, device: str, knobs: dict[str, int]) -> int:
    scene, raw, params = make_frame(w, h)
    be = get_backend(device)
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
