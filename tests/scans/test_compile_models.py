"""torch.compile(fullgraph=True) on freshly created models and mixers: no eager warm-up, no graph breaks, outputs
equal to eager, no recompile past the first change of batch size (dynamic=None marks the batch dim dynamic then)."""
import pytest
import timm
import torch
from torch._dynamo.utils import counters

import vssm  # noqa: F401
from vssm.layers.bimamba import BiMambaMixer
from vssm.scans import list_scans

FAMILIES = {
    "vmamba_tiny": dict(depths=(1, 1, 1, 1), dims=8),
    "vim_tiny": dict(embed_dim=16, depth=2, d_state=4),
    "plainmamba_l1": dict(embed_dim=16, depth=2, d_state=4),
}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_fresh_model_compiles_fullgraph_without_recompiles(name):
    model = timm.create_model(name, num_classes=5, img_size=32, **FAMILIES[name]).eval()
    compiled = torch.compile(model, fullgraph=True, backend="eager", dynamic=None)
    graphs = []
    with torch.no_grad():
        for batch in (2, 3, 4):
            x = torch.randn(batch, 3, 32, 32)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
            graphs.append(counters["stats"]["unique_graphs"])
    assert graphs == [1, 2, 2], f"graphs compiled after each batch size: {graphs}"


@pytest.mark.parametrize("scan", list_scans())
def test_fresh_mixer_compiles_fullgraph_with_every_scan(scan):
    """The Vim mixer reads the most of a strategy: per-route visits, the middle class token, per-route inputs."""
    mixer = BiMambaMixer(dim=8, d_state=2, scan=scan)
    compiled = torch.compile(mixer, fullgraph=True, backend="eager")
    x = torch.randn(2, 3 * 4 + 1, 8)
    torch.testing.assert_close(compiled(x, (3, 4)), mixer(x, (3, 4)), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_fresh_model_compiles_with_inductor_on_cuda(name):
    """What users run on a GPU: inductor (Triton scan kernels inside the graph), forward and backward, fullgraph,
    outputs and gradients equal to eager, no recompile past the first change of batch size."""
    model = timm.create_model(name, num_classes=5, img_size=32, **FAMILIES[name]).cuda()
    compiled = torch.compile(model, fullgraph=True, dynamic=None)
    graphs = []
    for batch in (2, 3, 4):
        x = torch.randn(batch, 3, 32, 32, device="cuda", requires_grad=True)
        out = compiled(x)
        (grad,) = torch.autograd.grad(out.square().sum(), x)  # through every scan's backward
        ref = model(x)
        (ref_grad,) = torch.autograd.grad(ref.square().sum(), x)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[1] == graphs[2], f"graphs compiled after each batch size: {graphs}"
