"""The torch backend against the float64 sequential reference, on fresh random inputs."""
import itertools

import pytest
import torch

from vssm.kernels import KernelConfig, Routes, selective_scan, selective_scan_reference
from vssm.kernels.checks import ScanSizes

from .scan_inputs import as_float64, assert_close, random_problem

CASES = [
    dict(K=K, N=N, shared_u=shared_u, merge=merge)
    for K, N, shared_u, merge in itertools.product((1, 2, 4), (1, 16), (True, False), ("sum", "mean", "none"))
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("extras", [(True, True, True), (False, False, False)], ids=["zDbias", "plain"])
def test_forward_matches_reference(case, dtype, extras):
    with_z, with_D, with_bias = extras
    case = dict(case)
    merge = case.pop("merge")
    p = random_problem(L=15, dtype=dtype, with_z=with_z, with_D=with_D, with_bias=with_bias, **case)
    out = selective_scan(*p.args(), routes=p.routes, merge=merge, backend="torch")
    ref = selective_scan_reference(*as_float64(p).args(), routes=p.routes, merge=merge)
    assert out.dtype == dtype
    assert_close(out, ref, dtype)


def test_param_index_and_u_group():
    """Separate delta/B/C table (PlainMamba) and an explicit u slot per route (multi-head scans)."""
    p = random_problem(K=4, L=11, param_index=True, shared_u=False)
    routes = Routes(index=p.routes.index, param_index=p.routes.param_index, u_group=torch.tensor([1, 0, 3, 3]))
    out = selective_scan(*p.args(), routes=routes, merge="none", backend="torch")
    ref = selective_scan_reference(*as_float64(p).args(), routes=routes, merge="none")
    assert_close(out, ref, torch.float32)


def test_hidden_states_match_reference():
    p = random_problem(K=2, L=9, N=3)
    out, hidden = selective_scan(*p.args(), routes=p.routes, backend="torch", return_hidden=True)
    ref_out, ref_hidden = selective_scan_reference(*as_float64(p).args(), routes=p.routes, return_hidden=True)
    assert hidden.shape == (2, 9, 2, 5, 3) and hidden.dtype == torch.float32
    assert_close(out, ref_out, torch.float32)
    assert_close(hidden, ref_hidden, torch.float32)


def test_unvisited_tokens_are_zero_and_padding_is_identity():
    p = random_problem(K=1, L=6, with_z=False)
    index = torch.tensor([[2, -1, 4, -1, -1, 0]], dtype=torch.int32)
    out = selective_scan(*p.args(), routes=index, merge="sum", backend="torch")
    assert torch.count_nonzero(out[:, [1, 3, 5]]) == 0
    compact = selective_scan(*p.args(), routes=torch.tensor([[2, 4, 0]], dtype=torch.int32), backend="torch")
    torch.testing.assert_close(out, compact)


def test_non_contiguous_inputs_give_the_same_answer():
    p = random_problem(K=2, L=10, dim=6, N=4)
    ref = selective_scan(*p.args(), routes=p.routes, backend="torch")
    # The same values behind permuted/strided views.
    views = [t if t is None else t.transpose(0, -1).contiguous().transpose(0, -1) for t in p.args()]
    views[0] = torch.randn(2, 6, 10, 2).permute(0, 2, 3, 1).copy_(p.u)
    assert not views[0].is_contiguous()
    out = selective_scan(*views, routes=p.routes, backend="torch")
    torch.testing.assert_close(out, ref)


def test_out_dtype():
    p = random_problem(dtype=torch.bfloat16)
    out = selective_scan(*p.args(), routes=p.routes, backend="torch", out_dtype=torch.float32)
    ref = selective_scan_reference(*as_float64(p).args(), routes=p.routes)
    assert out.dtype == torch.float32
    assert_close(out, ref, torch.float32)


@pytest.mark.parametrize("config", [KernelConfig(chunk=7), KernelConfig(torch_chunk_elements=2 * 2 * 3 * 4 * 7)],
                         ids=["chunk", "elements"])
def test_long_sequence_spans_several_chunks(config):
    """Chunk boundaries (state carried across chunks) forward and backward: chunks of 7 steps, asked for
    directly or through the work-tensor budget (batch 2 x K 2 x dim 3 x N 4 elements a step)."""
    from vssm.kernels import torch_scan

    p = random_problem(K=2, L=23, dim=3, N=4, dtype=torch.float64)
    sizes = ScanSizes(2, 23, 2, 2, 3, 4, p.routes.index.shape[1])
    assert torch_scan.plan(config, sizes, False, False).chunk == 7
    args = [t.requires_grad_() for t in p.float_args()]
    out = selective_scan(*p.args(), routes=p.routes, backend="torch", config=config)
    ref = selective_scan_reference(*p.args(), routes=p.routes)
    assert_close(out, ref, torch.float64)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), args)
    ref_grads = torch.autograd.grad((ref * weights).sum(), args)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, torch.float64)
