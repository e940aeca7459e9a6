#!/usr/bin/env bash
# The unmeasured Triton kernel settings (tile-parallel kernels: TILES; bf16 per-route outputs: PARTIALS_BF16) on a
# GPU, in one device call: the GPU kernel tests of every schedule, scan_bench with the variants beside the default
# kernels and the anchor, and the model table with each model-level variant.
#
#   OUT=DIR bash benchmarks/tiles_gpu.sh [STEP...]      steps: tests scan models (default: all three; repo root)
#
# Each step is meant for its own device call (a call may run 10 minutes): the first compile of every kernel
# configuration takes seconds, and scan builds the anchor first (about 3 minutes).
#
# scan: tables on stdout and in $OUT/scan_bench.json; the mamba_ssm anchor is built first when
#       .anchors/build_mamba_ssm.sh is there (a copy of ../shared/anchors carried with the call), else the anchor
#       columns read n/a. PARALLEL_PROGRAMS=1000000000 forces the chunk-parallel schedule (one tile a program).
# models: $OUT/models.md (all tables) and $OUT/m/VARIANT/model_bench.json. Files back: 7.
# Results go to benchmarks/RESULTS.md; a setting that is faster becomes the default.
set -u
OUT=${OUT:-work_dirs/tiles_gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
CHUNKS=PARALLEL_PROGRAMS=1000000000
for step in ${*:-tests scan models}; do
  case $step in
    tests)
      python3 -m pytest -q -m gpu tests/kernels/test_triton_scan.py 2>&1 | tee "$OUT/gpu_tests.txt" | tail -5 ;;
    scan)
      if [ -f .anchors/build_mamba_ssm.sh ]; then bash .anchors/build_mamba_ssm.sh 2>&1 | tail -2; fi
      python3 benchmarks/scan_bench.py --no-torch --out "$OUT" --variants TILES=1 TILES=1,$CHUNKS \
        TILES=1,TILE_ELEMENTS=2048 TILES=1,TILE_ELEMENTS=512,TILE_WARPS=4 TILES=1,CHUNK=32 \
        PARTIALS_BF16=1 TILES=1,PARTIALS_BF16=1 TILES=1,$CHUNKS,PARTIALS_BF16=1 ;;
    models)
      for settings in default TILES=1 TILES=1,$CHUNKS TILES=1,PARTIALS_BF16=1; do
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
