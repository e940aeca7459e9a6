"""Per-call selective-scan kernel settings.

A :class:`KernelConfig` names what a caller wants; a field left ``None`` is chosen by the backend's heuristic
from the problem sizes. The settings in force are, from strongest to weakest: ``selective_scan(...,
config=...)``, the innermost ``with kernel_config(...)`` block, the heuristic. The backend turns them into a
:class:`KernelPlan` of plain values once per forward; the plan travels with the forward's saved tensors into its
backward (op arguments of ``vssm::selective_scan``), so settings changed between a forward and its backward
cannot reach that backward.

Heuristic (``plan`` of each backend; measurements in benchmarks/notes_triton.md):

- ``chunk`` (steps between saved states): triton 16, 32 from N = 8 on (the saved states then take at most the
  bytes of a bf16 delta; the backward recomputes one chunk into a per-program scratch of chunk + 1 states, which
  a short chunk keeps in L2); torch as many steps as keep one (batch, K, chunk, dim, N) work tensor within
  ``torch_chunk_elements`` (2^22) elements.
- ``span`` (triton): steps of one chunk-parallel program, 64 or the next multiple of ``chunk`` (H100 sweep when
  span and chunk were one setting: 32, 64 and 128 within 5%).
- ``chunk_parallel``: one program per span when routes repeat no token, there is more than one span and
  whole routes give fewer than 1024 (batch x channel block x route) programs (H100: 512 programs of 3136 steps
  1.6x faster chunked; 3072 programs of N = 16 1.5x slower chunked); forward and backward alike.
- ``block_d`` / ``warps`` (per-step kernels): all of N and up to 512 state elements a program (``block_d`` =
  max(16, 512 / N) channels), on one warp. H200, 2026-12-03, fwd+bwd ms, warps 1 / 2 / 4 (the old default) / 8:
  (a) 4.37 / 4.58 / 5.60 / -, (c) 27.0 / 57.0 / 59.4 / 97.1, (d) 2.46 / 4.38 / 4.67 / 6.83, Vim-long 3.81 / 5.03 /
  5.94 / 9.38; at (c) 8 channels on one warp 43.2, 16 channels on two warps 55.9. (a) was measured with the
  tile forward of that day; with the one-warp forward it is 4.10. That tile-parallel forward (64-step tiles
  through ``tl.associative_scan``) was then removed: slower than the one-warp per-step forward in every case
  (H200, 2026-12-03: (a) 1.345 vs 1.080 ms, e-zigzag 1.28 vs 1.08; at N = 16 up to 5x slower the day before).
- ``partials_bf16``: per-route outputs of bf16 inputs kept in bf16 when every route visits every token once
  and nothing gates them before the (fp32) merge, as the anchor pipeline rounds them (H200, 2026-12-03: 1.03x
  faster forward at (a), 1.344 vs 1.386 ms; 1.06x at e-zigzag); also the per-route du of the backward, where
  every route visits every token once.

The default kernels are deterministic: no atomics, partial sums added in a fixed order, so reruns of a call
are bit-identical on every backend except the torch backend on CUDA (``index_add_``).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Iterator, List, Optional

__all__ = ["KernelConfig", "KernelPlan", "current_config", "kernel_config"]


@dataclass(frozen=True)
class KernelConfig:
    """Kernel settings of a call; ``None`` fields are left to the heuristic (module docstring)."""

    chunk: Optional[int] = None  # steps between saved states (both backends)
    span: Optional[int] = None  # triton: steps one chunk-parallel program covers (a multiple of chunk)
    chunk_parallel: Optional[bool] = None  # triton: one program per chunk (carry passes), else per whole route
    partials_bf16: Optional[bool] = None  # triton: bf16 per-route outputs where sound (see module docstring)
    block_d: Optional[int] = None  # triton: channels a program holds (a power of two)
    warps: Optional[int] = None  # triton: warps a program runs on (a power of two)
    torch_chunk_elements: Optional[int] = None  # torch: elements of one work tensor, picks its chunk

    def __post_init__(self) -> None:
        for name in ("chunk", "span", "torch_chunk_elements"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"KernelConfig.{name}: got {value!r}, expected a positive int or None")
        for name in ("block_d", "warps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not is_power_of_two(value)):
                raise ValueError(f"KernelConfig.{name}: got {value!r}, expected a power of two or None")
        for name in ("chunk_parallel", "partials_bf16"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"KernelConfig.{name}: got {value!r}, expected True, False or None")

    def over(self, base: "KernelConfig") -> "KernelConfig":
        """This config's set fields laid over ``base``'s."""
        set_fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
        return dataclasses.replace(base, **set_fields)


@dataclass(frozen=True)
class KernelPlan:
    """Resolved settings of one call (plain values, passed as op arguments and saved for the backward)."""

    chunk: int  # steps between saved states
    span: int  # steps of one chunk-parallel program (a multiple of chunk)
    chunked: bool  # chunk-parallel schedule (forward and backward), else one program per whole route
    partials_bf16: bool
    block_d: int  # channels a program holds
    warps: int  # warps a program runs on

    def as_args(self) -> tuple:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))


# The enclosing kernel_config blocks, innermost last (a plain list so torch.compile reads it as a constant).
_STACK: List[KernelConfig] = []


def current_config(call: Optional[KernelConfig] = None) -> KernelConfig:
    """The settings in force: ``call``'s fields over the innermost ``kernel_config`` block's (over the outer
    blocks')."""
    config = _STACK[-1] if _STACK else KernelConfig()
    return call.over(config) if call is not None else config


@contextlib.contextmanager
def kernel_config(config: Optional[KernelConfig] = None, **fields) -> Iterator[KernelConfig]:
    """``with kernel_config(chunk=32, warps=2):`` -- settings for the selective scans started in the
    block (``config``'s fields and then ``fields`` over the enclosing block's); yields the settings in force."""
    merged = KernelConfig(**fields).over(config.over(current_config()) if config is not None else current_config())
    _STACK.append(merged)
    try:
        yield merged
    finally:
        _STACK.pop()


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0
