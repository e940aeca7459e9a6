"""Element offsets into the Triton scan's large buffers, computed in int64.

Program ids, grid sizes and small integer arguments are int32 inside a kernel; their products overflow past
2^31 elements (case (c), batch 128, L 3136, K 4, dim 192, N 16: the dB/dC partials of 192 channel blocks hold
4.9e9 elements). Every offset into a buffer whose size is a product of problem sizes goes through one of these
helpers, which promote their first factor to int64 before multiplying.
"""
import triton
import triton.language as tl


@triton.jit
def _state_offset(b, k, c, K, n_chunks, dim, d, n, N: tl.constexpr):
    """Offsets of rows d [BLOCK_D] x states n [BLOCK_N] of chunk c of route k in a (batch, K, n_chunks, dim, N)
    buffer (saved states, chunk summaries, carried gradients)."""
    chunk_row = (b.to(tl.int64) * K + k) * n_chunks + c
    return (chunk_row * dim + d[:, None]) * N + n[None, :]


@triton.jit
def _channel_block_base(pid_d, batch, L, K, N: tl.constexpr):
    """First element of channel block pid_d's slice of the (n_db, batch, L, K, N) dB / dC partials."""
    return pid_d.to(tl.int64) * batch * L * K * N


@triton.jit
def _program_row(b, pid_d, pid2, n_db, n_prog2):
    """Linear index of program (b, pid_d, pid2) in a (batch, n_db, n_prog2) grid."""
    return (b.to(tl.int64) * n_db + pid_d) * n_prog2 + pid2
