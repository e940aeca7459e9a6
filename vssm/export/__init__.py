"""Export of vssm models: ``torch.export`` with a dynamic batch, and ONNX (checked with onnxruntime).

    import vssm.export
    program = vssm.export.export_program(model, images)                 # torch.export.ExportedProgram
    vssm.export.export_onnx(model, images, "model.onnx")                # ONNX file, batch axis dynamic

Both trace the custom op ``vssm::selective_scan`` as standard ops (:mod:`.scan_decomposition`).
"""
from .onnx import export_onnx
from .program import SCAN_DECOMPOSITIONS, decomposed_scan, export_program
from .scan_decomposition import selective_scan_decomposition

__all__ = ["SCAN_DECOMPOSITIONS", "decomposed_scan", "export_onnx", "export_program", "selective_scan_decomposition"]
