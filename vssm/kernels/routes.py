"""The route contract between scan strategies and the selective-scan operator.

A route table says, for each route ``k`` and scan step ``t``, which token (raster index
``p = h * W + w``) the step visits; ``-1`` is a padding step that leaves the state unchanged
and writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch

MERGES = ("sum", "mean", "none")


@dataclass(frozen=True)
class Routes:
    """Route tables for one grid size.

    index:       int32 (K, T). Token read for u/z and written for the output at step t of route k.
    param_index: int32 (K, T) or None. Token whose delta/B/C step t of route k uses; None means
                 ``index`` (PlainMamba reorders only u and keeps delta/B/C in raster order, so its
                 param_index is the identity ``arange(T)``).
    u_group:     int32 (K,) or None. Which slot of u/z (axis 2) route k reads; None means slot 0
                 when u has one slot, else slot k.
    direction:   int64 (K, T) or None. Move that arrived at each step (0 start, 1 right, 2 left,
                 3 up, 4 down, -1 padding), for direction-aware B; read by models, not by the kernel.
    merge:       the strategy's merge rule ("sum", "mean" or "none").
    """

    index: torch.Tensor
    param_index: Optional[torch.Tensor] = None
    u_group: Optional[torch.Tensor] = None
    direction: Optional[torch.Tensor] = None
    merge: str = "sum"

    @property
    def num_routes(self) -> int:
        return self.index.shape[0]

    @property
    def num_steps(self) -> int:
        return self.index.shape[1]


RoutesLike = Union[Routes, torch.Tensor]


def as_routes(routes: RoutesLike) -> Routes:
    """Accept a bare (K, T) int tensor or a :class:`Routes` (or any object with ``.index``)."""
    if isinstance(routes, Routes):
        return routes
    if isinstance(routes, torch.Tensor):
        return Routes(index=routes)
    if hasattr(routes, "index"):
        return Routes(
            index=routes.index,
            param_index=getattr(routes, "param_index", None),
            u_group=getattr(routes, "u_group", None),
            direction=getattr(routes, "direction", None),
            merge=getattr(routes, "merge", "sum"),
        )
    raise ValueError(f"routes: expected an int tensor (K, T) or a Routes object, got {type(routes).__name__}")
