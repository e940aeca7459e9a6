"""Simple feature pyramid (ViTDet / BEiT style) turning four stride-16 maps of a plain backbone into strides 4..32."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer


class SimplePyramid(nn.Module):
    """Four (B, C, H, W) maps at stride 16 -> (B, C, 4H, 4W), (B, C, 2H, 2W), (B, C, H, W), (B, C, H/2, W/2).

    Level 0: deconv 2x -> norm -> GELU -> deconv 2x; level 1: deconv 2x; level 2: identity; level 3: 2x2 max-pool.
    """

    def __init__(self, channels: int, norm_cfg: dict) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            [
                nn.Sequential(
                    nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
                    build_norm_layer(norm_cfg, channels)[1],
                    nn.GELU(),
                    nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
                ),
                nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
                nn.Identity(),
                nn.MaxPool2d(kernel_size=2, stride=2),
            ]
        )

    def forward(self, taps: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        if len(taps) != len(self.levels):
            raise ValueError(f"taps: got {len(taps)} maps, expected {len(self.levels)}")
        return tuple(level(tap) for level, tap in zip(self.levels, taps))
