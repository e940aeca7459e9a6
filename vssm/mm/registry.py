"""Registration of vssm modules in the registries of the installed OpenMMLab toolkits (mmdet, mmseg)."""
from __future__ import annotations

import importlib
from typing import List, TypeVar

from mmengine.registry import Registry

TOOLKITS = ("mmdet", "mmseg")
T = TypeVar("T", bound=type)


def _toolkit_registries(name: str) -> List[Registry]:
    """``<toolkit>.registry.<name>`` of every installed toolkit; ImportError when none is installed."""
    found = []
    for toolkit in TOOLKITS:
        try:
            module = importlib.import_module(f"{toolkit}.registry")
        except ModuleNotFoundError as err:
            if err.name != toolkit:
                raise
            continue
        found.append(getattr(module, name))
    if not found:
        raise ImportError(f"vssm.mm needs mmdet or mmsegmentation; neither of {TOOLKITS} is installed")
    return found


def register_model(cls: T) -> T:
    """Class decorator: register ``cls`` in MODELS of mmdet and of mmseg (those installed)."""
    for registry in _toolkit_registries("MODELS"):
        registry.register_module(module=cls)
    return cls


def register_optim_wrapper_constructor(cls: T) -> T:
    """Class decorator: register ``cls`` in OPTIM_WRAPPER_CONSTRUCTORS of mmdet and of mmseg (those installed)."""
    for registry in _toolkit_registries("OPTIM_WRAPPER_CONSTRUCTORS"):
        registry.register_module(module=cls)
    return cls
