"""The route contract between scan strategies and the selective-scan operator.

A route table says, for each route ``k`` and scan step ``t``, which token (raster index
``p = h * W + w``) the step visits; ``-1`` is a padding step that leaves the state unchanged
and writes nothing. How the routes' outputs are merged is the strategy's choice, passed to
``selective_scan(merge=...)``; a :class:`Routes` carries tables only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

MERGES = ("sum", "mean", "none")
TABLE_DTYPES = (torch.int32, torch.int64)


def check_table(name: str, table: Any, shape: Optional[Sequence[int]], text: str) -> None:
    """``table`` must be an int32/int64 tensor of ``shape`` (None: any (K, T) with K >= 1); ValueError otherwise."""
    if not isinstance(table, torch.Tensor):
        raise ValueError(f"{name}: got {type(table).__name__}, expected an int32 or int64 tensor {text}")
    if table.dtype not in TABLE_DTYPES:
        raise ValueError(f"{name}: got dtype {table.dtype}, expected torch.int32 or torch.int64 {text}")
    got = tuple(table.shape)
    if shape is None:
        if table.dim() != 2:
            raise ValueError(f"{name}: got shape {got} (rank {table.dim()}), expected rank 2 {text}")
        if got[0] == 0:
            raise ValueError(f"{name}: got shape {got}, expected at least one route {text} with K >= 1")
    elif got != tuple(shape):
        raise ValueError(f"{name}: got shape {got}, expected {text} = {tuple(shape)}")


@dataclass(frozen=True)
class Routes:
    """Route tables for one grid size; every table is int32 or int64 (checked at construction).

    index:       (K, T), K >= 1. Token read for u/z and written for the output at step t of route k.
    param_index: (K, T) or None. Token whose delta/B/C step t of route k uses; None means ``index``
                 (PlainMamba reorders only u and keeps delta/B/C in raster order, so its param_index
                 is the identity ``arange(T)``).
    u_group:     (K,) or None. Which slot of u/z (axis 2) route k reads; None means slot 0 when u has
                 one slot, else slot k.
    direction:   (K, T) or None. Move that arrived at each step (0 start, 1 right, 2 left, 3 up,
                 4 down, -1 padding), for direction-aware B; read by models, not by the kernel.

    known_unique, known_min_visits: facts of the tables for the Triton schedule (no route repeats a token;
                 the fewest valid steps of a route), filled by :meth:`with_schedule_facts` (strategies do when
                 they build tables). A compiled forward cannot read the tables, so it reads these; None there
                 gives the sequential schedule, which suits every table.

    Values (token and slot ranges, uniqueness) are checked by the operator on first use and cached
    while the tables are unchanged: an in-place edit bumps a table's version counter and the next
    call checks again. Inference tensors (made under ``torch.inference_mode``) have no version
    counter: for them the cache is keyed on the storage address only.
    """

    index: torch.Tensor
    param_index: Optional[torch.Tensor] = None
    u_group: Optional[torch.Tensor] = None
    direction: Optional[torch.Tensor] = None
    known_unique: Optional[bool] = None
    known_min_visits: Optional[int] = None

    def __post_init__(self) -> None:
        check_table("routes.index", self.index, None, "(K, T)")
        K, T = self.index.shape
        if self.param_index is not None:
            check_table("routes.param_index", self.param_index, (K, T), "(K, T)")
        if self.u_group is not None:
            check_table("routes.u_group", self.u_group, (K,), "(K,)")
        if self.direction is not None:
            check_table("routes.direction", self.direction, (K, T), "(K, T)")

    @property
    def num_routes(self) -> int:
        return self.index.shape[0]

    @property
    def num_steps(self) -> int:
        return self.index.shape[1]

    def with_schedule_facts(self) -> "Routes":
        """These tables with ``known_unique`` / ``known_min_visits`` read from them (a host sync; eager)."""
        return dataclasses.replace(self, known_unique=_no_repeats(self.index, self.param_index),
                                   known_min_visits=self._min_valid_steps())

    def tokens_unique(self) -> bool:
        """No route visits a token (or reads a parameter row) twice: chunks of one route then write disjoint
        rows and may run in parallel."""
        return self._once("_tokens_unique", lambda: _no_repeats(self.index, self.param_index))

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
        """A value read from the tables (a host sync), kept until a table changes: per-call checks and schedule
        choices then cost no sync (and a forward can be captured in a CUDA graph). While torch.compile traces
        a kept value is used as is (a traced table has no storage address to compare); traced code reads the
        schedule through :func:`schedule_facts` instead."""
        known = self.__dict__.get(key)
        if torch.compiler.is_compiling():
            return known[1] if known is not None else compute()
        stamp = self._stamp()
        if known is not None and known[0] == stamp:
            return known[1]
        value = compute()
        object.__setattr__(self, key, (stamp, value))
        return value

    def _stamp(self) -> Tuple[Any, ...]:
        """Identifies the tables' current contents without reading them: storage address and version counter."""
        return tuple(
            None if t is None else (t.data_ptr(), None if t.is_inference() else t._version)
            for t in (self.index, self.param_index, self.u_group)
        )


def schedule_facts(routes: Routes, length: int) -> Tuple[bool, bool]:
    """(routes.tokens_unique(), routes.covers(length)); while torch.compile traces, from the ``known_*`` fields
    ((False, False) where unset): a traced forward can neither read the tables nor call a method of a constant
    Routes (torch 2.11: no guard source), only read its fields."""
    if torch.compiler.is_compiling():
        if routes.known_unique is None or routes.known_min_visits is None:
            return False, False
        return routes.known_unique, routes.known_unique and routes.known_min_visits == length
    return routes.tokens_unique(), routes.covers(length)


def _no_repeats(index: torch.Tensor, param_index: Optional[torch.Tensor]) -> bool:
    """No row of either table holds a token twice (padding -1 aside). CPU tables are checked in numpy without
    sorting (distinct tokens per row counted in a boolean grid): one thread, several times faster than torch's
    threaded sort of these int rows on a busy machine."""
    for table in (index, param_index):
        if table is None:
            continue
        if table.device.type == "cpu":
            rows = table.numpy()
            valid = rows >= 0
            which, tokens = np.nonzero(valid)[0], rows[valid]
            seen = np.zeros((rows.shape[0], int(tokens.max()) + 1 if tokens.size else 1), dtype=bool)
            seen[which, tokens] = True
            repeats = bool((seen.sum(1) != valid.sum(1)).any())
        else:
            ordered = table.sort(dim=1).values
            repeats = bool(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any())
        if repeats:
            return False
    return True


RoutesLike = Union[Routes, torch.Tensor]


def as_routes(routes: RoutesLike) -> Routes:
    """A :class:`Routes` as is, or a bare int32/int64 (K, T) tensor as ``Routes(index=routes)``. Nested Python
    lists are not converted (the operator would not know their device): TypeError."""
    if isinstance(routes, Routes):
        return routes
    if isinstance(routes, torch.Tensor):
        check_table("routes", routes, None, "(K, T)")
        return Routes(index=routes)
    raise TypeError(
        f"routes: got {type(routes).__name__}, expected an int32 or int64 tensor (K, T) or a vssm.kernels.Routes "
        "(for a nested list: torch.tensor(routes, dtype=torch.int32, device=u.device))"
    )
