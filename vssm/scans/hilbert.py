"""Hilbert-curve scans for any H x W.

``hilbert``: the generalized Hilbert ("gilbert") curve, which fills any rectangle with a continuous path:
recursively halve the long side (when it is more than 1.5x the short one) or split into the classic
three-part U (down half, across, back up), nudging odd splits to even lengths so sub-curves connect. K = 4
routes: the curve (major axis along the longer side), its reverse, the curve of the transposed grid, its
reverse; merge = sum. The curve runs from (0, 0) to the far corner of its major axis. Consecutive steps are
4-neighbours except at most one diagonal step, exactly where checkerboard parity forces it: a 4-neighbour step
changes the cell colour, so when H*W - 1 steps cannot end on the end corner's colour (longer side odd, shorter
even, e.g. 4x5 or 97x14) one step must be diagonal (tests count it).

``hilbert_quadtree``: OccMamba's order, which is not a Hilbert curve: recursive quadrants of the enclosing
power-of-two square visited in the same U order (top-left, bottom-left, bottom-right, top-right) at every
level, without rotation; cells outside the grid are skipped, so it jumps between quadrants. Same 4 routes.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..kernels import Routes
from .base import ScanStrategy, table
from .registry import register_scan


def _sign(v: int) -> int:
    return (v > 0) - (v < 0)


@lru_cache(maxsize=None)
def _gilbert_block(ax: int, ay: int, bx: int, by: int) -> np.ndarray:
    """(w*h, 2) int64 (x, y) offsets of the curve filling the parallelogram spanned by major axis (ax, ay)
    and minor axis (bx, by), starting at the origin. Sub-blocks are cached: every level reuses a few shapes."""
    w, h = abs(ax + ay), abs(bx + by)
    dax, day, dbx, dby = _sign(ax), _sign(ay), _sign(bx), _sign(by)
    if h == 1:
        steps = np.arange(w)
        return np.stack([steps * dax, steps * day], axis=1)
    if w == 1:
        steps = np.arange(h)
        return np.stack([steps * dbx, steps * dby], axis=1)
    ax2, ay2, bx2, by2 = ax // 2, ay // 2, bx // 2, by // 2
    w2, h2 = abs(ax2 + ay2), abs(bx2 + by2)
    if 2 * w > 3 * h:
        if w2 % 2 and w > 2:  # keep the halves of even length so they join
            ax2, ay2 = ax2 + dax, ay2 + day
        first = _gilbert_block(ax2, ay2, bx, by)
        second = _gilbert_block(ax - ax2, ay - ay2, bx, by) + (ax2, ay2)
        return np.concatenate([first, second])
    if h2 % 2 and h > 2:
        bx2, by2 = bx2 + dbx, by2 + dby
    first = _gilbert_block(bx2, by2, ax2, ay2)
    second = _gilbert_block(ax, ay, bx - bx2, by - by2) + (bx2, by2)
    third = _gilbert_block(-bx2, -by2, -(ax - ax2), -(ay - ay2)) + (ax - dax + bx2 - dbx, ay - day + by2 - dby)
    return np.concatenate([first, second, third])


def gilbert_order(H: int, W: int) -> np.ndarray:
    """(H*W,) raster indices along the generalized Hilbert curve, major axis along the longer side."""
    cells = _gilbert_block(W, 0, 0, H) if W >= H else _gilbert_block(0, H, W, 0)
    return cells[:, 1] * W + cells[:, 0]


def quadtree_order(H: int, W: int) -> np.ndarray:
    """(H*W,) raster indices in OccMamba's non-rotating U-quadrant order."""
    rows, cols = np.divmod(np.arange(H * W), W)
    key = np.zeros(H * W, dtype=np.int64)
    levels = max(1, int(np.ceil(np.log2(max(H, W)))))
    u_digit = np.array([[0, 3], [1, 2]])  # (row bit, col bit) -> position in the U
    for level in range(levels - 1, -1, -1):
        key = key * 4 + u_digit[(rows >> level) & 1, (cols >> level) & 1]
    return np.argsort(key, kind="stable")


def _four_routes(order: np.ndarray, transposed: np.ndarray, W: int, H: int) -> torch.Tensor:
    """int32 [order, reversed, transposed order mapped back to this grid, reversed]."""
    t_rows, t_cols = np.divmod(transposed, H)  # transposed grid is W rows x H cols
    back = t_cols * W + t_rows
    return table(np.stack([order, order[::-1], back, back[::-1]]))


@register_scan("hilbert")
class HilbertScan(ScanStrategy):
    merge = "sum"

    @property
    def num_routes(self) -> int:
        return 4

    def build_routes(self, H: int, W: int) -> Routes:
        return Routes(index=_four_routes(gilbert_order(H, W), gilbert_order(W, H), W, H))


@register_scan("hilbert_quadtree")
class HilbertQuadtreeScan(ScanStrategy):
    merge = "sum"

    @property
    def num_routes(self) -> int:
        return 4

    def build_routes(self, H: int, W: int) -> Routes:
        return Routes(index=_four_routes(quadtree_order(H, W), quadtree_order(W, H), W, H))
