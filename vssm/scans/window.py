"""LocalMamba window scans: w x w windows visited in raster order, tokens in raster order inside each window.

K = 4 routes: window-raster, window-column (windows and tokens column-major), and the reverse of each;
merge = sum. A grid not divisible by w is padded at the bottom/right to multiples of w and the padded cells
become padding steps (-1): the state skips them and no token is ever read twice or wrongly.
"""
from __future__ import annotations

import numpy as np

from ..kernels import Routes
from .base import ScanStrategy, scattered, table
from .registry import register_scan


def window_order(H: int, W: int, size: int, column: bool = False) -> np.ndarray:
    """(Hp*Wp,) raster indices of the padded grid's cells in window order; -1 for padding cells."""
    Hp, Wp = -(-H // size) * size, -(-W // size) * size
    i, j = np.arange(Hp)[:, None], np.arange(Wp)[None, :]
    if column:
        position = ((Hp // size) * (j // size) + i // size) * size * size + (j % size) * size + (i % size)
    else:
        position = ((Wp // size) * (i // size) + j // size) * size * size + (i % size) * size + (j % size)
    return scattered(position, np.where((i < H) & (j < W), i * W + j, -1))


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
        return Routes(index=table(np.stack([rows, cols, rows[::-1], cols[::-1]])))
