"""Model-level throughput and memory on the GPU: vssm backbones and timm peers in ONE run.

    python benchmarks/model_bench.py --out DIR [--models ...] [--sizes 224 384 512 768 1024] [--quick]
                                     [--kernel-settings NAME=VALUE,...]

1. Inference img/s (batch 128, 224x224, bf16 autocast, channels-first input) and training-step img/s (forward +
   backward + AdamW, bf16 autocast), each three ways: eager, ``torch.compile(model)`` and replayed from a CUDA
   graph (whole-step capture, capturable AdamW), for every model in --models.
2. Resolution sweep (img/s and peak memory) for the pairs vim_tiny/deit_tiny and
   vmamba_tiny/convnext_tiny/swin_tiny, batch chosen per size (128 at 224, shrinking with the pixel count,
   8 at 1024).
Writes DIR/model_bench.json, DIR/model_bench.md (tables) and DIR/resolution_sweep.png.
``--kernel-settings warps=4,chunk=32`` (say) runs the scans with other kernel settings (fields of
vssm.kernels.KernelConfig, benchmarks/kernel_settings.py), for an A/B against a run without them.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import traceback
from typing import Dict, List, Optional, Tuple

import torch

import kernel_settings
import vssm  # noqa: F401  (registers vssm models)
from vssm.utils.throughput import create_for_size, measure_inference, measure_training, sweep_batch

MODELS = [
    "vmamba_tiny", "vmamba_small", "vmamba_base", "vim_tiny", "vim_small", "plainmamba_l1", "plainmamba_l2",
    "convnext_tiny", "swin_tiny_patch4_window7_224", "deit_tiny_patch16_224", "deit_small_patch16_224", "resnet50",
]
SWEEP = ["vim_tiny", "deit_tiny_patch16_224", "vmamba_tiny", "convnext_tiny", "swin_tiny_patch4_window7_224"]


def run_main_table(models: List[str], device: torch.device, quick: bool, settings: str) -> List[Dict]:
    rows = []
    for name in models:
        row = dict(model=name)
        try:
            model = create_for_size(name, 224)
            row["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
            inf = measure_inference(model, 128, 224, device, iters=10 if quick else 30)
            trn = measure_training(model, 128, 224, device, iters=5 if quick else 20)
            row.update(inference=inf.images_per_s, inference_mem_gb=inf.peak_memory_gb,
                       training=trn.images_per_s, training_mem_gb=trn.peak_memory_gb)
            row["inference_compiled"], row["training_compiled"] = compiled(model, quick, device)
            row["inference_graph"], row["training_graph"] = graphed(name, quick, settings)
        except Exception as err:  # a model that fails is reported, the run goes on
            row["error"] = f"{type(err).__name__}: {err}"[:300]
        print(json.dumps(row), flush=True)
        rows.append(row)
        torch.cuda.empty_cache()
    return rows


def compiled(model: torch.nn.Module, quick: bool, device: torch.device) -> Tuple[Optional[float], Optional[float]]:
    """torch.compile inference and training-step img/s (None where compilation fails; the reason is printed)."""
    results: List[Optional[float]] = []
    for measure, iters in ((measure_inference, 10 if quick else 30), (measure_training, 5 if quick else 20)):
        try:
            results.append(measure(model, 128, 224, device, iters=iters, mode="compile").images_per_s)
        except Exception as err:  # noqa: BLE001 (reported, the run goes on)
            print(f"torch.compile {measure.__name__} failed: {type(err).__name__}: {str(err)[:200]}", flush=True)
            traceback.print_exc()  # the whole trace on stderr: the message alone did not locate the failure
            results.append(None)
        torch._dynamo.reset()
    return results[0], results[1]


def graphed(name: str, quick: bool, settings: str) -> Tuple[Optional[float], Optional[float]]:
    """CUDA-graph inference and training-step img/s, measured in a child process: a model whose step cannot be
    captured (a host sync inside) leaves the CUDA context broken, and must not take the rest of the run with it."""
    cmd = [sys.executable, os.path.abspath(__file__), "--graph-one", name] + (["--quick"] if quick else [])
    cmd += ["--kernel-settings", settings] if settings else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        print(f"{name}: CUDA-graph capture failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return None, None
    inference, training = lines[-1].split()
    return float(inference), float(training)


def run_sweep(models: List[str], sizes: List[int], device: torch.device, quick: bool) -> List[Dict]:
    rows = []
    for name in models:
        for size in sizes:
            batch = sweep_batch(size)
            row = dict(model=name, size=size, batch=batch)
            try:
                inf = measure_inference(create_for_size(name, size), batch, size, device, warmup=3, iters=5 if quick else 10)
                row.update(inference=inf.images_per_s, peak_memory_gb=inf.peak_memory_gb)
            except Exception as err:
                row["error"] = f"{type(err).__name__}: {err}"[:300]
            print(json.dumps(row), flush=True)
            rows.append(row)
            torch.cuda.empty_cache()
    return rows


def markdown(meta: Dict, main: List[Dict], sweep: List[Dict]) -> str:
    lines = [f"{meta['device']}, {meta['date']}, torch {meta['torch']}, triton {meta['triton']}"
             + (f", kernel settings {meta['kernel_settings']}" if meta["kernel_settings"] else ""), "",
             "| model | params (M) | inference img/s | inference, compiled | inference, CUDA graph | training img/s "
             "| training, compiled | training, CUDA graph | train peak mem (GB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in main:
        if "error" in r:
            lines.append(f"| {r['model']} | | error: {r['error'][:80]} | | | | | | |")
        else:
            failed = lambda v: "failed" if v is None else f"{v:.0f}"  # noqa: E731
            lines.append(f"| {r['model']} | {r['params_m']:.1f} | {r['inference']:.0f} | "
                         f"{failed(r['inference_compiled'])} | {failed(r['inference_graph'])} | {r['training']:.0f} | "
                         f"{failed(r['training_compiled'])} | {failed(r['training_graph'])} | "
                         f"{r['training_mem_gb']:.1f} |")
    lines += ["", "| model | size | batch | inference img/s | peak memory (GB) |", "|---|---|---|---|---|"]
    for r in sweep:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['size']} | {r['batch']} | error: {r['error'][:80]} | |")
        else:
            lines.append(f"| {r['model']} | {r['size']} | {r['batch']} | {r['inference']:.0f} | {r['peak_memory_gb']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(sweep: List[Dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_speed, ax_mem) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["model"] for r in sweep):
        ok = [r for r in sweep if r["model"] == name and "error" not in r]
        ax_speed.plot([r["size"] for r in ok], [r["inference"] for r in ok], marker="o", label=name)
        ax_mem.plot([r["size"] for r in ok], [r["peak_memory_gb"] for r in ok], marker="o", label=name)
    ax_speed.set(xlabel="input size", ylabel="inference img/s", yscale="log")
    ax_mem.set(xlabel="input size", ylabel="peak memory (GB)", yscale="log")
    ax_speed.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--sweep-models", nargs="+", default=SWEEP)
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 384, 512, 768, 1024])
    parser.add_argument("--quick", action="store_true", help="fewer timed iterations")
    parser.add_argument("--no-sweep", action="store_true", help="main table only")
    parser.add_argument("--kernel-settings", default="", metavar="NAME=VALUE,...",
                        help="scan kernel settings for this run (KernelConfig fields, e.g. warps=4)")
    parser.add_argument("--graph-one", metavar="MODEL", help=argparse.SUPPRESS)  # child process of graphed()
    args = parser.parse_args()
    kernel_settings.use(args.kernel_settings)
    if not torch.cuda.is_available():
        raise SystemExit("model_bench.py measures GPU throughput: no CUDA device found")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = torch.device("cuda")
    if args.graph_one:
        model = create_for_size(args.graph_one, 224)
        inference = measure_inference(model, 128, 224, device, iters=10 if args.quick else 30, mode="graph")
        training = measure_training(model, 128, 224, device, iters=5 if args.quick else 20, mode="graph")
        print(inference.images_per_s, training.images_per_s)
        return
    if not args.out:
        parser.error("--out is required")
    import triton

    meta = dict(device=torch.cuda.get_device_name(), date=datetime.date.today().isoformat(), torch=torch.__version__,
                triton=triton.__version__, python=platform.python_version(), kernel_settings=args.kernel_settings)
    main_rows = run_main_table(args.models, device, args.quick, args.kernel_settings)
    sweep_rows = [] if args.no_sweep else run_sweep(args.sweep_models, args.sizes, device, args.quick)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "model_bench.json"), "w") as f:
        json.dump(dict(meta=meta, main=main_rows, sweep=sweep_rows), f, indent=1)
    table = markdown(meta, main_rows, sweep_rows)
    with open(os.path.join(args.out, "model_bench.md"), "w") as f:
        f.write(table)
    if sweep_rows:
        plot(sweep_rows, os.path.join(args.out, "resolution_sweep.png"))
    print(table)


if __name__ == "__main__":
    main()
