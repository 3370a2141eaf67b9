#!/usr/bin/env bash
# One prepared check on a machine with an NVIDIA GPU, in one go (56 s on an H200 at 0a2f719,
# with a smaller sweep; each step has a time limit, and the measurements come before Nsight):
#   1. install what is missing (offline: wheels carried in .whl/, e.g. filterpy),
#   2. `gputrack check --strict` (GPU, NVRTC, every kernel compiles for sm_90 with no spills),
#   3. the kernel tests against the `cuda` backend (the same tests as on the CPU, parametrised),
#   4. the main job (`gputrack run --backend cuda`) on the synthetic 4K world and the video,
#   5. the benchmarks (bench_isp with its schedule sweep, a carried baseline commit's bench_isp,
#      bench_deadline),
#   6. Nsight Compute on each ISP kernel (scripts/gpu_profile.sh --ncu-only), where ncu works,
#   7. a short table last.
# The device tool brings back 8 files at most: $OUT gets the JSON results, the run log and
# every log in one gpu_logs.tar.gz, refreshed after every step (a call cut short keeps them).
# Every step's own time limit is cut to what is left of GPU_CHECK_BUDGET (seconds, default
# 420), a step with under 10 s left is skipped and says so: the whole check, the table
# included, ends inside the device call's 480 s even where steps hang (their limits add up to
# over 1000 s).
# Prepare here (with network):  scripts/gpu_check.sh --fetch-wheels
# and, to time an older commit in the same run:  scripts/gpu_check.sh --baseline 0a2f719
# Run there:                      bash scripts/gpu_check.sh   (logs go to $OUT or /tmp/gputrack-gpu)
# With the device tool: run(command='bash scripts/gpu_check.sh', carry=['.whl'], timeout_s=480)
# (add '.baseline' to carry to time an older commit in the same run: see below)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() {
  cat <<'USAGE'
usage: scripts/gpu_check.sh                    the whole check (on the GPU machine; its logs
                                               replace /tmp/gputrack-gpu; at most
                                               GPU_CHECK_BUDGET seconds, default 420)
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

BUDGET=${GPU_CHECK_BUDGET:-420}
if ! [[ $BUDGET =~ ^[0-9]+$ ]]; then
  echo "gpu_check.sh: GPU_CHECK_BUDGET='$BUDGET': give whole seconds" >&2; exit 2
fi
RESERVE=15   # seconds kept for the summary and the copies into $OUT
MIN_STEP=10  # a step with less than this left is skipped
T0=$(date +%s)
LOG=${GPU_CHECK_LOG:-/tmp/gputrack-gpu}
rm -rf "$LOG"; mkdir -p "$LOG"
source scripts/gpu_env.sh
PY=python3

step() { printf '\n=== %s\n' "$*"; }
status=()
lim=0
# fits NAME OWN_LIMIT: sets $lim to the step's own limit cut to what is left of the budget;
# false, with NAME skipped in the table, when under MIN_STEP seconds are left.
fits() {
  local left=$(( BUDGET - RESERVE - ($(date +%s) - T0) ))
  lim=$(( $2 < left ? $2 : left ))
  if (( lim < MIN_STEP )); then
    status+=("$1|skipped: time budget spent (GPU_CHECK_BUDGET=$BUDGET s)")
    return 1
  fi
}
# verdict RC LOGNAME: what the table says of a step that ended with RC under the limit $lim.
verdict() {
  if [ "$1" = 0 ]; then echo ok
  elif [ "$1" = 124 ] || [ "$1" = 137 ]; then echo "timed out after $lim s (see $2)"
  else echo "FAILED (see $2)"; fi
}
# save: what is done so far into $OUT, so that a call cut short still brings it back.
save() {
  [ -n "${OUT:-}" ] && [ -d "$OUT" ] || return 0
  for f in check.json run.log bench_isp.json bench_deadline.json bench_isp_baseline.json; do
    [ -f "$LOG/$f" ] && cp "$LOG/$f" "$OUT/"
  done
  tar czf "$OUT/gpu_logs.tar.gz" -C "$LOG" . 2>/dev/null
  return 0
}
{
  timeout 20 nvidia-smi 2>&1 | head -15
  timeout 30 $PY -c 'import sys, numpy, cupy; print(sys.version.split()[0], "numpy", numpy.__version__, "cupy", cupy.__version__)' 2>&1
} > "$LOG/env.log"

