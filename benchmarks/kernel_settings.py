"""Kernel-config variants for side-by-side benchmarks: 'NAME=VALUE[,NAME=VALUE...]' over the fields of
vssm.kernels.KernelConfig (chunk, chunk_parallel, partials_bf16, block_d, warps, torch_chunk_elements); 0/1 for
the switches, e.g. ``warps=4,chunk=32``."""
from __future__ import annotations

import dataclasses

from vssm.kernels import KernelConfig, kernel_config

_FIELDS = {f.name: f for f in dataclasses.fields(KernelConfig)}
_SWITCHES = {"chunk_parallel", "partials_bf16"}


def parse(variant: str) -> KernelConfig:
    """'chunk_parallel=0,chunk=32' -> KernelConfig(chunk_parallel=False, chunk=32); a bad entry raises SystemExit."""
    values = {}
    for item in filter(None, variant.split(",")):
        name, _, value = item.partition("=")
        if name not in _FIELDS or not value:
            raise SystemExit(f"kernel setting {item!r}: expected NAME=VALUE with NAME one of {sorted(_FIELDS)}")
        try:
            number = int(value)
        except ValueError:
            raise SystemExit(f"kernel setting {item!r}: {name} takes an integer (0/1 for a switch)") from None
        if name in _SWITCHES and number not in (0, 1):
            raise SystemExit(f"kernel setting {item!r}: {name} is a switch, 0 or 1")
        values[name] = bool(number) if name in _SWITCHES else number
    try:
        return KernelConfig(**values)
    except ValueError as err:
        raise SystemExit(f"kernel setting {variant!r}: {err}") from None


_IN_FORCE = []  # the blocks entered by use(), kept referenced (a collected generator would leave its block)


def use(variant: str) -> None:
    """The variant's settings for the rest of this (benchmark) process; '' keeps the defaults."""
    if variant:
        block = kernel_config(parse(variant))
        block.__enter__()
        _IN_FORCE.append(block)
