#!/usr/bin/env bash
# OpenMMLab on GPUs: the demo configs with --amp (200 iterations) and 1- vs 2-GPU throughput (50 iterations).
#
#   OUT=DIR bash benchmarks/mm_gpu.sh STEP...      steps: build amp dist skips (run from the repo root)
#
# build: on a machine without OpenMMLab, installs the wheels in .whl/ (mmengine, mmdet, mmsegmentation and their
#        missing dependencies, pip-downloaded elsewhere) into /tmp/site and compiles mmcv 2.1.0 from its sdist
#        (.whl/mmcv-2.1.0.tar.gz) with CUDA ops for Hopper (TORCH_CUDA_ARCH_LIST=9.0); skipped when mmcv.ops imports.
# amp:   seg and det demo configs, GPU 0, --amp (bfloat16 since 2026-12; AMP_DTYPE=float16 for the old runs),
#        200 iterations; prints loss, non-finite values, img/s, metrics.
# skips: the det demo config, 100 iterations each with --amp-dtype float16 and bfloat16 (about a minute): how many
#        steps the dynamic loss scale skipped (benchmarks/amp_stability.py --mm-config) -> $OUT/amp_stability_mm.json.
# dist:  the same configs for 50 iterations on 1 GPU (tools/train.py) and 2 GPUs (tools/dist_train.sh).
# Results: benchmarks/RESULTS.md ("OpenMMLab on GPUs").
set -u
REPO=$PWD
OUT=${OUT:-$REPO/work_dirs/mm_gpu}; mkdir -p $OUT
export PYTHONPATH=/tmp/site:$REPO
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
[ -d /tmp/mmcv-2.1.0/mmcv ] && export PYTHONPATH=/tmp/mmcv-2.1.0:$PYTHONPATH
LOG=$OUT/mm_log.txt
say() { echo "== $*" | tee -a $LOG; }
ensure_site() {
  [ -d /tmp/site/mmengine ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -3
}
build() {
  ensure_site
  python3 -c "import mmcv.ops" 2>/dev/null && { say "mmcv ops already there"; return; }
  rm -rf /tmp/mmcv-2.1.0 && tar xzf .whl/mmcv-2.1.0.tar.gz -C /tmp
  local t0=$(date +%s)
  (cd /tmp/mmcv-2.1.0 && MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=${MAX_JOBS:-32} \
     python3 setup.py build_ext --inplace > /tmp/mmcv_build.log 2>&1)
  local rc=$?
  say "mmcv CUDA build rc=$rc in $(( $(date +%s) - t0 )) s"
  tail -25 /tmp/mmcv_build.log > $OUT/mmcv_build_tail.txt
  grep -m5 -B2 -A5 "error" /tmp/mmcv_build.log >> $OUT/mmcv_build_tail.txt
  if [ $rc -ne 0 ]; then
    say "CUDA build failed; building CPU ops (seg only)"
    (cd /tmp/mmcv-2.1.0 && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=32 python3 setup.py build_ext --inplace > /tmp/mmcv_cpu.log 2>&1)
    say "mmcv CPU build rc=$?"
  fi
  export PYTHONPATH=/tmp/mmcv-2.1.0:$PYTHONPATH
  python3 -c "import mmcv, mmcv.ops, torch; from mmcv.ops import nms, roi_align; b=torch.rand(8,4,device='cuda'); b[:,2:]+=b[:,:2]; print('mmcv', mmcv.__version__, 'nms on cuda:', nms(b, torch.rand(8,device='cuda'), 0.5)[1].numel())" 2>&1 | tail -2 | tee -a $LOG
}
data() { [ -f data/demo/coco/annotations/instances_val.json ] || python3 -c "from vssm.data import DemoShapesSpec, generate_demo_shapes; generate_demo_shapes('data/demo', DemoShapesSpec())"; }
SEG=configs/mmseg/upernet_vmamba-demo_1xb8-shapes-128x128.py
DET=configs/mmdet/mask-rcnn_vmamba-demo_fpn_1xb4-shapes-128x128.py
opts() {  # task iters
  local root=data/demo/ade; [ $1 = det ] && root=data/demo/coco
  echo "train_cfg.max_iters=$2 train_cfg.val_interval=$3 default_hooks.logger.interval=10 default_hooks.checkpoint.interval=100000"
  echo "train_dataloader.dataset.data_root=$root val_dataloader.dataset.data_root=$root test_dataloader.dataset.data_root=$root"
  [ $1 = det ] && echo "val_evaluator.ann_file=$REPO/data/demo/coco/annotations/instances_val.json test_evaluator.ann_file=$REPO/data/demo/coco/annotations/instances_val.json"
}
summary() {  # work_dir label batch_per_gpu ngpus
  python3 - "$@" <<'PY' | tee -a $LOG
import glob, json, math, statistics, sys
wd, label, batch, ngpu = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
files = sorted(glob.glob(f"{wd}/*/vis_data/scalars.json"))
rows = [json.loads(l) for l in open(files[-1])] if files else []
train = [r for r in rows if "loss" in r]
bad = [(r["iter"], [k for k, v in r.items() if isinstance(v, float) and not math.isfinite(v)]) for r in train]
bad = [b for b in bad if b[1]]
times = [r["time"] for r in train if r.get("iter", 0) > 10 and "time" in r]
med = statistics.median(times) if times else float("nan")
val = {k: v for r in rows if "loss" not in r for k, v in r.items() if k in ("mIoU", "aAcc", "coco/bbox_mAP", "coco/segm_mAP")}
out = dict(run=label, logged=len(train), last_iter=train[-1]["iter"] if train else None,
           first_loss=train[0]["loss"] if train else None, last_loss=train[-1]["loss"] if train else None,
           nonfinite_iters=bad, median_s_per_iter=med, img_per_s=batch * ngpu / med if times else None, **val)
print(json.dumps(out))
PY
}
amp() {
  ensure_site; data
  for task in seg det; do
    cfg=$SEG; b=8; [ $task = det ] && { cfg=$DET; b=4; }
    wd=/tmp/wd/amp_$task; rm -rf $wd
    say "$task --amp 200 iters"
    CUDA_VISIBLE_DEVICES=0 timeout 280 python3 tools/train.py $cfg --amp --amp-dtype ${AMP_DTYPE:-bfloat16} --work-dir $wd --cfg-options $(opts $task 200 200) > /tmp/amp_$task.log 2>&1
    say "rc=$?"; grep -E "Iter\(train\)|Iter\(val\)|mIoU|bbox_mAP|Error|error" /tmp/amp_$task.log | tail -6 >> $LOG
    summary $wd amp_$task $b 1
  done
}
dist() {
  ensure_site; data
  for task in ${DIST_TASKS:-seg det}; do
    cfg=$SEG; b=8; [ $task = det ] && { cfg=$DET; b=4; }
    for n in 1 2; do
      wd=/tmp/wd/dist_${task}_$n; rm -rf $wd
      say "$task $n GPU(s), 50 iters, --amp"
      if [ $n = 1 ]; then
        CUDA_VISIBLE_DEVICES=0 timeout 200 python3 tools/train.py $cfg --amp --work-dir $wd --cfg-options $(opts $task 50 1000) > /tmp/dist.log 2>&1
      else
        PYTHON=python3 timeout 200 bash tools/dist_train.sh $cfg 2 --amp --work-dir $wd --cfg-options $(opts $task 50 1000) > /tmp/dist.log 2>&1
      fi
      say "rc=$?"; grep -E "Error|error" /tmp/dist.log | tail -3 >> $LOG
      summary $wd dist_${task}_$n $b $n
    done
  done
}
skips() {
  ensure_site; data
  say "det: skipped steps, float16 vs bfloat16, 100 iterations each"
  # work dirs (checkpoints, many files) stay in /tmp; only the JSON and the log come to $OUT
  CUDA_VISIBLE_DEVICES=0 timeout 200 python3 benchmarks/amp_stability.py --out /tmp/amp_skips --mm-config $DET \
    --steps 100 --cfg-options $(opts det 100 101) > /tmp/amp_skips.log 2>&1
  say "rc=$?"; cp /tmp/amp_skips/amp_stability_mm.json /tmp/amp_skips.log $OUT/ 2>/dev/null
  grep -E "^\{|steps skipped|wrote|Error" /tmp/amp_skips.log | tail -5 | tee -a $LOG
}
for step in "$@"; do $step; done
