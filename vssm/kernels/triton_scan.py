"""Triton selective scan: all routes in one launch, route tables read in-kernel, deterministic.

Reference semantics: :mod:`vssm.kernels.reference` (tests compare against it).

Forward: programs cover (batch, block of BLOCK_D channels, route k[, chunk]). A program walks its steps,
gathers the visited token's u / delta / B / C rows straight from the raster-order inputs (no re-ordered
copies), keeps the state [BLOCK_D, N] in fp32 registers, and writes y_k into an fp32 (bf16 with PARTIALS_BF16, for
bf16 inputs merged without a gate) per-route buffer
(batch, L, K, dim), rows only this program owns (no atomics, so runs are bit-identical): stored once when every
route visits every token once, else accumulated by read-modify-write (repeated tokens, padding). B_t / C_t are
loaded once per block of channels; loops are pipelined two deep (rows of step t + 1 and tokens of step t + 2
load while step t computes). The state at every CHUNK-th step is saved (fp32) for the backward. Gate, merge
and cast are one epilogue kernel (one read of the per-route buffer).
Two schedules, same arithmetic per step:
- whole route per program, when routes repeat a token (in-order accumulation) or when there are enough
  programs to fill the GPU;
- chunk-parallel otherwise: chunk states from a zero start with their decay products (one program per chunk),
  a short sequential carry pass over chunks (the saved states), then every chunk re-scanned from its state.
With ``TILES`` set, routes without repeated tokens run the tile-parallel kernels of
:mod:`vssm.kernels.triton_scan_tiled` instead, in the same two schedules (same saved states and carry passes).

Backward: the same two schedules. Whole route: chunks last to first. Chunk-parallel: per-chunk state-gradient
summaries and decays, a short reverse carry pass, then every chunk at once from its carried gradient. In a
chunk the states are recomputed from its checkpoint into a small per-program scratch (CHUNK + 1 states), then
the reverse recurrence g_t = dy_t C_t + exp(dt_{t+1} A) g_{t+1} runs over the chunk. dy is read through its
strides (broadcast over routes, no copy). Gradient rows the program owns are stored once when every route visits
every token once (ddelta then in delta's dtype), else accumulated in place; those shared across programs (dB, dC across channel blocks; dA, dD,
d(delta_bias) across batch and chunks; du across routes reading one u slot) are written as partials and summed
in a fixed order afterwards.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from .checks import ScanSizes
from .triton_rows import _load_index, _load_rows, _softplus, _store_partials
from .torch_scan import ScanGrads, ScanProblem, gate_and_merge_backward, sum_per_slot
from . import triton_scan_tiled as tiled

CHUNK = 64  # steps between saved states


# Loops are software-pipelined two deep: the rows of step t + 1 (whose tokens are already known) and the tokens
# of step t + 2 are loaded while step t is computed, so no step waits for an index load followed by a row load.


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
    p, q, valid = _load_index(index_ptr, pindex_ptr, k, t0, t0, t_end, T)
    u, _, dt, Bt, Ct = _load_rows(
        u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g, p, q, valid, d, n, dmask, nmask, bias,
        su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
        HAS_BIAS, SOFTPLUS)
    p_n, q_n, valid_n = _load_index(index_ptr, pindex_ptr, k, t0 + 1, t0, t_end, T)
    for t in range(t0, t_end):
        if not CHUNKED:
            if t % CK == 0:
                tl.store(ckpt_base + ((t // CK) * dim + d[:, None]) * N + n[None, :], h, mask=dn_mask)
        u_n, _, dt_n, B_n, C_n = _load_rows(
            u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g, p_n, q_n, valid_n, d, n, dmask, nmask, bias,
            su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
            HAS_BIAS, SOFTPLUS)
        p_nn, q_nn, valid_nn = _load_index(index_ptr, pindex_ptr, k, t + 2, t0, t_end, T)
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
        p_n, q_n, valid_n = p_nn, q_nn, valid_nn


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
    p, q, valid = _load_index(index_ptr, pindex_ptr, k, t0, t0, t_end, T)
    u, _, dt, Bt, _ = _load_rows(
        u_ptr, delta_ptr, B_ptr, B_ptr, b, k, g, p, q, valid, d, n, dmask, nmask, bias,
        su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sB_b, sB_l, sB_k, sB_n,
        HAS_BIAS, SOFTPLUS)
    p_n, q_n, valid_n = _load_index(index_ptr, pindex_ptr, k, t0 + 1, t0, t_end, T)
    for t in range(t0, t_end):
        u_n, _, dt_n, B_n, _ = _load_rows(
            u_ptr, delta_ptr, B_ptr, B_ptr, b, k, g, p_n, q_n, valid_n, d, n, dmask, nmask, bias,
            su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sB_b, sB_l, sB_k, sB_n,
            HAS_BIAS, SOFTPLUS)
        p_nn, q_nn, valid_nn = _load_index(index_ptr, pindex_ptr, k, t + 2, t0, t_end, T)
        exponent = dt[:, None] * A2
        h = tl.exp2(exponent) * h + (dt * u)[:, None] * Bt[None, :]
        log_decay += exponent
        u, dt, Bt = u_n, dt_n, B_n
        p_n, q_n, valid_n = p_nn, q_nn, valid_nn
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
    sdy_b, sdy_l, sdy_k,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CK: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_DHIDDEN: tl.constexpr,
    CHUNKED: tl.constexpr, ACCUMULATE: tl.constexpr,
):
    """Program (b, channel block, k * n_spans + c). CHUNKED: only chunk c, starting from the gradient carried
    in from the later chunks (``carry_ptr``); else all chunks of route k, last to first. ACCUMULATE: add into
    the zeroed du / ddelta / dB / dC rows (routes that repeat or skip tokens); else each row is stored once.
    du, ddelta and dhidden rows use the (sy) strides of the per-route buffers, dy its own (sdy, may be 0 on k)."""
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
        t1 = tl.minimum(t0 + CK, T)
        steps = t1 - t0
        h = tl.load(ckpt_base + (c * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0)
        tl.store(scratch + tile, h)
        # recompute the chunk's states: scratch[j + 1] = h_{t0 + j}
        p, q, valid = _load_index(index_ptr, pindex_ptr, k, t0, t0, t1, T)
        u, _, dt, Bt, _ = _load_rows(
            u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g_slot, p, q, valid, d, n, dmask, nmask, bias,
            su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
            HAS_BIAS, SOFTPLUS)
        p_n, q_n, valid_n = _load_index(index_ptr, pindex_ptr, k, t0 + 1, t0, t1, T)
        for j in range(steps):
            u_n, _, dt_n, B_n, _ = _load_rows(
                u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g_slot, p_n, q_n, valid_n, d, n, dmask, nmask, bias,
                su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
                HAS_BIAS, SOFTPLUS)
            p_nn, q_nn, valid_nn = _load_index(index_ptr, pindex_ptr, k, t0 + j + 2, t0, t1, T)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bt[None, :]
            tl.store(scratch + (j + 1) * BLOCK_D * BLOCK_N + tile, h)
            u, dt, Bt = u_n, dt_n, B_n
            p_n, q_n, valid_n = p_nn, q_nn, valid_nn
        # reverse recurrence over the chunk, pipelined towards earlier steps; h_t is the previous step's h_prev
        p, q, valid = _load_index(index_ptr, pindex_ptr, k, t1 - 1, t0, t1, T)
        u, s, dt, Bt, Ct = _load_rows(
            u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g_slot, p, q, valid, d, n, dmask, nmask, bias,
            su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
            HAS_BIAS, SOFTPLUS)
        dy = tl.load(dy_ptr + b * sdy_b + p * sdy_l + k * sdy_k + d, mask=dmask & valid, other=0.0).to(tl.float32)
        h_t = tl.load(scratch + steps * BLOCK_D * BLOCK_N + tile)
        p_n, q_n, valid_n = _load_index(index_ptr, pindex_ptr, k, t1 - 2, t0, t1, T)
        for jj in range(steps):
            j = steps - 1 - jj
            u_n, s_n, dt_n, B_n, C_n = _load_rows(
                u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g_slot, p_n, q_n, valid_n, d, n, dmask, nmask, bias,
                su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
                HAS_BIAS, SOFTPLUS)
            dy_n = tl.load(dy_ptr + b * sdy_b + p_n * sdy_l + k * sdy_k + d, mask=dmask & valid_n,
                           other=0.0).to(tl.float32)
            p_nn, q_nn, valid_nn = _load_index(index_ptr, pindex_ptr, k, t0 + j - 2, t0, t1, T)
            h_prev = tl.load(scratch + j * BLOCK_D * BLOCK_N + tile)
            vmask = dmask & valid
            decay = tl.exp2(dt[:, None] * A2)
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
            dd_row = ddelta_ptr + b * sy_b + q * sy_l + k * sy_k + d
            bc_off = ((b * L + q) * K + k) * N + n
            bc_mask = nmask & valid
            dB_t = tl.sum(g * (dt * u)[:, None], axis=0)
            dC_t = tl.sum(h_t * dy[:, None], axis=0)
            if ACCUMULATE:
                du += tl.load(du_row, mask=vmask, other=0.0)
                ds += tl.load(dd_row, mask=vmask, other=0.0)
                dB_t += tl.load(dB_base + bc_off, mask=bc_mask, other=0.0)
                dC_t += tl.load(dC_base + bc_off, mask=bc_mask, other=0.0)
            tl.store(du_row, du, mask=vmask)
            tl.store(dd_row, ds, mask=vmask)
            tl.store(dB_base + bc_off, dB_t, mask=bc_mask)
            tl.store(dC_base + bc_off, dC_t, mask=bc_mask)
            p, q, valid, u, s, dt, Bt, Ct, dy, h_t = p_n, q_n, valid_n, u_n, s_n, dt_n, B_n, C_n, dy_n, h_prev
            p_n, q_n, valid_n = p_nn, q_nn, valid_nn
    _store_partials(dA_ptr, dD_ptr, dbias_ptr, (b * tl.num_programs(2) + pid2) * dim, d, n, dmask, dn_mask, dA_acc,
                    dD_acc, dbias_acc, N, HAS_D, HAS_BIAS)


@triton.jit
def _chunk_grad_state_kernel(
    delta_ptr, A_ptr, C_ptr, index_ptr, pindex_ptr, bias_ptr, dy_ptr, dhidden_ptr,
    gloc_ptr, decay_ptr,
    T, dim, n_chunks,
    sd_b, sd_l, sd_k, sd_d,
    sC_b, sC_l, sC_k, sC_n,
    sy_b, sy_l, sy_k,
    sdy_b, sdy_l, sdy_k,
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
    t1 = tl.minimum(t0 + CK, T)
    g = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    log_decay = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    exponent = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    p_n, q_n, valid_n = _load_index(index_ptr, pindex_ptr, k, t1 - 1, t0, t1, T)
    for jj in range(t1 - t0):
        t = t1 - 1 - jj
        p, q, valid = p_n, q_n, valid_n
        p_n, q_n, valid_n = _load_index(index_ptr, pindex_ptr, k, t - 1, t0, t1, T)
        s = tl.load(delta_ptr + b * sd_b + q * sd_l + k * sd_k + d * sd_d, mask=dmask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            s += bias
        dt = tl.where(valid, _softplus(s, SOFTPLUS), 0.0)
        Ct = tl.load(C_ptr + b * sC_b + q * sC_l + k * sC_k + n * sC_n, mask=nmask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + b * sdy_b + p * sdy_l + k * sdy_k + d, mask=dmask & valid, other=0.0).to(tl.float32)
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


@triton.jit
def _gate_merge_kernel(
    y_ptr, z_ptr, group_ptr, out_ptr, rows, L, K, dim, scale,
    sz_b, sz_l, sz_s, sz_d,
    HAS_Z: tl.constexpr, MERGE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Epilogue, one pass: per-route y (rows = b * L, K, dim) -> y_k * silu(z[slot of k]) (HAS_Z), summed
    over routes times ``scale`` (MERGE) into out (rows, dim), or kept per route in out (rows, K, dim); out is
    written in its own dtype."""
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = (r < rows)[:, None] & (d < dim)[None, :]
    r64 = r.to(tl.int64)[:, None]
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for k in range(K):
        y = tl.load(y_ptr + (r64 * K + k) * dim + d[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_Z:
            g = tl.load(group_ptr + k).to(tl.int64)
            z = tl.load(z_ptr + (r64 // L) * sz_b + (r64 % L) * sz_l + g * sz_s + d[None, :] * sz_d, mask=mask,
                        other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        if MERGE:
            acc += y
        else:
            tl.store(out_ptr + (r64 * K + k) * dim + d[None, :], y, mask=mask)
    if MERGE:
        tl.store(out_ptr + r64 * dim + d[None, :], acc * scale, mask=mask)


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


# Routes without repeated tokens run on the tile-parallel kernels (triton_scan_tiled). Off until measured on the
# GPU against the per-step kernels (benchmarks/scan_bench.py times both); PARALLEL_PROGRAMS, measured for the
# per-step kernels, picks their schedule too.
TILES = False


# Per-route outputs kept in bf16 instead of fp32 for bf16 inputs merged without a gate, when every route visits
# every token once (rows stored, never accumulated): half the bytes of the per-route buffer and of the merge's read,
# each route's output rounded once before the fp32 merge. Off until measured on the GPU (scan_bench --variants).
PARTIALS_BF16 = False


def _partials_dtype(prob: ScanProblem, z: Optional[torch.Tensor], merge: str) -> torch.dtype:
    half = PARTIALS_BF16 and prob.u.dtype == torch.bfloat16 and z is None and merge != "none" and prob.routes_cover
    return torch.bfloat16 if half else torch.float32


@dataclass(frozen=True)
class _Schedule:
    """How one call is laid out; the forward and the backward of a call derive the same one from its sizes."""

    tiles: bool  # tile-parallel kernels, else per-step loops
    chunked: bool  # one program per chunk (carry passes between), else one per whole route
    block_d: int
    block_n: int
    n_db: int


def _schedule(prob: ScanProblem) -> _Schedule:
    batch, _, K, dim, N, T = prob.sizes
    tiles = TILES and prob.routes_unique
    block_d, block_n = tiled.tile_blocks(dim, N, CHUNK) if tiles else _blocks(dim, N)
    n_db = triton.cdiv(dim, block_d)
    chunked = _n_chunks(T) > 1 and batch * n_db * K < PARALLEL_PROGRAMS and prob.routes_unique
    return _Schedule(tiles, chunked, block_d, block_n, n_db)


def forward(
    prob: ScanProblem, z: Optional[torch.Tensor], merge: str, out_dtype: torch.dtype, return_hidden: bool
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor, Optional[torch.Tensor]]:
    """Chunk-parallel when routes never repeat a token and whole routes cannot fill the GPU (three launches:
    chunk states, carry, outputs), else one program per whole route (repeated tokens accumulate in order)."""
    _check_dtype(prob)
    batch, length, K, dim, N, T = prob.sizes
    plan = _schedule(prob)
    n_db = plan.n_db
    n_chunks = _n_chunks(T)
    new = prob.u.new_empty if prob.routes_cover else prob.u.new_zeros  # every row written once: no zeroing
    y = new(batch, length, K, dim, dtype=_partials_dtype(prob, z, merge))
    hidden = new(batch, length, K, dim, N, dtype=torch.float32) if return_hidden else None
    ckpt = prob.u.new_empty(batch, K, n_chunks, dim, N, dtype=torch.float32)
    tensors, strides = _common_args(prob)
    u, delta, A, B, C, D, bias, index, pindex, group = tensors
    blocks = dict(N=N, BLOCK_D=plan.block_d, BLOCK_N=plan.block_n)
    flags = dict(CK=CHUNK, HAS_BIAS=prob.delta_bias is not None, SOFTPLUS=prob.delta_softplus, **blocks,
                 **(dict(num_warps=tiled.TILE_WARPS) if plan.tiles else {}))
    if plan.chunked:
        hloc, decay = torch.empty_like(ckpt), torch.empty_like(ckpt)
        state_kernel = tiled._chunk_state_tile_kernel if plan.tiles else _chunk_state_kernel
        state_kernel[(batch, n_db, K * n_chunks)](
            u, delta, A, B, index, pindex, group, bias, hloc, decay, T, dim, n_chunks, *strides[:12], **flags,
        )
        _chunk_carry_kernel[(batch, n_db, K)](hloc, decay, ckpt, dim, n_chunks, **blocks)
    grid = (batch, n_db, K * (n_chunks if plan.chunked else 1))
    args = (*tensors, y, hidden if hidden is not None else y, ckpt, T, dim, n_chunks)
    options = dict(HAS_D=prob.D is not None, HAS_HIDDEN=return_hidden, CHUNKED=plan.chunked, **flags)
    if plan.tiles:
        tiled._scan_fwd_tile_kernel[grid](*args, *strides, *y.stride()[:3], **options)
    else:
        span = CHUNK if plan.chunked else T
        _scan_fwd_kernel[grid](*args, span, *strides, *y.stride()[:3], ACCUMULATE=not prob.routes_cover, **options)
    out = _gate_and_merge(prob, y, z, merge, out_dtype)
    return out, hidden, ckpt, y if z is not None else None


def _gate_and_merge(
    prob: ScanProblem, y: torch.Tensor, z: Optional[torch.Tensor], merge: str, out_dtype: torch.dtype
) -> torch.Tensor:
    """The epilogue of :func:`vssm.kernels.torch_scan.gate_and_merge` in one pass over y (b, L, K, d) (fp32, or
    bf16 with PARTIALS_BF16), summed in fp32."""
    batch, length, K, dim, _, _ = prob.sizes
    if z is None and merge == "none" and out_dtype == torch.float32:
        return y
    out = y.new_empty((batch, length, dim) if merge != "none" else (batch, length, K, dim), dtype=out_dtype)
    block_d = min(triton.next_power_of_2(dim), 128)
    block_r = max(1, 2048 // block_d)
    rows = batch * length
    _gate_merge_kernel[(triton.cdiv(rows, block_r), triton.cdiv(dim, block_d))](
        y, z if z is not None else y, prob.groups, out, rows, length, K, dim, 1.0 / K if merge == "mean" else 1.0,
        *(z.stride() if z is not None else (0, 0, 0, 0)),
        HAS_Z=z is not None, MERGE=merge != "none", BLOCK_R=block_r, BLOCK_D=block_d,
    )
    return out


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
    plan = _schedule(prob)
    n_db = plan.n_db
    n_chunks = ckpt.shape[2]
    dy, dz = gate_and_merge_backward(prob, z, merge, y_pre, dout)
    if dy.stride(3) != 1:  # dy may be broadcast over routes (stride 0 on k); channels must be unit-stride
        dy = dy.contiguous()
    if dhidden is not None:
        dhidden = dhidden.float().contiguous()
    spans = n_chunks if plan.chunked else 1
    # routes visiting every token once store each gradient row once: no zero fill, no read-back, and ddelta
    # (one row per route and token, nothing to sum) is written in delta's dtype directly
    store_only = prob.routes_cover
    alloc = prob.u.new_empty if store_only else prob.u.new_zeros
    f32 = torch.float32
    du_routes = alloc(batch, length, K, dim, dtype=f32)
    ddelta = alloc(batch, length, K, dim, dtype=prob.delta.dtype if store_only else f32)
    dB, dC = alloc(n_db, batch, length, K, N, dtype=f32), alloc(n_db, batch, length, K, N, dtype=f32)
    # per-program partials, each stored whole
    dA = prob.u.new_empty(batch, K, spans, dim, N, dtype=f32)
    dD, dbias = prob.u.new_empty(batch, K, spans, dim, dtype=f32), prob.u.new_empty(batch, K, spans, dim, dtype=f32)
    tensors, strides = _common_args(prob)
    u, delta, A, B, C, D, bias, index, pindex, group = tensors
    dhidden_arg = dhidden if dhidden is not None else dy
    blocks = dict(N=N, BLOCK_D=plan.block_d, BLOCK_N=plan.block_n)
    flags = dict(CK=CHUNK, HAS_BIAS=prob.delta_bias is not None, SOFTPLUS=prob.delta_softplus,
                 HAS_DHIDDEN=dhidden is not None, **blocks, **(dict(num_warps=tiled.TILE_WARPS) if plan.tiles else {}))
    route_strides, dy_strides = du_routes.stride()[:3], dy.stride()[:3]
    carry = ckpt
    if plan.chunked:
        gloc, decay, carry = torch.empty_like(ckpt), torch.empty_like(ckpt), torch.empty_like(ckpt)
        state_kernel = tiled._chunk_grad_state_tile_kernel if plan.tiles else _chunk_grad_state_kernel
        state_kernel[(batch, n_db, K * n_chunks)](
            delta, A, C, index, pindex, bias, dy, dhidden_arg, gloc, decay, T, dim, n_chunks,
            *strides[4:8], *strides[12:16], *route_strides, *dy_strides, **flags,
        )
        _chunk_grad_carry_kernel[(batch, n_db, K)](gloc, decay, carry, dim, n_chunks, **blocks)
    grid = (batch, n_db, K * spans)
    grad_args = (du_routes, ddelta, dB, dC, dA, dD, dbias, carry, T, dim, length, n_chunks)
    options = dict(HAS_D=prob.D is not None, CHUNKED=plan.chunked, **flags)
    if plan.tiles:
        tiled._scan_bwd_tile_kernel[grid](
            *tensors, dy, dhidden_arg, ckpt, *grad_args, *strides, *route_strides, *dy_strides, **options,
        )
    else:
        scratch = prob.u.new_empty(batch * n_db * K * spans * (CHUNK + 1) * plan.block_d * plan.block_n, dtype=f32)
        _scan_bwd_kernel[grid](
            *tensors, dy, dhidden_arg, ckpt, scratch, *grad_args, *strides, *route_strides, *dy_strides,
            ACCUMULATE=not store_only, **options,
        )
    du = sum_per_slot(du_routes, prob.groups, prob.u.shape[2])
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
