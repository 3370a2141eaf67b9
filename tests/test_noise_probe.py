"""The sensor's Gaussian draw where its fast log is least accurate: u1 just below 1, where
-log(u1) is smaller than __logf's error on a GPU (a log >= 0 made sqrtf NaN, a black pixel).
On emu the log is exact; on cuda (scripts/gpu_check.sh) this is the hardware's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gputrack.sensor.model import gaussian_of_hash

KERNELS = Path(__file__).parent / "kernels" / "noise_probe.cu"


def hashes_near_one(rng, count: int = 64) -> np.ndarray:
    """Hashes whose u1 = ((h >> 40) + 1) / 2^24 is 1, 1 - 2^-24, ...: bits 40..63 near the top."""
    top = (1 << 24) - 1 - np.arange(count, dtype=np.uint64)
    low = rng.integers(0, 1 << 40, count, dtype=np.uint64)  # u2 and the unused bits at random
    return (top << np.uint64(40)) | low


def test_noise_near_u1_one_is_finite_and_small(kernel_backend, rng):
    h = hashes_near_one(rng)
    out = kernel_backend.full(len(h), np.nan, np.float32)
    mod = kernel_backend.load(KERNELS)
    mod.kernel("gaussian_at")(1, 64, (kernel_backend.to_device(h), out, np.int32(len(h))))
    got = kernel_backend.to_host(out)
    assert np.isfinite(got).all(), f"NaN noise at {np.flatnonzero(~np.isfinite(got))}"
    # the reference's float64 draw of the same hashes: near 0 here (sqrt(-2 log u1) < 0.02)
    np.testing.assert_allclose(got, gaussian_of_hash(h.copy()), atol=2e-3)
