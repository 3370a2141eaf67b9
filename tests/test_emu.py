"""The emu backend proven feature by feature, on fresh random inputs of odd sizes.

Kernel tests run on every backend that runs CUDA sources (`kernel_backend`), so the same tests
check the `cuda` backend on a GPU machine. Outputs are poisoned first: an element a kernel
forgot to write fails. Tests of emu-only behaviour (load-time refusals, cache, errors) use the
emu backend directly.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gputrack.device import get_backend, probe
from gputrack.errors import KernelError

KERNELS = Path(__file__).parent / "kernels"
FEATURES = KERNELS / "emu_features.cu"
HALF = KERNELS / "emu_half.cu"

POISON_I32 = np.int32(-0x21524111)  # 0xDEADBEEF
POISON_U32 = np.uint32(0xDEADBEEF)


def odd_size(rng: np.random.Generator, block: int, min_blocks: int, max_blocks: int) -> int:
    """A size that leaves the last block partly empty, by an odd amount."""
    blocks = int(rng.integers(min_blocks, max_blocks + 1))
    return blocks * block + int(rng.integers(0, block // 2)) * 2 + 1


def blocks_for(n: int, block: int) -> int:
    return (n + block - 1) // block


# --- kernels, on every backend -------------------------------------------------------------


@pytest.mark.parametrize("block", [128, 1024])
def test_block_sum_with_barriers(kernel_backend, rng, block):
    b = kernel_backend
    n = odd_size(rng, block, 3, 9)
    x = rng.integers(-100, 100, n).astype(np.float32)  # integer values: sums are exact
    blocks = blocks_for(n, block)
    partial = b.full(blocks, np.nan, np.float32)
    b.load(FEATURES).kernel("block_sum")(blocks, block, (b.to_device(x), partial, np.int32(n)))
    padded = np.zeros(blocks * block, np.float32)
    padded[:n] = x
    np.testing.assert_array_equal(b.to_host(partial), padded.reshape(blocks, block).sum(axis=1))


def test_warp_shuffles(kernel_backend, rng):
    b = kernel_backend
    block = 96
    n = odd_size(rng, block, 4, 12)
    x = rng.integers(-1000, 1000, n).astype(np.int32)
    blocks = blocks_for(n, block)
    warps_written = blocks_for(n, 32)
    outs = {
        "sum_down": b.full(warps_written, POISON_I32, np.int32),
        **{k: b.full(n, POISON_I32, np.int32) for k in ("sum_xor", "sum16", "scan", "bcast")},
    }
    b.load(FEATURES).kernel("warp_ops")(
        blocks, block, (b.to_device(x), *outs.values(), np.int32(n))
    )
    lanes = np.zeros(blocks * block, np.int32)
    lanes[:n] = x
    warps = lanes.reshape(-1, 32)
    halves = lanes.reshape(-1, 16)
    expected = {
        "sum_down": warps.sum(axis=1)[:warps_written],
        "sum_xor": np.repeat(warps.sum(axis=1), 32)[:n],
        "sum16": np.repeat(halves.sum(axis=1), 16)[:n],
        "scan": np.cumsum(warps, axis=1).ravel()[:n],
        "bcast": np.repeat(warps[:, 5], 32)[:n],
    }
    for name, want in expected.items():
        np.testing.assert_array_equal(b.to_host(outs[name]), want, err_msg=name)


def test_warp_votes(kernel_backend, rng):
    b = kernel_backend
    block = 64
    n = odd_size(rng, block, 4, 10)
    # Whole warps above or below the threshold, so that __all_sync is sometimes true.
    level = np.repeat(rng.choice([0.1, 0.9, 0.5], blocks_for(n, 32)), 32)[:n]
    x = (level + rng.uniform(-0.45, 0.45, n) * (level == 0.5)).astype(np.float32)
    blocks = blocks_for(n, block)
    warps = blocks_for(n, 32)
    ballots = b.full(warps, POISON_U32, np.uint32)
    anys, alls = b.full(warps, POISON_I32, np.int32), b.full(warps, POISON_I32, np.int32)
    b.load(FEATURES).kernel("votes")(
        blocks, block, (b.to_device(x), ballots, anys, alls, np.int32(n), np.float32(0.5))
    )
    pred = np.zeros(blocks * block, bool)
    pred[:n] = x > 0.5
    bits = pred.reshape(-1, 32)[:warps]
    want_ballot = (bits * (np.uint64(1) << np.arange(32, dtype=np.uint64))).sum(axis=1)
    np.testing.assert_array_equal(b.to_host(ballots), want_ballot.astype(np.uint32))
    np.testing.assert_array_equal(b.to_host(anys), bits.any(axis=1).astype(np.int32))
    np.testing.assert_array_equal(b.to_host(alls), bits.all(axis=1).astype(np.int32))


def test_atomics_histogram(kernel_backend, rng):
    b = kernel_backend
    block = 256
    n = odd_size(rng, block, 100, 200)
    values = rng.integers(0, 100_000, n).astype(np.int32)
    reals = rng.standard_normal(n).astype(np.float32)
    num_bins = 7  # few bins: many threads hit the same counter
    bins = b.to_device(np.zeros(num_bins, np.int32))
    max_value = b.to_device(np.array([np.iinfo(np.int32).min], np.int32))
    min_value = b.to_device(np.array([np.iinfo(np.uint32).max], np.uint32))
    max_real = b.to_device(np.array([-np.inf], np.float32))
    total = b.to_device(np.zeros(1, np.uint64))
    b.load(FEATURES).kernel("histogram")(
        blocks_for(n, block),
        block,
        (
            b.to_device(values),
            b.to_device(reals),
            np.int32(n),
            bins,
            np.int32(num_bins),
            max_value,
            min_value,
            max_real,
            total,
        ),
    )
    np.testing.assert_array_equal(b.to_host(bins), np.bincount(values % num_bins, minlength=7))
    assert b.to_host(max_value)[0] == values.max()
    assert b.to_host(min_value)[0] == values.min()
    assert b.to_host(max_real)[0] == reals.max()
    assert b.to_host(total)[0] == values.astype(np.uint64).sum()


def stencil_reference(image: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The kernel's sum in its order, in float32 (edges clamped)."""
    h, w = image.shape
    padded = np.pad(image, 2, mode="edge")
    acc = np.zeros_like(image)
    for dy in range(5):
        for dx in range(5):
            acc = acc + weights[dy * 5 + dx] * padded[dy : dy + h, dx : dx + w]
    return acc


