"""``vssm.kernels.selective_scan``: argument checks, backend dispatch, the ``torch.library`` op and
its autograd formula.

The op ``vssm::selective_scan`` returns (out, hidden, saved_state, saved_extra); the last two are what
the backend's backward needs (chunk-start states, pre-gate outputs) and are hidden from users.
``torch.compile(fullgraph=True)`` sees one op with a fake implementation, never a graph break.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, NamedTuple, Optional, Tuple, Union

import torch

from . import torch_scan
from .checks import ScanSizes, check_inputs, route_groups
from .config import KernelConfig, KernelPlan, current_config
from .contract import ScanProblem, compute_dtype, scan_sizes
from .reference import selective_scan_reference
from .routes import RoutesLike, as_routes, schedule_facts

Tensor = torch.Tensor
_EMPTY_SHAPE = (0,)


class Backend(NamedTuple):
    """A selective-scan implementation.

    forward(prob, z, merge, out_dtype, return_hidden, plan) -> (out, hidden|None, state, extra|None)
    backward(prob, z, merge, state, extra, dout, dhidden|None, plan) -> (ScanGrads, dz|None)
    saved_shapes(sizes, has_z, chunk) -> (state shape, extra shape), used by the fake implementation
    supports(device) -> bool
    plan(config, sizes, routes_unique, routes_cover) -> KernelPlan, the call's settings (forward and backward)
    """

    forward: Callable
    backward: Callable
    saved_shapes: Callable[[ScanSizes, bool, int], Tuple[Tuple[int, ...], Tuple[int, ...]]]
    supports: Callable[[torch.device], bool]
    plan: Callable[[KernelConfig, ScanSizes, bool, bool], KernelPlan]


BACKENDS: Dict[str, Backend] = {
    "torch": Backend(torch_scan.forward, torch_scan.backward, torch_scan.saved_shapes, lambda device: True,
                     torch_scan.plan),
}
_warned: set = set()


def register_backend(name: str, backend: Backend) -> None:
    """Make ``backend=name`` available (the Triton backend registers itself on import)."""
    BACKENDS[name] = backend


def _pick_backend(device: torch.device, backend: Optional[str]) -> str:
    if backend is not None:
        if backend != "reference" and backend not in BACKENDS:
            raise ValueError(f"backend: got {backend!r}, expected one of {['reference', *BACKENDS]}")
        if backend in BACKENDS and not BACKENDS[backend].supports(device):
            raise ValueError(f"backend: {backend!r} does not run on device {device}")
        return backend
    if device.type == "cuda":
        if "triton" in BACKENDS and BACKENDS["triton"].supports(device):
            return "triton"
        if "cuda-fallback" not in _warned:
            _warned.add("cuda-fallback")
            warnings.warn(
                "vssm.kernels.selective_scan: no Triton backend on this CUDA device; using the slower "
                "'torch' backend (install triton to get the fast path)",
                RuntimeWarning,
                stacklevel=3,
            )
    return "torch"


def _problem(u, delta, A, B, C, D, delta_bias, index, param_index, u_group, delta_softplus,
             routes_unique, routes_cover) -> ScanProblem:
    index = index.long()
    groups = route_groups(_RoutesView(index, u_group), u.shape[2], u.device)
    return ScanProblem(
        u=u, delta=delta, A=A, B=B, C=C, D=D, delta_bias=delta_bias,
        index=index,
        param_index=index if param_index is None else param_index.long(),
        groups=groups,
        delta_softplus=delta_softplus,
        routes_unique=routes_unique,
        routes_cover=routes_cover,
    )


class _RoutesView(NamedTuple):
    index: Tensor
    u_group: Optional[Tensor]


def _dense(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t.to(dtype).contiguous()


def _empty(u: Tensor) -> Tensor:
    return u.new_empty(_EMPTY_SHAPE, dtype=compute_dtype(u.dtype))


# The call's KernelPlan as op arguments (plain ints and bools, so torch.compile sees constants).
_PLAN_ARGS = ("chunk", "span", "chunked", "partials_bf16", "block_d", "warps")


@torch.library.custom_op("vssm::selective_scan", mutates_args=())
def _scan_op(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Optional[Tensor], delta_bias: Optional[Tensor], z: Optional[Tensor],
    index: Tensor, param_index: Optional[Tensor], u_group: Optional[Tensor],
    delta_softplus: bool, merge: str, out_dtype: torch.dtype, return_hidden: bool, backend: str, routes_unique: bool,
    routes_cover: bool, chunk: int, span: int, chunked: bool, partials_bf16: bool,
    block_d: int, warps: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    prob = _problem(u, delta, A, B, C, D, delta_bias, index, param_index, u_group, delta_softplus, routes_unique,
                    routes_cover)
    plan = KernelPlan(chunk, span, chunked, partials_bf16, block_d, warps)
    out, hidden, state, extra = BACKENDS[backend].forward(prob, z, merge, out_dtype, return_hidden, plan)
    return (  # contiguous, as the fake below says
        out.contiguous(),
        hidden.contiguous() if hidden is not None else _empty(u),
        state.contiguous(),
        extra.contiguous() if extra is not None else _empty(u),
    )


@_scan_op.register_fake
def _scan_op_fake(u, delta, A, B, C, D, delta_bias, z, index, param_index, u_group,
                  delta_softplus, merge, out_dtype, return_hidden, backend, routes_unique, routes_cover, chunk,
                  *_plan):
    sizes = scan_sizes(u, A, index)
    b, L, K, d, N = sizes.batch, sizes.length, sizes.routes, sizes.dim, sizes.d_state
    out_shape = (b, L, K, d) if merge == "none" else (b, L, d)
    dtype = compute_dtype(u.dtype)
    state_shape, extra_shape = BACKENDS[backend].saved_shapes(sizes, z is not None, chunk)
    return (
        u.new_empty(out_shape, dtype=out_dtype),
        u.new_empty((b, L, K, d, N) if return_hidden else _EMPTY_SHAPE, dtype=dtype),
        u.new_empty(state_shape, dtype=dtype),
        u.new_empty(extra_shape, dtype=dtype),
    )


@torch.library.custom_op("vssm::selective_scan_backward", mutates_args=())
def _scan_backward_op(
    dout: Tensor, dhidden: Optional[Tensor],
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Optional[Tensor], delta_bias: Optional[Tensor], z: Optional[Tensor],
    index: Tensor, param_index: Optional[Tensor], u_group: Optional[Tensor],
    state: Tensor, extra: Tensor,
    delta_softplus: bool, merge: str, backend: str, routes_unique: bool, routes_cover: bool,
    chunk: int, span: int, chunked: bool, partials_bf16: bool,
    block_d: int, warps: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    prob = _problem(u, delta, A, B, C, D, delta_bias, index, param_index, u_group, delta_softplus, routes_unique,
                    routes_cover)
    plan = KernelPlan(chunk, span, chunked, partials_bf16, block_d, warps)
    grads, dz = BACKENDS[backend].backward(
        prob, z, merge, state, extra if z is not None else None, dout, dhidden, plan
    )
    # contiguous, as the fake below says (inductor checks the strides on CUDA; the inputs may be strided views)
    return (
        _dense(grads.u, u.dtype), _dense(grads.delta, delta.dtype), _dense(grads.A, A.dtype),
        _dense(grads.B, B.dtype), _dense(grads.C, C.dtype),
        _dense(grads.D, D.dtype) if D is not None else _empty(u),
        _dense(grads.delta_bias, delta_bias.dtype) if delta_bias is not None else _empty(u),
        _dense(dz, z.dtype) if z is not None else _empty(u),
    )


@_scan_backward_op.register_fake
def _scan_backward_op_fake(dout, dhidden, u, delta, A, B, C, D, delta_bias, z, index, param_index,
                           u_group, state, extra, delta_softplus, merge, backend, routes_unique,
                           routes_cover, *_plan):
    dense = lambda t: t.new_empty(t.shape)  # noqa: E731  (contiguous, whatever the input's strides)
    return (
        dense(u), dense(delta), dense(A), dense(B), dense(C),
        dense(D) if D is not None else _empty(u),
        dense(delta_bias) if delta_bias is not None else _empty(u),
        dense(z) if z is not None else _empty(u),
    )


_TENSOR_ARGS = ("u", "delta", "A", "B", "C", "D", "delta_bias", "z", "index", "param_index", "u_group")
_FLAG_ARGS = ("delta_softplus", "merge", "out_dtype", "return_hidden", "backend", "routes_unique", "routes_cover")


def _setup_context(ctx, inputs, output):
    """Saves the inputs, the forward's saved state and its plan: the backward runs with the forward's settings."""
    ctx.save_for_backward(*inputs[: len(_TENSOR_ARGS)], output[2], output[3])
    flags = inputs[len(_TENSOR_ARGS):]
    (ctx.delta_softplus, ctx.merge, _, ctx.return_hidden, ctx.backend, ctx.routes_unique,
     ctx.routes_cover) = flags[: len(_FLAG_ARGS)]
    ctx.plan = tuple(flags[len(_FLAG_ARGS):])


def _backward(ctx, dout, dhidden, _dstate, _dextra):
    saved = ctx.saved_tensors
    tensors, state, extra = saved[: len(_TENSOR_ARGS)], saved[-2], saved[-1]
    grads = _scan_backward_op(
        dout.contiguous() if dout is not None else None,
        dhidden if ctx.return_hidden else None,
        *tensors, state, extra, ctx.delta_softplus, ctx.merge, ctx.backend, ctx.routes_unique,
        ctx.routes_cover, *ctx.plan,
    )
    du, ddelta, dA, dB, dC, dD, dbias, dz = grads
    u, delta, A, B, C, D, delta_bias, z = tensors[:8]
    return (
        du, ddelta, dA, dB, dC,
        dD if D is not None else None,
        dbias if delta_bias is not None else None,
        dz if z is not None else None,
        *([None] * (len(_TENSOR_ARGS) - 8 + len(_FLAG_ARGS) + len(_PLAN_ARGS))),
    )


_scan_op.register_autograd(_backward, setup_context=_setup_context)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    *,
    routes: RoutesLike,
    delta_softplus: bool = True,
    merge: str = "sum",
    out_dtype: Optional[torch.dtype] = None,
    backend: Optional[str] = None,
    return_hidden: bool = False,
    config: Optional[KernelConfig] = None,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Selective scan over K routes of tokens, gathered and merged by the operator.

    u: (batch, L, Ku, dim), Ku == 1 or K (or any Ku with ``routes.u_group``); delta: (batch, L, K, dim);
    A: (K, dim, N); B, C: (batch, L, K, N); D, delta_bias: (K, dim); z: like u (accepted dtypes and devices:
    vssm/kernels/checks.py; a bad one is a ValueError naming the argument);
    routes: int (K, T) table of raster token indices (-1 = padding step) or a :class:`Routes`.
    Returns (batch, L, dim) for merge "sum"/"mean", (batch, L, K, dim) for "none", in ``out_dtype``
    (default u's dtype); with ``return_hidden`` also the states (batch, L, K, dim, N) in float32
    (float64 for float64 inputs). Backends: "reference" (oracle), "torch" (CPU default), "triton"
    (CUDA default once registered). ``config``: kernel settings of this call (:mod:`vssm.kernels.config`),
    over those of the enclosing ``kernel_config`` block; the backward uses the forward's.
    Reruns are bit-identical (no atomics) except on the torch backend on CUDA. A problem with a zero size
    (batch, L, dim, N or T) has nothing to scan and is answered by the reference, empty outputs and
    zero-size gradients included.
    """
    routes = as_routes(routes)
    sizes = check_inputs(u, delta, A, B, C, D, delta_bias, z, routes, merge, out_dtype=out_dtype)
    index = routes.index
    param_index = routes.param_index
    u_group = routes.u_group
    name = _pick_backend(u.device, backend)
    if name == "reference" or 0 in (sizes.batch, sizes.length, sizes.dim, sizes.d_state, sizes.steps):
        return selective_scan_reference(
            u, delta, A, B, C, D, delta_bias, z,
            routes=routes, delta_softplus=delta_softplus, merge=merge,
            out_dtype=out_dtype, return_hidden=return_hidden,
        )
    routes_unique, routes_cover = schedule_facts(routes, u.shape[1]) if name == "triton" else (False, False)
    plan = BACKENDS[name].plan(current_config(config), sizes, routes_unique, routes_cover)
    out, hidden, _, _ = _scan_op(
        u, delta, A, B, C, D, delta_bias, z, index, param_index, u_group,
        delta_softplus, merge, out_dtype or u.dtype, return_hidden, name, routes_unique, routes_cover,
        *plan.as_args(),
    )
    return (out, hidden) if return_hidden else out
