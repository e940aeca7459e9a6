"""Normalisation layers. Both are torch.fx leaves (the kernel choice branches on the device)."""
from __future__ import annotations

from typing import Optional

import torch
from timm.models import register_notrace_module
from torch import nn

from ..kernels.layer_norm import autocast_dtype, layer_norm


@register_notrace_module
class LayerNorm(nn.LayerNorm):
    """LayerNorm over the last dim of a channel-last tensor (..., C); the fused Triton kernel on CUDA.

    ``feeds_matmul=True`` is for a norm whose output only enters a matmul (or is cast to the autocast dtype
    next): under autocast it then returns the autocast dtype directly, the value the matmul would cast the
    float32 result to, instead of writing float32 and casting it in a second pass.
    """

    def __init__(
        self,
        normalized_shape: int,
        eps: float = 1e-5,
        feeds_matmul: bool = False,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(normalized_shape, eps=eps, device=device, dtype=dtype)
        self.feeds_matmul = feeds_matmul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_dtype = autocast_dtype(x.device.type) if self.feeds_matmul else None
        return layer_norm(x, self.weight, self.bias, self.eps, out_dtype)


@register_notrace_module
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channel-first (B, C, H, W) map; no copy for channels_last memory."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(x.permute(0, 2, 3, 1), self.weight, self.bias, self.eps).permute(0, 3, 1, 2)
