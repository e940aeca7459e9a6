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
from .reference import compute_dtype, selective_scan_reference
from .routes import RoutesLike, as_routes

Tensor = torch.Tensor
_EMPTY_SHAPE = (0,)


class Backend(NamedTuple):
    """A selective-scan implementation.

    forward(prob, z, merge, out_dtype, return_hidden) -> (out, hidden|None, state, extra|None)
    backward(prob, z, merge, state, extra, dout, dhidden|None) -> (ScanGrads, dz|None)
    saved_shapes(sizes, has_z) -> (state shape, extra shape), used by the fake implementation
    supports(device) -> bool
    """

    forward: Callable
    backward: Callable
    saved_shapes: Callable[[ScanSizes, bool], Tuple[Tuple[int, ...], Tuple[int, ...]]]
    supports: Callable[[torch.device], bool]


def _torch_saved_shapes(sizes: ScanSizes, has_z: bool) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    chunk = max(1, min(sizes.steps, torch_scan._CHUNK_ELEMENTS // max(1, sizes.batch * sizes.routes * sizes.dim * sizes.d_state)))
    n_chunks = -(-sizes.steps // chunk)
    state = (n_chunks, sizes.batch, sizes.routes, sizes.dim, sizes.d_state)
    extra = (sizes.batch, sizes.length, sizes.routes, sizes.dim) if has_z else _EMPTY_SHAPE
    return state, extra


BACKENDS: Dict[str, Backend] = {
    "torch": Backend(torch_scan.forward, torch_scan.backward, _torch_saved_shapes, lambda device: True),
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
             routes_unique, routes_cover) -> torch_scan.ScanProblem:
    index = index.long()
    groups = route_groups(_RoutesView(index, u_group), u.shape[2], u.device)
    return torch_scan.ScanProblem(
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


def _sizes(u, A, index) -> ScanSizes:
    batch, length, u_slots, dim = u.shape
    K, steps = index.shape
    return ScanSizes(batch, length, K, u_slots, dim, A.shape[2], steps)


def _empty(u: Tensor) -> Tensor:
    return u.new_empty(_EMPTY_SHAPE, dtype=compute_dtype(u.dtype))


@torch.library.custom_op("vssm::selective_scan", mutates_args=())
def _scan_op(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Optional[Tensor], delta_bias: Optional[Tensor], z: Optional[Tensor],
    index: Tensor, param_index: Optional[Tensor], u_group: Optional[Tensor],
    delta_softplus: bool, merge: str, out_dtype: torch.dtype, return_hidden: bool, backend: str, routes_unique: bool,
    routes_cover: bool,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    prob = _problem(u, delta, A, B, C, D, delta_bias, index, param_index, u_group, delta_softplus, routes_unique,
                    routes_cover)
    out, hidden, state, extra = BACKENDS[backend].forward(prob, z, merge, out_dtype, return_hidden)
    return (
        out,
        hidden if hidden is not None else _empty(u),
        state,
        extra if extra is not None else _empty(u),
    )


@_scan_op.register_fake
def _scan_op_fake(u, delta, A, B, C, D, delta_bias, z, index, param_index, u_group,
                  delta_softplus, merge, out_dtype, return_hidden, backend, routes_unique, routes_cover):
    sizes = _sizes(u, A, index)
    b, L, K, d, N = sizes.batch, sizes.length, sizes.routes, sizes.dim, sizes.d_state
    out_shape = (b, L, K, d) if merge == "none" else (b, L, d)
    dtype = compute_dtype(u.dtype)
    state_shape, extra_shape = BACKENDS[backend].saved_shapes(sizes, z is not None)
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
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    prob = _problem(u, delta, A, B, C, D, delta_bias, index, param_index, u_group, delta_softplus, routes_unique,
                    routes_cover)
    grads, dz = BACKENDS[backend].backward(
        prob, z, merge, state, extra if z is not None else None, dout, dhidden
    )
    return (
        grads.u.to(u.dtype), grads.delta.to(delta.dtype), grads.A.to(A.dtype),
        grads.B.to(B.dtype), grads.C.to(C.dtype),
        grads.D.to(D.dtype) if D is not None else _empty(u),
        grads.delta_bias.to(delta_bias.dtype) if delta_bias is not None else _empty(u),
        dz.to(z.dtype) if z is not None else _empty(u),
    )


@_scan_backward_op.register_fake
def _scan_backward_op_fake(dout, dhidden, u, delta, A, B, C, D, delta_bias, z, index, param_index,
                           u_group, state, extra, delta_softplus, merge, backend, routes_unique,
                           routes_cover):
    return (
        torch.empty_like(u), torch.empty_like(delta), torch.empty_like(A),
        torch.empty_like(B), torch.empty_like(C),
        torch.empty_like(D) if D is not None else _empty(u),
        torch.empty_like(delta_bias) if delta_bias is not None else _empty(u),
        torch.empty_like(z) if z is not None else _empty(u),
    )


_TENSOR_ARGS = ("u", "delta", "A", "B", "C", "D", "delta_bias", "z", "index", "param_index", "u_group")


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[: len(_TENSOR_ARGS)], output[2], output[3])
    (ctx.delta_softplus, ctx.merge, _, ctx.return_hidden, ctx.backend, ctx.routes_unique,
     ctx.routes_cover) = inputs[len(_TENSOR_ARGS):]


def _backward(ctx, dout, dhidden, _dstate, _dextra):
    saved = ctx.saved_tensors
    tensors, state, extra = saved[: len(_TENSOR_ARGS)], saved[-2], saved[-1]
    grads = _scan_backward_op(
        dout.contiguous() if dout is not None else None,
        dhidden if ctx.return_hidden else None,
        *tensors, state, extra, ctx.delta_softplus, ctx.merge, ctx.backend, ctx.routes_unique,
        ctx.routes_cover,
    )
    du, ddelta, dA, dB, dC, dD, dbias, dz = grads
    u, delta, A, B, C, D, delta_bias, z = tensors[:8]
    return (
        du, ddelta, dA, dB, dC,
        dD if D is not None else None,
        dbias if delta_bias is not None else None,
        dz if z is not None else None,
        None, None, None, None, None, None, None, None, None, None,
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
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Selective scan over K routes of tokens, gathered and merged by the operator.

    u: (batch, L, Ku, dim), Ku == 1 or K (or any Ku with ``routes.u_group``); delta: (batch, L, K, dim);
    A: (K, dim, N) float32; B, C: (batch, L, K, N); D, delta_bias: (K, dim) float32; z: like u;
    routes: int (K, T) table of raster token indices (-1 = padding step) or a :class:`Routes`.
    Returns (batch, L, dim) for merge "sum"/"mean", (batch, L, K, dim) for "none", in ``out_dtype``
    (default u's dtype); with ``return_hidden`` also the states (batch, L, K, dim, N) in float32
    (float64 for float64 inputs). Backends: "reference" (oracle), "torch" (CPU default), "triton"
    (CUDA default once registered).
    """
    routes = as_routes(routes)
    check_inputs(u, delta, A, B, C, D, delta_bias, z, routes, merge)
    index = routes.index.to(u.device)
    param_index = None if routes.param_index is None else routes.param_index.to(u.device)
    u_group = None if routes.u_group is None else routes.u_group.to(u.device)
    name = _pick_backend(u.device, backend)
    if name == "reference":
        return selective_scan_reference(
            u, delta, A, B, C, D, delta_bias, z,
            routes=routes, delta_softplus=delta_softplus, merge=merge,
            out_dtype=out_dtype, return_hidden=return_hidden,
        )
    out, hidden, _, _ = _scan_op(
        u, delta, A, B, C, D, delta_bias, z, index, param_index, u_group,
        delta_softplus, merge, out_dtype or u.dtype, return_hidden, name,
        name == "triton" and routes.tokens_unique(), name == "triton" and routes.covers(u.shape[1]),
    )
    return (out, hidden) if return_hidden else out
