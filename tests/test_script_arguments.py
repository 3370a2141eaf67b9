"""The scripts of scripts/ treat a wrong command-line argument as a usage error: exit code 2,
one line on stderr naming the option, no traceback, nothing printed or written, and all of it
before any long work (each run here fails while parsing, so it takes about a second)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from gputrack.commands.args import macro_define
from gputrack.data import data_dir
from tests.conftest import SCRIPTS, load_script

REPO = Path(__file__).resolve().parent.parent
KERNEL = str(REPO / "kernels" / "isp.cu")


def run_script(name: str, *argv: str, cwd: Path, data: Path | None = None):
    env = dict(os.environ, GPUTRACK_DATA=str(data or data_dir()))
    return subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), *argv], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.fixture
def mot_files(tmp_path: Path) -> tuple[str, str]:
    """A ground truth and a detection file (only their existence matters here)."""
    gt, det = tmp_path / "gt.txt", tmp_path / "det.txt"
    gt.write_text("1,1,10,10,20,20,1,1,1\n")
    det.write_text("1,-1,10,10,20,20,0.9,-1,-1,-1\n")
    return str(gt), str(det)


# (script, arguments, what the error line names); {tmp} is the test's folder, {gt} and {det}
# the files of mot_files.
USAGE_ERRORS = [
    ("bench_isp", ["--size", "foo"], "--size"),
    ("bench_isp", ["--size", "65x33"], "--size"),  # odd: not whole Bayer cells
    ("bench_isp", ["--size", "0x0"], "--size"),
    ("bench_isp", ["--size", "8x8"], "--size"),  # below the synthetic world's 16x16
    ("bench_isp", ["--reps", "0"], "--reps"),  # statistics.median of nothing
    ("bench_isp", ["--json", "{tmp}/no-such-folder/isp.json"], "--json"),
    ("bench_isp", ["--json", "{tmp}/a-file/isp.json"], "--json"),  # unwritable: under a file
    ("bench_isp", ["--json", "{tmp}"], "--json"),  # a folder
    ("bench_deadline", ["--json", "{tmp}/no-such-folder/d.json"], "--json"),
    ("bench_deadline", ["--size", "foo"], "--size"),
    ("bench_deadline", ["--size", "64x48x2"], "--size"),
    ("bench_deadline", ["--fps", "nan"], "--fps"),
    ("bench_deadline", ["--fps", "inf"], "--fps"),
    ("bench_deadline", ["--frames", "0"], "--frames"),
    ("bench_tracker", ["--frames", "5"], "--frames"),  # 5 warm-up frames, none timed
    ("bench_tracker", ["--objects", "10", "-3"], "--objects"),
    ("bench_tracker", ["--objects", "0"], "--objects"),
    ("bench_tracker", ["--seconds", "-1"], "--seconds"),
    ("eval_mot", ["{gt}", "--det", "{det}", "--iou", "0"], "--iou"),
    ("eval_mot", ["{gt}", "--det", "{det}", "--iou", "1.5"], "--iou"),
    ("eval_mot", ["{gt}", "--det", "{det}", "--iou", "nan"], "--iou"),
    ("eval_mot", ["{gt}", "--det", "{det}", "--fps", "inf"], "--fps"),  # the Tracker's error
    ("eval_mot", ["{gt}", "--det", "{tmp}/missing.txt"], "--det"),
    ("eval_mot", ["{tmp}/missing.txt", "--det", "{det}"], "gt"),
    ("eval_mot", ["{gt}", "{tmp}/missing.txt"], "results"),
    ("eval_mot", ["{gt}"], "--det"),  # nothing to score
    ("eval_mot", ["{gt}", "{gt}", "--fps", "25"], "--fps"),  # changes nothing without --det
    ("sass_report", ["{tmp}/missing.cu"], "file"),
    ("sass_report", [KERNEL, "-D", "1FOO"], "-D"),
    ("sass_report", [KERNEL, "--segments", "-1"], "--segments"),
    ("sass_report", [KERNEL, "--arch", "sm_x"], "--arch"),
    ("sass_report", [KERNEL, "--arch", "compute_90"], "--arch"),  # PTX: no SASS to count
    ("sass_report", [KERNEL, "--dump", "{gt}"], "--dump"),  # a file, not a folder
    ("sass_report", [str(REPO / "kernels" / "sensor.cu"), "--common-path"], "--common-path"),
    ("half_precision_error", ["--random", "-4"], "--random"),
    ("half_precision_error", ["--random", "5"], "--random"),  # odd: not a Bayer mosaic
    ("half_precision_error", ["--random", "0", "--images", "0"], "nothing to measure"),
    ("half_precision_error", ["--images", "-1"], "--images"),
    ("profile_isp", ["--size", "foo"], "--size"),
    ("profile_isp", ["--size", "65x33"], "--size"),
    ("profile_isp", ["--schedule", "ISP_STRIP"], "--schedule"),  # no =N
    ("profile_isp", ["--schedule", "ISP_STRIP=0"], "--schedule"),  # divided by zero
    ("profile_isp", ["--schedule", "TILE=8"], "--schedule"),  # no such knob
    ("train_detector", ["--epochs", "0"], "--epochs"),
    ("train_detector", ["--worlds", "-1"], "--worlds"),
    ("train_detector", ["--lr", "nan"], "--lr"),
    ("train_detector", ["--eval-only", "--out", "{tmp}/missing.onnx"], "--out"),
    ("train_detector", ["--out", "{tmp}/no-such-folder/det.onnx"], "--out"),  # before training
]


@pytest.mark.parametrize(("script", "argv", "names"), USAGE_ERRORS,
                         ids=[f"{s} {' '.join(a)}" for s, a, _ in USAGE_ERRORS])  # fmt: skip
def test_bad_argument_is_one_line_and_exit_2(tmp_path, mot_files, script, argv, names):
    (tmp_path / "a-file").write_text("not a folder\n")
    gt, det = mot_files
    argv = [a.format(tmp=tmp_path, gt=gt, det=det) for a in argv]
    before = files_under(tmp_path)
    done = run_script(script, *argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], done.stderr
    assert names in lines[0]
    assert done.stdout == ""  # refused before any work (bench_isp would print its frame)
    assert files_under(tmp_path) == before  # nothing written, no folder made


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anyway")
def test_json_into_a_read_only_folder_is_refused_first(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        done = run_script("bench_isp", "--json", str(ro / "isp.json"), cwd=tmp_path)
    finally:
        ro.chmod(0o755)
    assert done.returncode == 2 and "--json" in done.stderr and done.stdout == ""
    assert not list(ro.iterdir())


def test_a_script_error_is_one_line_not_a_traceback(tmp_path, mot_files):
    """A GputrackError while working (not an argument's): `error: ...` and exit code 1."""
    gt, _ = mot_files
    bad = tmp_path / "bad-det.txt"
    bad.write_text("garbage\n")
    done = run_script("eval_mot", gt, "--det", str(bad), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "error:" in done.stderr and "bad-det.txt" in done.stderr
    done = run_script("half_precision_error", "--images", "2", cwd=tmp_path,
                      data=tmp_path / "no-data")  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "no images" in done.stderr


def test_bench_tracker_runs_with_the_fewest_frames(tmp_path):
    """6 frames: 5 warm-up and one timed (5 divided by zero). A subprocess: it pins its CPU."""
    done = run_script("bench_tracker", "--objects", "3", "--frames", "6", "--seconds", "0.01",
                      cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "speed-up" in done.stdout and done.stdout.strip().splitlines()[-1].split()[0] == "3"


def test_define_without_value_is_one_as_nvcc_takes_it(monkeypatch):
    assert macro_define("FOO") == ("FOO", "1")
    assert macro_define("ISP_CELLS=2") == ("ISP_CELLS", "2")
    assert macro_define("EMPTY=") == ("EMPTY", "")
    sass = load_script("sass_report")
    seen = {}

    def compile_cubin(path, arch, defines):  # what the build would be given
        seen.update(defines)
        return SimpleNamespace(error="stub"), None

    monkeypatch.setattr(sass, "find_cuobjdump", lambda: "cuobjdump")
    monkeypatch.setattr(sass, "compile_cubin", compile_cubin)
    assert sass.main([KERNEL, "-D", "FOO", "-DISP_CELLS=2"]) == 1  # the stub "did not compile"
    assert seen == {"FOO": "1", "ISP_CELLS": "2"}
