"""MSVMamba multi-scale scan: a full-resolution raster route plus three routes over a 2x-downsampled map.

The module owns a depthwise 7x7 stride-2 convolution. Its low-resolution tokens (h x w = ceil(H/2) x
ceil(W/2)) are appended after the H*W full-resolution tokens, so one kernel call covers both: route 0 scans the
full-resolution tokens in raster order; route 1 chains the low-resolution reversed raster, column-major and
reversed column-major routes into ONE sequence (the state carries across, as in MSVMamba) and pads to the
common length with -1. K = 2 parameter sets. The low-resolution output (each token summed over its three
visits) is bilinearly upsampled and added to the full-resolution output.

With an extra token (Vim's middle class token, ``middle_token=True``) the low-resolution map is built from the
grid tokens only; both routes visit the extra token once, at their middle step, and its output is the sum of the
two visits.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import Routes, selective_scan
from .base import (ScanParams, ScanPlan, ScanStrategy, join_middle_token, raster_grid, require_single_u_slot,
                   split_middle_token, table)
from .registry import register_scan


def low_resolution(H: int, W: int) -> tuple:
    return (H + 1) // 2, (W + 1) // 2


class Downsample(nn.Module):
    """Depthwise 7x7 stride-2 convolution: (b, d, H, W) -> (b, d, ceil(H/2), ceil(W/2))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 7, stride=2, padding=3, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@register_scan("multiscale")
class MultiScaleScan(ScanStrategy):
    merge = "none"
    builds_tokens = True

    @property
    def num_routes(self) -> int:
        return 2

    def build_routes(self, H: int, W: int) -> Routes:
        h, w = low_resolution(H, W)
        low = raster_grid(h, w) + H * W
        chained = np.concatenate([low.reshape(-1)[::-1], low.T.reshape(-1), low.T.reshape(-1)[::-1]])
        full = np.arange(H * W)
        T = max(full.size, chained.size)
        pad = lambda r: np.pad(r, (0, T - r.size), constant_values=-1)  # noqa: E731
        return Routes(index=table(np.stack([pad(full), pad(chained)])))

    def make_module(self, dim: int, d_state: int) -> Optional[nn.Module]:
        return Downsample(dim)

    def prepare(
        self, u: torch.Tensor, H: int, W: int, *, module: Optional[nn.Module] = None, middle_token: bool = False
    ) -> ScanPlan:
        """u (b, L, 1, d) -> tokens (b, L + h*w, 1, d): u followed by the ``module``'s low-resolution map."""
        require_single_u_slot(self.name, u)
        b, _, _, dim = u.shape
        grid = split_middle_token(u[:, :, 0], H, W)[0] if middle_token else u[:, :, 0]
        low = module(grid.transpose(1, 2).reshape(b, dim, H, W))  # (b, d, h, w)
        tokens = torch.cat([u, low.flatten(2).transpose(1, 2)[:, :, None]], dim=1)
        return ScanPlan(tokens, self.routes(H, W, u.device, middle_token), H, W, middle_token)

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
        """Full-resolution route output plus the upsampled low-resolution one, gated by z (b, L, 1, d)."""
        require_single_u_slot(self.name, None, z)
        H, W = plan.H, plan.W
        L = H * W + plan.middle_token
        b, _, _, dim = plan.tokens.shape
        y = selective_scan(
            plan.tokens, delta, params.A, B, C, params.D, params.delta_bias,
            routes=plan.routes, delta_softplus=delta_softplus, merge="none", out_dtype=out_dtype,
        )
        h, w = low_resolution(H, W)
        coarse = y[:, L:, 1].transpose(1, 2).reshape(b, dim, h, w)
        up = F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
        if plan.middle_token:  # the extra token's output from route 1 (route 0's is added below)
            c = (H * W) // 2
            up = join_middle_token(up, y[:, c:c + 1, 1])
        out = y[:, :L, 0] + up
        if z is not None:
            out = out * F.silu(z[:, :, 0]).to(out.dtype)
        return out
