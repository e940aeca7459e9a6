"""Fast PyTorch selective scan (the CPU default): all routes at once, chunked over scan steps.

Per chunk of steps the inputs are gathered into route order (batch, K, c, dim[, N]), the decays
exp(dt * A) and inputs dt * u * B are built vectorised, and the linear recurrence runs as one fused
``addcmul`` per step. Only the state at each chunk start is kept for the backward (fp32, or fp64 for
float64 inputs); the backward recomputes each chunk from its start state and runs the reverse
recurrence, so no (batch, L, dim, N) tensor exists for the whole sequence when N > 1.

Semantics: see :mod:`vssm.kernels.reference`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from .config import KernelConfig, KernelPlan
from .contract import ScanGrads, ScanProblem, ScanSizes, gate_and_merge, gate_and_merge_backward

def plan(config: KernelConfig, sizes: ScanSizes, routes_unique: bool, routes_cover: bool) -> KernelPlan:
    """Steps per chunk: ``config.chunk``, else as many as keep a (batch, K, chunk, dim, N) work tensor within
    ``config.torch_chunk_elements`` (default 2^22) elements, which bounds memory per chunk. A symbolic batch
    (torch.export with a dynamic batch) counts as one image, so the chunk, and the saved states' shape, do not
    guard the batch."""
    elements = config.torch_chunk_elements or 1 << 22
    batch = sizes.batch if isinstance(sizes.batch, int) else 1
    per_step = max(1, batch * sizes.routes * sizes.dim * sizes.d_state)
    chunk = config.chunk or max(1, min(sizes.steps, elements // per_step))
    return KernelPlan(chunk=chunk, span=chunk, chunked=False, partials_bf16=False,
                      block_d=0, warps=0)


def saved_shapes(sizes: ScanSizes, has_z: bool, chunk: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Shapes of the chunk-start states and of the pre-gate y (a placeholder without z)."""
    state = (-(-sizes.steps // chunk), sizes.batch, sizes.routes, sizes.dim, sizes.d_state)
    extra = (sizes.batch, sizes.length, sizes.routes, sizes.dim) if has_z else (0,)
    return state, extra


def chunk_bounds(steps: int, chunk: int) -> List[Tuple[int, int]]:
    return [(t0, min(steps, t0 + chunk)) for t0 in range(0, steps, chunk)]


@dataclass
class Chunk:
    """Route-ordered inputs of steps [t0, t1): tensors are (batch, K, c, ...)."""

    valid: torch.Tensor  # (K, c) bool
    p: torch.Tensor  # (K, c) int64, clamped token index for u/z/y
    q: torch.Tensor  # (K, c) int64, clamped token index for delta/B/C
    u: torch.Tensor  # (b, K, c, d)
    s: torch.Tensor  # (b, K, c, d) delta + bias (pre-softplus)
    dt: torch.Tensor  # (b, K, c, d) softplus(s), zero at padding steps
    B: torch.Tensor  # (b, K, c, N)
    C: torch.Tensor  # (b, K, c, N)
    decay: torch.Tensor  # (b, K, c, d, N) exp(dt * A)


def _gather_rows(x: torch.Tensor, token: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """x (b, L, S, c) rows at (token, slot) for token/slot (K, c') -> (b, K, c', c), via one index_select."""
    b, _, slots, width = x.shape
    rows = (token * slots + slot).reshape(-1)
    return x.reshape(b, -1, width).index_select(1, rows).view(b, *token.shape, width)


def _gather_chunk(prob: ScanProblem, t0: int, t1: int) -> Chunk:
    dtype = prob.dtype
    idx, pidx = prob.index[:, t0:t1], prob.param_index[:, t0:t1]
    valid = (idx >= 0) & (pidx >= 0)
    p, q = idx.clamp(min=0), pidx.clamp(min=0)
    routes = torch.arange(idx.shape[0], device=idx.device)[:, None]
    u = _gather_rows(prob.u, p, prob.groups[:, None]).to(dtype)
    s = _gather_rows(prob.delta, q, routes).to(dtype)
    if prob.delta_bias is not None:
        s = s + prob.delta_bias.to(dtype)[None, :, None, :]
    dt = F.softplus(s, threshold=20.0) if prob.delta_softplus else s
    dt = dt * valid[None, :, :, None].to(dtype)  # masked after the transform: padding is identity
    B = _gather_rows(prob.B, q, routes).to(dtype)
    C = _gather_rows(prob.C, q, routes).to(dtype)
    decay = torch.exp(dt[..., None] * prob.A.to(dtype)[None, :, None])
    return Chunk(valid, p, q, u, s, dt, B, C, decay)


def _run_recurrence(decay: torch.Tensor, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_t = decay_t * h_{t-1} + x_t along axis 2, h_{-1} = h0; returns all h (same shape as x)."""
    h = torch.empty_like(x)
    prev = h0
    # views taken once: slicing x[:, :, t] per step cost more than the step itself at VMamba's small steps
    # (bit-identical; 2.1x for (1, 4, 256, 96, 1) on the 2-core CPU, one thread, 2026-12-03)
    for x_t, decay_t, h_t in zip(x.unbind(2), decay.unbind(2), h.unbind(2)):
        prev = torch.addcmul(x_t, decay_t, prev, out=h_t)
    return h


def _scatter_add(target: torch.Tensor, slots: int, token: torch.Tensor, slot: torch.Tensor, values: torch.Tensor) -> None:
    """target (b, L*slots, ...) += values (b, K, c, ...) at rows token * slots + slot."""
    rows = (token * slots + slot).reshape(-1)
    target.index_add_(1, rows, values.reshape(values.shape[0], -1, *values.shape[3:]))


def scan_forward(
    prob: ScanProblem, with_hidden: bool, chunk: int
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Returns per-route y (b, L, K, d) (before gating), hidden (b, L, K, d, N) or None, and the
    chunk-start states (n_chunks, b, K, d, N) used by :func:`scan_backward`."""
    sz = prob.sizes
    batch, length, K, dim, N = sz.batch, sz.length, sz.routes, sz.dim, sz.d_state
    dtype = prob.dtype
    routes = torch.arange(K, device=prob.u.device)[:, None]
    y = prob.u.new_zeros(batch, length * K, dim, dtype=dtype)
    hidden = prob.u.new_zeros(batch, length * K, dim, N, dtype=dtype) if with_hidden else None
    bounds = chunk_bounds(sz.steps, chunk)
    starts = prob.u.new_empty(len(bounds), batch, K, dim, N, dtype=dtype)
    h0 = prob.u.new_zeros(batch, K, dim, N, dtype=dtype)
    for i, (t0, t1) in enumerate(bounds):
        starts[i] = h0
        ch = _gather_chunk(prob, t0, t1)
        x = (ch.dt * ch.u)[..., None] * ch.B[:, :, :, None, :]
        h = _run_recurrence(ch.decay, x, h0)
        h0 = h[:, :, -1]
        y_c = torch.einsum("bktdn,bktn->bktd", h, ch.C)
        if prob.D is not None:
            y_c = y_c + prob.D.to(dtype)[None, :, None, :] * ch.u
        mask = ch.valid[None, :, :, None].to(dtype)
        _scatter_add(y, K, ch.p, routes, y_c * mask)
        if hidden is not None:
            _scatter_add(hidden, K, ch.p, routes, h * mask[..., None])
    y = y.view(batch, length, K, dim)
    if hidden is not None:
        hidden = hidden.view(batch, length, K, dim, N)
    return y, hidden, starts


def scan_backward(
    prob: ScanProblem, starts: torch.Tensor, dy: torch.Tensor, dhidden: Optional[torch.Tensor], chunk: int
) -> ScanGrads:
    """Gradients of the per-route outputs. dy: (b, L, K, d) gradient of the pre-gating per-route y;
    dhidden: (b, L, K, d, N) or None; ``chunk`` as in the forward. Gradients come back in the compute dtype."""
    sz = prob.sizes
    batch, length, K, dim, N = sz.batch, sz.length, sz.routes, sz.dim, sz.d_state
    dtype = prob.dtype
    u_slots = prob.u.shape[2]
    routes = torch.arange(K, device=prob.u.device)[:, None]
    A = prob.A.to(dtype)
    du = prob.u.new_zeros(batch, length * u_slots, dim, dtype=dtype)
    ddelta = prob.u.new_zeros(batch, length * K, dim, dtype=dtype)
    dB = prob.u.new_zeros(batch, length * K, N, dtype=dtype)
    dC = prob.u.new_zeros(batch, length * K, N, dtype=dtype)
    dA = torch.zeros_like(A)
    dD = torch.zeros(K, dim, dtype=dtype, device=A.device) if prob.D is not None else None
    dbias = torch.zeros(K, dim, dtype=dtype, device=A.device) if prob.delta_bias is not None else None
    # carry = decay_{t1} * g_{t1}: what the first step of the later chunk passes back.
    carry = prob.u.new_zeros(batch, K, dim, N, dtype=dtype)
    bounds = chunk_bounds(sz.steps, chunk)
    for i in range(len(bounds) - 1, -1, -1):
        t0, t1 = bounds[i]
        ch = _gather_chunk(prob, t0, t1)
        mask = ch.valid[None, :, :, None].to(dtype)
        x = (ch.dt * ch.u)[..., None] * ch.B[:, :, :, None, :]
        h = _run_recurrence(ch.decay, x, starts[i])
        h_prev = torch.cat([starts[i][:, :, None], h[:, :, :-1]], dim=2)
        dy_c = _gather_rows(dy, ch.p, routes).to(dtype) * mask  # (b, K, c, d)
        if prob.D is not None:
            dD += (dy_c * ch.u).sum((0, 2))
        dC_c = torch.einsum("bktdn,bktd->bktn", h, dy_c)
        local = dy_c[..., None] * ch.C[:, :, :, None, :]
        if dhidden is not None:
            dh = _gather_rows(dhidden.flatten(3), ch.p, routes).view(*local.shape)
            local = local + dh.to(dtype) * mask[..., None]
        # Reverse recurrence g_t = local_t + decay_{t+1} g_{t+1}, run as a forward one on flipped time.
        shifted = torch.cat([ch.decay[:, :, 1:], ch.decay.new_ones(ch.decay[:, :, :1].shape)], dim=2)
        local[:, :, -1] += carry
        g = _run_recurrence(shifted.flip(2), local.flip(2), torch.zeros_like(carry)).flip(2)
        carry = ch.decay[:, :, 0] * g[:, :, 0]
        g_decay = g * h_prev * ch.decay  # d(loss)/d(dt * A)
        dA += torch.einsum("bktdn,bktd->kdn", g_decay, ch.dt)
        gB = torch.einsum("bktdn,bktn->bktd", g, ch.B)
        ddt = (g_decay * A[None, :, None]).sum(-1) + gB * ch.u
        du_c = gB * ch.dt
        if prob.D is not None:
            du_c = du_c + prob.D.to(dtype)[None, :, None, :] * dy_c
        dB_c = torch.einsum("bktdn,bktd->bktn", g, ch.dt * ch.u)
        ds = ddt * torch.sigmoid(ch.s).masked_fill(ch.s > 20.0, 1.0) if prob.delta_softplus else ddt
        ds = ds * mask
        if dbias is not None:
            dbias += ds.sum((0, 2))
        _scatter_add(du, u_slots, ch.p, prob.groups[:, None], du_c * mask)
        _scatter_add(ddelta, K, ch.q, routes, ds)
        _scatter_add(dB, K, ch.q, routes, dB_c * mask)
        _scatter_add(dC, K, ch.q, routes, dC_c * mask)
    return ScanGrads(
        u=du.view(batch, length, u_slots, dim),
        delta=ddelta.view(batch, length, K, dim),
        A=dA,
        B=dB.view(batch, length, K, N),
        C=dC.view(batch, length, K, N),
        D=dD,
        delta_bias=dbias,
    )


def forward(
    prob: ScanProblem, z: Optional[torch.Tensor], merge: str, out_dtype: torch.dtype, return_hidden: bool,
    plan: KernelPlan,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor, Optional[torch.Tensor]]:
    """Full operator: scan, gate, merge. Returns (out, hidden, chunk-start states, pre-gate y or None)."""
    y, hidden, starts = scan_forward(prob, return_hidden, plan.chunk)
    out, y_pre = gate_and_merge(prob, y, z, merge, out_dtype)
    return out, hidden, starts, y_pre


def backward(
    prob: ScanProblem,
    z: Optional[torch.Tensor],
    merge: str,
    starts: torch.Tensor,
    y_pre: Optional[torch.Tensor],
    dout: torch.Tensor,
    dhidden: Optional[torch.Tensor],
    plan: KernelPlan,
) -> Tuple[ScanGrads, Optional[torch.Tensor]]:
    """Gradients of :func:`forward` (with the forward's plan); returns the scan gradients and dz (or None)."""
    dy, dz = gate_and_merge_backward(prob, z, merge, y_pre, dout)
    return scan_backward(prob, starts, dy, dhidden, plan.chunk), dz
