"""Reading the checkpoints that mmengine's Runner writes, under torch's ``weights_only=True`` default.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6 that means ``weights_only=True``,
which refuses its own checkpoints (the message hub pickles ``HistoryBuffer`` objects holding numpy arrays).
:func:`mmengine_checkpoint_globals` allow-lists exactly those classes while a runner resumes or tests, so
``tools/train.py --resume`` and ``tools/test.py`` read files written by ``tools/train.py`` and still refuse
anything else (arbitrary pickled callables).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List

import numpy as np
import numpy.dtypes
import torch
from mmengine.logging.history_buffer import HistoryBuffer


def _allowed_globals() -> List[object]:
    """HistoryBuffer plus what numpy 2 pickles for arrays, scalars and dtypes (dtypes go through getattr)."""
    numpy_core = np._core.multiarray
    dtype_classes = [getattr(numpy.dtypes, name) for name in numpy.dtypes.__all__]
    return [HistoryBuffer, np.ndarray, np.dtype, numpy_core._reconstruct, numpy_core.scalar, getattr] + dtype_classes


@contextlib.contextmanager
def mmengine_checkpoint_globals() -> Iterator[None]:
    """Context in which ``torch.load(weights_only=True)`` accepts checkpoints written by mmengine's Runner."""
    with torch.serialization.safe_globals(_allowed_globals()):
        yield
