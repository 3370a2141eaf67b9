#!/usr/bin/env bash
# One prepared check on a machine with an NVIDIA GPU, in one go (56 s on an H200 at 0a2f719,
# with a smaller sweep; each step has a time limit, and the measurements come before Nsight):
#   1. install what is missing (offline: wheels carried in .whl/, e.g. filterpy),
#   2. `gputrack check --strict` (GPU, NVRTC, every kernel compiles for sm_90 with no spills),
#   3. the kernel tests against the `cuda` backend (the same tests as on the CPU, parametrised),
#   4. the main job (`gputrack run --backend cuda`) on the synthetic 4K world and the video,
#   5. the benchmarks (bench_isp with its schedule sweep, bench_deadline),
#   6. Nsight Compute on each ISP kernel (scripts/gpu_profile.sh --ncu-only), where ncu works,
#   7. a short table last.
# The device tool brings back 8 files at most: $OUT gets the JSON results, the run log and
# every log in one gpu_logs.tar.gz.
# Prepare here (with network):  scripts/gpu_check.sh --fetch-wheels
# and, to time an older commit in the same run:  scripts/gpu_check.sh --baseline 0a2f719
# Run there:                      bash scripts/gpu_check.sh   (logs go to $OUT or /tmp/gputrack-gpu)
# With the device tool: run(command='bash scripts/gpu_check.sh', carry=['.whl'], timeout_s=420)
# (add '.baseline' to carry to time an older commit in the same run: see below)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() {
  cat <<'USAGE'
usage: scripts/gpu_check.sh                    the whole check (on the GPU machine; its logs
                                               replace /tmp/gputrack-gpu)
       scripts/gpu_check.sh --fetch-wheels     gather the wheels and data it needs in .whl/
       scripts/gpu_check.sh --baseline COMMIT  check COMMIT out at .baseline/ to time it too
       scripts/gpu_check.sh --help             this text
USAGE
}
case "${1:-}" in
  ""|--fetch-wheels|--baseline) ;;
  -h|--help) usage; exit 0 ;;
  *) echo "gpu_check.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

# The GPU machines have CuPy, NumPy, SciPy, OpenCV, onnx, onnxruntime, rich, pandas and pytest
# but reach no network, and ../shared does not travel: the pure-Python rest travels as wheels
# in .whl/ (git-ignored), with the shared data the kernel tests and benchmarks use (~20 MB).
WHEELS="filterpy motmetrics xmltodict colour-science"
if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p .whl/data
  grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: -d .whl $WHEELS
  data=${GPUTRACK_DATA:-../shared/data}
  for d in models kodak raw video mot; do
    [ -d "$data/$d" ] && cp -r "$data/$d" .whl/data/
  done
  du -sh .whl; exit 0
fi

# An older commit checked out at .baseline/ (a git worktree, git-ignored), its short hash in
# .baseline/.commit: carried with .whl, its bench_isp.py runs right after ours (below).
if [ "${1:-}" = "--baseline" ]; then
  rev=${2:?usage: scripts/gpu_check.sh --baseline COMMIT}
  if ! git rev-parse --verify -q "$rev^{commit}" >/dev/null; then
    echo "no commit '$rev' in this repository" >&2; exit 2
  fi
  if [ -e .baseline ]; then
    git worktree remove --force .baseline 2>/dev/null || rm -rf .baseline
    git worktree prune
  fi
  git worktree add -q --detach .baseline "$rev" || exit 1
  git -C .baseline rev-parse --short HEAD > .baseline/.commit
  echo "baseline: .baseline at $(cat .baseline/.commit)"; exit 0
fi

LOG=/tmp/gputrack-gpu
rm -rf "$LOG"; mkdir -p "$LOG"
source scripts/gpu_env.sh
PY=python3

step() { printf '\n=== %s\n' "$*"; }
status=()
{
  nvidia-smi 2>&1 | head -15
  $PY -c 'import sys, numpy, cupy; print(sys.version.split()[0], "numpy", numpy.__version__, "cupy", cupy.__version__)' 2>&1
} > "$LOG/env.log"

step "gputrack check --strict"
if timeout 60 $PY -m gputrack check --strict --json > "$LOG/check.json" 2>> "$LOG/env.log"; then
  status+=("check|ok")
else
  status+=("check|FAILED (see env.log)")
fi
timeout 20 $PY -m gputrack check --no-kernels 2>&1 | tee -a "$LOG/env.log" || true

step "kernel tests on the cuda backend"
timeout 150 $PY -m pytest -q -p no:cacheprovider -rfE --tb=short -k "cuda" tests/ 2>&1 \
  | tee "$LOG/pytest_cuda.log" | tail -40
