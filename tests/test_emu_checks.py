"""The emu backend's checks that a GPU does not make: poisoned shared memory and guard pages.

Every block starts with all its shared memory (static `__shared__` and dynamic) poisoned with
0x7FFF per aligned 2 bytes, and `GPUTRACK_EMU_GUARD=after|before` puts each device array of a
launch against a no-access page, so that an out-of-bounds access fails the launch by name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gputrack.device.ops_emu import GUARD_ENV
from gputrack.errors import KernelError

KERNELS = Path(__file__).parent / "kernels"
FEATURES = KERNELS / "emu_features.cu"

POISON_U32 = 0x7FFF7FFF

SHARED = """
// `fill` != 0: the block writes its shared memory; 0: it only reads it (never written).
extern "C" __global__ void leftover(const int* in, int* out, float* outf, int fill) {
    __shared__ int s[64];
    __shared__ float f[64];
    __shared__ unsigned short h[64];
    const int t = threadIdx.x;
    if (fill) {
        s[t] = in[t];
        f[t] = float(in[t]);
        h[t] = (unsigned short)in[t];
    }
    __syncthreads();
    out[t] = s[t];
    outf[t] = f[t];
    out[64 + t] = h[t];
}

extern "C" __global__ void leftover_dynamic(const int* in, int* out, int fill) {
    extern __shared__ int dyn[];
    __shared__ int s[32];
    const int t = threadIdx.x;
    if (fill) {
        dyn[t] = in[t];
        s[t] = in[t];
    }
    __syncthreads();
    out[t] = dyn[t];
    out[32 + t] = s[t];
}
"""

BOUNDS = """
extern "C" __global__ void shifted(const float* in, float* out, int n, int shift) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i + shift];
}

extern "C" __global__ void store_shifted(float* out, int n, int shift) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i + shift] = float(i);
}

extern "C" __global__ void wild(float* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = reinterpret_cast<const float*>(static_cast<unsigned long long>(64))[i];
}

