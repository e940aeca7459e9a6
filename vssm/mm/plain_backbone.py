"""Plain (single-resolution) SSM backbones for mmdet / mmseg: Vim and PlainMamba with a simple feature pyramid."""
from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from timm.layers import LayerNorm2d

from .registry import register_model
from .simple_pyramid import SimplePyramid
from .trunk import TrunkBackbone, check_indices, children_before


class PlainBackbone(TrunkBackbone):
    """Taps of four blocks of a plain model -> strides 4, 8, 16, 32 (each (B, C, H / s, W / s)).

    Args:
        arch: a vssm timm name of the family (``vim_small``, ``plainmamba_l1``, ...).
        out_indices: the four blocks tapped (default: the ends of the four quarters of the depth).
        frozen_stages: -1 none; 0 the embeddings; k the embeddings and blocks 0..k-1.
        norm_eval: keep BatchNorm layers (stem, pyramid) in eval mode while training.
        pyramid_norm_cfg: norm inside the level-0 deconvolution (``dict(type='SyncBN')`` for multi-GPU).
        init_cfg: None or ``dict(type='Pretrained', checkpoint=PATH[, prefix=...])``, through the converter.
        **model_kwargs: passed to ``timm.create_model`` (``img_size=512``, ``scan=...``, ``drop_path_rate=...``).

    ``num_layers`` and ``get_layer_id`` serve layer-wise lr decay (``VssmOptimWrapperConstructor``).
    """

    def __init__(
        self,
        arch: str,
        out_indices: Optional[Sequence[int]] = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pyramid_norm_cfg: dict = dict(type="BN"),
        init_cfg: Optional[dict] = None,
        **model_kwargs,
    ) -> None:
        super().__init__(arch, frozen_stages, norm_eval, init_cfg, model_kwargs)
        block_info = self.trunk.feature_info
        self.num_layers = len(block_info)
        if out_indices is None:
            quarter = self.num_layers // 4
            out_indices = tuple(quarter * (i + 1) - 1 for i in range(4))
        self.out_indices = check_indices("out_indices", out_indices, self.num_layers)
        if len(self.out_indices) != 4:
            raise ValueError(f"out_indices: got {out_indices!r}, expected 4 block indices (one per pyramid level)")
        if frozen_stages > self.out_indices[-1] + 1:
            raise ValueError(
                f"frozen_stages: got {frozen_stages}, expected <= {self.out_indices[-1] + 1} (the blocks used)"
            )
        self.blocks_name = block_info[0]["module"].rsplit(".", 1)[0]
        self.prune_trunk(self.out_indices)
        channels = block_info[0]["num_chs"]
        self.out_channels: List[int] = [channels] * 4
        self.tap_norms = nn.ModuleList(LayerNorm2d(channels) for _ in range(4))
        self.pyramid = SimplePyramid(channels, pyramid_norm_cfg)
        self._block_param = re.compile(rf"^trunk\.{re.escape(self.blocks_name)}\.(\d+)\.")
        self.freeze()

    def embeddings(self) -> List[nn.Module]:
        """Trunk children before the blocks (patch embed, stem, ...); pos / cls embeddings are parameters."""
        return children_before(self.trunk, self.blocks_name.split(".")[0])

    def frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        blocks = self.trunk.get_submodule(self.blocks_name)
        return self.embeddings() + list(blocks)[: self.frozen_stages]

    def freeze(self) -> None:
        super().freeze()
        if self.frozen_stages >= 0:
            for param in self.trunk.parameters(recurse=False):
                param.requires_grad = False

    def get_layer_id(self, name: str) -> int:
        """Layer of parameter ``name`` (relative to this backbone): 0 embeddings, i + 1 block i, else depth + 1."""
        match = self._block_param.match(name)
        if match:
            return int(match.group(1)) + 1
        if name.startswith("trunk.") and name.count(".") == 1:
            return 0  # pos_embed, cls_token
        embedding_params = {id(p) for m in self.embeddings() for p in m.parameters()}
        param = self.get_parameter(name)
        return 0 if id(param) in embedding_params else self.num_layers + 1

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """x: (B, 3, H, W) -> (B, C, H/4, W/4), (B, C, H/8, W/8), (B, C, H/16, W/16), (B, C, H/32, W/32)."""
        taps = self.trunk.forward_intermediates(x, indices=list(self.out_indices), intermediates_only=True)
        # LayerNorm2d leaves channels-last strides; mmcv's CPU RoIAlign reads raw NCHW memory.
        return tuple(f.contiguous() for f in self.pyramid([norm(t) for norm, t in zip(self.tap_norms, taps)]))


@register_model
class Vim(PlainBackbone):
    """Vim (bidirectional scan, middle class token) with a simple feature pyramid; see :class:`PlainBackbone`."""

    arch_prefix = "vim_"
    family_module = "vssm.models.vim"

    def __init__(self, arch: str = "vim_small", **kwargs) -> None:
        super().__init__(arch, **kwargs)


@register_model
class PlainMamba(PlainBackbone):
    """PlainMamba (zigzag scan, direction-aware B) with a simple feature pyramid; see :class:`PlainBackbone`."""

    arch_prefix = "plainmamba_"
    family_module = "vssm.models.plainmamba"

    def __init__(self, arch: str = "plainmamba_l1", **kwargs) -> None:
        super().__init__(arch, **kwargs)
