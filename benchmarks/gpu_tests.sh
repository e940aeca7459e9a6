#!/usr/bin/env bash
# The GPU step of the scan kernel (one device call on an H200, run from the repository root; the step limits
# add up to 550 s, so the call ends within 10 minutes whatever hangs):
#   tests     the GPU tests of tests/kernels (benchmark shapes included: test_scan_gpu_shapes.py)
#   memcheck  one forward + backward per benchmark shape and kernel choice (benchmarks/memcheck_shapes.py: the
#             float64 checks of the tests are too slow under the sanitizer) under compute-sanitizer memcheck, no
#             caching allocator (so a write past any tensor is caught), largest case first
#   bench     benchmarks/scan_bench.py: cases (a), (c), (d), (e), Vim-long, beside the mamba_ssm anchor when it
#             is installed (build it first with ../shared/anchors/build_mamba_ssm.sh), config variants side by
#             side, byte and exp floors
#   ncu       Nsight Compute on the default forward and backward scan kernels at case (a): DRAM bandwidth,
#             occupancy and warp stall reasons
#
#   OUT=DIR bash benchmarks/gpu_tests.sh [STEP...]      (default: all four, in that order)
#   MEMCHECK_CASES / MEMCHECK_VARIANTS narrow the memcheck step (default: c vim-long a / default warps=4)
#
# Every step has its own time limit and log under $OUT; a failing step does not stop the later ones, and
# $OUT/steps.txt lists each step's exit status (124: hit its limit).
set -x
OUT=${OUT:-work_dirs/gpu_tests}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
VARIANTS=(chunk=64 chunk=32 chunk=16 span=128 partials_bf16=0 warps=2)
NCU_SNIPPET='
import sys, torch
sys.path.insert(0, "benchmarks")
import scan_bench
inputs = scan_bench.make_inputs(scan_bench.CASES["a"])
leaves = [t for t in inputs.values() if isinstance(t, torch.Tensor) and t.is_floating_point()]
scan_bench.fwd_bwd(scan_bench.ours(inputs, "triton"), leaves)()
torch.cuda.synchronize()
'

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, output to $OUT/NAME.txt, status to steps.txt
  local name=$1 limit=$2
  shift 2
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: exit $rc" >> "$OUT/steps.txt"
  tail -n 25 "$OUT/$name.txt"
  return 0
}

ncu_a() {  # two scan kernels profiled, 40 s at most per attempt
  local common=(--clock-control none --target-processes all -k "regex:^_scan_(fwd|bwd)_kernel$" -c 2
                --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats
                --section WarpStateStats)
  timeout 40 ncu "${common[@]}" --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
    "$PY" -c "$NCU_SNIPPET" || timeout 40 ncu "${common[@]}" "$PY" -c "$NCU_SNIPPET"
}

for name in ${*:-tests memcheck bench ncu}; do
  case $name in
    tests)  # the benchmark shapes first: they are what the earlier GPU runs missed
      step tests 200 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_scan_gpu_shapes.py \
        tests/kernels/test_triton_scan.py tests/kernels/test_layer_norm.py ;;
    memcheck)
      step memcheck 140 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 3 \
        --log-file "$OUT/memcheck.log" "$PY" benchmarks/memcheck_shapes.py --cases ${MEMCHECK_CASES:-c vim-long a} \
        --variants ${MEMCHECK_VARIANTS:-default warps=4} ;;
    bench)
      "$PY" -c "import mamba_ssm" 2>/dev/null && echo "anchor: mamba_ssm installed" || echo "anchor: none (n/a columns)"
      step bench 210 "$PY" benchmarks/scan_bench.py --no-torch --out "$OUT" \
        --cases a c vim-long d e-zigzag e-hilbert t2 t3 t4 --variants "${VARIANTS[@]}" ;;
    ncu)
      ncu_a > "$OUT/ncu_a.txt" 2>&1
      echo "ncu: exit $?" >> "$OUT/steps.txt"
      tail -n 60 "$OUT/ncu_a.txt" ;;
    *) echo "unknown step: $name (steps: tests memcheck bench ncu)" | tee -a "$OUT/steps.txt" ;;
  esac
done
cat "$OUT/steps.txt"
