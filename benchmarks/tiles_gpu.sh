#!/usr/bin/env bash
# Kernel-config variants (vssm.kernels.KernelConfig: tile or per-step kernels per pass, chunk-parallel schedule,
# bf16 partials) on a GPU: the GPU kernel tests of every variant, scan_bench with the variants beside the default
# plan and the anchor, and the model table with each model-level variant. benchmarks/gpu_tests.sh is the
# one-call version of the first two steps (with memcheck and ncu).
#
#   OUT=DIR bash benchmarks/tiles_gpu.sh [STEP...]      steps: tests scan models (default: all three; repo root)
#
# Each step is meant for its own device call (a call may run 10 minutes): the first compile of every kernel
# configuration takes seconds, and scan builds the anchor first (about 3 minutes).
#
# scan: tables on stdout and in $OUT/scan_bench.json; the mamba_ssm anchor is built first when
#       .anchors/build_mamba_ssm.sh is there (a copy of ../shared/anchors carried with the call), else the anchor
#       columns read n/a. chunk_parallel=1 forces the chunk-parallel schedule (one chunk a program).
# models: $OUT/models.md (all tables) and $OUT/m/VARIANT/model_bench.json. Files back: 7.
# Results go to benchmarks/RESULTS.md; a setting that is faster becomes the default.
set -u
OUT=${OUT:-work_dirs/tiles_gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
CHUNKS=chunk_parallel=1
for step in ${*:-tests scan models}; do
  case $step in
    tests)
      python3 -m pytest -q -m gpu tests/kernels/test_triton_scan.py 2>&1 | tee "$OUT/gpu_tests.txt" | tail -5 ;;
    scan)
      if [ -f .anchors/build_mamba_ssm.sh ]; then bash .anchors/build_mamba_ssm.sh 2>&1 | tail -2; fi
      python3 benchmarks/scan_bench.py --no-torch --out "$OUT" --variants tile_forward=0 tile_backward=1 \
        tile_backward=1,$CHUNKS $CHUNKS chunk=32 chunk=128 partials_bf16=0 tile_forward=0,partials_bf16=0 ;;
    models)
      for settings in default tile_forward=0,partials_bf16=0 tile_backward=1 $CHUNKS; do
        label=${settings//[=,]/_}
        if [ "$settings" = default ]; then  # the peers do not depend on the kernel settings: timed once
          args=(--models vmamba_tiny vim_tiny plainmamba_l1 convnext_tiny swin_tiny_patch4_window7_224)
        else
          args=(--kernel-settings "$settings" --models vmamba_tiny vim_tiny plainmamba_l1)
        fi
        python3 benchmarks/model_bench.py --no-sweep --quick --out "$OUT/m/$label" "${args[@]}" 2>&1 | tail -8
        cat "$OUT/m/$label/model_bench.md" >> "$OUT/models.md" && rm "$OUT/m/$label/model_bench.md"
      done ;;
    *) echo "unknown step: $step (steps: tests scan models)"; exit 2 ;;
  esac
done
