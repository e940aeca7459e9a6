"""SS2D: VMamba's 2-D selective-scan mixer, generic over the scan strategy.

in_proj -> depthwise conv -> SiLU -> ``strategy.prepare`` -> per-token projections of the plan's tokens (x_proj,
dt_proj; one parameter set per route) in raster order -> ``strategy.scan`` (the kernel gathers routes itself)
-> out_norm -> (gated: * silu(z)) -> out_proj. Parameters are stacked per route under VMamba's names (x_proj_weight (K, R+2N, D),
dt_projs_weight (K, D, R), dt_projs_bias (K, D), A_logs (K*D, N), Ds (K*D)), in the strategy's route order.
Layout: channel-last (B, H, W, C) in and out; one permute to channel-first and back around the depthwise
conv, none around the scan (the kernel reads channel-last rows).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..scans import ScanParams, ScanStrategy, get_scan, param_dtype
from .norms import LayerNorm
from .ssm_init import init_A_log, init_dt_bias, init_dt_weight, init_linear_weight


class SS2D(nn.Module):
    def __init__(
        self,
        dim: int,
        d_state: int = 1,
        ssm_ratio: float = 1.0,
        dt_rank: Optional[int] = None,
        d_conv: int = 3,
        conv_bias: bool = False,
        gated: bool = False,
        scan: Union[str, ScanStrategy] = "cross",
        scan_kwargs: Optional[dict] = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.d_inner = d_inner = int(ssm_ratio * dim)
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(dim / 16)
        self.gated = gated
        self.scan = get_scan(scan, **(scan_kwargs or {}))
        K = self.scan.num_routes
        route_dim = self.scan.route_dim(d_inner)
        self.in_proj = nn.Linear(dim, d_inner * (2 if gated else 1), bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=conv_bias)
        self.act = nn.SiLU()
        self.x_proj_weight = nn.Parameter(init_linear_weight((K, self.dt_rank + 2 * d_state, route_dim), route_dim))
        self.dt_projs_weight = nn.Parameter(init_dt_weight((K, route_dim, self.dt_rank), self.dt_rank))
        self.dt_projs_bias = nn.Parameter(init_dt_bias(K * route_dim).view(K, route_dim))
        self.A_logs = nn.Parameter(init_A_log(K * route_dim, d_state))
        self.Ds = nn.Parameter(torch.ones(K * route_dim))
        self.scan_module = self.scan.make_module(d_inner, d_state)
        self.out_norm = LayerNorm(d_inner, feeds_matmul=True)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def project(self, u: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-token projections of u (b, L, Ku, D) for every route: delta (b, L, K, D), B and C (b, L, K, N).
        With 1 < Ku < K, route k reads slot k // (K // Ku)."""
        K, width, D = self.x_proj_weight.shape
        b, L = u.shape[:2]
        if u.shape[2] == 1 and u.is_cuda and self.dt_rank % 8:
            return self._project_aligned(u[:, :, 0])
        if u.shape[2] == 1:
            # one GEMM for all routes (an einsum here became a badly shaped bmm: 10 ms per VMamba-T stage-1 block)
            x_dbl = F.linear(u[:, :, 0], self.x_proj_weight.reshape(K * width, D).to(u.dtype)).view(b, L, K, width)
        else:
            u = u.repeat_interleave(K // u.shape[2], dim=2) if u.shape[2] < K else u
            x_dbl = torch.einsum("blkd,kcd->blkc", u, self.x_proj_weight.to(u.dtype))
        dts, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        # per-route dt projection as K GEMMs of (b*L, R) x (R, D); the result is viewed back as (b, L, K, D)
        per_route = dts.permute(2, 0, 1, 3).reshape(K, b * L, self.dt_rank)
        delta = torch.bmm(per_route, self.dt_projs_weight.to(u.dtype).transpose(1, 2))
        return delta.view(K, b, L, self.dt_projs_weight.shape[1]).permute(1, 2, 0, 3), B, C

    def _project_aligned(self, u: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``project`` for one u slot (b, L, D) on CUDA with dt_rank zero-padded to a multiple of 8: rows of 6
        or 12 half-precision values are not 16-byte aligned and cuBLAS then picked an old wmma kernel that
        took 35% of a VMamba-T stage-1 block's forward+backward on the H100. Same values as ``project``;
        FLOP counts (tools/flops.py, on the CPU) see the unpadded GEMMs."""
        K, width, D = self.x_proj_weight.shape
        R, N = self.dt_rank, self.d_state
        R8 = -(-R // 8) * 8
        weight = self.x_proj_weight.to(u.dtype)
        rows = torch.cat([  # [K dt blocks of R8 rows | K B blocks | K C blocks]
            F.pad(weight[:, :R], (0, 0, 0, R8 - R)).reshape(K * R8, D),
            weight[:, R:R + N].reshape(K * N, D),
            weight[:, R + N:].reshape(K * N, D),
        ])
        b, L = u.shape[:2]
        x_dbl = F.linear(u.reshape(b * L, D), rows)
        B = x_dbl[:, K * R8:K * (R8 + N)].view(b, L, K, N)
        C = x_dbl[:, K * (R8 + N):].view(b, L, K, N)
        dts = x_dbl[:, :K * R8].view(b * L, K, R8).transpose(0, 1)
        dt_weight = F.pad(self.dt_projs_weight.to(u.dtype), (0, R8 - R))
        delta = torch.bmm(dts, dt_weight.transpose(1, 2))
        return delta.view(K, b, L, self.dt_projs_weight.shape[1]).permute(1, 2, 0, 3), B, C

    def scan_params(self) -> ScanParams:
        K, D = self.dt_projs_bias.shape
        dtype = param_dtype(self.A_logs.dtype)
        return ScanParams(
            A=-torch.exp(self.A_logs.to(dtype)).view(K, D, self.d_state),
            D=self.Ds.to(dtype).view(K, D),
            delta_bias=self.dt_projs_bias.to(dtype),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) -> (B, H, W, C)."""
        B, H, W, _ = x.shape
        x = self.in_proj(x)
        if self.gated:
            x, z = x.chunk(2, dim=-1)
        x = self.act(self.conv2d(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        plan = self.scan.prepare(x.reshape(B, H * W, 1, self.d_inner), H, W, module=self.scan_module)
        delta, B_, C_ = self.project(plan.tokens)
        # The scan writes in out_norm's parameter dtype: float32 under autocast (VMamba's "oflex": half-precision
        # outputs can overflow before out_norm), float64 for model.double(), bf16 for model.to(torch.bfloat16).
        y = self.scan.scan(plan, delta, B_, C_, self.scan_params(), module=self.scan_module,
                           out_dtype=self.out_norm.weight.dtype)
        y = self.out_norm(y).view(B, H, W, self.d_inner).to(x.dtype)
        if self.gated:
            y = y * F.silu(z)
        return self.dropout(self.out_proj(y))
