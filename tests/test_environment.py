"""gputrack on machines that are not the developers': closed standard streams, a dumb
terminal, an emu cache that is a file or holds a library cut short, folder names that are not
UTF-8 or read under a locale that is not, an nvcc that cannot run."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from gputrack.cli import main
from gputrack.device.emu import build
from gputrack.errors import KernelError
from gputrack.ui import LiveView

REPO = Path(__file__).resolve().parent.parent
NEEDS_GXX = pytest.mark.skipif(shutil.which("g++") is None, reason="the emu backend needs g++")
KERNEL = 'extern "C" __global__ void env_fill(float* x, int n) {\n' \
         "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n" \
         "    if (i < n) x[i] = 2.0f * i;\n}\n"  # fmt: skip


def _shell(command: str, **env: str) -> subprocess.CompletedProcess:
    """`command` through sh, `$GT` being `python -m gputrack` from another folder."""
    full = {**os.environ, "GT": f"{sys.executable} -m gputrack", **env}
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd="/",
                          env=full, timeout=120)  # fmt: skip


def test_closed_stderr_is_no_crash_and_keeps_the_exit_codes():
    # 2>&-: every line to stderr raised AttributeError (sys.stderr is None), so a bad argument
    # exited 1 (not 2) and a good run on --backend auto (it says why it picked cpu) failed
    done = _shell("$GT run --bogus 2>&-; echo rc=$?")
    assert done.stdout.strip().endswith("rc=2"), done.stdout
    done = _shell("$GT run synthetic:64x64 --backend auto --frames 1 --no-ui --json 2>&- <&- "
                  "; echo rc=$?")  # fmt: skip
    assert done.stdout.strip().endswith("rc=0"), done.stdout
    assert json.loads(done.stdout.strip().rsplit("\n", 1)[0])["frames"] == 1


def test_dumb_terminal_gets_no_escape_sequences():
    out = io.StringIO()
    console = Console(file=out, width=80, height=30, force_terminal=True, _environ={"TERM": "dumb"})
    assert console.is_dumb_terminal
    with LiveView("t", (64, 64), fps=30, class_names=("car",), console=console) as view:
        view.update(0, [], {"isp": 1.0, "total": 2.0})
    assert "\x1b[?2026" not in out.getvalue(), "a dumb terminal prints DEC 2026 as text"


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_emu_cache_home_that_is_a_file_is_one_clear_error(tmp_path, monkeypatch, where):
    afile = tmp_path / "cache"
    afile.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(afile if where == "file" else afile / "sub"))
    with pytest.raises(KernelError, match=r"emu cache folder .* \(from XDG_CACHE_HOME\)"):
        build.cache_dir()


@NEEDS_GXX
def test_emu_rebuilds_a_library_cut_short_instead_of_crashing(tmp_path):
    # A library cut short (a build killed as its file was copied, a full disk) was loaded as
    # it was: dlopen mapped past its end and the process died of SIGBUS (exit 135); one of
    # length 0 failed with "file too short" until the user found and deleted it
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    first = _shell("$GT check --no-kernels --json", **env)
    assert json.loads(first.stdout)["backends"]["emu"]["available"], first.stdout + first.stderr
    cache = tmp_path / "gputrack" / "emu"
    runtime = next(cache.glob("libgputrack_emu_rt-*.so"))
    probe = next(cache.glob("probe-*.so"))
    whole = probe.read_bytes()
    assert build._complete_elf(probe)
    probe.write_bytes(whole[: len(whole) // 3])
    runtime.write_bytes(b"")
    assert not build._complete_elf(probe) and not build._complete_elf(runtime)
    again = _shell("$GT check --no-kernels --json", **env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["backends"]["emu"]["available"], again.stdout
    assert probe.read_bytes() == whole and build._complete_elf(runtime)


def test_complete_elf_refuses_what_is_not_one(tmp_path):
    odd = tmp_path / "x.so"
    for data in (b"", b"\x7fELF", b"not an ELF file at all" * 10):
        odd.write_bytes(data)
        assert not build._complete_elf(odd)
    assert not build._complete_elf(tmp_path / "absent.so")


@NEEDS_GXX
def test_emu_kernel_in_a_folder_whose_name_is_not_utf8(tmp_path):
    # The emu cache key hashed str(path).encode(): a folder named with bytes that are not
    # UTF-8 (they reach Python as surrogates) made the backend unusable (UnicodeEncodeError)
    import numpy as np

    from gputrack.device.ops_emu import EmuBackend

    folder = Path(os.fsdecode(bytes(tmp_path) + b"/k\xff"))
    folder.mkdir()
    (folder / "env_fill.cu").write_text(KERNEL)
    x = np.zeros(40, np.float32)
    EmuBackend().load(folder / "env_fill.cu").kernel("env_fill")(1, 64, (x, np.int32(40)))
    assert x.tolist() == [2.0 * i for i in range(40)]


def test_nvrtc_is_given_no_path_it_cannot_take(tmp_path):
    from gputrack.device import compile_report

    if compile_report.nvrtc_version()[0] is None:
        pytest.skip("NVRTC absent")
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/k\xff"))
    folder.mkdir()
    (folder / "env_fill.cu").write_text(KERNEL)
    report = compile_report.compile_nvrtc(folder / "env_fill.cu")  # raised UnicodeEncodeError
    assert not report.compiled and "UTF-8" in report.error and "\\xff" in report.error


_LOCALE = {"LC_ALL": "POSIX", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
_UNDER_ASCII = """
import sys, numpy as np
from pathlib import Path
assert sys.getfilesystemencoding() == "ascii", sys.getfilesystemencoding()
path = Path(sys.argv[1])
what = sys.argv[2]
if what == "emu":
    from gputrack.device.ops_emu import EmuBackend
    x = np.zeros(8, np.float32)
    EmuBackend().load(path).kernel("env_fill")(1, 32, (x, np.int32(8)))
    print(x.tolist())
