"""PlainMamba: timm behaviour, scans, features, stem, converter. Official-code parity is checked by
tests/models/test_parity.py over tests/fixtures/parity/plainmamba_*."""
import pathlib

import pytest
import timm
import torch

import vssm  # noqa: F401
from vssm.models._loading import load_checkpoint_file
from vssm.scans import list_scans

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "parity"


def tiny(name="plainmamba_l1", **kwargs):
    return timm.create_model(name, **{**dict(embed_dim=16, depth=2, d_state=4, num_classes=5, img_size=64), **kwargs})


def test_registered_with_timm():
    assert {"plainmamba_l1", "plainmamba_l2", "plainmamba_l3"} <= set(timm.list_models("plainmamba*"))
    cfg = tiny().pretrained_cfg
    assert cfg["classifier"] == "head.fc" and cfg["first_conv"] == "patch_embed.stem.0"
    assert cfg["url"].startswith("https://huggingface.co/ChenhongyiYang/PlainMamba/") and cfg["paper_ids"] == "arXiv:2403.17695"


def test_l1_extra_block_only_on_l1():
    assert tiny().layers[0].dw is not None and tiny().layers[1].dw is None
    assert tiny("plainmamba_l2").layers[0].dw is None and len(tiny("plainmamba_l2").patch_embed.convs) == 6