@pytest.mark.parametrize(
    ("width", "height", "tile"), [(123, 77, 16), (1920, 1080, 16), (37, 41, 8)]
)
def test_stencil_with_shared_halo(kernel_backend, rng, width, height, tile):
    b = kernel_backend
    image = rng.random((height, width), dtype=np.float32)
    weights = rng.standard_normal(25).astype(np.float32)
    out = b.full((height, width), np.nan, np.float32)
    module = b.load(FEATURES, defines={"STENCIL_TILE": tile} if tile != 16 else None)
    grid = (blocks_for(width, tile), blocks_for(height, tile))
    module.kernel("stencil5x5")(
        grid,
        (tile, tile),
        (b.to_device(image), out, b.to_device(weights), np.int32(width), np.int32(height)),
    )
    # GPUs fuse multiply-adds; the emulator does not: equal within rounding.
    np.testing.assert_allclose(
        b.to_host(out), stencil_reference(image, weights), rtol=1e-5, atol=1e-5
    )


def test_dynamic_shared_memory(kernel_backend, rng):
    b = kernel_backend
    module = b.load(FEATURES)

    block = 128
    n = odd_size(rng, block, 3, 8)
    x = rng.integers(-(2**30), 2**30, n).astype(np.int32)
    out = b.full(n, POISON_I32, np.int32)
    module.kernel("reverse_chunks")(
        blocks_for(n, block), block, (b.to_device(x), out, np.int32(n)), shared_mem=block * 4
    )
    want = np.concatenate([x[s : s + block][::-1] for s in range(0, n, block)])
    np.testing.assert_array_equal(b.to_host(out), want)

    block = 96
    n = odd_size(rng, block, 3, 8)
    values = rng.standard_normal(n).astype(np.float32)
    k = np.float32(rng.uniform(-2, 2))
    result = b.full(n, np.nan, np.float32)
    module.kernel("rotate_scaled")(
        blocks_for(n, block),
        block,
        (b.to_device(values), result, np.int32(n), k),
        shared_mem=block * 4,
    )
    lanes = np.zeros(blocks_for(n, block) * block, np.float32)
    lanes[:n] = values
    per_block = lanes.reshape(-1, block)
    want_f = (per_block * k + np.roll(per_block, -1, axis=1)).ravel()[:n]
    np.testing.assert_allclose(b.to_host(result), want_f, rtol=1e-6, atol=1e-6)


