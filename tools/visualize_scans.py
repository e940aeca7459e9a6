"""Draw a scan strategy's routes: one panel per route, a polyline through the cells coloured by step.

    python tools/visualize_scans.py --scan hilbert --size 14x14 --out hilbert.png
    python tools/visualize_scans.py --gallery docs/gallery --sizes 8x8 14x14   # every registered strategy

Padding steps (-1) are skipped; a jump between cells that are not neighbours is drawn dashed. Multi-scale
routes over the low-resolution tokens are drawn on the low-resolution grid, scaled to the full grid.
"""
from __future__ import annotations

import argparse
import os
from typing import List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from vssm.scans import get_scan, list_scans  # noqa: E402


def parse_size(text: str) -> Tuple[int, int]:
    try:
        H, W = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size: got {text!r}, expected HxW, e.g. 14x14") from None
    return H, W


def route_points(route: np.ndarray, H: int, W: int) -> np.ndarray:
    """(n, 2) cell centres (x, y) of a route's visited tokens; low-resolution tokens (>= H*W, multi-scale)
    are mapped onto the full grid."""
    route = route[route >= 0]
    full = route < H * W
    points = np.empty((route.size, 2), dtype=float)
    points[full] = np.stack([route[full] % W, route[full] // W], axis=1)
    if (~full).any():
        low = route[~full] - H * W
        w = (W + 1) // 2
        points[~full] = np.stack([(low % w) * 2 + 0.5, (low // w) * 2 + 0.5], axis=1)
    return points


def draw(scan: str, H: int, W: int, out: str, title: Optional[str] = None) -> None:
    routes = get_scan(scan).routes(H, W).index.numpy()
    K = routes.shape[0]
    cols = min(K, 4)
    rows = -(-K // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows * H / max(W, 1) + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= K:
            continue
        points = route_points(routes[k], H, W)
        segments = np.stack([points[:-1], points[1:]], axis=1)
        jump = np.abs(segments[:, 1] - segments[:, 0]).sum(1) > 1.01
        colours = plt.cm.viridis(np.linspace(0, 1, max(len(segments), 1)))
        ax.add_collection(LineCollection(segments[~jump], colors=colours[~jump], linewidths=1.5))
        ax.add_collection(LineCollection(segments[jump], colors=colours[jump], linewidths=0.6, linestyles="dashed"))
        if len(points):
            ax.plot(*points[0], "o", color=colours[0], markersize=4)
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_ylim(H - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.set_title(f"route {k}", fontsize=7)
    fig.suptitle(title or f"{scan} {H}x{W} (start dot, colour = step)", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=72)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", choices=list_scans())
    parser.add_argument("--size", type=parse_size, default=(8, 8))
    parser.add_argument("--out")
    parser.add_argument("--gallery", help="write every strategy at every --sizes into this folder")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(8, 8), (14, 14)])
    args = parser.parse_args(argv)
    if args.gallery:
        for scan in list_scans():
            for H, W in args.sizes:
                draw(scan, H, W, os.path.join(args.gallery, f"{scan}_{H}x{W}.png"))
        print(f"gallery: {args.gallery}")
        return
    if not (args.scan and args.out):
        parser.error("--scan and --out are required (or --gallery DIR)")
    draw(args.scan, *args.size, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
