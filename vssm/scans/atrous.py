"""Atrous (dilated, skip-sampled) scans.

``atrous``: EfficientVMamba's ES2D generalised to any rate r. The grid is split into r*r phases (cells with
h = a mod r, w = b mod r); each phase is one route over its sub-grid, row-major for even route numbers and
column-major for odd ones, routes ordered with the row phase varying fastest (r = 2: (even, even),
(odd, even), (even, odd), (odd, odd)). K = r*r; every token is visited by exactly one route, so the merge is a
scatter (sum). Routes shorter than the longest one are padded with -1.

``atrous_window``: AtrousMamba-style dilated windows (its paper gives no code; this is our definition). The
grid is padded to multiples of w*r and cut into (w*r) x (w*r) blocks, visited in raster order; each block holds
r*r dilated windows (w x w cells spaced r apart), visited phase by phase, cells in raster order. K = 2: that
route and its reverse; merge = sum. Padded cells are padding steps. Rates per stage: hierarchical models
take one ``scan_kwargs`` dict per stage, e.g. ``scan_kwargs=[dict(rate=1), dict(rate=2), ...]``.
"""
from __future__ import annotations

import numpy as np

from ..kernels import Routes
from .base import ScanStrategy, raster_grid, scattered, table
from .registry import register_scan


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: got {value!r}, expected an int >= 1")


def phase_routes(H: int, W: int, rate: int) -> np.ndarray:
    """(rate*rate, T) phase routes, padded with -1 to the longest phase."""
    grid = raster_grid(H, W)
    routes = []
    for b in range(rate):
        for a in range(rate):
            sub = grid[a::rate, b::rate]
            routes.append((sub if len(routes) % 2 == 0 else sub.T).reshape(-1))
    T = max(r.size for r in routes)
    return np.stack([np.pad(r, (0, T - r.size), constant_values=-1) for r in routes])


def dilated_window_order(H: int, W: int, window: int, rate: int) -> np.ndarray:
    """(Hp*Wp,) raster indices in dilated-window order; -1 for padding cells."""
    block = window * rate
    Hp, Wp = -(-H // block) * block, -(-W // block) * block
    i, j = np.arange(Hp)[:, None], np.arange(Wp)[None, :]
    block_id = (i // block) * (Wp // block) + j // block
    phase = (i % rate) * rate + (j % rate)
    inside = ((i % block) // rate) * window + (j % block) // rate
    position = (block_id * rate * rate + phase) * window * window + inside
    return scattered(position, np.where((i < H) & (j < W), i * W + j, -1))


@register_scan("atrous")
class AtrousScan(ScanStrategy):
    merge = "sum"

    def __init__(self, rate: int = 2) -> None:
        super().__init__()
        _check_positive("rate", rate)
        self.rate = rate

    @property
    def num_routes(self) -> int:
        return self.rate * self.rate

    def build_routes(self, H: int, W: int) -> Routes:
        return Routes(index=table(phase_routes(H, W, self.rate)))


@register_scan("atrous_window")
class AtrousWindowScan(ScanStrategy):
    merge = "sum"

    def __init__(self, window: int = 4, rate: int = 2) -> None:
        super().__init__()
        _check_positive("window", window)
        _check_positive("rate", rate)
        self.window, self.rate = window, rate

    @property
    def num_routes(self) -> int:
        return 2

    def build_routes(self, H: int, W: int) -> Routes:
        order = dilated_window_order(H, W, self.window, self.rate)
        return Routes(index=table(np.stack([order, order[::-1]])))
