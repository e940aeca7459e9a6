"""KernelConfig: validation, the kernel_config context (nesting, restoring, per-call override) and the plan
the torch backend derives from it; the plan stays constant op arguments under torch.compile."""
import pytest
import torch

from vssm.kernels import KernelConfig, kernel_config, selective_scan
from vssm.kernels import torch_scan
from vssm.kernels.checks import ScanSizes
from vssm.kernels.config import current_config

from .scan_inputs import random_problem


@pytest.mark.parametrize("fields, message", [
    (dict(chunk=0), "KernelConfig.chunk: got 0, expected a positive int"),
    (dict(chunk=True), "KernelConfig.chunk: got True"),
    (dict(span=-4), "KernelConfig.span: got -4, expected a positive int"),
    (dict(torch_chunk_elements=2.5), "KernelConfig.torch_chunk_elements: got 2.5"),
    (dict(chunk_parallel=1), "KernelConfig.chunk_parallel: got 1, expected True, False or None"),
    (dict(block_d=12), "KernelConfig.block_d: got 12, expected a power of two"),
    (dict(warps=0), "KernelConfig.warps: got 0, expected a power of two"),
])
def test_bad_fields_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        KernelConfig(**fields)


def test_context_nests_restores_and_yields_to_the_call():
    assert current_config() == KernelConfig()
    with kernel_config(chunk=8, warps=2) as outer:
        assert outer == KernelConfig(chunk=8, warps=2)
        with kernel_config(KernelConfig(chunk_parallel=True), chunk=16):
            assert current_config() == KernelConfig(chunk=16, warps=2, chunk_parallel=True)
            assert current_config(KernelConfig(chunk=4)).chunk == 4  # the call's own field wins
        assert current_config() == outer
    assert current_config() == KernelConfig()
    with pytest.raises(RuntimeError):
        with kernel_config(chunk=8):
            raise RuntimeError("left by an exception")
    assert current_config() == KernelConfig()


def test_torch_plan_follows_the_config():
    sizes = ScanSizes(2, 100, 4, 1, 8, 16, 100)  # 1024 elements a step
    assert torch_scan.plan(KernelConfig(), sizes, False, False).chunk == 100  # 2^22 elements: all steps
    assert torch_scan.plan(KernelConfig(torch_chunk_elements=4096), sizes, False, False).chunk == 4
    assert torch_scan.plan(KernelConfig(chunk=7, torch_chunk_elements=4096), sizes, False, False).chunk == 7


def test_compiled_call_with_a_config_context():
    torch._dynamo.reset()
    p = random_problem(K=2, L=9, dim=4, N=2, shared_u=True, dtype=torch.float64)
    index = p.routes.index

    def fn(*args):
        with kernel_config(chunk=2):
            return selective_scan(*args, routes=index, backend="torch").square().sum()

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*p.args()), fn(*p.args()))
