"""Row loads shared by the Triton scan kernels.

A step's tokens come from the route tables; its u / delta / B / C rows are gathered straight from the
raster-order inputs through their strides: scalar tokens, vector channels, one step at a time."""
import triton
import triton.language as tl


@triton.jit
def _softplus(s, SOFTPLUS: tl.constexpr):
    if SOFTPLUS:
        s = tl.where(s <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(s, 20.0))), s)
    return s


@triton.jit
def _load_index(index_ptr, pindex_ptr, k, t, t_lo, t_hi, T):
    """Tokens of step t of route k: p (u/y row) and q (delta/B/C row), clamped to >= 0, and whether the step is
    real (t_lo <= t < t_hi and neither table pads it)."""
    inside = (t >= t_lo) & (t < t_hi)
    p = tl.load(index_ptr + k * T + t, mask=inside, other=-1).to(tl.int64)
    q = tl.load(pindex_ptr + k * T + t, mask=inside, other=-1).to(tl.int64)
    return tl.maximum(p, 0), tl.maximum(q, 0), (p >= 0) & (q >= 0)


@triton.jit
def _load_rows(
    u_ptr, delta_ptr, B_ptr, C_ptr, b, k, g, p, q, valid, d, n, dmask, nmask, bias,
    su_b, su_l, su_s, su_d, sd_b, sd_l, sd_k, sd_d, sB_b, sB_l, sB_k, sB_n, sC_b, sC_l, sC_k, sC_n,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):
    """Rows of one step (tokens p, q from :func:`_load_index`): u, pre-softplus s,
    dt (0 on padding), B, C."""
    u = tl.load(u_ptr + b * su_b + p * su_l + g * su_s + d * su_d, mask=dmask, other=0.0).to(tl.float32)
    s = tl.load(delta_ptr + b * sd_b + q * sd_l + k * sd_k + d * sd_d, mask=dmask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        s += bias
    dt = tl.where(valid, _softplus(s, SOFTPLUS), 0.0)
    Bt = tl.load(B_ptr + b * sB_b + q * sB_l + k * sB_k + n * sB_n, mask=nmask, other=0.0).to(tl.float32)
    Ct = tl.load(C_ptr + b * sC_b + q * sC_l + k * sC_k + n * sC_n, mask=nmask, other=0.0).to(tl.float32)
    return u, s, dt, Bt, Ct


@triton.jit
def _lanes(pid_d, dim, N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Channels d [BLOCK_D] of channel block pid_d and states n [BLOCK_N], with their masks."""
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    dmask = d < dim
    nmask = n < N
    return d, n, dmask, nmask, dmask[:, None] & nmask[None, :]


@triton.jit
def _route_params(A_ptr, D_ptr, bias_ptr, k, d, n, dmask, dn_mask, dim, N: tl.constexpr, HAS_D: tl.constexpr,
                  HAS_BIAS: tl.constexpr):
    """Route k's A [BLOCK_D, BLOCK_N], A * log2(e) (for exp2), D and delta_bias [BLOCK_D] (0 where absent)."""
    A = tl.load(A_ptr + (k * dim + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0)
    Dk = tl.load(D_ptr + k * dim + d, mask=dmask & HAS_D, other=0.0)
    bias = tl.load(bias_ptr + k * dim + d, mask=dmask & HAS_BIAS, other=0.0)
    return A, A * 1.4426950408889634, Dk, bias


@triton.jit
def _store_partials(dA_ptr, dD_ptr, dbias_ptr, part, d, n, dmask, dn_mask, dA, dD, dbias, N: tl.constexpr,
                    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """One program's dA [BLOCK_D, BLOCK_N], dD and d(delta_bias) [BLOCK_D] at partial row ``part``."""
    tl.store(dA_ptr + (part + d[:, None]) * N + n[None, :], dA, mask=dn_mask)
    if HAS_D:
        tl.store(dD_ptr + part + d, dD, mask=dmask)
    if HAS_BIAS:
        tl.store(dbias_ptr + part + d, dbias, mask=dmask)