@pytest.mark.parametrize("size", [(64, 64), (40, 56), (57, 83)])
def test_forward_backward(size):
    model = tiny()
    x = torch.randn(2, 3, *size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert x.grad.abs().sum() > 0 and model.layers[0].mamba.scan_module.direction_Bs.grad.abs().sum() > 0


def test_features_only_out_indices_any_size():
    model = timm.create_model("plainmamba_l1", embed_dim=16, depth=3, d_state=4, features_only=True, out_indices=(0, 2))
    feats = model(torch.randn(1, 3, 40, 56))  # stem pads bottom/right: ceil(40/16) x ceil(56/16)
    assert [tuple(f.shape) for f in feats] == [(1, 16, 3, 4), (1, 16, 3, 4)]
    assert model.feature_info.reduction() == [16, 16]


def test_forward_intermediates_head_and_classifier():
    model = tiny().eval()
    x = torch.randn(2, 3, 48, 64)
    final, taps = model.forward_intermediates(x, indices=[0, 1], norm=True)
    assert [tuple(t.shape) for t in taps] == [(2, 16, 3, 4)] * 2
    torch.testing.assert_close(final, model.forward_features(x))
    torch.testing.assert_close(taps[1].flatten(2).transpose(1, 2), final)
    torch.testing.assert_close(model.forward_head(final, pre_logits=True), final.mean(1))
    model.reset_classifier(0)
    assert model(x).shape == (2, 16)


def test_grad_checkpointing_same_gradients():
    model = tiny()
    x = torch.randn(2, 3, 32, 48)
    model(x).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for a, p in zip(plain, model.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-5, atol=1e-6)


def test_no_weight_decay_and_shared_parameters():
    model = tiny()
    nwd = model.no_weight_decay()
    assert {"pos_embed", "layers.0.mamba.A_log", "layers.0.mamba.D", "layers.0.mamba.scan_module.direction_Bs"} <= nwd
    assert "layers.0.mamba.in_proj.weight" not in nwd
    assert model.layers[0].mamba.A_log.shape == (32, 4)  # one set shared by the 4 routes


@pytest.mark.parametrize("scan", list_scans())
def test_every_scan_runs(scan):
    model = tiny(scan=scan)
    model(torch.randn(1, 3, 32, 48)).sum().backward()
    mixer = model.layers[0].mamba
    assert mixer.x_proj.weight.shape[0] == 1 + 2 * 4  # shared projection whatever K is
    heads = mixer.d_inner // mixer.scan.route_dim(mixer.d_inner)
    assert mixer.A_log.shape == (mixer.d_inner // heads, 4)  # multihead: one head's channels, shared by all heads


def test_bad_inputs():
    model = tiny()
    with pytest.raises(ValueError, match=r"x: got shape \(1, 1, 32, 32\), expected \(batch, 3, H, W\)"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"img_size: got \(1, 64\), expected an int or \(H, W\) with each side >= 2"):
        tiny(img_size=(1, 64))
    with pytest.raises(ValueError, match="scan: got 'spiral-magic'"):
        tiny(scan="spiral-magic")


@pytest.mark.parametrize("size, grid", [((1, 40), (1, 3)), ((40, 1), (3, 1)), ((1, 1), (1, 1)), ((17, 3), (2, 1))])
def test_tiny_inputs_run_like_the_official_model(size, grid):
    """The official stem pads any stride-2 output up to one 8x8 patch, so even 1x1 images run."""
    model = tiny().eval()
    final, taps = model.forward_intermediates(torch.randn(2, 3, *size), indices=[1])
    assert tuple(taps[0].shape[-2:]) == grid and torch.isfinite(final).all()


def test_img_size_16k_plus_1_follows_the_official_patch_resolution():
    """Official patch_resolution = ceil(floor(s / 2) / 8): 3 for s = 49, while a 49-pixel input gives 4 tokens."""
    model = tiny(img_size=(49, 81)).eval()
    assert model.grid_size == (3, 5) and model.pos_embed.shape == (1, 15, 16)
    assert model.forward_intermediates(torch.randn(1, 3, 49, 81), indices=[1])[1][0].shape[-2:] == (4, 6)


def test_pos_embed_resized_at_load_matches_the_official_run_time_resize():
    """The posresize fixture's checkpoint (made at 64x64) built at the input's size (96x80): the converter's
    load-time resize gives the official logits, whose forward resized 4x4 -> 6x5 at run time."""
    folder = FIXTURES / "plainmamba_l1_posresize_96x80"
    model = timm.create_model(
        "plainmamba_l1", pretrained=True, pretrained_cfg_overlay=dict(file=str(folder / "checkpoint.pth"), num_classes=7),
        img_size=(96, 80), embed_dim=8, depth=2, num_classes=7,
    ).eval()
    assert model.grid_size == (6, 5)
    expected = torch.load(folder / "logits.pt", weights_only=True)
    with torch.no_grad():
        logits = model(torch.load(folder / "input.pt", weights_only=True))
    assert (torch.linalg.vector_norm(logits - expected) / torch.linalg.vector_norm(expected)).item() <= 1e-4


def test_non_square_checkpoint_grid_at_another_img_size_explains():
    folder = FIXTURES / "plainmamba_l2_odd_49x81"  # pos_embed 3x5
    with pytest.raises(ValueError, match=r"pos_embed: got shape \(1, 15, 8\) for a model of grid \(4, 4\).*checkpoint's img_size"):
        timm.create_model("plainmamba_l2", pretrained=True, pretrained_cfg_overlay=dict(file=str(folder / "checkpoint.pth")),
                          img_size=64, embed_dim=8, depth=2, num_classes=7)


def test_converter_reports_keys_and_resizes_pos_embed(tmp_path):
    path = FIXTURES / "plainmamba_l1_64x64" / "checkpoint.pth"
    load = lambda p, **kw: timm.create_model(  # noqa: E731
        "plainmamba_l1", pretrained=True, pretrained_cfg_overlay=dict(file=str(p)), embed_dim=32, depth=2, num_classes=7, **kw
    )
    model = load(path, img_size=(32, 96))
    assert model.pos_embed.shape == (1, 2 * 6, 32)
    state = load_checkpoint_file(str(path))["state_dict"]
    state.pop("backbone.layers.1.mamba.direction_Bs")
    torch.save({"state_dict": state}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"missing keys \['layers.1.mamba.scan_module.direction_Bs'\]"):
        load(tmp_path / "broken.pth", img_size=64)


@pytest.mark.parametrize("name, official", [("plainmamba_l1", 7.3), ("plainmamba_l2", 25.7)])
def test_backbone_params_match_official(name, official):
    """The official counts are the mmcls backbone's (classifier head excluded)."""
    model = timm.create_model(name, num_classes=0)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - official) / official < 0.01


@pytest.mark.parametrize("name", ["plainmamba_l1", "plainmamba_l2", "plainmamba_l3"])
def test_every_registered_model_builds_reduced(name):
    model = timm.create_model(name, depth=1, d_state=4, num_classes=3)  # full width, one block
    assert model.embed_dim == {"plainmamba_l1": 192, "plainmamba_l2": 384, "plainmamba_l3": 448}[name]
    model(torch.randn(1, 3, 32, 32)).sum().backward()
