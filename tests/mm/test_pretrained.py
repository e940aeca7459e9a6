"""init_cfg Pretrained: an official-layout VMamba file loads through the converter with a precise key report."""
import argparse

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from tests.mm.official_layout import vmamba_v2_state_dict  # noqa: E402
from vssm.mm import VMamba  # noqa: E402

# vmamba_tiny = T[s1l8]: ssm_ratio 1, d_state 1, mlp_ratio 4; narrowed for speed.
DIMS, DEPTHS = [16, 32, 48, 64], [1, 1, 2, 1]


def _official_file(tmp_path, wrap=lambda sd: {"model": sd, "config": argparse.Namespace(lr=1)}):
    sd = vmamba_v2_state_dict(DIMS, DEPTHS, ssm_ratio=1.0, d_state=1, mlp_ratio=4.0, num_classes=10)
    path = tmp_path / "official.pth"
    torch.save(wrap(sd), path)
    return str(path), sd


def test_official_file_loads_with_no_missing_keys(tmp_path):
    path, official = _official_file(tmp_path)
    model = VMamba(arch="vmamba_tiny", dims=DIMS, depths=DEPTHS,
                   init_cfg=dict(type="Pretrained", checkpoint=path))
    before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    report = model.init_weights()
    assert report.missing == []
    # the classifier (official classifier.norm / classifier.head) is all the backbone leaves unused
    assert sorted(report.unexpected) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert report.loaded == len(model.trunk.state_dict())
    after = model.trunk.state_dict()
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert len(changed) == len(after)  # every trunk tensor came from the file
    # the official stacked D of the first block is somewhere in the trunk, unchanged in value
    ds = official["layers.0.blocks.0.op.Ds"]
    assert any(v.numel() == ds.numel() and torch.equal(v.flatten(), ds.flatten()) for v in after.values())


def test_prefixed_mm_checkpoint_and_missing_keys(tmp_path):
    path, official = _official_file(tmp_path, wrap=lambda sd: {"state_dict": {"backbone." + k: v for k, v in sd.items()}})
    model = VMamba(arch="vmamba_tiny", dims=DIMS, depths=DEPTHS,
                   init_cfg=dict(type="Pretrained", checkpoint=path, prefix="backbone."))
    assert model.init_weights().missing == []

    official.pop("layers.1.blocks.0.op.A_logs")
    torch.save({"model": official}, tmp_path / "broken.pth")
    broken = VMamba(arch="vmamba_tiny", dims=DIMS, depths=DEPTHS,
                    init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "broken.pth")))
    with pytest.raises((ValueError, KeyError, RuntimeError), match="A_log|layers.1"):
        broken.init_weights()
