"""Tile-parallel Triton selective scan: a program walks its route a tile of CHUNK steps at a time.

Same semantics and saved state as the per-step kernels of :mod:`vssm.kernels.triton_scan` (reference:
:mod:`vssm.kernels.reference`), for routes that never visit a token twice (``Routes.tokens_unique``). Per tile
the rows of all its steps are gathered at once ([CHUNK, BLOCK_D] u / delta, [CHUNK, BLOCK_N] B / C), and the
recurrence h_t = a_t h_{t-1} + x_t (a = exp(dt A), x = dt u B) runs as one ``tl.associative_scan`` over the
tile's steps on the pairs (a, x), composed with the state carried in. So no step waits for the previous step's
loads, and the loads of a tile are all in flight together.

Programs cover (batch, channel block, route[, chunk]), as in the per-step kernels, with the same two schedules:
a program walks a whole route, or (chunk-parallel, when whole routes cannot fill the GPU) one chunk, starting
from the state or gradient carried in by the per-step kernels' carry passes over per-chunk summaries (computed
here tile-parallel too). The backward runs the reverse recurrence g_t = dy_t C_t + a_{t+1} g_{t+1} as a reverse
scan over the tile, joined to w = a_{t1} g_{t1} carried from the later tile, then recomputes the tile's states from
the checkpoint the forward saved at its start, in registers (no scratch; in this order fewer tiles are live at
once: 142 instead of 187 registers for N = 1 with Triton 3.6). The state before a step, needed for dA and
d(delta), is a_t h_{t-1} = h_t - x_t. Every output and
gradient row is stored once (unique tokens; buffers are zeroed by the caller when routes skip tokens); the
gradients shared across programs are written as partials and summed by the caller in a fixed order.
"""
from __future__ import annotations

from typing import Tuple

import triton
import triton.language as tl

from .triton_rows import _lanes, _load_index, _load_rows, _route_params, _softplus, _store_partials

# Elements of one [CHUNK, BLOCK_D, BLOCK_N] tile, and the warps that hold it: 4 elements a thread. Compiled for
# sm_90a by tools/kernel_registers.py, every tile kernel then fits in registers with Triton 3.6 and 3.8 (backward
# 107-188 registers, forward 42-80); at 2048 or 4096 elements the backward spills. Speed not measured yet.
TILE_ELEMENTS = 1024
TILE_WARPS = 8


