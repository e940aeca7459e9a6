"""Triton scan at the benchmark shapes (GPU only): every selectable kernel variant, forward and backward, over
the whole batch (the largest offsets: case (c) has B*L*K*D*N = 4.9e9 elements), against the float64 torch
backend on the first and last batch rows. benchmarks/gpu_tests.sh also runs these under compute-sanitizer.

The output gradient is zero outside the compared rows, so the parameter gradients (summed over the batch) are
comparable too, and every other row's input gradients must come back exactly zero."""
import pytest
import torch

from vssm.kernels import KernelConfig, Routes, selective_scan

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
DEVICE = "cuda"

SHAPES = {  # batch, H, W (L = H*W, or W with H = 0: a 1-D sequence), dim, N, scan, with z; (c) first: largest
    "c": (128, 56, 56, 192, 16, "cross", False),
    "vim-long": (8, 0, 4097, 384, 16, "bidirectional", True),
    "a": (128, 56, 56, 96, 1, "cross", False),
}
VARIANTS = {
    "default": KernelConfig(),
    "whole-route": KernelConfig(chunk_parallel=False),
    "chunk-parallel": KernelConfig(chunk_parallel=True),
    "four-warps": KernelConfig(warps=4),
}


def routes_for(H: int, W: int, scan: str) -> Routes:
    """Cross scan (rows, columns, both reversed) of an H x W grid, or a sequence and its reverse."""
    if scan == "bidirectional":
        order = torch.arange(W)
        return Routes(index=torch.stack([order, order.flip(0)]).int().to(DEVICE))
    rows = torch.arange(H * W)
    cols = rows.view(H, W).t().reshape(-1)
    return Routes(index=torch.stack([rows, cols, rows.flip(0), cols.flip(0)]).int().to(DEVICE))


def make_inputs(batch, H, W, dim, N, scan, with_z):
    torch.manual_seed(0)
    routes = routes_for(H, W, scan)
    K, L = routes.num_routes, max(H, 1) * W
    rand = lambda *s: torch.randn(*s, device=DEVICE)  # noqa: E731
    tensors = dict(u=rand(batch, L, 1, dim), delta=0.5 * rand(batch, L, K, dim), A=-(0.5 + torch.rand(K, dim, N, device=DEVICE)),
                   B=rand(batch, L, K, N), C=rand(batch, L, K, N), D=rand(K, dim), delta_bias=0.1 * rand(K, dim),
                   z=rand(batch, L, 1, dim) if with_z else None)
    return tensors, routes


def run(tensors, routes, weights, config=None, backend="triton"):
    leaves = {n: t.detach().clone().requires_grad_() for n, t in tensors.items() if t is not None}
    args = [leaves.get(n) for n in ("u", "delta", "A", "B", "C", "D", "delta_bias", "z")]
    out = selective_scan(*args, routes=routes, backend=backend, config=config)
    grads = torch.autograd.grad((out.double() * weights).sum(), list(leaves.values()))
    return out.detach(), dict(zip(leaves, grads))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_benchmark_shape_matches_torch_backend(shape, variant):
    tensors, routes = make_inputs(*SHAPES[shape])
    batch = tensors["u"].shape[0]
    rows = [0, batch - 1]
    weights = torch.zeros(batch, *tensors["u"].shape[1:2], tensors["u"].shape[3], dtype=torch.float64, device=DEVICE)
    weights[rows] = torch.randn_like(weights[rows])
    out, grads = run(tensors, routes, weights, VARIANTS[variant])
    assert torch.isfinite(out).all()
    sub = {n: (t[rows].double() if t.dim() == 4 else t.double()) if t is not None else None for n, t in tensors.items()}
    ref_out, ref_grads = run(sub, routes, weights[rows], backend="torch")
    assert rel(out[rows], ref_out) < 1e-5, f"output: relative error {rel(out[rows], ref_out):.2e}"
    others = torch.ones(batch, dtype=torch.bool, device=DEVICE)
    others[rows] = False
    for name, g in grads.items():
        per_row = g.dim() == 4
        mine = g[rows] if per_row else g
        err = rel(mine, ref_grads[name])
        assert err < 1e-4, f"d{name}: relative error {err:.2e}"
        if per_row:
            assert torch.count_nonzero(g[others]) == 0, f"d{name}: rows without output gradient got a gradient"
