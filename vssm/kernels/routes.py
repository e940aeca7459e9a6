"""The route contract between scan strategies and the selective-scan operator.

A route table says, for each route ``k`` and scan step ``t``, which token (raster index
``p = h * W + w``) the step visits; ``-1`` is a padding step that leaves the state unchanged
and writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, Union

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

    def tokens_unique(self) -> bool:
        """No route visits a token (or reads a parameter row) twice: chunks of one route then write disjoint
        rows and may run in parallel."""
        return self._once("_tokens_unique", lambda: _tokens_unique(self.index, self.param_index))

    def covers(self, length: int) -> bool:
        """Every route visits each of the ``length`` tokens (and parameter rows) exactly once: per-route outputs
        and gradients need no zeroing and no read-modify-write."""
        return self.tokens_unique() and self._once("_min_visits", self._min_valid_steps) == length

    def _min_valid_steps(self) -> int:
        valid = self.index >= 0
        if self.param_index is not None:
            valid &= self.param_index >= 0
        return int(valid.sum(1).min())

    def value_range(self, table: str) -> Tuple[int, int]:
        """(min, max) of ``table`` ("index", "param_index" or "u_group"), for the argument checks."""
        return self._once(f"_range_{table}", lambda: (int(getattr(self, table).min()), int(getattr(self, table).max())))

    def _once(self, key: str, compute: Callable[[], Any]) -> Any:
        """A value read from the tables (a host sync) on the first call, then kept: tables are never modified,
        so per-call checks and schedule choices cost no sync (and a forward can be captured in a CUDA graph).
        Not kept while torch.compile traces."""
        known = self.__dict__.get(key)
        if known is None:
            known = compute()
            if not torch.compiler.is_compiling():
                object.__setattr__(self, key, known)
        return known


def _tokens_unique(index: torch.Tensor, param_index: Optional[torch.Tensor]) -> bool:
    """See Routes.tokens_unique; while torch.compile traces, False (the sequential schedule suits every table)."""
    if torch.compiler.is_compiling():
        return False
    for table in (index, param_index):
        if table is None:
            continue
        ordered = table.sort(dim=1).values
        if bool(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any()):
            return False
    return True


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
