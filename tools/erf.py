"""Effective receptive field: how strongly each input pixel moves the centre output feature.

    python tools/erf.py vmamba_tiny --out erf.png [--scans cross zigzag hilbert spatial_fusion] [--images 8]

For each model (one per scan when --scans is given) the last feature map of ``features_only`` is taken, the
sum over channels of its centre position is differentiated w.r.t. the input, and |gradient| (summed over
RGB) is averaged over random crops of the bundled photo. Shown on a log scale, normalised per panel.
Models are at random initialisation unless --checkpoint is given.
"""
from __future__ import annotations

import argparse
from typing import List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.cbook  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

import vssm  # noqa: E402,F401  (registers the vssm models)


def photo_crops(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """(count, 3, size, size) random crops of matplotlib's bundled photo, ImageNet-normalised."""
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    photo = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
    generator = torch.Generator().manual_seed(seed)
    _, H, W = photo.shape
    crops = []
    for _ in range(count):
        side = int(torch.randint(min(H, W) // 2, min(H, W) + 1, (1,), generator=generator))
        top = int(torch.randint(0, H - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, W - side + 1, (1,), generator=generator))
        crop = photo[:, top:top + side, left:left + side][None]
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0])
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (torch.stack(crops) - mean) / std


def effective_receptive_field(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(H, W) mean |d centre-feature / d input| over the images."""
    total = torch.zeros(images.shape[-2:])
    for image in images:
        x = image[None].clone().requires_grad_()
        feature = model(x)[-1]  # (1, C, h, w), the deepest map
        h, w = feature.shape[-2:]
        feature[0, :, h // 2, w // 2].sum().backward()
        total += x.grad[0].abs().sum(0)
    return total / len(images)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--out", required=True)
    parser.add_argument("--scans", nargs="+", default=[None], help="scan strategies to compare (default: the model's)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--checkpoint", default=None, help="official or vssm checkpoint file to load")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    images = photo_crops(args.images, args.size, args.seed)
    maps = []
    for scan in args.scans:
        torch.manual_seed(args.seed)
        kwargs = dict(features_only=True)
        if scan is not None:
            kwargs["scan"] = scan
        if args.checkpoint:
            kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=args.checkpoint))
        model = timm.create_model(args.model, **kwargs).eval()
        maps.append(effective_receptive_field(model, images))
    fig, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 3.4), squeeze=False)
    for ax, scan, erf in zip(axes[0], args.scans, maps):
        shown = torch.log10(erf / erf.max() + 1e-6)
        ax.imshow(shown.numpy(), cmap="magma", vmin=-4, vmax=0)
        ax.set_title(f"{args.model}\n{scan or 'default scan'}", fontsize=9)
        ax.axis("off")
    fig.suptitle("effective receptive field, log10 |grad| (normalised)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"ERF figure: {args.out}")


if __name__ == "__main__":
    main()
