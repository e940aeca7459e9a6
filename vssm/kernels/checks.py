"""Argument checks shared by every selective-scan backend.

Every problem raises ``ValueError`` naming the argument and what it got against what is expected.

Devices: every tensor (parameters and route tables included) must be on u's device.

Dtypes (nothing is silently rounded):
- u, delta, B, C, z: float16, bfloat16, float32 or float64; A, D, delta_bias: float32 or float64.
- The scan computes in float32, or in float64 when u is float64 (the reference mode). Any mix that widens
  exactly into that compute dtype is accepted (bf16 u with float32 delta, float64 u with float32 parameters);
  a float64 argument with a non-float64 u would be rounded to float32 and is refused.
- out_dtype: None (u's dtype) or one of the activation dtypes above.

Values: token and slot ranges are checked on the host once per route table (cached until it is edited), never
while tracing. A positive entry of A (a state that grows as exp(delta * A) and overflows to inf/NaN) gives a
UserWarning, checked for CPU tensors only: on an accelerator the check would be a host sync every call.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch._subclasses.fake_tensor import is_fake

from .routes import MERGES, Routes

ACTIVATION_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
PARAMETER_DTYPES = (torch.float32, torch.float64)


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


def _names(dtypes: Sequence[torch.dtype]) -> str:
    return ", ".join(str(d) for d in dtypes)


def _check_dtype(name: str, t: Optional[torch.Tensor], allowed: Sequence[torch.dtype], u: torch.Tensor) -> None:
    if t is None:
        return
    if t.dtype not in allowed:
        if allowed == PARAMETER_DTYPES:
            raise ValueError(f"{name}: got dtype {t.dtype}, expected torch.float32 (or torch.float64 with float64 u)")
        raise ValueError(f"{name}: got dtype {t.dtype}, expected one of {_names(allowed)}")
    if t.dtype == torch.float64 and u.dtype != torch.float64:
        raise ValueError(
            f"{name}: got dtype torch.float64 with u {u.dtype}, which computes in float32 and would round {name}; "
            f"pass u (and every input) as float64 for the float64 reference mode, or {name} as float32"
        )


def _check_devices(u: torch.Tensor, named: Sequence) -> None:
    for name, t in named:
        if t is not None and t.device != u.device:
            raise ValueError(f"{name}: on device {t.device}, expected u's device {u.device}")


def _warn_if_growing(A: torch.Tensor) -> None:
    if A.device.type != "cpu" or A.numel() == 0 or _is_traced(A):
        return
    top = float(A.detach().max())
    if top > 0:
        warnings.warn(
            f"A: has positive entries (max {top:.3g}); the state grows as exp(delta * A) per step and overflows "
            "to inf/NaN on long routes (A is expected <= 0, e.g. -exp(A_log))",
            UserWarning,
            stacklevel=4,
        )


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
    *,
    out_dtype: Optional[torch.dtype] = None,
) -> ScanSizes:
    """Validate the selective-scan arguments against each other; return the problem sizes.

    ``routes`` is a :class:`Routes` (its tables' dtypes and shapes are checked at construction)."""
    _expect_rank("u", u, 4, "(batch, L, Ku, dim)")
    _expect_rank("delta", delta, 4, "(batch, L, K, dim)")
    _expect_rank("A", A, 3, "(K, dim, N)")
    _expect_rank("B", B, 4, "(batch, L, K, N)")
    _expect_rank("C", C, 4, "(batch, L, K, N)")
    _check_devices(u, (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("delta_bias", delta_bias),
                       ("z", z), ("routes", routes.index), ("routes.param_index", routes.param_index),
                       ("routes.u_group", routes.u_group)))
    _check_dtype("u", u, ACTIVATION_DTYPES, u)
    for name, t in (("delta", delta), ("B", B), ("C", C), ("z", z)):
        _check_dtype(name, t, ACTIVATION_DTYPES, u)
    for name, t in (("A", A), ("D", D), ("delta_bias", delta_bias)):
        _check_dtype(name, t, PARAMETER_DTYPES, u)
    if out_dtype is not None and out_dtype not in ACTIVATION_DTYPES:
        raise ValueError(
            f"out_dtype: got {out_dtype!r}, expected None (u's dtype) or one of {_names(ACTIVATION_DTYPES)}"
        )
    if merge not in MERGES:
        raise ValueError(f"merge: got {merge!r}, expected one of {MERGES}")
    batch, length, u_slots, dim = u.shape
    K, steps = routes.index.shape
    N = A.shape[2]
    _expect("delta", delta, (batch, length, K, dim), "(batch, L, K, dim)")
    _expect("A", A, (K, dim, N), "(K, dim, N)")
    _expect("B", B, (batch, length, K, N), "(batch, L, K, N)")
    _expect("C", C, (batch, length, K, N), "(batch, L, K, N)")
    _expect("D", D, (K, dim), "(K, dim)")
    _expect("delta_bias", delta_bias, (K, dim), "(K, dim)")
    _expect("z", z, (batch, length, u_slots, dim), "(batch, L, Ku, dim)")
    _check_tokens("routes", routes, "index", length)
    if routes.param_index is not None:
        _check_tokens("routes.param_index", routes, "param_index", length)
    if routes.u_group is None:
        if u_slots not in (1, K):
            raise ValueError(f"u: got shape {_shape(u)}, expected Ku (axis 2) to be 1 or K = {K}")
    elif not _is_traced(routes.u_group):
        lo, hi = routes.value_range("u_group")
        if lo < 0 or hi >= u_slots:
            raise ValueError(f"routes.u_group: values must lie in [0, Ku = {u_slots}), got {routes.u_group.tolist()}")
    _warn_if_growing(A)
    return ScanSizes(batch, length, K, u_slots, dim, N, steps)


def _is_traced(t: torch.Tensor) -> bool:
    """Value checks read the table on the host: impossible while tracing or for fake/meta tensors."""
    return torch.compiler.is_compiling() or is_fake(t) or t.device.type == "meta"


def _check_tokens(name: str, routes: Routes, attr: str, length: int) -> None:
    table = getattr(routes, attr)
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