def test_syncthreads_count_and_or(kernel_backend, rng):
    b = kernel_backend
    block = 256
    n = odd_size(rng, block, 4, 10)
    x = rng.random(n, dtype=np.float32)
    x[: 2 * block] = 0.9  # two full blocks where every thread passes
    x[2 * block : 3 * block] = 0.1  # and one where none does
    threshold = np.float32(0.5)
    blocks = blocks_for(n, block)
    counts, ands, ors = (b.full(blocks, POISON_I32, np.int32) for _ in range(3))
    b.load(FEATURES).kernel("barrier_votes")(
        blocks, block, (b.to_device(x), np.int32(n), threshold, counts, ands, ors)
    )
    pred = np.zeros(blocks * block, bool)
    pred[:n] = x > threshold
    per_block = pred.reshape(blocks, block)
    np.testing.assert_array_equal(b.to_host(counts), per_block.sum(axis=1))
    np.testing.assert_array_equal(b.to_host(ands), per_block.all(axis=1).astype(np.int32))
    np.testing.assert_array_equal(b.to_host(ors), per_block.any(axis=1).astype(np.int32))


@pytest.mark.parametrize("block", [64, 1024])
def test_exited_threads_do_not_block_the_barrier(kernel_backend, rng, block):
    b = kernel_backend
    n = odd_size(rng, block, 2, 4)
    x = rng.integers(0, 1000, n).astype(np.int32)
    out = b.full(n, POISON_I32, np.int32)
    b.load(FEATURES).kernel("early_exit")(
        blocks_for(n, block), block, (b.to_device(x), out, np.int32(n))
    )
    want = np.full(n, POISON_I32, np.int32)
    for start in range(0, n, block):
        length = min(block, n - start)
        for t in range(1, length):
            nxt = t + 1 if t + 1 < length else 1
            want[start + t] = x[start + t] + 1000 * x[start + nxt]
    np.testing.assert_array_equal(b.to_host(out), want)


def test_half_round_trip(kernel_backend, rng):
    b = kernel_backend
    special = np.array(
        [
            0.0,
            -0.0,
            1.0,
            -2.5,
            65504.0,
            65520.0,
            1e-8,
            5.9604645e-08,
            2049.0,
            2051.0,
            1e5,
            3.0517578e-05,
            -6.1035156e-05,
        ],
        np.float32,
    )
    block = 128
    n = odd_size(rng, block, 2, 5)
    x = np.concatenate(
        [
            special,
            (
                rng.standard_normal(n - special.size) * 10.0 ** rng.uniform(-7, 5, n - special.size)
            ).astype(np.float32),
        ]
    )
    h = b.full(n, 0x7E00, np.uint16)  # a NaN bit pattern
    back, doubled = b.full(n, np.nan, np.float32), b.full(n, np.nan, np.float32)
    b.load(HALF).kernel("half_round_trip")(
        blocks_for(n, block),
        block,
        (b.to_device(x), h.view(np.float16), back, doubled, np.int32(n)),
    )
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    np.testing.assert_array_equal(b.to_host(h), want.view(np.uint16))
    np.testing.assert_array_equal(b.to_host(back), want.astype(np.float32))
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(b.to_host(doubled), (want + want).astype(np.float32))


# --- emu only: what fails, and how ---------------------------------------------------------

TINY = """
extern "C" __global__ void tiny(float* out, int n) {{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    {body}
    if (i < n) out[i] = VALUE;
}}
"""


def write_kernel(tmp_path: Path, name: str, body: str = "", header: str = "") -> Path:
    path = tmp_path / name
    path.write_text(header + TINY.format(body=body))
    return path


@pytest.mark.parametrize(
    ("snippet", "feature"),
    [
        ('asm volatile("membar.gl;");', "inline asm"),
        ("__nanosleep(100);", "__nanosleep"),
        ("long long t = clock64(); (void)t;", "clock"),
        ("volatile int flag = 0; (void)flag;", "volatile"),
        ("float v = tex2D<float>(0, 0.f, 0.f); (void)v;", "textures"),
        ("cooperative_groups::this_grid().sync();", "cooperative groups"),
        ("int v = __shfl(i, 0); (void)v;", "without _sync"),
    ],
)
def test_unsupported_feature_fails_at_load(emu, tmp_path, snippet, feature):
    path = write_kernel(tmp_path, "unsupported.cu", body=snippet)
    with pytest.raises(KernelError, match=feature) as err:
        emu.load(path)
    assert "unsupported.cu:4" in str(err.value)


def test_unsupported_feature_in_a_header_names_the_header(emu, tmp_path):
    (tmp_path / "helpers.cuh").write_text(
        "// helpers\n__device__ void pause() { __nanosleep(5); }\n"
    )
    path = write_kernel(tmp_path, "main.cu", header='#include "helpers.cuh"\n')
    with pytest.raises(KernelError, match=r"helpers\.cuh:2 \(included from main\.cu\)"):
        emu.load(path)


