"""Kernel settings for side-by-side benchmark variants: 'NAME=VALUE[,NAME=VALUE...]' over the upper-case module
settings of vssm.kernels.triton_scan and triton_scan_tiled (TILES, TILE_ELEMENTS, TILE_WARPS, CHUNK,
PARTIALS_BF16, ...)."""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Tuple

from vssm.kernels import triton_scan, triton_scan_tiled

Setting = Tuple[object, str, object]


def parse(variant: str) -> List[Setting]:
    """'TILES=1,TILE_ELEMENTS=8192' -> [(module, name, value), ...]; an unknown name raises SystemExit."""
    settings = []
    for item in variant.split(","):
        name, _, value = item.partition("=")
        module = next((m for m in (triton_scan, triton_scan_tiled) if name.isupper() and hasattr(m, name)), None)
        if module is None or not value:
            raise SystemExit(f"kernel setting {item!r}: expected NAME=VALUE with NAME a setting of triton_scan "
                             "or triton_scan_tiled")
        current = getattr(module, name)
        try:
            settings.append((module, name, bool(int(value)) if isinstance(current, bool) else type(current)(value)))
        except ValueError:
            raise SystemExit(f"kernel setting {item!r}: {name} takes an integer (0/1 for a switch)") from None
    return settings


@contextlib.contextmanager
def applied(settings: List[Setting]) -> Iterator[None]:
    """The settings in force inside the block, the previous values restored after it."""
    saved = [getattr(module, name) for module, name, _ in settings]
    for module, name, value in settings:
        setattr(module, name, value)
    try:
        yield
    finally:
        for (module, name, _), value in zip(settings, saved):
            setattr(module, name, value)
