"""Triton epilogue: gate, merge over routes and cast, in one pass over the per-route outputs.

Semantics: :func:`vssm.kernels.contract.gate_and_merge`.
"""
from typing import Optional

import torch
import triton
import triton.language as tl

from .contract import ScanProblem


@triton.jit
def _gate_merge_kernel(
    y_ptr, z_ptr, group_ptr, out_ptr, rows, L, K, dim, scale,
    sz_b, sz_l, sz_s, sz_d,
    HAS_Z: tl.constexpr, MERGE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Epilogue, one pass: per-route y (rows = b * L, K, dim) -> y_k * silu(z[slot of k]) (HAS_Z), summed
    over routes times ``scale`` (MERGE) into out (rows, dim), or kept per route in out (rows, K, dim); out is
    written in its own dtype."""
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = (r < rows)[:, None] & (d < dim)[None, :]
    r64 = r.to(tl.int64)[:, None]
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for k in range(K):
        y = tl.load(y_ptr + (r64 * K + k) * dim + d[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_Z:
            g = tl.load(group_ptr + k).to(tl.int64)
            z = tl.load(z_ptr + (r64 // L) * sz_b + (r64 % L) * sz_l + g * sz_s + d[None, :] * sz_d, mask=mask,
                        other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        if MERGE:
            acc += y
        else:
            tl.store(out_ptr + (r64 * K + k) * dim + d[None, :], y, mask=mask)
    if MERGE:
        tl.store(out_ptr + r64 * dim + d[None, :], acc * scale, mask=mask)


def gate_and_merge(
    prob: ScanProblem, y: torch.Tensor, z: Optional[torch.Tensor], merge: str, out_dtype: torch.dtype
) -> torch.Tensor:
    """y (b, L, K, d) (fp32, or bf16 partials) -> out (b, L, d), or (b, L, K, d) for merge "none"; summed in fp32."""
    sizes = prob.sizes
    batch, length, K, dim = sizes.batch, sizes.length, sizes.routes, sizes.dim
    if z is None and merge == "none" and out_dtype == y.dtype:
        return y
    out = y.new_empty((batch, length, dim) if merge != "none" else (batch, length, K, dim), dtype=out_dtype)
    block_d = min(triton.next_power_of_2(dim), 128)
    block_r = max(1, 2048 // block_d)
    rows = batch * length
    _gate_merge_kernel[(triton.cdiv(rows, block_r), triton.cdiv(dim, block_d))](
        y, z if z is not None else y, prob.groups, out, rows, length, K, dim, 1.0 / K if merge == "mean" else 1.0,
        *(z.stride() if z is not None else (0, 0, 0, 0)),
        HAS_Z=z is not None, MERGE=merge != "none", BLOCK_R=block_r, BLOCK_D=block_d,
    )
    return out
