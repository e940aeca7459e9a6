#!/usr/bin/env bash
# The tile-parallel scan kernels (vssm.kernels.triton_scan.TILES) on a GPU, in one device call: the GPU kernel
# tests of every schedule, scan_bench with tile configurations beside the per-step kernels and the anchor, and
# the model table with and without --scan-tiles.
#
#   OUT=DIR bash benchmarks/tiles_gpu.sh [STEP...]      steps: tests scan models (default: all three; repo root)
#
# scan: the mamba_ssm anchor is built first when .anchors/build_mamba_ssm.sh is there (a copy of
#       ../shared/anchors carried with the call); without it the anchor columns read n/a.
# Results go to benchmarks/RESULTS.md; whichever schedule is faster becomes the default (TILES).
set -u
OUT=${OUT:-work_dirs/tiles_gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
for step in ${*:-tests scan models}; do
  case $step in
    tests)
      python3 -m pytest -q -m gpu tests/kernels/test_triton_scan.py 2>&1 | tee "$OUT/gpu_tests.txt" | tail -5 ;;
    scan)
      if [ -f .anchors/build_mamba_ssm.sh ]; then bash .anchors/build_mamba_ssm.sh 2>&1 | tail -2; fi
      python3 benchmarks/scan_bench.py --no-torch --out "$OUT" \
        --tile-configs 4096x8 2048x4 8192x8 16384x8 4096x8x32 2>&1 | tee "$OUT/scan_bench.txt" ;;
    models)
      for flag in "" --scan-tiles; do
        python3 benchmarks/model_bench.py --no-sweep --quick --out "$OUT/models$flag" $flag \
          --models vmamba_tiny vim_tiny plainmamba_l1 convnext_tiny swin_tiny_patch4_window7_224 2>&1 | tail -12
      done ;;
    *) echo "unknown step: $step (steps: tests scan models)"; exit 2 ;;
  esac
done
