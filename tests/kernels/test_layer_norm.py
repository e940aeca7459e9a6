"""Triton LayerNorm vs torch's LayerNorm in float64: on the CPU under TRITON_INTERPRET=1 (CI) and on CUDA
(marked gpu) at model sizes; the LayerNorm module's dtypes under autocast."""
import os

import pytest
import torch
import torch.nn.functional as F

from vssm.kernels import triton_layer_norm
from vssm.kernels.layer_norm import layer_norm
from vssm.layers.norms import LayerNorm

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton = pytest.mark.skipif(
    DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1", reason="Triton needs CUDA or TRITON_INTERPRET=1"
)
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2)}


def problem(shape, dtype, device=DEVICE):
    C = shape[-1]
    x = (torch.randn(shape, device=device) * 3 + 1.5).to(dtype)
    weight = torch.randn(C, device=device)
    bias = torch.randn(C, device=device)
    return x, weight, bias


def reference(x, weight, bias, dy):
    leaves = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
    y = F.layer_norm(leaves[0], leaves[0].shape[-1:], leaves[1], leaves[2], 1e-5)
    return y, torch.autograd.grad(y, leaves, dy.double())


@needs_triton
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (2, 3, 96), (33, 130)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_forward_and_backward_match_reference(shape, dtype, monkeypatch):
    monkeypatch.setattr(triton_layer_norm, "ROW_ELEMENTS", 256)  # several row blocks and backward programs
    x, weight, bias = problem(shape, dtype)
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    y = layer_norm(*leaves, out_dtype=dtype, backend="triton")
    assert y.dtype == dtype and y.shape == x.shape
    dy = torch.randn(shape, device=DEVICE).to(dtype)
    grads = torch.autograd.grad(y, leaves, dy)
    ref_y, ref_grads = reference(x, weight, bias, dy)
    torch.testing.assert_close(y.double(), ref_y, **TOL[dtype])
    for name, g, r in zip(("x", "weight", "bias"), grads, ref_grads):
        assert g.dtype == leaves[("x", "weight", "bias").index(name)].dtype
        scale = r.abs().max().clamp_min(1.0)
        torch.testing.assert_close(g.double() / scale, r / scale, **TOL[dtype], msg=lambda m: f"d{name}: {m}")


@needs_triton
def test_strided_input_and_float32_output_from_half_input():
    x, weight, bias = problem((3, 5, 4, 24), torch.bfloat16)
    view = x.permute(0, 2, 1, 3)  # rows are not evenly strided: copied to rows once
    y = layer_norm(view, weight, bias, out_dtype=torch.float32, backend="triton")
    ref, _ = reference(view, weight, bias, torch.zeros(view.shape))
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)


@needs_triton
def test_bad_input_names_the_argument():
    x, weight, bias = problem((4, 8), torch.float32)
    with pytest.raises(ValueError, match="x: the triton LayerNorm needs"):
        layer_norm(x.double(), weight.double(), bias.double(), backend="triton")
    with pytest.raises(ValueError, match="backend"):
        layer_norm(x, weight, bias, backend="cuda")


def test_module_dtypes_follow_autocast_and_feeds_matmul():
    """Under autocast torch's LayerNorm returns float32; ``feeds_matmul`` returns what the matmul would cast it
    to (same values); outside autocast the input's dtype."""
    torch.manual_seed(0)
    plain, fused = torch.nn.LayerNorm(16), LayerNorm(16, feeds_matmul=True)
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = plain(x)
        got = fused(x)
        assert LayerNorm(16)(x).dtype == torch.float32
    assert expected.dtype == torch.float32 and got.dtype == torch.bfloat16
    assert torch.equal(got, expected.to(torch.bfloat16))
    assert fused(x).dtype == torch.float32


gpu = pytest.mark.gpu


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("C", [96, 192, 384, 768, 1536])
def test_gpu_model_sizes_match_reference_and_rerun_bit_identical(C, dtype):
    x, weight, bias = problem((2, 57, 61, C), dtype)
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    y = layer_norm(*leaves, out_dtype=dtype)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, leaves, dy)
    again = torch.autograd.grad(layer_norm(*leaves, out_dtype=dtype), leaves, dy)
    assert all(torch.equal(a, b) for a, b in zip(grads, again))
    ref_y, ref_grads = reference(x, weight, bias, dy)
    torch.testing.assert_close(y.double(), ref_y, **TOL[dtype])
    for g, r in zip(grads, ref_grads):
        scale = r.abs().max().clamp_min(1.0)
        torch.testing.assert_close(g.double() / scale, r / scale, **TOL[dtype])
