"""Tile-parallel building blocks of the tile forward: a tile gathers the rows of CHUNK steps at once and runs
the recurrence h_t = a_t h_{t-1} + x_t (a = exp(dt A), x = dt u B) as one ``tl.associative_scan`` over the
tile's (a, x) pairs, composed with the state carried in."""
from typing import Tuple

import triton
import triton.language as tl

from .triton_rows import _load_index, _load_rows

# Elements of one [CHUNK, BLOCK_D, BLOCK_N] tile, and the warps that hold it: 4 elements a thread. Compiled for
# sm_90a by tools/kernel_registers.py, the tile forward kernels then take 42-80 registers with Triton 3.6 and
# 3.8 (the size was picked when a tile backward, since removed, spilled at 2048 elements; not re-tuned).
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
    """Steps t [CK] of route k: u/y tokens p, which steps are real, u and C rows, and the scan (decay, local) of
    a = exp(dt A), x = dt u B, so that h_t = local_t + decay_t * h_before_the_tile. Tensors [CK, BLOCK_D(, BLOCK_N)]."""
    p, q, valid = _load_index(index_ptr, pindex_ptr, k, t, 0, T, T)
    u, s, dt, Bt, Ct = _load_rows(
        u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g, p[:, None], q[:, None], valid[:, None], d[None, :], n[None, :],
        dmask[None, :], nmask[None, :], bias[None, :],
        su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
        HAS_BIAS, SOFTPLUS)
    a = tl.exp2(dt[:, :, None] * A2[None, :, :])
    x = (dt * u)[:, :, None] * Bt[:, None, :]
    decay, local = tl.associative_scan((a, x), 0, _affine)
    return p, valid, u, Ct, decay, local


def tile_blocks(dim: int, N: int, steps: int) -> Tuple[int, int]:
    """(BLOCK_D, BLOCK_N) so that a [steps, BLOCK_D, BLOCK_N] tile holds at most TILE_ELEMENTS elements."""
    block_n = triton.next_power_of_2(N)
    block_d = max(1, min(triton.next_power_of_2(dim), TILE_ELEMENTS // (steps * block_n)))
    return block_d, block_n
