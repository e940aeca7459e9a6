"""Official-model parity: fixtures made by running the official code (random weights in the official
layout, an input and its logits) must be reproduced through the user path (pretrained file + converter)."""
import pathlib

import pytest
import torch

from vssm.models._loading import load_checkpoint_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FOLDERS = [ROOT / "tests" / "fixtures" / "parity", ROOT.parent / "shared" / "parity"]
FIXTURES = [p.parent for folder in FOLDERS if folder.is_dir() for p in sorted(folder.glob("*/config.json"))]

import importlib.util  # noqa: E402
import sys  # noqa: E402

_spec = importlib.util.spec_from_file_location("check_parity", ROOT / "tools" / "check_parity.py")
check_parity = sys.modules.setdefault("check_parity", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(check_parity)


def test_fixtures_present():
    assert len(FIXTURES) >= 4


@pytest.mark.parametrize("folder", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_parity_fixture(folder):
    result = check_parity.check_fixture(folder)
    assert result.relative_error <= 1e-4, f"{folder.name}: relative error {result.relative_error:.2e}"


def test_oldest_v0_key_names_load_to_the_same_logits(tmp_path):
    """The oldest v0 releases use other names (ln_1, self_attention, patch_embed.proj/norm, norm, head)."""
    folder = ROOT / "tests" / "fixtures" / "parity" / "vmamba_v0_64x64"
    state = load_checkpoint_file(str(folder / "checkpoint.pth"))["model"]
    renamed = {}
    for key, value in state.items():
        key = key.replace(".norm.", ".ln_1.", 1) if ".blocks." in key and ".op." not in key else key
        key = key.replace(".op.", ".self_attention.")
        key = key.replace("patch_embed.0.", "patch_embed.proj.").replace("patch_embed.2.", "patch_embed.norm.")
        key = key.replace("classifier.norm.", "norm.").replace("classifier.head.", "head.")
        renamed[key] = value
    assert any(".ln_1." in k for k in renamed) and any(".self_attention." in k for k in renamed)
    torch.save({"model": renamed}, tmp_path / "checkpoint.pth")
    for name in ("config.json", "input.pt", "logits.pt"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    assert check_parity.check_fixture(tmp_path).relative_error <= 1e-4


def test_missing_and_unexpected_keys_are_reported(tmp_path):
    folder = ROOT / "tests" / "fixtures" / "parity" / "vmamba_v2_64x64"
    state = dict(load_checkpoint_file(str(folder / "checkpoint.pth"))["model"])
    state.pop("layers.0.blocks.0.op.Ds")
    state["layers.0.blocks.0.op.bogus"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "checkpoint.pth")
    for name in ("config.json", "input.pt", "logits.pt"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(ValueError, match=r"missing keys \['layers\.0\.blocks\.0\.op\.Ds'\], unexpected keys \['layers\.0\.blocks\.0\.op\.bogus'\]"):
        check_parity.check_fixture(tmp_path)
    # also when num_classes differs from the checkpoint's (timm then drops the head and loads non-strictly)
    import timm

    with pytest.raises(ValueError, match=r"missing keys \['layers\.0\.blocks\.0\.op\.Ds'\]"):
        timm.create_model("vmamba_tiny", pretrained=True, depths=(1, 1, 2, 1), dims=8, ssm_ratio=2.0, num_classes=3,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / "checkpoint.pth")))


def test_pickled_config_objects_are_read_safely(tmp_path):
    """Official files pickle a config object; it is dropped, never executed (weights_only loading)."""
    import argparse

    folder = ROOT / "tests" / "fixtures" / "parity" / "vmamba_v2_64x64"
    state = load_checkpoint_file(str(folder / "checkpoint.pth"))["model"]
    torch.save({"model": state, "config": argparse.Namespace(lr=0.1), "epoch": 3}, tmp_path / "checkpoint.pth")
    for name in ("config.json", "input.pt", "logits.pt"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    assert check_parity.check_fixture(tmp_path).relative_error <= 1e-4
