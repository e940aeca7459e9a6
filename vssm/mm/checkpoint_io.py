"""Reading the checkpoints that mmengine's Runner writes, under torch's ``weights_only=True``, and nothing else.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6 that means ``weights_only=True``,
which refuses the Runner's own files: the message hub pickles ``HistoryBuffer`` objects holding numpy arrays and
their statistics functions (``getattr(HistoryBuffer, 'mean')`` in pickle protocol 2).
:func:`mmengine_checkpoint_globals` allows exactly those inert globals: ``HistoryBuffer``, numpy's array and
scalar rebuild (``_reconstruct``, ``ndarray``, ``scalar``, ``dtype`` and the numeric dtype classes) and a
``getattr`` that resolves only ``HistoryBuffer``'s four built-in statistics. Anything else (``os.system`` through ``__reduce__``, ``getattr`` on torch internals, ...) raises
:class:`CheckpointRefusedError` naming the refused global. A file you trust (it may run any code it contains)
loads with ``trust=True`` (the tools' ``--trust-checkpoint``): ``weights_only=False`` inside the context.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import re
from typing import Any, Iterator, List, Optional

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

# HistoryBuffer's built-in statistics (mmengine registers these four; its checkpoints pickle them by name).
HISTORY_STATISTICS = ("min", "max", "current", "mean")
# numpy 2 dtype instances are of per-type classes (Float64DType, ...), which unpickling must be allowed to build;
# numeric ones only (no object / string / void dtypes).
NUMERIC_DTYPES = ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8")
TRUST_HINT = (
    "if you trust this file (loading it may run any code it contains), pass --trust-checkpoint to "
    "tools/train.py / tools/test.py, or use vssm.mm.checkpoint_io.mmengine_checkpoint_globals(trust=True)"
)


class CheckpointRefusedError(pickle.UnpicklingError):
    """A checkpoint needs a global outside the inert ones mmengine checkpoints use; nothing of it was run."""


def _history_getattr(obj: Any, name: str) -> Any:
    """``getattr`` for unpickling: only ``HistoryBuffer.<built-in statistic>``; anything else is refused."""
    if obj is HistoryBuffer and name in HISTORY_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise CheckpointRefusedError(
        f"builtins.getattr({_describe(obj)}, {name!r}) (only getattr(HistoryBuffer, one of {HISTORY_STATISTICS}) "
        "is allowed)"
    )


def _describe(obj: Any) -> str:
    """A short description of an unpickled object for an error message (its name, else its type's)."""
    name = getattr(obj, "__name__", None)
    return name if isinstance(name, str) else type(obj).__name__


def _allowed_globals() -> List[object]:
    """The exact globals of a Runner checkpoint beyond torch's defaults (tensors, OrderedDict, _codecs.encode)."""
    numeric_dtypes = [type(np.dtype(code)) for code in NUMERIC_DTYPES]
    multiarray = np._core.multiarray
    return [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
            (_history_getattr, "builtins.getattr")] + numeric_dtypes


def _refused_global(message: str) -> str:
    """What torch's weights-only unpickler refused, from its ``message`` (the line after "WeightsUnpickler error")."""
    for pattern in (r"(builtins\.getattr\(.+? is allowed\))", r"GLOBAL (\S+) was not",
                    r"unrecognized function (.+?)(?: which|$)", r"but got (<class .+?>)"):
        found = re.search(pattern, message, re.MULTILINE)
        if found:
            return ("the global " if "GLOBAL" in pattern else "") + found.group(1)
    detail = message.split("WeightsUnpickler error:")[-1].strip()
    return detail.splitlines()[0] if detail else "?"


@contextlib.contextmanager
def mmengine_checkpoint_globals(trust: bool = False, path: Optional[str] = None) -> Iterator[None]:
    """Context in which mmengine's ``torch.load`` reads Runner checkpoints (and refuses anything that could run code).

    trust: load with ``weights_only=False`` (only for files from a trusted source: they may run code).
    path: named in the error message when a file is refused.
    Raises CheckpointRefusedError (an UnpicklingError) naming the refused global and how to load a trusted file.
    """
    if trust:
        with _no_weights_only():
            yield
        return
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            yield
    except pickle.UnpicklingError as err:
        where = f"checkpoint {path}" if path else "a checkpoint"
        raise CheckpointRefusedError(
            f"{where} was refused (nothing in it was run): it needs {_refused_global(str(err))}, which is not one of "
            f"the inert globals mmengine checkpoints use; {TRUST_HINT}"
        ) from err


@contextlib.contextmanager
def _no_weights_only() -> Iterator[None]:
    """torch.load defaults to weights_only=False inside (mmengine passes no weights_only argument)."""
    name, before = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    os.environ[name] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name)
        else:
            os.environ[name] = before
