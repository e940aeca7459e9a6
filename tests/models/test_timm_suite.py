"""A CI-sized run of timm's own model tests (tests/test_models.py of the installed timm's source release)
through the peer script ../shared/peer/timm_model_tests.sh: one small model per family, the tests that apply
to it (the README lists the ones that do not and why). The full run is that script without -k."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT.parent / "shared" / "peer" / "timm_model_tests.sh"
SELECTION = [
    "test_model_default_cfgs[1-vmamba_tiny.in1k]",
    "test_model_forward_intermediates[1-vmamba_tiny]",
    "test_model_forward_fx[1-vmamba_tiny]",
    *(f"{test}[1-{model}]" for model in ("vim_tiny", "plainmamba_l1")
      for test in ("test_model_forward_features", "test_model_forward_intermediates", "test_model_forward_fx")),
]


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"timm's suite runs through {SCRIPT}, which is not here")
def test_timm_model_suite_subset_passes():
    run = subprocess.run(
        ["bash", str(SCRIPT), "-k", " or ".join(SELECTION)], cwd=ROOT, env={**os.environ, "PY": sys.executable},
        capture_output=True, text=True, timeout=900,
    )
    tail = (run.stdout + run.stderr)[-4000:]
    assert run.returncode == 0, tail
    assert f"{len(SELECTION)} passed" in run.stdout, tail
