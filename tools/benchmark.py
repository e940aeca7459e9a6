"""Measure one model's inference and training throughput (and peak memory) the way benchmarks/RESULTS.md does.

    python tools/benchmark.py vmamba_tiny [--batch 128] [--size 224] [--no-train] [--compile] [--cuda-graph]

Uses CUDA when available (timings with CUDA events), else the CPU (use a small --batch there).
"""
from __future__ import annotations

import argparse
import sys

import timm
import torch

import vssm  # noqa: F401  (registers the vssm models with timm)
from vssm.utils.throughput import measure_inference, measure_training


def progress_bar(label: str):
    def show(done: int, total: int) -> None:
        filled = int(30 * done / total)
        sys.stderr.write(f"\r{label:<10} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--no-train", action="store_true", help="inference only")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    parser.add_argument("--cuda-graph", action="store_true", help="also time inference and training steps replayed from a CUDA graph")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = create_for_size(args.model, args.size)
    if args.compile:
        model = torch.compile(model)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{args.model}: {params:.1f}M params, batch {args.batch}, {args.size}x{args.size}, {device}"
          f" ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu, float32'})")
    result = measure_inference(model, args.batch, args.size, device, progress=progress_bar("inference"))
    print(f"inference: {result.images_per_s:.0f} img/s, peak memory {result.peak_memory_gb:.2f} GB")
    if args.cuda_graph:
        result = measure_inference(model, args.batch, args.size, device, cuda_graph=True,
                                   progress=progress_bar("graph"))
        print(f"inference from a CUDA graph: {result.images_per_s:.0f} img/s")
    if not args.no_train:
        result = measure_training(model, args.batch, args.size, device, progress=progress_bar("training"))
        print(f"training:  {result.images_per_s:.0f} img/s, peak memory {result.peak_memory_gb:.2f} GB")
        if args.cuda_graph:
            result = measure_training(model, args.batch, args.size, device, cuda_graph=True,
                                      progress=progress_bar("graph"))
            print(f"training from a CUDA graph: {result.images_per_s:.0f} img/s")


def create_for_size(name: str, size: int) -> torch.nn.Module:
    """timm model for size x size inputs: models with a fixed input size (position embeddings, windows)
    are built with ``img_size=size``; the others take any size as they are."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.fixed_input_size:
        return timm.create_model(name, img_size=size)
    return timm.create_model(name)


if __name__ == "__main__":
    main()
