"""Measure models' inference and training throughput (and peak memory) the way benchmarks/RESULTS.md does.

    python tools/benchmark.py vmamba_tiny [MODEL ...] [--peers] [--modes eager compile graph] [--sizes 224 512 1024]
                              [--batch N] [--iters N] [--no-train]

On CUDA: bf16 autocast, batch 128 (a --sizes sweep shrinks it with the pixel count, 8 at 1024), eager,
torch.compile and CUDA-graph numbers for inference and training; ``--peers`` adds timm's convnext_tiny,
swin_tiny and deit_tiny to the same run. On the CPU: float32, batch 1, a few iterations, eager only (CUDA
graphs do not exist there; peak memory is CUDA's allocator statistic, so it reads "n/a (CPU)").
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, List, Optional

import torch

import vssm  # noqa: F401  (registers the vssm models with timm)
from vssm.utils.throughput import (MODES, Throughput, create_for_size, defaults, measure_inference,
                                   measure_training, sweep_batch)

PEERS = ["convnext_tiny", "swin_tiny_patch4_window7_224", "deit_tiny_patch16_224"]


def progress_bar(label: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        filled = int(30 * done / total)
        sys.stderr.write(f"\r{label:<22} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def parse_args(argv: Optional[List[str]], device: torch.device) -> argparse.Namespace:
    """Arguments with the device's defaults filled in (batch, iterations, modes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--peers", action="store_true", help=f"also measure {', '.join(PEERS)} in this run")
    parser.add_argument("--sizes", nargs="+", type=int, default=[224], help="input sizes (a resolution sweep)")
    parser.add_argument("--batch", type=int, default=None,
                        help="images per step (default: 1 on the CPU; 128 on CUDA, shrinking with size)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=None,
                        help="default: eager on the CPU, eager compile graph on CUDA")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--iters", type=int, default=None, help="timed steps (median reported)")
    parser.add_argument("--no-train", action="store_true", help="inference only")
    args = parser.parse_args(argv)
    d = defaults(device)
    args.warmup = d.warmup if args.warmup is None else args.warmup
    args.iters = d.iters if args.iters is None else args.iters
    args.modes = args.modes or (list(MODES) if device.type == "cuda" else ["eager"])
    if "graph" in args.modes and device.type != "cuda":
        parser.error("--modes graph: CUDA graphs need a CUDA device")
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch: got {args.batch}, expected >= 1")
    args.models = args.models + [p for p in PEERS if args.peers and p not in args.models]
    return args


def batch_for(args: argparse.Namespace, size: int, device: torch.device) -> int:
    if args.batch is not None:
        return args.batch
    return sweep_batch(size) if device.type == "cuda" else defaults(device).batch


def memory(result: Throughput) -> str:
    return "n/a (CPU)" if result.peak_memory_gb is None else f"{result.peak_memory_gb:.2f}"


def measure_row(name: str, size: int, batch: int, mode: str, args: argparse.Namespace,
                device: torch.device) -> Dict[str, str]:
    """One table row; a step that fails (e.g. a capture) is reported in the row and the run goes on."""
    row = dict(model=name, size=str(size), batch=str(batch), mode=mode)
    try:
        model = create_for_size(name, size)
        label = f"{name[:14]} {mode}"
        inf = measure_inference(model, batch, size, device, warmup=args.warmup, iters=args.iters, mode=mode,
                                progress=progress_bar(label))
        row.update(inference=f"{inf.images_per_s:.1f}", inference_mem=memory(inf))
        if not args.no_train:
            trn = measure_training(model, batch, size, device, warmup=args.warmup, iters=args.iters, mode=mode,
                                   progress=progress_bar(label + " train"))
            row.update(training=f"{trn.images_per_s:.1f}", training_mem=memory(trn))
    except Exception as err:  # noqa: BLE001 (reported in the table)
        row["error"] = " ".join(f"{type(err).__name__}: {err}".split())[:200]  # one line, with "from user code"
    return row


COLUMNS = ["model", "size", "batch", "mode", "inference", "inference_mem", "training", "training_mem"]
HEADER = ["model", "size", "batch", "mode", "inference img/s", "inference peak GB", "training img/s",
          "training peak GB"]


def table(rows: List[Dict[str, str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        cells = [row.get(c, "") for c in COLUMNS]
        if "error" in row:
            cells[4] = "error: " + row["error"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> List[Dict[str, str]]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args = parse_args(argv, device)
    if device.type == "cuda":
        what = f"{torch.cuda.get_device_name()}, bf16 autocast"
    else:
        what = f"cpu, float32, {torch.get_num_threads()} threads"
    print(f"# {what}, torch {torch.__version__}, {args.warmup} warm-up + median of {args.iters} steps")
    rows = [measure_row(name, size, batch_for(args, size, device), mode, args, device)
            for name in args.models for size in args.sizes for mode in args.modes]
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
