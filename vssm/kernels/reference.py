"""Sequential selective-scan oracle: clear, slow, exact (runs in float64 when given float64).

Semantics (per batch b, route k, step t visiting token p = index[k, t], parameters at q = param_index[k, t]):

    dt      = softplus(delta[b, q, k] + delta_bias[k])          (softplus only if delta_softplus)
    h       = exp(dt * A[k]) * h + (dt * u[b, p, g(k)])[:, None] * B[b, q, k]
    y[b,p,k] += h @ C[b, q, k] + D[k] * u[b, p, g(k)]
    hidden[b, p, k] += h                                          (when return_hidden)

then y[b, p, k] *= silu(z[b, p, g(k)]) and the routes are merged ("sum", "mean" or "none").
A padding step (index -1) leaves h unchanged and writes nothing.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from .checks import check_inputs, route_groups
from .contract import compute_dtype
from .routes import RoutesLike, as_routes


def merge_routes(y: torch.Tensor, merge: str) -> torch.Tensor:
    """(batch, L, K, dim) per-route outputs -> merged output (see ``selective_scan``)."""
    if merge == "sum":
        return y.sum(2)
    if merge == "mean":
        return y.mean(2)
    return y


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    *,
    routes: RoutesLike,
    delta_softplus: bool = True,
    merge: str = "sum",
    out_dtype: Optional[torch.dtype] = None,
    return_hidden: bool = False,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """The oracle. Shapes as in :func:`vssm.kernels.selective_scan`; hidden is (batch, L, K, dim, N)."""
    routes = as_routes(routes)
    sizes = check_inputs(u, delta, A, B, C, D, delta_bias, z, routes, merge, out_dtype=out_dtype)
    dtype = compute_dtype(u.dtype)
    groups = route_groups(routes, sizes.u_slots, u.device).tolist()
    index = routes.index.tolist()
    param_index = index if routes.param_index is None else routes.param_index.tolist()

    y = u.new_zeros(sizes.batch, sizes.length, sizes.routes, sizes.dim, dtype=dtype)
    hidden = u.new_zeros(sizes.batch, sizes.length, sizes.routes, sizes.dim, sizes.d_state, dtype=dtype)
    for k in range(sizes.routes):
        g = groups[k]
        A_k = A[k].to(dtype)
        h = u.new_zeros(sizes.batch, sizes.dim, sizes.d_state, dtype=dtype)
        for t in range(sizes.steps):
            p, q = index[k][t], param_index[k][t]
            if p < 0 or q < 0:
                continue
            dt = delta[:, q, k].to(dtype)
            if delta_bias is not None:
                dt = dt + delta_bias[k].to(dtype)
            if delta_softplus:
                dt = F.softplus(dt, threshold=20.0)
            u_t = u[:, p, g].to(dtype)
            h = torch.exp(dt[:, :, None] * A_k) * h + (dt * u_t)[:, :, None] * B[:, q, k, None, :].to(dtype)
            y_t = (h * C[:, q, k, None, :].to(dtype)).sum(-1)
            if D is not None:
                y_t = y_t + D[k].to(dtype) * u_t
            y[:, p, k] = y[:, p, k] + y_t
            if return_hidden:
                hidden[:, p, k] = hidden[:, p, k] + h
    if z is not None:
        y = y * F.silu(z[:, :, groups].to(dtype))
    out = merge_routes(y, merge).to(out_dtype or u.dtype)
    return (out, hidden) if return_hidden else out
