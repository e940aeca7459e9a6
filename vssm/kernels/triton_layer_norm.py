"""Triton LayerNorm over the last dimension, for many short rows (VMamba's channel-last maps: C = 96..1536).

torch's CUDA LayerNorm spends one thread block per row and, under autocast, reads a cast copy and writes
float32; here one program normalises BLOCK_M rows at once, reads the input in its own dtype, computes in
float32 and writes the output dtype asked for (under autocast: the dtype the next matmul would cast to).
Backward: dx per row; dweight/dbias as per-program partial sums added in a fixed order (deterministic).

Reference semantics: ``torch.nn.functional.layer_norm`` (tests compare in float64).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

MAX_CHANNELS = 8192  # one row per program at most; wider rows use torch's kernel
ROW_ELEMENTS = 4096  # elements one program holds (BLOCK_M rows x BLOCK_C channels)


@triton.jit
def _ln_fwd_kernel(X, Y, W, Bias, Mean, Rstd, M, C, stride_x, stride_y, eps,
                   BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    rmask, cmask = rows < M, cols < C
    mask = rmask[:, None] & cmask[None, :]
    r64 = rows.to(tl.int64)[:, None]
    x = tl.load(X + r64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / C
    xc = tl.where(mask, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / C + eps)
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    b = tl.load(Bias + cols, mask=cmask, other=0.0).to(tl.float32)
    y = xc * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(Y + r64 * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)
    tl.store(Mean + rows, mean, mask=rmask)
    tl.store(Rstd + rows, rstd, mask=rmask)


@triton.jit
def _ln_bwd_kernel(DY, X, W, Mean, Rstd, DX, DW, DB, M, C, stride_dy, stride_x, stride_dx, blocks_per_program,
                   BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    cmask = cols < C
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_C], dtype=tl.float32)
    db = tl.zeros([BLOCK_C], dtype=tl.float32)
    for i in range(blocks_per_program):
        rows = (pid * blocks_per_program + i) * BLOCK_M + tl.arange(0, BLOCK_M)
        rmask = rows < M
        mask = rmask[:, None] & cmask[None, :]
        r64 = rows.to(tl.int64)[:, None]
        x = tl.load(X + r64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + r64 * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(Mean + rows, mask=rmask, other=0.0)
        rstd = tl.load(Rstd + rows, mask=rmask, other=0.0)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
        wdy = dy * w[None, :]
        c1 = tl.sum(xhat * wdy, axis=1) / C
        c2 = tl.sum(wdy, axis=1) / C
        dx = (wdy - (xhat * c1[:, None] + c2[:, None])) * rstd[:, None]
        tl.store(DX + r64 * stride_dx + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask)
        dw += tl.sum(dy * xhat, axis=0)
        db += tl.sum(dy, axis=0)
    tl.store(DW + pid * C + cols, dw, mask=cmask)
    tl.store(DB + pid * C + cols, db, mask=cmask)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(..., C) -> (M, C) with unit channel stride (a view when the layout allows)."""
    t = t.reshape(-1, t.shape[-1])
    return t if t.stride(1) == 1 else t.contiguous()


def _blocks(C: int) -> Tuple[int, int]:
    block_c = triton.next_power_of_2(C)
    return max(1, ROW_ELEMENTS // block_c), block_c


def _backward_programs(n_blocks: int, device: torch.device) -> int:
    if device.type == "cuda":
        return min(n_blocks, 4 * torch.cuda.get_device_properties(device).multi_processor_count)
    return min(n_blocks, 4)


class TritonLayerNorm(torch.autograd.Function):
    """x (..., C), weight (C,), bias (C,) -> y (..., C) in ``out_dtype``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                out_dtype: torch.dtype) -> torch.Tensor:
        rows = _rows(x)
        M, C = rows.shape
        block_m, block_c = _blocks(C)
        y = torch.empty(M, C, device=x.device, dtype=out_dtype)
        mean = torch.empty(M, device=x.device, dtype=torch.float32)
        rstd = torch.empty_like(mean)
        _ln_fwd_kernel[(triton.cdiv(M, block_m),)](
            rows, y, weight, bias, mean, rstd, M, C, rows.stride(0), y.stride(0), eps,
            BLOCK_M=block_m, BLOCK_C=block_c,
        )
        ctx.save_for_backward(rows, weight, mean, rstd)
        ctx.shape, ctx.bias_dtype = x.shape, bias.dtype
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, None, None]:
        rows, weight, mean, rstd = ctx.saved_tensors
        M, C = rows.shape
        dy = _rows(dy)
        block_m, block_c = _blocks(C)
        n_blocks = triton.cdiv(M, block_m)
        programs = _backward_programs(n_blocks, rows.device)
        per_program = triton.cdiv(n_blocks, programs)
        programs = triton.cdiv(n_blocks, per_program)
        dx = torch.empty_like(rows)
        dw = torch.empty(programs, C, device=rows.device, dtype=torch.float32)
        db = torch.empty_like(dw)
        _ln_bwd_kernel[(programs,)](
            dy, rows, weight, mean, rstd, dx, dw, db, M, C, dy.stride(0), rows.stride(0), dx.stride(0), per_program,
            BLOCK_M=block_m, BLOCK_C=block_c,
        )
        return dx.view(ctx.shape), dw.sum(0).to(weight.dtype), db.sum(0).to(ctx.bias_dtype), None, None


def supports(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor]) -> bool:
    """Affine LayerNorm with rows of at most MAX_CHANNELS channels."""
    return weight is not None and bias is not None and x.shape[-1] <= MAX_CHANNELS and x.numel() > 0
