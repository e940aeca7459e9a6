"""Per-step Triton backward kernels: per chunk the states are recomputed from the forward's checkpoint into a
per-program scratch (CHUNK + 1 states), then the reverse recurrence (each step's states loaded one step ahead)
g_t = dy_t C_t + exp(dt_{t+1} A) g_{t+1}
runs step by step; and the per-chunk state-gradient summaries the chunk-parallel schedule carries.
Launchers: :mod:`vssm.kernels.triton_scan`.
"""
import triton
import triton.language as tl

from .triton_offsets import _channel_block_base, _program_row, _state_offset
from .triton_rows import _lanes, _load_index, _load_rows, _route_params, _softplus, _store_partials


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, index_ptr, pindex_ptr, group_ptr,
    dy_ptr, dhidden_ptr, ckpt_ptr, scratch_ptr,
    du_ptr, ddelta_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
    carry_ptr, T, dim, L, n_chunks, per_span,
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
    """Program (b, channel block, k * n_spans + c): the ``per_span`` chunks (CK steps between saved states) of
    span c, last to first; CHUNKED: starting from the gradient carried in from the later spans
    (``carry_ptr``), else one span covers the route. ACCUMULATE: add into
    the zeroed du / ddelta / dB / dC rows (routes that repeat or skip tokens); else each row is stored once.
    du, ddelta and dhidden rows use the (sy) strides of the per-route buffers, dy its own (sdy, may be 0 on k)."""
    b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    pid2 = tl.program_id(2)
    if CHUNKED:
        n_spans = tl.cdiv(n_chunks, per_span)
    else:
        n_spans = 1
    span = pid2 % n_spans
    k = (pid2 // n_spans).to(tl.int64)
    n_db = tl.num_programs(1)
    K = tl.num_programs(2) // n_spans
    B_size = tl.num_programs(0)
    d, n, dmask, nmask, dn_mask = _lanes(pid_d, dim, N, BLOCK_D, BLOCK_N)
    A, A2, Dk, bias = _route_params(A_ptr, D_ptr, bias_ptr, k, d, n, dmask, dn_mask, dim, N, HAS_D, HAS_BIAS)
    g_slot = tl.load(group_ptr + k).to(tl.int64)
    scratch = scratch_ptr + _program_row(b, pid_d, pid2, n_db, tl.num_programs(2)) * (CK + 1) * BLOCK_D * BLOCK_N
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + n[None, :]
    dB_base = dB_ptr + _channel_block_base(pid_d, B_size, L, K, N)
    dC_base = dC_ptr + _channel_block_base(pid_d, B_size, L, K, N)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if CHUNKED:
        g_carry = tl.load(carry_ptr + _state_offset(b, k, span, K, n_spans, dim, d, n, N), mask=dn_mask,
                          other=0.0)
    else:
        g_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    last = tl.minimum(span * per_span + per_span, n_chunks) - 1 if CHUNKED else n_chunks - 1
    for i in range(last - span * per_span + 1):
        c = last - i
        t0 = c * CK
        t1 = tl.minimum(t0 + CK, T)
        steps = t1 - t0
        h = tl.load(ckpt_ptr + _state_offset(b, k, c, K, n_chunks, dim, d, n, N), mask=dn_mask, other=0.0)
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
        h_prev = tl.load(scratch + (steps - 1) * BLOCK_D * BLOCK_N + tile)
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
            h_prev_n = tl.load(scratch + tl.maximum(j - 1, 0) * BLOCK_D * BLOCK_N + tile)  # next step's, ahead
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
            p, q, valid, u, s, dt, Bt, Ct, dy = p_n, q_n, valid_n, u_n, s_n, dt_n, B_n, C_n, dy_n
            h_t, h_prev = h_prev, h_prev_n
            p_n, q_n, valid_n = p_nn, q_nn, valid_nn
    _store_partials(dA_ptr, dD_ptr, dbias_ptr, _program_row(b, 0, pid2, 1, tl.num_programs(2)) * dim, d, n, dmask, dn_mask, dA_acc,
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
    k = (tl.program_id(2) // n_chunks).to(tl.int64)
    c = tl.program_id(2) % n_chunks
    K = tl.num_programs(2) // n_chunks
    d, n, dmask, nmask, dn_mask = _lanes(tl.program_id(1), dim, N, BLOCK_D, BLOCK_N)
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
    off = _state_offset(b, k, c, K, n_chunks, dim, d, n, N)
    tl.store(gloc_ptr + off, tl.exp2(exponent) * g, mask=dn_mask)
    tl.store(decay_ptr + off, tl.exp2(log_decay), mask=dn_mask)
