"""Scan-operator demo: run the selective scan over a real photo along each scan strategy's routes.

    python tools/scan_demo.py [--size 48] [--scans cross zigzag ...] [--out outputs/scan_demo.png]

The photo (matplotlib's bundled ``grace_hopper.jpg``) is resized to size x size and its RGB values become
the scan input u (dim 3). With N = 1, B = C = 1 and a constant step, each route is an exponential moving
average along its path, so the picture shows where each strategy carries information. Prints the time of
the reference and torch backends per strategy and saves a figure.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import List

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.cbook  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from vssm.kernels import selective_scan  # noqa: E402
from vssm.scans import get_scan, list_scans  # noqa: E402


# Strategies that are pure route tables (no learned module needed to run them).
ROUTE_SCANS = ("cross", "bidirectional", "zigzag", "hilbert", "window", "atrous")


def load_photo(size: int) -> torch.Tensor:
    """(size, size, 3) float32 in [0, 1]."""
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(image).float() / 255.0


def smooth_along_routes(image: torch.Tensor, scan: str, backend: str, decay: float = 0.15) -> torch.Tensor:
    """Per-route exponential moving average of the pixels, merged by the strategy; (H, W, 3)."""
    H, W, _ = image.shape
    routes = get_scan(scan).routes(H, W)
    K, L = routes.num_routes, H * W
    u = image.reshape(1, L, 1, 3)
    # softplus(delta) * A = -decay per step: h <- exp(-decay) h + dt * u
    dt = torch.nn.functional.softplus(torch.zeros(()))
    out = selective_scan(
        u,
        torch.zeros(1, L, K, 3),
        torch.full((K, 3, 1), -decay / float(dt)),
        torch.ones(1, L, K, 1),
        torch.ones(1, L, K, 1),
        routes=routes,
        merge="none",
        backend=backend,
    )
    per_route = out[0] * ((1 - torch.exp(torch.tensor(-decay))) / dt)  # (L, K, 3): running averages
    return per_route.mean(1).reshape(H, W, 3).clamp(0, 1)


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--scans", nargs="+", default=None, help=f"strategies (default: {', '.join(ROUTE_SCANS)})")
    parser.add_argument("--out", default="outputs/scan_demo.png")
    args = parser.parse_args(argv)
    image = load_photo(args.size)
    scans = args.scans or [s for s in ROUTE_SCANS if s in list_scans()]
    results = {}
    smooth_along_routes(image[:4, :4], "cross", "torch")  # warm-up: first-call costs stay out of the timings
    print(f"selective scan over a {args.size}x{args.size} photo, RGB as 3 channels, N = 1")
    print("| scan | K | reference (ms) | torch (ms) | max |reference - torch| |")
    print("|---|---|---|---|---|")
    for scan in scans:
        timings = {}
        for backend in ("reference", "torch"):
            start = time.perf_counter()
            results[scan, backend] = smooth_along_routes(image, scan, backend)
            timings[backend] = 1e3 * (time.perf_counter() - start)
        diff = (results[scan, "reference"] - results[scan, "torch"]).abs().max().item()
        print(f"| {scan} | {get_scan(scan).num_routes} | {timings['reference']:.1f} | {timings['torch']:.1f} | {diff:.1e} |")
    fig, axes = plt.subplots(1, len(scans) + 1, figsize=(2.4 * (len(scans) + 1), 2.6))
    axes[0].imshow(image.numpy())
    axes[0].set_title("input")
    for ax, scan in zip(axes[1:], scans):
        ax.imshow(results[scan, "torch"].numpy())
        ax.set_title(scan)
    for ax in axes:
        ax.axis("off")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"figure: {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
