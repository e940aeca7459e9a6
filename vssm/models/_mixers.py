"""The token mixers (vssm.layers) as timm's tooling sees them inside the model families.

- fx: each mixer is a leaf module (``register_notrace_module``): its route building branches on the grid
  size, so ``torch.fx`` records one call per mixer instead of tracing into the scan.
- device/dtype: :func:`build_mixer` builds a mixer on a device (``meta`` included) and casts it to a dtype.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional, TypeVar

import torch
from timm.models import register_notrace_module
from torch import nn

from ..layers.bimamba import BiMambaMixer
from ..layers.plain_mamba_mixer import PlainMambaMixer
from ..layers.ss2d import SS2D

M = TypeVar("M", bound=nn.Module)

for _mixer in (SS2D, BiMambaMixer, PlainMambaMixer):
    register_notrace_module(_mixer)


def build_mixer(factory: Callable[[], M], device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> M:
    """``factory()`` with its tensors created on ``device`` (default: torch's), floating ones cast to ``dtype``."""
    with torch.device(device) if device is not None else contextlib.nullcontext():
        mixer = factory()
    return mixer.to(dtype=dtype) if dtype is not None else mixer
