"""Gradients: torch.autograd.gradcheck in float64 for the torch backend, and float32 gradients
against the reference's autograd."""
import pytest
import torch

from vssm.kernels import BACKENDS, Routes, selective_scan, selective_scan_reference

from .scan_inputs import as_float64, assert_close, random_problem


@pytest.mark.parametrize(
    "case",
    [
        dict(K=1, N=1, shared_u=True, merge="sum"),
        dict(K=2, N=3, shared_u=False, merge="mean"),
        dict(K=4, N=2, shared_u=True, merge="none"),
        dict(K=2, N=2, shared_u=False, merge="sum", with_z=False, with_D=False, with_bias=False),
        dict(K=2, N=2, shared_u=False, merge="none", param_index=True),
    ],
    ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()),
)
def test_gradcheck_torch_backend(case):
    case = dict(case)
    merge = case.pop("merge")
    p = random_problem(batch=1, L=7, dim=3, dtype=torch.float64, **case)
    inputs = [t.requires_grad_() for t in p.float_args()]
    present = [t is not None for t in p.args()]

    def fn(*tensors):
        it = iter(tensors)
        args = [next(it) if keep else None for keep in present]
        return selective_scan(*args, routes=p.routes, merge=merge, backend="torch")

    assert torch.autograd.gradcheck(fn, inputs)


def test_gradcheck_hidden_states():
    p = random_problem(batch=1, K=2, L=6, dim=2, N=2, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in p.float_args()]
    fn = lambda *a: selective_scan(*a, routes=p.routes, merge="none", backend="torch", return_hidden=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("N", [1, 16])
def test_float32_gradients_match_reference(N):
    p = random_problem(K=4, L=17, dim=6, N=N, shared_u=True)
    inputs = [t.requires_grad_() for t in p.float_args()]
    out = selective_scan(*p.args(), routes=p.routes, backend="torch")
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    ref_p = as_float64(p)
    ref_inputs = [t.requires_grad_() for t in ref_p.float_args()]
    ref = selective_scan_reference(*ref_p.args(), routes=p.routes)
    ref_grads = torch.autograd.grad((ref * weights.double()).sum(), ref_inputs)
    for g, r in zip(grads, ref_grads):
        assert g.dtype == torch.float32
        assert_close(g, r, torch.float32)


def test_backward_is_deterministic():
    p = random_problem(K=4, L=20, dim=4, N=3)
    inputs = [t.requires_grad_() for t in p.float_args()]
    runs = []
    for _ in range(2):
        out = selective_scan(*p.args(), routes=p.routes, backend="torch")
        runs.append(torch.autograd.grad(out.square().sum(), inputs))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_u_group_gradients_reach_the_right_slots():
    p = random_problem(K=3, L=5, dim=2, N=2, shared_u=False, dtype=torch.float64, with_z=False)
    routes = Routes(index=p.routes.index, u_group=torch.tensor([2, 2, 0]))
    u = p.u.requires_grad_()
    out = selective_scan(u, *p.args()[1:], routes=routes, backend="torch")
    (grad,) = torch.autograd.grad(out.sum(), u)
    assert torch.count_nonzero(grad[:, :, 1]) == 0  # slot 1 is read by no route
    assert torch.count_nonzero(grad[:, :, 0]) > 0 and torch.count_nonzero(grad[:, :, 2]) > 0


ZERO_SIZES = [dict(batch=0), dict(dim=0), dict(N=0), dict(L=0)]


@pytest.mark.parametrize("backend", ["torch", "reference", "triton"])
@pytest.mark.parametrize("zero", ZERO_SIZES, ids=lambda z: next(iter(z)))
def test_zero_sizes_give_empty_outputs_and_gradients(zero, backend):
    """Batch 0, dim 0, N 0 or L 0 (with an all-padding route table): outputs of the right shape (empty, or the
    D u skip term for N 0) and gradients of every input's shape, on every backend."""
    if backend == "triton" and "triton" not in BACKENDS:
        pytest.skip("triton not installed")
    sizes = dict(dict(batch=2, L=5, dim=3, N=2), **zero)
    p = random_problem(K=2, pad=2, repeat=False, **sizes)
    if sizes["L"] == 0:
        p.routes = Routes(index=torch.full((2, 2), -1, dtype=torch.int32))
    inputs = [t.requires_grad_() for t in p.float_args()]
    out = selective_scan(*p.args(), routes=p.routes, backend=backend)
    ref = selective_scan_reference(*as_float64(p).args(), routes=p.routes)
    assert out.shape == (sizes["batch"], sizes["L"], sizes["dim"]) and out.dtype == p.u.dtype
    assert_close(out, ref, torch.float32)
    grads = torch.autograd.grad((out * torch.randn_like(out)).sum(), inputs, allow_unused=True)
    for g, t in zip(grads, inputs):
        assert g is None or g.shape == t.shape
