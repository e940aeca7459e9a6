"""Tile-parallel Triton selective scan: a program walks its route a tile of CHUNK steps at a time.

Same semantics and saved state as the per-step kernels of :mod:`vssm.kernels.triton_scan` (reference:
:mod:`vssm.kernels.reference`), for routes that never visit a token twice (``Routes.tokens_unique``). Per tile
the rows of all its steps are gathered at once ([CHUNK, BLOCK_D] u / delta, [CHUNK, BLOCK_N] B / C), and the
recurrence h_t = a_t h_{t-1} + x_t (a = exp(dt A), x = dt u B) runs as one ``tl.associative_scan`` over the
tile's steps on the pairs (a, x), composed with the state carried in from the previous tile. So no step waits
for the previous step's loads, and the loads of a tile are all in flight together.

Program (batch, channel block, route). The forward saves the state at every tile start (the per-step kernels'
CHUNK checkpoints), so the backward recomputes a tile's states from one checkpoint in registers (no scratch),
then runs the reverse recurrence g_t = dy_t C_t + a_{t+1} g_{t+1} as a reverse scan over the tile, tiles last
to first. The state before a step, needed for dA and d(delta), is a_t h_{t-1} = h_t - x_t. Every output and
gradient row is stored once (unique tokens; buffers are zeroed by the caller when routes skip tokens); the
gradients shared across programs are written as partials and summed by the caller in a fixed order.
"""
from __future__ import annotations

from typing import Tuple

import triton
import triton.language as tl

from .triton_rows import _load_index, _load_rows, _softplus

# Elements of one [CHUNK, BLOCK_D, BLOCK_N] tile, and the warps that hold it.
TILE_ELEMENTS = 4096
TILE_WARPS = 8