step "gputrack check --strict"
if fits "check" 60; then
  timeout $lim $PY -m gputrack check --strict --json > "$LOG/check.json" 2>> "$LOG/env.log"
  status+=("check|$(verdict $? env.log)")
fi
if fits "check --no-kernels" 20; then
  timeout $lim $PY -m gputrack check --no-kernels 2>&1 | tee -a "$LOG/env.log"
fi
save

step "kernel tests on the cuda backend"
if fits "kernel tests (cuda)" 150; then
  timeout $lim $PY -m pytest -q -p no:cacheprovider -rfE --tb=short -k "cuda" tests/ 2>&1 \
    | tee "$LOG/pytest_cuda.log" | tail -40
  rc=${PIPESTATUS[0]}
  line=$(grep -E '(passed|failed|error)' "$LOG/pytest_cuda.log" | tail -1)
  [ "$rc" = 124 ] && line="timed out after $lim s${line:+: $line}"
  status+=("kernel tests (cuda)|${line:-$(verdict "$rc" pytest_cuda.log)}")
fi
save

step "the main job on cuda: synthetic 4K60 and the street video"
: > "$LOG/run.log"
for src in "synthetic:3840x2160@60" "${GPUTRACK_DATA:-none}/video/vtest.avi"; do
  [ "$src" = "none/video/vtest.avi" ] && continue
  name=$(basename "$src")
  fits "run $name" 60 || continue
  timeout $lim $PY -m gputrack run "$src" --backend cuda --frames 300 --no-ui --json \
      > "$LOG/run_one.json" 2>> "$LOG/run.log"
  rc=$?
  if [ "$rc" = 0 ]; then
    p50=$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["stage_ms_p50"], "misses", d["deadline_misses"], "/", d["frames"], "MOTA", d.get("mota"))' "$LOG/run_one.json")
    status+=("run $name|$p50")
  else
    status+=("run $name|$(verdict "$rc" run.log)")
  fi
  { echo "== $src"; cat "$LOG/run_one.json" 2>/dev/null; } >> "$LOG/run.log"
  rm -f "$LOG/run_one.json"
  save
done

# bench NAME LIMIT EXTRA...: one benchmark script, its JSON and log under $LOG.
bench() {
  local name=$1 limit=$2; shift 2
  [ -f "scripts/$name.py" ] || return 0
  fits "$name" "$limit" || return 0
  timeout $lim $PY "scripts/$name.py" "$@" --json "$LOG/$name.json" 2>&1 \
    | tee "$LOG/$name.log" | tail -40
  status+=("$name|$(verdict "${PIPESTATUS[0]}" "$name.log")")
  save
}

step "benchmarks"
bench bench_isp 240 --sweep  # 11 variants to compile

# A baseline timed in the same run: an older commit checked out at .baseline/ (git-ignored;
# `scripts/gpu_check.sh --baseline COMMIT` makes it) and carried (carry=['.whl', '.baseline']),
# has its bench_isp.py run right after ours on this machine, so that old and new kernel times
# are ratios within one run (before the deadline benchmark: the ISP's speed is the open goal).
if [ -f .baseline/scripts/bench_isp.py ]; then
  base=$(cat .baseline/.commit 2>/dev/null || echo "?")
  step "baseline bench_isp at $base"
  if fits "baseline bench_isp ($base)" 90; then
    timeout $lim $PY .baseline/scripts/bench_isp.py --no-cpu --json \
      "$LOG/bench_isp_baseline.json" 2>&1 | tee "$LOG/bench_isp_baseline.log" | tail -20
    status+=("baseline bench_isp ($base)|$(verdict "${PIPESTATUS[0]}" bench_isp_baseline.log)")
    save
  fi
fi

bench bench_deadline 150

step "Nsight Compute on the ISP kernels"
if fits "ncu profile" 200; then
  PROFILE_LOG="$LOG/ncu" timeout $lim bash scripts/gpu_profile.sh --ncu-only
  rc=$?
  if [ "$rc" = 0 ]; then
    files=$(ls "$LOG/ncu" 2>/dev/null | grep -v ncu_run.log | tr '\n' ' ')
    status+=("ncu profile|${files:-none (no ncu here)}")
  else
    status+=("ncu profile|$(verdict "$rc" ncu/ncu_run.log)")
  fi
fi
save

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
