"""ONNX export (vssm.export.export_onnx, dynamo exporter) checked with onnxruntime against PyTorch."""
import pytest
import torch

from tests.kernels.scan_inputs import random_problem
from tests.test_export import TINY, _Scan, tiny_model
from vssm.export import decomposed_scan, export_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def run_onnx(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: f.numpy() for n, f in zip(names, feeds)})


def relative_error(got, expected: torch.Tensor) -> float:
    return float((torch.from_numpy(got) - expected).abs().max() / expected.abs().max())


def test_bare_op_in_onnxruntime(tmp_path):
    """The op alone (padding, a repeated token, z, D, bias, sum merge), exported at batch 2 and run at batch 3."""
    torch.manual_seed(4)
    p = random_problem(batch=2)
    module = _Scan(p).eval()
    batch = torch.export.Dim("batch", min=1)
    with decomposed_scan():
        program = torch.onnx.export(module, (p.u, p.delta, p.B, p.C, p.z), dynamo=True,
                                    dynamic_shapes=tuple({0: batch} for _ in range(5)))
    program.save(str(tmp_path / "scan.onnx"))
    q = random_problem(batch=3)
    inputs = (q.u, q.delta, q.B, q.C, q.z)
    (got,) = run_onnx(tmp_path / "scan.onnx", inputs)
    assert relative_error(got, module(*inputs)) < 1e-5


@pytest.mark.parametrize("name", list(TINY))
def test_model_in_onnxruntime(name, tmp_path):
    model = tiny_model(name)
    export_onnx(model, torch.randn(2, 3, 32, 32), tmp_path / "model.onnx")
    images = torch.randn(3, 3, 32, 32)
    (got,) = run_onnx(tmp_path / "model.onnx", [images])
    with torch.no_grad():
        expected = model(images)
    assert got.shape == (3, 5)
    assert relative_error(got, expected) < 1e-4
