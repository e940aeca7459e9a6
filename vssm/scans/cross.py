"""VMamba cross scan (SS2D): raster, column-major, reversed raster, reversed column-major; merge = sum.

The order is the one official checkpoints stack their per-route parameters in.
"""
from __future__ import annotations

import numpy as np

from ..kernels import Routes
from .base import ScanStrategy, raster_grid, table
from .registry import register_scan


@register_scan("cross")
class CrossScan(ScanStrategy):
    merge = "sum"

    @property
    def num_routes(self) -> int:
        return 4

    def build_routes(self, H: int, W: int) -> Routes:
        grid = raster_grid(H, W)
        raster, column = grid.reshape(-1), grid.T.reshape(-1)
        return Routes(index=table(np.stack([raster, column, raster[::-1], column[::-1]])))
