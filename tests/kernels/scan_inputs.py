"""Random selective-scan problems for the kernel tests (fresh inputs on every call)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from vssm.kernels import Routes

# Tolerances of mamba_ssm's selective-scan tests (kernel_anchors.md §6).
TOLERANCES = {
    torch.float32: dict(rtol=6e-4, atol=2e-3),
    torch.float16: dict(rtol=3e-3, atol=5e-3),
    torch.bfloat16: dict(rtol=3e-2, atol=5e-2),
    torch.float64: dict(rtol=1e-10, atol=1e-10),
}


@dataclass
class Problem:
    u: torch.Tensor
    delta: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: Optional[torch.Tensor]
    delta_bias: Optional[torch.Tensor]
    z: Optional[torch.Tensor]
    routes: Routes

    def args(self):
        return (self.u, self.delta, self.A, self.B, self.C, self.D, self.delta_bias, self.z)

    def float_args(self):
        return [t for t in self.args() if t is not None]


def random_routes(K: int, L: int, pad: int = 3, repeat: bool = True, generator=None) -> torch.Tensor:
    """(K, L + pad) int32: a random permutation of the tokens per route, with padding steps (-1) at
    random places and (if ``repeat``) one token visited twice on route 0 (and one token skipped)."""
    rows = []
    for k in range(K):
        order = torch.randperm(L, generator=generator)
        if repeat and k == 0 and L > 2:
            order[1] = order[0]  # order[1]'s token is never visited by route 0; order[0] twice
        row = torch.cat([order, torch.full((pad,), -1, dtype=order.dtype)])
        rows.append(row[torch.randperm(L + pad, generator=generator)])
    return torch.stack(rows).int()


def random_problem(
    batch: int = 2, L: int = 13, K: int = 2, dim: int = 5, N: int = 4, *,
    shared_u: bool = False, with_z: bool = True, with_D: bool = True, with_bias: bool = True,
    dtype: torch.dtype = torch.float32, pad: int = 3, repeat: bool = True,
    param_index: bool = False, device: str = "cpu",
) -> Problem:
    Ku = 1 if shared_u else K
    p_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    rand = lambda *s: torch.randn(*s, device=device)  # noqa: E731
    index = random_routes(K, L, pad=pad, repeat=repeat)
    pidx = random_routes(K, L, pad=0, repeat=False)[:, : index.shape[1]] if param_index else None
    if pidx is not None and pidx.shape[1] < index.shape[1]:
        pidx = torch.cat([pidx, torch.zeros(K, index.shape[1] - pidx.shape[1], dtype=pidx.dtype)], 1)
    return Problem(
        u=rand(batch, L, Ku, dim).to(dtype),
        delta=(0.5 * rand(batch, L, K, dim)).to(dtype),
        A=-(0.1 + 2 * torch.rand(K, dim, N, device=device)).to(p_dtype),
        B=rand(batch, L, K, N).to(dtype),
        C=rand(batch, L, K, N).to(dtype),
        D=rand(K, dim).to(p_dtype) if with_D else None,
        delta_bias=(0.3 * rand(K, dim)).to(p_dtype) if with_bias else None,
        z=rand(batch, L, Ku, dim).to(dtype) if with_z else None,
        routes=Routes(index=index.to(device), param_index=None if pidx is None else pidx.int().to(device)),
    )


def as_float64(p: Problem) -> Problem:
    cast = lambda t: None if t is None else t.detach().double()  # noqa: E731
    return Problem(*(cast(t) for t in p.args()), routes=p.routes)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    torch.testing.assert_close(actual.double(), expected.double(), **TOLERANCES[dtype])
