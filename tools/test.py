"""Evaluate a checkpoint with an OpenMMLab config (mmdet or mmseg: the config's default_scope decides).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...] [--launcher {none,pytorch}]
                         [--trust-checkpoint]

Prints the metrics (bbox/segm mAP or mIoU) and writes them to the work dir log. The checkpoint is read with
``torch.load(weights_only=True)`` and only the inert globals mmengine checkpoints need
(:mod:`vssm.mm.checkpoint_io`); ``--trust-checkpoint`` reads a file you trust with ``weights_only=False``.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
from typing import Dict, List, Optional

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from vssm.mm.checkpoint_io import mmengine_checkpoint_globals


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test an mmdet / mmseg model with a vssm backbone")
    parser.add_argument("config", help="config file path")
    parser.add_argument("checkpoint", help="checkpoint file (a .pth written by tools/train.py)")
    parser.add_argument("--work-dir", help="where the test log goes (default: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys, e.g. a.b=1")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none", help="job launcher")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load CHECKPOINT with weights_only=False: only for files you trust (they may run code)")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    """Run the test loop and return its metrics."""
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise ValueError(f"checkpoint: file {args.checkpoint!r} not found, expected a .pth from tools/train.py")
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join(
        "work_dirs", osp.splitext(osp.basename(args.config))[0]
    )
    cfg.load_from, cfg.resume = args.checkpoint, False
    runner = Runner.from_cfg(cfg)
    with mmengine_checkpoint_globals(trust=args.trust_checkpoint, path=args.checkpoint):
        return runner.test()


if __name__ == "__main__":
    main()
