"""AMP training stability on a GPU, float16 vs bfloat16: how many steps the dynamic loss scale skips, non-finite
losses / gradients, and whether the loss goes down.

    python benchmarks/amp_stability.py --out DIR [--models vmamba_tiny vim_tiny] [--steps 1000]
                                       [--dtypes bfloat16 float16]
    python benchmarks/amp_stability.py --out DIR --mm-config CONFIG [--steps 100] [--cfg-options k=v ...]

Both dtypes train with a GradScaler (dynamic scale, as mmengine's AmpOptimWrapper does for ``tools/train.py --amp``):
a step whose scaled gradients hold inf/NaN is skipped (the optimizer does not step, the scale halves), so
skipped steps = scale decreases; the ``--mm-config`` run also checks that a skipped step left a parameter unchanged.
Classification data: 10 classes, each a fixed random 3x224x224 pattern plus fresh Gaussian noise per sample (the
same generator for every model). AdamW lr 5e-4 with 50 warm-up steps, weight decay 0.05, grad clip 5.0 (the
VMamba/Swin recipe). ``--mm-config`` trains an OpenMMLab config through ``tools/train.py --amp --amp-dtype D``
(e.g. the Mask R-CNN demo; data roots via --cfg-options). Writes DIR/amp_stability.json (or amp_stability_mm.json).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import timm
import torch
import torch.nn.functional as F

import vssm  # noqa: F401  (registers vssm models)

DTYPES = ("bfloat16", "float16")


def train(name: str, steps: int, batch: int, size: int, device: torch.device, dtype: str) -> dict:
    """Classification training of ``name`` under autocast(``dtype``) with a dynamic GradScaler."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).to(device).train()
    templates = torch.randn(10, 3, size, size, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50))
    scaler = torch.amp.GradScaler("cuda")
    losses, nonfinite, skipped, max_grad_norm = [], [], [], 0.0
    for step in range(steps):
        labels = torch.randint(0, 10, (batch,), device=device)
        images = templates[labels] + 2.0 * torch.randn(batch, 3, size, size, device=device)
        with torch.autocast("cuda", dtype=getattr(torch, dtype)):
            loss = F.cross_entropy(model(images).float(), labels)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0))
        if not (math.isfinite(loss.item()) and math.isfinite(grad_norm)):
            nonfinite.append(step)
        max_grad_norm = max(max_grad_norm, grad_norm if math.isfinite(grad_norm) else float("inf"))
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        if scaler.get_scale() < scale:
            skipped.append(step)
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    first, last = sum(losses[:50]) / 50, sum(losses[-50:]) / 50
    return dict(model=name, dtype=dtype, steps=steps, batch=batch, size=size, n_skipped=len(skipped),
                skipped_steps=skipped[:20], n_nonfinite=len(nonfinite), nonfinite_steps=nonfinite[:20],
                first50_loss=first, last50_loss=last, max_grad_norm=max_grad_norm, loss_went_down=last < 0.5 * first,
                losses_every_50=losses[::50])


def train_mm(config: str, dtype: str, steps: int, work_dir: str, cfg_options: list) -> dict:
    """``tools/train.py CONFIG --amp --amp-dtype dtype`` for ``steps`` iterations, counting skipped steps."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tools import train as train_tool

    class SkipCounter(Hook):
        """Per iteration: loss scale before / after and one parameter, to tell skipped steps from taken ones."""

        def __init__(self) -> None:
            self.rows: list = []

        def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
            self.param = next(p for p in runner.model.parameters() if p.requires_grad)
            self.before = (runner.optim_wrapper.loss_scaler.get_scale(), self.param.detach().clone())

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            scale, param = self.before
            hub = runner.message_hub
            self.rows.append(dict(
                scale=scale, skipped=runner.optim_wrapper.loss_scaler.get_scale() < scale,
                param_unchanged=bool(torch.equal(param, self.param.detach())),
                loss=float(hub.get_scalar("train/loss").current()),
                grad_norm=float(hub.get_scalar("train/grad_norm").current()) if "train/grad_norm" in hub.log_scalars
                else None,
            ))

    args = train_tool.parse_args([
        config, "--amp", "--amp-dtype", dtype, "--work-dir", os.path.join(work_dir, dtype), "--cfg-options",
        f"train_cfg.max_iters={steps}", f"train_cfg.val_interval={steps + 1}",
        f"default_hooks.checkpoint.interval={steps + 1}", f"experiment_name=amp_{dtype}", *cfg_options,
    ])
    runner = Runner.from_cfg(train_tool.build_config(args))
    counter = SkipCounter()
    runner.register_hook(counter, priority="LOWEST")
    runner.train()
    rows = counter.rows
    skipped = [i for i, r in enumerate(rows) if r["skipped"]]
    norms = [r["grad_norm"] for r in rows if r["grad_norm"] is not None]
    return dict(config=os.path.basename(config), dtype=dtype, steps=len(rows), n_skipped=len(skipped),
                skipped_steps=skipped[:50], skipped_left_params_unchanged=all(rows[i]["param_unchanged"] for i in skipped),
                taken_steps_changed_params=all(not r["param_unchanged"] for r in rows if not r["skipped"]),
                n_nonfinite_grad_norm=sum(not math.isfinite(n) for n in norms),
                first_scale=rows[0]["scale"], last_scale=rows[-1]["scale"],
                first10_loss=sum(r["loss"] for r in rows[:10]) / 10, last10_loss=sum(r["loss"] for r in rows[-10:]) / 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", nargs="+", default=["vmamba_tiny", "vim_tiny"])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--steps", type=int, default=None, help="default: 1000 (classification), 100 (--mm-config)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--mm-config", help="an OpenMMLab config trained through tools/train.py --amp instead")
    parser.add_argument("--cfg-options", nargs="+", default=[], help="k=v overrides for --mm-config")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("amp_stability.py trains with autocast and a GradScaler on a GPU: no CUDA device found")
    os.makedirs(args.out, exist_ok=True)
    if args.mm_config:
        steps = args.steps or 100
        results = []
        for d in args.dtypes:  # a dtype that fails is reported, the other still runs
            try:
                results.append(train_mm(args.mm_config, d, steps, os.path.join(args.out, "mm_work"), args.cfg_options))
            except Exception as err:  # noqa: BLE001
                error = f"{type(err).__name__}: {err}"[:300]
                results.append(dict(config=os.path.basename(args.mm_config), dtype=d, error=error))
            print(json.dumps(results[-1]), flush=True)
        out = os.path.join(args.out, "amp_stability_mm.json")
    else:
        steps = args.steps or 1000
        results = [train(m, steps, args.batch, args.size, torch.device("cuda"), d)
                   for m in args.models for d in args.dtypes]
        out = os.path.join(args.out, "amp_stability.json")
    with open(out, "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), results=results), f, indent=1)
    for r in results:
        print(f"{r.get('model', r.get('config'))} {r['dtype']}: {r['n_skipped']} of {r['steps']} steps skipped, "
              f"{r.get('n_nonfinite', r.get('n_nonfinite_grad_norm'))} non-finite, "
              f"loss {r.get('first50_loss', r.get('first10_loss')):.3f} -> {r.get('last50_loss', r.get('last10_loss')):.3f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
