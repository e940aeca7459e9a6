"""The OpenMMLab demo: train a small VMamba segmenter and detector on CPU, evaluate, and draw predictions.

    python tools/demo_mm.py [--full] [--task seg det] [--work-dir work_dirs/demo] [--data data/demo]

For each task: generate the shapes dataset (deterministic, ~2 MB) if absent, train the demo config with
``tools/train.py`` (a subprocess; a progress bar on the console, its log in ``<work dir>/<task>/train_console.log``),
evaluate the final checkpoint with ``tools/test.py`` (mIoU from mmseg's IoUMetric, bbox / segm mAP from mmdet's
CocoMetric), and save a PNG with validation images, ground truth and predictions. Prints where everything is.
The default shortens the configs' schedules to QUICK_ITERS iterations (about 2 minutes in all on 2 CPU cores);
``--full`` trains the configs' own schedules (250 / 300 iterations) to higher scores.
"""
from __future__ import annotations

import argparse
import glob
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional

import cv2
import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from tools import test as test_tool  # noqa: E402
from vssm.data import SEG_PALETTE, DemoShapesSpec, generate_demo_shapes  # noqa: E402

CONFIGS = {
    "seg": osp.join(REPO, "configs/mmseg/upernet_vmamba-demo_1xb8-shapes-128x128.py"),
    "det": osp.join(REPO, "configs/mmdet/mask-rcnn_vmamba-demo_fpn_1xb4-shapes-128x128.py"),
}
METRIC_KEYS = {"seg": ("mIoU",), "det": ("coco/bbox_mAP", "coco/segm_mAP")}
# Training iterations per task of the default (short) demo; --full keeps the configs' own schedules.
QUICK_ITERS = {"seg": 100, "det": 60}
TRAIN_ITER = re.compile(r"Iter\(train\) \[\s*(\d+)/(\d+)\]")
NUM_SHOWN = 4
SCORE_THRESHOLD = 0.5


def ensure_data(data_root: str) -> None:
    """Generate the demo dataset under ``data_root`` unless it is already there."""
    if osp.isfile(osp.join(data_root, "coco", "annotations", "instances_val.json")):
        return
    roots = generate_demo_shapes(data_root, DemoShapesSpec())
    print(f"[demo] generated the shapes dataset: {roots['coco']} (COCO), {roots['ade']} (ADE-style)")


