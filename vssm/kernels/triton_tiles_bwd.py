"""Tile-parallel Triton backward kernels: per tile the reverse recurrence runs as a reverse scan joined to
w = a_{t1} g_{t1} carried from the later tile, then the tile's states are recomputed from the forward's
checkpoint in registers (no scratch); and the per-chunk state-gradient summaries of the chunk-parallel schedule.
The state before a step, needed for dA and d(delta), is a_t h_{t-1} = h_t - x_t. Routes must not repeat a token.
"""
import triton
import triton.language as tl

from .triton_offsets import _channel_block_base, _program_row, _state_offset
from .triton_rows import _lanes, _load_index, _route_params, _softplus, _store_partials
from .triton_tiles import _row, _tile_grad_scan, _tile_scan


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
    part_BC = _channel_block_base(pid_d, tl.num_programs(0), L, K, N)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if CHUNKED:
        last = pid2 % n_spans
        w = tl.load(carry_ptr + _state_offset(b, k, last, K, n_chunks, dim, d, n, N),
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
        h0 = tl.load(ckpt_ptr + _state_offset(b, k, c, K, n_chunks, dim, d, n, N), mask=dn_mask, other=0.0)
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
    _store_partials(dA_ptr, dD_ptr, dbias_ptr, _program_row(b, 0, pid2, 1, tl.num_programs(2)) * dim, d, n, dmask, dn_mask, dA_acc,
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
    off = _state_offset(b, k, c, K, n_chunks, dim, d, n, N)
    tl.store(gloc_ptr + off, a0 * _row(local_g, rows, 0), mask=dn_mask)
    tl.store(decay_ptr + off, a0 * _row(decay_g, rows, 0), mask=dn_mask)
