"""Official checkpoint (VMamba, Vim, PlainMamba) -> vssm state dict, without building a model.

Used by ``tools/convert_checkpoint.py``. Each family's ``official_to_vssm`` does the layout conversion; what
depends on a particular model (pos_embed resampling to its grid, the strict key check) happens when the
converted file is loaded with ``timm.create_model(..., pretrained=True, pretrained_cfg_overlay=dict(file=...))``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import timm

from . import plainmamba, vim, vmamba
from ._loading import StateDict, key_summary, select_state_dict

CONVERTERS: Dict[str, Callable[[Any], StateDict]] = {
    "vmamba": vmamba.official_to_vssm,
    "vim": vim.official_to_vssm,
    "plainmamba": plainmamba.official_to_vssm,
}


def family_of_model(name: str) -> str:
    """'vim_tiny' -> 'vim'; ValueError for a name that is not a registered vssm model."""
    family = name.split(".")[0].split("_")[0]
    if family not in CONVERTERS or not timm.is_model(name):
        raise ValueError(f"model: got {name!r}, expected a vssm model name such as 'vmamba_tiny', 'vim_small' or 'plainmamba_l1'")
    return family


def detect_family(state: StateDict) -> str:
    """The family whose official (or vssm) layout ``state`` has, from characteristic keys."""
    keys = list(state)
    if any("direction_Bs" in k for k in keys):
        return "plainmamba"
    if "cls_token" in state and any(".mixer." in k for k in keys):
        return "vim"
    if any(".blocks." in k and (".op." in k or ".self_attention." in k) for k in keys):
        return "vmamba"
    raise ValueError(f"checkpoint: not a VMamba, Vim or PlainMamba layout (keys {key_summary(keys)}); pass --model NAME")


def convert_checkpoint(checkpoint: Any, model: Optional[str] = None) -> Tuple[StateDict, str]:
    """(vssm state dict, family) of an official checkpoint; ``model`` picks the family, else it is detected."""
    family = family_of_model(model) if model else detect_family(select_state_dict(checkpoint))
    return CONVERTERS[family](checkpoint), family
