"""Scan strategies: a grid size (H, W) -> route tables (:class:`~vssm.kernels.Routes`) plus a merge.

A strategy is pure index arithmetic, cached per (H, W, device). Learnable parts a paper defines
(direction embeddings, route attention, fusion convolutions) are built by :meth:`make_module` and owned
by the mixer, which passes them in. The interface runs one way, the mixer calling the strategy:

    plan = strategy.prepare(u, H, W, module=module)       # the tokens to project and the routes
    delta, B, C = the mixer's projections of plan.tokens
    y = strategy.scan(plan, delta, B, C, params, z=z, module=module)

Route tables are built on the CPU on first use of a size and kept; ``torch.compile`` runs the building in
Python at trace time and sees the tables as constants (``torch.compiler.assume_constant_result``), so a fresh
model compiles with ``fullgraph=True``.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..kernels import Routes, selective_scan


@dataclass
class ScanParams:
    """The mixer's route-stacked SSM parameters: A (K, d, N) (negative), D and delta_bias (K, d), in
    :func:`param_dtype` of the mixer's parameters."""

    A: torch.Tensor
    D: Optional[torch.Tensor] = None
    delta_bias: Optional[torch.Tensor] = None


def param_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the scan takes its A, D and delta_bias in for a mixer whose parameters are ``dtype``:
    float64 for a float64 model (the reference mode), float32 otherwise (bf16/fp16 models and autocast)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass(frozen=True)
class ScanPlan:
    """What :meth:`ScanStrategy.prepare` hands the mixer and :meth:`ScanStrategy.scan` takes back.

    tokens: (b, L', Ku, d) the tokens the mixer projects to delta (b, L', K, d), B and C (b, L', K, N): u itself,
            u split per head (multihead), or u followed by tokens the strategy built (multiscale). When
            1 < Ku < K, route k reads slot k // (K // Ku).
    routes: the tables the scan runs along; H, W: the grid; middle_token: u holds one extra token (see
            :func:`with_middle_token`).
    """

    tokens: torch.Tensor
    routes: Routes
    H: int
    W: int
    middle_token: bool = False


class ScanStrategy(ABC):
    """Base class. Subclasses set ``name`` (by registering), ``merge`` and implement :meth:`build_routes`;
    strategies that are more than a set of routes also override :meth:`prepare` and/or :meth:`scan`."""

    name: str = ""
    merge: str = "sum"
    # True for strategies that build extra tokens from the H x W grid in prepare (multiscale's downsampled
    # map): they take one u slot, so a mixer with per-route convolutions convolves once, in sequence order.
    builds_tokens: bool = False
    # True for strategies whose routes depend only on the number of tokens (a 1-D sequence scan): a mixer with
    # an extra token (Vim's class token) scans it in its sequence place, as a 1 x (H*W + 1) strip, rather than
    # inserting it mid-route on the grid.
    scans_sequence: bool = False

    def __init__(self) -> None:
        self._cache: Dict[Tuple[int, int, str, bool], Routes] = {}
        self._visits: Dict[Tuple[int, int, str, bool], List[torch.Tensor]] = {}

    @property
    @abstractmethod
    def num_routes(self) -> int:
        """K: routes, and so parameter sets in families with per-route parameters."""

    @abstractmethod
    def build_routes(self, H: int, W: int) -> Routes:
        """Route tables for an H x W grid, on the CPU."""

    @torch.compiler.assume_constant_result
    def routes(self, H: int, W: int, device: Optional[torch.device] = None, middle_token: bool = False) -> Routes:
        """Cached :meth:`build_routes` on ``device``: the second call for a size allocates nothing.
        ``middle_token``: the tables over H*W + 1 tokens of :func:`with_middle_token` (Vim's class token)."""
        if H < 1 or W < 1:
            raise ValueError(f"H, W: got {H} x {W}, expected a grid of at least 1 x 1")
        device = torch.device(device) if device is not None else torch.device("cpu")
        key = (H, W, str(device), middle_token)
        cached = self._cache.get(key)
        if cached is None:
            built = self.build_routes(H, W)
            if middle_token:
                built = with_middle_token(built, H * W)
            if device.type != "cpu":  # what a compiled Triton forward reads (read from the CPU tables)
                built = built.with_schedule_facts()
            cached = _to_device(built, device)
            self._cache[key] = cached
        return cached

    @torch.compiler.assume_constant_result
    def route_visits(
        self, H: int, W: int, device: Optional[torch.device] = None, middle_token: bool = False
    ) -> List[torch.Tensor]:
        """Per route, the int64 token positions it visits in order (padding steps dropped), kept per size like
        :meth:`routes` (reading the tables is a host sync, done once). Raises if a route visits a token twice:
        per-route operations along a route's tokens (Vim's causal convolutions) need each token at most once."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        key = (H, W, str(device), middle_token)
        if key not in self._visits:
            visits = []
            for k, row in enumerate(self.routes(H, W, None, middle_token).index.numpy()):  # -1 = padding step
                visited = row[row >= 0].astype(np.int64)
                if np.unique(visited).size != visited.size:
                    raise ValueError(f"scan: {self.name!r} route {k} on {H} x {W} visits a token twice; a per-route "
                                     "operation along its tokens needs each token at most once per route")
                visits.append(torch.from_numpy(visited).to(device))
            self._visits[key] = visits
        return self._visits[key]

    def route_dim(self, dim: int) -> int:
        """Channels each route scans when the mixer has ``dim`` (multi-head scans split them)."""
        return dim

    def make_module(self, dim: int, d_state: int) -> Optional[nn.Module]:
        """Learnable parts the paper defines for this scan (owned by the mixer); None if there are none."""
        return None

    def prepare(
        self, u: torch.Tensor, H: int, W: int, *, module: Optional[nn.Module] = None, middle_token: bool = False
    ) -> ScanPlan:
        """The raster tokens u (b, H*W, Ku, d) -> the plan: tokens to project and the routes to scan.
        With ``middle_token``, u holds H*W + 1 tokens: the grid in raster order with one extra token at index
        (H*W) // 2, visited at the middle step of every route (:func:`with_middle_token`)."""
        return ScanPlan(u, self.routes(H, W, u.device, middle_token), H, W, middle_token)

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
        """Scan ``plan.tokens`` with the mixer's delta (b, L', K, d), B, C (b, L', K, N) along the plan's routes;
        z (b, H*W [+ 1], Ku, d) gates. Returns (b, H*W [+ 1], d) in ``out_dtype`` (default the tokens' dtype)."""
        return selective_scan(
            plan.tokens, delta, params.A, B, C, params.D, params.delta_bias, z,
            routes=plan.routes, delta_softplus=delta_softplus, merge=self.merge, out_dtype=out_dtype,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, K={self.num_routes})"


