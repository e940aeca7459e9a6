"""Checkpoint files given with pretrained_cfg_overlay=dict(file=...): formats, vssm's own layout, short key
errors, and Vim "+" (patch stride 8) files refused."""
from __future__ import annotations

import argparse
import pathlib

import pytest
import timm
import torch
from safetensors.torch import save_file

import vssm  # noqa: F401
from vssm.models._loading import CheckpointFormatError, load_checkpoint_file, pickled_fields

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "parity"
VIM_SMALL = dict(embed_dim=32, depth=2, num_classes=10, img_size=64)  # the vim_tiny_64x64 fixture's model
SMALL = {
    "vmamba_tiny": dict(depths=(1, 1, 2, 1), dims=8, num_classes=5),
    "vmamba_tiny_v0": dict(depths=(1, 1, 2, 1), dims=8, d_state=4, num_classes=5),
    "vim_tiny": dict(embed_dim=16, depth=2, d_state=4, num_classes=5, img_size=64),
    "plainmamba_l1": dict(embed_dim=16, depth=2, num_classes=5, img_size=64),
}


def _load(name, path, **kwargs):
    overlay = dict(file=str(path), num_classes=kwargs.get("num_classes", 1000))
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# vssm's own saved weights ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, scan", [(n, None) for n in SMALL] + [("vim_tiny", "cross"), ("vim_tiny", "zigzag")])
def test_own_state_dict_reloads(name, scan, tmp_path):
    """Before: a saved Vim state dict (and any non-default-scan Vim) was rejected with a 9 kB missing-key dump."""
    kwargs = dict(SMALL[name], **({"scan": scan} if scan else {}))
    model = timm.create_model(name, **kwargs)
    torch.save(model.state_dict(), tmp_path / "own.pth")
    _assert_same_weights(_load(name, tmp_path / "own.pth", **kwargs), model)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_safetensors_file_loads(name, tmp_path):
    """Before: a .safetensors file got a torch unpickling message."""
    model = timm.create_model(name, **SMALL[name])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "own.safetensors"))
    _assert_same_weights(_load(name, tmp_path / "own.safetensors", **SMALL[name]), model)


def test_official_file_with_safetensors_content_and_a_pth_name_loads(tmp_path):
    """The format is read from the content, not the file name."""
    official = load_checkpoint_file(str(FIXTURES / "vim_tiny_64x64" / "checkpoint.pth"))["model"]
    save_file({k: v.contiguous() for k, v in official.items()}, str(tmp_path / "official.pth"))
    reference = _load("vim_tiny", FIXTURES / "vim_tiny_64x64" / "checkpoint.pth", **VIM_SMALL)
    _assert_same_weights(_load("vim_tiny", tmp_path / "official.pth", **VIM_SMALL), reference)


def test_legacy_torch_format_loads(tmp_path):
    model = timm.create_model("plainmamba_l1", **SMALL["plainmamba_l1"])
    torch.save(model.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    _assert_same_weights(_load("plainmamba_l1", tmp_path / "legacy.pth", **SMALL["plainmamba_l1"]), model)


# unreadable files -------------------------------------------------------------------------------------
def _corrupt_files():
    good = (FIXTURES / "vim_tiny_64x64" / "checkpoint.pth").read_bytes()
    header = b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'
    return {
        "random.bin": bytes(range(256)) * 8,
        "truncated.pth": good[: len(good) // 2],
        "bad.safetensors": len(header).to_bytes(8, "little") + header + b"\0" * 4,  # data shorter than the header says
        "empty.pth": b"",
    }


@pytest.mark.parametrize("name", ["random.bin", "truncated.pth", "bad.safetensors", "empty.pth"])
def test_unreadable_file_names_the_path_and_the_formats(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(_corrupt_files()[name])
    with pytest.raises(CheckpointFormatError) as info:
        _load("vim_tiny", path, **VIM_SMALL)
    message = str(info.value)
    assert str(path) in message and "PyTorch" in message and "safetensors" in message
    assert len(message) < 1200


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        _load("vim_tiny", tmp_path / "nothere.pth", **VIM_SMALL)


# short key errors ------------------------------------------------------------------------------------
def test_key_errors_are_short(tmp_path):
    model = timm.create_model("vim_tiny", **SMALL["vim_tiny"])
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("layers.1.")}
    state.update({f"bogus.{i}": torch.zeros(1) for i in range(40)})
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError) as info:
        _load("vim_tiny", tmp_path / "partial.pth", **SMALL["vim_tiny"])
    message = str(info.value)
    missing = len([k for k in model.state_dict() if k.startswith("layers.1.")])
    assert f"({missing} in all)" in message and "(40 in all)" in message and "'layers.1.mixer.A_log'" in message
    assert len(message) < 600


def test_official_vim_with_a_missing_branch_key_is_short(tmp_path):
    official = dict(load_checkpoint_file(str(FIXTURES / "vim_tiny_64x64" / "checkpoint.pth"))["model"])
    for key in [k for k in official if k.endswith(("D_b", "A_b_log", "conv1d_b.weight"))]:
        del official[key]
    torch.save({"model": official}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"missing keys \[.*\] and 1 more \(6 in all\) \(each mixer needs both branches\)"):
        _load("vim_tiny", tmp_path / "broken.pth", **VIM_SMALL)


# Vim "+" files (patch stride 8) ------------------------------------------------------------------------
def _vim_file(tmp_path, **args):
    official = load_checkpoint_file(str(FIXTURES / "vim_tiny_64x64" / "checkpoint.pth"))["model"]
    path = tmp_path / "vim.pth"
    torch.save({"model": official, "args": argparse.Namespace(**args), "epoch": 29}, path)
    return path


def test_pickled_args_fields_survive_the_safe_load(tmp_path):
    path = _vim_file(tmp_path, model="vim_tiny_patch16_stride8_224_bimambav2", input_size=224)
    fields = pickled_fields(load_checkpoint_file(str(path))["args"])
    assert fields == dict(model="vim_tiny_patch16_stride8_224_bimambav2", input_size=224)


def test_stride8_vim_file_is_refused_naming_the_stride(tmp_path):
    """Before: the 27x27 pos_embed of Vim-Ti+ was resampled to 14x14 and the logits were wrong."""
    name = "vim_tiny_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2"
    path = _vim_file(tmp_path, model=name, input_size=224)
    with pytest.raises(ValueError, match=f"patch stride 8 \\(args.model '{name}'.*expected patch stride 16"):
        _load("vim_tiny", path, **VIM_SMALL)


def test_stride_from_input_size_and_pos_embed_grid(tmp_path):
    """Without a stride in the model name: the fixture's 4x4 grid from a 40x40 input needs stride 8
    ((40 - 16) / (4 - 1)); from a 64x64 input it is stride 16 and loads."""
    with pytest.raises(ValueError, match="patch stride 8"):
        _load("vim_tiny", _vim_file(tmp_path, model="vim_custom", input_size=40), **VIM_SMALL)
    reference = _load("vim_tiny", FIXTURES / "vim_tiny_64x64" / "checkpoint.pth", **VIM_SMALL)
    _assert_same_weights(_load("vim_tiny", _vim_file(tmp_path, model="vim_custom", input_size=64), **VIM_SMALL), reference)
