"""tools/flops.py and tools/check_parity.py: FLOPs against a hand count, the CLIs' output and exit codes."""
import importlib.util
import math
import pathlib
import shutil
import sys

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import vssm  # noqa: F401
from vssm.kernels import selective_scan
from vssm.utils.flops import count_flops

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "parity"


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))  # dataclasses need it
    spec.loader.exec_module(module)
    return module


def test_scan_flop_formula_is_registered_for_the_op():
    b, L, K, d, N = torch.randint(1, 4, (1,)).item(), 12, 4, 6, torch.randint(1, 5, (1,)).item()
    routes = torch.stack([torch.randperm(L) for _ in range(K)]).int()
    u, z = torch.randn(b, L, 1, d), torch.randn(b, L, 1, d)
    delta, B, C = torch.randn(b, L, K, d), torch.randn(b, L, K, N), torch.randn(b, L, K, N)
    A, D = -torch.rand(K, d, N) - 0.5, torch.randn(K, d)
    counter = FlopCounterMode(display=False)
    with counter:
        selective_scan(u, delta, A, B, C, D, z=z, routes=routes)
    # 9*B*L*D*N for the recurrence, + B*L*D each for D and the z-gate, D counted over all K routes.
    assert counter.get_total_flops() // 2 == 9 * b * L * K * d * N + 2 * b * L * K * d


def _conv_out(n: int) -> int:
    return math.ceil(n / 2)  # 3x3, stride 2, padding 1


def test_count_flops_matches_a_hand_count_of_a_small_vmamba():
    H, W = torch.randint(32, 73, (2,)).tolist()
    # Widths >= 32 keep dt_rank >= 2: with dt_rank 1 the dt_proj einsum lowers to a broadcast multiply,
    # which torch's FlopCounterMode does not count (released models have dt_rank >= 6).
    dims, classes, K, N = [32, 64, 128, 256], 5, 4, 1
    model = timm.create_model("vmamba_tiny", depths=(1, 1, 1, 1), dims=32, num_classes=classes)
    h1, w1 = _conv_out(H), _conv_out(W)
    h, w = _conv_out(h1), _conv_out(w1)
    expected = h1 * w1 * 16 * 3 * 9 + h * w * 32 * 16 * 9  # conv stem
    for i, C in enumerate(dims):
        L, R = h * w, math.ceil(C / 16)  # ssm_ratio 1: scan channels = C
        expected += L * C * C + L * C * 9  # in_proj, depthwise 3x3
        expected += L * K * (R + 2 * N) * C + L * K * C * R  # x_proj, dt_proj per route
        expected += 9 * L * K * C * N + L * K * C  # selective scan (+ D), no z-gate in v2
        expected += L * C * C + 2 * L * C * 4 * C  # out_proj, MLP
        if i < 3:
            h, w = _conv_out(h), _conv_out(w)
            expected += h * w * 2 * C * C * 9  # conv downsampling
    expected += dims[-1] * classes
    assert count_flops(model, (3, H, W)) == expected


def test_flops_cli_prints_ours_and_official(capsys):
    load_tool("flops").main(["vmamba_tiny_v0", "--size", "64"])
    line = capsys.readouterr().out.strip()
    params = sum(p.numel() for p in timm.create_model("vmamba_tiny_v0").parameters()) / 1e6
    assert line.startswith(f"vmamba_tiny_v0: params {params:.2f} (official 23, ")
    assert "FLOPs@64 " in line and "(official 5.6, " in line


def _copy_fixture(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    shutil.copytree(src, dst)
    return dst


def test_check_parity_cli_passes_and_fails(tmp_path, capsys):
    check_parity = load_tool("check_parity")
    assert check_parity.main([str(tmp_path)]) == 1
    assert "no fixtures" in capsys.readouterr().out

    good = _copy_fixture(FIXTURES / "vmamba_v2_64x64", tmp_path / "good")
    bad = _copy_fixture(FIXTURES / "vmamba_v2_64x64", tmp_path / "bad")
    logits = torch.load(bad / "logits.pt", weights_only=True)
    torch.save(logits + 1e-2 * logits.norm() / logits.numel() ** 0.5 * torch.randn_like(logits), bad / "logits.pt")
    assert check_parity.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "| bad | vmamba_tiny |" in out and "FAIL" in out and "| good | vmamba_tiny |" in out and "pass" in out

    shutil.rmtree(bad)
    assert check_parity.main([str(tmp_path)]) == 0
    assert good.name in capsys.readouterr().out
