"""MHS-VM multi-head scan: channels split into heads, each head scanned along its own pattern.

Patterns (each run as route A, reverse(A), route B, reverse(B)):
  C (continuous): row snake / column snake;  X (diagonal): anti-diagonals i + j in order, direction
  alternating per diagonal / the same reflected left-right;  S (spiral): clockwise spiral from the top-left
  inward / the same reflected top-bottom;  Z: raster / column-major.
Default heads: ("C", "X", "S", "Z"); 3 heads use ("C", "X", "S"). K = 4 * heads routes; route k reads
head k // 4 (``Routes.u_group``). Merge per head = MHS-VM's scan-route attention: sum over the head's 4 routes
times ReLU(CV - t), CV = std over routes / (mean over routes of (y - min over routes) + 1e-5), t a learned
scalar per head (init 0); heads are concatenated.

Mixers size their per-route projections with :meth:`route_dim` (dim / heads channels per route, no channel
expansion) and the plan's tokens have one slot per head: (b, L, heads, dim / heads).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..kernels import Routes, selective_scan
from .base import (ScanParams, ScanPlan, ScanStrategy, param_dtype, raster_grid, require_single_u_slot, scattered,
                   table)
from .registry import register_scan
from .zigzag import column_snake, row_snake

PATTERNS = ("C", "X", "S", "Z")


def diagonal_order(H: int, W: int) -> np.ndarray:
    """Anti-diagonals k = i + j in order, alternating direction per diagonal."""
    i, j = np.divmod(np.arange(H * W), W)
    diag = i + j
    along = np.where(diag % 2 == 0, i, -i)  # even diagonals top-down
    return np.argsort(diag * (2 * H + 1) + along + H, kind="stable")


def spiral_order(H: int, W: int) -> np.ndarray:
    """Clockwise spiral from the top-left corner inward (closed form: ring, then position on the ring)."""
    i, j = np.divmod(np.arange(H * W), W)
    ring = np.minimum(np.minimum(i, j), np.minimum(H - 1 - i, W - 1 - j))
    h, w = H - 2 * ring, W - 2 * ring  # size of each cell's ring
    before = ring * (2 * H + 2 * W - 4) - 4 * ring * (ring - 1)  # cells on the outer rings
    top, right = i == ring, j == ring + w - 1
    bottom = i == ring + h - 1
    along = np.where(
        top, j - ring,
        np.where(right, w - 1 + i - ring,
                 np.where(bottom, 2 * (w - 1) + h - 1 - (j - ring),
                          2 * (w - 1) + 2 * (h - 1) - (i - ring))),
    )
    return scattered(before + along, np.arange(H * W))  # before + along: each cell's step on the spiral


def pattern_routes(pattern: str, H: int, W: int) -> np.ndarray:
    """(4, H*W): [A, reverse(A), B, reverse(B)] of one pattern."""
    grid = raster_grid(H, W)
    if pattern == "C":
        a, b = row_snake(H, W), column_snake(H, W)
    elif pattern == "X":
        a = diagonal_order(H, W)
        b = grid[:, ::-1].reshape(-1)[a]  # reflect w -> W-1-w
    elif pattern == "S":
        a = spiral_order(H, W)
        b = grid[::-1].reshape(-1)[a]  # reflect h -> H-1-h
    else:
        a, b = grid.reshape(-1), grid.T.reshape(-1)
    return np.stack([a, a[::-1], b, b[::-1]])


class RouteAttention(nn.Module):
    """MHS-VM's gate over a head's routes: y (b, L, heads, 4, d) -> (b, L, heads * d)."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.threshold = nn.Parameter(torch.zeros(heads))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        spread = y.std(dim=3, unbiased=False)
        level = (y - y.amin(dim=3, keepdim=True)).mean(dim=3) + 1e-5
        gate = torch.relu(spread / level - self.threshold[:, None].to(y.dtype))
        out = y.sum(dim=3) * gate
        return out.flatten(2)


@register_scan("multihead")
class MultiHeadScan(ScanStrategy):
    merge = "none"

    def __init__(self, patterns: Sequence[str] = PATTERNS) -> None:
        super().__init__()
        patterns = tuple(patterns)
        bad = [p for p in patterns if p not in PATTERNS]
        if not patterns or bad:
            raise ValueError(f"patterns: got {patterns!r}, expected a non-empty sequence of {PATTERNS}")
        self.patterns = patterns
        self._per_route: Dict[Tuple[int, int, str, bool], Routes] = {}

    @property
    def heads(self) -> int:
        return len(self.patterns)

    @property
    def num_routes(self) -> int:
        return 4 * self.heads

    def route_dim(self, dim: int) -> int:
        """Channels per route: dim / heads."""
        if dim % self.heads:
            raise ValueError(f"dim: got {dim}, expected a multiple of the {self.heads} heads")
        return dim // self.heads

    def build_routes(self, H: int, W: int) -> Routes:
        index = np.concatenate([pattern_routes(p, H, W) for p in self.patterns])
        return Routes(index=table(index), u_group=table(np.repeat(np.arange(self.heads), 4)))

    def make_module(self, dim: int, d_state: int) -> Optional[nn.Module]:
        return RouteAttention(self.heads)

    @torch.compiler.assume_constant_result
    def per_route_routes(self, H: int, W: int, device: torch.device, middle_token: bool = False) -> Routes:
        """The same tables with route k reading u slot k (inputs already split per route), kept per size."""
        key = (H, W, str(device), middle_token)
        if key not in self._per_route:
            self._per_route[key] = Routes(index=self.routes(H, W, device, middle_token).index)
        return self._per_route[key]

    def prepare(
        self, u: torch.Tensor, H: int, W: int, *, module: Optional[nn.Module] = None, middle_token: bool = False
    ) -> ScanPlan:
        """u (b, L, 1, heads * d): one input, each head's routes scan its d channels (tokens (b, L, heads, d)); or
        u (b, L, K, d): one input per route already (Vim's per-route convolutions), route k reading slot k."""
        b, L, slots, dim = u.shape
        if slots == self.num_routes:
            return ScanPlan(u, self.per_route_routes(H, W, u.device, middle_token), H, W, middle_token)
        require_single_u_slot(self.name, u)
        tokens = u.reshape(b, L, self.heads, self.route_dim(dim))
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
        """Per-route outputs combined by the route attention ``module``, then gated by z (b, L, 1, heads * d).
        Computed in float32 (float64 for float64 tokens): the attention's spread / level ratio of near-equal route
        outputs is lost in bf16 rounding."""
        require_single_u_slot(self.name, None, z)
        tokens = plan.tokens
        b, L = tokens.shape[:2]
        work = param_dtype(tokens.dtype)
        y = selective_scan(
            tokens, delta, params.A, B, C, params.D, params.delta_bias,
            routes=plan.routes, delta_softplus=delta_softplus, merge="none", out_dtype=work,
        )
        y = module(y.view(b, L, self.heads, 4, -1))
        if z is not None:
            y = y * torch.nn.functional.silu(z[:, :, 0].to(work))
        return y.to(out_dtype or tokens.dtype)
