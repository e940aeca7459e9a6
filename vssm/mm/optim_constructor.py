"""Optimizer-wrapper constructor for SSM backbones: layer-wise lr decay and no weight decay on SSM parameters.

Config::

    optim_wrapper = dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        constructor='VssmOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.92))

* ``layer_decay_rate`` r in (0, 1]: a parameter of backbone layer i (0 = embeddings, 1..depth = blocks) gets
  lr * r ** (depth + 1 - i); everything after the backbone blocks (pyramid, neck, heads) keeps lr. r = 1 turns
  the decay off (hierarchical backbones); r < 1 needs a backbone with ``num_layers`` and ``get_layer_id``
  (the plain backbones Vim and PlainMamba).
* No weight decay for 0-/1-D parameters (biases, norms, D) and for parameters whose last name component is in
  ``no_decay_names`` (default: A_log, pos_embed, cls_token, direction_Bs and their stacked spellings).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from .registry import register_optim_wrapper_constructor

DEFAULT_NO_DECAY_NAMES: Tuple[str, ...] = ("A_log", "A_logs", "pos_embed", "cls_token", "direction_Bs")
BACKBONE_PREFIX = "backbone."


@register_optim_wrapper_constructor
class VssmOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups by (layer id, decay / no decay); see the module docstring for ``paramwise_cfg``."""

    def _validate_cfg(self) -> None:
        allowed = {"layer_decay_rate", "no_decay_names"}
        unknown = set(self.paramwise_cfg) - allowed
        if unknown:
            raise ValueError(f"paramwise_cfg: got unknown keys {sorted(unknown)}, expected a subset of {sorted(allowed)}")
        rate = self.paramwise_cfg.get("layer_decay_rate")
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f"paramwise_cfg.layer_decay_rate: got {rate!r}, expected a number in (0, 1]")
        if self.base_lr is None or self.base_wd is None:
            raise ValueError(
                f"optimizer: got lr={self.base_lr!r}, weight_decay={self.base_wd!r}; expected both to be set"
            )

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = "", is_dcn_module=None) -> None:
        """Fill ``params`` with one group per (layer id, weight decay) pair of ``module`` (the whole model)."""
        rate = float(self.paramwise_cfg["layer_decay_rate"])
        no_decay_names = set(self.paramwise_cfg.get("no_decay_names", DEFAULT_NO_DECAY_NAMES))
        backbone = getattr(module, "backbone", None)
        if rate < 1 and not hasattr(backbone, "get_layer_id"):
            raise ValueError(
                f"paramwise_cfg.layer_decay_rate: got {rate} for backbone {type(backbone).__name__}, which has no "
                "layer ids; use 1.0, or a plain backbone (Vim, PlainMamba)"
            )
        last_id = backbone.num_layers + 1 if rate < 1 else 0
        groups: Dict[Tuple[int, bool], dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            layer_id = last_id
            if rate < 1 and name.startswith(BACKBONE_PREFIX):
                layer_id = backbone.get_layer_id(name[len(BACKBONE_PREFIX):])
            decay = param.ndim > 1 and name.rsplit(".", 1)[-1] not in no_decay_names
            group = groups.setdefault(
                (layer_id, decay),
                {
                    "params": [],
                    "lr": self.base_lr * rate ** (last_id - layer_id),
                    "weight_decay": self.base_wd if decay else 0.0,
                },
            )
            group["params"].append(param)
        for (layer_id, decay), group in sorted(groups.items()):
            print_log(
                f"param group layer {layer_id} {'decay' if decay else 'no_decay'}: {len(group['params'])} tensors, "
                f"lr={group['lr']:.3g}, weight_decay={group['weight_decay']}",
                logger="current",
            )
            params.append(group)
