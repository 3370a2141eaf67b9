"""scripts/half_precision_error.py: the experiment behind docs/ISP.md's note on float16."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from gputrack.isp import IspParams
from gputrack.isp import reference as ref

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "half_precision_error.py"


def load():
    spec = importlib.util.spec_from_file_location("half_precision_error", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    res = hp.compare(raw, IspParams())
    assert res["float32"][1] <= 1  # the float32 chain is the kernel's: within rounding
    assert res["float16"][1] >= 2 and res["float16"][0] > res["float32"][0]
    assert hp.main(["--images", "0", "--random", "64"]) == 0
    assert "float16: worst" in capsys.readouterr().out
