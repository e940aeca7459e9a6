"""Where the time of one model block goes: torch.profiler over forward+backward of a single block.

    python benchmarks/block_profile.py [--model vmamba_tiny] [--stage 0] [--batch 128] [--size 224]

Runs the first block of ``--stage`` on its real input shape (bf16 autocast, CUDA) and prints the ops sorted by
total GPU time (a markdown table).
"""
from __future__ import annotations

import argparse

import timm
import torch
from torch.profiler import ProfilerActivity, profile

import vssm  # noqa: F401  (registers the vssm models)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vmamba_tiny")
    parser.add_argument("--stage", type=int, default=0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    model = timm.create_model(args.model).cuda()
    block = model.layers[args.stage].blocks[0]
    side = args.size // (4 * 2 ** args.stage)
    x = torch.randn(args.batch, side, side, block.norm.normalized_shape[0], device="cuda", requires_grad=True)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = block(x)
        out.float().sum().backward()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    events = sorted(prof.key_averages(), key=lambda e: e.device_time_total, reverse=True)
    total = sum(e.self_device_time_total for e in events)
    print(f"# {torch.cuda.get_device_name()}, {args.model} stage {args.stage} block 0, input {tuple(x.shape)}, "
          f"fwd+bwd x5, self GPU time {total / 1e3 / 5:.3f} ms per step")
    print("| op | self GPU ms per step | share | calls per step |")
    print("|---|---|---|---|")
    for e in sorted(events, key=lambda e: e.self_device_time_total, reverse=True)[: args.rows]:
        if e.self_device_time_total <= 0:
            continue
        print(f"| {e.key[:70]} | {e.self_device_time_total / 1e3 / 5:.3f} | "
              f"{100 * e.self_device_time_total / total:.1f}% | {e.count // 5} |")


if __name__ == "__main__":
    main()
