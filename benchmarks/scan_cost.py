"""Per-strategy cost on the CPU at 56x56: route-table generation (first call, uncached) and one forward
and forward+backward of the strategy through an SS2D mixer's scan (torch backend).

    python benchmarks/scan_cost.py [--size 56] [--batch 2] [--dim 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from vssm.layers.ss2d import SS2D
from vssm.scans import get_scan, list_scans


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    H = W = args.size
    torch.manual_seed(0)
    print(f"# {H}x{W}, batch {args.batch}, dim {args.dim}, d_state 1, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| scan | K | routes T | route generation (ms) | scan fwd (ms) | scan fwd+bwd (ms) |")
    print("|---|---|---|---|---|---|")
    for name in list_scans():
        get_scan(name).routes(8, 8)  # warm-up: first-use costs (lazy imports) stay out of the timing
        start = time.perf_counter()
        routes = get_scan(name).routes(H, W)
        generation = time.perf_counter() - start
        mixer = SS2D(args.dim, d_state=1, ssm_ratio=1.0, scan=name)
        u = torch.randn(args.batch, H * W, 1, args.dim)

        def scan(u=u, mixer=mixer):
            plan = mixer.scan.prepare(u, H, W, module=mixer.scan_module)
            delta, B, C = mixer.project(plan.tokens)
            return mixer.scan.scan(plan, delta, B, C, mixer.scan_params(), module=mixer.scan_module)

        with torch.no_grad():
            forward = median_seconds(scan, args.repeats)
        leaf = u.clone().requires_grad_()
        both = median_seconds(lambda: scan(leaf).sum().backward(), args.repeats)
        print(f"| {name} | {routes.num_routes} | {routes.num_steps} | {1e3 * generation:.1f} | {1e3 * forward:.1f} | {1e3 * both:.1f} |")


if __name__ == "__main__":
    main()