@triton.jit
def _affine(a1, x1, a2, x2):
    """Compose h -> a1 h + x1, then h -> a2 h + x2."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _last_row(x, rows, CK: tl.constexpr):
    """x [CK, ...] -> x[CK - 1]."""
    return tl.sum(tl.where((rows == CK - 1)[:, None, None], x, 0.0), axis=0)


@triton.jit
def _first_row(x, rows):
    """x [CK, ...] -> x[0]."""
    return tl.sum(tl.where((rows == 0)[:, None, None], x, 0.0), axis=0)


@triton.jit
def _scan_fwd_tile_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, index_ptr, pindex_ptr, group_ptr,
    y_ptr, hidden_ptr, ckpt_ptr,
    T, dim, n_chunks,
    su_b, su_l, su_s, su_d,
    sd_b, sd_l, sd_k, sd_d,
    sB_b, sB_l, sB_k, sB_n,
    sC_b, sC_l, sC_k, sC_n,
    sy_b, sy_l, sy_k,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CK: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_HIDDEN: tl.constexpr,
):
    """Program (b, channel block, k): route k, tiles first to last; y_k rows (and hidden rows) stored once,
    the state before every tile saved in ckpt (b, K, n_chunks, dim, N)."""
    b = tl.program_id(0).to(tl.int64)
    k = tl.program_id(2).to(tl.int64)
    K = tl.num_programs(2)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    rows = tl.arange(0, CK)
    dmask = d < dim
    nmask = n < N
    dn_mask = dmask[:, None] & nmask[None, :]
    A2 = tl.load(A_ptr + (k * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0) * 1.4426950408889634
    Dk = tl.load(D_ptr + k * dim + d, mask=dmask & HAS_D, other=0.0)
    bias = tl.load(bias_ptr + k * dim + d, mask=dmask & HAS_BIAS, other=0.0)
    g = tl.load(group_ptr + k).to(tl.int64)
    ckpt_base = ckpt_ptr + ((b * K + k) * n_chunks * dim) * N
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(n_chunks):
        tl.store(ckpt_base + (c * dim + d[:, None]) * N + n[None, :], h, mask=dn_mask)
        p, q, valid = _load_index(index_ptr, pindex_ptr, k, c * CK + rows, 0, T, T)
        u, _, dt, Bt, Ct = _load_rows(
            u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g, p[:, None], q[:, None], valid[:, None], d[None, :],
            n[None, :], dmask[None, :], nmask[None, :], bias[None, :],
            su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
            HAS_BIAS, SOFTPLUS)
        a = tl.exp2(dt[:, :, None] * A2[None, :, :])
        x = (dt * u)[:, :, None] * Bt[:, None, :]
        decay, local = tl.associative_scan((a, x), 0, _affine)
        hs = local + decay * h[None, :, :]
        y = tl.sum(hs * Ct[:, None, :], axis=2) + Dk[None, :] * u
        row = b * sy_b + p[:, None] * sy_l + k * sy_k + d[None, :]
        tl.store(y_ptr + row, y, mask=valid[:, None] & dmask[None, :])
        if HAS_HIDDEN:
            tl.store(hidden_ptr + row[:, :, None] * N + n[None, None, :], hs,
                     mask=valid[:, None, None] & dn_mask[None, :, :])
        h = _last_row(hs, rows, CK)


@triton.jit
def _scan_bwd_tile_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, index_ptr, pindex_ptr, group_ptr,
    dy_ptr, dhidden_ptr, ckpt_ptr,
    du_ptr, ddelta_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
    T, dim, L, n_chunks,
    su_b, su_l, su_s, su_d,
    sd_b, sd_l, sd_k, sd_d,
    sB_b, sB_l, sB_k, sB_n,
    sC_b, sC_l, sC_k, sC_n,
    sy_b, sy_l, sy_k,
    sdy_b, sdy_l, sdy_k,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CK: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_DHIDDEN: tl.constexpr,
):
    """Program (b, channel block, k): route k, tiles last to first. du / ddelta / dhidden rows use the (sy)
    strides of the per-route buffers, dy its own (sdy, may be 0 on k); dB / dC are per-channel-block partials
    (n_db, b, L, K, N); dA / dD / dbias per-program partials (b, K, dim[, N])."""
    b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    k = tl.program_id(2).to(tl.int64)
    K = tl.num_programs(2)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    rows = tl.arange(0, CK)
    dmask = d < dim
    nmask = n < N
    dn_mask = dmask[:, None] & nmask[None, :]
    A = tl.load(A_ptr + (k * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0)
    A2 = A * 1.4426950408889634
    Dk = tl.load(D_ptr + k * dim + d, mask=dmask & HAS_D, other=0.0)
    bias = tl.load(bias_ptr + k * dim + d, mask=dmask & HAS_BIAS, other=0.0)
    g_slot = tl.load(group_ptr + k).to(tl.int64)
    ckpt_base = ckpt_ptr + ((b * K + k) * n_chunks * dim) * N
    part_BC = pid_d * (tl.num_programs(0) * L * K * N)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    g_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # g at the first step of the later tile
    for i in range(n_chunks):
        c = n_chunks - 1 - i
        t = c * CK + rows
        p, q, valid = _load_index(index_ptr, pindex_ptr, k, t, 0, T, T)
        u, s, dt, Bt, Ct = _load_rows(
            u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g_slot, p[:, None], q[:, None], valid[:, None], d[None, :],
            n[None, :], dmask[None, :], nmask[None, :], bias[None, :],
            su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
            HAS_BIAS, SOFTPLUS)
        # dt of the next step (its decay links g_t to g_{t+1}); the step after the route's end is identity
        _, q1, valid1 = _load_index(index_ptr, pindex_ptr, k, t + 1, 0, T, T)
        s1 = tl.load(delta_ptr + b * sd_b + q1[:, None] * sd_l + k * sd_k + d[None, :] * sd_d,
                     mask=dmask[None, :], other=0.0).to(tl.float32)
        if HAS_BIAS:
            s1 += bias[None, :]
        dt1 = tl.where(valid1[:, None], _softplus(s1, SOFTPLUS), 0.0)
        vmask = valid[:, None] & dmask[None, :]
        dy = tl.load(dy_ptr + b * sdy_b + p[:, None] * sdy_l + k * sdy_k + d[None, :], mask=vmask,
                     other=0.0).to(tl.float32)
        # the tile's states from its checkpoint
        h0 = tl.load(ckpt_base + (c * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0)
        a = tl.exp2(dt[:, :, None] * A2[None, :, :])
        x = (dt * u)[:, :, None] * Bt[:, None, :]
        decay, local = tl.associative_scan((a, x), 0, _affine)
        hs = local + decay * h0[None, :, :]
        # reverse recurrence over the tile, joined to the carry from the later tile
        dyC = dy[:, :, None] * Ct[:, None, :]
        if HAS_DHIDDEN:
            row = b * sy_b + p[:, None] * sy_l + k * sy_k + d[None, :]
            dyC += tl.load(dhidden_ptr + row[:, :, None] * N + n[None, None, :],
                           mask=valid[:, None, None] & dn_mask[None, :, :], other=0.0)
        a1 = tl.exp2(dt1[:, :, None] * A2[None, :, :])
        decay_g, local_g = tl.associative_scan((a1, dyC), 0, _affine, reverse=True)
        g = local_g + decay_g * g_carry[None, :, :]  # zero on masked lanes (their dy, C, dhidden load as 0)
        g_carry = _first_row(g, rows)
        g_decay = g * (hs - x)  # d(loss) / d(dt * A): g_t a_t h_{t-1}
        dA_acc += tl.sum(g_decay * dt[:, :, None], axis=0)
        gB = tl.sum(g * Bt[:, None, :], axis=2)
        ddt = tl.sum(g_decay * A[None, :, :], axis=2) + gB * u
        du = gB * dt + Dk[None, :] * dy
        if HAS_D:
            dD_acc += tl.sum(dy * u, axis=0)
        if SOFTPLUS:
            ds = ddt * tl.where(s <= 20.0, tl.sigmoid(s), 1.0)
        else:
            ds = ddt
        ds = tl.where(vmask, ds, 0.0)
        dbias_acc += tl.sum(ds, axis=0)
        tl.store(du_ptr + b * sy_b + p[:, None] * sy_l + k * sy_k + d[None, :], du, mask=vmask)
        tl.store(ddelta_ptr + b * sy_b + q[:, None] * sy_l + k * sy_k + d[None, :], ds, mask=vmask)
        bc = part_BC + ((b * L + q[:, None]) * K + k) * N + n[None, :]
        bc_mask = valid[:, None] & nmask[None, :]
        tl.store(dB_ptr + bc, tl.sum(g * (dt * u)[:, :, None], axis=1), mask=bc_mask)
        tl.store(dC_ptr + bc, tl.sum(hs * dy[:, :, None], axis=1), mask=bc_mask)
    part = (b * K + k) * dim
    tl.store(dA_ptr + (part + d[:, None]) * N + n[None, :], dA_acc, mask=dn_mask)
    if HAS_D:
        tl.store(dD_ptr + part + d, dD_acc, mask=dmask)
    if HAS_BIAS:
        tl.store(dbias_ptr + part + d, dbias_acc, mask=dmask)


def tile_blocks(dim: int, N: int, steps: int) -> Tuple[int, int]:
    """(BLOCK_D, BLOCK_N) so that a [steps, BLOCK_D, BLOCK_N] tile holds at most TILE_ELEMENTS elements."""
    block_n = triton.next_power_of_2(N)
    block_d = max(1, min(triton.next_power_of_2(dim), TILE_ELEMENTS // (steps * block_n)))
    return block_d, block_n
