"""Mamba's initialisation of the selective-scan parameters (shared by every family)."""
from __future__ import annotations

import math

import torch


def init_A_log(rows: int, d_state: int) -> torch.Tensor:
    """(rows, N) log(1..N) per row: A = -exp(A_log) = -(1..N)."""
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(rows, 1)


def init_dt_bias(rows: int, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> torch.Tensor:
    """(rows,) inverse-softplus of dt drawn log-uniformly from [dt_min, dt_max]."""
    dt = torch.exp(torch.rand(rows) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


def init_dt_weight(shape, dt_rank: int, dt_scale: float = 1.0) -> torch.Tensor:
    """dt projection weight: uniform in +-dt_rank^-0.5 * dt_scale."""
    bound = dt_rank ** -0.5 * dt_scale
    return torch.empty(shape).uniform_(-bound, bound)


def init_linear_weight(shape, fan_in: int) -> torch.Tensor:
    """Like nn.Linear's default: uniform in +-1/sqrt(fan_in)."""
    bound = 1 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound)
