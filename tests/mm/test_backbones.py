"""The OpenMMLab backbone adapters: shapes, registration, frozen stages, scans, layer ids, bad arguments."""
import subprocess
import sys

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from vssm.mm import PlainMamba, Vim, VMamba  # noqa: E402

TINY_VMAMBA = dict(arch="vmamba_tiny", dims=[16, 32, 48, 64], depths=[1, 1, 2, 1])
TINY_PLAIN = {
    Vim: dict(arch="vim_tiny", depth=4, embed_dim=32, img_size=64),
    PlainMamba: dict(arch="plainmamba_l1", depth=4, embed_dim=32, img_size=64),
}


def test_import_vssm_does_not_import_openmmlab():
    code = "import sys, timm, vssm; timm.create_model('vmamba_tiny'); print(sorted(m for m in sys.modules if m.startswith(('mmdet', 'mmseg', 'mmcv', 'mmengine'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_registered_in_both_toolkits():
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG

    for cls in (VMamba, Vim, PlainMamba):
        assert DET.get(cls.__name__) is cls and SEG.get(cls.__name__) is cls


def test_vmamba_outputs_strides_channels_and_norms():
    out_indices = (1, 2, 3)
    model = VMamba(out_indices=out_indices, **TINY_VMAMBA)
    h, w = 32 * torch.randint(2, 4, (2,))
    feats = model(torch.randn(2, 3, int(h), int(w)))
    assert len(feats) == 3 and model.out_channels == [32, 48, 64]
    for f, i, c in zip(feats, out_indices, model.out_channels):
        assert f.shape == (2, c, h // 2 ** (i + 2), w // 2 ** (i + 2)) and f.is_contiguous()
        # each output went through its LayerNorm2d (default affine): per-pixel zero mean over channels
        assert f.mean(1).abs().max() < 1e-4


def test_vmamba_output_norms_match_the_official_eps():
    """The official backbone's outnorm{i} are torch LayerNorms (eps 1e-5); features of variance ~1e-6 make
    the eps visible (1e-6 would give outputs ~2.3x larger). Reference: float64 layer norm over channels."""
    model = VMamba(**TINY_VMAMBA).eval()
    for norm, c in zip(model.out_norms, model.out_channels):
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
        x = 1e-3 * torch.randn(2, c, 3, 5)
        ref = torch.nn.functional.layer_norm(
            x.double().permute(0, 2, 3, 1), (c,), norm.weight.double(), norm.bias.double(), eps=1e-5
        ).permute(0, 3, 1, 2)
        with torch.no_grad():
            torch.testing.assert_close(norm(x).double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [VMamba, Vim])
def test_an_int_out_indices_is_one_index(cls):
    import timm

    kwargs = TINY_VMAMBA if cls is VMamba else TINY_PLAIN[cls]
    if kwargs["arch"] not in timm.list_models():
        pytest.skip(f"{kwargs['arch']} is not registered with timm in this checkout")
    if cls is VMamba:
        model = cls(**dict(kwargs, out_indices=3))
        assert model.out_indices == (3,) and len(model(torch.randn(1, 3, 64, 64))) == 1
    else:  # the plain backbones need 4 taps: a single int is a clear error, not a TypeError
        with pytest.raises(ValueError, match="out_indices"):
            cls(**dict(kwargs, out_indices=3))


def test_vmamba_frozen_stages_and_norm_eval():
    model = VMamba(frozen_stages=1, **TINY_VMAMBA)
    frozen = {id(p) for m in model.frozen_modules() for p in m.parameters()}
    assert frozen and len(frozen) < sum(1 for _ in model.parameters())
    for p in model.parameters():
        assert p.requires_grad == (id(p) not in frozen)
    model.train()
    assert all(not m.training for m in model.frozen_modules())
    loss = sum(f.sum() for f in model(torch.randn(1, 3, 64, 64)))
    loss.backward()
    assert all(p.grad is None for p in model.parameters() if id(p) in frozen)


def test_scan_is_chosen_in_the_config():
    from vssm.scans import list_scans

    scan = "hilbert" if "hilbert" in list_scans() else "zigzag"  # 4 routes, like the default cross scan
    default = VMamba(**TINY_VMAMBA).eval()
    other = VMamba(scan=scan, **TINY_VMAMBA).eval()
    other.load_state_dict(default.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(default(x)[-1], other(x)[-1])


@pytest.mark.parametrize("cls", [Vim, PlainMamba])
def test_plain_backbone_pyramid_and_layer_ids(cls):
    import timm

    kwargs = TINY_PLAIN[cls]
    if kwargs["arch"] not in timm.list_models():
        pytest.skip(f"{kwargs['arch']} is not registered with timm in this checkout")
    model = cls(out_indices=(0, 1, 2, 3), **kwargs)
    feats = model(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(32, 16, 16), (32, 8, 8), (32, 4, 4), (32, 2, 2)]
    assert all(f.is_contiguous() for f in feats)
    assert model.num_layers == 4
    ids = {name: model.get_layer_id(name) for name, _ in model.named_parameters()}
    assert ids["trunk.pos_embed"] == 0
    assert max(ids.values()) == 5 and set(range(6)) == set(ids.values())
    assert all(v == 5 for k, v in ids.items() if k.startswith(("pyramid.", "tap_norms.")))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(arch="vim_small"), "arch"),
        (dict(out_indices=(2, 1)), "out_indices"),
        (dict(out_indices=(0, 4)), "out_indices"),
        (dict(out_indices=4), "out_indices"),
        (dict(out_indices=2.0), "out_indices"),
        (dict(frozen_stages=-2), "frozen_stages"),
        (dict(init_cfg=dict(type="Kaiming")), "init_cfg"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, name):
    args = dict(TINY_VMAMBA, **kwargs)
    with pytest.raises(ValueError, match=name):
        VMamba(**args)
