"""Inputs a demanding user tries, across verbs: every one a clear line, never a traceback or
output a program cannot parse."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gputrack.cli import main
from gputrack.isp.quality import cpsnr
from tests.conftest import shared_data


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


# ---- sources through `run` (audit E): one line each, and a finite input ends cleanly -------


def _run(capsys, *argv: str) -> tuple[int, dict, list[str]]:
    rc = main(["run", "--backend", "cpu", "--no-ui", *argv])
    cap = capsys.readouterr()
    out = cap.out.strip()
    return rc, (json.loads(out) if out.startswith("{") else {}), cap.err.strip().splitlines()


@pytest.mark.parametrize(
    "source, rc, needle",
    [
        ("", 2, "source '' is empty: give a file"),
        ("   ", 2, "is empty"),
        ("Synthetic", 1, "input 'Synthetic' not found (the synthetic world is spelled"),
        (" synthetic", 1, "input ' synthetic' not found (the synthetic world is spelled"),
        ("4294967296", 2, "webcam 4294967296: no such camera index (0 to 99)"),
        ("99999999999999999999999", 2, "no such camera index (0 to 99)"),
        ("synthetic:64x48,objects=5000", 2, "objects=5000 must be from 0 to 256"),
        ("synthetic:100000x100000", 2, "size 100000x100000 is too large"),
    ],
)
def test_run_refuses_a_wrong_source_in_one_line(source, rc, needle, capsys, tmp_path,
                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    got, _, err = _run(capsys, source, "--json")
    assert got == rc and len(err) == 1 and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_run_seed_beyond_64_bits_is_refused(capsys):
    rc, _, err = _run(capsys, "synthetic:64x48", "--seed", str(2**64), "--frames", "1")
    assert rc == 2 and len(err) == 1 and "--seed" in err[0] and "from 0 to 2**64 - 1" in err[0]
    assert main(["isp", "in.png", "--out", "o.png", "--noise", "--seed", str(2**64)]) == 2
    assert "from 0 to 2**64 - 1" in capsys.readouterr().err  # the isp verb's seed too


def _video(path, n: int = 3, size: tuple[int, int] = (64, 48)):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    rng = np.random.default_rng(1)
    for _ in range(n):
        vw.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    vw.release()
    return path


def test_run_a_file_url_ends_cleanly_at_its_end(tmp_path, capsys):
    shared_data("models/FastestDet.onnx")
    url = _video(tmp_path / "three.avi").as_uri()  # file:///.../three.avi
    rc, s, err = _run(capsys, url, "--json")
    assert rc == 0 and s["frames"] == 3 and s["source_end_reason"] is None, err


def test_run_says_when_a_video_ended_early(tmp_path, capsys):
    shared_data("models/FastestDet.onnx")
    whole = _video(tmp_path / "v.avi", n=40).read_bytes()
    half = tmp_path / "half.avi"
    half.write_bytes(whole[: len(whole) // 2])  # the index says 40 frames; half are there
    rc, s, _ = _run(capsys, str(half), "--json")
    assert rc == 0 and 0 < s["frames"] < 40
    assert f"frames from {s['frames']} on cannot be decoded" in s["source_end_reason"]
    assert "(the file says it has 40)" in s["source_end_reason"]
    assert main(["run", "--backend", "cpu", "--no-ui", str(half)]) == 0
    assert "cannot be decoded" in " ".join(capsys.readouterr().out.split())  # text summary


def test_run_a_too_small_video_names_it(tmp_path, capsys):
    small = _video(tmp_path / "small.avi", size=(2, 2))
    rc, _, err = _run(capsys, str(small))
    assert rc == 1 and err == [f"gputrack run: error: video '{small}': frames are 2x2; the "
                               "sensor needs at least 4x4 pixels"]


def _raws(folder, *names: str, top: int = 1023):
    folder.mkdir()
    for i, name in enumerate(names):
        rng = np.random.default_rng(i)
        rng.integers(0, top + 1, (48, 64), dtype=np.uint16).astype("<u2").tofile(folder / name)
    return folder


def test_run_an_upper_case_raw_folder(tmp_path, capsys):
    shared_data("models/FastestDet.onnx")
    plain = _raws(tmp_path / "upper", "A1.RAW", "A2.RAW")
    rc, s, err = _run(capsys, str(plain), "--size", "64x48", "--bit-depth", "10", "--json")
    assert rc == 0 and s["frames"] == 2, err
    named = _raws(tmp_path / "named", "B1_64x48_10bit.RAW", "B2_64x48_10bit.RAW")
    rc, s, err = _run(capsys, str(named), "--json")
    assert rc == 0 and s["frames"] == 2, err


def test_run_a_raw_folder_with_two_formats_is_refused(tmp_path, capsys):
    folder = _raws(tmp_path / "mixed", "f1_64x48_10bit.raw", "f2_64x48_12bit_bggr.raw")
    rc, _, err = _run(capsys, str(folder), "--json")
    assert rc == 1 and len(err) == 1
    assert "f1_64x48_10bit.raw is 10-bit but f2_64x48_12bit_bggr.raw is 12-bit" in err[0]
