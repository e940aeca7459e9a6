"""vssm.export: the scan op as standard ops (against the float64 oracle) and torch.export with a dynamic batch."""
import contextlib

import pytest
import timm
import torch
from torch.overrides import TorchFunctionMode

import vssm  # noqa: F401  (registers the models)
from tests.kernels.scan_inputs import as_float64, random_problem
from vssm.export import SCAN_DECOMPOSITIONS, decomposed_scan, export_program
from vssm.export.scan_decomposition import SCAN_OP
from vssm.kernels import Routes, selective_scan, selective_scan_reference

# One small model per family at 32x32 inputs.
TINY = {
    "vmamba_tiny": dict(depths=(1, 1, 1, 1), dims=16),
    "vim_tiny": dict(depth=2, embed_dim=32, img_size=32),
    "plainmamba_l1": dict(depth=2, embed_dim=32, img_size=32),
}


def tiny_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=5, **TINY[name]).eval()


class _NoScanOp(TorchFunctionMode):
    """Fails if the custom op itself is called (entered below decomposed_scan, it sees only what that passes on)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        assert func is not SCAN_OP, "vssm::selective_scan ran instead of its decomposition"
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def only_decomposed():
    with _NoScanOp(), decomposed_scan():
        yield


def test_the_guard_sees_the_op():
    p = random_problem()
    with pytest.raises(AssertionError, match="instead of its decomposition"), _NoScanOp():
        selective_scan(*p.args(), routes=p.routes)


CASES = {
    "sum, z, D, bias, padding, repeated token": dict(),
    "mean, shared u": dict(shared_u=True, merge="mean"),
    "none, no z/D/bias": dict(with_z=False, with_D=False, with_bias=False, merge="none"),
    "param_index": dict(param_index=True, repeat=False),
    "hidden": dict(return_hidden=True),
}


@pytest.mark.parametrize("case", CASES)
def test_decomposition_matches_the_float64_oracle(case):
    options = dict(CASES[case])
    merge, hidden = options.pop("merge", "sum"), options.pop("return_hidden", False)
    torch.manual_seed(1)
    p = as_float64(random_problem(**options))
    expected = selective_scan_reference(*p.args(), routes=p.routes, merge=merge, return_hidden=hidden)
    with only_decomposed():
        got = selective_scan(*p.args(), routes=p.routes, merge=merge, return_hidden=hidden)
    for g, e in zip(got if hidden else (got,), expected if hidden else (expected,)):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


def test_decomposition_with_u_group():
    """Routes reading u slots by an explicit table (multihead/multiscale scans)."""
    torch.manual_seed(2)
    p = as_float64(random_problem(K=4, repeat=False))
    u, z = p.u[:, :, :2], p.z[:, :, :2]
    routes = Routes(index=p.routes.index, u_group=torch.tensor([0, 0, 1, 1], dtype=torch.int32))
    args = (u, p.delta, p.A, p.B, p.C, p.D, p.delta_bias, z)
    expected = selective_scan_reference(*args, routes=routes)
    with only_decomposed():
        got = selective_scan(*args, routes=routes)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


class _Scan(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        self.A, self.D, self.delta_bias, self.routes = p.A, p.D, p.delta_bias, p.routes

    def forward(self, u, delta, B, C, z):
        return selective_scan(u, delta, self.A, B, C, self.D, self.delta_bias, z, routes=self.routes)


def test_run_decompositions_replaces_a_kept_op():
    """A program exported with the op kept (static shapes) loses it to SCAN_DECOMPOSITIONS, same output."""
    torch.manual_seed(3)
    p = random_problem()
    module = _Scan(p)
    inputs = (p.u, p.delta, p.B, p.C, p.z)
    program = torch.export.export(module, inputs)
    assert any(n.target is SCAN_OP for n in program.graph.nodes)
    program = program.run_decompositions(SCAN_DECOMPOSITIONS)
    assert not any(n.target is SCAN_OP for n in program.graph.nodes)
    torch.testing.assert_close(program.module()(*inputs), module(*inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(TINY))
def test_export_program_runs_another_batch(name):
    """Exported at batch 2, run at batch 3: the eager model's logits; no vssm op left in the graph."""
    model = tiny_model(name)
    program = export_program(model, torch.randn(2, 3, 32, 32))
    assert not any(n.target is SCAN_OP for n in program.graph.nodes)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)
    torch.testing.assert_close(program.module()(images), expected, rtol=1e-4, atol=1e-5)


def test_plain_torch_export_keeps_a_dynamic_batch():
    """torch.export.export of a model with the custom op kept, batch dynamic, run at another batch."""
    model = tiny_model("vmamba_tiny")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(images)  # route tables of this size
    program = torch.export.export(model, (images,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(images), model(images), rtol=1e-5, atol=1e-6)


def test_export_program_rejects_a_non_image_input():
    with pytest.raises(ValueError, match=r"images: got shape \(3, 32, 32\)"):
        export_program(tiny_model("vmamba_tiny"), torch.randn(3, 32, 32))
