"""Check that vssm reproduces official models: run every parity fixture in a folder.

    python tools/check_parity.py DIR [--tol 1e-4]

A fixture is a sub-folder with ``config.json`` ({"model": timm name, "model_kwargs": {...}, ...}),
``checkpoint.pth`` (an official checkpoint layout, tensors only), ``input.pt`` and ``logits.pt`` (the
official model's output on that input). Each is loaded the way a user loads official weights:
``timm.create_model(model, pretrained=True, pretrained_cfg_overlay=dict(file=checkpoint.pth,
num_classes=...), **model_kwargs)``.
Exits non-zero if any fixture's relative error ||ours - official|| / ||official|| exceeds --tol.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from dataclasses import dataclass
from typing import List

import timm
import torch

import vssm  # noqa: F401  (registers the vssm models)


@dataclass
class ParityResult:
    name: str
    model: str
    relative_error: float


def fixtures(root: pathlib.Path) -> List[pathlib.Path]:
    return sorted(p.parent for p in root.glob("*/config.json"))


def check_fixture(folder: pathlib.Path) -> ParityResult:
    config = json.loads((folder / "config.json").read_text())
    kwargs = config.get("model_kwargs", {})
    # The fixture's head has the fixture's classes; tell timm so it loads the head instead of dropping it.
    overlay = dict(file=str(folder / "checkpoint.pth"), num_classes=kwargs.get("num_classes", 1000))
    model = timm.create_model(config["model"], pretrained=True, pretrained_cfg_overlay=overlay, **kwargs).eval()
    inputs = torch.load(folder / "input.pt", weights_only=True)
    expected = torch.load(folder / "logits.pt", weights_only=True)
    with torch.no_grad():
        logits = model(inputs)
    error = (torch.linalg.vector_norm(logits.double() - expected.double()) / torch.linalg.vector_norm(expected.double())).item()
    return ParityResult(folder.name, config["model"], error)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=pathlib.Path)
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    found = fixtures(args.root)
    if not found:
        print(f"no fixtures (*/config.json) under {args.root}")
        return 1
    failed = 0
    print("| fixture | model | relative error | status |\n|---|---|---|---|")
    for folder in found:
        result = check_fixture(folder)
        ok = result.relative_error <= args.tol
        failed += not ok
        print(f"| {result.name} | {result.model} | {result.relative_error:.2e} | {'pass' if ok else 'FAIL'} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