def test_comments_do_not_count_as_features(emu, tmp_path):
    path = write_kernel(
        tmp_path,
        "commented.cu",
        body='// asm("...") and volatile here\n',
        header='const char* note = "uses asm volatile";\n',
    )
    out = np.full(5, np.nan, np.float32)
    emu.load(path, defines={"VALUE": 2.5}).kernel("tiny")(1, 32, (out, np.int32(5)))
    np.testing.assert_array_equal(out, 2.5)


DEVICE_ONLY = """
__device__ float twice(float v) {{
#ifdef __CUDA_ARCH__
    float d;
    asm("add.f32 %0, %1, %1;" : "=f"(d) : "f"(v));
    return d;
{other}
#endif
}}
"""


def test_device_only_asm_with_a_portable_twin_runs_the_twin(emu, tmp_path):
    twin = "#else\n    return v + v;"
    path = write_kernel(
        tmp_path, "twin.cu", header=DEVICE_ONLY.format(other=twin), body="(void)twice(1.0f);"
    )
    out = np.full(5, np.nan, np.float32)
    emu.load(path, defines={"VALUE": "twice(1.25f)"}).kernel("tiny")(1, 32, (out, np.int32(5)))
    np.testing.assert_array_equal(out, 2.5)


def test_device_only_asm_without_a_twin_is_refused(emu, tmp_path):
    path = write_kernel(tmp_path, "no_twin.cu", header=DEVICE_ONLY.format(other=""))
    with pytest.raises(KernelError, match=r"no_twin\.cu:5: uses inline asm"):
        emu.load(path, defines={"VALUE": 1})


def test_asm_in_the_portable_twin_is_refused(emu, tmp_path):
    twin = '#else\n    asm("trap;");\n    return v;'
    path = write_kernel(tmp_path, "bad_twin.cu", header=DEVICE_ONLY.format(other=twin))
    with pytest.raises(KernelError, match=r"bad_twin\.cu:8: uses inline asm"):
        emu.load(path, defines={"VALUE": 1})


def test_compile_error_names_file_and_line(emu, tmp_path):
    path = write_kernel(tmp_path, "broken.cu", body="int y = undeclared_thing + 1;")
    with pytest.raises(KernelError, match=r"broken\.cu:4:\d+: error: .*undeclared_thing"):
        emu.load(path, defines={"VALUE": 1})


def test_module_cache_is_reused(emu, tmp_path):
    from gputrack.device.emu import build
    from gputrack.device.ops_emu import create

    # Unique text: the first load must compile, whatever earlier runs left in the cache.
    path = write_kernel(tmp_path, "cached.cu", header=f"// {secrets.token_hex(8)}\n")
    before = build.compile_count
    create().load(path, defines={"VALUE": 7})
    assert build.compile_count == before + 1
    out = np.zeros(3, np.float32)
    create().load(path, defines={"VALUE": 7}).kernel("tiny")(1, 32, (out, np.int32(3)))
    assert build.compile_count == before + 1  # a fresh backend found the compiled library
    np.testing.assert_array_equal(out, 7)
    create().load(path, defines={"VALUE": 8})  # other defines: another library
    assert build.compile_count == before + 2


def test_argument_errors_come_from_the_signature(emu):
    kernel = emu.load(FEATURES).kernel("block_sum")
    with pytest.raises(KernelError, match="takes 3 arguments"):
        kernel(1, 32, (np.zeros(4, np.float32), np.zeros(1, np.float32)))
    with pytest.raises(KernelError, match="parameter 'x' is float\\*, got an array of float64"):
        kernel(1, 32, (np.zeros(4, np.float64), np.zeros(1, np.float32), np.int32(4)))
    with pytest.raises(KernelError, match="C-contiguous"):
        kernel(1, 32, (np.zeros(8, np.float32)[::2], np.zeros(1, np.float32), np.int32(4)))


def test_shared_memory_limit(emu):
    kernel = emu.load(FEATURES).kernel("reverse_chunks")
    data = np.zeros(4, np.int32)
    with pytest.raises(KernelError, match="shared_mem"):
        kernel(1, 4, (data, data.copy(), np.int32(4)), shared_mem=228 * 1024)


def test_device_assert_is_reported_and_backend_survives(emu, tmp_path):
    path = write_kernel(tmp_path, "checked.cu", body="assert(n < 100);\n    __syncthreads();")
    kernel = emu.load(path, defines={"VALUE": 1}).kernel("tiny")
    out = np.zeros(300, np.float32)
    with pytest.raises(KernelError, match=r"assert `n < 100` failed at .*checked\.cu:4"):
        kernel(3, 128, (out, np.int32(300)))
    kernel(3, 128, (out[:50], np.int32(50)))  # the pool and its fibers still work
    np.testing.assert_array_equal(out[:50], 1)


