"""No code runs from a checkpoint on any OpenMMLab loading path: tools/test.py, tools/train.py --resume, the
demo's model loading and init_cfg Pretrained. Each hostile file (tests/mm/evil_checkpoints.py) writes a marker if
executed; every path runs in a subprocess (a gadget that ran would corrupt torch for the rest of the session)."""
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from tests.mm import evil_checkpoints  # noqa: E402
from vssm.data import DemoShapesSpec, generate_demo_shapes  # noqa: E402
from vssm.mm import checkpoint_io  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEG_CONFIG = os.path.join(REPO, "configs/mmseg/upernet_vmamba-demo_1xb8-shapes-128x128.py")

# One loading path, run on every hostile file in turn: prints {kind: [exception type, message]}.
RUNNER = r"""
import json, os, sys
path_kind, folder, data_root, config = sys.argv[1:5]
from tests.mm import evil_checkpoints
errors = {}
files = {kind: evil_checkpoints.write(kind, os.path.join(folder, kind + ".pth"), os.path.join(folder, kind + ".marker"))
         for kind in evil_checkpoints.KINDS}  # all written first: a gadget that runs breaks torch.save
for kind in sorted(files, key=lambda k: k == "getattr_gadget"):  # the gadget last: once run, it breaks torch.load
    ckpt = files[kind]
    opts = ["--cfg-options"] + [f"{s}_dataloader.dataset.data_root={data_root}" for s in ("train", "val", "test")]
    work = os.path.join(folder, "work_" + kind)
    try:
        if path_kind == "test_tool":
            from tools import test
            test.main([config, ckpt, "--work-dir", work] + opts)
        elif path_kind == "train_resume":
            from tools import train
            train.main([config, "--resume", ckpt, "--work-dir", work] + opts + ["train_cfg.max_iters=1"])
        elif path_kind == "demo_loading":
            from tools import demo_mm
            demo_mm.seg_panels(config, ckpt, os.path.dirname(data_root))
        elif path_kind == "pretrained":
            from vssm.mm import VMamba
            VMamba(arch="vmamba_tiny", dims=[16, 32, 48, 64], depths=[1, 1, 2, 1],
                   init_cfg=dict(type="Pretrained", checkpoint=ckpt)).init_weights()
        elif path_kind == "controls":  # the files are live: unrestricted loading, or getattr allowed, runs them
            import torch
            if kind == "getattr_gadget":
                with torch.serialization.safe_globals([getattr]):
                    torch.load(ckpt, weights_only=True)
            else:
                torch.load(ckpt, weights_only=False)
        elif path_kind == "trusted":
            import torch
            from vssm.mm.checkpoint_io import mmengine_checkpoint_globals
            with mmengine_checkpoint_globals(trust=True):
                torch.load(ckpt)
        errors[kind] = None
    except Exception as err:
        errors[kind] = [type(err).__name__, str(err)]
print("RESULT " + json.dumps(errors))
"""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("evil_data")
    generate_demo_shapes(str(root), DemoShapesSpec(num_train=2, num_val=1))
    return str(root / "ade")


def _run(path_kind: str, folder, data_root: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", RUNNER, path_kind, str(folder), data_root, SEG_CONFIG],
                         capture_output=True, text=True, env=env, cwd=str(folder), timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"{path_kind} runner failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _markers(folder) -> list:
    return sorted(kind for kind in evil_checkpoints.KINDS if (folder / f"{kind}.marker").exists())


def test_the_hostile_files_run_code_when_loaded_unrestricted(tmp_path, data_root):
    _run("controls", tmp_path, data_root)
    assert _markers(tmp_path) == sorted(evil_checkpoints.KINDS)


def test_trust_checkpoint_loads_with_weights_only_false(tmp_path, data_root):
    errors = _run("trusted", tmp_path, data_root)
    assert "reduce" in _markers(tmp_path) and errors["reduce"] is None


REFUSED = {"getattr_gadget": "builtins.getattr(_rebuild_parameter, '__globals__')", "reduce": "the global exec",
           "legacy": "the global exec"}


@pytest.mark.parametrize("path_kind", ["test_tool", "train_resume", "demo_loading"])
def test_mm_loading_paths_refuse_hostile_checkpoints(path_kind, tmp_path, data_root):
    errors = _run(path_kind, tmp_path, data_root)
    assert _markers(tmp_path) == []
    for kind, error in errors.items():
        assert error is not None and error[0] == "CheckpointRefusedError", (kind, error)
        assert REFUSED[kind] in error[1] and "--trust-checkpoint" in error[1] and kind + ".pth" in error[1]


def test_pretrained_loading_runs_nothing(tmp_path, data_root):
    errors = _run("pretrained", tmp_path, data_root)
    assert _markers(tmp_path) == []
    assert all(error is not None for error in errors.values()), errors  # no backbone weights in these files


def test_allow_list_is_exact_and_getattr_resolves_only_history_statistics():
    import numpy as np
    from mmengine.logging import HistoryBuffer

    names = sorted(g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}"
                   for g in checkpoint_io._allowed_globals())
    dtypes = [f"numpy.dtypes.{type(np.dtype(code)).__name__}" for code in checkpoint_io.NUMERIC_DTYPES]
    assert names == sorted(["builtins.getattr", "mmengine.logging.history_buffer.HistoryBuffer", "numpy.ndarray",
                            "numpy.dtype", "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar"]
                           + dtypes)
    assert "numpy.dtypes.ObjectDType" not in names
    assert checkpoint_io._history_getattr(HistoryBuffer, "mean") is HistoryBuffer.mean
    for obj, name in ((os, "system"), (HistoryBuffer, "__init__"), (torch._utils._rebuild_parameter, "__globals__")):
        with pytest.raises(checkpoint_io.CheckpointRefusedError, match="getattr"):
            checkpoint_io._history_getattr(obj, name)


def test_a_runner_checkpoint_with_a_message_hub_loads(tmp_path):
    import numpy as np
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import save_checkpoint

    hub = MessageHub.get_instance("checkpoint_security")
    for value in (1.5, 1.25):
        hub.update_scalar("train/loss", value)
    hub.update_info("iter", 2)
    hub.update_info("metric", np.float64(0.5))  # evaluation metrics reach runtime_info as numpy scalars
    path = str(tmp_path / "iter_2.pth")
    save_checkpoint({"meta": {"iter": 2}, "state_dict": {"w": torch.ones(2)}, "message_hub": hub.state_dict()}, path)
    assert {"builtins.getattr", "numpy._core.multiarray.scalar"} <= set(
        torch.serialization.get_unsafe_globals_in_checkpoint(path))
    with checkpoint_io.mmengine_checkpoint_globals(path=path):
        loaded = torch.load(path)
    assert loaded["message_hub"]["log_scalars"]["train/loss"].mean() == pytest.approx(1.375)
    with pytest.raises(pickle.UnpicklingError):  # torch's default refuses it: the allow-list is needed
        torch.load(path)
