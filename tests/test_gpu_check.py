"""scripts/gpu_check.sh's preparation step that runs without a GPU: `--baseline COMMIT` checks
an older commit out at .baseline/ (a git worktree) with its short hash in .baseline/.commit,
which the GPU run times beside the current kernels. Run in a scratch repository of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("bash") is None, reason="needs git and bash"
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A repository with gpu_check.sh and two commits of a stand-in bench_isp.py."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "gpu_check.sh", repo / "scripts" / "gpu_check.sh")
    git(repo, "init", "-q")
    for version in ("old", "new"):
        (repo / "scripts" / "bench_isp.py").write_text(f"print('{version}')\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", version)
    return repo


def prepare(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--baseline", *args],
        cwd=repo, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_baseline_worktree_at_the_commit_asked_for_and_replaced_on_request(scratch: Path):
    done = prepare(scratch, "HEAD~1")
    assert done.returncode == 0, done.stderr
    baseline = scratch / ".baseline"
    assert (baseline / ".commit").read_text().strip() == git(scratch, "rev-parse", "--short",
                                                             "HEAD~1")  # fmt: skip
    assert "old" in (baseline / "scripts" / "bench_isp.py").read_text()
    # again, at another commit: the old worktree goes, the new one takes its place
    assert prepare(scratch, "HEAD").returncode == 0
    assert "new" in (baseline / "scripts" / "bench_isp.py").read_text()
    assert git(scratch, "worktree", "list").count("\n") == 1  # the repository and .baseline


def test_baseline_unknown_commit_is_refused_and_leaves_nothing(scratch: Path):
    done = prepare(scratch, "no-such-commit")
    assert done.returncode == 2
    assert "no commit 'no-such-commit'" in done.stderr
    assert not (scratch / ".baseline").exists()
    assert prepare(scratch).returncode != 0  # no commit given


@pytest.mark.parametrize("argument, code", [("--help", 0), ("-h", 0), ("--bogus", 2)])
def test_help_and_unknown_arguments_start_nothing(scratch: Path, argument: str, code: int):
    """The check itself begins by clearing its log folder: a typo must not start it."""
    done = subprocess.run(["bash", "scripts/gpu_check.sh", argument], cwd=scratch,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == code
    assert "usage: scripts/gpu_check.sh" in (done.stdout if code == 0 else done.stderr)
    assert "===" not in done.stdout  # no step began


# A stand-in `timeout` for which every step hangs until its limit (it runs nothing and moves a
# fake clock on by the limit), and a `date +%s` that reads that clock: the check's time budget
# without waiting for it.
FAKE_TIMEOUT = """#!/usr/bin/env bash
echo "$1 ${*:2}" >> "$FAKE_DIR/steps"
echo $(( $(cat "$FAKE_DIR/clock") + $1 )) > "$FAKE_DIR/clock"
exit 124
"""
FAKE_DATE = """#!/usr/bin/env bash
if [ "$1" = "+%s" ]; then cat "$FAKE_DIR/clock"; else exec REAL_DATE "$@"; fi
"""


def hanging_check(
    repo: Path, tmp_path: Path, budget: str | None, script: str = "gpu_check.sh"
) -> tuple[subprocess.CompletedProcess, int, Path]:
    """`script` with every step hanging: (its result, the fake seconds spent, $OUT). A fake
    `ncu` is on the PATH (reading a report back does nothing)."""
    for name in ("gpu_env.sh", "gpu_profile.sh"):
        shutil.copy(REPO / "scripts" / name, repo / "scripts" / name)
    (repo / "scripts" / "bench_deadline.py").write_text("print('deadline')\n")
    fake = tmp_path / "fake"
    (fake / "bin").mkdir(parents=True)
    (fake / "clock").write_text("1000000\n")
    real_date = shutil.which("date")
    assert real_date
    fakes = (("timeout", FAKE_TIMEOUT), ("date", FAKE_DATE.replace("REAL_DATE", real_date)),
             ("ncu", "#!/usr/bin/env bash\nexit 0\n"))  # fmt: skip
    for name, text in fakes:
        (fake / "bin" / name).write_text(text)
        (fake / "bin" / name).chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    unset = ("GPU_CHECK_BUDGET", "GPU_PROFILE_BUDGET", "GPUTRACK_GPU_ENV")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(PATH=f"{fake / 'bin'}{os.pathsep}{env['PATH']}", FAKE_DIR=str(fake), OUT=str(out),
               GPU_CHECK_LOG=str(tmp_path / "log"), PROFILE_LOG=str(tmp_path / "prof"),
               GPUTRACK_DATA=str(tmp_path / "data"))  # fmt: skip
    if budget is not None:
        env["GPU_CHECK_BUDGET"] = budget
    done = subprocess.run(["bash", f"scripts/{script}"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    spent = int((fake / "clock").read_text()) - 1000000
    return done, spent, out


@pytest.mark.parametrize("budget, most", [(None, 420), ("120", 120)])
def test_check_ends_inside_its_budget_when_every_step_hangs(scratch: Path, tmp_path: Path,
                                                            budget: str | None, most: int):
    """The device call gives the check 480 s; its steps' own limits add up to over 1000 s. Each
    limit is cut to what is left of GPU_CHECK_BUDGET: the table still prints, the steps that
    did not fit say so, and $OUT has the logs."""
    (scratch / "tests").mkdir()
    (scratch / "tests" / "data").mkdir()
    done, spent, out = hanging_check(scratch, tmp_path, budget)
    assert done.returncode == 0, done.stderr
    assert spent <= most, (spent, (tmp_path / "fake" / "steps").read_text())
    table = done.stdout.split("-" * 20)[-1]
    assert "skipped: time budget spent" in table
    assert "timed out after" in table  # the steps that ran, and why they ended
    assert (out / "gpu_logs.tar.gz").is_file()


def test_check_refuses_a_budget_that_is_not_seconds(scratch: Path):
    env = dict(os.environ, GPU_CHECK_BUDGET="7m")
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=scratch, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "GPU_CHECK_BUDGET" in done.stderr
    assert "===" not in done.stdout


def test_profile_ends_inside_its_budget_when_every_part_hangs(scratch: Path, tmp_path: Path):
    """gpu_profile.sh alone: ncu 240 s + tests 60 s + bench 120 s did not fit the device call
    its header named (300 s); each limit is now cut to GPU_PROFILE_BUDGET (400 s)."""
    done, _, out = hanging_check(scratch, tmp_path, None, script="gpu_profile.sh")
    assert done.returncode == 0, done.stderr
    steps = (tmp_path / "fake" / "steps").read_text()
    assert "ncu --clock-control none" in steps  # the profile ran (and hung)
    spent = int((tmp_path / "fake" / "clock").read_text()) - 1000000
    assert spent <= 400, steps
    assert (out / "profile_logs.tar.gz").is_file()


def test_profile_help_starts_nothing(scratch: Path, tmp_path: Path):
    """`--help` had gone on to run the profile, the tests and the benchmark."""
    shutil.copy(REPO / "scripts" / "gpu_profile.sh", scratch / "scripts" / "gpu_profile.sh")
    env = dict(os.environ, PROFILE_LOG=str(tmp_path / "prof"))
    done = subprocess.run(["bash", "scripts/gpu_profile.sh", "--help"], cwd=scratch, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and "usage: scripts/gpu_profile.sh" in done.stdout
    assert "ncu:" not in done.stdout and not (tmp_path / "prof").exists()
