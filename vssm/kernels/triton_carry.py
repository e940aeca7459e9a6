"""Carry passes of the chunk-parallel schedule: one program per (batch, channel block, route) walks the span
summaries in order (states, forward) or in reverse (state gradients, backward)."""
import triton
import triton.language as tl

from .triton_offsets import _state_offset
from .triton_rows import _lanes


@triton.jit
def _chunk_carry_kernel(
    hloc_ptr, decay_ptr, ckpt_ptr, dim, n_spans, n_ckpt, per_span,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Program (b, channel block, k): start state of every span, in order: s_0 = 0, s_{c+1} = P_c s_c + h_c,
    stored as saved state c * per_span of the (batch, K, n_ckpt, dim, N) checkpoints."""
    b = tl.program_id(0).to(tl.int64)
    k = tl.program_id(2).to(tl.int64)
    K = tl.num_programs(2)
    d, n, _, _, dn_mask = _lanes(tl.program_id(1), dim, N, BLOCK_D, BLOCK_N)
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(n_spans):
        off = _state_offset(b, k, c, K, n_spans, dim, d, n, N)
        tl.store(ckpt_ptr + _state_offset(b, k, c * per_span, K, n_ckpt, dim, d, n, N), h, mask=dn_mask)
        h = tl.load(decay_ptr + off, mask=dn_mask, other=0.0) * h + tl.load(hloc_ptr + off, mask=dn_mask, other=0.0)

@triton.jit
def _chunk_grad_carry_kernel(
    gloc_ptr, decay_ptr, carry_ptr, dim, n_chunks,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Program (b, channel block, k): gradient carried into each chunk from the later ones, last to first."""
    b = tl.program_id(0).to(tl.int64)
    k = tl.program_id(2).to(tl.int64)
    K = tl.num_programs(2)
    d, n, _, _, dn_mask = _lanes(tl.program_id(1), dim, N, BLOCK_D, BLOCK_N)
    carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for i in range(n_chunks):
        off = _state_offset(b, k, n_chunks - 1 - i, K, n_chunks, dim, d, n, N)
        tl.store(carry_ptr + off, carry, mask=dn_mask)
        carry = tl.load(gloc_ptr + off, mask=dn_mask, other=0.0) + tl.load(decay_ptr + off, mask=dn_mask, other=0.0) * carry
