"""Triton selective scan: all routes in one launch, route tables read in-kernel, deterministic.

Reference semantics: :mod:`vssm.kernels.reference` (tests compare against it).

Forward: programs cover (batch, block of BLOCK_D channels, route k[, chunk]). A program walks its steps,
gathers the visited token's u / delta / B / C rows straight from the raster-order inputs (no re-ordered
copies), keeps the state [BLOCK_D, N] in fp32 registers, and accumulates y_k into an fp32 per-route buffer
(batch, L, K, dim) by read-modify-write of rows only this program owns (no atomics, so repeated tokens and
padding steps are exact and runs are bit-identical). B_t / C_t are loaded once per block of channels; the rows
of step t + 1 are loaded while step t is computed. The state at every CHUNK-th step is saved (fp32) for the
backward. Gate, merge and cast are one epilogue.
Two schedules, same arithmetic per step:
- whole route per program, when routes repeat a token (in-order accumulation) or when there are enough
  programs to fill the GPU;
- chunk-parallel otherwise: chunk states from a zero start with their decay products (one program per chunk),
  a short sequential carry pass over chunks (the saved states), then every chunk re-scanned from its state.

Backward: the same two schedules. Whole route: chunks last to first. Chunk-parallel: per-chunk state-gradient
summaries and decays, a short reverse carry pass, then every chunk at once from its carried gradient. In a
chunk the states are recomputed from its checkpoint into a small per-program scratch (CHUNK + 1 states), then
the reverse recurrence g_t = dy_t C_t + exp(dt_{t+1} A) g_{t+1} runs over the chunk. Gradients of rows the
program owns are accumulated in place; those shared across programs (dB, dC across channel blocks; dA, dD,
d(delta_bias) across batch and chunks; du across routes reading one u slot) are written as partials and summed
in a fixed order afterwards.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .checks import ScanSizes
from .torch_scan import ScanGrads, ScanProblem, gate_and_merge, gate_and_merge_backward

CHUNK = 64  # steps between saved states
LOG2E = 1.4426950408889634


@triton.jit
def _softplus(s, SOFTPLUS: tl.constexpr):
    if SOFTPLUS:
        s = tl.where(s <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(s, 20.0))), s)
    return s


@triton.jit
def _load_step(
    u_ptr, delta_ptr, B_ptr, C_ptr, index_ptr, pindex_ptr, b, k, g, t, t_end, T, d, n, dmask, nmask, bias,
    su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):
    """Rows of step t of route k (a step at or past t_end is a padding step): tokens p (u/y) and q (delta/B/C),
    validity, u, pre-softplus s, dt, B, C."""
    inside = t < t_end
    p = tl.load(index_ptr + k * T + t, mask=inside, other=-1).to(tl.int64)
    q = tl.load(pindex_ptr + k * T + t, mask=inside, other=-1).to(tl.int64)
    valid = (p >= 0) & (q >= 0)
    p = tl.maximum(p, 0)
    q = tl.maximum(q, 0)
    u = tl.load(u_ptr + b * su_b + p * su_l + g * su_s + d * su_d, mask=dmask, other=0.0).to(tl.float32)
    s = tl.load(delta_ptr + b * sd_b + q * sd_l + k * sd_k + d * sd_d, mask=dmask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        s += bias
    dt = tl.where(valid, _softplus(s, SOFTPLUS), 0.0)
    Bt = tl.load(B_ptr + b * sB_b + q * sB_l + k * sB_k + n * sB_n, mask=nmask, other=0.0).to(tl.float32)
    Ct = tl.load(C_ptr + b * sC_b + q * sC_l + k * sC_k + n * sC_n, mask=nmask, other=0.0).to(tl.float32)
    return p, q, valid, u, s, dt, Bt, Ct


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, index_ptr, pindex_ptr, group_ptr,
    y_ptr, hidden_ptr, ckpt_ptr,
    T, dim, n_chunks, span,
    su_b, su_l, su_s, su_d,
    sd_b, sd_l, sd_k, sd_d,
    sB_b, sB_l, sB_k, sB_n,
    sC_b, sC_l, sC_k, sC_n,
    sy_b, sy_l, sy_k,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CK: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_HIDDEN: tl.constexpr,
    CHUNKED: tl.constexpr, ACCUMULATE: tl.constexpr,
):
    """Program (b, channel block, k * n_spans + span index) scans steps [c * span, (c + 1) * span) of route k.
    CHUNKED: start from the saved state of its chunk (span == CK); else one span covers the route and the
    state at every CK-th step is saved. ACCUMULATE: add into the (zeroed) outputs, for routes that visit a
    token more than once or not at all; else every output row is written exactly once (no read)."""
    b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    n_spans = tl.cdiv(T, span)
    k = (tl.program_id(2) // n_spans).to(tl.int64)
    c = tl.program_id(2) % n_spans
    K = tl.num_programs(2) // n_spans
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    dmask = d < dim
    nmask = n < N
    dn_mask = dmask[:, None] & nmask[None, :]
    A2 = tl.load(A_ptr + (k * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0) * 1.4426950408889634
    Dk = tl.load(D_ptr + k * dim + d, mask=dmask & HAS_D, other=0.0)
    bias = tl.load(bias_ptr + k * dim + d, mask=dmask & HAS_BIAS, other=0.0)
    g = tl.load(group_ptr + k).to(tl.int64)
    ckpt_base = ckpt_ptr + ((b * K + k) * n_chunks * dim) * N
    t0 = c * span
    t_end = tl.minimum(t0 + span, T)
    if CHUNKED:
        h = tl.load(ckpt_base + (c * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0)
    else:
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    # software pipelining: the rows of step t + 1 are loaded while step t is computed
    p, _, valid, u, _, dt, Bt, Ct = _load_step(
        u_ptr, delta_ptr, B_ptr, C_ptr, index_ptr, pindex_ptr, b, k, g, t0, t_end, T, d, n, dmask, nmask, bias,
        su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
        HAS_BIAS, SOFTPLUS)
    for t in range(t0, t_end):
        if not CHUNKED:
            if t % CK == 0:
                tl.store(ckpt_base + ((t // CK) * dim + d[:, None]) * N + n[None, :], h, mask=dn_mask)
        p_n, _, valid_n, u_n, _, dt_n, B_n, C_n = _load_step(
            u_ptr, delta_ptr, B_ptr, C_ptr, index_ptr, pindex_ptr, b, k, g, t + 1, t_end, T, d, n, dmask, nmask,
            bias, su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
            HAS_BIAS, SOFTPLUS)
        h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bt[None, :]
        y = tl.sum(h * Ct[None, :], axis=1) + Dk * u
        wmask = dmask & valid
        y_row = y_ptr + b * sy_b + p * sy_l + k * sy_k + d
        if ACCUMULATE:
            y += tl.load(y_row, mask=wmask, other=0.0)
        tl.store(y_row, y, mask=wmask)
        if HAS_HIDDEN:
            h_row = hidden_ptr + ((b * sy_b + p * sy_l + k * sy_k + d[:, None]) * N + n[None, :])
            hmask = dn_mask & valid
            if ACCUMULATE:
                tl.store(h_row, tl.load(h_row, mask=hmask, other=0.0) + h, mask=hmask)
            else:
                tl.store(h_row, h, mask=hmask)
        p, valid, u, dt, Bt, Ct = p_n, valid_n, u_n, dt_n, B_n, C_n


@triton.jit
def _chunk_state_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, index_ptr, pindex_ptr, group_ptr, bias_ptr,
    hloc_ptr, decay_ptr,
    T, dim, n_chunks,
    su_b, su_l, su_s, su_d,
    sd_b, sd_l, sd_k, sd_d,
    sB_b, sB_l, sB_k, sB_n,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CK: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):
    """Program (b, channel block, k * n_chunks + c): the chunk's state from a zero start, and the product of
    its decays, so that state_end = decay * state_start + local."""
    b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    k = (tl.program_id(2) // n_chunks).to(tl.int64)
    c = tl.program_id(2) % n_chunks
    K = tl.num_programs(2) // n_chunks
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    dmask = d < dim
    nmask = n < N
    dn_mask = dmask[:, None] & nmask[None, :]
    A2 = tl.load(A_ptr + (k * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0) * 1.4426950408889634
    bias = tl.load(bias_ptr + k * dim + d, mask=dmask & HAS_BIAS, other=0.0)
    g = tl.load(group_ptr + k).to(tl.int64)
    t0 = c * CK
    t_end = tl.minimum(t0 + CK, T)
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    log_decay = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    p, _, valid, u, _, dt, Bt, Ct = _load_step(
        u_ptr, delta_ptr, B_ptr, B_ptr, index_ptr, pindex_ptr, b, k, g, t0, t_end, T, d, n, dmask, nmask, bias,
        su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sB_b, sB_l, sB_k, sB_n,
        HAS_BIAS, SOFTPLUS)
    for t in range(t0, t_end):
        p_n, _, valid_n, u_n, _, dt_n, B_n, C_n = _load_step(
            u_ptr, delta_ptr, B_ptr, B_ptr, index_ptr, pindex_ptr, b, k, g, t + 1, t_end, T, d, n, dmask, nmask,
            bias, su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sB_b, sB_l, sB_k, sB_n,
            HAS_BIAS, SOFTPLUS)
        exponent = dt[:, None] * A2
        h = tl.exp2(exponent) * h + (dt * u)[:, None] * Bt[None, :]
        log_decay += exponent
        p, valid, u, dt, Bt = p_n, valid_n, u_n, dt_n, B_n
    off = (((b * K + k) * n_chunks + c) * dim + d[:, None]) * N + n[None, :]
    tl.store(hloc_ptr + off, h, mask=dn_mask)
    tl.store(decay_ptr + off, tl.exp2(log_decay), mask=dn_mask)


@triton.jit
def _chunk_carry_kernel(
    hloc_ptr, decay_ptr, ckpt_ptr, dim, n_chunks,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Program (b, channel block, k): start state of every chunk, in order: s_0 = 0, s_{c+1} = P_c s_c + h_c."""
    b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    k = tl.program_id(2).to(tl.int64)
    K = tl.num_programs(2)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    dn_mask = (d < dim)[:, None] & (n < N)[None, :]
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(n_chunks):
        off = (((b * K + k) * n_chunks + c) * dim + d[:, None]) * N + n[None, :]
        tl.store(ckpt_ptr + off, h, mask=dn_mask)
        h = tl.load(decay_ptr + off, mask=dn_mask, other=0.0) * h + tl.load(hloc_ptr + off, mask=dn_mask, other=0.0)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, index_ptr, pindex_ptr, group_ptr,
    dy_ptr, dhidden_ptr, ckpt_ptr, scratch_ptr,
    du_ptr, ddelta_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
    carry_ptr, T, dim, L, n_chunks,
    su_b, su_l, su_s, su_d,
    sd_b, sd_l, sd_k, sd_d,
    sB_b, sB_l, sB_k, sB_n,
    sC_b, sC_l, sC_k, sC_n,
    sy_b, sy_l, sy_k,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CK: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_DHIDDEN: tl.constexpr,
    CHUNKED: tl.constexpr,
):
    """Program (b, channel block, k * n_spans + c). CHUNKED: only chunk c, starting from the gradient carried
    in from the later chunks (``carry_ptr``); else all chunks of route k, last to first."""
    b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    pid2 = tl.program_id(2)
    n_spans = n_chunks if CHUNKED else 1
    k = (pid2 // n_spans).to(tl.int64)
    n_db = tl.num_programs(1)
    K = tl.num_programs(2) // n_spans
    B_size = tl.num_programs(0)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    dmask = d < dim
    nmask = n < N
    dn_mask = dmask[:, None] & nmask[None, :]
    A = tl.load(A_ptr + (k * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0)
    A2 = A * 1.4426950408889634
    Dk = tl.load(D_ptr + k * dim + d, mask=dmask & HAS_D, other=0.0)
    bias = tl.load(bias_ptr + k * dim + d, mask=dmask & HAS_BIAS, other=0.0)
    g_slot = tl.load(group_ptr + k).to(tl.int64)
    ckpt_base = ckpt_ptr + ((b * K + k) * n_chunks * dim) * N
    prog = (b * n_db + pid_d) * tl.num_programs(2) + pid2
    scratch = scratch_ptr + prog * (CK + 1) * BLOCK_D * BLOCK_N
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + n[None, :]
    dB_base = dB_ptr + pid_d * (B_size * L * K * N)
    dC_base = dC_ptr + pid_d * (B_size * L * K * N)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if CHUNKED:
        g_carry = tl.load(carry_ptr + (((b * K + k) * n_chunks + pid2 % n_spans) * dim + d[:, None]) * N + n[None, :],
                          mask=dn_mask, other=0.0)
    else:
        g_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for i in range(n_chunks // n_spans):
        if CHUNKED:
            c = pid2 % n_spans
        else:
            c = n_chunks - 1 - i
        t0 = c * CK
        steps = tl.minimum(CK, T - t0)
        h = tl.load(ckpt_base + (c * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0)
        tl.store(scratch + tile, h)
        for j in range(steps):  # recompute the chunk's states: scratch[j + 1] = h_{t0 + j}
            _, _, _, u, _, dt, Bt, _ = _load_step(
                u_ptr, delta_ptr, B_ptr, C_ptr, index_ptr, pindex_ptr, b, k, g_slot, t0 + j, T, T, d, n, dmask,
                nmask, bias, su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n,
                sC_b, sC_l, sC_k, sC_n, HAS_BIAS, SOFTPLUS)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bt[None, :]
            tl.store(scratch + (j + 1) * BLOCK_D * BLOCK_N + tile, h)
        for jj in range(steps):  # reverse recurrence over the chunk
            j = steps - 1 - jj
            p, q, valid, u, s, dt, Bt, Ct = _load_step(
                u_ptr, delta_ptr, B_ptr, C_ptr, index_ptr, pindex_ptr, b, k, g_slot, t0 + j, T, T, d, n, dmask,
                nmask, bias, su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n,
                sC_b, sC_l, sC_k, sC_n, HAS_BIAS, SOFTPLUS)
            vmask = dmask & valid
            h_prev = tl.load(scratch + j * BLOCK_D * BLOCK_N + tile)
            h_t = tl.load(scratch + (j + 1) * BLOCK_D * BLOCK_N + tile)
            decay = tl.exp2(dt[:, None] * A2)
            dy = tl.load(dy_ptr + b * sy_b + p * sy_l + k * sy_k + d, mask=vmask, other=0.0)
            g = g_carry + dy[:, None] * Ct[None, :]
            if HAS_DHIDDEN:
                g += tl.load(dhidden_ptr + (b * sy_b + p * sy_l + k * sy_k + d[:, None]) * N + n[None, :],
                             mask=dn_mask & valid, other=0.0)
            g = tl.where(dn_mask, g, 0.0)
            g_carry = decay * g
            g_decay = g * h_prev * decay
            dA_acc += g_decay * dt[:, None]
            gB = tl.sum(g * Bt[None, :], axis=1)
            ddt = tl.sum(g_decay * A, axis=1) + gB * u
            du = gB * dt + Dk * dy
            if HAS_D:
                dD_acc += dy * u
            if SOFTPLUS:
                ds = ddt * tl.where(s <= 20.0, tl.sigmoid(s), 1.0)
            else:
                ds = ddt
            ds = tl.where(vmask, ds, 0.0)
            dbias_acc += ds
            du_row = du_ptr + b * sy_b + p * sy_l + k * sy_k + d
            tl.store(du_row, tl.load(du_row, mask=vmask, other=0.0) + du, mask=vmask)
            dd_row = ddelta_ptr + b * sy_b + q * sy_l + k * sy_k + d
            tl.store(dd_row, tl.load(dd_row, mask=vmask, other=0.0) + ds, mask=vmask)
            bc_off = ((b * L + q) * K + k) * N + n
            bc_mask = nmask & valid
            dB_t = tl.sum(g * (dt * u)[:, None], axis=0)
            dC_t = tl.sum(h_t * dy[:, None], axis=0)
            tl.store(dB_base + bc_off, tl.load(dB_base + bc_off, mask=bc_mask, other=0.0) + dB_t, mask=bc_mask)
            tl.store(dC_base + bc_off, tl.load(dC_base + bc_off, mask=bc_mask, other=0.0) + dC_t, mask=bc_mask)
    part = (b * tl.num_programs(2) + pid2) * dim
    tl.store(dA_ptr + (part + d[:, None]) * N + n[None, :], dA_acc, mask=dn_mask)
    if HAS_D:
        tl.store(dD_ptr + part + d, dD_acc, mask=dmask)
    if HAS_BIAS:
        tl.store(dbias_ptr + part + d, dbias_acc, mask=dmask)


@triton.jit
def _chunk_grad_state_kernel(
    delta_ptr, A_ptr, C_ptr, index_ptr, pindex_ptr, bias_ptr, dy_ptr, dhidden_ptr,
    gloc_ptr, decay_ptr,
    T, dim, n_chunks,
    sd_b, sd_l, sd_k, sd_d,
    sC_b, sC_l, sC_k, sC_n,
    sy_b, sy_l, sy_k,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CK: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_DHIDDEN: tl.constexpr,
):
    """Program (b, channel block, k * n_chunks + c): the state gradient this chunk alone passes to the chunk
    before it, exp(dt_start A) g_start with g_t = dy_t C_t + exp(dt_{t+1} A) g_{t+1} from a zero carry, and the
    product of the chunk's decays (so carry_{c-1} = local_c + decay_c * carry_c)."""
    b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    k = (tl.program_id(2) // n_chunks).to(tl.int64)
    c = tl.program_id(2) % n_chunks
    K = tl.num_programs(2) // n_chunks
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    dmask = d < dim
    nmask = n < N
    dn_mask = dmask[:, None] & nmask[None, :]
    A2 = tl.load(A_ptr + (k * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0) * 1.4426950408889634
    bias = tl.load(bias_ptr + k * dim + d, mask=dmask & HAS_BIAS, other=0.0)
    t0 = c * CK
    steps = tl.minimum(CK, T - t0)
    g = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    log_decay = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    exponent = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for jj in range(steps):
        t = t0 + steps - 1 - jj
        p = tl.load(index_ptr + k * T + t).to(tl.int64)
        q = tl.load(pindex_ptr + k * T + t).to(tl.int64)
        valid = (p >= 0) & (q >= 0)
        p = tl.maximum(p, 0)
        q = tl.maximum(q, 0)
        s = tl.load(delta_ptr + b * sd_b + q * sd_l + k * sd_k + d * sd_d, mask=dmask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            s += bias
        dt = tl.where(valid, _softplus(s, SOFTPLUS), 0.0)
        Ct = tl.load(C_ptr + b * sC_b + q * sC_l + k * sC_k + n * sC_n, mask=nmask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + b * sy_b + p * sy_l + k * sy_k + d, mask=dmask & valid, other=0.0)
        g = tl.exp2(exponent) * g + dy[:, None] * Ct[None, :]  # exponent of step t + 1
        if HAS_DHIDDEN:
            g += tl.load(dhidden_ptr + (b * sy_b + p * sy_l + k * sy_k + d[:, None]) * N + n[None, :],
                         mask=dn_mask & valid, other=0.0)
        exponent = dt[:, None] * A2
        log_decay += exponent
    off = (((b * K + k) * n_chunks + c) * dim + d[:, None]) * N + n[None, :]
    tl.store(gloc_ptr + off, tl.exp2(exponent) * g, mask=dn_mask)
    tl.store(decay_ptr + off, tl.exp2(log_decay), mask=dn_mask)


@triton.jit
def _chunk_grad_carry_kernel(
    gloc_ptr, decay_ptr, carry_ptr, dim, n_chunks,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Program (b, channel block, k): gradient carried into each chunk from the later ones, last to first."""
    b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    k = tl.program_id(2).to(tl.int64)
    K = tl.num_programs(2)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    dn_mask = (d < dim)[:, None] & (n < N)[None, :]
    carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for i in range(n_chunks):
        off = (((b * K + k) * n_chunks + n_chunks - 1 - i) * dim + d[:, None]) * N + n[None, :]
        tl.store(carry_ptr + off, carry, mask=dn_mask)
        carry = tl.load(gloc_ptr + off, mask=dn_mask, other=0.0) + tl.load(decay_ptr + off, mask=dn_mask, other=0.0) * carry


def _blocks(dim: int, N: int) -> Tuple[int, int]:
    block_n = triton.next_power_of_2(N)
    block_d = min(triton.next_power_of_2(dim), max(16, 512 // block_n))
    return block_d, block_n


def _n_chunks(steps: int) -> int:
    return max(1, math.ceil(steps / CHUNK))


def _tables(prob: ScanProblem) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (prob.index.to(torch.int32).contiguous(), prob.param_index.to(torch.int32).contiguous(),
            prob.groups.to(torch.int32).contiguous())


def _check_dtype(prob: ScanProblem) -> None:
    if prob.u.dtype == torch.float64:
        raise ValueError("u: got dtype torch.float64; the triton backend computes in float32 "
                         "(use backend='torch' or 'reference' for float64)")


def _common_args(prob: ScanProblem):
    u, delta, B, C = prob.u, prob.delta, prob.B, prob.C
    A = prob.A.float().contiguous()
    D = prob.D.float().contiguous() if prob.D is not None else A
    bias = prob.delta_bias.float().contiguous() if prob.delta_bias is not None else A
    return (u, delta, A, B, C, D, bias, *_tables(prob)), (
        *u.stride(), *delta.stride(), *B.stride(), *C.stride(),
    )


# Below this many (batch x channel block x route) programs the GPU is not filled by whole-route programs
# and the scan splits routes into chunks (measured on the H100: 512 programs of 3136 steps ran 1.6x faster
# chunked; 3072 programs of N = 16 ran 1.5x slower chunked, the extra state pass costing more exp's).
PARALLEL_PROGRAMS = 1024


def _use_chunks(batch: int, n_db: int, K: int, n_chunks: int) -> bool:
    return n_chunks > 1 and batch * n_db * K < PARALLEL_PROGRAMS


def forward(
    prob: ScanProblem, z: Optional[torch.Tensor], merge: str, out_dtype: torch.dtype, return_hidden: bool
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor, Optional[torch.Tensor]]:
    """Chunk-parallel when routes never repeat a token (three launches: chunk states, carry, outputs);
    otherwise one program walks each whole route (repeated tokens accumulate in order)."""
    _check_dtype(prob)
    batch, length, K, dim, N, T = prob.sizes
    block_d, block_n = _blocks(dim, N)
    n_db = triton.cdiv(dim, block_d)
    n_chunks = _n_chunks(T)
    new = prob.u.new_empty if prob.routes_cover else prob.u.new_zeros  # every row written once: no zeroing
    y = new(batch, length, K, dim, dtype=torch.float32)
    hidden = new(batch, length, K, dim, N, dtype=torch.float32) if return_hidden else None
    ckpt = prob.u.new_empty(batch, K, n_chunks, dim, N, dtype=torch.float32)
    tensors, strides = _common_args(prob)
    u, delta, A, B, C, D, bias, index, pindex, group = tensors
    flags = dict(HAS_BIAS=prob.delta_bias is not None, SOFTPLUS=prob.delta_softplus)
    chunked = _use_chunks(batch, n_db, K, n_chunks) and prob.routes_unique
    if chunked:
        hloc, decay = torch.empty_like(ckpt), torch.empty_like(ckpt)
        _chunk_state_kernel[(batch, n_db, K * n_chunks)](
            u, delta, A, B, index, pindex, group, bias, hloc, decay, T, dim, n_chunks, *strides[:12],
            N=N, BLOCK_D=block_d, BLOCK_N=block_n, CK=CHUNK, **flags,
        )
        _chunk_carry_kernel[(batch, n_db, K)](hloc, decay, ckpt, dim, n_chunks, N=N, BLOCK_D=block_d, BLOCK_N=block_n)
    span = CHUNK if chunked else T
    _scan_fwd_kernel[(batch, n_db, K * triton.cdiv(T, span))](
        *tensors, y, hidden if hidden is not None else y, ckpt,
        T, dim, n_chunks, span, *strides, *y.stride()[:3],
        N=N, BLOCK_D=block_d, BLOCK_N=block_n, CK=CHUNK, HAS_D=prob.D is not None,
        HAS_HIDDEN=return_hidden, CHUNKED=chunked, ACCUMULATE=not prob.routes_cover, **flags,
    )
    out, y_pre = gate_and_merge(prob, y, z, merge, out_dtype)
    return out, hidden, ckpt, y_pre


def backward(
    prob: ScanProblem,
    z: Optional[torch.Tensor],
    merge: str,
    ckpt: torch.Tensor,
    y_pre: Optional[torch.Tensor],
    dout: torch.Tensor,
    dhidden: Optional[torch.Tensor],
) -> Tuple[ScanGrads, Optional[torch.Tensor]]:
    _check_dtype(prob)
    batch, length, K, dim, N, T = prob.sizes
    block_d, block_n = _blocks(dim, N)
    n_db = triton.cdiv(dim, block_d)
    n_chunks = ckpt.shape[2]
    dy, dz = gate_and_merge_backward(prob, z, merge, y_pre, dout)
    dy = dy.contiguous()
    if dhidden is not None:
        dhidden = dhidden.float().contiguous()
    chunked = _use_chunks(batch, n_db, K, n_chunks) and prob.routes_unique
    spans = n_chunks if chunked else 1
    new = lambda *shape: prob.u.new_zeros(*shape, dtype=torch.float32)  # noqa: E731
    du_routes, ddelta = new(batch, length, K, dim), new(batch, length, K, dim)
    dB, dC = new(n_db, batch, length, K, N), new(n_db, batch, length, K, N)
    dA, dD, dbias = new(batch, K, spans, dim, N), new(batch, K, spans, dim), new(batch, K, spans, dim)
    scratch = prob.u.new_empty(batch * n_db * K * spans * (CHUNK + 1) * block_d * block_n, dtype=torch.float32)
    tensors, strides = _common_args(prob)
    u, delta, A, B, C, D, bias, index, pindex, group = tensors
    dhidden_arg = dhidden if dhidden is not None else dy
    flags = dict(HAS_BIAS=prob.delta_bias is not None, SOFTPLUS=prob.delta_softplus, HAS_DHIDDEN=dhidden is not None)
    carry = ckpt
    if chunked:
        gloc, decay, carry = torch.empty_like(ckpt), torch.empty_like(ckpt), torch.empty_like(ckpt)
        _chunk_grad_state_kernel[(batch, n_db, K * n_chunks)](
            delta, A, C, index, pindex, bias, dy, dhidden_arg, gloc, decay, T, dim, n_chunks,
            *strides[4:8], *strides[12:16], *dy.stride()[:3], N=N, BLOCK_D=block_d, BLOCK_N=block_n, CK=CHUNK, **flags,
        )
        _chunk_grad_carry_kernel[(batch, n_db, K)](gloc, decay, carry, dim, n_chunks, N=N, BLOCK_D=block_d, BLOCK_N=block_n)
    _scan_bwd_kernel[(batch, n_db, K * spans)](
        *tensors, dy, dhidden_arg, ckpt, scratch,
        du_routes, ddelta, dB, dC, dA, dD, dbias,
        carry, T, dim, length, n_chunks, *strides, *dy.stride()[:3],
        N=N, BLOCK_D=block_d, BLOCK_N=block_n, CK=CHUNK, HAS_D=prob.D is not None, CHUNKED=chunked, **flags,
    )
    u_slots = prob.u.shape[2]
    if u_slots == 1:
        du = du_routes.sum(2, keepdim=True)
    else:  # routes reading one slot summed through a one-hot matrix (no boolean indexing: no host sync)
        du = torch.einsum("blkd,ks->blsd", du_routes, F.one_hot(prob.groups, u_slots).to(du_routes.dtype))
    grads = ScanGrads(
        u=du, delta=ddelta, A=dA.sum((0, 2)), B=dB.sum(0), C=dC.sum(0),
        D=dD.sum((0, 2)) if prob.D is not None else None,
        delta_bias=dbias.sum((0, 2)) if prob.delta_bias is not None else None,
    )
    return grads, dz


def saved_shapes(sizes: ScanSizes, has_z: bool) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    ckpt = (sizes.batch, sizes.routes, _n_chunks(sizes.steps), sizes.dim, sizes.d_state)
    extra = (sizes.batch, sizes.length, sizes.routes, sizes.dim) if has_z else (0,)
    return ckpt, extra


def supports(device: torch.device) -> bool:
    """CUDA devices; the CPU only under the Triton interpreter (TRITON_INTERPRET=1, for tests)."""
    return device.type == "cuda" or (device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")
