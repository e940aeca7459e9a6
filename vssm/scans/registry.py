"""Name -> scan strategy registry: ``get_scan("hilbert")``, ``list_scans()``, ``@register_scan("mine")``."""
from __future__ import annotations

from typing import Callable, Dict, List, Type, TypeVar, Union

from .base import ScanStrategy

_REGISTRY: Dict[str, Type[ScanStrategy]] = {}
S = TypeVar("S", bound=Type[ScanStrategy])


def register_scan(name: str) -> Callable[[S], S]:
    """Class decorator registering a :class:`ScanStrategy` subclass under ``name``."""

    def wrap(cls: S) -> S:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"scan name {name!r} is already registered to {_REGISTRY[name].__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_scans() -> List[str]:
    return sorted(_REGISTRY)


def get_scan(name: Union[str, ScanStrategy], **options) -> ScanStrategy:
    """A strategy instance by name (options go to its constructor); an instance is returned as is."""
    if isinstance(name, ScanStrategy):
        if options:
            raise ValueError("get_scan: options are only accepted with a scan name, not an instance")
        return name
    if name not in _REGISTRY:
        raise ValueError(f"scan: got {name!r}, expected one of {list_scans()}")
    return _REGISTRY[name](**options)