def _to_device(routes: Routes, device: torch.device) -> Routes:
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return dataclasses.replace(
        routes, index=move(routes.index), param_index=move(routes.param_index), u_group=move(routes.u_group),
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
        values = table.numpy()
        if tokens:  # padding (-1) stays below c
            values = np.where(values >= c, values + 1, values)
        return torch.from_numpy(np.insert(values, values.shape[1] // 2, value, axis=1).astype(values.dtype))

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


def table(values: np.ndarray) -> torch.Tensor:
    """A route table computed in numpy -> int32 tensor. Tables are built in numpy: it is single-threaded, where
    torch's intra-op threads made these small index ops up to 100x slower on a busy 2-core machine."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.int32))


def raster_grid(H: int, W: int) -> np.ndarray:
    """(H, W) int64 grid of raster token indices h * W + w."""
    return np.arange(H * W).reshape(H, W)


def scattered(position: np.ndarray, token: np.ndarray) -> np.ndarray:
    """The order that puts ``token`` (any shape) at ``position`` (same shape, a permutation of its size), flat."""
    order = np.empty(position.size, dtype=np.int64)
    order[position.reshape(-1)] = np.broadcast_to(token, position.shape).reshape(-1)
    return order


# Direction ids of the move that arrived at a step (PlainMamba's direction-aware B table rows).
START, RIGHT, LEFT, UP, DOWN = 0, 1, 2, 3, 4


def step_directions(index: Union[np.ndarray, torch.Tensor], W: int) -> torch.Tensor:
    """int64 (K, T) direction id of the move into each step of ``index`` (K, T) on a grid of width W.

    The first visited step of a route is START; padding steps (-1) get -1; a move that is not a single
    4-neighbour step (e.g. a jump between windows) counts as START, since no direction arrived at it.
    """
    index = np.asarray(index, dtype=np.int64)
    directions = np.full(index.shape, -1, dtype=np.int64)
    for k, row in enumerate(index):
        steps = np.flatnonzero(row >= 0)
        if steps.size == 0:
            continue
        h, w = np.divmod(row[steps], W)
        dh, dw = np.diff(h), np.diff(w)
        moves = np.select([(dh == 0) & (dw == 1), (dh == 0) & (dw == -1), (dh == -1) & (dw == 0), (dh == 1) & (dw == 0)],
                          [RIGHT, LEFT, UP, DOWN], START)
        directions[k, steps] = np.concatenate([[START], moves])
    return torch.from_numpy(directions)


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


def require_single_u_slot(name: str, u: Optional[torch.Tensor], z: Optional[torch.Tensor] = None) -> None:
    """Strategies with hooks read one shared u (and z) slot."""
    if u is not None and u.shape[2] != 1:
        raise ValueError(f"u: got shape {tuple(u.shape)}, the {name!r} scan expects one u slot (b, L, 1, d)")
    if z is not None and z.shape[2] != 1:
        raise ValueError(f"z: got shape {tuple(z.shape)}, the {name!r} scan expects one z slot (b, L, 1, d)")
