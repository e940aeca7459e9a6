"""Scan strategies: a grid size (H, W) -> route tables (:class:`~vssm.kernels.Routes`) plus a merge.

A strategy is pure index arithmetic, cached per (H, W, device). Learnable parts a paper defines
(direction embeddings, route attention, fusion convolutions) are built by :meth:`make_module` and owned
by the mixer, which passes them back to :meth:`forward`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from ..kernels import Routes, selective_scan

# project(u) -> (delta (b, L', K, d), B (b, L', K, N), C (b, L', K, N)): the mixer's per-token projections.
Projector = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass
class ScanParams:
    """The mixer's route-stacked SSM parameters: A (K, d, N) float32 (negative), D and delta_bias (K, d)."""

    A: torch.Tensor
    D: Optional[torch.Tensor] = None
    delta_bias: Optional[torch.Tensor] = None


class ScanStrategy(ABC):
    """Base class. Subclasses set ``name`` (by registering), ``merge`` and implement :meth:`build_routes`."""

    name: str = ""
    merge: str = "sum"
    # True for strategies that build extra tokens from the H x W grid inside forward (multiscale's downsampled
    # map): they take one u slot, so a mixer with per-route convolutions convolves once, in sequence order.
    builds_tokens: bool = False

    def __init__(self) -> None:
        self._cache: Dict[Tuple[int, int, str, bool], Routes] = {}

    @property
    @abstractmethod
    def num_routes(self) -> int:
        """K: routes, and so parameter sets in families with per-route parameters."""

    @abstractmethod
    def build_routes(self, H: int, W: int) -> Routes:
        """Route tables for an H x W grid, on the CPU."""

    def routes(self, H: int, W: int, device: Optional[torch.device] = None, middle_token: bool = False) -> Routes:
        """Cached :meth:`build_routes` on ``device``: the second call for a size allocates nothing.
        ``middle_token``: the tables over H*W + 1 tokens of :func:`with_middle_token` (Vim's class token)."""
        if H < 1 or W < 1:
            raise ValueError(f"H, W: got {H} x {W}, expected a grid of at least 1 x 1")
        device = torch.device(device) if device is not None else torch.device("cpu")
        key = (H, W, str(device), middle_token)
        cached = self._cache.get(key)
        if cached is None:
            # Small integer arithmetic: one thread is fastest, and immune to OpenMP oversubscription
            # (on a busy 2-core machine multi-threaded index ops ran 100x slower).
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                built = self.build_routes(H, W)
                if middle_token:
                    built = with_middle_token(built, H * W)
            finally:
                torch.set_num_threads(threads)
            cached = _to_device(built, device)
            self._cache[key] = cached
        return cached

    def route_dim(self, dim: int) -> int:
        """Channels each route scans when the mixer has ``dim`` (multi-head scans split them)."""
        return dim

    def make_module(self, dim: int, d_state: int) -> Optional[nn.Module]:
        """Learnable parts the paper defines for this scan (owned by the mixer); None if there are none."""
        return None

    def forward(
        self,
        u: torch.Tensor,
        project: Projector,
        params: ScanParams,
        H: int,
        W: int,
        *,
        z: Optional[torch.Tensor] = None,
        module: Optional[nn.Module] = None,
        delta_softplus: bool = True,
        out_dtype: Optional[torch.dtype] = None,
        middle_token: bool = False,
    ) -> torch.Tensor:
        """Scan the raster tokens u (b, H*W, Ku, d) along this strategy's routes; returns (b, H*W, d).
        With ``middle_token``, u holds H*W + 1 tokens: the grid in raster order with one extra token at index
        (H*W) // 2, visited at the middle step of every route (:func:`with_middle_token`).

        ``project`` receives u with Ku slots; when 1 < Ku < K, route k reads slot k // (K // Ku).

        Subclasses that are more than a set of routes (multi-scale, state fusion, route attention)
        override this and keep the same signature.
        """
        delta, B, C = project(u)
        return selective_scan(
            u, delta, params.A, B, C, params.D, params.delta_bias, z,
            routes=self.routes(H, W, u.device, middle_token), delta_softplus=delta_softplus, merge=self.merge,
            out_dtype=out_dtype,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, K={self.num_routes})"


def _to_device(routes: Routes, device: torch.device) -> Routes:
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return Routes(
        index=move(routes.index), param_index=move(routes.param_index), u_group=move(routes.u_group),
        direction=move(routes.direction),
    )


