"""Bad input raises ValueError naming the argument, the shape it got and the shape expected."""
import pytest
import torch

from vssm.kernels import Routes, selective_scan

from .scan_inputs import random_problem


def call(p, **overrides):
    kwargs = dict(zip(("u", "delta", "A", "B", "C", "D", "delta_bias", "z"), p.args()))
    kwargs.update(overrides)
    routes = kwargs.pop("routes", p.routes)
    merge = kwargs.pop("merge", "sum")
    return selective_scan(**kwargs, routes=routes, merge=merge, backend="torch")


@pytest.mark.parametrize(
    "override, pattern",
    [
        (lambda p: dict(u=p.u[0]), r"u: got shape \(13, 2, 5\) \(rank 3\), expected rank 4"),
        (lambda p: dict(delta=p.delta[:, :-1]), r"delta: got shape \(2, 12, 2, 5\), expected \(batch, L, K, dim\) = \(2, 13, 2, 5\)"),
        (lambda p: dict(A=p.A[:1]), r"A: got shape \(1, 5, 4\), expected \(K, dim, N\) = \(2, 5, 4\)"),
        (lambda p: dict(A=p.A.double()), r"A: got dtype torch.float64 with u torch.float32"),
        (lambda p: dict(A=p.A.half()), r"A: got dtype torch.float16, expected torch.float32"),
        (lambda p: dict(B=p.B[..., :3]), r"B: got shape \(2, 13, 2, 3\), expected \(batch, L, K, N\) = \(2, 13, 2, 4\)"),
        (lambda p: dict(C=p.C[:, :, :1]), r"C: got shape \(2, 13, 1, 4\)"),
        (lambda p: dict(D=p.D[:, :2]), r"D: got shape \(2, 2\), expected \(K, dim\) = \(2, 5\)"),
        (lambda p: dict(delta_bias=p.delta_bias[0]), r"delta_bias: got shape \(5,\), expected \(K, dim\)"),
        (lambda p: dict(z=p.z[..., :4]), r"z: got shape \(2, 13, 2, 4\), expected \(batch, L, Ku, dim\)"),
        (lambda p: dict(routes=p.routes.index[:1]), r"delta: got shape \(2, 13, 2, 5\), expected \(batch, L, K, dim\) = \(2, 13, 1, 5\)"),
        (lambda p: dict(routes=p.routes.index.clone().fill_(13)), r"routes: token indices must lie in \[-1, L\) = \[-1, 13\), got min 13 and max 13"),
        (lambda p: dict(routes=p.routes.index.clone().fill_(-2)), r"routes: token indices must lie in \[-1, L\)"),
        (lambda p: dict(routes=p.routes.index.float()), r"routes: got dtype torch.float32, expected torch.int32 or torch.int64 \(K, T\)"),
        (lambda p: dict(routes=p.routes.index[0]), r"routes: got shape \(16,\) \(rank 1\), expected rank 2 \(K, T\)"),
        (lambda p: dict(routes=Routes(p.routes.index, param_index=p.routes.index[:, :3])), r"routes.param_index: got shape \(2, 3\), expected \(K, T\) = \(2, 16\)"),
        (lambda p: dict(routes=Routes(p.routes.index, u_group=torch.tensor([0, 5]))), r"routes.u_group: values must lie in \[0, Ku = 2\)"),
        (lambda p: dict(merge="max"), r"merge: got 'max', expected one of"),
    ],
)
def test_bad_input_names_argument_and_shapes(override, pattern):
    p = random_problem()
    with pytest.raises(ValueError, match=pattern):
        call(p, **override(p))


def test_u_slots_must_be_one_or_K():
    p = random_problem(K=4)
    with pytest.raises(ValueError, match=r"u: got shape \(2, 13, 4, 5\), expected Ku \(axis 2\) to be 1 or K = 2"):
        call(p, u=p.u, z=None, delta=p.delta[:, :, :2], A=p.A[:2], B=p.B[:, :, :2], C=p.C[:, :, :2],
             D=p.D[:2], delta_bias=p.delta_bias[:2], routes=p.routes.index[:2])


def test_unknown_backend():
    p = random_problem()
    with pytest.raises(ValueError, match="backend: got 'cuda-magic'"):
        selective_scan(*p.args(), routes=p.routes, backend="cuda-magic")
