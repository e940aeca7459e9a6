"""Tile-parallel building blocks: a tile gathers the rows of CHUNK steps at once and runs the recurrence
h_t = a_t h_{t-1} + x_t (a = exp(dt A), x = dt u B) as one ``tl.associative_scan`` over the tile's (a, x) pairs,
composed with the state carried in (forward), or the reverse recurrence as a reverse scan (backward)."""
from typing import Tuple

import triton
import triton.language as tl

from .triton_rows import _load_index, _load_rows, _softplus

# Elements of one [CHUNK, BLOCK_D, BLOCK_N] tile, and the warps that hold it: 4 elements a thread. Compiled for
# sm_90a by tools/kernel_registers.py, every tile kernel then fits in registers with Triton 3.6 and 3.8 (backward
# 107-188 registers, forward 42-80); at 2048 or 4096 elements the backward spills.
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


def tile_blocks(dim: int, N: int, steps: int) -> Tuple[int, int]:
    """(BLOCK_D, BLOCK_N) so that a [steps, BLOCK_D, BLOCK_N] tile holds at most TILE_ELEMENTS elements."""
    block_n = triton.next_power_of_2(N)
    block_d = max(1, min(triton.next_power_of_2(dim), TILE_ELEMENTS // (steps * block_n)))
    return block_d, block_n
