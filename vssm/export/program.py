"""``torch.export`` of vssm models with a dynamic batch, the scan op traced as standard ops.

    program = vssm.export.export_program(model, images)      # batch axis dynamic
    program.module()(other_batch)                            # no vssm kernel needed to run it

    with vssm.export.decomposed_scan():                      # or around your own torch.export / torch.onnx call
        program = torch.export.export(model, (images,), dynamic_shapes=({0: torch.export.Dim("batch")},))
"""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterator

import torch
from torch.overrides import TorchFunctionMode

from .scan_decomposition import SCAN_OP, selective_scan_decomposition

# For ``ExportedProgram.run_decompositions`` on a program that kept the op.
SCAN_DECOMPOSITIONS: Dict[object, Callable] = {SCAN_OP: selective_scan_decomposition}


class _DecomposedScan(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is SCAN_OP:
            return selective_scan_decomposition(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def decomposed_scan() -> Iterator[None]:
    """Inside the block, calls of ``vssm::selective_scan`` run (and trace) as
    :func:`~vssm.export.scan_decomposition.selective_scan_decomposition`: standard ops and one
    ``torch.ops.higher_order.scan``, which ``torch.export`` keeps with a symbolic batch and the ONNX exporter turns
    into an ONNX ``Scan``. Inference only (no backward through the decomposition's scan)."""
    with _DecomposedScan():
        yield


def export_program(model: torch.nn.Module, images: torch.Tensor, *,
                   dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model(images)`` in eval mode inside :func:`decomposed_scan`, the batch axis
    dynamic when ``dynamic_batch``. images: (batch, channels, H, W); the image size is fixed by the export.

    One eager forward of ``images[:1]`` runs first: it builds and caches the route tables of this grid size
    (host-side index work that a trace cannot run).
    """
    if images.dim() != 4:
        raise ValueError(f"images: got shape {tuple(images.shape)}, expected (batch, channels, H, W)")
    model = model.eval()
    with torch.no_grad():
        model(images[:1])
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    with decomposed_scan():
        return torch.export.export(model, (images,), dynamic_shapes=dynamic_shapes)
