"""Channel MLPs."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 over the last axis: (..., dim) -> (..., dim)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        drop: float = 0.0,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.fc1 = nn.Linear(dim, hidden, **dd)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, **dd)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
