"""``vssm::selective_scan`` in standard PyTorch ops, for export: route gather, the recurrence as one
``torch.ops.higher_order.scan`` over the steps (an ONNX ``Scan``), padding steps, D, the z gate, the merge and
``return_hidden``. Inference only: the op's saved-for-backward outputs come back empty.

Semantics are the op's (:mod:`vssm.kernels.reference`); arguments are read by name from the op's schema, so
arguments added to the op later that only tune a backend (kernel settings) do not change this translation.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
import torch.nn.functional as F
from torch._higher_order_ops.scan import scan

from vssm.kernels import op as _op  # noqa: F401  (defines torch.ops.vssm.selective_scan)
from vssm.kernels.contract import compute_dtype

Tensor = torch.Tensor
SCAN_OP = torch.ops.vssm.selective_scan.default
# What this translation reads; any other argument of the op must only choose how a backend runs.
_SEMANTIC = ("u", "delta", "A", "B", "C", "D", "delta_bias", "z", "index", "param_index", "u_group",
             "delta_softplus", "merge", "out_dtype", "return_hidden")


def _bind(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The op's arguments by schema name (defaults filled in)."""
    schema = SCAN_OP._schema
    bound: Dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(args):
            bound[arg.name] = args[i]
        elif arg.name in kwargs:
            bound[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            bound[arg.name] = arg.default_value
    missing = [name for name in _SEMANTIC if name not in bound]
    if missing:
        raise RuntimeError(f"vssm.export: the op schema {schema} lacks arguments {missing} this translation reads")
    return bound


def _gather(x: Tensor, rows: Tensor, K: int, T: int) -> Tensor:
    """x (b, L, S, c) at flat rows token * S + slot, rows (K * T,) -> (b, K, T, c)."""
    return x.flatten(1, 2).index_select(1, rows).unflatten(1, (K, T))


def _scatter(values: Tensor, rows: Tensor, length: int, K: int) -> Tensor:
    """values (b, K, T, ...) added at flat rows token * K + k -> (b, length, K, ...)."""
    flat = values.flatten(1, 2)
    target = flat.new_zeros((flat.shape[0], length * K, *flat.shape[2:]))
    return target.index_add(1, rows, flat).unflatten(1, (length, K))


def _step(h: Tensor, xs: Tuple[Tensor, Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
    """One scan step for all routes: h (b, K, d, N), decay and input (b, K, d, N), C (b, K, N)."""
    decay, x, C = xs
    h = decay * h + x
    return h, ((h * C.unsqueeze(2)).sum(-1), h.clone())


def _step_no_hidden(h: Tensor, xs: Tuple[Tensor, Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
    h, (y, _) = _step(h, xs)
    return h, y


def selective_scan_decomposition(*args: Any, **kwargs: Any) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Drop-in for ``torch.ops.vssm.selective_scan.default`` (same arguments and 4 outputs: out, hidden or
    empty, and two empty tensors in place of the backward's saved state)."""
    a = _bind(args, kwargs)
    u, delta, A, B, C = a["u"], a["delta"], a["A"], a["B"], a["C"]
    dtype = compute_dtype(u.dtype)
    index = a["index"].long()
    param_index = index if a["param_index"] is None else a["param_index"].long()
    K, T = index.shape
    _, length, slots, dim = u.shape
    N = A.shape[2]
    if a["u_group"] is not None:
        groups = a["u_group"].long()
    elif slots == 1:
        groups = torch.zeros(K, dtype=torch.long, device=u.device)
    else:
        groups = torch.arange(K, dtype=torch.long, device=u.device)
    valid = ((index >= 0) & (param_index >= 0)).to(dtype)  # (K, T)
    p, q = index.clamp(min=0), param_index.clamp(min=0)
    route = torch.arange(K, device=u.device)[:, None]
    u_rows = (p * slots + groups[:, None]).reshape(-1)
    out_rows = (p * K + route).reshape(-1)
    param_rows = (q * K + route).reshape(-1)

    u_r = _gather(u, u_rows, K, T).to(dtype)  # (b, K, T, d)
    s = _gather(delta, param_rows, K, T).to(dtype)
    if a["delta_bias"] is not None:
        s = s + a["delta_bias"].to(dtype)[None, :, None, :]
    dt = F.softplus(s, threshold=20.0) if a["delta_softplus"] else s
    dt = dt * valid[None, :, :, None]  # a padding step: decay 1, input 0
    B_r = _gather(B, param_rows, K, T).to(dtype)  # (b, K, T, N)
    C_r = _gather(C, param_rows, K, T).to(dtype)
    decay = torch.exp(dt.unsqueeze(-1) * A.to(dtype)[None, :, None])  # (b, K, T, d, N)
    x = (dt * u_r).unsqueeze(-1) * B_r.unsqueeze(3)
    h0 = x.new_zeros((x.shape[0], K, dim, N))
    steps = (decay.movedim(2, 0), x.movedim(2, 0), C_r.movedim(2, 0))
    if a["return_hidden"]:
        _, (y, states) = scan(_step, h0, steps)
    else:
        _, y = scan(_step_no_hidden, h0, steps)
    y = y.movedim(0, 2)  # (b, K, T, d)
    if a["D"] is not None:
        y = y + a["D"].to(dtype)[None, :, None, :] * u_r
    y = _scatter(y * valid[None, :, :, None], out_rows, length, K)  # (b, L, K, d)
    if a["z"] is not None:
        y = y * F.silu(a["z"][:, :, groups].to(dtype))
    merge = a["merge"]
    if merge == "sum":
        y = y.sum(2)
    elif merge == "mean":
        y = y.mean(2)
    hidden = u.new_empty((0,), dtype=dtype)
    if a["return_hidden"]:
        hidden = _scatter(states.movedim(0, 2) * valid[None, :, :, None, None], out_rows, length, K)
    return y.to(a["out_dtype"]), hidden, u.new_empty((0,), dtype=dtype), u.new_empty((0,), dtype=dtype)
