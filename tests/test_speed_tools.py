"""tools/erf.py, tools/benchmark.py (and its throughput helpers) and tools/flops.py --scan, on small CPU models."""
import importlib.util
import pathlib
import re

import pytest
import timm
import torch

from vssm.utils.throughput import create_for_size, measure_inference, measure_training, sweep_batch

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
    assert inference.peak_memory_gb is None and training.peak_memory_gb is None  # not measured on the CPU
    for measure in (measure_inference, measure_training):
        with pytest.raises(ValueError, match="mode: 'graph' .* needs a CUDA device"):
            measure(model, 2, 32, device, warmup=1, iters=1, mode="graph")
        with pytest.raises(ValueError, match="mode: got 'fast'"):
            measure(model, 2, 32, device, warmup=1, iters=1, mode="fast")
        with pytest.raises(ValueError, match="iters"):
            measure(model, 2, 32, device, warmup=1, iters=0)


def test_benchmark_cpu_defaults():
    """One image, a few steps, eager only on the CPU (batch 128 took hours); CUDA keeps the published setting."""
    benchmark = load_tool("benchmark")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    args = benchmark.parse_args(["vmamba_tiny"], cpu)
    assert (benchmark.batch_for(args, 224, cpu), args.warmup, args.iters, args.modes) == (1, 1, 3, ["eager"])
    args = benchmark.parse_args(["vmamba_tiny", "--peers", "--sizes", "224", "1024"], cuda)
    assert args.modes == ["eager", "compile", "graph"] and (args.warmup, args.iters) == (10, 30)
    assert [benchmark.batch_for(args, s, cuda) for s in (224, 512, 1024)] == [128, 24, 8]
    assert args.models == ["vmamba_tiny", *benchmark.PEERS]
    assert benchmark.batch_for(benchmark.parse_args(["m", "--batch", "4"], cuda), 1024, cuda) == 4
    with pytest.raises(SystemExit):
        benchmark.parse_args(["vmamba_tiny", "--modes", "graph"], cpu)


def test_benchmark_table_on_cpu(capsys):
    """A markdown table with one row per model, size and mode; memory says n/a on the CPU, never nan."""
    rows = load_tool("benchmark").main(["resnet18", "--sizes", "64", "96", "--iters", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    assert "nan" not in out and "error" not in out
    assert [(r["size"], r["batch"], r["mode"]) for r in rows] == [("64", "1", "eager"), ("96", "1", "eager")]
    lines = [line for line in out.splitlines() if line.startswith("| resnet18 ")]
    assert len(lines) == 2 and all(line.count("n/a (CPU)") == 2 for line in lines)
    assert float(lines[0].split("|")[5]) > 0 and float(lines[0].split("|")[7]) > 0  # inference, training img/s


def test_benchmark_reports_a_failing_model_and_goes_on(capsys):
    rows = load_tool("benchmark").main(["resnet18", "no_such_model", "--sizes", "32", "--iters", "1",
                                        "--warmup", "0", "--no-train"])
    assert "error" not in rows[0] and "Unknown model" in rows[1]["error"]
    assert "| no_such_model | 32 | 1 | eager | error: " in capsys.readouterr().out


def test_sweep_batch_and_fixed_size_models():
    assert [sweep_batch(s) for s in (224, 384, 768, 1024)] == [128, 40, 8, 8]
    deit = create_for_size("deit_tiny_patch16_224", 64)
    assert deit(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    swin = create_for_size("swin_tiny_patch4_window7_224", 64)  # window fitted to the 2x2 last stage
    assert swin(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_flops_scan_is_compared_with_the_default_scan(capsys):
    """--scan X: the first line stays the default scan against the official numbers; the second gives X's counts
    and their change against the default scan (bidirectional has 2 routes instead of cross's 4)."""
    flops = load_tool("flops")
    flops.main(["vmamba_tiny", "--size", "32", "--scan", "bidirectional"])
    first, second = capsys.readouterr().out.strip().splitlines()
    default = flops.describe("vmamba_tiny", 32)
    swapped = flops.describe("vmamba_tiny", 32, scan="bidirectional")
    assert first.startswith(f"vmamba_tiny: params {default['params']:.2f} (official 30, ")
    assert second.startswith("  with scan bidirectional instead of cross: ") and "official" not in second
    params, params_change, gflops, gflops_change = map(float, re.findall(r"([-+\d.]+)(?:%| \()", second))
    assert params == pytest.approx(swapped["params"], abs=0.005) and gflops == pytest.approx(swapped["gflops"], abs=0.005)
    assert params_change == pytest.approx(100 * (swapped["params"] / default["params"] - 1), abs=0.05)
    assert gflops_change == pytest.approx(100 * (swapped["gflops"] / default["gflops"] - 1), abs=0.05)
    assert swapped["gflops"] < default["gflops"]


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
    result = measure_training(model, 4, 64, device, warmup=1, iters=2, mode="graph")
    assert result.images_per_s > 0
