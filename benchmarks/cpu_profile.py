"""Where a CPU forward of one 224x224 image goes: torch.profiler over vssm models and their timm peers.

    python benchmarks/cpu_profile.py [--models vmamba_tiny convnext_tiny vim_tiny deit_tiny_patch16_224]
                                     [--threads 1] [--repeats 3]

Per model: the median wall time of a float32 forward (after one warm-up), then one profiled forward with its
time split by top-level operator family (the scan op with everything it runs, projections, norms, convolutions,
the rest) and, for the scan op, by the operators it runs. benchmarks/cpu_profile.md holds a run's output.
"""
from __future__ import annotations

import argparse
import collections
import statistics
import time
from typing import Dict, List

import timm
import torch
from torch.profiler import ProfilerActivity, profile

import vssm  # noqa: F401  (registers the vssm models)

FAMILIES = {  # top-level operator -> family (first match by substring)
    "vssm::selective_scan": "scan op (torch backend)",
    "linear": "projections (linear/matmul/einsum)", "addmm": "projections (linear/matmul/einsum)",
    "matmul": "projections (linear/matmul/einsum)", "einsum": "projections (linear/matmul/einsum)",
    "bmm": "projections (linear/matmul/einsum)", "mm": "projections (linear/matmul/einsum)",
    "conv": "convolutions", "norm": "norms", "softmax": "attention", "attention": "attention",
    "silu": "activations", "gelu": "activations", "sigmoid": "activations", "softplus": "activations",
}


def family(name: str) -> str:
    op = name.split("::")[-1]
    if name == "vssm::selective_scan":
        return FAMILIES[name]
    return next((f for key, f in FAMILIES.items() if key in op), "other (copies, reshapes, elementwise)")


def _under(event, name: str) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == name:
            return True
        parent = parent.cpu_parent
    return False


def profile_model(name: str, repeats: int) -> Dict[str, object]:
    model = timm.create_model(name).eval()
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        model(images)  # warm-up: route tables, allocator
        times: List[float] = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(images)
            times.append(time.perf_counter() - start)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(images)
    events = prof.profiler.function_events
    top = [e for e in events if e.cpu_parent is None]
    total = sum(e.cpu_time_total for e in top)
    families: Dict[str, float] = collections.Counter()
    for e in top:
        families[family(e.name)] += e.cpu_time_total
    inside: Dict[str, float] = collections.Counter()
    for e in events:
        if _under(e, "vssm::selective_scan"):
            inside[e.name] += e.self_cpu_time_total
    calls = collections.Counter(e.name for e in events if _under(e, "vssm::selective_scan"))
    return dict(name=name, seconds=statistics.median(times), total_us=total, families=families, inside=inside,
                calls=calls, scan_calls=sum(e.name == "vssm::selective_scan" for e in top))


def report(r: Dict[str, object]) -> str:
    lines = [f"### {r['name']}: {r['seconds']:.3f} s per image (median), profiled {r['total_us'] / 1e3:.0f} ms", "",
             "| family | ms | share |", "|---|---|---|"]
    for fam, us in sorted(r["families"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {fam} | {us / 1e3:.1f} | {100 * us / r['total_us']:.0f}% |")
    if r["inside"]:
        scan_us = r["families"]["scan op (torch backend)"]
        lines += ["", f"Inside the scan op ({r['scan_calls']} calls), self time:", "",
                  "| operator | calls | ms | share of scan |", "|---|---|---|---|"]
        for op, us in sorted(r["inside"].items(), key=lambda kv: -kv[1])[:8]:
            lines.append(f"| {op} | {r['calls'][op]} | {us / 1e3:.1f} | {100 * us / scan_us:.0f}% |")
        between = scan_us - sum(r["inside"].values())
        lines.append(f"| (Python and dispatch between operators) | | {between / 1e3:.1f} | {100 * between / scan_us:.0f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vmamba_tiny", "convnext_tiny", "vim_tiny",
                                                         "deit_tiny_patch16_224"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"# torch {torch.__version__}, {args.threads} thread(s), load average {' '.join(load)} at start\n")
    for name in args.models:
        print(report(profile_model(name, args.repeats)) + "\n", flush=True)


if __name__ == "__main__":
    main()
