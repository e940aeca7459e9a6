"""The operator is one torch.library op: torch.compile(fullgraph=True) traces it without graph breaks,
forward and backward, and gives the eager result."""
import pytest
import torch

from vssm.kernels import selective_scan

from .scan_inputs import random_problem


def test_compile_fullgraph_forward_and_backward():
    torch._dynamo.reset()
    p = random_problem(K=2, L=9, dim=4, N=2, shared_u=True)
    index = p.routes.index

    def fn(u, delta, A, B, C, D, delta_bias, z):
        return selective_scan(u, delta, A, B, C, D, delta_bias, z, routes=index, backend="torch").square().sum()

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    inputs = [t.clone().requires_grad_() for t in p.args()]
    eager_inputs = [t.clone().requires_grad_() for t in p.args()]
    loss = compiled(*inputs)
    eager = fn(*eager_inputs)
    torch.testing.assert_close(loss, eager)
    grads = torch.autograd.grad(loss, inputs)
    eager_grads = torch.autograd.grad(eager, eager_inputs)
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e)


def test_op_is_registered_with_a_fake_implementation():
    p = random_problem(K=2, L=9, dim=4, N=2)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(t) if t is not None else None for t in p.args()]
        out = selective_scan(*fake, routes=mode.from_tensor(p.routes.index), merge="none", backend="torch")
    assert out.shape == (2, 9, 2, 4)


def test_schedule_facts_trace_under_compile():
    """The Triton schedule reads whether routes repeat tokens inside the traced forward (CUDA): from tables a
    strategy builds in the trace, the compiled answer equals the eager one (a method call on those constant
    tables failed under torch 2.11's dynamo; reading the tables is impossible there)."""
    from vssm.kernels.routes import schedule_facts
    from vssm.scans import get_scan

    torch._dynamo.reset()
    scan = get_scan("zigzag")

    def fn(x):
        unique, cover = schedule_facts(scan.routes(3, 5, device="meta"), 15)  # tables as for a GPU
        return x * 2 if unique and cover else x

    x = torch.randn(3)
    assert schedule_facts(get_scan("zigzag").routes(3, 5), 15) == (True, True)  # eager, from the tables
    torch.testing.assert_close(torch.compile(fn, fullgraph=True, backend="eager")(x), x * 2)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_fake_outputs_match_the_real_ones_for_strided_inputs(backend):
    """Inputs as the mixers pass them (delta / B / C strided views of one projection, u channels-first): the
    real forward and backward ops return the shapes, dtypes and strides their fake implementations promise
    (inductor asserts the strides on CUDA; a fake backward promising empty_like(input) strides failed there)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from vssm.kernels import op

    p = random_problem(K=2, L=9, dim=4, N=2, shared_u=True)
    b, L, K, d = p.delta.shape
    N = p.B.shape[-1]
    proj = torch.randn(b, L, K, d + 2 * N)
    delta, B, C = proj[..., :d], proj[..., d:d + N], proj[..., d + N:]
    u = torch.randn(b, d, L, 1).permute(0, 2, 3, 1)  # channels-first storage
    z = torch.randn(b, d, L, 1).permute(0, 2, 3, 1)
    tensors = (u, delta, p.A, B, C, p.D, p.delta_bias, z, p.routes.index, None, None)
    plan = op.BACKENDS[backend].plan(op.current_config(None), op.scan_sizes(u, p.A, p.routes.index), False, False)
    fwd_flags = (True, "sum", torch.float32, False, backend, False, False, *plan.as_args())
    bwd_flags = (True, "sum", backend, False, False, *plan.as_args())

    def real_and_fake(fn, *args):
        real = fn(*args)
        with FakeTensorMode() as mode:
            fake = fn(*(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args))
        for r, f in zip(real, fake):
            assert (r.shape, r.stride(), r.dtype) == (f.shape, f.stride(), f.dtype)
        return real

    out, _, state, extra = real_and_fake(op._scan_op, *tensors, *fwd_flags)
    real_and_fake(op._scan_backward_op, torch.ones_like(out), None, *tensors, state, extra, *bwd_flags)
