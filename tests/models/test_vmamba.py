"""VMamba families through timm at reduced width/depth: shapes, timm API, any scan, bad input."""
import pytest
import timm
import torch

import vssm  # noqa: F401
from vssm.scans import list_scans

TINY = dict(depths=(1, 1, 2, 1), dims=8, num_classes=5)
VARIANTS = ["vmamba_tiny", "vmamba_small", "vmamba_base", "vmamba_tiny_v0", "vmamba_small_v0", "vmamba_base_v0"]


def tiny(name: str, **kwargs):
    overrides = dict(TINY, **kwargs)
    if name.endswith("_v0"):
        overrides.setdefault("d_state", 4)
    return timm.create_model(name, **overrides)


def test_registered_with_timm():
    assert set(VARIANTS) <= set(timm.list_models("vmamba*"))
    cfg = timm.models.get_pretrained_cfg("vmamba_tiny")
    assert cfg.tag == "in1k" and cfg.url.startswith("https://github.com/MzeroMiko/VMamba/releases/download/")
    assert cfg.first_conv == "patch_embed.conv1" and cfg.classifier == "head" and cfg.license == "mit"


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("size", [(64, 64), (50, 38)])
def test_forward_backward(name, size):
    model = tiny(name)
    x = torch.randn(2, 3, *size)
    out = model(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["vmamba_tiny", "vmamba_tiny_v0"])
def test_features_only_strides(name):
    model = timm.create_model(name, features_only=True, **{k: v for k, v in TINY.items() if k != "num_classes"},
                              **({"d_state": 4} if name.endswith("v0") else {}))
    feats = model(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 8, 16, 24), (1, 16, 8, 12), (1, 32, 4, 6), (1, 64, 2, 3)]
    assert model.feature_info.reduction() == [4, 8, 16, 32]


def test_features_only_out_indices():
    model = timm.create_model("vmamba_tiny", features_only=True, out_indices=(1, 3), depths=(1, 1, 1, 1), dims=8)
    feats = model(torch.randn(1, 3, 70, 45))  # not divisible by 32: the stride-2 convs round up
    assert [tuple(f.shape) for f in feats] == [(1, 16, 9, 6), (1, 64, 3, 2)]
    assert model.feature_info.reduction() == [8, 32] and model.feature_info.channels() == [16, 64]


def test_img_size_sets_the_resolved_input_size():
    from timm.data import resolve_data_config

    h, w = torch.randint(2, 8, (2,)).mul(32).tolist()
    model = tiny("vmamba_tiny", img_size=(h, w))
    assert resolve_data_config(model=model)["input_size"] == (3, h, w)
    assert model.pretrained_cfg["pool_size"] == (h // 32, w // 32)
    assert model(torch.randn(1, 3, h, w)).shape == (1, 5)
    with pytest.raises(ValueError, match="img_size: got"):
        tiny("vmamba_tiny", img_size=(64, 64, 64))


def test_forward_intermediates_and_head():
    model = tiny("vmamba_tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    final, inter = model.forward_intermediates(x)
    assert len(inter) == 4 and inter[1].shape == (1, 16, 8, 8)
    torch.testing.assert_close(final, model.forward_features(x))
    pooled = model.forward_head(final, pre_logits=True)
    assert pooled.shape == (1, 64)
    torch.testing.assert_close(model.forward_head(final), model(x))
    model.reset_classifier(3)
    assert model(x).shape == (1, 3)


def test_grad_checkpointing_same_gradients():
    model = tiny("vmamba_tiny", drop_path_rate=0.0)  # stochastic depth would differ between the two runs
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        model(x).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_no_weight_decay_and_group_matcher():
    model = tiny("vmamba_tiny")
    nwd = model.no_weight_decay()
    assert "layers.0.blocks.0.op.A_logs" in nwd and "layers.0.blocks.0.op.Ds" in nwd
    groups = timm.models.group_parameters(model, model.group_matcher())
    assert len(groups) >= 4


@pytest.mark.parametrize("scan", list_scans())
def test_every_scan_runs(scan):
    model = tiny("vmamba_tiny", scan=scan)
    model(torch.randn(1, 3, 40, 56)).sum().backward()
    K = model.layers[0].blocks[0].op.scan.num_routes
    assert model.layers[0].blocks[0].op.x_proj_weight.shape[0] == K


def test_bad_inputs():
    model = tiny("vmamba_tiny")
    with pytest.raises(ValueError, match=r"x: got shape \(1, 1, 32, 32\), expected \(batch, 3, H, W\)"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="expected at least 4x4"):
        model(torch.randn(1, 3, 2, 32))
    with pytest.raises(ValueError, match="scan: got 'spiral-magic'"):
        tiny("vmamba_tiny", scan="spiral-magic")


@pytest.mark.parametrize(
    "name, params, gflops",
    [("vmamba_tiny", 30, 4.9), ("vmamba_tiny_v0", 23, 5.6)],
)
def test_params_and_flops_match_official(name, params, gflops):
    from vssm.utils.flops import count_flops

    model = timm.create_model(name)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - params) / params < 0.01
    assert abs(count_flops(model) / 1e9 - gflops) / gflops < 0.03


@pytest.mark.parametrize("dim, d_state", [(96, 1), (40, 16)])
def test_aligned_dt_projection_equals_the_plain_one(dim, d_state):
    """The CUDA path pads dt_rank to a multiple of 8 (aligned GEMM rows); values and gradients must not move."""
    from vssm.layers.ss2d import SS2D

    torch.manual_seed(0)
    mixer = SS2D(dim, d_state=d_state)
    assert mixer.dt_rank % 8
    u = torch.randn(2, 10, 1, dim)
    plain = mixer.project(u)
    aligned = mixer._project_aligned(u[:, :, 0])
    weights = [torch.randn_like(t) for t in plain]
    grads = [torch.autograd.grad(sum((t * w).sum() for t, w in zip(out, weights)),
                                 [mixer.x_proj_weight, mixer.dt_projs_weight]) for out in (plain, aligned)]
    for a, b in zip(aligned, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
