"""Spatial-Mamba structure-aware state fusion: one raster route whose hidden states are fused in 2-D.

The kernel returns the states h (b, L, 1, d, N) of a raster scan; the module reshapes them to a
(b, d*N, H, W) map and fuses them with three depthwise 3x3 convolutions of dilation 1, 3 and 5 weighted by
three learned scalars; then y = sum_n h_fused * C + D * u. K = 1. With an extra token (Vim's middle class
token, ``middle_token=True``) the raster route visits it in sequence order; its state joins no fusion (it has no
grid position) and is read as scanned.

Padding: replicate, in training and in eval alike — one function, so eval never runs a stale or different
kernel. (Spatial-Mamba trains with replicate padding but folds the three kernels into one zero-padded
11x11 kernel in eval, cached on first use; the trained weights expect replicate padding, so we keep it.)
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import Routes, selective_scan
from .base import (ScanParams, ScanPlan, ScanStrategy, join_middle_token, require_single_u_slot, split_middle_token,
                   table)
from .registry import register_scan

DILATIONS = (1, 3, 5)


class StateFusion(nn.Module):
    """sum_i alpha_i * dwconv3x3_dilation_i(h), replicate padding: (b, c, H, W) -> (b, c, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(channels, 1, 3, 3)) for _ in DILATIONS])
        for weight in self.weights:
            nn.init.kaiming_uniform_(weight, a=5 ** 0.5)
        self.alpha = nn.Parameter(torch.ones(len(DILATIONS)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = 0
        for alpha, weight, dilation in zip(self.alpha, self.weights, DILATIONS):
            padded = F.pad(h, (dilation,) * 4, mode="replicate")
            out = out + alpha * F.conv2d(padded, weight.to(h.dtype), dilation=dilation, groups=h.shape[1])
        return out


@register_scan("spatial_fusion")
class SpatialFusionScan(ScanStrategy):
    merge = "sum"

    @property
    def num_routes(self) -> int:
        return 1

    def build_routes(self, H: int, W: int) -> Routes:
        return Routes(index=table(np.arange(H * W)[None]))

    def make_module(self, dim: int, d_state: int) -> Optional[nn.Module]:
        return StateFusion(dim * d_state)

    def prepare(
        self, u: torch.Tensor, H: int, W: int, *, module: Optional[nn.Module] = None, middle_token: bool = False
    ) -> ScanPlan:
        require_single_u_slot(self.name, u)
        return super().prepare(u, H, W, module=module, middle_token=middle_token)

    def scan(
        self,
        plan: ScanPlan,
        delta: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        params: ScanParams,
        *,
        z: Optional[torch.Tensor] = None,
        module: Optional[nn.Module] = None,
        delta_softplus: bool = True,
        out_dtype: Optional[torch.dtype] = None,
    ) -> torch.Tensor:
        """States of the raster scan fused on the grid by ``module``, then y = C·h + D·u, gated by z (b, L, 1, d);
        computed in the states' dtype (float32, float64 for float64 tokens)."""
        require_single_u_slot(self.name, None, z)
        u, H, W = plan.tokens, plan.H, plan.W
        b, L, _, dim = u.shape
        N = params.A.shape[-1]
        _, hidden = selective_scan(
            u, delta, params.A, B, C, None, params.delta_bias,
            routes=plan.routes, delta_softplus=delta_softplus, return_hidden=True,
        )
        states = hidden[:, :, 0]  # (b, L, d, N)
        grid, token = split_middle_token(states, H, W) if plan.middle_token else (states, None)
        grid = grid.reshape(b, H, W, dim * N).permute(0, 3, 1, 2)
        fused = module(grid).permute(0, 2, 3, 1).reshape(b, H * W, dim, N)
        if plan.middle_token:  # the extra token has no place on the grid: its state is used as scanned
            fused = join_middle_token(fused, token)
        dtype = states.dtype
        y = torch.einsum("bldn,bln->bld", fused, C[:, :, 0].to(dtype))
        if params.D is not None:
            y = y + params.D[0].to(dtype) * u[:, :, 0].to(dtype)
        if z is not None:
            y = y * F.silu(z[:, :, 0].to(dtype))
        return y.to(out_dtype or u.dtype)