FIRST_LAUNCH = """
import numpy as np
from gputrack.device import get_backend
from gputrack.isp import IspParams, IspPipeline
from gputrack.isp import reference as ref
raw = np.random.default_rng({seed}).integers(0, 4096, (46, 70)).astype(np.uint16)
out = IspPipeline(IspParams(), get_backend("emu")).process(raw).rgb8
print(int(np.abs(out.astype(int) - ref.process(raw, IspParams()).rgb8).max()))
"""


def test_first_launch_in_a_fresh_process_is_right(rng):
    """Regression: with TLS descriptors, glibc < 2.40 could clobber vector registers on a
    module's first thread-local access (bug 31372), losing stores of the very first launch
    in a process. The first launch of the fused ISP kernel showed it every time."""
    if not probe("emu").available:
        pytest.skip(f"emu unavailable: {probe('emu').reason}")
    for _ in range(2):
        code = FIRST_LAUNCH.format(seed=int(rng.integers(1 << 30)))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout.strip()) <= 2, "first launch differs from the reference"


def test_running_threads_in_both_orders_exposes_a_missing_barrier(rng):
    """The `kernel_backend` fixture runs every emu test with a block's threads in index order
    and in reverse; a kernel that reads another thread's shared-memory write without a
    barrier gives a different answer in one of the two, as this racy kernel shows."""
    if not probe("emu").available:
        pytest.skip(f"emu unavailable: {probe('emu').reason}")
    emu = get_backend("emu")
    kernel = emu.load(Path(__file__).parent / "kernels" / "emu_race.cu").kernel("racy_neighbour")
    data = rng.integers(1, 1 << 30, 256).astype(np.int32)
    intended = np.roll(data, -1)
    results = {}
    try:
        for order in ("forward", "reverse"):
            emu.set_thread_order(order)
            out = emu.full(256, -1, np.int32)
            kernel(1, 256, (emu.to_device(data), out))
            results[order] = emu.to_host(out)
    finally:
        emu.set_thread_order("forward")
    # In reverse order every thread but the last reads a neighbour that already wrote; the
    # last reads tile[0] before thread 0 wrote it: the poison every block starts with.
    assert np.array_equal(results["reverse"][:-1], intended[:-1])
    assert results["reverse"][-1] == 0x7FFF7FFF
    assert not np.array_equal(results["forward"], intended), "the race shows in index order"
    with pytest.raises(KernelError, match="thread order 'sideways'"):
        emu.set_thread_order("sideways")


def _byte_perm(x: int, y: int, s: int) -> int:
    v = (y << 32) | x
    return sum(((v >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n) for n in range(4))


def test_integer_intrinsics(kernel_backend, rng):
    b = kernel_backend
    n = odd_size(rng, 128, 2, 4)
    x = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    y = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    y[:3] = [0, 1, 0x80000000]  # __clz at its ends
    # Nibbles 0-7 (what the kernels use): the documented selector ignores bit 3 of each,
    # while PTX prmt's default mode would read it as sign replication.
    sel = rng.integers(0, 2**16, n).astype(np.uint32) & np.uint32(0x7777)
    sel[:2] = [0x4341, 0x3210]
    out = b.full(5 * n, POISON_U32, np.uint32)
    args = (b.to_device(x), b.to_device(y), b.to_device(sel), out, np.int32(n))
    b.load(FEATURES).kernel("int_intrinsics")(blocks_for(n, 128), 128, args)
    got = b.to_host(out).reshape(n, 5).astype(np.uint64)
    xs, ys = x.astype(np.uint64), y.astype(np.uint64)
    want_perm = [_byte_perm(int(a), int(c), int(s)) for a, c, s in zip(xs, ys, sel, strict=True)]
    np.testing.assert_array_equal(got[:, 0], want_perm)
    np.testing.assert_array_equal(got[:, 1], [int(f"{int(v):032b}"[::-1], 2) for v in xs])
    np.testing.assert_array_equal(got[:, 2], [bin(int(v)).count("1") for v in xs])
    np.testing.assert_array_equal(got[:, 3], [32 - int(v).bit_length() for v in ys])
    np.testing.assert_array_equal(got[:, 4], (xs * ys) >> np.uint64(32))
    assert got[0, 3] == 32 and got[2, 3] == 0
    assert got[0, 0] == ((int(x[0]) >> 8) & 0xFF) | (((int(x[0]) >> 24) & 0xFF) << 16)
