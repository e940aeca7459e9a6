"""Argument checks shared by every selective-scan backend.

Every problem raises ``ValueError`` naming the argument, the shape it got and the shape expected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch._subclasses.fake_tensor import is_fake

from .routes import MERGES, Routes


@dataclass(frozen=True)
class ScanSizes:
    batch: int
    length: int  # L, tokens in raster order
    routes: int  # K
    u_slots: int  # Ku
    dim: int
    d_state: int  # N
    steps: int  # T


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _expect(name: str, t: Optional[torch.Tensor], expected: Sequence[int], expected_text: str) -> None:
    if t is None:
        return
    if tuple(t.shape) != tuple(expected):
        raise ValueError(f"{name}: got shape {_shape(t)}, expected {expected_text} = {tuple(expected)}")


def _expect_rank(name: str, t: torch.Tensor, rank: int, text: str) -> None:
    if t.dim() != rank:
        raise ValueError(f"{name}: got shape {_shape(t)} (rank {t.dim()}), expected rank {rank} {text}")


def check_inputs(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    delta_bias: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    routes: Routes,
    merge: str,
) -> ScanSizes:
    """Validate the selective-scan arguments against each other; return the problem sizes."""
    _expect_rank("u", u, 4, "(batch, L, Ku, dim)")
    _expect_rank("delta", delta, 4, "(batch, L, K, dim)")
    _expect_rank("A", A, 3, "(K, dim, N)")
    _expect_rank("B", B, 4, "(batch, L, K, N)")
    _expect_rank("C", C, 4, "(batch, L, K, N)")
    index = routes.index
    _expect_rank("routes", index, 2, "(K, T)")
    batch, length, u_slots, dim = u.shape
    K, steps = index.shape
    N = A.shape[2]
    if not u.is_floating_point():
        raise ValueError(f"u: got dtype {u.dtype}, expected a floating dtype")
    # Parameters are float32; float64 is accepted only with float64 inputs (the oracle and gradcheck).
    param_dtypes = (torch.float32, torch.float64) if u.dtype == torch.float64 else (torch.float32,)
    if A.dtype not in param_dtypes:
        raise ValueError(f"A: got dtype {A.dtype}, expected torch.float32 (negative real)")
    _expect("delta", delta, (batch, length, K, dim), "(batch, L, K, dim)")
    _expect("A", A, (K, dim, N), "(K, dim, N)")
    _expect("B", B, (batch, length, K, N), "(batch, L, K, N)")
    _expect("C", C, (batch, length, K, N), "(batch, L, K, N)")
    _expect("D", D, (K, dim), "(K, dim)")
    _expect("delta_bias", delta_bias, (K, dim), "(K, dim)")
    _expect("z", z, (batch, length, u_slots, dim), "(batch, L, Ku, dim)")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.dtype not in param_dtypes:
            raise ValueError(f"{name}: got dtype {t.dtype}, expected torch.float32")
    if merge not in MERGES:
        raise ValueError(f"merge: got {merge!r}, expected one of {MERGES}")
    _check_table("routes", routes, "index", length, (K, steps))
    if routes.param_index is not None:
        _check_table("routes.param_index", routes, "param_index", length, (K, steps))
    if routes.u_group is None:
        if u_slots not in (1, K):
            raise ValueError(f"u: got shape {_shape(u)}, expected Ku (axis 2) to be 1 or K = {K}")
    else:
        group = routes.u_group
        if tuple(group.shape) != (K,):
            raise ValueError(f"routes.u_group: got shape {_shape(group)}, expected (K,) = ({K},)")
        if group.numel() and not _is_traced(group):
            lo, hi = routes.value_range("u_group")
            if lo < 0 or hi >= u_slots:
                raise ValueError(f"routes.u_group: values must lie in [0, Ku = {u_slots}), got {group.tolist()}")
    return ScanSizes(batch, length, K, u_slots, dim, N, steps)


def _is_traced(t: torch.Tensor) -> bool:
    """Value checks read the table on the host: impossible while tracing or for fake/meta tensors."""
    return torch.compiler.is_compiling() or is_fake(t) or t.device.type == "meta"


def _check_table(name: str, routes: Routes, attr: str, length: int, shape: Sequence[int]) -> None:
    table = getattr(routes, attr)
    if table.dtype.is_floating_point or table.dtype == torch.bool:
        raise ValueError(f"{name}: got dtype {table.dtype}, expected an integer tensor (int32)")
    if tuple(table.shape) != tuple(shape):
        raise ValueError(f"{name}: got shape {_shape(table)}, expected (K, T) = {tuple(shape)}")
    if table.numel() == 0 or _is_traced(table):
        return
    lo, hi = routes.value_range(attr)
    if lo < -1 or hi >= length:
        raise ValueError(f"{name}: token indices must lie in [-1, L) = [-1, {length}), got min {lo} and max {hi}")


def route_groups(routes: Routes, u_slots: int, device: torch.device) -> torch.Tensor:
    """g(k): the u/z slot each route reads, as an int64 (K,) tensor."""
    if routes.u_group is not None:
        return routes.u_group.to(device=device, dtype=torch.long)
    K = routes.index.shape[0]
    if u_slots == 1:
        return torch.zeros(K, dtype=torch.long, device=device)
    return torch.arange(K, dtype=torch.long, device=device)