extern "C" __global__ void scale_in_place(const float* in, float* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[n - 1 - i] = 2.0f * in[n - 1 - i];
}
"""


def load(emu, tmp_path: Path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return emu.load(path)


# --- poisoned shared memory ------------------------------------------------------------------


def test_static_shared_memory_starts_poisoned(emu, tmp_path):
    """A one-block launch runs on the launching OS thread, so without poisoning the second
    launch would read what the first left in the static __shared__ arrays."""
    kernel = load(emu, tmp_path, "leftover.cu", SHARED).kernel("leftover")
    values = np.arange(1, 65, dtype=np.int32)
    out = np.zeros(128, np.int32)
    outf = np.zeros(64, np.float32)
    kernel(1, 64, (values, out, outf, np.int32(1)))
    np.testing.assert_array_equal(out[:64], values)
    np.testing.assert_array_equal(outf, values)

    kernel(1, 64, (values, out, outf, np.int32(0)))  # reads shared memory it never wrote
    assert (out[:64].view(np.uint32) == POISON_U32).all(), out[:8]
    assert np.isnan(outf).all(), outf[:8]
    assert (out[64:] == 0x7FFF).all(), out[64:72]


def test_dynamic_and_static_shared_memory_start_poisoned(emu, tmp_path):
    kernel = load(emu, tmp_path, "leftover_dyn.cu", SHARED).kernel("leftover_dynamic")
    values = np.arange(100, 132, dtype=np.int32)
    out = np.zeros(64, np.int32)
    kernel(1, 32, (values, out, np.int32(1)), shared_mem=32 * 4)
    np.testing.assert_array_equal(out, np.concatenate([values, values]))
    kernel(1, 32, (values, out, np.int32(0)), shared_mem=32 * 4)
    assert (out.view(np.uint32) == POISON_U32).all(), out


# --- guard pages -----------------------------------------------------------------------------


def test_guard_is_off_by_default(emu, tmp_path, monkeypatch):
    monkeypatch.delenv(GUARD_ENV, raising=False)
    kernel = load(emu, tmp_path, "bounds_off.cu", BOUNDS).kernel("shifted")
    x = np.arange(64, dtype=np.float32)
    out = np.zeros(64, np.float32)
    kernel(1, 64, (x[:63], out, np.int32(63), np.int32(1)))  # in[63]: in x, past the view
    np.testing.assert_array_equal(out[:63], x[1:])


def test_read_past_the_end_is_reported(emu, tmp_path, monkeypatch):
    monkeypatch.setenv(GUARD_ENV, "after")
    kernel = load(emu, tmp_path, "bounds_after.cu", BOUNDS).kernel("shifted")
    x = np.arange(64, dtype=np.float32)
    out = np.zeros(64, np.float32)
    with pytest.raises(KernelError) as err:
        kernel(1, 64, (x, out, np.int32(64), np.int32(1)))
    message = str(err.value)
    assert "kernel shifted" in message
    assert "out-of-bounds read at byte offset 256 of parameter 'in' (256 bytes" in message
    assert "thread (63,0,0)" in message
    # The backend survives, and a correct launch gives the right answer.
    kernel(1, 64, (x, out, np.int32(63), np.int32(1)))
    np.testing.assert_array_equal(out[:63], x[1:])


def test_read_before_the_start_is_reported(emu, tmp_path, monkeypatch):
    monkeypatch.setenv(GUARD_ENV, "before")
    kernel = load(emu, tmp_path, "bounds_before.cu", BOUNDS).kernel("shifted")
    x = np.arange(50, dtype=np.float32)  # not a multiple of 16 bytes: `before` is exact anyway
    out = np.zeros(50, np.float32)
    with pytest.raises(KernelError, match=r"kernel shifted .*read at byte offset -4 of "):
        kernel(2, 32, (x, out, np.int32(50), np.int32(-1)))


def test_write_past_the_end_is_reported(emu, tmp_path, monkeypatch):
    monkeypatch.setenv(GUARD_ENV, "after")
    kernel = load(emu, tmp_path, "bounds_write.cu", BOUNDS).kernel("store_shifted")
    out = np.zeros(32, np.float32)
    with pytest.raises(KernelError, match=r"write at byte offset 128 of parameter 'out'"):
        kernel(1, 32, (out, np.int32(32), np.int32(1)))


def test_wild_pointer_is_reported(emu, tmp_path, monkeypatch):
    monkeypatch.setenv(GUARD_ENV, "after")
    kernel = load(emu, tmp_path, "bounds_wild.cu", BOUNDS).kernel("wild")
    with pytest.raises(KernelError, match=r"kernel wild .*invalid memory read at address 0x40"):
        kernel(1, 32, (np.zeros(32, np.float32), np.int32(32)))


def test_guard_keeps_results_and_aliasing(emu, tmp_path, monkeypatch):
    module = load(emu, tmp_path, "bounds_same.cu", BOUNDS)
    rng = np.random.default_rng(7)
    x = rng.standard_normal(1000).astype(np.float32)
    data = rng.integers(-1000, 1000, 300).astype(np.int32)
    results = {}
    for mode in ("", "after", "before"):
        monkeypatch.setenv(GUARD_ENV, mode)
        out = np.full(999, np.nan, np.float32)
        module.kernel("shifted")(8, 128, (x, out, np.int32(999), np.int32(1)))
        inplace = x.copy()  # the same array as input and output: the kernel must see one array
        module.kernel("scale_in_place")(8, 128, (inplace, inplace, np.int32(1000)))
        window = x.copy()  # overlapping views of one array
        module.kernel("shifted")(8, 128, (window[1:], window[:-1], np.int32(999), np.int32(0)))
        chunks = np.zeros(300, np.int32)  # dynamic shared memory, from the feature kernels
        emu.load(FEATURES).kernel("reverse_chunks")(
            3, 128, (data, chunks, np.int32(300)), shared_mem=128 * 4
        )
        results[mode] = (out, inplace, window, chunks)
    for mode in ("after", "before"):
        for got, want in zip(results[mode], results[""], strict=True):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(results[""][1], 2 * x)


def test_unknown_guard_mode_is_refused(emu, tmp_path, monkeypatch):
    monkeypatch.setenv(GUARD_ENV, "middle")
    kernel = load(emu, tmp_path, "bounds_mode.cu", BOUNDS).kernel("shifted")
    x = np.zeros(4, np.float32)
    with pytest.raises(KernelError, match=GUARD_ENV):
        kernel(1, 4, (x, x.copy(), np.int32(4), np.int32(0)))


FAULTS_ON_EVERY_WORKER = """
import numpy as np
from gputrack.device import get_backend
from gputrack.errors import KernelError
kernel = get_backend("emu").load({path!r}).kernel("shifted")
x = np.arange(256 * 64, dtype=np.float32)
out = np.zeros_like(x)
for _ in range(3):
    try:  # every thread but those of block 0 reads past the end of `in`
        kernel(256, 64, (x[:64], out, np.int32(256 * 64), np.int32(1)))
    except KernelError as err:
        print("error:", err)
kernel(1, 64, (x, out, np.int32(64), np.int32(1)))
print("after:", bool((out[:64] == x[1:65]).all()))
"""


def test_faults_on_helper_threads_become_errors(emu, tmp_path):
    """Faults on several worker threads at once end the launch with an error, not a hang or a
    crash (in a child process, so that a crash cannot take the test run with it)."""
    path = tmp_path / "bounds_workers.cu"
    path.write_text(BOUNDS)
    emu.load(path)  # built once here, with the compiler error visible if any
    env = {**os.environ, GUARD_ENV: "after", "GPUTRACK_EMU_THREADS": "4"}
    done = subprocess.run(
        [sys.executable, "-c", FAULTS_ON_EVERY_WORKER.format(path=str(path))],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 4, done.stdout
    for line in lines[:3]:
        assert re.search(r"out-of-bounds read at byte offset \d+ of parameter 'in'", line), line
    assert lines[3] == "after: True"
