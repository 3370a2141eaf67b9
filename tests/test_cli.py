"""The `gputrack` command: verbs, `check`, and one-line errors for bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gputrack.cli import VERBS, main
from gputrack.device import probe


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gputrack", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_every_verb():
    out = run_cli("--help")
    assert out.returncode == 0
    for verb in VERBS:
        assert verb in out.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_has_help(verb):
    out = run_cli(verb, "--help")
    assert out.returncode == 0 and "usage: gputrack " + verb in out.stdout


def test_check_json_tells_the_truth_about_this_machine():
    out = run_cli("check", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) >= {"versions", "gpu", "backends", "kernels"}
    assert set(report["backends"]) == {"cuda", "pycuda", "emu", "cpu"}
    for name, state in report["backends"].items():
        assert state["available"] == probe(name).available
        assert isinstance(state["reason"], str) and state["reason"]
    assert report["backends"]["cpu"]["available"]
    cuda = report["backends"]["cuda"]
    assert (report["gpu"] is None) == (not cuda["available"])
    assert report["kernels"], "kernels were compiled and reported"
    for k in report["kernels"]:
        assert set(k) >= {"file", "name", "compiled", "registers", "spills"}
        assert k["compiled"] and k["registers"] > 0 and k["spills"] == 0
    assert report["kernel_errors"] == []


def test_check_human_output_names_the_backends():
    out = run_cli("check", "--no-kernels")
    assert out.returncode == 0
    for name in ("cuda", "pycuda", "emu", "cpu"):
        assert name in out.stdout


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["check", "--bogus"], "--bogus"),
        (["frobnicate"], "frobnicate"),
        (["check", "--arch"], "--arch"),
        (["check", "--arch", "foo"], "'foo' is not a GPU architecture such as sm_90"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, needle):
    out = run_cli(*argv)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.stderr


def test_no_verb_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "VERB" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["isp", "x.png", "--out", "y.png", "--pattern", "XYZW"], "--pattern"),
        (["isp", "x.png", "--out", "y.png", "--bit-depth", "13"], "--bit-depth"),
        (["isp", "x.png", "--out", "y.png", "--demosaic", "foo"], "--demosaic"),
        (["isp", "x.png", "--out", "y.png", "--wb", "1,2"], "--wb"),
        (["isp", "x.png", "--out", "y.png", "--black-level", "-5"], "--black-level"),
        (["detect", "x.png", "--score", "5"], "--score"),
        (["detect", "x.png", "--max-det", "0"], "--max-det"),
        (["run", "--score", "7"], "--score"),
        (["run", "--pattern", "XX"], "--pattern"),
        (["run", "--size", "big"], "--size"),
        # about compiling the kernels, which --no-kernels skips: refused, not ignored
        (["check", "--strict", "--no-kernels"], "--strict"),
        (["check", "--arch", "sm_80", "--no-kernels"], "--arch"),
        (["run", "--roi", "-2,0,8,8"], "--roi"),  # argparse took "-2,..." for an option
    ],
)
def test_bad_argument_values_are_exit_2_before_any_work(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], "one line naming the option, nothing else"


def test_an_architecture_nvrtc_does_not_know_is_a_bad_argument():
    from gputrack.device.compile_report import check_arch

    assert check_arch("sm_90") == "sm_90" and check_arch("compute_90a") == "compute_90a"
    with pytest.raises(ValueError, match="sm_9 "):
        check_arch("sm_9 ")
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    with pytest.raises(ValueError, match="this NVRTC compiles for .*sm_90"):
        check_arch("sm_20")


def without_nvrtc(monkeypatch: pytest.MonkeyPatch, nvcc: bool) -> None:
    """`check` as on a machine without CuPy's NVRTC, with or without nvcc on the PATH."""
    import shutil

    from gputrack.commands import check
    from gputrack.device import compile_report, kernel_source

    def missing() -> tuple[None, str]:
        return None, "CuPy not installed (cupy_backends)"

    monkeypatch.setattr(compile_report, "nvrtc_version", missing)
    monkeypatch.setattr(check, "nvrtc_version", missing)
    if not nvcc:
        which = shutil.which
        monkeypatch.setattr(
            shutil, "which", lambda n, *a, **k: None if n == "nvcc" else which(n, *a, **k)
        )
    smallest = min(kernel_source.kernel_files(), key=lambda p: p.stat().st_size)
    monkeypatch.setattr(kernel_source, "kernel_files", lambda: [smallest])  # one nvcc run
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells to the terminal width


def test_check_without_nvrtc_compiles_with_nvcc(monkeypatch, capsys):
    import shutil

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not installed")
    without_nvrtc(monkeypatch, nvcc=True)
    assert main(["check", "--json", "--strict"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compiler"].startswith("nvcc") and report["nvrtc"]["version"] is None
    assert report["kernels"] and report["kernel_errors"] == report["kernels_not_checked"] == []
    assert all(k["compiler"].startswith("nvcc") for k in report["kernels"])


def test_check_with_no_compiler_says_not_checked_not_does_not_compile(monkeypatch, capsys):
    without_nvrtc(monkeypatch, nvcc=False)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "not checked: no NVRTC" in out and "and no nvcc" in out
    assert "does not compile" not in out

    assert main(["check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compiler"] is None and report["kernels"] == report["kernel_errors"] == []
    assert [r["reason"][:12] for r in report["kernels_not_checked"]] == ["not checked:"]

    assert main(["check", "--strict"]) == 1, "--strict cannot vouch for unchecked kernels"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--strict" in err[0] and "neither NVRTC nor nvcc" in err[0]
