"""tools/convert_checkpoint.py: official file -> vssm safetensors, loadable with pretrained_cfg_overlay=dict(file=...).

End to end on the parity fixtures (random weights in the official layout, with the official code's logits),
saved as the official training scripts save them (a pickled config object next to the weights)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest
import timm
import torch
from safetensors import safe_open

import vssm  # noqa: F401
from vssm.models._loading import CheckpointRefusedError, load_checkpoint_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "parity"
TOOL = ROOT / "tools" / "convert_checkpoint.py"
_spec = importlib.util.spec_from_file_location("convert_checkpoint", TOOL)
convert_checkpoint = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert_checkpoint)

FAMILY = {"vmamba_v2_64x64": "vmamba", "vmamba_v0_64x64": "vmamba", "vim_tiny_64x64": "vim", "plainmamba_l1_64x64": "plainmamba"}


class _Evil:
    """Unpickling this would run code (writes the marker file)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def _official_file(fixture: str, tmp_path: pathlib.Path, evil: bool = False) -> pathlib.Path:
    checkpoint = load_checkpoint_file(str(FIXTURES / fixture / "checkpoint.pth"))
    if FAMILY[fixture] == "vim":
        checkpoint["args"] = argparse.Namespace(model="vim_tiny_patch16_224_bimambav2", input_size=64)
    elif FAMILY[fixture] == "vmamba":
        checkpoint["config"] = argparse.Namespace(MODEL="vssm")
    if evil:
        checkpoint["payload"] = _Evil(tmp_path / "marker")
    path = tmp_path / f"{fixture}{'_evil' if evil else ''}.pth"
    torch.save(checkpoint, path)
    return path


def _logits_error(fixture: str, path: pathlib.Path) -> float:
    config = json.loads((FIXTURES / fixture / "config.json").read_text())
    kwargs = config["model_kwargs"]
    overlay = dict(file=str(path), num_classes=kwargs["num_classes"])
    model = timm.create_model(config["model"], pretrained=True, pretrained_cfg_overlay=overlay, **kwargs).eval()
    inputs = torch.load(FIXTURES / fixture / "input.pt", weights_only=True)
    expected = torch.load(FIXTURES / fixture / "logits.pt", weights_only=True).double()
    with torch.no_grad():
        return ((model(inputs).double() - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize("fixture", sorted(FAMILY))
def test_converted_file_reproduces_the_official_logits(fixture, tmp_path, capsys):
    official = _official_file(fixture, tmp_path)
    out = tmp_path / "converted.safetensors"
    assert convert_checkpoint.main([str(official), str(out)]) == 0
    assert "converted.safetensors" in capsys.readouterr().out
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["vssm_family"] == FAMILY[fixture]
        keys = set(f.keys())
    config = json.loads((FIXTURES / fixture / "config.json").read_text())
    assert keys == set(timm.create_model(config["model"], **config["model_kwargs"]).state_dict())  # vssm layout
    assert _logits_error(fixture, out) < 1e-4


@pytest.mark.parametrize("fixture", sorted(FAMILY))
def test_a_file_naming_exec_is_refused_and_runs_nothing(fixture, tmp_path):
    evil = _official_file(fixture, tmp_path, evil=True)
    with pytest.raises(CheckpointRefusedError, match="builtins.exec"):
        convert_checkpoint.main([str(evil), str(tmp_path / "out.safetensors")])
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_command_line_with_model(tmp_path):
    official = _official_file("vim_tiny_64x64", tmp_path)
    out = tmp_path / "vim.safetensors"
    run = subprocess.run([sys.executable, str(TOOL), str(official), str(out), "--model", "vim_tiny"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert _logits_error("vim_tiny_64x64", out) < 1e-4


def test_stride8_vim_file_is_refused(tmp_path):
    checkpoint = load_checkpoint_file(str(FIXTURES / "vim_tiny_64x64" / "checkpoint.pth"))
    checkpoint["args"] = argparse.Namespace(model="vim_small_patch16_stride8_224_bimambav2", input_size=224)
    torch.save(checkpoint, tmp_path / "plus.pth")
    with pytest.raises(ValueError, match="patch stride 8"):
        convert_checkpoint.main([str(tmp_path / "plus.pth"), str(tmp_path / "out.safetensors")])
    assert not (tmp_path / "out.safetensors").exists()


def test_bad_arguments(tmp_path):
    official = _official_file("plainmamba_l1_64x64", tmp_path)
    with pytest.raises(SystemExit):
        convert_checkpoint.main([str(official), str(tmp_path / "out.pth")])
    with pytest.raises(ValueError, match="model: got 'resnet50'"):
        convert_checkpoint.main([str(official), str(tmp_path / "out.safetensors"), "--model", "resnet50"])
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"not a VMamba, Vim or PlainMamba layout .*pass --model"):
        convert_checkpoint.main([str(tmp_path / "other.pth"), str(tmp_path / "out.safetensors")])
