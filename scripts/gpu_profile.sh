#!/usr/bin/env bash
# Nsight Compute on the ISP kernels, in one go on a GPU machine (Firecracker machines read the
# hardware counters; gVisor ones cannot): each kernel of scripts/profile_isp.py once, with the
# sections that say what bounds it, the raw metrics, and isp_main's per-instruction stall
# samples. Then the tensor tests and the kernel table on the cuda backend.
# Prepare here:  scripts/gpu_check.sh --fetch-wheels
# With the device tool: run(command='bash scripts/gpu_profile.sh', carry=['.whl'], timeout_s=480)
# Each part's own limit (ncu 240 s, tests 60 s, bench 120 s: 420 s, plus reading the report
# back) is cut to what is left of GPU_PROFILE_BUDGET (seconds, default 400), and $OUT gets the
# logs after each part: a call cut short still brings back the profile.
# `--ncu-only` (what gpu_check.sh calls, under its own limit): the profile alone, into
# $PROFILE_LOG.
set -uo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in  # the rest goes to scripts/profile_isp.py (e.g. --schedule ISP_STRIP=2)
  -h|--help)
    echo "usage: scripts/gpu_profile.sh [--ncu-only] [profile_isp.py options]"
    echo "       (on the GPU machine; logs in \$PROFILE_LOG, default /tmp/gputrack-prof)"
    exit 0 ;;
esac
NCU_ONLY=0
[ "${1:-}" = "--ncu-only" ] && { NCU_ONLY=1; shift; }
LOG=${PROFILE_LOG:-/tmp/gputrack-prof}
mkdir -p "$LOG"
source scripts/gpu_env.sh
BUDGET=${GPU_PROFILE_BUDGET:-400}
if ! [[ $BUDGET =~ ^[0-9]+$ ]]; then
  echo "gpu_profile.sh: GPU_PROFILE_BUDGET='$BUDGET': give whole seconds" >&2; exit 2
fi
T0=$(date +%s)
# limit OWN: OWN seconds, or what is left of the budget (10 s kept for the copies into $OUT)
limit() {
  local left=$(( BUDGET - 10 - ($(date +%s) - T0) ))
  (( left < 1 )) && left=1
  echo $(( $1 < left ? $1 : left ))
}
# The device tool brings back 8 files at most: the logs as one tarball, the kernel table.
save() {
  [ -n "${OUT:-}" ] && [ -d "$OUT" ] || return 0
  tar czf "$OUT/profile_logs.tar.gz" -C "$LOG" . 2>/dev/null
  cp "$LOG/bench_isp.json" "$OUT/" 2>/dev/null
  return 0
}
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
echo "ncu: ${NCU:-none}"
KERNELS='regex:^(isp_main|isp_main_dir|isp_awb_stats|isp_tensor|sensor_from_u8)$'
SECTIONS="SpeedOfLight LaunchStats Occupancy WarpStateStats SchedulerStats ComputeWorkloadAnalysis
 MemoryWorkloadAnalysis MemoryWorkloadAnalysis_Tables InstructionStats SourceCounters"
METRICS=smsp__inst_executed.sum,smsp__thread_inst_executed.sum,sm__cycles_elapsed.avg.per_second
METRICS+=,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum
METRICS+=,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum
METRICS+=,smsp__sass_inst_executed_op_shared_ld.sum,smsp__sass_inst_executed_op_shared_st.sum
if [ -n "$NCU" ]; then
  timeout "$(limit 240)" "$NCU" --clock-control none -k "$KERNELS" $(printf -- '--section %s ' $SECTIONS) \
    --metrics "$METRICS" -f -o /tmp/isp_prof python3 scripts/profile_isp.py "$@" > "$LOG/ncu_run.log" 2>&1
  tail -5 "$LOG/ncu_run.log"
  "$NCU" -i /tmp/isp_prof.ncu-rep --page details > "$LOG/ncu_details.txt" 2>&1
  "$NCU" -i /tmp/isp_prof.ncu-rep --page raw --csv > "$LOG/ncu_raw.csv" 2>&1
  "$NCU" -i /tmp/isp_prof.ncu-rep -k regex:^isp_main$ -c 1 --page source --csv --print-source sass \
    > "$LOG/isp_main_sass.csv" 2>&1
  for k in isp_tensor isp_main_dir sensor_from_u8; do
    "$NCU" -i /tmp/isp_prof.ncu-rep -k "regex:^$k\$" --page source --csv --print-source sass \
      > "$LOG/${k}_sass.csv" 2>&1
  done
  grep -E '^  [a-z_]+|Duration|Issue Slots Busy|Warp Cycles Per Issued|Achieved Occupancy|Memory Throughput|DRAM Throughput|Registers Per' \
    "$LOG/ncu_details.txt" | head -80
fi
[ "$NCU_ONLY" = 1 ] && exit 0
save
timeout "$(limit 60)" python3 -m pytest -q -p no:cacheprovider -rfE --tb=short -k "cuda and tensor" \
  tests/test_isp_kernels.py 2>&1 | tail -3
timeout "$(limit 120)" python3 scripts/bench_isp.py --no-cpu --sweep --reps 100 --json "$LOG/bench_isp.json" \
  2>&1 | tee "$LOG/bench_isp.log" | tail -16
save
