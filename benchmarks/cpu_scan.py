"""CPU timing of the selective-scan backends: the sequential reference vs the chunked torch backend.

    python benchmarks/cpu_scan.py [--repeats 3] [--threads N]

Prints forward and forward+backward medians (seconds) for the shapes of issue 2 and the speed-up of
the torch backend over the reference. Both run side by side in one process on the same inputs.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Callable, Dict, List

import torch

from vssm.kernels import selective_scan
from vssm.scans import get_scan

SHAPES = [
    # (batch, H, W, K scan, dim, N)
    dict(batch=2, grid=(56, 56), scan="cross", dim=96, N=1),
    dict(batch=2, grid=(1, 1024), scan="bidirectional", dim=192, N=16),
]


def make_inputs(batch: int, grid, scan: str, dim: int, N: int) -> Dict[str, object]:
    H, W = grid
    routes = get_scan(scan).routes(H, W)
    K, L = routes.num_routes, H * W
    return dict(
        u=torch.randn(batch, L, 1, dim),
        delta=0.5 * torch.randn(batch, L, K, dim),
        A=-torch.rand(K, dim, N) - 0.5,
        B=torch.randn(batch, L, K, N),
        C=torch.randn(batch, L, K, N),
        D=torch.randn(K, dim),
        delta_bias=0.1 * torch.randn(K, dim),
        routes=routes,
    )


def time_call(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up: first-call costs (op registration, allocator) stay out of the numbers
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_backend(inputs: Dict[str, object], backend: str, repeats: int) -> Dict[str, float]:
    tensors = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}

    def forward() -> torch.Tensor:
        return selective_scan(**tensors, routes=inputs["routes"], backend=backend)

    def forward_backward() -> None:
        leaves = {k: v.detach().requires_grad_() for k, v in tensors.items()}
        out = selective_scan(**leaves, routes=inputs["routes"], backend=backend)
        out.sum().backward()

    with torch.no_grad():
        fwd = time_call(forward, repeats)
    return dict(fwd=fwd, fwd_bwd=time_call(forward_backward, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| shape (batch, L, K, dim, N) | reference fwd (s) | torch fwd (s) | fwd speed-up | reference fwd+bwd (s) | torch fwd+bwd (s) | fwd+bwd speed-up |")
    print("|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        inputs = make_inputs(**shape)
        ref = bench_backend(inputs, "reference", args.repeats)
        fast = bench_backend(inputs, "torch", args.repeats)
        H, W = shape["grid"]
        K = inputs["routes"].num_routes
        print(
            f"| ({shape['batch']}, {H * W}, {K}, {shape['dim']}, {shape['N']}) | {ref['fwd']:.3f} | {fast['fwd']:.3f} | "
            f"{ref['fwd'] / fast['fwd']:.1f}x | {ref['fwd_bwd']:.3f} | {fast['fwd_bwd']:.3f} | {ref['fwd_bwd'] / fast['fwd_bwd']:.1f}x |"
        )


if __name__ == "__main__":
    main()