def schedule_options(task: str, iters: int) -> List[str]:
    """cfg-options that shorten the demo config's schedule to ``iters``: warm-up (the first fifth), then PolyLR
    decay (seg) or a 10x step at 80% (det), checkpoint and validation at the end."""
    warmup = max(1, iters // 5)
    options = [f"train_cfg.max_iters={iters}", f"train_cfg.val_interval={iters}",
               f"default_hooks.checkpoint.interval={iters}", f"param_scheduler.0.end={warmup}",
               f"param_scheduler.1.end={iters}"]
    if task == "seg":
        options.append(f"param_scheduler.1.begin={warmup}")
    else:
        options.append(f"param_scheduler.1.milestones=[{int(iters * 0.8)}]")
    return options


def progress_bar(label: str, done: int, total: int, width: int = 30) -> str:
    """A one-line text bar: ``label [#####.....] done/total``."""
    filled = width * done // max(total, 1)
    return f"\r[demo] {label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def train(config: str, work_dir: str, data_root: str, task: str, iters: Optional[int]) -> str:
    """Run tools/train.py on ``config`` (for ``iters`` iterations; None: the config's schedule) with a progress
    bar; returns the final checkpoint.

    The training log goes to ``<work_dir>/train_console.log``; its tail is printed if training fails."""
    root_key = "ade" if task == "seg" else "coco"
    data_opts = [f"train_dataloader.dataset.data_root={osp.join(data_root, root_key)}",
                 f"val_dataloader.dataset.data_root={osp.join(data_root, root_key)}",
                 f"test_dataloader.dataset.data_root={osp.join(data_root, root_key)}"]
    if task == "det":
        ann = osp.join(data_root, "coco", "annotations", "instances_val.json")
        data_opts += [f"val_evaluator.ann_file={ann}", f"test_evaluator.ann_file={ann}"]
    cmd = [sys.executable, osp.join(REPO, "tools", "train.py"), config, "--work-dir", work_dir,
           "--cfg-options", *data_opts, *(schedule_options(task, iters) if iters else []),
           "default_hooks.logger.interval=1"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    os.makedirs(work_dir, exist_ok=True)
    log_path = osp.join(work_dir, "train_console.log")
    with open(log_path, "w") as log, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                     text=True, bufsize=1) as proc:
        for line in proc.stdout:
            log.write(line)
            found = TRAIN_ITER.search(line)
            if found:
                sys.stderr.write(progress_bar(f"{task} training", int(found.group(1)), int(found.group(2))))
                sys.stderr.flush()
        sys.stderr.write("\n")
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = "".join(f.readlines()[-40:])
        raise RuntimeError(f"{task}: tools/train.py exited with {proc.returncode}; log {log_path}, last lines:\n{tail}")
    with open(osp.join(work_dir, "last_checkpoint")) as f:
        return f.read().strip()


def evaluate(config: str, checkpoint: str, work_dir: str, data_root: str, task: str) -> Dict[str, float]:
    """Metrics of ``checkpoint`` on the validation split, through tools/test.py."""
    root_key = "ade" if task == "seg" else "coco"
    options = [f"test_dataloader.dataset.data_root={osp.join(data_root, root_key)}"]
    if task == "det":
        options.append(f"test_evaluator.ann_file={osp.join(data_root, 'coco', 'annotations', 'instances_val.json')}")
    return test_tool.main([config, checkpoint, "--work-dir", work_dir, "--cfg-options", *options])


def _colour_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) BGR image with the demo palette."""
    palette = np.array([c[::-1] for c in SEG_PALETTE], dtype=np.uint8)
    return palette[labels]


def seg_panels(config: str, checkpoint: str, data_root: str) -> List[np.ndarray]:
    """Rows of [image | ground truth | prediction] for the first validation images."""
    from mmseg.apis import inference_model, init_model

    from vssm.mm.checkpoint_io import mmengine_checkpoint_globals

    with mmengine_checkpoint_globals(path=checkpoint):
        model = init_model(config, checkpoint, device="cpu")
    rows = []
    for path in sorted(glob.glob(osp.join(data_root, "ade", "images", "validation", "*.jpg")))[:NUM_SHOWN]:
        image = cv2.imread(path)
        truth = cv2.imread(path.replace("images", "annotations").replace(".jpg", ".png"), cv2.IMREAD_GRAYSCALE)
        pred = inference_model(model, path).pred_sem_seg.data[0].cpu().numpy().astype(np.int64)
        rows.append(np.hstack([image, _colour_labels(truth), _colour_labels(pred)]))
    return rows


def _draw_instances(image: np.ndarray, masks: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Draw (N, H, W) mask outlines in white and (N, 4) xyxy boxes in the class colours on a copy of ``image``."""
    canvas = image.copy()
    for mask, box, label in zip(masks, boxes, labels):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, (255, 255, 255), 1)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), tuple(int(c) for c in SEG_PALETTE[int(label) + 1][::-1]), 1)
    return canvas


def _decode(mask_utils, segmentation, h: int, w: int) -> np.ndarray:
    """COCO segmentation (polygons or compressed RLE) -> (h, w) bool mask."""
    if isinstance(segmentation, list):
        segmentation = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    return mask_utils.decode(segmentation).astype(bool)


