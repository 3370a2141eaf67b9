"""scripts/half_precision_error.py: the experiment behind docs/ISP.md's note on float16."""

from __future__ import annotations

import numpy as np

from gputrack.isp import IspParams
from gputrack.isp import reference as ref
from tests.conftest import load_script


def load():
    return load_script("half_precision_error")


def test_its_float64_demosaic_is_the_reference_one(rng):
    """The script's restatement of the kernel's formulas is MHC itself: in float64 it gives the
    reference demosaic to rounding, so what it reports for float16 is the precision alone."""
    hp = load()
    m = rng.random((40, 56))
    for pattern in ("RGGB", "GRBG", "GBRG", "BGGR"):
        got = hp.mhc(m, pattern, np.float64)
        np.testing.assert_allclose(got, ref.demosaic(m, pattern, "mhc"), atol=1e-12)


def test_float16_moves_the_output_more_than_float32(rng, capsys):
    hp = load()
    raw = rng.integers(0, 4096, (96, 96)).astype(np.uint16)
    assert hp.compare(raw, IspParams())["float32"][1] <= 1  # the kernel's chain: rounding only
    # The figure docs/ISP.md quotes, from a fixed frame (a random one may have no outlier).
    raw = np.random.default_rng(1).integers(0, 4096, (512, 512)).astype(np.uint16)
    res = hp.compare(raw, IspParams())
    assert res["float16"][1] >= 3 and res["float16"][0] > res["float32"][0]
    assert hp.main(["--images", "0", "--random", "64"]) == 0
    assert "float16: worst" in capsys.readouterr().out
