"""Channel MLPs."""
from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 over the last axis: (..., dim) -> (..., dim)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
