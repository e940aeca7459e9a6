"""Parameters and FLOPs of a model at 224x224, next to the official numbers.

    python tools/flops.py vmamba_tiny [--size 224] [--scan hilbert]

FLOPs are counted like the papers do (see vssm.utils.flops): MACs of convolutions/matmuls + the
selective-scan formula 9*B*L*D*N + B*D*L, head included. Vim's published 1.5G / 5.1G were counted another
way (hunto/LocalMamba's ``VisionMamba.flops``: one direction's conv and projections, 5*L*D*N per scan); for Vim
models a second line gives that count, to show the gap is the convention.

The official numbers are for each model's default scan. With ``--scan X`` the default-scan model is counted
too: its line compares with the official numbers, and a second line gives scan X's counts and their change
against the default scan.
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Tuple

import timm
import torch

import vssm  # noqa: F401  (registers the vssm models)
from vssm.scans import ScanStrategy
from vssm.utils.flops import count_flops, vim_flops_published_convention

# (params M, GFLOPs at 224) from the official READMEs (official_models.md §3); None where unpublished.
OFFICIAL: Dict[str, Tuple[Optional[float], Optional[float]]] = {
    "vmamba_tiny": (30, 4.9), "vmamba_small": (50, 8.7), "vmamba_base": (89, 15.4),
    "vmamba_tiny_v0": (23, 5.6), "vmamba_small_v0": (44, 11.2), "vmamba_base_v0": (76, 18.0),
    "vim_tiny": (7, 1.5), "vim_small": (26, 5.1), "vim_base": (98, None),
    "plainmamba_l1": (7.3, None), "plainmamba_l2": (25.7, None), "plainmamba_l3": (50.5, None),
}


def scan_names(model: torch.nn.Module) -> List[str]:
    """Names of the scan strategies the model's mixers use, in order of first use."""
    found = (getattr(m, "scan", None) for m in model.modules())
    return list(dict.fromkeys(s.name for s in found if isinstance(s, ScanStrategy)))


def describe(name: str, size: int = 224, **kwargs) -> Dict[str, object]:
    model = timm.create_model(name, **kwargs)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    gflops = count_flops(model, (3, size, size)) / 1e9
    official_params, official_gflops = OFFICIAL.get(name, (None, None))
    published_convention = vim_flops_published_convention(model, size) / 1e9 if name.startswith("vim") else None
    return dict(params=params, gflops=gflops, official_params=official_params, official_gflops=official_gflops,
                published_convention_gflops=published_convention, scans=scan_names(model))


def _fmt(ours: float, official: Optional[float]) -> str:
    if official is None:
        return f"{ours:.2f} (official: unpublished)"
    return f"{ours:.2f} (official {official}, {100 * (ours - official) / official:+.1f}%)"


def _change(ours: float, default: float, default_scan: str) -> str:
    return f"{ours:.2f} ({100 * (ours - default) / default:+.1f}% vs {default_scan})"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--scan", default=None, help="swap the scan strategy (compared with the default scan)")
    args = parser.parse_args(argv)
    for name in args.models:
        r = describe(name, args.size)
        print(f"{name}: params {_fmt(r['params'], r['official_params'])} M, "
              f"FLOPs@{args.size} {_fmt(r['gflops'], r['official_gflops'])} G")
        if r["published_convention_gflops"] is not None:
            print(f"  counted as the published Vim figures (LocalMamba's VisionMamba.flops): "
                  f"{_fmt(r['published_convention_gflops'], r['official_gflops'])} G")
        if args.scan:
            s = describe(name, args.size, scan=args.scan)
            default = "+".join(r["scans"])
            print(f"  with scan {args.scan} instead of {default}: params {_change(s['params'], r['params'], default)} M, "
                  f"FLOPs@{args.size} {_change(s['gflops'], r['gflops'], default)} G")


if __name__ == "__main__":
    main()
