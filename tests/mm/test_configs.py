"""Every config in configs/ loads, imports vssm.mm, and builds its model with consistent channel counts."""
import glob
import os

import pytest

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "configs", "*", "*.py"))
)


def _registry(scope: str):
    if scope == "mmdet":
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS


def test_every_toolkit_has_configs():
    assert any(c.startswith("configs/mmdet/") for c in CONFIGS)
    assert any(c.startswith("configs/mmseg/") for c in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_loads_and_model_builds(config):
    cfg = Config.fromfile(os.path.join(REPO, config))
    import timm
    import vssm.models  # noqa: F401

    if cfg.model.backbone.arch not in timm.list_models():
        pytest.skip(f"{cfg.model.backbone.arch} is not registered with timm in this checkout")
    assert cfg.custom_imports["imports"] == ["vssm.mm"]
    assert cfg.default_scope == config.split("/")[1]
    expected_root = "data/demo" if "demo" in config else ("data/coco" if cfg.default_scope == "mmdet" else "data/ade")
    assert cfg.train_dataloader.dataset.data_root.startswith(expected_root)
    init_default_scope(cfg.default_scope)
    import vssm.mm  # noqa: F401  (what custom_imports does)

    model = _registry(cfg.default_scope).build(cfg.model)
    assert type(model.backbone).__name__ == cfg.model.backbone.type
    consumer = model.neck if cfg.default_scope == "mmdet" else model.decode_head
    in_channels = list(consumer.in_channels)
    if cfg.default_scope == "mmdet" and cfg.model.neck.get("start_level", 0):
        in_channels = in_channels[cfg.model.neck.start_level:]
    assert list(model.backbone.out_channels) == in_channels
