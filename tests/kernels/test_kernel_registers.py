"""tools/kernel_registers.py: every Triton kernel the launchers use compiles for sm_90a on a machine without a GPU,
and none spills registers (default config, fp32 partials, four warps)."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

from vssm.kernels import triton_carry, triton_epilogue, triton_layer_norm, triton_steps_bwd, triton_steps_fwd

ROOT = pathlib.Path(__file__).resolve().parents[2]


def kernel_names():
    modules = (triton_steps_fwd, triton_steps_bwd, triton_carry, triton_epilogue, triton_layer_norm)
    return sorted(name for module in modules for name in vars(module) if name.endswith("_kernel"))


@pytest.mark.slow
def test_every_kernel_compiles_for_hopper_without_spills():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "kernel_registers.py"), "--arch", "90",
                           "--settings", "partials_bf16=0", "warps=4"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| _")]
    compiled = {name.strip() for name, *_ in rows}
    assert compiled == set(kernel_names()), f"not compiled: {set(kernel_names()) - compiled}"
    spills = [(name.strip(), config.strip(), int(spill)) for name, config, _, spill in rows if int(spill) > 0]
    assert not spills, f"kernels that spill registers: {spills}"
    assert re.search(r"sm_90a: \d+ kernels compiled", done.stdout)
