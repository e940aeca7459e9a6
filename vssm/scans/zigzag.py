"""PlainMamba zig-zag (continuous, boustrophedon) scan with direction-aware B; merge = sum.

Routes: row snake from the top-left (row 0 left->right, row 1 right->left, ...), its exact reverse, the
column snake from the top-left, its exact reverse. Each step carries the direction of the move that
arrived at it; the module adds a learned (5, N) table row (start, right, left, up, down) to B.

``raster_params=True`` (default) reproduces PlainMamba exactly: only u is reordered, delta/B/C of scan
step t are those of raster token t (``param_index`` = identity). With ``raster_params=False`` delta/B/C
follow the route like u does.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from ..kernels import Routes
from .base import ScanParams, ScanPlan, ScanStrategy, raster_grid, step_directions, table
from .registry import register_scan


def row_snake(H: int, W: int) -> np.ndarray:
    """(H*W,) raster indices: row 0 left->right, row 1 right->left, ..."""
    grid = raster_grid(H, W)
    grid[1::2] = grid[1::2, ::-1]
    return grid.reshape(-1)


def column_snake(H: int, W: int) -> np.ndarray:
    """(H*W,) raster indices: column 0 top->bottom, column 1 bottom->top, ..."""
    grid = raster_grid(H, W).T.copy()
    grid[1::2] = grid[1::2, ::-1]
    return grid.reshape(-1)


class DirectionBias(nn.Module):
    """Learned per-direction offsets added to B: ``direction_Bs`` (5, N) for start/right/left/up/down."""

    def __init__(self, d_state: int) -> None:
        super().__init__()
        self.direction_Bs = nn.Parameter(torch.zeros(5, d_state))
        nn.init.trunc_normal_(self.direction_Bs, std=0.02)

    def forward(self, B: torch.Tensor, routes: Routes) -> torch.Tensor:
        """B (b, L, K, N) at param positions -> B plus the table row of each step's direction."""
        direction = routes.direction.clamp(min=0)  # padding steps never write
        bias = self.direction_Bs[direction]  # (K, T, N)
        K, T = direction.shape
        if routes.param_index is None:
            positions = routes.index.long().clamp(min=0)
            step_bias = B.new_zeros(B.shape[1], K, B.shape[3])
            step_bias[positions, torch.arange(K, device=B.device)[:, None]] = bias.to(B.dtype)
            return B + step_bias
        # param_index is the identity: step t uses raster token t.
        return B + bias.transpose(0, 1).to(B.dtype)[None, : B.shape[1]]


@register_scan("zigzag")
class ZigzagScan(ScanStrategy):
    merge = "sum"

    def __init__(self, raster_params: bool = True, direction_bias: bool = True) -> None:
        super().__init__()
        self.raster_params = raster_params
        self.direction_bias = direction_bias

    @property
    def num_routes(self) -> int:
        return 4

    def build_routes(self, H: int, W: int) -> Routes:
        rows, cols = row_snake(H, W), column_snake(H, W)
        index = np.stack([rows, rows[::-1], cols, cols[::-1]])
        param_index = table(np.broadcast_to(np.arange(H * W), (4, H * W))) if self.raster_params else None
        return Routes(index=table(index), param_index=param_index, direction=step_directions(index, W))

    def make_module(self, dim: int, d_state: int) -> Optional[nn.Module]:
        return DirectionBias(d_state) if self.direction_bias else None

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
        """The base scan with the direction table's rows added to B (when the mixer owns a module)."""
        if module is not None:
            B = module(B, plan.routes)
        return super().scan(plan, delta, B, C, params, z=z, delta_softplus=delta_softplus, out_dtype=out_dtype)
