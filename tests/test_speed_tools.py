"""tools/erf.py and the throughput helpers behind tools/benchmark.py, on tiny CPU models."""
import importlib.util
import pathlib

import pytest
import timm
import torch

from vssm.utils.throughput import measure_inference, measure_training

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_erf_is_centred_for_a_convnet():
    erf_tool = load_tool("erf")
    model = timm.create_model("resnet18", features_only=True).eval()
    erf = erf_tool.effective_receptive_field(model, erf_tool.photo_crops(2, 64))
    assert erf.shape == (64, 64)
    peak = torch.nonzero(erf == erf.max())[0]
    assert all(16 <= int(c) < 48 for c in peak)  # the centre feature depends most on central pixels
    assert erf[:4, :4].sum() < erf[28:36, 28:36].sum()


def test_erf_tool_writes_figure(tmp_path):
    out = tmp_path / "erf.png"
    load_tool("erf").main(["resnet18", "--out", str(out), "--images", "1", "--size", "32"])
    assert out.stat().st_size > 1000


def test_throughput_helpers_on_cpu():
    model = timm.create_model("resnet18", num_classes=10)
    device = torch.device("cpu")
    inference = measure_inference(model, 2, 32, device, warmup=1, iters=2)
    training = measure_training(model, 2, 32, device, warmup=1, iters=2)
    assert inference.images_per_s > 0 and training.images_per_s > 0
    assert inference.batch == 2 and training.size == 32
    with pytest.raises(ValueError, match="cuda_graph"):
        measure_inference(model, 2, 32, device, warmup=1, iters=1, cuda_graph=True)
    with pytest.raises(ValueError, match="cuda_graph"):
        measure_training(model, 2, 32, device, warmup=1, iters=1, cuda_graph=True)


@pytest.mark.gpu
def test_vmamba_forward_captures_in_a_cuda_graph():
    """No host sync and no host-to-device copy inside a VMamba forward: a CUDA graph of it replays the eager
    result."""
    device = torch.device("cuda")
    model = timm.create_model("vmamba_tiny", depths=(1, 1, 2, 1), dims=32, num_classes=7).to(device).eval()
    images = torch.randn(4, 3, 64, 64, device=device)
    with torch.no_grad():
        expected = model(images)
        for _ in range(2):
            model(images)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = model(images)
    graph.replay()
    torch.testing.assert_close(captured, expected)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["vmamba_tiny", "vim_tiny", "plainmamba_l1"])
def test_training_step_captures_in_a_cuda_graph(name):
    """No host sync in a forward + backward: gradients from a captured graph's replay equal eager ones, and
    the whole-step measurement (capturable AdamW inside the graph) runs."""
    device = torch.device("cuda")
    small = dict(vmamba_tiny=dict(depths=(1, 1, 2, 1), dims=32), vim_tiny=dict(depth=2, embed_dim=64),
                 plainmamba_l1=dict(depth=2, embed_dim=64))[name]
    model = timm.create_model(name, num_classes=7, drop_path_rate=0.0, **small).to(device)  # no random drops
    images = torch.randn(4, 3, 64, 64, device=device)

    def grads():
        model.zero_grad(set_to_none=True)
        model(images).square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    expected = grads()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            grads()
    torch.cuda.current_stream().wait_stream(stream)
    model.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(images).square().mean().backward()
    graph.replay()
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e)
    result = measure_training(model, 4, 64, device, warmup=1, iters=2, cuda_graph=True)
    assert result.images_per_s > 0
