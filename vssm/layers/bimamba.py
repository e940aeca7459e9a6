"""Vim's bidirectional Mamba mixer, generalised to the K routes of any scan strategy.

in_proj -> x, z (shared) -> per route k: causal depthwise Conv1d (k=4) *along route k* -> SiLU -> x_proj,
dt_proj -> selective scan along route k with its own A, D -> * silu(z) -> merge (Vim: mean of the 2 routes)
-> out_proj. With the default ``bidirectional`` scan, route 1 is the reversed sequence, so its conv is
anti-causal in sequence order and this is exactly Vim's "bimamba v2" (flipped x and z, outputs halved).

Routes. ``bidirectional`` scans the token sequence itself (a 1 x L strip): the forward and the exactly reversed
sequence, class token included, as the official model does. Every other strategy scans the patch grid (H x W)
with its own 2-D routes, and the class token (sequence index M // 2 of the M + 1 tokens) is visited once by every
route, at its middle step (``ScanStrategy.routes(..., middle_token=True)``); ``spatial_fusion`` fuses the patch
states on the grid and reads the class token's state as scanned. With ``multihead`` each route convolves, projects and
scans its head's d_inner / heads channels (parameters sized per route accordingly) and the heads are combined by
the route attention. ``multiscale`` builds its low-resolution tokens from the grid inside the scan, so its
input is convolved once, along the token sequence (one conv parameter set, like VMamba's shared conv before its
multi-scale scan); its downsampling convolution mixes the low-resolution branch and both of its routes visit the
class token. The per-route convolution runs along the tokens each route visits (padding steps skipped); a route
that visits a token twice raises.

Parameters are stacked per route (r = D, or D / heads with multihead; Kc = K conv sets, 1 for ``multiscale``):
conv_weight (Kc*r, 1, k), conv_bias (Kc*r),
x_proj_weight (K, R+2N, r), dt_proj_weight (K, r, R), dt_proj_bias (K, r), A_log (K, r, N), D (K, r); route 0 = Vim's forward branch,
route 1 = its backward branch (``*_b`` in official checkpoints).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..scans import ScanParams, ScanStrategy, get_scan, param_dtype
from .ssm_init import init_A_log, init_dt_bias, init_dt_weight, init_linear_weight


class BiMambaMixer(nn.Module):
    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        expand: int = 2,
        dt_rank: Optional[int] = None,
        d_conv: int = 4,
        scan: Union[str, ScanStrategy] = "bidirectional",
        scan_kwargs: Optional[dict] = None,
    ) -> None:
        super().__init__()
        self.d_inner = d_inner = expand * dim
        self.d_state = d_state
        self.d_conv = d_conv
        self.dt_rank = dt_rank or math.ceil(dim / 16)
        self.scan = get_scan(scan, **(scan_kwargs or {}))
        K = self.scan.num_routes
        Kc = 1 if self.scan.builds_tokens else K
        self.route_dim = r = self.scan.route_dim(d_inner)  # d_inner, or one head's channels (multihead)
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        self.conv_weight = nn.Parameter(init_linear_weight((Kc * r, 1, d_conv), d_conv))
        self.conv_bias = nn.Parameter(init_linear_weight((Kc * r,), d_conv))
        self.x_proj_weight = nn.Parameter(init_linear_weight((K, self.dt_rank + 2 * d_state, r), r))
        self.dt_proj_weight = nn.Parameter(init_dt_weight((K, r, self.dt_rank), self.dt_rank))
        self.dt_proj_bias = nn.Parameter(init_dt_bias(K * r).view(K, r))
        self.A_log = nn.Parameter(init_A_log(K * r, d_state).view(K, r, d_state))
        self.D = nn.Parameter(torch.ones(K, r))
        self.scan_module = self.scan.make_module(d_inner, d_state)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def _scan_grid(self, grid: Tuple[int, int]) -> Tuple[Tuple[int, int], bool]:
        """The grid and middle-token flag the strategy scans for a patch grid (H, W): the 1 x (M+1) sequence for a
        strategy that ``scans_sequence`` (``bidirectional``), else the grid with the class token visited mid-route."""
        H, W = grid
        if self.scan.scans_sequence:
            return (1, H * W + 1), False
        return (H, W), True

    def _route_conv(self, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """x (b, L, D) -> u (b, L, Kc, r): SiLU(causal depthwise conv along each route over its r channels: all D,
        or its head's D / heads with multihead), at sequence positions (Kc = 1 for ``multiscale``: in sequence order).

        The conv runs over the tokens a route visits, in its order (padding steps skipped); tokens a route
        never visits are never read by it and stay 0 in its slot.
        """
        b, L, _ = x.shape
        if self.scan.builds_tokens:  # one conv along the token sequence
            visits = [torch.arange(L, device=x.device)]
        else:
            (H, W), middle = self._scan_grid(grid)
            visits = self.scan.route_visits(H, W, x.device, middle)
        K, r = len(visits), self.route_dim
        per_head = K * r // self.d_inner  # routes per channel group (all K when routes scan every channel)
        weight, bias = self.conv_weight.to(x.dtype).view(K, r, 1, -1), self.conv_bias.to(x.dtype).view(K, r)
        u = x.new_zeros(b, L, K, r)
        for k, visited in enumerate(visits):
            if visited.numel() == 0:
                continue
            channels = x[:, visited, (k // per_head) * r:(k // per_head + 1) * r]
            seq = F.pad(channels.transpose(1, 2), (self.d_conv - 1, 0))  # (b, r, T_k + d_conv - 1)
            u[:, visited, k] = F.silu(F.conv1d(seq, weight[k], bias[k], groups=r)).transpose(1, 2)
        return u

    def project(self, u: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """u (b, L, K or 1, D) -> delta (b, L, K, D), B and C (b, L, K, N): each route's own x_proj, dt_proj
        (one u slot is read by every route)."""
        equation = "bld,kcd->blkc" if u.shape[2] == 1 else "blkd,kcd->blkc"
        x_dbl = torch.einsum(equation, u[:, :, 0] if u.shape[2] == 1 else u, self.x_proj_weight.to(u.dtype))
        dts, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        return torch.einsum("blkr,kdr->blkd", dts, self.dt_proj_weight.to(u.dtype)), B, C

    def forward(self, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """x (b, L, C) tokens of a (H, W) = ``grid`` patch grid with the class token at (L - 1) // 2 -> (b, L, C)."""
        b, L, _ = x.shape
        if L != grid[0] * grid[1] + 1:
            raise ValueError(f"x: got {L} tokens, expected H * W + 1 = {grid[0] * grid[1] + 1} for grid {grid}")
        x, z = self.in_proj(x).chunk(2, dim=-1)
        u = self._route_conv(x, grid)
        Ku = u.shape[2]
        dtype = param_dtype(self.A_log.dtype)
        params = ScanParams(A=-torch.exp(self.A_log.to(dtype)), D=self.D.to(dtype), delta_bias=self.dt_proj_bias.to(dtype))
        (H, W), middle = self._scan_grid(grid)
        # routes that scan every channel gate in the kernel (z per route); channel groups (multihead) and a single
        # u slot (multiscale) gate the merged output
        per_route = self.route_dim == self.d_inner and Ku > 1
        z = z[:, :, None].expand(b, L, Ku, self.d_inner) if per_route else z[:, :, None]
        plan = self.scan.prepare(u, H, W, module=self.scan_module, middle_token=middle)
        delta, B, C = self.project(plan.tokens)
        y = self.scan.scan(plan, delta, B, C, params, z=z, module=self.scan_module)
        return self.out_proj(y)
