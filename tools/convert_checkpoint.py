"""Convert an official VMamba / Vim / PlainMamba checkpoint to a vssm state dict in safetensors.

    python tools/convert_checkpoint.py IN OUT.safetensors [--model NAME]

IN is read safely (``torch.load(weights_only=True)``, pickled config objects made inert; safetensors also
accepted). The family is detected from the keys unless ``--model`` names a vssm model. The output loads with
``timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=OUT.safetensors))``, which also
checks every key strictly against the model and resamples a position embedding to the model's grid.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from safetensors.torch import save_file

from vssm.models._convert import convert_checkpoint
from vssm.models._loading import load_checkpoint_file


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="official checkpoint file (.pth / .safetensors)")
    parser.add_argument("output", help="vssm state dict to write (.safetensors)")
    parser.add_argument("--model", help="vssm model name whose converter to use (default: detected from the keys)")
    args = parser.parse_args(argv)
    if not args.output.endswith(".safetensors"):
        parser.error(f"output: got {args.output!r}, expected a path ending in .safetensors")
    state, family = convert_checkpoint(load_checkpoint_file(args.input), args.model)
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    save_file(tensors, args.output, metadata={"format": "pt", "vssm_family": family,
                                              "source": os.path.basename(args.input)})
    print(f"{args.output}: {len(tensors)} tensors ({family} layout converted from {args.input})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
