"""Hierarchical VMamba backbone for mmdet / mmseg (Swin-style interface)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import LayerNorm2d

from .registry import register_model
from .trunk import TrunkBackbone, check_indices, children_before

OUT_NORM_EPS = 1e-5


@register_model
class VMamba(TrunkBackbone):
    """VMamba stages as a feature pyramid: (B, 3, H, W) -> tuple of (B, C_i, H / s_i, W / s_i), s_i = 4 * 2**i.

    Args:
        arch: a vssm timm name, ``vmamba_tiny|small|base`` (or ``*_v0``).
        out_indices: stages to return (0..3, an int or a sequence), each through its own LayerNorm2d (eps 1e-5).
        frozen_stages: -1 none; 0 the stem; k the stem and stages 0..k-1 (no gradients, eval mode).
        norm_eval: keep BatchNorm layers in eval mode while training.
        init_cfg: None or ``dict(type='Pretrained', checkpoint=PATH[, prefix='backbone.'])``; official
            classification files load through ``vssm.models.vmamba.checkpoint_filter_fn``.
        **model_kwargs: passed to ``timm.create_model`` (``scan='hilbert'``, ``drop_path_rate=0.2``, ``dims=...``).
    """

    arch_prefix = "vmamba_"
    family_module = "vssm.models.vmamba"

    def __init__(
        self,
        arch: str = "vmamba_tiny",
        out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        init_cfg: Optional[dict] = None,
        **model_kwargs,
    ) -> None:
        super().__init__(arch, frozen_stages, norm_eval, init_cfg, model_kwargs)
        stage_info = self.trunk.feature_info
        self.out_indices = check_indices("out_indices", out_indices, len(stage_info))
        if frozen_stages > self.out_indices[-1] + 1:
            raise ValueError(
                f"frozen_stages: got {frozen_stages}, expected <= {self.out_indices[-1] + 1} (the stages used)"
            )
        self.out_channels: List[int] = [stage_info[i]["num_chs"] for i in self.out_indices]
        self.stage_names = [info["module"] for info in stage_info]
        self.prune_trunk(self.out_indices)
        # eps 1e-5: the official detection / segmentation backbone's outnorm{i} are torch LayerNorm defaults.
        self.out_norms = nn.ModuleList(LayerNorm2d(c, eps=OUT_NORM_EPS) for c in self.out_channels)
        self.freeze()

    def frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        stem = children_before(self.trunk, self.stage_names[0].split(".")[0])
        stages = [self.trunk.get_submodule(name) for name in self.stage_names[: self.frozen_stages]]
        return stem + stages

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """x: (B, 3, H, W) -> per out index i: contiguous (B, out_channels[i], H / 2**(i+2), W / 2**(i+2))."""
        features = self.trunk.forward_intermediates(x, indices=list(self.out_indices), intermediates_only=True)
        # LayerNorm2d leaves channels-last strides; mmcv's CPU RoIAlign reads raw NCHW memory.
        return tuple(norm(f).contiguous() for norm, f in zip(self.out_norms, features))
