"""Inputs a demanding user tries, across verbs: every one a clear line, never a traceback or
output a program cannot parse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gputrack.cli import main
from gputrack.isp.quality import cpsnr


def test_isp_json_stays_valid_for_an_exact_round_trip(tmp_path, capsys):
    black = tmp_path / "black.npy"
    np.save(black, np.zeros((64, 64, 3), np.uint8))  # comes back exactly: infinite CPSNR
    assert (
        main(["isp", str(black), "--out", str(tmp_path / "o.png"), "--backend", "cpu", "--json"])
        == 0
    )
    info = json.loads(capsys.readouterr().out)  # strict JSON: no Infinity
    assert info["cpsnr_db"] is None and info["exact"] is True


def test_malformed_ground_truth_names_its_line(tmp_path, capsys):
    det = tmp_path / "det.txt"
    det.write_text("1,-1,10,10,20,20,0.9,-1,-1,-1\n2,-1,12,10,20,20,0.9,-1,-1,-1\n")
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,20,20,1,-1,-1\n2,x,12,10,20,20,1,-1,-1\n")
    assert main(["track", str(det), "--out", str(tmp_path / "r.txt"), "--gt", str(gt)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gt.txt:2:" in err[0] and "'x'" in err[0]


def test_isp_cpsnr_of_an_image_too_small_for_the_border(tmp_path, capsys):
    # 16x16 has no inside once 8 pixels go at each side: the figure is over the whole image,
    # and says so, rather than NaN read as an exact round trip.
    small = tmp_path / "small.npy"
    np.save(small, np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    argv = ["isp", str(small), "--out", str(tmp_path / "o.png"), "--backend", "cpu", "--json"]
    assert main(argv) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cpsnr_border_px"] == 0 and info["exact"] is False
    assert 5.0 < info["cpsnr_db"] < 60.0


def test_cpsnr_refuses_an_empty_comparison():
    img = np.full((16, 16, 3), 7, np.uint8)
    with pytest.raises(ValueError, match="border"):
        cpsnr(img, img, 8)
    with pytest.raises(ValueError, match="shapes"):
        cpsnr(img, img[:8], 0)