@triton.jit
def _affine(a1, x1, a2, x2):
    """Compose h -> a1 h + x1, then h -> a2 h + x2."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _row(x, rows, r):
    """x [CK, ...] -> x[r]."""
    return tl.sum(tl.where((rows == r)[:, None, None], x, 0.0), axis=0)


@triton.jit
def _tile_scan(
    u_ptr, delta_ptr, B_ptr, C_ptr, index_ptr, pindex_ptr, b, k, g, t, T, d, n, dmask, nmask, A2, bias,
    su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):
    """Steps t [CK] of route k: tokens, rows, a = exp(dt A), x = dt u B and their scan (decay, local), so that
    h_t = local_t + decay_t * h_before_the_tile. Tensors [CK, BLOCK_D(, BLOCK_N)]."""
    p, q, valid = _load_index(index_ptr, pindex_ptr, k, t, 0, T, T)
    u, s, dt, Bt, Ct = _load_rows(
        u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g, p[:, None], q[:, None], valid[:, None], d[None, :], n[None, :],
        dmask[None, :], nmask[None, :], bias[None, :],
        su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
        HAS_BIAS, SOFTPLUS)
    a = tl.exp2(dt[:, :, None] * A2[None, :, :])
    x = (dt * u)[:, :, None] * Bt[:, None, :]
    decay, local = tl.associative_scan((a, x), 0, _affine)
    return p, q, valid, u, s, dt, Bt, Ct, a, x, decay, local


@triton.jit
def _tile_grad_scan(
    delta_ptr, dy_ptr, dhidden_ptr, index_ptr, pindex_ptr, b, k, p, valid, t, T, rows, d, n, dmask, dn_mask,
    Ct, A2, bias, sd_b, sd_l, sd_k, sd_d, sy_b, sy_l, sy_k, sdy_b, sdy_l, sdy_k,
    CK: tl.constexpr, N: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DHIDDEN: tl.constexpr,
):
    """Reverse recurrence of steps t [CK] from a zero carry: dy [CK, BLOCK_D] and the reverse scan
    (decay_g, local_g) of the pairs (a_{t+1}, dy_t C_t (+ dhidden_t)), with a_{t+1} = 1 on the tile's last row
    (the decay into the later tile is inside the carried w), so g_t = local_g_t + decay_g_t * w."""
    # dt of the next step within the tile
    _, q1, valid1 = _load_index(index_ptr, pindex_ptr, k, t + 1, 0, T, T)
    s1 = tl.load(delta_ptr + b * sd_b + q1[:, None] * sd_l + k * sd_k + d[None, :] * sd_d,
                 mask=dmask[None, :], other=0.0).to(tl.float32)
    if HAS_BIAS:
        s1 += bias[None, :]
    dt1 = tl.where((valid1 & (rows < CK - 1))[:, None], _softplus(s1, SOFTPLUS), 0.0)
    dy = tl.load(dy_ptr + b * sdy_b + p[:, None] * sdy_l + k * sdy_k + d[None, :],
                 mask=valid[:, None] & dmask[None, :], other=0.0).to(tl.float32)
    dyC = dy[:, :, None] * Ct[:, None, :]
    if HAS_DHIDDEN:
        row = b * sy_b + p[:, None] * sy_l + k * sy_k + d[None, :]
        dyC += tl.load(dhidden_ptr + row[:, :, None] * N + n[None, None, :],
                       mask=valid[:, None, None] & dn_mask[None, :, :], other=0.0)
    a1 = tl.exp2(dt1[:, :, None] * A2[None, :, :])
    decay_g, local_g = tl.associative_scan((a1, dyC), 0, _affine, reverse=True)
    return dy, decay_g, local_g


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
    CHUNKED: tl.constexpr,
):
    """Program (b, channel block, k * n_spans + c). CHUNKED: chunk c of route k from its saved state; else all
    of route k from a zero state, saving the state before every tile in ckpt (b, K, n_chunks, dim, N). y_k rows
    (and hidden rows) are stored once."""
    b = tl.program_id(0).to(tl.int64)
    n_spans = n_chunks if CHUNKED else 1
    k = (tl.program_id(2) // n_spans).to(tl.int64)
    K = tl.num_programs(2) // n_spans
    d, n, dmask, nmask, dn_mask = _lanes(tl.program_id(1), dim, N, BLOCK_D, BLOCK_N)
    rows = tl.arange(0, CK)
    _, A2, Dk, bias = _route_params(A_ptr, D_ptr, bias_ptr, k, d, n, dmask, dn_mask, dim, N, HAS_D, HAS_BIAS)
    g = tl.load(group_ptr + k).to(tl.int64)
    ckpt_base = ckpt_ptr + ((b * K + k) * n_chunks * dim) * N
    if CHUNKED:
        first = tl.program_id(2) % n_spans
        h = tl.load(ckpt_base + (first * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0)
    else:
        first = 0
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(first, first + n_chunks // n_spans):
        if not CHUNKED:
            tl.store(ckpt_base + (c * dim + d[:, None]) * N + n[None, :], h, mask=dn_mask)
        p, q, valid, u, s, dt, Bt, Ct, a, x, decay, local = _tile_scan(
            u_ptr, delta_ptr, B_ptr, C_ptr, index_ptr, pindex_ptr, b, k, g, c * CK + rows, T, d, n, dmask, nmask,
            A2, bias, su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
            HAS_BIAS, SOFTPLUS)
        hs = local + decay * h[None, :, :]
        y = tl.sum(hs * Ct[:, None, :], axis=2) + Dk[None, :] * u
        row = b * sy_b + p[:, None] * sy_l + k * sy_k + d[None, :]
        tl.store(y_ptr + row, y, mask=valid[:, None] & dmask[None, :])
        if HAS_HIDDEN:
            tl.store(hidden_ptr + row[:, :, None] * N + n[None, None, :], hs,
                     mask=valid[:, None, None] & dn_mask[None, :, :])
        h = _row(hs, rows, CK - 1)


@triton.jit
def _chunk_state_tile_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, index_ptr, pindex_ptr, group_ptr, bias_ptr,
    hloc_ptr, decay_ptr,
    T, dim, n_chunks,
    su_b, su_l, su_s, su_d,
    sd_b, sd_l, sd_k, sd_d,
    sB_b, sB_l, sB_k, sB_n,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CK: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):
    """Program (b, channel block, k * n_chunks + c): the chunk's state from a zero start and the product of its
    decays, so that state_end = decay * state_start + local (what the per-step carry pass consumes)."""
    b = tl.program_id(0).to(tl.int64)
    k = (tl.program_id(2) // n_chunks).to(tl.int64)
    c = tl.program_id(2) % n_chunks
    K = tl.num_programs(2) // n_chunks
    d, n, dmask, nmask, dn_mask = _lanes(tl.program_id(1), dim, N, BLOCK_D, BLOCK_N)
    rows = tl.arange(0, CK)
    _, A2, _, bias = _route_params(A_ptr, A_ptr, bias_ptr, k, d, n, dmask, dn_mask, dim, N, False, HAS_BIAS)
    g = tl.load(group_ptr + k).to(tl.int64)
    # C is not needed: B stands in for it (same rows, no extra bytes)
    _, _, _, _, _, _, _, _, _, _, decay, local = _tile_scan(
        u_ptr, delta_ptr, B_ptr, B_ptr, index_ptr, pindex_ptr, b, k, g, c * CK + rows, T, d, n, dmask, nmask,
        A2, bias, su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sB_b, sB_l, sB_k, sB_n,
        HAS_BIAS, SOFTPLUS)
    off = (((b * K + k) * n_chunks + c) * dim + d[:, None]) * N + n[None, :]
    tl.store(hloc_ptr + off, _row(local, rows, CK - 1), mask=dn_mask)
    tl.store(decay_ptr + off, _row(decay, rows, CK - 1), mask=dn_mask)


@triton.jit
def _scan_bwd_tile_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, index_ptr, pindex_ptr, group_ptr,
    dy_ptr, dhidden_ptr, ckpt_ptr,
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
    CHUNKED: tl.constexpr,
):
    """Program (b, channel block, k * n_spans + c). CHUNKED: chunk c of route k, joined to the w carried in
    from the later chunks (``carry_ptr``); else all of route k, tiles last to first. du / ddelta / dhidden rows
    use the (sy) strides of the per-route buffers, dy its own (sdy, may be 0 on k); dB / dC are
    per-channel-block partials (n_db, b, L, K, N); dA / dD / dbias per-program partials (b, K, n_spans, dim[, N])."""
    b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    pid2 = tl.program_id(2)
    n_spans = n_chunks if CHUNKED else 1
    k = (pid2 // n_spans).to(tl.int64)
    K = tl.num_programs(2) // n_spans
    d, n, dmask, nmask, dn_mask = _lanes(pid_d, dim, N, BLOCK_D, BLOCK_N)
    rows = tl.arange(0, CK)
    A, A2, Dk, bias = _route_params(A_ptr, D_ptr, bias_ptr, k, d, n, dmask, dn_mask, dim, N, HAS_D, HAS_BIAS)
    g_slot = tl.load(group_ptr + k).to(tl.int64)
    ckpt_base = ckpt_ptr + ((b * K + k) * n_chunks * dim) * N
    part_BC = pid_d * (tl.num_programs(0) * L * K * N)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if CHUNKED:
        last = pid2 % n_spans
        w = tl.load(carry_ptr + (((b * K + k) * n_chunks + last) * dim + d[:, None]) * N + n[None, :],
                    mask=dn_mask, other=0.0)
    else:
        last = n_chunks - 1
        w = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # a_{t1} g_{t1} of the later tile's first step t1
    for i in range(n_chunks // n_spans):
        c = last - i
        t = c * CK + rows
        p, q, valid = _load_index(index_ptr, pindex_ptr, k, t, 0, T, T)
        Ct = tl.load(C_ptr + b * sC_b + q[:, None] * sC_l + k * sC_k + n[None, :] * sC_n, mask=nmask[None, :],
                     other=0.0).to(tl.float32)
        dy, decay_g, local_g = _tile_grad_scan(
            delta_ptr, dy_ptr, dhidden_ptr, index_ptr, pindex_ptr, b, k, p, valid, t, T, rows, d, n, dmask,
            dn_mask, Ct, A2, bias, sd_b, sd_l, sd_k, sd_d, sy_b, sy_l, sy_k, sdy_b, sdy_l, sdy_k,
            CK, N, HAS_BIAS, SOFTPLUS, HAS_DHIDDEN)
        g = local_g + decay_g * w[None, :, :]  # zero on masked lanes (their dy, C, dhidden load as 0)
        # the tile's states from its checkpoint (C is loaded above: B stands in for it, same rows, no extra bytes)
        _, _, _, u, s, dt, Bt, _, a, x, decay, local = _tile_scan(
            u_ptr, delta_ptr, B_ptr, B_ptr, index_ptr, pindex_ptr, b, k, g_slot, t, T, d, n, dmask, nmask,
            A2, bias, su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sB_b, sB_l, sB_k, sB_n,
            HAS_BIAS, SOFTPLUS)
        h0 = tl.load(ckpt_base + (c * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0)
        hs = local + decay * h0[None, :, :]
        w = _row(a * g, rows, 0)
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
        vmask = valid[:, None] & dmask[None, :]
        ds = tl.where(vmask, ds, 0.0)
        dbias_acc += tl.sum(ds, axis=0)
        tl.store(du_ptr + b * sy_b + p[:, None] * sy_l + k * sy_k + d[None, :], du, mask=vmask)
        tl.store(ddelta_ptr + b * sy_b + q[:, None] * sy_l + k * sy_k + d[None, :], ds, mask=vmask)
        bc = part_BC + ((b * L + q[:, None]) * K + k) * N + n[None, :]
        bc_mask = valid[:, None] & nmask[None, :]
        tl.store(dB_ptr + bc, tl.sum(g * (dt * u)[:, :, None], axis=1), mask=bc_mask)
        tl.store(dC_ptr + bc, tl.sum(hs * dy[:, :, None], axis=1), mask=bc_mask)
    _store_partials(dA_ptr, dD_ptr, dbias_ptr, (b * tl.num_programs(2) + pid2) * dim, d, n, dmask, dn_mask, dA_acc,
                    dD_acc, dbias_acc, N, HAS_D, HAS_BIAS)


@triton.jit
def _chunk_grad_state_tile_kernel(
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
    """Program (b, channel block, k * n_chunks + c): what the chunk alone passes to the chunk before it,
    a_{t0} g_{t0} from a zero carry, and the product of its decays (so w_{c-1} = local_c + decay_c * w_c, what
    the per-step gradient carry pass consumes)."""
    b = tl.program_id(0).to(tl.int64)
    k = (tl.program_id(2) // n_chunks).to(tl.int64)
    c = tl.program_id(2) % n_chunks
    K = tl.num_programs(2) // n_chunks
    d, n, dmask, nmask, dn_mask = _lanes(tl.program_id(1), dim, N, BLOCK_D, BLOCK_N)
    rows = tl.arange(0, CK)
    _, A2, _, bias = _route_params(A_ptr, A_ptr, bias_ptr, k, d, n, dmask, dn_mask, dim, N, False, HAS_BIAS)
    t = c * CK + rows
    p, q, valid = _load_index(index_ptr, pindex_ptr, k, t, 0, T, T)
    Ct = tl.load(C_ptr + b * sC_b + q[:, None] * sC_l + k * sC_k + n[None, :] * sC_n, mask=nmask[None, :],
                 other=0.0).to(tl.float32)
    _, decay_g, local_g = _tile_grad_scan(
        delta_ptr, dy_ptr, dhidden_ptr, index_ptr, pindex_ptr, b, k, p, valid, t, T, rows, d, n, dmask, dn_mask,
        Ct, A2, bias, sd_b, sd_l, sd_k, sd_d, sy_b, sy_l, sy_k, sdy_b, sdy_l, sdy_k,
        CK, N, HAS_BIAS, SOFTPLUS, HAS_DHIDDEN)
    # the decay of the chunk's first step t0 (the chunk's other decays are inside decay_g)
    _, q0, valid0 = _load_index(index_ptr, pindex_ptr, k, c * CK, 0, T, T)
    s0 = tl.load(delta_ptr + b * sd_b + q0 * sd_l + k * sd_k + d * sd_d, mask=dmask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        s0 += bias
    a0 = tl.exp2(tl.where(valid0, _softplus(s0, SOFTPLUS), 0.0)[:, None] * A2)
    off = (((b * K + k) * n_chunks + c) * dim + d[:, None]) * N + n[None, :]
    tl.store(gloc_ptr + off, a0 * _row(local_g, rows, 0), mask=dn_mask)
    tl.store(decay_ptr + off, a0 * _row(decay_g, rows, 0), mask=dn_mask)


def tile_blocks(dim: int, N: int, steps: int) -> Tuple[int, int]:
    """(BLOCK_D, BLOCK_N) so that a [steps, BLOCK_D, BLOCK_N] tile holds at most TILE_ELEMENTS elements."""
    block_n = triton.next_power_of_2(N)
    block_d = max(1, min(triton.next_power_of_2(dim), TILE_ELEMENTS // (steps * block_n)))
    return block_d, block_n
