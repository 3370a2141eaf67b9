"""The tone table's index on the GPU (common.cuh gt_lookup_rint): x times the float whose bits
are n (a denormal, n * 2^-149), rounded once, has rint(x * n) as its bits. The emu backend
computes that index in double, so neither the identity nor the build flags that keep it true
(no flush-to-zero on that one FMA, though the kernels build with -ftz=true) are exercised by
the kernel tests on the CPU: these tests check both."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gputrack.device.compile_report import compile_cubin
from gputrack.isp.params import TONE8_SIZE
from tests.conftest import load_script, needs_sass_tools

REPO = Path(__file__).resolve().parent.parent
LAST_CODE = TONE8_SIZE - 1  # isp.cu: gt_lookup_rint(tone8, lin, TONE8_N - 1)


def denormal(n: int) -> np.float32:
    """The float32 whose bits are n."""
    return np.array([n], dtype=np.uint32).view(np.float32)[0]


def denormal_index(x: np.ndarray, n: int) -> np.ndarray:
    """The GPU's index: the float32 product of x and the denormal with bits n, as bits."""
    return (x.astype(np.float32) * denormal(n)).view(np.uint32)


def flushes_denormals() -> bool:
    """True where this process runs with flush-to-zero or denormals-are-zero set (a library
    may set them): the float32 arithmetic below would then not be IEEE's."""
    tiny = np.array([1], dtype=np.uint32).view(np.float32)
    return bool((tiny * np.float32(1.0))[0] == 0 or (tiny + tiny)[0] == 0)


@pytest.mark.skipif(flushes_denormals(), reason="this process flushes float32 denormals")
def test_denormal_product_bits_are_the_rounded_index():
    k = np.arange(LAST_CODE + 1, dtype=np.float64)
    ties = (k[:-1] + 0.5) / LAST_CODE  # exactly halfway where float32 can hold it
    x = np.concatenate([
        k / LAST_CODE,
        ties,
        np.nextafter(ties.astype(np.float32), np.float32(0)),
        np.nextafter(ties.astype(np.float32), np.float32(1)),
        np.random.default_rng().random(200_000),
        [0.0, 1.0, np.float32(1.0) - np.finfo(np.float32).epsneg],
    ]).astype(np.float32)
    expected = np.rint(x.astype(np.float64) * LAST_CODE)  # exact product; ties to even
    got = denormal_index(x, LAST_CODE)
    assert got.max() == LAST_CODE and got.min() == 0
    np.testing.assert_array_equal(got, expected.astype(np.uint32))
    # the halfway cases that float32 holds exactly go to the even code, as rint does
    exact_ties = ties.astype(np.float32)
    exact_ties = exact_ties[exact_ties.astype(np.float64) * LAST_CODE % 1 == 0.5]
    assert exact_ties.size > 0
    assert (denormal_index(exact_ties, LAST_CODE) % 2 == 0).all()


@pytest.fixture(scope="module")
def isp_sass() -> dict[str, list[str]]:
    """isp.cu's SASS, built once for the module as the cuda backend builds it."""
    sass = load_script("sass_report")
    report, cubin = compile_cubin(REPO / "kernels" / "isp.cu")
    assert cubin is not None, report.error
    return sass.disassemble(cubin, sass.find_cuobjdump())


@needs_sass_tools
@pytest.mark.parametrize("kernel", ["isp_main", "isp_main_dir"])
def test_tone_lookup_multiplies_by_the_denormal_without_flush_to_zero(kernel, isp_sass):
    """Built as the cuda backend builds it (-ftz=true), the index's FMA must keep its denormal
    operand and result: an FFMA.FTZ (a plain fmaf in C under -ftz) would make every index 0,
    a black image on the GPU that emu would not show."""
    scale = float(denormal(LAST_CODE))
    by_scale = []
    for ins in isp_sass[kernel]:
        for value in re.findall(r"[-+]?\d\.\d+e-\d+", ins):
            if float(value) == pytest.approx(scale, rel=1e-6, abs=0):
                by_scale.append(ins)
    assert len(by_scale) >= 6, "the tone lookup's FMA by the denormal is not in the SASS"
    assert all(re.sub(r"^@!?P\d ", "", i).split()[0] == "FFMA" for i in by_scale), by_scale
