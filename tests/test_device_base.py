"""The backend interface: kernel signatures, argument checking, backend selection."""

from __future__ import annotations

import numpy as np
import pytest

from gputrack.device import get_backend, probe
from gputrack.device.kernel_source import parse_signatures, source_digest
from gputrack.errors import BackendUnavailable, KernelError, UsageError

SOURCE = r"""
#include "common.cuh"
// extern "C" __global__ void commented_out(int x) {}
extern "C" __global__ void __launch_bounds__(256)
scale(const float* __restrict__ src, float *dst, float gain, int n, unsigned short tag) {}
extern "C" __global__ void no_args() {}
extern "C" __global__ void raw_ptr(void* p, const __half* h, long long big) {}
"""


def test_signatures_are_parsed_with_types_and_constness():
    sigs = parse_signatures(SOURCE, "x.cu")
    assert sorted(sigs) == ["no_args", "raw_ptr", "scale"]
    src, dst, gain, n, tag = sigs["scale"].params
    assert (src.name, src.dtype, src.pointer, src.const) == ("src", np.float32, True, True)
    assert (dst.name, dst.pointer, dst.const) == ("dst", True, False)
    assert (gain.dtype, gain.pointer) == (np.float32, False)
    assert n.dtype == np.int32 and tag.dtype == np.uint16
    assert sigs["no_args"].params == ()
    p, h, big = sigs["raw_ptr"].params
    assert p.dtype is None and h.dtype == np.float16 and big.dtype == np.int64


def test_unsupported_parameter_type_is_named():
    with pytest.raises(KernelError, match="parameter 'm' has unsupported type 'Matrix'"):
        parse_signatures('extern "C" __global__ void k(Matrix m) {}')


@pytest.fixture
def scale_sig():
    return parse_signatures(SOURCE)["scale"]


def test_arguments_are_converted_to_the_c_types(scale_sig):
    cpu = get_backend("cpu")
    a, b = np.ones(4, np.float32), np.zeros(4, np.float32)
    out = cpu.convert_args(scale_sig, [a, b, 2, 4, 7])
    assert out[0] is a and out[1] is b
    assert out[2].dtype == np.float32 and out[3].dtype == np.int32 and out[4].dtype == np.uint16


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [np.ones(4, np.float64), np.ones(4, np.float32), 1.0, 4, 0],
            "'src' is float\\*, got an array of float64",
        ),
        ([np.ones(4, np.float32), np.ones(4, np.float32), 1.0, 4], "takes 5 arguments"),
        (
            [np.ones(4, np.float32), np.ones(4, np.float32), 1.0, 2**40, 0],
            "'n' \\(int\\) cannot hold",
        ),
        (
            [np.ones(4, np.float32), np.ones(4, np.float32), 1.0, 4.5, 0],
            "'n' \\(int\\) cannot hold 4.5",
        ),
        (
            [np.ones(4, np.float32), np.ones(4, np.float32), 1.0, 4, -1],
            "'tag' \\(unsigned short\\) cannot hold -1",
        ),
        (
            [np.ones(4, np.float32), [1.0, 2.0], 1.0, 4, 0],
            "'dst' needs a cpu device array, got list",
        ),
        (
            [np.ones(4, np.float32), np.ones(4, np.float32), np.ones(2), 4, 0],
            "'gain' is a scalar float",
        ),
        ([np.ones((4, 4), np.float32)[:, 1], np.ones(4, np.float32), 1.0, 4, 0], "C-contiguous"),
    ],
)
def test_wrong_arguments_name_the_kernel_and_parameter(scale_sig, args, message):
    with pytest.raises(KernelError, match=f"kernel scale: .*{message}"):
        get_backend("cpu").convert_args(scale_sig, args)


def test_64_bit_scalars_keep_every_bit():
    sig = parse_signatures(
        'extern "C" __global__ void k(unsigned long long seed, long long off, float g) {}'
    )["k"]
    big = (1 << 64) - 3  # above 2**53: a detour through float would round it
    seed, off, g = get_backend("cpu").convert_args(sig, [big, -(1 << 62) - 1, 1e30])
    assert int(seed) == big and seed.dtype == np.uint64
    assert int(off) == -(1 << 62) - 1 and off.dtype == np.int64
    with pytest.raises(KernelError, match="'g' \\(float\\) cannot hold 1e\\+300"):
        get_backend("cpu").convert_args(sig, [1, 1, 1e300])
    with pytest.raises(KernelError, match="'seed' \\(unsigned long long\\) cannot hold"):
        get_backend("cpu").convert_args(sig, [1 << 64, 1, 1.0])


def test_cpu_backend_refuses_to_load_kernels():
    with pytest.raises(KernelError, match="runs no CUDA kernels"):
        get_backend("cpu").load("isp.cu")


def test_unknown_backend_and_unavailable_backend_are_clear_errors():
    with pytest.raises(UsageError, match="unknown backend 'tpu'"):
        get_backend("tpu")
    if not probe("cuda").available:
        with pytest.raises(BackendUnavailable, match="backend cuda is not available: "):
            get_backend("cuda")


def test_auto_picks_cuda_only_when_a_gpu_answers():
    expected = "cuda" if probe("cuda").available else "cpu"
    assert get_backend("auto").name == expected


def test_source_digest_follows_local_includes(tmp_path):
    (tmp_path / "helper.cuh").write_text("#define GAIN 2\n")
    main = tmp_path / "k.cu"
    main.write_text('#include "helper.cuh"\nextern "C" __global__ void k() {}\n')
    before = source_digest(main)
    (tmp_path / "helper.cuh").write_text("#define GAIN 3\n")
    assert source_digest(main) != before
    assert source_digest(main, extra="-O3") != source_digest(main)


def test_bind_checks_once_and_launches_like_a_call():
    """Kernel.bind: the same checks as a call, at bind time; the bound launch then runs."""
    if not probe("emu").available:
        pytest.skip("emu backend unavailable")
    from tests.test_emu import FEATURES

    be = get_backend("emu")
    k = be.load(FEATURES).kernel("reverse_chunks")
    x = np.arange(10, dtype=np.int32) * 7 - 3
    out = np.full(10, -1, np.int32)
    with pytest.raises(KernelError, match="reverse_chunks.*takes 3 arguments"):
        k.bind(2, 8, (x, out))
    with pytest.raises(KernelError, match=r"'out' is int\*, got an array of float32"):
        k.bind(2, 8, (x, out.astype(np.float32), np.int32(10)), shared_mem=32)
    bound = k.bind(2, 8, (x, out, 10), shared_mem=32)  # 10 converted to int once, here
    bound()
    np.testing.assert_array_equal(out, np.concatenate([x[:8][::-1], x[8:][::-1]]))
