"""PlainMamba's 2-D mixer, generic over the scan strategy.

in_proj (bias) -> x, z -> 7x7 depthwise Conv2d -> SiLU -> ONE shared set of x_proj / dt_proj / A_log / D
used by every route (expanded to the strategy's K routes as stride-0 views, never copied) -> scan (default
``zigzag``: only u is reordered, the (5, N) ``direction_Bs`` table is added to B) -> sum over routes
-> * silu(z) -> out_proj (bias).

A strategy that splits channels across routes (``multihead``: each head's routes scan d_inner / heads channels)
gets the shared set sized for one head's channels, shared by all heads and routes.

Quirk kept for weight compatibility (official ``PlainMamba2D.forward``): delta is ``dt_proj(dt)`` *with* its
bias and the scan adds ``dt_proj.bias`` again as delta_bias, so delta = softplus(W dt + 2 b).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import nn

from ..scans import ScanParams, ScanStrategy, get_scan, param_dtype
from .ssm_init import init_A_log, init_dt_bias, init_dt_weight


class PlainMambaMixer(nn.Module):
    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        expand: int = 2,
        dt_rank: Optional[int] = None,
        d_conv: int = 7,
        scan: Union[str, ScanStrategy] = "zigzag",
        scan_kwargs: Optional[dict] = None,
    ) -> None:
        super().__init__()
        self.d_inner = d_inner = expand * dim
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(dim / 16)
        self.scan = get_scan(scan, **(scan_kwargs or {}))
        route_dim = self.scan.route_dim(d_inner)
        self.in_proj = nn.Linear(dim, 2 * d_inner)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=d_conv // 2, groups=d_inner)
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(route_dim, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, route_dim)
        with torch.no_grad():
            self.dt_proj.weight.copy_(init_dt_weight(self.dt_proj.weight.shape, self.dt_rank))
            self.dt_proj.bias.copy_(init_dt_bias(route_dim))
        self.A_log = nn.Parameter(init_A_log(route_dim, d_state))
        self.D = nn.Parameter(torch.ones(route_dim))
        self.scan_module = self.scan.make_module(d_inner, d_state)
        self.out_proj = nn.Linear(d_inner, dim)

    def project(self, u: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """u (b, L, Ku, D) -> delta (b, L, K, D), B and C (b, L, K, N), the same projection for every route
        (route k reads slot k // (K // Ku))."""
        K = self.scan.num_routes
        x_dbl = self.x_proj(u)
        dts, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = self.dt_proj(dts)  # bias included here and again as the scan's delta_bias (official quirk)
        if u.shape[2] == 1:
            expand = lambda t: t.expand(-1, -1, K, -1)  # noqa: E731  stride-0 views
        else:
            expand = lambda t: t.repeat_interleave(K // u.shape[2], dim=2)  # noqa: E731
        return expand(delta), expand(B), expand(C)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """x (b, H*W, C) raster tokens -> (b, H*W, C)."""
        b, L, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = self.act(self.conv2d(x.transpose(1, 2).reshape(b, self.d_inner, H, W)))
        u = x.flatten(2).transpose(1, 2)[:, :, None]  # (b, L, 1, D)
        K = self.scan.num_routes
        dtype = param_dtype(self.A_log.dtype)
        params = ScanParams(
            A=(-torch.exp(self.A_log.to(dtype)))[None].expand(K, -1, -1),
            D=self.D.to(dtype)[None].expand(K, -1),
            delta_bias=self.dt_proj.bias.to(dtype)[None].expand(K, -1),
        )
        plan = self.scan.prepare(u, H, W, module=self.scan_module)
        delta, B, C = self.project(plan.tokens)
        y = self.scan.scan(plan, delta, B, C, params, z=z[:, :, None], module=self.scan_module)
        return self.out_proj(y)
