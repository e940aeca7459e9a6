"""LocalMamba window scans: w x w windows visited in raster order, tokens in raster order inside each window.

K = 4 routes: window-raster, window-column (windows and tokens column-major), and the reverse of each;
merge = sum. A grid not divisible by w is padded at the bottom/right to multiples of w and the padded cells
become padding steps (-1): the state skips them and no token is ever read twice or wrongly.
"""
from __future__ import annotations

import torch

from ..kernels import Routes
from .base import ScanStrategy
from .registry import register_scan


def window_order(H: int, W: int, size: int, column: bool = False) -> torch.Tensor:
    """(Hp*Wp,) int32 raster indices of the padded grid's cells in window order; -1 for padding cells."""
    Hp, Wp = -(-H // size) * size, -(-W // size) * size
    i = torch.arange(Hp)[:, None].expand(Hp, Wp)
    j = torch.arange(Wp)[None, :].expand(Hp, Wp)
    if column:
        position = ((Hp // size) * (j // size) + i // size) * size * size + (j % size) * size + (i % size)
    else:
        position = ((Wp // size) * (i // size) + j // size) * size * size + (i % size) * size + (j % size)
    token = torch.where((i < H) & (j < W), i * W + j, torch.full_like(i, -1))
    order = torch.empty(Hp * Wp, dtype=torch.int32)
    order[position.reshape(-1)] = token.reshape(-1).int()
    return order


@register_scan("window")
class WindowScan(ScanStrategy):
    merge = "sum"

    def __init__(self, size: int = 7) -> None:
        super().__init__()
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size: got {size!r}, expected a window size >= 1")
        self.size = size

    @property
    def num_routes(self) -> int:
        return 4

    def build_routes(self, H: int, W: int) -> Routes:
        rows, cols = window_order(H, W, self.size), window_order(H, W, self.size, column=True)
        return Routes(index=torch.stack([rows, cols, rows.flip(0), cols.flip(0)]))
