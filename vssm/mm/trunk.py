"""Shared base of the OpenMMLab backbone adapters: a timm-registered vssm model ("trunk") inside a BaseModule.

Handles what every adapter needs the same way: building the trunk by name (any timm kwargs, e.g.
``scan='hilbert'``), ``init_cfg`` Pretrained through the checkpoint converter, ``frozen_stages`` and
``norm_eval``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import timm
import torch.nn as nn
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

import vssm.models  # noqa: F401  (registers the vssm architectures with timm)

from .pretrained import LoadReport, PretrainedSpec, load_pretrained


class TrunkBackbone(BaseModule):
    """Base class; subclasses set ``arch_prefix`` / ``family_module``, define ``forward`` and ``frozen_modules``
    and call ``freeze()`` at the end of their ``__init__``."""

    arch_prefix: str = ""
    family_module: str = ""

    def __init__(
        self,
        arch: str,
        frozen_stages: int,
        norm_eval: bool,
        init_cfg: Optional[dict],
        model_kwargs: dict,
    ) -> None:
        super().__init__(init_cfg=None)
        if not arch.startswith(self.arch_prefix) or arch not in timm.list_models(self.arch_prefix + "*"):
            raise ValueError(
                f"arch: got {arch!r}, expected one of {timm.list_models(self.arch_prefix + '*')}"
            )
        if not isinstance(frozen_stages, int) or frozen_stages < -1:
            raise ValueError(f"frozen_stages: got {frozen_stages!r}, expected an int >= -1")
        self.arch = arch
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.pretrained = PretrainedSpec.from_init_cfg(init_cfg)
        self.trunk = timm.create_model(arch, pretrained=False, num_classes=0, **model_kwargs)

    def prune_trunk(self, out_indices: Sequence[int]) -> None:
        """Drop what no output uses (later stages / blocks, final norm, head): unused parameters break DDP."""
        self.trunk.prune_intermediate_layers(list(out_indices), prune_norm=True, prune_head=True)

    def frozen_modules(self) -> List[nn.Module]:
        """Modules whose parameters ``frozen_stages`` freezes (and keeps in eval mode)."""
        raise NotImplementedError

    def init_weights(self) -> Optional[LoadReport]:
        """Load ``init_cfg`` Pretrained weights into the trunk (after the default init); returns the report."""
        super().init_weights()
        if self.pretrained is None:
            return None
        return load_pretrained(self.trunk, self.pretrained, self.family_module)

    def freeze(self) -> None:
        """Stop gradients of ``frozen_modules()``; subclasses call this at the end of ``__init__``."""
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> "TrunkBackbone":
        """Train mode, except frozen modules and (with ``norm_eval``) every BatchNorm stay in eval mode."""
        super().train(mode)
        if mode:
            for module in self.frozen_modules():
                module.eval()
            if self.norm_eval:
                for module in self.modules():
                    if isinstance(module, _BatchNorm):
                        module.eval()
        return self


def children_before(parent: nn.Module, child_name: str) -> List[nn.Module]:
    """Direct children of ``parent`` registered before the child named ``child_name`` (e.g. the stem)."""
    names = [name for name, _ in parent.named_children()]
    if child_name not in names:
        raise ValueError(f"child_name: got {child_name!r}, expected one of {names}")
    return [module for name, module in parent.named_children()][: names.index(child_name)]


def check_indices(name: str, indices: Union[int, Sequence[int]], count: int) -> tuple:
    """``indices`` (an int or a sequence of ints, as in timm / mmdet) as an increasing tuple of distinct ints in
    [0, count); ValueError naming ``name`` otherwise."""
    if isinstance(indices, bool) or not isinstance(indices, (int, Sequence)):
        raise ValueError(f"{name}: got {indices!r}, expected an int or a sequence of ints in [0, {count})")
    values = (indices,) if isinstance(indices, int) else tuple(indices)
    if not values or any(not isinstance(i, int) or not 0 <= i < count for i in values) or len(set(values)) != len(values):
        raise ValueError(f"{name}: got {indices!r}, expected distinct ints in [0, {count})")
    if list(values) != sorted(values):
        raise ValueError(f"{name}: got {indices!r}, expected increasing order")
    return values
