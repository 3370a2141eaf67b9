"""`gputrack isp`: RGB and RAW inputs, --json, output formats, and one-line errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gputrack.cli import main
from gputrack.isp.quality import natural_image
from tests.conftest import shared_data


@pytest.fixture
def image_png(tmp_path, rng):
    img = natural_image(rng, 64, 96)
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), img[..., ::-1])
    return path, img


def _run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert err and err[-1].startswith("gputrack isp: error:"), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_rgb_image_round_trip_reports_cpsnr(capsys, tmp_path, image_png, backend):
    src, img = image_png
    out = tmp_path / "out.png"
    info = _run_json(capsys, ["isp", str(src), "--out", str(out), "--backend", backend, "--json"])
    assert info["backend"] == backend and info["kind"] == "rgb" and info["stages"] == "full"
    assert (info["width"], info["height"], info["pattern"], info["bit_depth"]) == (
        96,
        64,
        "RGGB",
        12,
    )
    assert info["cpsnr_border_px"] == 8 and info["cpsnr_db"] > 18
    back = cv2.imread(str(out))[..., ::-1]
    assert back.shape == img.shape
    assert not list(tmp_path.glob(".*tmp*")), "the temporary file was renamed"


def test_demosaic_stage_and_npy_output(capsys, tmp_path, image_png):
    src, img = image_png
    out = tmp_path / "out.npy"
    args = ["isp", str(src), "--out", str(out), "--backend", "cpu", "--json"]
    mhc = _run_json(capsys, [*args, "--stages", "demosaic", "--pattern", "gbrg"])
    bil = _run_json(capsys, [*args, "--stages", "demosaic", "--demosaic", "bilinear"])
    assert mhc["stages"] == "demosaic" and mhc["bit_depth"] == 8 and mhc["pattern"] == "GBRG"
    assert mhc["cpsnr_db"] > bil["cpsnr_db"]
    arr = np.load(out)
    assert arr.dtype == np.float32 and arr.shape == img.shape and 0 <= arr.min() <= arr.max() <= 1


def test_directional_demosaic_on_the_reference_and_the_kernels(capsys, tmp_path, image_png):
    src, _ = image_png
    out = tmp_path / "out.png"
    args = ["isp", str(src), "--out", str(out), "--json", "--stages", "demosaic"]
    bil = _run_json(capsys, [*args, "--backend", "cpu", "--demosaic", "bilinear"])
    cpu = _run_json(capsys, [*args, "--backend", "cpu", "--demosaic", "directional"])
    emu = _run_json(capsys, [*args, "--backend", "emu", "--demosaic", "directional"])
    assert cpu["demosaic"] == emu["demosaic"] == "directional" and emu["backend"] == "emu"
    assert cpu["cpsnr_db"] > bil["cpsnr_db"]
    assert emu["cpsnr_db"] == pytest.approx(cpu["cpsnr_db"], abs=0.05)


def test_noise_and_bit_depth(capsys, tmp_path, image_png):
    src, _ = image_png
    out = tmp_path / "out.png"
    base = ["isp", str(src), "--out", str(out), "--backend", "cpu", "--json"]
    clean = _run_json(capsys, [*base, "--bit-depth", "14"])
    noisy = _run_json(capsys, [*base, "--bit-depth", "10", "--noise", "--seed", "3"])
    assert clean["bit_depth"] == 14 and noisy["bit_depth"] == 10 and noisy["noise"] is True
    assert noisy["cpsnr_db"] < clean["cpsnr_db"]


def test_raw_inputs(capsys, tmp_path, rng):
    raw = rng.integers(0, 1024, (48, 64)).astype(np.uint16)
    headerless = tmp_path / "frame.raw"
    raw.astype("<u2").tofile(headerless)
    npy = tmp_path / "frame.npy"
    np.save(npy, raw)
    out = tmp_path / "out.png"
    a = _run_json(capsys, ["isp", str(headerless), "--out", str(out), "--size", "64x48",
                           "--bit-depth", "10", "--backend", "cpu", "--json"])  # fmt: skip
    assert a["kind"] == "raw" and (a["width"], a["height"], a["bit_depth"]) == (64, 48, 10)
    assert "cpsnr_db" not in a and len(a["wb_gains"]) == 3  # grey world by default
    b = _run_json(capsys, ["isp", str(npy), "--out", str(out), "--bit-depth", "10",
                           "--wb", "1.5,1,1.2", "--backend", "emu", "--json"])  # fmt: skip
    assert b["wb_gains"] == [1.5, 1.0, 1.2] and b["backend"] == "emu"


def test_real_raw_file_by_its_name(capsys, tmp_path):
    src = shared_data("raw/openisp_1920x1080_rggb_10bit.raw")
    out = tmp_path / "real.png"
    info = _run_json(capsys, ["isp", str(src), "--out", str(out), "--backend", "cpu", "--json"])
    assert (info["width"], info["height"], info["bit_depth"], info["pattern"]) == (
        1920, 1080, 10, "RGGB")  # fmt: skip
    assert cv2.imread(str(out)).shape == (1080, 1920, 3)


def test_odd_image_size_is_an_error(capsys, tmp_path):
    src = tmp_path / "odd.png"
    cv2.imwrite(str(src), np.full((31, 40, 3), 100, np.uint8))
    msg = _error(capsys, ["isp", str(src), "--out", str(tmp_path / "o.png"), "--backend", "cpu"])
    assert "odd.png" in msg and "40x31" in msg and "even" in msg
    assert not (tmp_path / "o.png").exists()


def test_data_beyond_the_bit_depth_is_an_error(capsys, tmp_path):
    src = tmp_path / "deep.npy"
    np.save(src, np.full((16, 16), 4000, np.uint16))
    msg = _error(capsys, ["isp", str(src), "--out", str(tmp_path / "o.png"), "--bit-depth", "10",
                          "--backend", "cpu"])  # fmt: skip
    assert "4000" in msg and "10" in msg


def test_unknown_pattern_demosaic_and_output_are_errors(capsys, tmp_path, image_png):
    src, _ = image_png
    out = str(tmp_path / "o.png")
    assert "XYZW" in _error(capsys, ["isp", str(src), "--out", out, "--pattern", "XYZW"])
    assert "'vng'" in _error(capsys, ["isp", str(src), "--out", out, "--demosaic", "vng"])
    assert ".gif" in _error(capsys, ["isp", str(src), "--out", str(tmp_path / "o.gif")])
    assert "not found" in _error(capsys, ["isp", str(tmp_path / "none.png"), "--out", out])
    assert "--wb" in _error(capsys, ["isp", str(src), "--out", out, "--wb", "2,1"])
    odd_raw = tmp_path / "x.raw"
    np.zeros(63 * 48, "<u2").tofile(odd_raw)
    assert "odd" in _error(capsys, ["isp", str(odd_raw), "--out", out, "--size", "63x48"])


def test_colour_matrix_and_tone_are_options(capsys, tmp_path, image_png):
    """--ccm and --tone reach the ISP (and, for an RGB input, the sensor model's inverse of it:
    the round trip stays as good), --json says which were used, bad values are one line."""
    src, _ = image_png
    out = tmp_path / "out.npy"
    base = ["isp", str(src), "--out", str(out), "--backend", "cpu", "--json"]
    default = _run_json(capsys, base)
    default_img = np.load(out)
    ccm = "1.5,-0.3,-0.2,-0.2,1.4,-0.2,0,-0.5,1.5"
    custom = _run_json(capsys, [*base, "--ccm", ccm, "--tone", "gamma2.2"])
    custom_img = np.load(out)
    assert default["tone"] == "srgb" and custom["tone"] == "gamma2.2"
    assert np.allclose(custom["ccm"], np.array(ccm.split(","), float).reshape(3, 3))
    assert custom["cpsnr_db"] > 18 and abs(custom["cpsnr_db"] - default["cpsnr_db"]) < 6
    assert np.abs(custom_img - default_img).max() > 0.01  # the RAW frame and ISP changed
    plain = _run_json(capsys, [*base, "--ccm", "identity", "--tone", "linear"])
    assert plain["ccm"] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    # Values led by a minus sign, as separate arguments (argparse alone would refuse them).
    shaded = _run_json(capsys, [*base, "--lens-shading", "-0.3,0.05", "--ccm",
                                "-0.1,1.2,-0.1,0,1,0,0,0,1"])  # fmt: skip
    assert shaded["lens_shading"] == [-0.3, 0.05] and shaded["ccm"][0] == [-0.1, 1.2, -0.1]
    assert default["lens_shading"] == [0.0, 0.0]
    # A RAW input takes them too: the same RAW frame through two matrices.
    raw = tmp_path / "frame.npy"
    np.save(raw, np.random.default_rng(1).integers(0, 4096, (32, 48)).astype(np.uint16))
    outs = []
    for m in ("identity", ccm):
        _run_json(capsys, ["isp", str(raw), "--out", str(out), "--backend", "cpu", "--json",
                           "--bit-depth", "12", "--ccm", m])  # fmt: skip
        outs.append(np.load(out))
    assert np.abs(outs[0] - outs[1]).max() > 0.01


@pytest.mark.parametrize(
    "extra, code, needle",
    [
        (["--ccm", "1,2,3"], 2, "give 'identity', 'camera' or 9 numbers"),
        (["--ccm", "1,0,0,0,1,0,0,0,nan"], 2, "every entry must be a number within +-16"),
        (["--ccm", "1e300,-1e300,0,0,1,0,0,0,1"], 2, "every entry must be a number within +-16"),
        (["--tone", "gamma0"], 2, "gamma must be from 0.1 to 10"),
        (["--tone", "gamma0.001"], 2, "gamma must be from 0.1 to 10"),  # a flat table
        (["--tone", "gamma11"], 2, "gamma must be from 0.1 to 10"),
        (["--tone", "film"], 2, "unknown (srgb, linear, gammaX)"),
        (["--ccm", "1,0,0,1,0,0,0,0,1"], 1, "singular"),  # the sensor model cannot invert it
        (["--tone", "gamma2", "--stages", "demosaic"], 2, "apply to --stages full"),
        (["--wb", "nan,1,1"], 2, "three gains R,G,B from 0.015625 to 64"),
        (["--wb", "1e39,1,1"], 2, "three gains R,G,B from 0.015625 to 64"),
        (["--lens-shading", "-1,0"], 2, "must stay above 0"),  # a value led by a minus sign
        (["--lens-shading", "0,1e308"], 2, "at most 64"),
        (["--lens-shading", "0.2"], 2, "give two numbers"),
        (["--lens-shading", "0.2,0", "--stages", "demosaic"], 2, "apply to --stages full"),
    ],
)
def test_bad_colour_options_are_one_line(capsys, tmp_path, image_png, extra, code, needle):
    src, _ = image_png
    out = tmp_path / "o.png"
    rc = main(["isp", str(src), "--out", str(out), "--backend", "cpu", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == code and needle in err[-1] and "Traceback" not in "\n".join(err)
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--stages", "demosaic", "--noise"], "--noise apply to --stages full"),
        (["--stages", "demosaic", "--bit-depth", "12"], "--bit-depth apply to --stages full"),
        (["--stages", "demosaic", "--black-level", "100"], "--black-level apply to"),
        (["--stages", "demosaic", "--wb", "3,1,3"], "--wb apply to --stages full"),
        (["--seed", "3"], "applies with --noise"),
        (["--size", "96x64"], "--size applies to headerless .raw input"),
        (["--bit-depth", "16"], "the sensor model reads out 10, 12, 14 bits"),
        (["--bit-depth", "8"], "the sensor model reads out 10, 12, 14 bits"),
    ],
)
def test_options_an_rgb_input_would_ignore_are_usage_errors(
    capsys, tmp_path, image_png, extra, needle
):
    """Rather than a run that silently drops them (and a --json that reports them as used)."""
    src, _ = image_png
    out = tmp_path / "o.png"
    assert main(["isp", str(src), "--out", str(out), "--backend", "cpu", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1] and "Traceback" not in "\n".join(err)
    assert not out.exists()


def test_options_a_raw_input_would_ignore_are_usage_errors(capsys, tmp_path, rng):
    npy = tmp_path / "frame.npy"
    np.save(npy, rng.integers(0, 4096, (32, 48)).astype(np.uint16))
    out = str(tmp_path / "o.png")
    base = ["isp", str(npy), "--out", out, "--backend", "cpu"]
    assert "--size applies" in _error(capsys, [*base, "--size", "48x32"])
    assert main([*base, "--noise"]) == 2
    assert "--noise applies to RGB inputs" in capsys.readouterr().err
    assert main([*base, "--size", "abc"]) == 2
    assert "'abc' is not a size WxH" in capsys.readouterr().err
    assert "--wb apply" in _error(capsys, [*base, "--stages", "demosaic", "--wb", "2,1,2"])
    # what a RAW input does take with --stages demosaic: its readout's bit depth
    info = _run_json(capsys, [*base, "--stages", "demosaic", "--bit-depth", "12", "--json"])
    assert info["bit_depth"] == 12 and info["stages"] == "demosaic"


def test_one_frame_files_only_and_either_byte_order(capsys, tmp_path, rng):
    """isp takes one frame: a stack in one .npy is refused (run reads stacks), a folder too;
    a big-endian uint16 mosaic is RAW like a little-endian one."""
    raw = rng.integers(0, 4096, (32, 48)).astype(np.uint16)
    out = tmp_path / "o.npy"
    little, big = tmp_path / "le.npy", tmp_path / "be.npy"
    np.save(little, raw)
    np.save(big, raw.astype(">u2"))
    base = ["--out", str(out), "--backend", "cpu", "--json", "--wb", "1.5,1,1.5"]
    a = _run_json(capsys, ["isp", str(little), *base])
    want = np.load(out)
    b = _run_json(capsys, ["isp", str(big), *base])
    assert a["kind"] == b["kind"] == "raw" and np.array_equal(np.load(out), want)
    stack = tmp_path / "stack.npy"
    np.save(stack, np.stack([raw, raw, raw]))
    assert main(["isp", str(stack), "--out", str(out)]) == 2
    assert "holds 3 frames; isp takes one" in capsys.readouterr().err
    rgb_stack = tmp_path / "rgb_stack.npy"
    np.save(rgb_stack, rng.integers(0, 256, (2, 32, 48, 3)).astype(np.uint8))
    assert main(["isp", str(rgb_stack), "--out", str(out)]) == 2
    assert "holds 2 frames" in capsys.readouterr().err
    rgb16 = tmp_path / "rgb16.npy"  # a 16-bit RGB image, not 32 RAW frames 3 pixels wide
    np.save(rgb16, rng.integers(0, 65536, (32, 48, 3)).astype(np.uint16))
    assert _run_json(capsys, ["isp", str(rgb16), *base[:5]])["kind"] == "rgb"
    want = np.load(out)
    np.save(rgb16, np.load(rgb16).astype(">u2"))  # the same image, big-endian
    assert _run_json(capsys, ["isp", str(rgb16), *base[:5]])["kind"] == "rgb"
    assert np.array_equal(np.load(out), want)
    folder = tmp_path / "frames.raw"  # a folder, whatever its name says
    folder.mkdir()
    assert main(["isp", str(folder), "--out", str(out)]) == 2
    assert "a folder; isp takes one file" in capsys.readouterr().err


def test_small_inputs_and_an_output_folder_are_named(capsys, tmp_path):
    tiny = tmp_path / "tiny.npy"
    np.save(tiny, np.full((2, 2), 100, np.uint16))
    msg = _error(capsys, ["isp", str(tiny), "--out", str(tmp_path / "o.png"), "--backend", "cpu"])
    assert "tiny.npy" in msg and "at least 4x4" in msg
    png = tmp_path / "tiny.png"
    cv2.imwrite(str(png), np.full((2, 2, 3), 100, np.uint8))
    msg = _error(capsys, ["isp", str(png), "--out", str(tmp_path / "o.png"), "--backend", "cpu"])
    assert "tiny.png" in msg and "at least 4x4" in msg
    (tmp_path / "d.png").mkdir()
    assert main(["isp", str(png), "--out", str(tmp_path / "d.png")]) == 2
    assert "is a folder" in capsys.readouterr().err
    # A folder that is not there: a usage error naming --out, as run's outputs (was exit 1).
    assert main(["isp", str(png), "--out", str(tmp_path / "none" / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "does not exist" in err


def test_an_empty_raw_file_gets_no_nonsense_size_hint(capsys, tmp_path):
    empty = tmp_path / "zero.raw"
    empty.write_bytes(b"")
    msg = _error(capsys, ["isp", str(empty), "--out", str(tmp_path / "o.png"), "--size", "48x32",
                          "--backend", "cpu"])  # fmt: skip
    assert "0 bytes" in msg and "would be" not in msg


def test_a_corrupt_image_is_one_line_without_opencvs_log(capfd, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff" * 64)  # a PNG signature, then garbage
    assert main(["isp", str(bad), "--out", str(tmp_path / "o.png"), "--backend", "cpu"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert err == [f"gputrack isp: error: {bad}: not an image OpenCV can read"], err
