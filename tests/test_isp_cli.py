"""`gputrack isp`: RGB and RAW inputs, --json, output formats, and one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
        (["--ccm", "1,0,0,1,0,0,0,0,1"], 2, "singular"),  # the sensor model cannot invert it
        (["--ccm", "0,0,0,0,0,0,0,0,0"], 2, "--ccm: colour matrix"),  # the user's: exit 2
        (["--tone", "gamma2", "--stages", "demosaic"], 2, "--tone applies to --stages full"),
        (["--wb", "nan,1,1"], 2, "three gains R,G,B from 0.015625 to 64"),
        (["--wb", "1e39,1,1"], 2, "three gains R,G,B from 0.015625 to 64"),
        (["--lens-shading", "-1,0"], 2, "must stay above 0"),  # a value led by a minus sign
        (["--lens-shading", "0,1e308"], 2, "at most 64"),
        (["--lens-shading", "0.2"], 2, "give two numbers"),
        (["--lens-shading", "0.2,0", "--stages", "demosaic"], 2,
         "--lens-shading applies to --stages full"),
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
        (["--stages", "demosaic", "--noise"], "--noise applies to --stages full"),
        (["--stages", "demosaic", "--bit-depth", "12"], "--bit-depth applies to --stages full"),
        (["--stages", "demosaic", "--black-level", "100"], "--black-level applies to"),
        (["--stages", "demosaic", "--wb", "3,1,3"], "--wb applies to --stages full"),
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
    assert "--wb applies" in _error(capsys, [*base, "--stages", "demosaic", "--wb", "2,1,2"])
    two = [*base, "--stages", "demosaic", "--wb", "2,1,2", "--tone", "linear"]
    assert "--tone, --wb apply to --stages full" in _error(capsys, two)
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


# ---- QA pass: refusals, exit codes, what --json and the text line say ----------------------


def _dng(tmp_path, rng):
    """A 12-bit DNG stating its white balance and a colour matrix, as `run --raw` writes it."""
    pytest.importorskip("rawpy")
    pytest.importorskip("pidng")
    from gputrack.outputs.dng import dng_bytes
    from gputrack.sensor.frame import RawFrame

    data = rng.integers(256, 4096, (32, 48), dtype=np.uint16)
    ccm = np.array([[1.7, -0.55, -0.15], [-0.25, 1.45, -0.2], [0.05, -0.6, 1.55]])
    path = tmp_path / "shot.dng"
    path.write_bytes(dng_bytes(RawFrame(data, bit_depth=12, black_level=256), (1.9, 1, 1.3), ccm))
    return path


@pytest.mark.parametrize("kind", ["png", "npy", "dng"])
def test_ccm_camera_with_the_demosaic_stage_is_refused(capsys, tmp_path, rng, image_png, kind):
    """--ccm camera was silently dropped there (and --json said identity), unlike any other
    --ccm: the stage uses the identity matrix by definition."""
    if kind == "png":
        src = image_png[0]
    elif kind == "npy":
        src = tmp_path / "frame.npy"
        np.save(src, rng.integers(0, 4096, (32, 48)).astype(np.uint16))
    else:
        src = _dng(tmp_path, rng)
    out = tmp_path / "o.png"
    argv = ["isp", str(src), "--out", str(out), "--backend", "cpu", "--stages", "demosaic"]
    assert main([*argv, "--ccm", "camera"]) == 2
    assert "--ccm applies to --stages full" in capsys.readouterr().err
    assert not out.exists()


def test_exact_means_every_pixel_and_the_text_says_what_the_figure_covers(capsys, tmp_path):
    """A grey image comes back exactly inside the 8-pixel border, while a strong lens shading
    leaves the border pixels off: not 'exact', and a figure over the whole image."""
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((64, 96, 3), 128, np.uint8))
    out = tmp_path / "o.png"
    base = ["isp", str(grey), "--out", str(out), "--backend", "cpu"]
    shaded = _run_json(capsys, [*base, "--lens-shading", "-0.99,0", "--json"])
    back = cv2.imread(str(out))[..., ::-1].astype(int)
    assert np.abs(back - 128).max() > 8  # off at the border...
    assert np.array_equal(back[8:-8, 8:-8], np.full((48, 80, 3), 128))  # ...exact inside
    assert shaded["exact"] is False and shaded["cpsnr_border_px"] == 0
    assert 10 < shaded["cpsnr_db"] < 60
    assert main([*base, "--lens-shading", "-0.99,0"]) == 0
    line = capsys.readouterr().out
    assert f"CPSNR {shaded['cpsnr_db']:.2f} dB (whole image; exact inside the 8-pixel border)" in (
        line)  # fmt: skip
    plain = _run_json(capsys, [*base, "--json"])
    assert plain["exact"] is True and plain["cpsnr_db"] is None
    assert main(base) == 0 and "exact round trip" in capsys.readouterr().out


def test_a_round_trip_figure_says_its_border(capsys, tmp_path, image_png):
    src, _ = image_png
    base = ["isp", str(src), "--out", str(tmp_path / "o.png"), "--backend", "cpu"]
    info = _run_json(capsys, [*base, "--json"])
    assert main(base) == 0
    line = capsys.readouterr().out
    # the text rounds the figure once, --json (3 decimals) before: 25.1949 is 25.19 and 25.195
    said = re.search(r"CPSNR ([0-9.]+) dB \(8-pixel border excluded\)", line)
    assert said and abs(float(said.group(1)) - info["cpsnr_db"]) <= 0.0051, line


def test_an_npy_raw_reads_its_names_pattern_and_bit_depth(capsys, tmp_path, rng):
    src = tmp_path / "cap_bggr_10bit.npy"
    np.save(src, rng.integers(0, 1024, (32, 48)).astype(np.uint16))
    out = tmp_path / "o.png"
    info = _run_json(capsys, ["isp", str(src), "--out", str(out), "--backend", "cpu", "--json"])
    assert (info["pattern"], info["bit_depth"], info["white_level"]) == ("BGGR", 10, 1023)
    info = _run_json(capsys, ["isp", str(src), "--out", str(out), "--backend", "cpu", "--json",
                              "--pattern", "rggb", "--bit-depth", "12"])  # fmt: skip
    assert (info["pattern"], info["bit_depth"]) == ("RGGB", 12)  # options override the name
    raw = tmp_path / "cap_8x8_bggr_10bit.raw"  # 1-digit sides: no --size needed
    rng.integers(0, 1024, (8, 8)).astype("<u2").tofile(raw)
    info = _run_json(capsys, ["isp", str(raw), "--out", str(out), "--backend", "cpu", "--json"])
    assert (info["width"], info["height"], info["pattern"], info["bit_depth"]) == (
        8, 8, "BGGR", 10)  # fmt: skip


@pytest.mark.parametrize("kind", ["png", "npy", "npy-named"])
def test_a_black_level_that_does_not_fit_is_a_usage_error(capsys, tmp_path, rng, image_png,
                                                          kind):  # fmt: skip
    if kind == "png":
        src, depth = image_png[0], ["--bit-depth", "10"]
    elif kind == "npy":
        src, depth = tmp_path / "frame.npy", ["--bit-depth", "10"]
    else:  # the depth from the name
        src, depth = tmp_path / "frame_10bit.npy", []
    if kind != "png":
        np.save(src, rng.integers(0, 1024, (32, 48)).astype(np.uint16))
    out = tmp_path / "o.png"
    argv = ["isp", str(src), "--out", str(out), "--backend", "cpu", *depth]
    assert main([*argv, "--black-level", "2000"]) == 2
    err = capsys.readouterr().err
    assert "--black-level 2000: 10-bit data takes a black level from 0 to 1022" in err, err
    assert not out.exists()


@pytest.mark.parametrize("depth", ["8", "14", "16"])
def test_a_dng_states_its_own_bit_depth(capsys, tmp_path, rng, depth):
    """--bit-depth 14 was reported beside the file's white level 4095 and changed nothing;
    --bit-depth 8 failed on a white level the file does not have. Refused in isp and run."""
    dng = _dng(tmp_path, rng)
    out = tmp_path / "o.png"
    assert main(["isp", str(dng), "--out", str(out), "--backend", "cpu", "--bit-depth", depth]) == 2
    assert "--bit-depth does not apply" in capsys.readouterr().err and not out.exists()
    model = str(Path(__file__).resolve().parent.parent / "gputrack/models/synthetic_det.onnx")
    assert main(["run", str(dng), "--bit-depth", depth, "--no-ui", "--backend", "cpu",
                 "--model", model, "--log", str(tmp_path / "t.jsonl")]) == 2  # fmt: skip
    assert "--bit-depth does not apply" in capsys.readouterr().err
    assert not (tmp_path / "t.jsonl").exists()


def test_a_dngs_matrix_is_printed_as_the_file_states_it(capsys, tmp_path, rng):
    dng = _dng(tmp_path, rng)
    info = _run_json(capsys, ["isp", str(dng), "--out", str(tmp_path / "o.png"), "--backend",
                              "cpu", "--json"])  # fmt: skip
    ccm = np.array(info["ccm"])
    np.testing.assert_allclose(ccm, [[1.7, -0.55, -0.15], [-0.25, 1.45, -0.2],
                                     [0.05, -0.6, 1.55]], atol=2e-4)  # fmt: skip
    assert all(v == round(v, 6) for v in ccm.ravel())  # not float32 noise (1.6999361515...)


@pytest.mark.parametrize("extra", [["--black-level", "0"], ["--black-level", "100"],
                                   ["--bit-depth", "12"]])  # fmt: skip
def test_demosaic_stage_refusals_say_the_inputs_depth(capsys, tmp_path, rng, extra):
    """--black-level 0 is given as much as any other value; the message names the image's own
    depth (16-bit here), not always 8-bit."""
    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), rng.integers(0, 65536, (32, 48, 3), dtype=np.uint16))
    argv = ["isp", str(src), "--out", str(tmp_path / "o.png"), "--backend", "cpu"]
    assert main([*argv, "--stages", "demosaic", *extra]) == 2
    err = capsys.readouterr().err
    assert f"{extra[0]} applies to --stages full" in err and "as given (16-bit," in err, err


def test_out_on_a_descriptor_says_how(capsys, tmp_path, image_png):
    src, _ = image_png
    assert main(["isp", str(src), "--out", "/dev/stdout"]) == 2
    err = capsys.readouterr().err
    assert "the format comes from the extension" in err and "ln -s /dev/stdout o.png" in err


def test_out_through_a_link_to_stdout_keeps_the_summary_out_of_the_image(
    capsys, tmp_path, image_png, monkeypatch
):
    """What the message above advises: the image goes to the descriptor, the summary to
    stderr (it would be appended to the PNG)."""
    import os

    src, _ = image_png
    r, w = os.pipe()
    link = tmp_path / "o.png"
    link.symlink_to(f"/dev/fd/{w}")
    with os.fdopen(w, "w") as stdout:
        monkeypatch.setattr("sys.stdout", stdout)
        assert main(["isp", str(src), "--out", str(link), "--backend", "cpu", "--json"]) == 0
        monkeypatch.undo()
    with os.fdopen(r, "rb") as pipe:
        data = pipe.read()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (64, 96, 3)
    assert data.endswith(b"IEND\xaeB`\x82")  # nothing after the PNG
    assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["kind"] == "rgb"


@pytest.mark.parametrize("name, want", [("SRGB", "srgb"), ("Linear", "linear"),
                                        ("GAMMA2.2", "gamma2.2")])  # fmt: skip
def test_tone_names_in_any_case(capsys, tmp_path, image_png, name, want):
    """As --wb AUTO, --ccm IDENTITY and --pattern rggb are taken."""
    src, _ = image_png
    info = _run_json(capsys, ["isp", str(src), "--out", str(tmp_path / "o.png"), "--backend",
                              "cpu", "--json", "--tone", name])  # fmt: skip
    assert info["tone"] == want
