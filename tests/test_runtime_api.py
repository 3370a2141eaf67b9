"""The runtime interface on every backend that runs kernels (emu here; cuda on a GPU):
memory round trips, NULL pointers, 3-D grids, defines, streams, timers, graph replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gputrack.errors import KernelError

KERNELS = Path(__file__).parent / "kernels" / "runtime_api.cu"


def test_round_trip_keeps_values_and_device_copy_is_independent(kernel_backend, rng):
    host = rng.standard_normal((37, 5)).astype(np.float32)
    dev = kernel_backend.to_device(host)
    host[0, 0] = 12345.0  # changing the host buffer after upload must not reach the device
    back = kernel_backend.to_host(dev)
    assert back[0, 0] != 12345.0
    np.testing.assert_array_equal(back[1:], host[1:])
    pinned = kernel_backend.pinned_empty((37, 5), np.float32)
    kernel_backend.to_host(dev, out=pinned)
    np.testing.assert_array_equal(pinned, back)


def test_null_pointer_and_odd_sizes(kernel_backend, rng):
    mod = kernel_backend.load(KERNELS)
    n = 1000 + int(rng.integers(1, 255))  # not a multiple of the block
    a, b = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    out = kernel_backend.full(n, np.nan, np.float32)
    da, db = kernel_backend.to_device(a), kernel_backend.to_device(b)
    grid = -(-n // 128)
    mod.kernel("add_optional")(grid, 128, (da, db, out, n))
    np.testing.assert_array_equal(kernel_backend.to_host(out), a + b)
    out = kernel_backend.full(n, np.nan, np.float32)
    mod.kernel("add_optional")(grid, 128, (da, None, out, n))
    np.testing.assert_array_equal(kernel_backend.to_host(out), a)


def test_three_dimensional_grid(kernel_backend):
    w, h, d = 45, 23, 3
    out = kernel_backend.full((d, h, w), -1, np.int32)
    kernel_backend.load(KERNELS).kernel("coords")(
        (-(-w // 16), -(-h // 8), d), (16, 8), (out, w, h)
    )
    z, y, x = np.indices((d, h, w))
    np.testing.assert_array_equal(kernel_backend.to_host(out), x + 1000 * y + 1000000 * z)


def test_defines_make_separate_modules(kernel_backend):
    n = 77
    results = {}
    for gain in (1, 3):
        out = kernel_backend.full(n, -1, np.int32)
        mod = kernel_backend.load(KERNELS, defines={"GAIN": gain})
        mod.kernel("gain_index")(-(-n // 32), 32, (out, n))
        results[gain] = kernel_backend.to_host(out)
    np.testing.assert_array_equal(results[3], 3 * np.arange(n))
    np.testing.assert_array_equal(results[1], np.arange(n))


def test_stream_timer_and_graph_replay(kernel_backend, rng):
    mod = kernel_backend.load(KERNELS)
    n = 4099
    x0 = rng.standard_normal(n).astype(np.float32)
    x = kernel_backend.to_device(x0)
    stream = kernel_backend.stream()
    affine = mod.kernel("affine_inplace")

    def step() -> None:  # two launches per replay: x -> 2x + 1 -> 2x
        affine(8, 128, (x, 2.0, 1.0, n), stream=stream)
        affine(8, 128, (x, 1.0, -1.0, n), stream=stream)

    timer = kernel_backend.timer(stream)
    graph = kernel_backend.capture(step, stream)  # records, runs nothing (as CUDA capture)
    kernel_backend.synchronize(stream)
    timer.start()
    graph.replay(stream)
    graph.replay(stream)
    timer.stop()
    kernel_backend.synchronize(stream)
    assert timer.elapsed_ms() >= 0.0
    got = kernel_backend.to_host(x)
    want = x0.copy()
    for _ in range(2):  # the same float32 steps (x * 2 is exact, so FMA changes nothing)
        want = (want * np.float32(2) + np.float32(1)) * np.float32(1) - np.float32(1)
    np.testing.assert_array_equal(got, want)


def test_unknown_kernel_name_lists_the_known_ones(kernel_backend):
    with pytest.raises(KernelError, match="no kernel named 'nope' \\(has: add_optional, "):
        kernel_backend.load(KERNELS).kernel("nope")


def test_oversized_block_is_refused_before_launch(kernel_backend):
    out = kernel_backend.full(4, 0, np.int32)
    with pytest.raises(KernelError, match="1056 threads"):
        kernel_backend.load(KERNELS).kernel("gain_index")(1, (33, 32), (out, 4))


def test_device_copy_on_a_stream_and_shape_checks(kernel_backend, rng):
    src = kernel_backend.to_device(rng.standard_normal((3, 5)).astype(np.float32))
    dst = kernel_backend.full((3, 5), np.nan, np.float32)
    stream = kernel_backend.stream()
    kernel_backend.copy(dst, src, stream)
    kernel_backend.synchronize(stream)
    np.testing.assert_array_equal(kernel_backend.to_host(dst), kernel_backend.to_host(src))
    with pytest.raises(KernelError, match="copy: \\(3, 5\\) float32 into \\(5, 3\\) float32"):
        kernel_backend.copy(kernel_backend.empty((5, 3), np.float32), src, stream)


def test_copy_bandwidth_is_measured_with_the_backend_timer(kernel_backend):
    from gputrack.device.bandwidth import device_copy_gbs

    gbs = device_copy_gbs(kernel_backend, n_bytes=1 << 22, reps=3)
    assert 0.01 < gbs < 1e5, f"{gbs} GB/s is not a plausible copy rate"


def test_upload_download_and_event_inside_a_graph(kernel_backend, rng):
    """upload/download into existing buffers, queued on a stream and captured in a graph with
    a launch between them (what one frame of the deadline benchmark does); an event after the
    replay says when the host copy is there."""
    mod = kernel_backend.load(KERNELS)
    n = 1000 + int(rng.integers(1, 255))
    src = kernel_backend.pinned_empty(n, np.float32)
    dst = kernel_backend.pinned_empty(n, np.float32)
    dev = kernel_backend.full(n, np.nan, np.float32)
    stream = kernel_backend.stream()
    done = kernel_backend.event()

    def frame() -> None:
        kernel_backend.upload(dev, src, stream)
        mod.kernel("affine_inplace")(-(-n // 128), 128, (dev, 2.0, 0.5, n), stream=stream)
        kernel_backend.download(dst, dev, stream)

    graph = kernel_backend.capture(frame, stream)
    kernel_backend.synchronize(stream)
    for _ in range(2):  # each replay reads the host buffer as it is now
        src[...] = rng.standard_normal(n).astype(np.float32)
        dst[...] = np.nan
        graph.replay(stream)
        done.record(stream)
        done.synchronize()
        # x * 2 is exact: an FMA on the GPU rounds the same as NumPy
        np.testing.assert_array_equal(dst, src * np.float32(2) + np.float32(0.5))


def test_upload_and_download_check_shapes(kernel_backend):
    dev = kernel_backend.empty((4, 6), np.uint16)
    with pytest.raises(KernelError, match=r"upload: \(6, 4\) uint16 into \(4, 6\) uint16"):
        kernel_backend.upload(dev, np.zeros((6, 4), np.uint16))
    with pytest.raises(KernelError, match=r"download: \(4, 6\) uint16 into \(4, 6\) int16"):
        kernel_backend.download(np.zeros((4, 6), np.int16), dev)
    with pytest.raises(KernelError, match="C-contiguous"):
        kernel_backend.upload(dev, np.zeros((6, 4), np.uint16).T)
    wide = kernel_backend.empty((4, 12), np.uint16)
    with pytest.raises(KernelError, match="C-contiguous"):  # a strided device view
        kernel_backend.download(np.zeros((4, 6), np.uint16), wide[:, ::2])
