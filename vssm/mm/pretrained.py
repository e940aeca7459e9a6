"""``init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix=...)`` for vssm backbones, through the converter.

mmengine's own Pretrained initializer loads keys verbatim; official VMamba / Vim / PlainMamba files use other
names, so the adapters load them here instead: safe read -> optional prefix strip -> the family's
``checkpoint_filter_fn`` -> ``load_state_dict(strict=False)`` -> a report. A backbone weight missing from the
file is an error (named); file entries the backbone does not use (the classifier) are listed in the log.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import List, Optional

import torch.nn as nn
from mmengine.logging import print_log

from vssm.models._loading import load_checkpoint_file, select_state_dict


@dataclass(frozen=True)
class PretrainedSpec:
    """A validated ``init_cfg`` of type Pretrained: a local file and an optional key prefix to strip."""

    checkpoint: str
    prefix: Optional[str] = None

    @classmethod
    def from_init_cfg(cls, init_cfg: Optional[dict]) -> Optional["PretrainedSpec"]:
        """None for ``init_cfg=None``; ValueError for any other type than Pretrained or unknown keys."""
        if init_cfg is None:
            return None
        if not isinstance(init_cfg, dict) or init_cfg.get("type") != "Pretrained":
            raise ValueError(
                f"init_cfg: got {init_cfg!r}, expected None or dict(type='Pretrained', checkpoint=PATH[, prefix=...])"
            )
        extra = set(init_cfg) - {"type", "checkpoint", "prefix"}
        if extra or not isinstance(init_cfg.get("checkpoint"), str):
            raise ValueError(
                f"init_cfg: got {init_cfg!r}, expected keys type, checkpoint (a local file path) and optionally prefix"
            )
        return cls(checkpoint=init_cfg["checkpoint"], prefix=init_cfg.get("prefix"))


@dataclass(frozen=True)
class LoadReport:
    """What a Pretrained load did: tensors loaded, backbone keys not in the file, file keys not used."""

    loaded: int
    missing: List[str]
    unexpected: List[str]


def load_pretrained(trunk: nn.Module, spec: PretrainedSpec, family_module: str) -> LoadReport:
    """Load ``spec.checkpoint`` into ``trunk`` through ``<family_module>.checkpoint_filter_fn``.

    Raises ValueError naming the keys when the file lacks any weight of ``trunk``.
    """
    state_dict = select_state_dict(load_checkpoint_file(spec.checkpoint))
    if spec.prefix:
        prefix = spec.prefix if spec.prefix.endswith(".") else spec.prefix + "."
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not state_dict:
            raise ValueError(f"init_cfg.prefix: no key of {spec.checkpoint} starts with {prefix!r}")
    filter_fn = importlib.import_module(family_module).checkpoint_filter_fn
    converted = filter_fn(state_dict, trunk)
    result = trunk.load_state_dict(converted, strict=False)
    report = LoadReport(
        loaded=len(converted) - len(result.unexpected_keys),
        missing=list(result.missing_keys),
        unexpected=list(result.unexpected_keys),
    )
    if report.missing:
        raise ValueError(
            f"init_cfg.checkpoint: {spec.checkpoint} lacks {len(report.missing)} backbone weights: {report.missing}"
        )
    print_log(
        f"Pretrained {spec.checkpoint}: loaded {report.loaded} tensors into the backbone; "
        f"not used ({len(report.unexpected)}): {report.unexpected}",
        logger="current",
    )
    return report
