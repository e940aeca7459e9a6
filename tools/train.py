"""Train a detector or segmenter from an OpenMMLab config (mmdet or mmseg: the config's default_scope decides).

    python tools/train.py CONFIG [--work-dir DIR] [--amp [--amp-dtype {bfloat16,float16}]] [--resume [CKPT]]
                                 [--trust-checkpoint] [--cfg-options k=v ...] [--launcher {none,pytorch}]

``--amp`` autocasts to bfloat16 by default: with float16, Mask R-CNN's gradients overflow and the dynamic loss
scale skips steps (``benchmarks/amp_stability.py --mm-config`` counts them); ``--amp-dtype float16`` opts in
(GPUs without bfloat16). Under bfloat16, RoIAlign layers run torchvision's roi_align and models with other
mmcv ops lacking bfloat16 kernels are refused (:mod:`vssm.mm.amp`). Resumed checkpoints are read with
``torch.load(weights_only=True)`` and only the inert globals mmengine checkpoints need
(:mod:`vssm.mm.checkpoint_io`); ``--trust-checkpoint`` reads a file you trust with ``weights_only=False``.

Runs on CPU when no GPU is present; `tools/dist_train.sh CONFIG NGPUS` starts one process per GPU with torchrun.
Logs (with ETA), checkpoints and the resolved config go to the work dir (default ``work_dirs/<config name>``).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from vssm.mm.amp import adapt_to_bfloat16
from vssm.mm.checkpoint_io import mmengine_checkpoint_globals

AMP_DTYPES = ("bfloat16", "float16")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train an mmdet / mmseg model with a vssm backbone")
    parser.add_argument("config", help="config file path")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/<config name>)")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision (AmpOptimWrapper, dynamic loss scale), bfloat16 unless --amp-dtype")
    parser.add_argument("--amp-dtype", choices=AMP_DTYPES,
                        help="autocast dtype with --amp (default: the config's optim_wrapper.dtype, else bfloat16)")
    parser.add_argument(
        "--resume", nargs="?", type=str, const="auto",
        help="resume from CKPT, or from the latest checkpoint in the work dir when no path is given",
    )
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys, e.g. a.b=1")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none", help="job launcher")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load --resume / load_from with weights_only=False: only files you trust (they may run code)")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.amp_dtype and not args.amp:
        parser.error("--amp-dtype: only with --amp")
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The config with the command-line choices applied."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join(
        "work_dirs", osp.splitext(osp.basename(args.config))[0]
    )
    if args.amp:
        if cfg.optim_wrapper.get("type", "OptimWrapper") not in ("OptimWrapper", "AmpOptimWrapper"):
            raise ValueError(
                f"--amp: optim_wrapper.type is {cfg.optim_wrapper.type!r}, expected OptimWrapper or AmpOptimWrapper"
            )
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
        if args.amp_dtype or cfg.optim_wrapper.get("dtype") is None:
            cfg.optim_wrapper.dtype = args.amp_dtype or "bfloat16"
        if cfg.optim_wrapper.dtype == "bfloat16":
            for path in adapt_to_bfloat16(cfg.model):
                print(f"--amp bfloat16: {path} uses torchvision's roi_align (mmcv 2.1.0's has no bfloat16 kernel)")
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)
    with mmengine_checkpoint_globals(trust=args.trust_checkpoint, path=cfg.load_from):
        runner.train()


if __name__ == "__main__":
    main()