else:
    from gputrack.device.compile_report import compile_nvrtc, nvrtc_version
    print(compile_nvrtc(path).compiled if nvrtc_version()[0] else "no nvrtc")
"""


@pytest.mark.parametrize("what", ["emu", "nvrtc"])
def test_unicode_folder_under_a_locale_that_is_not_utf8(tmp_path, what):
    # LC_ALL=POSIX without locale coercion: Python reads 'ü' of a folder's name as surrogates.
    # The emu key and its generated source, and NVRTC's include options, encoded them as UTF-8
    # and failed (`gputrack check` with a traceback)
    if what == "emu" and shutil.which("g++") is None:
        pytest.skip("the emu backend needs g++")
    folder = tmp_path / "ünï"
    folder.mkdir()
    (folder / "env_fill.cu").write_text(KERNEL)
    env = {**os.environ, **_LOCALE, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    if what == "nvrtc":
        env.pop("XDG_CACHE_HOME")
    done = subprocess.run([sys.executable, "-c", _UNDER_ASCII, os.fsencode(folder / "env_fill.cu"),
                           what], capture_output=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-800:]
    out = done.stdout.decode().strip()
    expected = ("True", "no nvrtc") if what == "nvrtc" else (str([2.0 * i for i in range(8)]),)
    assert out in expected


def test_check_with_an_nvcc_that_cannot_run(monkeypatch, tmp_path, capsys):
    # No NVRTC and an nvcc on the PATH that is not a program: `check` stopped at the first
    # kernel ("Exec format error") instead of reporting the kernels as not checked
    from gputrack.commands import check
    from gputrack.device import compile_report

    def missing() -> tuple[None, str]:
        return None, "CuPy not installed (cupy_backends)"

    monkeypatch.setattr(compile_report, "nvrtc_version", missing)
    monkeypatch.setattr(check, "nvrtc_version", missing)
    nvcc = tmp_path / "nvcc"
    nvcc.write_bytes(b"garbage")
    nvcc.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    compile_report._nvcc_run.cache_clear()
    assert main(["check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kernels"] == report["kernel_errors"] == []
    assert report["kernels_not_checked"] and all(
        str(nvcc) in r["reason"] and "cannot run" in r["reason"]
        for r in report["kernels_not_checked"]
    )
    assert main(["check", "--strict"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--strict" in err[0] and "cannot run" in err[0]
    compile_report._nvcc_run.cache_clear()


def test_missing_default_model_names_the_gputrack_data_given(tmp_path, monkeypatch):
    from gputrack.dsp.detector import default_model
    from gputrack.errors import GputrackError

    junk = tmp_path / "data.txt"
    junk.write_text("not a folder\n")
    monkeypatch.setenv("GPUTRACK_DATA", str(junk))
    with pytest.raises(GputrackError, match=f"GPUTRACK_DATA is {junk}: point it at the shared"):
        default_model()
    monkeypatch.delenv("GPUTRACK_DATA")
    monkeypatch.setattr("gputrack.dsp.detector.data_dir", lambda: tmp_path / "none")
    with pytest.raises(GputrackError, match=r"\(set GPUTRACK_DATA, or pass --model\)"):
        default_model()


def test_onnxruntime_gets_the_bytes_of_a_model_whose_name_is_no_utf8(tmp_path):
    from gputrack.dsp.runner import _ort_source
    from gputrack.models import SYNTHETIC_DET

    assert _ort_source(SYNTHETIC_DET) == str(SYNTHETIC_DET)  # a path: external weights beside
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/m\xff.onnx"))  # a surrogate in the name
    odd.write_bytes(SYNTHETIC_DET.read_bytes())
    assert _ort_source(odd) == SYNTHETIC_DET.read_bytes()
