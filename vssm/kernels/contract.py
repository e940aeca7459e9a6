"""The selective-scan kernel contract: what :mod:`vssm.kernels.op` hands a backend and what it gets back.

Every backend (``torch_scan``, ``triton_scan``) imports its records and the shared gate/merge semantics from
here and from nowhere else in the package; no backend imports another backend. Semantics of the scan itself:
:mod:`vssm.kernels.reference`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .checks import ScanSizes

__all__ = ["ScanGrads", "ScanProblem", "ScanSizes", "compute_dtype", "gate_and_merge", "gate_and_merge_backward",
           "silu_grad", "sum_per_slot"]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """State/accumulation dtype: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass
class ScanProblem:
    """Inputs of one call, with the route tables resolved to int64 (shapes: see ``selective_scan``)."""

    u: torch.Tensor  # (b, L, Ku, d)
    delta: torch.Tensor  # (b, L, K, d)
    A: torch.Tensor  # (K, d, N)
    B: torch.Tensor  # (b, L, K, N)
    C: torch.Tensor  # (b, L, K, N)
    D: Optional[torch.Tensor]  # (K, d)
    delta_bias: Optional[torch.Tensor]  # (K, d)
    index: torch.Tensor  # (K, T) int64, u/z/output token
    param_index: torch.Tensor  # (K, T) int64, delta/B/C token
    groups: torch.Tensor  # (K,) int64, u/z slot per route
    delta_softplus: bool
    routes_unique: bool  # no route visits a token (or parameter row) twice (Routes.tokens_unique)
    routes_cover: bool  # ... and every route visits every token (Routes.covers)

    @property
    def dtype(self) -> torch.dtype:
        return compute_dtype(self.u.dtype)

    @property
    def sizes(self) -> ScanSizes:
        return scan_sizes(self.u, self.A, self.index)


def scan_sizes(u: torch.Tensor, A: torch.Tensor, index: torch.Tensor) -> ScanSizes:
    """Sizes of a call from u (batch, L, Ku, dim), A (K, dim, N) and the route table (K, T)."""
    batch, length, u_slots, dim = u.shape
    K, steps = index.shape
    return ScanSizes(batch, length, K, u_slots, dim, A.shape[2], steps)


@dataclass
class ScanGrads:
    """Gradients of the scan inputs, in the compute dtype (ddelta may be in delta's dtype)."""

    u: torch.Tensor
    delta: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: Optional[torch.Tensor]
    delta_bias: Optional[torch.Tensor]


def silu_grad(z: torch.Tensor) -> torch.Tensor:
    """d silu(z) / dz."""
    sig = torch.sigmoid(z)
    return sig * (1 + z * (1 - sig))


def sum_per_slot(x: torch.Tensor, groups: torch.Tensor, slots: int) -> torch.Tensor:
    """x (b, L, K, d) -> (b, L, slots, d): slot s sums the routes k with groups[k] == s, in route order, in x's
    dtype (no host sync, no atomics, and no matmul, so TF32 settings cannot round it)."""
    if slots == 1:
        return x.sum(2, keepdim=True)
    member = F.one_hot(groups, slots).to(x.dtype)  # (K, slots)
    return torch.stack([(x * member[:, s, None]).sum(2) for s in range(slots)], dim=2)


def gate_and_merge(
    prob: ScanProblem, y: torch.Tensor, z: Optional[torch.Tensor], merge: str, out_dtype: torch.dtype
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Epilogue semantics: per-route y (b, L, K, d) -> y * silu(z[slot of k]), merged over routes ("sum", "mean";
    "none" keeps them), cast to ``out_dtype``; also the pre-gate y the backward needs (None without z)."""
    y_pre = None
    if z is not None:
        y_pre = y
        y = y * F.silu(z[:, :, prob.groups].to(y.dtype))
    if merge == "sum":
        y = y.sum(2)
    elif merge == "mean":
        y = y.mean(2)
    return y.to(out_dtype), y_pre


def gate_and_merge_backward(
    prob: ScanProblem, z: Optional[torch.Tensor], merge: str, y_pre: Optional[torch.Tensor], dout: torch.Tensor
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Gradient through :func:`gate_and_merge`: d(per-route pre-gate y) (b, L, K, d) and dz (or None).
    dz sums the routes reading each z slot in a fixed order (deterministic on every device)."""
    sizes = prob.sizes
    dout = dout.to(prob.dtype)
    if merge == "none":
        dy = dout
    else:
        dy = dout[:, :, None].expand(sizes.batch, sizes.length, sizes.routes, sizes.dim)
        dy = dy / (sizes.routes if merge == "mean" else 1)  # one dense copy (the torch backend gathers rows of it)
    if z is None:
        return dy, None
    z_k = z[:, :, prob.groups].to(prob.dtype)
    dz_k = dy * y_pre * silu_grad(z_k)
    dz = sum_per_slot(dz_k, prob.groups, z.shape[2])
    return dy * F.silu(z_k), dz
