"""ONNX export of vssm models through ``torch.export`` (the dynamo exporter), checked with onnxruntime.

    vssm.export.export_onnx(model, images, "model.onnx")   # images: (batch, 3, H, W), batch stays dynamic
    session = onnxruntime.InferenceSession("model.onnx")
    logits = session.run(None, {"images": images.numpy()})[0]

``vssm::selective_scan`` becomes standard ONNX ops (Gather, Softplus, Exp, one ``Scan`` over the steps,
ScatterND adds; the z gate and the route merge included); the image size is fixed at export (route tables
are per grid size). The TorchScript exporter (``torch.onnx.export(..., dynamo=False)``, deprecated by
PyTorch) is not supported: it has no translation of the op.
"""
from __future__ import annotations

import os
from typing import Optional, Union

import torch

from .program import export_program


def export_onnx(model: torch.nn.Module, images: torch.Tensor, path: Optional[Union[str, os.PathLike]] = None, *,
                dynamic_batch: bool = True, opset_version: Optional[int] = None) -> "torch.onnx.ONNXProgram":
    """ONNX program of ``model(images)`` with input "images" and output "output", saved to ``path`` if given."""
    program = export_program(model, images, dynamic_batch=dynamic_batch)
    onnx_program = torch.onnx.export(program, (images,), dynamo=True, opset_version=opset_version,
                                     input_names=["images"], output_names=["output"])
    if path is not None:
        onnx_program.save(os.fspath(path))
    return onnx_program
