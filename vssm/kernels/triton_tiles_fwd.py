"""Tile-parallel Triton forward kernels: the scan (a program walks its route or chunk a tile of CHUNK steps at
a time, saving the state before every tile) and the per-chunk state summaries of the chunk-parallel schedule.
Same saved states as the per-step forward, so the per-step backward follows either. Routes must not repeat a
token.
"""
import triton
import triton.language as tl

from .triton_offsets import _state_offset
from .triton_rows import _lanes, _route_params
from .triton_tiles import _row, _tile_scan


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
    if CHUNKED:
        first = tl.program_id(2) % n_spans
        h = tl.load(ckpt_ptr + _state_offset(b, k, first, K, n_chunks, dim, d, n, N), mask=dn_mask, other=0.0)
    else:
        first = 0
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(first, first + n_chunks // n_spans):
        if not CHUNKED:
            tl.store(ckpt_ptr + _state_offset(b, k, c, K, n_chunks, dim, d, n, N), h, mask=dn_mask)
        p, valid, u, Ct, decay, local = _tile_scan(
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
    _, _, _, _, decay, local = _tile_scan(
        u_ptr, delta_ptr, B_ptr, B_ptr, index_ptr, pindex_ptr, b, k, g, c * CK + rows, T, d, n, dmask, nmask,
        A2, bias, su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sB_b, sB_l, sB_k, sB_n,
        HAS_BIAS, SOFTPLUS)
    off = _state_offset(b, k, c, K, n_chunks, dim, d, n, N)
    tl.store(hloc_ptr + off, _row(local, rows, CK - 1), mask=dn_mask)
    tl.store(decay_ptr + off, _row(decay, rows, CK - 1), mask=dn_mask)
