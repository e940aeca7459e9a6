"""timm API details of every family: device=/dtype= factory arguments (meta included), reset_classifier on the
model's device/dtype/mode, features_only levels, batch 0, fx tracing with timm's notrace registrations, and
float64 position-embedding resampling (against an independent bicubic written here)."""
import math

import numpy as np
import pytest
import timm
import torch
from timm.models import get_notrace_functions, get_notrace_modules

import vssm  # noqa: F401
from vssm.layers.pos_embed import resample_grid_pos_embed, resample_middle_cls_pos_embed

TINY = {
    "vmamba_tiny": dict(depths=(1, 1, 2, 1), dims=8),
    "vmamba_tiny_v0": dict(depths=(1, 1, 2, 1), dims=8, d_state=4),
    "vim_tiny": dict(embed_dim=16, depth=4, d_state=4, img_size=64),
    "plainmamba_l1": dict(embed_dim=16, depth=4, d_state=4, img_size=64),
}


def tiny(name, **kwargs):
    return timm.create_model(name, **{**TINY[name], "num_classes": 5, **kwargs})


@pytest.mark.parametrize("name", list(TINY))
def test_factory_device_and_dtype_reach_every_tensor(name):
    model = tiny(name, device="meta", dtype=torch.float64)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert {t.device.type for t in tensors.values()} == {"meta"}
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float64}
    model = tiny(name, dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}


@pytest.mark.parametrize("name", list(TINY))
def test_reset_classifier_builds_the_head_on_the_models_device_dtype_and_mode(name):
    model = tiny(name).to(torch.float64).eval()
    model.reset_classifier(3)
    head = model.get_classifier()
    assert head.weight.dtype == torch.float64 and head.weight.device.type == "cpu" and not head.training
    model = tiny(name, device="meta")
    model.reset_classifier(2)
    assert model.get_classifier().weight.device.type == "meta" and model.get_classifier().training


@pytest.mark.parametrize("name", ["vim_tiny", "plainmamba_l1"])
def test_plain_models_give_the_last_three_blocks_by_default(name):
    model = tiny(name, features_only=True).eval()
    assert model.feature_info.module_name() == ["layers.1", "layers.2", "layers.3"]
    assert model.feature_info.channels() == [16] * 3 and model.feature_info.reduction() == [16] * 3
    feats = model(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 16, 4, 4)] * 3


@pytest.mark.parametrize("name", TINY)
def test_batch_zero_gives_empty_outputs(name):
    model = tiny(name).eval()
    x = torch.randn(0, 3, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (0, 5)
        taps = model.forward_intermediates(x, intermediates_only=True)
    assert len(taps) == len(model.feature_info) and all(t.shape[0] == 0 and t.dim() == 4 for t in taps)


def _fx(model, train):
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(), param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=kwargs)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
                                    tracer_kwargs=kwargs)


@pytest.mark.parametrize("name", list(TINY))
def test_fx_trace_matches_eager_and_backpropagates(name):
    pytest.importorskip("torchvision")
    model = tiny(name).eval()
    x = torch.randn(2, 3, 48, 64)  # a size other than img_size: pos_embed resampling runs in the graph
    with torch.no_grad():
        assert torch.equal(next(iter(_fx(model, False)(x).values())), model(x))
    model.train()
    out = next(iter(_fx(model, True)(x).values()))
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def _bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of bicubic resampling, align_corners=False, Keys a = -0.75, edge samples repeated."""
    a, out = -0.75, np.zeros((n_out, n_in))
    for i in range(n_out):
        src = (i + 0.5) * n_in / n_out - 0.5
        base = math.floor(src)
        for k in range(-1, 3):
            d = abs(src - (base + k))
            w = ((a + 2) * d - (a + 3)) * d * d + 1 if d <= 1 else ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
            out[i, min(max(base + k, 0), n_in - 1)] += w
    return out


def test_pos_embed_resampling_keeps_float64():
    torch.manual_seed(0)
    old, new, C = (3, 5), (7, 4), 6
    pos = torch.randn(1, old[0] * old[1], C, dtype=torch.float64)
    grid = pos[0].numpy().reshape(*old, C)
    ref = np.einsum("ih,jw,hwc->ijc", _bicubic_matrix(old[0], new[0]), _bicubic_matrix(old[1], new[1]), grid)
    out = resample_grid_pos_embed(pos, old, new)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out[0].numpy().reshape(*new, C), ref, rtol=0, atol=1e-12)
    with_cls = torch.cat([pos[:, :7], torch.ones(1, 1, C, dtype=torch.float64), pos[:, 7:]], dim=1)
    moved = resample_middle_cls_pos_embed(with_cls, old, new)
    assert moved.dtype == torch.float64 and torch.equal(moved[:, 14], torch.ones(1, C, dtype=torch.float64))


def test_plainmamba_embedding_in_float64_at_another_grid():
    model = tiny("plainmamba_l1").double().eval()
    x = torch.randn(1, 3, 48, 80, dtype=torch.float64)
    tokens, H, W = model._embed(x)
    patches = model.patch_embed(x).flatten(2).transpose(1, 2)
    ref = np.einsum("ih,jw,hwc->ijc", _bicubic_matrix(4, H), _bicubic_matrix(4, W),
                    model.pos_embed.detach()[0].numpy().reshape(4, 4, -1))
    assert tokens.dtype == torch.float64
    np.testing.assert_allclose((tokens - patches).detach()[0].numpy(), ref.reshape(H * W, -1), rtol=0, atol=1e-12)
