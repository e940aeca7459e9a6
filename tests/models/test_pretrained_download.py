"""pretrained=True downloads the tag's url (timm's torch-hub cache), converts the official layout and loads it.

The official file is served by a loopback HTTP server (127.0.0.1 only) from a temporary folder; the url is
overridden with ``pretrained_cfg_overlay=dict(url=...)`` and TORCH_HOME points at a temporary hub dir, so
nothing outside this machine is reached. The served files are the parity fixtures (random weights in the
official layout with the official code's logits), wrapped the way the official training scripts save them.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import pathlib
import threading
from typing import Iterator, List

import pytest
import timm
import torch

import vssm  # noqa: F401
from vssm.models import plainmamba, vim, vmamba
from vssm.models._loading import load_checkpoint_file

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "parity"

# tag -> (fixture, model kwargs, wrap the fixture's tensors as the official file is saved, converter)
CASES = {
    "vmamba_tiny.in1k": ("vmamba_v2_64x64", dict(depths=(1, 1, 2, 1), dims=8, ssm_ratio=2.0, num_classes=10),
                         lambda sd: {"model": sd, "config": argparse.Namespace(MODEL="vssm1_tiny_0230s"), "epoch": 3},
                         vmamba.official_to_vssm),
    "vim_tiny.in1k": ("vim_tiny_64x64", dict(embed_dim=32, depth=2, num_classes=10, img_size=64),
                      lambda sd: {"model": sd, "args": argparse.Namespace(model="vim_tiny_patch16_224_bimambav2")},
                      vim.official_to_vssm),
    "plainmamba_l1.in1k": ("plainmamba_l1_64x64", dict(embed_dim=32, depth=2, num_classes=7, img_size=64),
                           lambda sd: {"state_dict": sd, "meta": {"epoch": 300}}, plainmamba.official_to_vssm),
}


class _Server:
    """A threaded HTTP server on 127.0.0.1 serving one folder; ``paths`` lists the requests it answered."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.paths: List[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@pytest.fixture
def served(tmp_path, monkeypatch) -> Iterator[_Server]:
    folder = tmp_path / "served"
    folder.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    assert torch.hub.get_dir().startswith(str(tmp_path))  # nothing lands in (or is read from) the user's cache
    server = _Server(folder)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.mark.parametrize("tag", sorted(CASES))
def test_pretrained_true_downloads_converts_and_loads(tag, served, tmp_path):
    fixture, kwargs, wrap, convert = CASES[tag]
    folder = FIXTURES / fixture
    official = wrap(load_checkpoint_file(str(folder / "checkpoint.pth"))[
        "state_dict" if fixture.startswith("plainmamba") else "model"])
    name = timm.get_pretrained_cfg(tag).url.rsplit("/", 1)[-1]  # served under the release's own file name
    torch.save(official, tmp_path / "served" / name)
    overlay = dict(url=served.url(name), num_classes=kwargs["num_classes"])

    model = timm.create_model(tag, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs).eval()

    assert served.paths == [f"/{name}"]
    assert (pathlib.Path(torch.hub.get_dir()) / "checkpoints" / name).is_file()
    expected = convert(official)
    state = model.state_dict()
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    inputs = torch.load(folder / "input.pt", weights_only=True)
    logits = torch.load(folder / "logits.pt", weights_only=True)
    with torch.no_grad():
        error = (model(inputs).double() - logits.double()).norm() / logits.double().norm()
    assert error < 1e-4
    # a second model comes from the cache: no new request
    timm.create_model(tag, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    assert served.paths == [f"/{name}"]


def test_download_failure_names_the_url_and_the_offline_route(served):
    url = served.url("absent.pth")
    with pytest.raises(OSError, match=r"absent\.pth failed .*pretrained_cfg_overlay=dict\(file=PATH\)"):
        timm.create_model("vim_tiny", pretrained=True, pretrained_cfg_overlay=dict(url=url), embed_dim=16, depth=1)


def test_no_url_and_no_file_explains(served):
    with pytest.raises(ValueError, match=r"pretrained_cfg_overlay=dict\(file="):
        timm.create_model("plainmamba_l1", pretrained=True, pretrained_cfg_overlay=dict(url=""), embed_dim=16, depth=1)
    assert served.paths == []


# Official ImageNet-1k release of every vssm model (README tables of the official repositories).
RELEASES = {
    "vmamba_tiny": "https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264.pth",
    "vmamba_small": "https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm_small_0229_ckpt_epoch_222.pth",
    "vmamba_base": "https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm_base_0229_ckpt_epoch_237.pth",
    "vmamba_tiny_v0": "https://github.com/MzeroMiko/VMamba/releases/download/%23v0cls/vssmtiny_dp01_ckpt_epoch_292.pth",
    "vmamba_small_v0": "https://github.com/MzeroMiko/VMamba/releases/download/%23v0cls/vssmsmall_dp03_ckpt_epoch_238.pth",
    "vmamba_base_v0": "https://github.com/MzeroMiko/VMamba/releases/download/%23v0cls/vssmbase_dp06_ckpt_epoch_241.pth",
    "vim_tiny": "https://huggingface.co/hustvl/Vim-tiny-midclstok/resolve/main/vim_t_midclstok_76p1acc.pth",
    "vim_small": "https://huggingface.co/hustvl/Vim-small-midclstok/resolve/main/vim_s_midclstok_80p5acc.pth",
    "vim_base": "https://huggingface.co/hustvl/Vim-base-midclstok/resolve/main/vim_b_midclstok_81p9acc.pth",
    "plainmamba_l1": "https://huggingface.co/ChenhongyiYang/PlainMamba/resolve/main/l1.pth",
    "plainmamba_l2": "https://huggingface.co/ChenhongyiYang/PlainMamba/resolve/main/l2.pth",
    "plainmamba_l3": "https://huggingface.co/ChenhongyiYang/PlainMamba/resolve/main/l3.pth",
}


def test_every_model_has_its_official_in1k_tag():
    names = timm.list_models(["vmamba_*", "vim_*", "plainmamba_*"])
    assert sorted(names) == sorted(RELEASES)
    assert sorted(timm.list_pretrained(["vmamba_*", "vim_*", "plainmamba_*"])) == sorted(f"{n}.in1k" for n in RELEASES)
    for name, url in RELEASES.items():
        cfg = timm.get_pretrained_cfg(f"{name}.in1k")
        assert cfg.url == url and not cfg.hf_hub_id, name
        assert cfg.num_classes == 1000 and cfg.input_size == (3, 224, 224) and "Official ImageNet-1k release" in cfg.notes[0]
        assert timm.create_model(name, **_small(name)).pretrained_cfg["tag"] == "in1k"  # the default tag


def _small(name: str) -> dict:
    if name.startswith("vmamba"):
        return dict(depths=(1, 1, 1, 1), dims=8)
    return dict(embed_dim=16, depth=1)