status+=("kernel tests (cuda)|$(grep -E '(passed|failed|error)' "$LOG/pytest_cuda.log" | tail -1)")

step "the main job on cuda: synthetic 4K60 and the street video"
: > "$LOG/run.log"
for src in "synthetic:3840x2160@60" "${GPUTRACK_DATA:-none}/video/vtest.avi"; do
  [ "$src" = "none/video/vtest.avi" ] && continue
  name=$(basename "$src")
  if timeout 60 $PY -m gputrack run "$src" --backend cuda --frames 300 --no-ui --json \
      > "$LOG/run_one.json" 2>> "$LOG/run.log"; then
    p50=$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["stage_ms_p50"], "misses", d["deadline_misses"], "/", d["frames"], "MOTA", d.get("mota"))' "$LOG/run_one.json")
    status+=("run $name|$p50")
  else
    status+=("run $name|FAILED (see run.log)")
  fi
  { echo "== $src"; cat "$LOG/run_one.json"; } >> "$LOG/run.log"
  rm -f "$LOG/run_one.json"
done

step "benchmarks"
for bench in scripts/bench_isp.py scripts/bench_deadline.py; do
  [ -f "$bench" ] || continue
  name=$(basename "$bench" .py)
  extra=""; limit=150
  [ "$name" = bench_isp ] && extra="--sweep" && limit=240  # 10 variants to compile
  if timeout $limit $PY "$bench" $extra --json "$LOG/$name.json" 2>&1 | tee "$LOG/$name.log" | tail -40; then
    status+=("$name|ok")
  else
    status+=("$name|FAILED (see $name.log)")
  fi
done

# A baseline timed in the same run: an older commit checked out at .baseline/ (git-ignored;
# `scripts/gpu_check.sh --baseline COMMIT` makes it) and carried (carry=['.whl', '.baseline']),
# has its bench_isp.py run right after ours on this machine, so that old and new kernel times
# are ratios within one run.
if [ -f .baseline/scripts/bench_isp.py ]; then
  base=$(cat .baseline/.commit 2>/dev/null || echo "?")
  step "baseline bench_isp at $base"
  if timeout 90 $PY .baseline/scripts/bench_isp.py --no-cpu --json "$LOG/bench_isp_baseline.json" \
      2>&1 | tee "$LOG/bench_isp_baseline.log" | tail -20; then
    status+=("baseline bench_isp ($base)|ok")
  else
    status+=("baseline bench_isp ($base)|FAILED (see bench_isp_baseline.log)")
  fi
fi

step "Nsight Compute on the ISP kernels"
if PROFILE_LOG="$LOG/ncu" timeout 200 bash scripts/gpu_profile.sh --ncu-only; then
  files=$(ls "$LOG/ncu" 2>/dev/null | grep -v ncu_run.log | tr '\n' ' ')
  status+=("ncu profile|${files:-none (no ncu here)}")
else
  status+=("ncu profile|FAILED (see ncu/ncu_run.log)")
fi

if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/gpu_logs.tar.gz" -C "$LOG" . 2>/dev/null
  for f in check.json run.log bench_isp.json bench_deadline.json bench_isp_baseline.json; do
    [ -f "$LOG/$f" ] && cp "$LOG/$f" "$OUT/"
  done
fi

step "summary"
$PY - "$LOG" "${status[@]}" <<'PY'
import json, sys, pathlib
log = pathlib.Path(sys.argv[1])
rows = [s.split("|", 1) for s in sys.argv[2:]]
try:
    check = json.loads((log / "check.json").read_text())
    gpu = check.get("gpu") or {}
    rows.insert(0, ["GPU", f"{gpu.get('name', 'none')} {gpu.get('memory_gb', '')} GB"])
    ks = check.get("kernels", [])
    rows.insert(1, ["kernels sm_90", f"{len(ks)} compiled, {len(check.get('kernel_errors', []))} failed, "
                    f"max {max((k['registers'] for k in ks), default=0)} regs, "
                    f"{sum(k['spills'] for k in ks)} B spills"])
except Exception as err:  # the table must print whatever failed
    rows.insert(0, ["check.json", f"unreadable: {err}"])
for f in sorted(log.glob("bench_*.json")):
    try:
        for k, v in json.loads(f.read_text()).get("summary", {}).items():
            rows.append([f"{f.stem}: {k}", str(v)])
    except Exception as err:
        rows.append([f.stem, f"unreadable: {err}"])
w = max(len(r[0]) for r in rows)
print("\n" + "-" * (w + 50))
for k, v in rows:
    print(f"{k:<{w}}  {v}")
PY
