"""bf16 AMP training stability: train models for N steps on learnable synthetic data and check that no
loss or gradient is NaN/inf and that the loss goes down.

    python benchmarks/amp_stability.py --out DIR [--models vmamba_tiny vim_tiny] [--steps 1000]

Data: 10 classes, each a fixed random 3x224x224 pattern plus fresh Gaussian noise per sample (the same
generator for every model). AdamW lr 5e-4 with 50 warm-up steps, weight decay 0.05, grad clip 5.0
(the VMamba/Swin recipe), bf16 autocast. Writes DIR/amp_stability.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os

import timm
import torch
import torch.nn.functional as F

import vssm  # noqa: F401  (registers vssm models)


def train(name: str, steps: int, batch: int, size: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).to(device).train()
    templates = torch.randn(10, 3, size, size, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50))
    losses, bad_steps, max_grad_norm = [], [], 0.0
    for step in range(steps):
        labels = torch.randint(0, 10, (batch,), device=device)
        images = templates[labels] + 2.0 * torch.randn(batch, 3, size, size, device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(images).float(), labels)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0))
        if not (math.isfinite(loss.item()) and math.isfinite(grad_norm)):
            bad_steps.append(step)
        max_grad_norm = max(max_grad_norm, grad_norm if math.isfinite(grad_norm) else float("inf"))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    first, last = sum(losses[:50]) / 50, sum(losses[-50:]) / 50
    return dict(model=name, steps=steps, batch=batch, size=size, first50_loss=first, last50_loss=last,
                nonfinite_steps=bad_steps[:20], n_nonfinite=len(bad_steps), max_grad_norm=max_grad_norm,
                loss_went_down=last < 0.5 * first, losses_every_50=losses[::50])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", nargs="+", default=["vmamba_tiny", "vim_tiny"])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("amp_stability.py trains with bf16 autocast on a GPU: no CUDA device found")
    results = [train(m, args.steps, args.batch, args.size, torch.device("cuda")) for m in args.models]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "amp_stability.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), results=results), f, indent=1)
    for r in results:
        print(f"{r['model']}: {r['steps']} steps, loss {r['first50_loss']:.3f} -> {r['last50_loss']:.3f}, "
              f"non-finite steps {r['n_nonfinite']}, max grad norm {r['max_grad_norm']:.2f}")


if __name__ == "__main__":
    main()
