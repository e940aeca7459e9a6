"""Triton selective scan: launchers and schedule (the kernels live in one file per stage).

Reference semantics: :mod:`vssm.kernels.reference` (tests compare against it).

Programs cover (batch, block of BLOCK_D channels, route k[, span]). A program gathers the visited tokens' u /
delta / B / C rows straight from the raster-order inputs (no re-ordered copies; :mod:`triton_rows`), keeps the
state in fp32 registers, and writes y_k into a per-route buffer (batch, L, K, dim) -- rows only it owns, so no
atomics and bit-identical reruns: stored once when every route visits every token once, else accumulated by
read-modify-write. The state at every ``chunk``-th step is saved (fp32) for the backward; gate, merge and cast
are one epilogue kernel (:mod:`triton_epilogue`).

Stages, each in its own file: the per-step scans and the chunk summaries they come with
(:mod:`triton_steps_fwd`, :mod:`triton_steps_bwd`), and the carry passes (:mod:`triton_carry`). Two schedules
per pass:
- whole route per program (repeated tokens accumulate in order; or enough programs to fill the GPU);
- chunk-parallel: the route cut into spans of ``span`` steps (a multiple of ``chunk``); span summaries from a
  zero start, a short sequential carry pass over spans, then every span at once from its carried state
  (forward) or state gradient (backward).
Which schedule and launch sizes: the call's :class:`~vssm.kernels.config.KernelPlan` (:func:`plan`), fixed by
the forward and reused by its backward, which reads the states the forward saved.

Backward: dy is read through its strides (broadcast over routes, no copy). Gradient rows a program owns are
stored once when every route visits every token once (ddelta then in delta's dtype), else accumulated in place;
those shared across programs (dB, dC across channel blocks; dA, dD, d(delta_bias) across batch and spans; du
across routes reading one u slot) are written as partials and summed in a fixed order afterwards.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import torch
import triton

from .config import KernelConfig, KernelPlan
from .contract import ScanGrads, ScanProblem, ScanSizes, gate_and_merge_backward, sum_per_slot
from .triton_carry import _chunk_carry_kernel, _chunk_grad_carry_kernel
from .triton_epilogue import gate_and_merge
from .triton_steps_bwd import _chunk_grad_state_kernel, _scan_bwd_kernel
from .triton_steps_fwd import _chunk_state_kernel, _scan_fwd_kernel

# warps of a per-step program unless the config says otherwise: one warp keeps every reduction over channels in
# shuffles (no shared-memory barrier per step). H200, 2026-12-03, fwd+bwd, 1 vs 4 warps: (a) 4.37 vs 5.60 ms,
# (c) 27.0 vs 59.4, (d) 2.46 vs 4.67, Vim-long 3.81 vs 5.94 (2 warps in between, 8 slower than 4)
STEP_WARPS = 1
# steps of one chunk-parallel program (H100 sweep when it was also the saved states' spacing: 32, 64 and 128
# within 5%)
SPAN = 64


def step_blocks(dim: int, N: int, block_d: Optional[int] = None) -> Tuple[int, int]:
    """(BLOCK_D, BLOCK_N) of the per-step kernels: all of N, and ``block_d`` channels or up to 512 state
    elements a program."""
    block_n = triton.next_power_of_2(N)
    return min(triton.next_power_of_2(dim), block_d or max(16, 512 // block_n)), block_n


def default_chunk(N: int) -> int:
    """Steps between saved states: 16, or 32 from N = 8 on (the saved states then take at most as many bytes
    as a bf16 delta). The backward recomputes one chunk at a time into its scratch, CHUNK + 1 states a program,
    which then stays in L2 where 64-step chunks did not."""
    return 16 if N < 8 else 32


def n_chunks(steps: int, chunk: int) -> int:
    return max(1, -(-steps // chunk))


def plan(config: KernelConfig, sizes: ScanSizes, routes_unique: bool, routes_cover: bool) -> KernelPlan:
    """The call's schedule and launch sizes (heuristic: :mod:`vssm.kernels.config`). The chunk-parallel
    schedule needs routes without repeated tokens; asking for it otherwise is an error."""
    chunk = config.chunk or default_chunk(sizes.d_state)
    if config.span is not None and config.span % chunk:
        raise ValueError(f"KernelConfig.span: got {config.span}, expected a multiple of chunk ({chunk})")
    span = config.span or -(-max(SPAN, chunk) // chunk) * chunk
    if config.chunk_parallel and not routes_unique:
        raise ValueError("KernelConfig.chunk_parallel: needs routes that visit each token at most once "
                         "(Routes.tokens_unique()); these routes repeat a token")
    block_d = step_blocks(sizes.dim, sizes.d_state, config.block_d)[0]
    # Below 1024 (batch x channel block x route) programs whole routes do not fill the GPU (H100: 512 programs
    # of 3136 steps 1.6x faster chunked; 3072 programs of N = 16 1.5x slower chunked, the extra state pass
    # costing more exp's).
    if config.chunk_parallel is not None:
        chunked = config.chunk_parallel
    else:
        n_db = triton.cdiv(sizes.dim, block_d)
        chunked = routes_unique and n_chunks(sizes.steps, span) > 1 and sizes.batch * n_db * sizes.routes < 1024
    partials = config.partials_bf16 if config.partials_bf16 is not None else True
    return KernelPlan(chunk=chunk, span=span, chunked=chunked, partials_bf16=partials,
                      block_d=block_d, warps=config.warps or STEP_WARPS)


def _tables(prob: ScanProblem) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (prob.index.to(torch.int32).contiguous(), prob.param_index.to(torch.int32).contiguous(),
            prob.groups.to(torch.int32).contiguous())


def _check_dtype(prob: ScanProblem) -> None:
    if prob.u.dtype == torch.float64:
        raise ValueError("u: got dtype torch.float64; the triton backend computes in float32 "
                         "(use backend='torch' or 'reference' for float64)")


def _common_args(prob: ScanProblem):
    u, delta, B, C = prob.u, prob.delta, prob.B, prob.C
    A = prob.A.float().contiguous()
    D = prob.D.float().contiguous() if prob.D is not None else A
    bias = prob.delta_bias.float().contiguous() if prob.delta_bias is not None else A
    return (u, delta, A, B, C, D, bias, *_tables(prob)), (
        *u.stride(), *delta.stride(), *B.stride(), *C.stride(),
    )


def partials_dtype(prob: ScanProblem, z: Optional[torch.Tensor], merge: str, plan: KernelPlan) -> torch.dtype:
    """bf16 per-route outputs where sound: bf16 inputs, every token visited once per route (rows stored, never
    accumulated), nothing gating them before the fp32 merge; else fp32."""
    half = (plan.partials_bf16 and prob.u.dtype == torch.bfloat16 and z is None and merge != "none"
            and prob.routes_cover)
    return torch.bfloat16 if half else torch.float32


def forward(
    prob: ScanProblem, z: Optional[torch.Tensor], merge: str, out_dtype: torch.dtype, return_hidden: bool,
    plan: KernelPlan,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor, Optional[torch.Tensor]]:
    """Chunk-parallel (three launches: chunk states, carry, outputs) or one program per whole route, as
    ``plan`` says; then the epilogue."""
    _check_dtype(prob)
    sz = prob.sizes
    batch, length, K, dim, N, T = sz.batch, sz.length, sz.routes, sz.dim, sz.d_state, sz.steps
    block_d, block_n = plan.block_d, triton.next_power_of_2(N)
    n_db, chunks = triton.cdiv(dim, block_d), n_chunks(T, plan.chunk)
    spans = n_chunks(T, plan.span) if plan.chunked else 1
    new = prob.u.new_empty if prob.routes_cover else prob.u.new_zeros  # every row written once: no zeroing
    y = new(batch, length, K, dim, dtype=partials_dtype(prob, z, merge, plan))
    hidden = new(batch, length, K, dim, N, dtype=torch.float32) if return_hidden else None
    ckpt = prob.u.new_empty(batch, K, chunks, dim, N, dtype=torch.float32)
    tensors, strides = _common_args(prob)
    u, delta, A, B, C, D, bias, index, pindex, group = tensors
    sizes = dict(N=N, BLOCK_D=block_d, BLOCK_N=block_n)
    flags = dict(CK=plan.chunk, HAS_BIAS=prob.delta_bias is not None, SOFTPLUS=prob.delta_softplus, **sizes,
                 num_warps=plan.warps)
    if plan.chunked:
        hloc, decay = (prob.u.new_empty(batch, K, spans, dim, N, dtype=torch.float32) for _ in range(2))
        _chunk_state_kernel[(batch, n_db, K * spans)](
            u, delta, A, B, index, pindex, group, bias, hloc, decay, T, dim, spans, *strides[:12],
            **dict(flags, CK=plan.span),
        )
        _chunk_carry_kernel[(batch, n_db, K)](hloc, decay, ckpt, dim, spans, chunks, plan.span // plan.chunk,
                                              **sizes)
    grid = (batch, n_db, K * spans)
    args = (*tensors, y, hidden if hidden is not None else y, ckpt, T, dim, chunks)
    options = dict(HAS_D=prob.D is not None, HAS_HIDDEN=return_hidden, CHUNKED=plan.chunked, **flags)
    span = plan.span if plan.chunked else T
    _scan_fwd_kernel[grid](*args, span, *strides, *y.stride()[:3], ACCUMULATE=not prob.routes_cover, **options)
    out = gate_and_merge(prob, y, z, merge, out_dtype)
    return out, hidden, ckpt, y if z is not None else None


def backward(
    prob: ScanProblem,
    z: Optional[torch.Tensor],
    merge: str,
    ckpt: torch.Tensor,
    y_pre: Optional[torch.Tensor],
    dout: torch.Tensor,
    dhidden: Optional[torch.Tensor],
    plan: KernelPlan,
) -> Tuple[ScanGrads, Optional[torch.Tensor]]:
    """Gradients of :func:`forward` with the forward's ``plan`` (its chunk: the saved states' spacing), by the
    per-step backward kernels (after either forward)."""
    _check_dtype(prob)
    sz = prob.sizes
    batch, length, K, dim, N, T = sz.batch, sz.length, sz.routes, sz.dim, sz.d_state, sz.steps
    block_d, block_n = plan.block_d, triton.next_power_of_2(N)
    n_db, chunks = triton.cdiv(dim, block_d), ckpt.shape[2]
    dy, dz = gate_and_merge_backward(prob, z, merge, y_pre, dout)
    if dy.stride(3) != 1:  # dy may be broadcast over routes (stride 0 on k); channels must be unit-stride
        dy = dy.contiguous()
    if dhidden is not None:
        dhidden = dhidden.float().contiguous()
    per_span = plan.span // plan.chunk if plan.chunked else chunks  # saved states a program walks
    spans = -(-chunks // per_span)
    # routes visiting every token once store each gradient row once: no zero fill, no read-back, and ddelta
    # (one row per route and token, nothing to sum) is written in delta's dtype directly
    store_only = prob.routes_cover
    alloc = prob.u.new_empty if store_only else prob.u.new_zeros
    f32 = torch.float32
    # per-route du of bf16 inputs in bf16 (partials_bf16), as the anchor pipeline rounds them before their sum
    du_half = plan.partials_bf16 and store_only and prob.u.dtype == torch.bfloat16
    du_routes = alloc(batch, length, K, dim, dtype=torch.bfloat16 if du_half else f32)
    ddelta = alloc(batch, length, K, dim, dtype=prob.delta.dtype if store_only else f32)
    dB, dC = alloc(n_db, batch, length, K, N, dtype=f32), alloc(n_db, batch, length, K, N, dtype=f32)
    # per-program partials, each stored whole
    dA = prob.u.new_empty(batch, K, spans, dim, N, dtype=f32)
    dD, dbias = prob.u.new_empty(batch, K, spans, dim, dtype=f32), prob.u.new_empty(batch, K, spans, dim, dtype=f32)
    tensors, strides = _common_args(prob)
    u, delta, A, B, C, D, bias, index, pindex, group = tensors
    dhidden_arg = dhidden if dhidden is not None else dy
    sizes = dict(N=N, BLOCK_D=block_d, BLOCK_N=block_n)
    flags = dict(CK=plan.chunk, HAS_BIAS=prob.delta_bias is not None, SOFTPLUS=prob.delta_softplus,
                 HAS_DHIDDEN=dhidden is not None, **sizes, num_warps=plan.warps)
    route_strides, dy_strides = du_routes.stride()[:3], dy.stride()[:3]
    carry = ckpt
    if plan.chunked:
        gloc, decay, carry = (prob.u.new_empty(batch, K, spans, dim, N, dtype=f32) for _ in range(3))
        _chunk_grad_state_kernel[(batch, n_db, K * spans)](
            delta, A, C, index, pindex, bias, dy, dhidden_arg, gloc, decay, T, dim, spans,
            *strides[4:8], *strides[12:16], *route_strides, *dy_strides, **dict(flags, CK=plan.span),
        )
        _chunk_grad_carry_kernel[(batch, n_db, K)](gloc, decay, carry, dim, spans, **sizes)
    grid = (batch, n_db, K * spans)
    grad_args = (du_routes, ddelta, dB, dC, dA, dD, dbias, carry, T, dim, length, chunks, per_span)
    options = dict(HAS_D=prob.D is not None, CHUNKED=plan.chunked, **flags)
    scratch = prob.u.new_empty(batch * n_db * K * spans * (plan.chunk + 1) * block_d * block_n, dtype=f32)
    _scan_bwd_kernel[grid](
        *tensors, dy, dhidden_arg, ckpt, scratch, *grad_args, *strides, *route_strides, *dy_strides,
        ACCUMULATE=not store_only, **options,
    )
    du = sum_per_slot(du_routes, prob.groups, prob.u.shape[2])
    grads = ScanGrads(
        u=du, delta=ddelta, A=dA.sum((0, 2)), B=dB.sum(0), C=dC.sum(0),
        D=dD.sum((0, 2)) if prob.D is not None else None,
        delta_bias=dbias.sum((0, 2)) if prob.delta_bias is not None else None,
    )
    return grads, dz


def saved_shapes(sizes: ScanSizes, has_z: bool, chunk: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    ckpt = (sizes.batch, sizes.routes, n_chunks(sizes.steps, chunk), sizes.dim, sizes.d_state)
    extra = (sizes.batch, sizes.length, sizes.routes, sizes.dim) if has_z else (0,)
    return ckpt, extra


def supports(device: torch.device) -> bool:
    """CUDA devices; the CPU only under the Triton interpreter (TRITON_INTERPRET=1, for tests)."""
    return device.type == "cuda" or (device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")
