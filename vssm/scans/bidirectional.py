"""Vim bidirectional scan: the raster sequence and its reverse; merge = mean.

Works on any 1-D sequence: ``routes(1, L)`` (``scans_sequence``: a mixer scans a class token in its sequence
place). Placing a class token (Vim puts it in the middle) is the model's job.
"""
from __future__ import annotations

import numpy as np

from ..kernels import Routes
from .base import ScanStrategy, table
from .registry import register_scan


@register_scan("bidirectional")
class BidirectionalScan(ScanStrategy):
    merge = "mean"
    scans_sequence = True

    @property
    def num_routes(self) -> int:
        return 2

    def build_routes(self, H: int, W: int) -> Routes:
        order = np.arange(H * W)
        return Routes(index=table(np.stack([order, order[::-1]])))
