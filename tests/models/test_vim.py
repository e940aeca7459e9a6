"""Vim: timm behaviour, scans, features, converter errors, middle-class-token position embedding.
Official-code parity is checked by tests/models/test_parity.py over tests/fixtures/parity/vim_*."""
import pytest
import timm
import torch

import vssm  # noqa: F401
from vssm.layers.pos_embed import resample_middle_cls_pos_embed
from vssm.models._loading import load_checkpoint_file
from vssm.scans import list_scans

FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "parity"


def tiny(name="vim_tiny", **kwargs):
    return timm.create_model(name, embed_dim=16, depth=2, d_state=4, num_classes=5, img_size=64, **kwargs)


def test_registered_with_timm():
    assert {"vim_tiny", "vim_small", "vim_base"} <= set(timm.list_models("vim*"))
    cfg = timm.create_model("vim_tiny", embed_dim=16, depth=1).pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["first_conv"] == "patch_embed.proj" and cfg["classifier"] == "head"
    assert cfg["paper_ids"] == "arXiv:2401.09417" and cfg["url"].startswith("https://huggingface.co/hustvl/")


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_forward_backward(size):
    model = tiny()
    x = torch.randn(2, 3, *size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert x.grad.abs().sum() > 0 and model.pos_embed.grad.abs().sum() > 0


def test_features_only_out_indices():
    model = timm.create_model("vim_tiny", embed_dim=16, depth=3, d_state=4, features_only=True, out_indices=(0, 2))
    feats = model(torch.randn(1, 3, 48, 80))
    assert [tuple(f.shape) for f in feats] == [(1, 16, 3, 5), (1, 16, 3, 5)]
    assert model.feature_info.reduction() == [16, 16]


def test_forward_intermediates_head_and_classifier():
    model = tiny().eval()
    x = torch.randn(2, 3, 64, 48)
    final, taps = model.forward_intermediates(x, indices=[0, 1])
    assert [tuple(t.shape) for t in taps] == [(2, 16, 4, 3)] * 2
    assert torch.allclose(final, model.forward_features(x), atol=1e-6)
    # the class token sits at M//2 = 6 of 13 tokens; pre_logits reads it
    assert torch.equal(model.forward_head(final, pre_logits=True), final[:, 6])
    assert torch.allclose(model(x), model.head(final[:, 6]), atol=1e-6)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(3, "avg")


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


def test_no_weight_decay_and_group_matcher():
    model = tiny()
    nwd = model.no_weight_decay()
    assert {"pos_embed", "cls_token", "layers.0.mixer.A_log", "layers.0.mixer.D"} <= nwd
    assert "layers.0.mixer.in_proj.weight" not in nwd
    assert len(timm.models.group_parameters(model, model.group_matcher())) >= 3


@pytest.mark.parametrize("scan", list_scans())
def test_every_scan_runs(scan):
    model = tiny(scan=scan)
    model(torch.randn(1, 3, 32, 48)).sum().backward()
    mixer = model.layers[0].mixer
    K = mixer.scan.num_routes
    assert mixer.x_proj_weight.shape[0] == K and mixer.A_log.shape[0] == K
    conv_sets = 1 if mixer.scan.builds_tokens else K  # multiscale: one conv along the sequence
    assert mixer.conv_weight.shape[0] == conv_sets * mixer.route_dim
    assert all(p.grad is not None for p in model.parameters())


def test_backward_route_conv_is_anticausal():
    """Changing the last token changes route 0's conv output only there, route 1's (reversed) up to 3 earlier."""
    mixer = tiny().layers[0].mixer
    x = torch.randn(1, 9, mixer.d_inner)
    y = x.clone()
    y[:, -1] += 1
    diff = (mixer._route_conv(x, (2, 4)) - mixer._route_conv(y, (2, 4))).abs().sum(-1)[0]  # (L, K)
    assert diff[:-1, 0].eq(0).all() and diff[-1, 0] > 0
    assert diff[:5, 1].eq(0).all() and (diff[5:, 1] > 0).all()


def route_visits(mixer, grid):
    """Per route, the sequence positions the mixer's strategy visits for a patch grid, in order."""
    (H, W), middle = mixer._scan_grid(grid)
    return mixer.scan.route_visits(H, W, torch.device("cpu"), middle)


def test_bidirectional_scans_the_token_sequence_itself():
    """Vim's default keeps the official order: the M + 1 tokens forward and exactly reversed (odd M included)."""
    mixer = tiny().layers[0].mixer
    for grid in ((3, 5), (2, 4)):
        L = grid[0] * grid[1] + 1
        forward, backward = route_visits(mixer, grid)
        assert torch.equal(forward, torch.arange(L)) and torch.equal(backward, torch.arange(L).flip(0))


@pytest.mark.parametrize("scan", ["hilbert", "cross", "zigzag", "window"])
def test_2d_scans_walk_the_patch_grid_with_the_class_token_mid_route(scan):
    H, W = 3, 5
    M, c = H * W, (H * W) // 2
    mixer = tiny(scan=scan).layers[0].mixer
    plain = mixer.scan.routes(H, W)
    for k, visited in enumerate(route_visits(mixer, (H, W))):
        steps = visited.tolist()
        assert steps.count(c) == 1
        patches = [s if s < c else s - 1 for s in steps if s != c]  # sequence position -> raster patch
        assert patches == [p for p in plain.index[k].tolist() if p >= 0]  # the strategy's own 2-D route
        assert set(patches) <= set(range(M))
    full = mixer.scan.routes(H, W, middle_token=True).index
    assert (full[:, (full.shape[1] - 1) // 2] == c).all()  # step T // 2 of the grid route
    if scan == "hilbert":  # consecutive patches along a route are grid neighbours
        for k, visited in enumerate(route_visits(mixer, (H, W))):
            patches = [s if s < c else s - 1 for s in visited.tolist() if s != c]
            for a, b in zip(patches, patches[1:]):
                assert abs(a // W - b // W) + abs(a % W - b % W) == 1


def test_cross_scan_sees_the_image_in_2d():
    """Transposing the patch grid turns cross's raster routes into its column routes: with the route parameter
    sets swapped to match, the mixer output is the transposed output. A 1-D scan of the sequence would not."""
    torch.manual_seed(0)
    H, W = 2, 3
    mixer = tiny(scan="cross").layers[0].mixer.double()
    swapped = tiny(scan="cross").layers[0].mixer.double()
    order = [1, 0, 3, 2]  # raster <-> column, reversed raster <-> reversed column
    with torch.no_grad():
        for name, p in mixer.named_parameters():
            q = dict(swapped.named_parameters())[name]
            if name.startswith(("in_proj", "out_proj")):
                q.copy_(p)
            else:
                q.copy_(p.view(4, -1)[order].view_as(p))
    M, c = H * W, (H * W) // 2
    seq = lambda grid_index: grid_index if grid_index < c else grid_index + 1  # noqa: E731
    # token of the transposed grid at raster (j, i) is the original patch (i, j); the class token stays in the middle
    perm = [c] * (M + 1)
    for i in range(H):
        for j in range(W):
            perm[seq(j * H + i)] = seq(i * W + j)
    x = torch.randn(1, M + 1, 16, dtype=torch.float64)
    out = mixer(x, (H, W))
    out_t = swapped(x[:, perm], (W, H))
    torch.testing.assert_close(out_t, out[:, perm])
    assert not torch.allclose(swapped(x, (H, W)), out)  # the parameter swap matters


def test_pos_embed_middle_class_slot_moves_not_interpolated():
    old = torch.randn(1, 4 * 4 + 1, 8)
    new = resample_middle_cls_pos_embed(old, (4, 4), (3, 5))
    assert new.shape == (1, 16, 8)
    assert torch.equal(new[:, 15 // 2], old[:, 8])
    constant = torch.ones(1, 17, 8)
    assert torch.allclose(resample_middle_cls_pos_embed(constant, (4, 4), (6, 2)), torch.ones(1, 13, 8), atol=1e-6)
    assert resample_middle_cls_pos_embed(old, (4, 4), (4, 4)) is old


def test_bad_inputs():
    model = tiny()
    with pytest.raises(ValueError, match=r"x: got shape \(1, 1, 32, 32\), expected \(batch, 3, H, W\)"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="expected at least 16x16"):
        model(torch.randn(1, 3, 8, 32))
    with pytest.raises(ValueError, match="scan: got 'spiral-magic'"):
        tiny(scan="spiral-magic")


def test_converter_reports_missing_and_unexpected_keys(tmp_path):
    state = load_checkpoint_file(str(FIXTURES / "vim_64x64" / "checkpoint.pth"))["model"]
    load = lambda path: timm.create_model(  # noqa: E731
        "vim_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), embed_dim=32, depth=2, num_classes=7, img_size=64
    )
    extra = dict(state, **{"layers.0.mixer.extra": torch.zeros(1)})
    torch.save({"model": extra}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"missing keys \[\], unexpected keys \['layers.0.mixer.extra'\]"):
        load(tmp_path / "extra.pth")
    state.pop("layers.1.mixer.D_b")
    torch.save({"model": state}, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing keys \['layers.1.mixer.D_b'\]"):
        load(tmp_path / "missing.pth")


def test_official_weights_resample_pos_embed_for_another_size():
    path = FIXTURES / "vim_64x64" / "checkpoint.pth"
    model = timm.create_model("vim_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                              embed_dim=32, depth=2, num_classes=7, img_size=(32, 80))
    official = load_checkpoint_file(str(path))["model"]["pos_embed"]
    assert model.pos_embed.shape == (1, 11, 32)
    assert torch.equal(model.pos_embed[:, 5], official[:, 8])


def test_params_match_official():
    assert abs(sum(p.numel() for p in timm.create_model("vim_small").parameters()) / 1e6 - 26) / 26 < 0.01


@pytest.mark.parametrize("name", ["vim_tiny", "vim_small", "vim_base"])
def test_every_registered_model_builds_reduced(name):
    model = timm.create_model(name, depth=1, d_state=4, num_classes=3)  # full width, one block
    assert model.embed_dim == {"vim_tiny": 192, "vim_small": 384, "vim_base": 768}[name]
    model(torch.randn(1, 3, 32, 32)).sum().backward()
