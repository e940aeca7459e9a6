"""Per-step Triton forward kernels: a program walks its steps one at a time with the state [BLOCK_D, N] in fp32
registers (the scan), and the per-chunk state summaries the chunk-parallel schedule carries.

Loops are software-pipelined two deep: the rows of step t + 1 (whose tokens are already known) and the tokens
of step t + 2 are loaded while step t is computed, so no step waits for an index load followed by a row load.
Semantics: :mod:`vssm.kernels.reference`; launchers: :mod:`vssm.kernels.triton_scan`.
"""
import triton
import triton.language as tl

from .triton_offsets import _state_offset
from .triton_rows import _lanes, _load_index, _load_rows, _route_params


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
    """Program (b, channel block, k * n_spans + span index) scans steps [c * span, (c + 1) * span) of route k
    and saves the state at every CK-th step (span is a multiple of CK). CHUNKED: start from the saved state
    of the span's first step (the carry pass wrote it); else one span covers the route. ACCUMULATE: add into the (zeroed) outputs, for routes that visit a
    token more than once or not at all; else every output row is written exactly once (no read)."""
    b = tl.program_id(0).to(tl.int64)
    n_spans = tl.cdiv(T, span)
    k = (tl.program_id(2) // n_spans).to(tl.int64)
    c = tl.program_id(2) % n_spans
    K = tl.num_programs(2) // n_spans
    d, n, dmask, nmask, dn_mask = _lanes(tl.program_id(1), dim, N, BLOCK_D, BLOCK_N)
    _, A2, Dk, bias = _route_params(A_ptr, D_ptr, bias_ptr, k, d, n, dmask, dn_mask, dim, N, HAS_D, HAS_BIAS)
    g = tl.load(group_ptr + k).to(tl.int64)
    t0 = c * span
    t_end = tl.minimum(t0 + span, T)
    if CHUNKED:
        h = tl.load(ckpt_ptr + _state_offset(b, k, c * (span // CK), K, n_chunks, dim, d, n, N), mask=dn_mask,
                    other=0.0)
    else:
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    p, q, valid = _load_index(index_ptr, pindex_ptr, k, t0, t0, t_end, T)
    u, _, dt, Bt, Ct = _load_rows(
        u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g, p, q, valid, d, n, dmask, nmask, bias,
        su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
        HAS_BIAS, SOFTPLUS)
    p_n, q_n, valid_n = _load_index(index_ptr, pindex_ptr, k, t0 + 1, t0, t_end, T)
    for t in range(t0, t_end):
        save = t % CK == 0
        if CHUNKED:
            save = save & (t > t0)  # the span's start state is the carry pass's
        if save:
            tl.store(ckpt_ptr + _state_offset(b, k, t // CK, K, n_chunks, dim, d, n, N), h, mask=dn_mask)
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
    """Program (b, channel block, k * n_chunks + c): the state of span c (CK steps) from a zero start, and the
    product of its decays, so that state_end = decay * state_start + local."""
    b = tl.program_id(0).to(tl.int64)
    k = (tl.program_id(2) // n_chunks).to(tl.int64)
    c = tl.program_id(2) % n_chunks
    K = tl.num_programs(2) // n_chunks
    d, n, dmask, nmask, dn_mask = _lanes(tl.program_id(1), dim, N, BLOCK_D, BLOCK_N)
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
    off = _state_offset(b, k, c, K, n_chunks, dim, d, n, N)
    tl.store(hloc_ptr + off, h, mask=dn_mask)
    tl.store(decay_ptr + off, tl.exp2(log_decay), mask=dn_mask)
