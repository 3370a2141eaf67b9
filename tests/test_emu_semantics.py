"""The emu backend against the documented semantics of the CUDA built-ins the kernels use.

Each probe kernel (tests/kernels/emu_semantics_probes.cu) runs on emu and is compared with its
definition in the CUDA Programming Guide, the CUDA Math API or the PTX ISA, computed here in
Python: warp shuffles with their width and out-of-range lanes (PTX shfl.sync), atomics and their
return values on shared and global memory, integer intrinsics, float-to-integer conversions and
roundings, and the rules a GPU leaves undefined, which the emulator must make loud rather than
quietly define. The same file compiles with NVRTC, so CUDA's own headers check the vector types.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from gputrack.device.compile_report import compile_cubin, nvrtc_version
from gputrack.errors import KernelError

PROBES = Path(__file__).parent / "kernels" / "emu_semantics_probes.cu"
POISON_U32 = 0x7FFF7FFF  # the emulator's poison pattern (emu_abi.h), as 32 bits


@pytest.fixture
def probes(emu):
    return emu.load(PROBES)


@pytest.fixture(params=["forward", "reverse"])
def ordered(emu, request):
    emu.set_thread_order(request.param)
    yield emu
    emu.set_thread_order("forward")


# --- vector types -----------------------------------------------------------------------------


@pytest.mark.skipif(nvrtc_version()[0] is None, reason="NVRTC absent")
def test_vector_type_layout_matches_cuda_headers(probes):
    """The probe file's static_asserts (size and alignment of each vector type) hold in the
    emu build (loading it compiled them) and with NVRTC and CUDA's own vector_types.h."""
    report, _ = compile_cubin(PROBES)
    assert report.compiled, report.error


# --- warp shuffles ----------------------------------------------------------------------------


def ptx_shuffle(op: int, b: int, width: int, lane: int) -> int:
    """The source lane of shfl.sync (PTX ISA), as __shfl*_sync pass it: c = ((32 - width) << 8)
    | clamp, clamp 0 for up and 31 otherwise. Only b's low 5 bits count; an invalid source
    lane gives the caller's own value."""
    seg = (32 - width) & 31
    c = 0 if op == 1 else 31
    b &= 31
    max_lane = (lane & seg) | (c & ~seg & 31)
    if op == 0:
        j, ok = (lane & seg) | (b & ~seg & 31), True
    elif op == 1:
        j = lane - b
        ok = j >= max_lane
    elif op == 2:
        j = lane + b
        ok = j <= max_lane
    else:
        j = lane ^ b
        ok = j <= max_lane
    return j if ok else lane


