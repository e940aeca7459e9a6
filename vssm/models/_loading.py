"""Safe loading of checkpoint files and the timm build path shared by every model family.

Official VMamba and Vim files pickle a config object (yacs CfgNode, argparse Namespace) next to the
weights, so a plain ``torch.load(weights_only=True)`` refuses them. :func:`load_checkpoint_file` keeps
``weights_only=True`` and maps every non-allow-listed global to an inert stand-in that becomes an
``OrderedDict``: tensors load, a pickled object keeps only its plain fields (:func:`pickled_fields`),
no foreign code runs. A file that names a function of the interpreter, the OS or torch beyond torch's own
allow-list (``builtins.exec``, ``builtins.getattr``, ``os.system``, ...: never a config class) is refused with
:class:`CheckpointRefusedError` naming it. ``.safetensors`` files load through safetensors.
"""
from __future__ import annotations

import collections
import copy
import os
from typing import Any, Callable, Dict, Iterable, Sequence

import torch
from timm.models import build_model_with_cfg
from timm.models._builder import resolve_pretrained_cfg
from timm.models._hub import download_cached_file

StateDict = Dict[str, torch.Tensor]

_TORCH_ZIP_MAGIC = b"PK\x03\x04"
_FORMATS = "PyTorch (zip or legacy pickle, read with weights_only=True) and safetensors"


class _Inert:
    """Stand-in for any pickled class: constructing it yields an empty OrderedDict."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "collections.OrderedDict[str, Any]":
        return collections.OrderedDict()


class CheckpointFormatError(ValueError):
    """A checkpoint file that none of the supported formats can read."""


class CheckpointRefusedError(CheckpointFormatError):
    """A checkpoint file that names globals no weights file needs (nothing of it was run)."""


# Modules whose globals a pickled config object never needs; a file naming one is a crafted file.
_REFUSED_MODULES = ("builtins", "os", "posix", "nt", "subprocess", "sys", "shutil", "importlib", "pickle",
                    "marshal", "runpy", "code", "types", "operator", "functools", "ctypes", "torch")


def _refused(names: Sequence[str]) -> list:
    return [name for name in names if name.split(".")[0] in _REFUSED_MODULES]


def _is_safetensors(path: str) -> bool:
    """safetensors layout: an 8-byte little-endian header length, then a JSON header starting with '{'."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < size <= os.path.getsize(path) - 8


def load_checkpoint_file(path: str) -> Any:
    """Read a checkpoint file safely: safetensors -> dict of tensors; PyTorch -> ``torch.load(weights_only=True)``
    with pickled non-tensor objects replaced by inert OrderedDicts. Raises FileNotFoundError for a missing file
    and :class:`CheckpointFormatError` naming the path and the formats tried for anything unreadable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    with open(path, "rb") as f:
        is_zip = f.read(4) == _TORCH_ZIP_MAGIC
    errors = []
    if not is_zip and _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as e:  # noqa: BLE001 - reported with the path below
            errors.append(f"safetensors: {type(e).__name__}: {e}")
    else:
        try:
            if is_zip:
                foreign = torch.serialization.get_unsafe_globals_in_checkpoint(path)
                refused = _refused(foreign)
                if refused:
                    raise CheckpointRefusedError(
                        f"checkpoint {path}: refused (nothing in it was run): it names {', '.join(sorted(refused))}, "
                        "which no weights file needs; load only files from a source you trust")
                with torch.serialization.safe_globals([(_Inert, name) for name in foreign]):
                    return torch.load(path, map_location="cpu", weights_only=True)
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy format: allow-list only
        except CheckpointRefusedError:
            raise
        except Exception as e:  # noqa: BLE001 - reported with the path below
            errors.append(f"PyTorch ({'zip' if is_zip else 'legacy pickle'}): {type(e).__name__}: {str(e)[:300]}")
        errors.append("safetensors: no safetensors header")
    raise CheckpointFormatError(f"checkpoint {path}: cannot be read as {_FORMATS}; " + "; ".join(errors))


def pickled_fields(obj: Any) -> Dict[str, Any]:
    """The plain fields of a pickled config object as :func:`load_checkpoint_file` returns it (an inert
    OrderedDict carrying the object's attributes), or of the real object (argparse.Namespace); {} otherwise."""
    fields = dict(obj) if isinstance(obj, dict) else {}
    fields.update(getattr(obj, "__dict__", {}))
    return fields


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


def conversion_input(checkpoint: Any) -> Dict[str, Any]:
    """What the converters read from a loaded checkpoint, as plain dicts: the weights under ``model`` and the
    fields of the pickled config objects ``args`` / ``config``. timm deep-copies what it is handed (which would
    also drop the fields of an inert object), so optimizer state and EMA copies are left behind here."""
    out: Dict[str, Any] = {"model": select_state_dict(checkpoint)}
    if isinstance(checkpoint, dict):
        out.update({key: pickled_fields(checkpoint[key]) for key in ("args", "config") if key in checkpoint})
    return out


def key_summary(keys: Sequence[str], shown: int = 5) -> str:
    """``['a', 'b']`` for a few keys; the first ``shown`` and the count for more (errors stay short)."""
    keys = sorted(keys)
    if len(keys) <= shown:
        return repr(keys)
    return f"{keys[:shown]!r} and {len(keys) - shown} more ({len(keys)} in all)"


def _download(variant: str, kwargs: Dict[str, Any], overlay: Dict[str, Any]) -> str:
    """Download (once, into timm's torch-hub cache) the file named by the resolved pretrained cfg's ``url``."""
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get("pretrained_cfg"),
                                 pretrained_cfg_overlay=copy.copy(overlay))
    if not cfg.url:
        raise ValueError(
            f"{variant}: pretrained=True needs a url in its pretrained cfg (tags: {variant}.in1k) or a local file: "
            f"timm.create_model('{variant}', pretrained=True, pretrained_cfg_overlay=dict(file='/path/to/official.pth'))"
        )
    try:
        return download_cached_file(cfg.url, check_hash=False, progress=False, cache_dir=kwargs.get("cache_dir"))
    except OSError as e:  # urllib's URLError / HTTPError are OSErrors
        raise OSError(
            f"{variant}: downloading {cfg.url} failed ({e}); download it yourself and pass "
            "pretrained_cfg_overlay=dict(file=PATH)"
        ) from e


def create_model_from_file_or_cfg(
    model_cls: Callable[..., torch.nn.Module],
    variant: str,
    pretrained: bool,
    filter_fn: Callable[[StateDict, torch.nn.Module], StateDict],
    **kwargs: Any,
) -> torch.nn.Module:
    """``build_model_with_cfg`` whose pretrained weights are read safely and converted.

    ``pretrained=True`` reads ``pretrained_cfg_overlay['file']`` when given, else downloads the pretrained
    cfg's ``url`` (an official release) into timm's cache. The file is read with :func:`load_checkpoint_file`,
    converted by ``filter_fn`` (official layout or vssm's own) and loaded strictly, so any missing or
    unexpected key is reported.
    """
    if pretrained:
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
        path = overlay.get("file") or _download(variant, kwargs, overlay)
        overlay["state_dict"] = conversion_input(load_checkpoint_file(path))
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
                f"checkpoint conversion for {type(model).__name__}: missing keys {key_summary(missing)}, "
                f"unexpected keys {key_summary(unexpected)}"
            )
        return state

    return convert
