"""The memory floor's denominator: how fast this device copies, measured in the same run as
the kernels it is compared with (a datasheet figure is a lead, not a measurement)."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from gputrack.device.base import Backend


def device_copy_gbs(
    backend: Backend, stream: Any = None, n_bytes: int | None = None, reps: int | None = None
) -> float:
    """Device-to-device copy bandwidth in GB/s, bytes read plus bytes written, the median of
    `reps` copies after two warm-ups, timed with the backend's timer (CUDA events on cuda).
    Defaults: 1 GiB x 12 on a GPU; 1 MiB x 2 on host backends (emu, cpu), where the figure
    only lets GPU code paths run end to end."""
    on_gpu = backend.name in ("cuda", "pycuda")
    n_bytes = n_bytes if n_bytes is not None else (1 << 30 if on_gpu else 1 << 20)
    reps = reps if reps is not None else (12 if on_gpu else 2)
    stream = stream if stream is not None else backend.stream()
    src = backend.full(n_bytes, 1, np.uint8)
    dst = backend.empty(n_bytes, np.uint8)
    times = []
    for _ in range(reps + 2):
        timer = backend.timer(stream)
        timer.start()
        backend.copy(dst, src, stream)
        timer.stop()
        times.append(timer.elapsed_ms())
    return 2 * n_bytes / (statistics.median(times[2:]) * 1e-3) / 1e9