def test_shuffles_follow_ptx_shfl_sync(ordered):
    block = 64
    cases = [
        (op, p, w)
        for op in range(4)
        for p in (0, 1, 3, 5, 16, 31, 32, 33, 37, -1)
        for w in (1, 2, 4, 8, 16, 32)
    ]
    ops, params, widths = (np.array(c, np.int32) for c in zip(*cases, strict=True))
    out = np.full(len(cases) * block, -7, np.int32)
    ordered.load(PROBES).kernel("shuffles")(
        1, block, (ops, params, widths, np.int32(len(cases)), out)
    )
    got = out.reshape(len(cases), block)
    for k, (op, p, w) in enumerate(cases):
        want = [
            1000 + 32 * (t // 32) + ptx_shuffle(op, p & 0xFFFFFFFF, w, t % 32) for t in range(block)
        ]
        assert got[k].tolist() == want, f"op {op}, param {p}, width {w}"


def test_shuffle_from_an_exited_lane_is_poison_not_a_value(probes):
    """A GPU leaves the value read from an exited lane unspecified; emu gives the poison
    pattern, so a kernel that uses it fails its test. A source lane past the end of the
    warp is defined (the caller's own value)."""
    out = np.full(32, -7, np.int32)
    probes.kernel("shuffle_from_exited")(1, 32, (np.int32(20), out))
    assert out[:19].tolist() == [1] * 19
    assert out[19] == POISON_U32
    out[:] = -7
    probes.kernel("shuffle_from_exited")(1, 32, (np.int32(32), out))
    assert out.tolist() == [1] * 32


@pytest.mark.parametrize(
    ("kernel", "why"),
    [
        ("shuffle_mask_names_a_waiting_lane", "names lane 16, which did not reach"),
        ("shuffle_mask_without_self", "does not name the calling lane"),
    ],
)
def test_undefined_warp_masks_fail_the_launch(probes, kernel, why):
    with pytest.raises(KernelError, match=why):
        probes.kernel(kernel)(1, 32, (np.full(32, -7, np.int32),))


def test_missing_syncwarp_after_a_collective_shows_in_one_order(emu):
    """Lanes 1-15 read their lower neighbour's shared write with no __syncwarp(): the thread
    orders must differ after a warp collective too, as they do after a barrier."""
    intended = [2 * (t - 1) + 1 for t in range(32)]
    results = {}
    kernel = emu.load(PROBES).kernel("racy_after_warp_collective")
    for order in ("forward", "reverse"):
        emu.set_thread_order(order)
        out = np.full(32, -7, np.int32)
        kernel(1, 32, (out,))
        results[order] = out.tolist()
    emu.set_thread_order("forward")
    assert intended in results.values() and results["forward"] != results["reverse"]


# --- atomics ----------------------------------------------------------------------------------


def test_atomics_return_the_old_value_on_shared_and_global(ordered):
    blocks, block = 3, 64
    counter = np.zeros(1, np.int32)
    ticket_g = np.full(blocks * block, -7, np.int32)
    ticket_s = np.full(blocks * block, -7, np.int32)
    word = np.zeros(1, np.uint32)
    seq = np.zeros(34, np.uint32)
    fsum = np.zeros(1, np.float32)
    ordered.load(PROBES).kernel("atomics")(
        blocks, block, (counter, ticket_g, ticket_s, word, seq, fsum)
    )
    assert counter[0] == blocks * block
    assert sorted(ticket_g.tolist()) == list(range(blocks * block))
    for b in range(blocks):
        assert sorted(ticket_s[b * block : (b + 1) * block].tolist()) == list(range(block))
    assert fsum[0] == 0.5 * blocks * block
    # atomicInc: old >= limit ? 0 : old + 1; atomicDec: old == 0 || old > limit ? limit : old - 1
    want = [5, 6, 0, 3, 2, 2, 9, 9, 4, 0xF0, 0x30, 0x33, 0x22, 0xFFFFFFFF, 1]
    assert seq[:15].tolist() == want, "global"
    assert seq[16:31].tolist() == want, "shared"
    assert word[0] == 1
    assert seq[32] == block and seq[33] == np.float32(0.25 * block).view(np.uint32)


# --- integer intrinsics -----------------------------------------------------------------------


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _s24(v: int) -> int:
    v &= 0xFFFFFF
    return v - (1 << 24) if v >> 23 else v


def _byte_perm(x: int, y: int, s: int) -> int:
    v = (y << 32) | x
    return sum(((v >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n) for n in range(4))


def int_reference(a: int, b: int, s: int) -> list[int]:
    m = 0xFFFFFFFF
    wide = (b << 32) | a
    return [
        ((wide << (s & 31)) >> 32) & m,  # __funnelshift_l: hi:lo << (s & 31), high word
        ((wide << min(s, 32)) >> 32) & m,  # __funnelshift_lc: shift clamped to 32
        (wide >> (s & 31)) & m,  # __funnelshift_r: low word
        (wide >> min(s, 32)) & m,
        (a & -a).bit_length(),  # __ffs: 1-based, 0 for 0
        32 - a.bit_length(),  # __clz
        bin(wide).count("1"),  # __popcll
        ((_s32(a) * _s32(b)) >> 32) & m,  # __mulhi
        (_s24(a) * _s24(b)) & m,  # __mul24: signed low 24 bits, low 32 bits of the product
        ((a & 0xFFFFFF) * (b & 0xFFFFFF)) & m,  # __umul24
        _byte_perm(a, b, s & 0x7777),
        64 - ((a << 32) | b).bit_length(),  # __clzll
    ]


def test_integer_intrinsics(probes, rng):
    n = 301
    x = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    y = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    s = rng.integers(0, 70, n).astype(np.uint32)
    x[:6] = [0, 1, 0x80000000, 0xFFFFFFFF, 0x00800000, 0xFF800000]
    y[:6] = [0, 0xFFFFFFFF, 0x80000000, 0x00FFFFFF, 0x7FFFFFFF, 0xFFFFFFFF]
    s[:8] = [0, 31, 32, 33, 63, 64, 0xFFFFFFFF, 0x80000001]
    out = np.zeros(12 * n, np.uint32)
    probes.kernel("int_ops")(2, 256, (x, y, s, out, np.int32(n)))
    got = out.reshape(n, 12)
    for i in range(n):
        want = int_reference(int(x[i]), int(y[i]), int(s[i]))
        assert got[i].tolist() == want, f"x={x[i]:#x} y={y[i]:#x} s={s[i]:#x}"


# --- float conversions and rounding ---------------------------------------------------------


def round_f32(q: Fraction) -> np.float32:
    """q rounded once to float32, to nearest, ties to even (q within float32's range)."""
    f = np.float32(float(q))  # at most one float32 step off (double rounding)
    best = f
    for cand in (np.nextafter(f, np.float32(-np.inf)), np.nextafter(f, np.float32(np.inf))):
        dc, db = abs(Fraction(float(cand)) - q), abs(Fraction(float(best)) - q)
        if dc < db or (dc == db and int(cand.view(np.uint32)) % 2 == 0):
            best = cand
    return best


def to_int(r: float, lo: int, hi: int) -> int:
    """A GPU float-to-integer conversion of an already rounded r: saturating, NaN to 0."""
    if np.isnan(r):
        return 0
    return int(min(max(r, lo), hi))


def test_float_conversions_and_roundings(probes, rng):
    f32 = np.float32
    special = [
        np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997,
        8388607.5, 2.0**31, -(2.0**31), 2.0**31 - 128, 3e9, -3e9, 4294967040.0, 4294967296.0,
        1e30, -1e30, 1.0 - 2.0**-24, 1.0 + 2.0**-23,
    ]  # fmt: skip
    n_rand = 2000
    a = np.concatenate(
        [
            np.array(special, f32),
            (rng.standard_normal(n_rand) * 10.0 ** rng.integers(-3, 4, n_rand)).astype(f32),
            (rng.integers(-50, 50, 200) + 0.5).astype(f32),  # exact ties
        ]
    )
    n = a.size
    # divisors: ordinary ones, and a few in (2^126, 2^128) where __fdividef is defined as 0
    b = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(f32)
    b[:12] = [2.0**126 * 1.5, -(2.0**127), 3e38, 2.0**126, 1.0, -1.0, 2.0**-125, 7.0, 1e-30, 1e30,
              -3e38, 2.0**126 * (1 + 2**-23)]  # fmt: skip
    c = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(f32)
    out = np.zeros(12 * n, np.uint32)
    probes.kernel("float_ops")((n + 255) // 256, 256, (a, b, c, out, np.int32(n)))
    got = out.reshape(n, 12)
    i32 = (-(2**31), 2**31 - 1)
    u32 = (0, 2**32 - 1)
    for k in range(n):
        x, y, z = a[k], b[k], c[k]
        xd = float(x)
        row = got[k]
        where = f"a={x!r} b={y!r} c={z!r}"
        assert _s32(int(row[0])) == to_int(np.rint(xd), *i32), f"__float2int_rn {where}"
        assert _s32(int(row[1])) == to_int(np.trunc(xd), *i32), f"__float2int_rz {where}"
        assert _s32(int(row[2])) == to_int(np.floor(xd), *i32), f"__float2int_rd {where}"
        assert _s32(int(row[3])) == to_int(np.ceil(xd), *i32), f"__float2int_ru {where}"
        assert int(row[4]) == to_int(np.rint(xd), *u32), f"__float2uint_rn {where}"
        assert int(row[5]) == to_int(np.trunc(xd), *u32), f"__float2uint_rz {where}"
        r = row[6:].view(np.float32)
        if np.isnan(x):
            assert np.isnan(r[0]) and r[1] == 0.0, f"rintf / __saturatef {where}"
        else:
            assert row[6] == f32(np.rint(x)).view(np.uint32), f"rintf {where}"  # ties to even
            assert r[1] == min(max(x, f32(0)), f32(1)), f"__saturatef {where}"
        if np.isfinite(x) and np.isfinite(y) and np.isfinite(z):
            exact = Fraction(xd) * Fraction(float(y)) + Fraction(float(z))
            if abs(exact) < 2**127:
                assert r[2] == round_f32(exact), f"fmaf: one rounding {where}"
            # __fdividef: a * (1/b), 0 for 2^126 < |b| < 2^128 (CUDA Math API, PTX div.approx)
            if abs(float(y)) > 2.0**126:
                assert r[3] == 0.0, f"__fdividef {where}"
            elif y != 0 and 2.0**-126 <= abs(xd / float(y)) < 2.0**127:
                q = np.float64(xd) / np.float64(y)
                assert abs(float(r[3]) - q) <= 2 * np.spacing(f32(abs(q))), f"__fdividef {where}"
            if y != 0:
                with np.errstate(over="ignore", under="ignore"):
                    assert r[4] == f32(xd / float(y)), f"division rounds once {where}"
            assert r[5] == f32(np.sqrt(abs(xd))), f"sqrtf rounds once {where}"
        if np.isinf(x) and 2.0**126 < abs(float(y)) < 2.0**128:
            assert np.isnan(r[3]), f"__fdividef(inf, huge) {where}"
