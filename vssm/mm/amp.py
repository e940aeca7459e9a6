"""bfloat16 autocast with mmcv 2.1.0's ops: which config entries need a change, and which cannot run.

mmcv 2.1.0 compiles its CUDA ops for float32, float16 and float64 only (``AT_DISPATCH_FLOATING_TYPES_AND_HALF``):
a Mask R-CNN step under bfloat16 autocast stops in ``roi_align_forward_cuda_kernel`` ("not implemented for
'BFloat16'", H200, 2026-12-03). :func:`adapt_to_bfloat16` turns ``RoIAlign`` layers to torchvision's roi_align
(``use_torchvision=True``: the same aligned RoIAlign, registered with autocast, so it runs in float32 and its
output is cast back) and refuses models with other bfloat16-less mmcv ops in their CUDA path (sigmoid
``FocalLoss``), naming them and ``--amp-dtype float16``.
"""
from __future__ import annotations

from typing import Any, List

# mmdet losses whose CUDA path is an mmcv kernel without bfloat16 (the CPU path is plain torch)
_NO_BFLOAT16 = {"FocalLoss": "mmcv.ops.sigmoid_focal_loss (RetinaNet-style heads)"}


def adapt_to_bfloat16(model_cfg: Any, where: str = "model") -> List[str]:
    """Sets ``use_torchvision=True`` on every RoIAlign layer of ``model_cfg`` (a Config dict, changed in place)
    and returns the paths it changed; raises ValueError for an op that cannot run under bfloat16 autocast."""
    changed: List[str] = []
    if isinstance(model_cfg, dict):
        kind = str(model_cfg.get("type", "")).split(".")[-1]
        if kind == "RoIAlign" and not model_cfg.get("use_torchvision", False):
            model_cfg["use_torchvision"] = True
            changed.append(where)
        if kind in _NO_BFLOAT16 and model_cfg.get("use_sigmoid", True):
            raise ValueError(
                f"--amp with bfloat16: {where} ({kind}) runs {_NO_BFLOAT16[kind]} on the GPU, which mmcv 2.1.0 has "
                "no bfloat16 kernel for; use --amp-dtype float16")
        for key, value in model_cfg.items():
            changed += adapt_to_bfloat16(value, f"{where}.{key}")
    elif isinstance(model_cfg, (list, tuple)):
        for i, value in enumerate(model_cfg):
            changed += adapt_to_bfloat16(value, f"{where}[{i}]")
    return changed
