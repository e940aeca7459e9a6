"""Safe loading of official checkpoints and the timm build path shared by every model family.

Official VMamba and Vim files pickle a config object (yacs CfgNode, argparse Namespace) next to the
weights, so a plain ``torch.load(weights_only=True)`` refuses them. :func:`load_checkpoint_file` keeps
``weights_only=True`` and maps every non-allow-listed global to an inert stand-in that becomes an empty
``OrderedDict``: tensors load, pickled objects are dropped, no foreign code runs.
"""
from __future__ import annotations

import collections
import os
from typing import Any, Callable, Dict, Iterable

import torch
from timm.models import build_model_with_cfg

StateDict = Dict[str, torch.Tensor]


class _Inert:
    """Stand-in for any pickled class: constructing it yields an empty OrderedDict."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "collections.OrderedDict[str, Any]":
        return collections.OrderedDict()


def load_checkpoint_file(path: str) -> Any:
    """torch.load(path, weights_only=True), with pickled non-tensor objects replaced by empty dicts."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    foreign = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    with torch.serialization.safe_globals([(_Inert, name) for name in foreign]):
        return torch.load(path, map_location="cpu", weights_only=True)


def select_state_dict(checkpoint: Any, keys: Iterable[str] = ("model", "state_dict", "module")) -> StateDict:
    """The tensor dict of a checkpoint: the first of ``keys`` present, else the checkpoint itself."""
    if isinstance(checkpoint, dict):
        for key in keys:
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint: expected a dict of tensors, got {type(checkpoint).__name__}")
    return {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}


def create_model_from_file_or_cfg(
    model_cls: Callable[..., torch.nn.Module],
    variant: str,
    pretrained: bool,
    filter_fn: Callable[[StateDict, torch.nn.Module], StateDict],
    **kwargs: Any,
) -> torch.nn.Module:
    """``build_model_with_cfg`` that only loads weights from a local file, read safely.

    ``pretrained=True`` needs ``pretrained_cfg_overlay=dict(file=PATH)``; the file is read with
    :func:`load_checkpoint_file`, converted by ``filter_fn`` and loaded strictly, so any missing or
    unexpected key is reported by name. Nothing is downloaded.
    """
    if pretrained:
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
        path = overlay.get("file")
        if not path:
            raise ValueError(
                f"{variant}: pretrained=True needs a local checkpoint file, e.g. "
                f"timm.create_model('{variant}', pretrained=True, pretrained_cfg_overlay=dict(file='/path/to/official.pth')); "
                "vssm never downloads weights"
            )
        overlay["state_dict"] = load_checkpoint_file(path)
        kwargs["pretrained_cfg_overlay"] = overlay
    return build_model_with_cfg(
        model_cls, variant, pretrained, pretrained_filter_fn=_reporting(filter_fn), pretrained_strict=True, **kwargs
    )


def _reporting(filter_fn: Callable[[Any, torch.nn.Module], StateDict]) -> Callable[[Any, torch.nn.Module], StateDict]:
    """Wrap a converter so that every key outside the classifier must match: timm drops the head and loads
    non-strictly when num_classes differs from the checkpoint's, which would otherwise let missing or
    unexpected backbone keys pass silently."""

    def convert(checkpoint: Any, model: torch.nn.Module) -> StateDict:
        state = filter_fn(checkpoint, model)
        classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or "head"
        body = lambda keys: {k for k in keys if not k.startswith(classifier + ".")}  # noqa: E731
        expected, given = body(model.state_dict()), body(state)
        missing, unexpected = sorted(expected - given), sorted(given - expected)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint conversion for {type(model).__name__}: missing keys {missing}, unexpected keys {unexpected}"
            )
        return state

    return convert
