"""Input checks of the model families, written so that torch.fx records them as one call (a notrace
function, not traced into) and TorchScript compiles them."""
from __future__ import annotations

import torch
from timm.models import register_notrace_function


def _shape(x: torch.Tensor) -> str:
    """x's shape written as a tuple, "(1, 3, 32, 32)"."""
    return "(" + ", ".join([str(s) for s in x.shape]) + ")"


@register_notrace_function
def check_image(x: torch.Tensor, in_chans: int, min_side: int) -> None:
    """Raise unless x is (batch, in_chans, H, W) with H, W >= min_side."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(f"x: got shape {_shape(x)}, expected (batch, {in_chans}, H, W)")
    if x.shape[2] < min_side or x.shape[3] < min_side:
        raise ValueError(f"x: got an image of {x.shape[2]}x{x.shape[3]}, expected at least {min_side}x{min_side}")