def det_panels(config: str, checkpoint: str, data_root: str) -> List[np.ndarray]:
    """Rows of [image | ground-truth instances | predicted instances (score >= 0.5)]."""
    import json

    from mmdet.apis import inference_detector, init_detector
    from pycocotools import mask as mask_utils

    from vssm.mm.checkpoint_io import mmengine_checkpoint_globals

    with mmengine_checkpoint_globals(path=checkpoint):
        model = init_detector(config, checkpoint, device="cpu")
    with open(osp.join(data_root, "coco", "annotations", "instances_val.json")) as f:
        coco = json.load(f)
    rows = []
    for info in coco["images"][:NUM_SHOWN]:
        path = osp.join(data_root, "coco", "val", info["file_name"])
        image = cv2.imread(path)
        anns = [a for a in coco["annotations"] if a["image_id"] == info["id"]]
        h, w = image.shape[:2]
        gt_masks = np.array([_decode(mask_utils, a["segmentation"], h, w) for a in anns]).reshape(-1, h, w)
        gt_boxes = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in (a["bbox"] for a in anns)]).reshape(-1, 4)
        gt_labels = np.array([a["category_id"] - 1 for a in anns])
        pred = inference_detector(model, path).pred_instances
        keep = (pred.scores >= SCORE_THRESHOLD).cpu().numpy()
        rows.append(np.hstack([
            image,
            _draw_instances(image, gt_masks, gt_boxes, gt_labels),
            _draw_instances(image, pred.masks.cpu().numpy()[keep], pred.bboxes.cpu().numpy()[keep],
                            pred.labels.cpu().numpy()[keep]),
        ]))
    return rows


def save_png(rows: List[np.ndarray], path: str, title: str) -> None:
    """Stack rows (each [image | truth | prediction]) under a caption and write a PNG, upscaled 2x."""
    grid = np.vstack(rows)
    grid = cv2.resize(grid, (grid.shape[1] * 2, grid.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    header = np.full((28, grid.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(header, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(path, np.vstack([header, grid]))


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs="+", choices=sorted(CONFIGS), default=["seg", "det"], help="what to run")
    parser.add_argument("--work-dir", default="work_dirs/demo", help="checkpoints, logs and PNGs go here")
    parser.add_argument("--data", default="data/demo", help="dataset folder (generated when absent)")
    parser.add_argument("--seg-config", default=CONFIGS["seg"], help="segmentation config")
    parser.add_argument("--det-config", default=CONFIGS["det"], help="detection config")
    parser.add_argument("--full", action="store_true",
                        help=f"train the configs' own schedules instead of {QUICK_ITERS} iterations")
    args = parser.parse_args(argv)
    iters = {task: None for task in CONFIGS} if args.full else QUICK_ITERS
    data_root, configs = osp.abspath(args.data), {"seg": args.seg_config, "det": args.det_config}
    ensure_data(data_root)
    results: Dict[str, Dict[str, float]] = {}
    summary = []
    for task in args.task:
        start = time.perf_counter()
        work_dir = osp.abspath(osp.join(args.work_dir, task))
        length = f"{iters[task]} iterations" if iters[task] else "the config's schedule"
        print(f"[demo] {task}: training {configs[task]} for {length} -> {work_dir}", flush=True)
        checkpoint = train(configs[task], work_dir, data_root, task, iters[task])
        metrics = evaluate(configs[task], checkpoint, work_dir, data_root, task)
        results[task] = {key: float(metrics[key]) for key in METRIC_KEYS[task]}
        panels = seg_panels if task == "seg" else det_panels
        png = osp.join(work_dir, f"{task}_predictions.png")
        scores = ", ".join(f"{k} {v:.3f}" for k, v in results[task].items())
        save_png(panels(configs[task], checkpoint, data_root), png, f"{task}: image | ground truth | prediction ({scores})")
        summary.append(f"[demo] {task}: {scores} in {time.perf_counter() - start:.0f} s; checkpoint {checkpoint}; "
                       f"predictions {png}")
    print("\n".join(summary), flush=True)
    return results


if __name__ == "__main__":
    main()
