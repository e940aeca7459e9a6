"""LayerNorm over the last dimension: the Triton kernel on CUDA, torch's elsewhere (same semantics)."""
from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn.functional as F

try:  # the fused kernel needs triton; without it torch's LayerNorm runs (CUDA users are warned once)
    from . import triton_layer_norm
except ImportError:  # pragma: no cover - depends on the installation
    triton_layer_norm = None

_HALF_OR_FLOAT = (torch.float16, torch.bfloat16, torch.float32)
_AUTOCAST_DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps", "hpu", "mtia")
_warned = False


def _use_triton(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], backend: Optional[str]) -> bool:
    if backend not in (None, "triton", "torch"):
        raise ValueError(f"backend: got {backend!r}, expected None, 'triton' or 'torch'")
    if backend == "torch" or torch.compiler.is_compiling():  # inductor fuses torch's LayerNorm itself
        return False
    if backend is None and x.device.type != "cuda":
        return False
    if triton_layer_norm is None:
        if backend == "triton":
            raise ValueError("backend: 'triton' asked for, but triton is not installed")
        global _warned
        if not _warned:
            _warned = True
            warnings.warn("vssm layer_norm: triton is not installed; using torch's slower LayerNorm on CUDA",
                          RuntimeWarning, stacklevel=3)
        return False
    fits = x.dtype in _HALF_OR_FLOAT and triton_layer_norm.supports(x, weight, bias)
    if backend == "triton" and not fits:
        raise ValueError(f"x: the triton LayerNorm needs fp16/bf16/fp32 rows of at most "
                         f"{triton_layer_norm.MAX_CHANNELS} channels and an affine weight and bias; got "
                         f"dtype {x.dtype}, shape {tuple(x.shape)}")
    return fits


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype while autocast is on for ``device_type``; None when it is off or the type has no
    autocast (e.g. ``meta``, where asking torch whether it is on raises). A fixed list of types rather than
    ``torch.amp.is_autocast_available``, which torch.compile (torch 2.11) cannot trace."""
    if device_type in _AUTOCAST_DEVICE_TYPES and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def layer_norm(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    eps: float = 1e-5,
    out_dtype: Optional[torch.dtype] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """x (..., C) -> LayerNorm over C, computed in float32, returned in ``out_dtype``.

    ``out_dtype`` None follows torch: float32 under autocast, else x's dtype. ``backend`` None picks the
    Triton kernel for CUDA tensors (not while torch.compile traces) and torch's otherwise.
    """
    if out_dtype is None:
        out_dtype = x.dtype if autocast_dtype(x.device.type) is None else torch.float32
    if _use_triton(x, weight, bias, backend):
        return triton_layer_norm.TritonLayerNorm.apply(x, weight, bias, eps, out_dtype)
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps).to(out_dtype)