def with_middle_token(routes: Routes, M: int) -> Routes:
    """Routes over a grid of M tokens -> routes over M + 1 tokens, the extra one at index c = M // 2 (Vim's middle
    class token; grid token p moves to p + 1 when p >= c). Each route visits it once, at step T // 2 of its T + 1
    steps; a direction table gets START there (the class token is not a move on the grid)."""
    c = M // 2

    def inserted(table: Optional[torch.Tensor], value: int, tokens: bool = True) -> Optional[torch.Tensor]:
        if table is None:
            return None
        if tokens:  # padding (-1) stays below c
            table = torch.where(table >= c, table + 1, table)
        m = table.shape[1] // 2
        return torch.cat([table[:, :m], table.new_full((table.shape[0], 1), value), table[:, m:]], dim=1)

    return Routes(
        index=inserted(routes.index, c), param_index=inserted(routes.param_index, c), u_group=routes.u_group,
        direction=inserted(routes.direction, START, tokens=False),
    )


def split_middle_token(x: torch.Tensor, H: int, W: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """x (b, H*W + 1, ...) in :func:`with_middle_token` order -> the grid tokens (b, H*W, ...) in raster order
    and the extra token (b, 1, ...)."""
    c = (H * W) // 2
    return torch.cat([x[:, :c], x[:, c + 1:]], dim=1), x[:, c:c + 1]


def join_middle_token(grid: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_middle_token`: grid (b, H*W, ...) and token (b, 1, ...) -> (b, H*W + 1, ...)."""
    c = grid.shape[1] // 2
    return torch.cat([grid[:, :c], token, grid[:, c:]], dim=1)


def raster_grid(H: int, W: int) -> torch.Tensor:
    """(H, W) int32 grid of raster token indices h * W + w."""
    return torch.arange(H * W, dtype=torch.int32).view(H, W)


# Direction ids of the move that arrived at a step (PlainMamba's direction-aware B table rows).
START, RIGHT, LEFT, UP, DOWN = 0, 1, 2, 3, 4


def step_directions(index: torch.Tensor, W: int) -> torch.Tensor:
    """int64 (K, T) direction id of the move into each step of ``index`` (K, T) on a grid of width W.

    The first visited step of a route is START; padding steps (-1) get -1; a move that is not a single
    4-neighbour step (e.g. a jump between windows) counts as START, since no direction arrived at it.
    """
    K, T = index.shape
    directions = torch.full((K, T), -1, dtype=torch.long)
    for k in range(K):
        steps = torch.nonzero(index[k] >= 0).flatten()
        if steps.numel() == 0:
            continue
        tokens = index[k, steps].long()
        h, w = tokens // W, tokens % W
        dh, dw = h[1:] - h[:-1], w[1:] - w[:-1]
        moves = torch.full_like(dh, START)
        moves[(dh == 0) & (dw == 1)] = RIGHT
        moves[(dh == 0) & (dw == -1)] = LEFT
        moves[(dh == -1) & (dw == 0)] = UP
        moves[(dh == 1) & (dw == 0)] = DOWN
        directions[k, steps] = torch.cat([moves.new_full((1,), START), moves])
    return directions


def scan_tokens(x: torch.Tensor, routes: Routes) -> torch.Tensor:
    """Gather raster tokens into route order: x (b, L, d) -> (b, K, T, d); padding steps give 0."""
    index = routes.index.long()
    out = x[:, index.clamp(min=0)]
    return out * (index >= 0)[None, :, :, None].to(x.dtype)


def merge_tokens(y: torch.Tensor, routes: Routes, length: int) -> torch.Tensor:
    """Adjoint of :func:`scan_tokens`: y (b, K, T, d) -> (b, L, d), each token summing every step that
    visited it (padding steps are dropped)."""
    index = routes.index.long().reshape(-1)
    keep = index >= 0
    values = y.reshape(y.shape[0], -1, y.shape[-1])[:, keep]
    return y.new_zeros(y.shape[0], length, y.shape[-1]).index_add_(1, index[keep], values)


def require_single_u_slot(name: str, u: torch.Tensor, z: Optional[torch.Tensor]) -> None:
    """Strategies with hooks read one shared u (and z) slot."""
    if u.shape[2] != 1:
        raise ValueError(f"u: got shape {tuple(u.shape)}, the {name!r} scan expects one u slot (b, L, 1, d)")
    if z is not None and z.shape[2] != 1:
        raise ValueError(f"z: got shape {tuple(z.shape)}, the {name!r} scan expects one z slot (b, L, 1, d)")
