"""VssmOptimWrapperConstructor: layer-wise lr decay and the no-weight-decay rules."""
import random

import pytest
import torch
import torch.nn as nn

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from vssm.mm import VssmOptimWrapperConstructor  # noqa: E402


class _FakePlainBackbone(nn.Module):
    """Embeddings + ``depth`` blocks, with the layer-id interface of vssm.mm.PlainBackbone."""

    def __init__(self, depth: int, dim: int) -> None:
        super().__init__()
        self.num_layers = depth
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, dim))
        self.patch = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(nn.Linear(dim, dim) for _ in range(depth))
        for block in self.blocks:
            block.A_log = nn.Parameter(torch.randn(dim, 2))
            block.D = nn.Parameter(torch.ones(dim))

    def get_layer_id(self, name: str) -> int:
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return 0


class _FakeModel(nn.Module):
    def __init__(self, depth: int, dim: int) -> None:
        super().__init__()
        self.backbone = _FakePlainBackbone(depth, dim)
        self.head = nn.Linear(dim, 3)


def _groups(model, rate, lr, wd):
    cfg = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=lr, weight_decay=wd))
    wrapper = VssmOptimWrapperConstructor(cfg, dict(layer_decay_rate=rate))(model)
    by_param = {}
    for group in wrapper.optimizer.param_groups:
        for p in group["params"]:
            by_param[p] = (group["lr"], group["weight_decay"])
    return by_param


def test_layer_decay_and_no_decay_rules():
    depth, rate = random.randint(2, 6), random.uniform(0.5, 0.95)
    lr, wd = random.uniform(1e-4, 1e-3), random.uniform(0.01, 0.1)
    model = _FakeModel(depth, dim=8)
    groups = _groups(model, rate, lr, wd)
    assert len(groups) == len(list(model.parameters()))
    top = depth + 1
    assert groups[model.head.weight] == pytest.approx((lr, wd))
    assert groups[model.head.bias] == pytest.approx((lr, 0.0))
    assert groups[model.backbone.pos_embed] == pytest.approx((lr * rate**top, 0.0))
    assert groups[model.backbone.patch.weight] == pytest.approx((lr * rate**top, wd))
    for i, block in enumerate(model.backbone.blocks):
        scale = rate ** (top - (i + 1))
        assert groups[block.weight] == pytest.approx((lr * scale, wd))
        assert groups[block.A_log] == pytest.approx((lr * scale, 0.0))
        assert groups[block.D] == pytest.approx((lr * scale, 0.0))


def test_rate_one_keeps_lr_and_needs_no_layer_ids():
    model = nn.Sequential(nn.Linear(4, 4))
    model.backbone = nn.Linear(4, 4)
    lr = random.uniform(1e-4, 1e-3)
    groups = _groups(model, 1.0, lr, 0.05)
    assert [v[0] for v in groups.values()] == pytest.approx([lr] * len(groups))
    assert groups[model.backbone.weight][1] == pytest.approx(0.05) and groups[model.backbone.bias][1] == 0.0


def test_bad_paramwise_cfg_raises():
    cfg = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05))
    with pytest.raises(ValueError, match="layer_decay_rate"):
        VssmOptimWrapperConstructor(cfg, dict(layer_decay_rate=1.5))
    with pytest.raises(ValueError, match="unknown keys"):
        VssmOptimWrapperConstructor(cfg, dict(layer_decay_rate=0.9, custom_keys={}))
    model = nn.Module()
    model.backbone = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="no layer ids"):
        VssmOptimWrapperConstructor(cfg, dict(layer_decay_rate=0.9))(model)
