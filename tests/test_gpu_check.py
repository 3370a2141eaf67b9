"""scripts/gpu_check.sh's preparation step that runs without a GPU: `--baseline COMMIT` checks
an older commit out at .baseline/ (a git worktree) with its short hash in .baseline/.commit,
which the GPU run times beside the current kernels. Run in a scratch repository of its own."""

from __future__ import annotations

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
