"""tools/kernel_registers.py: every Triton kernel the launchers use compiles for sm_90a on a machine without a GPU,
and none spills registers inside a loop (default config, fp32 partials, four warps). A spill before the step
loops and its reload after them (the N = 1 backward at 128 registers: one value, 4-8 bytes) costs once per
program and is allowed."""
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
    in_loops = [(name.strip(), config.strip(), int(n)) for name, config, _, _, n in rows if int(n) > 0]
    assert not in_loops, f"kernels that spill registers inside a loop: {in_loops}"
    assert max(int(spill) for *_, spill, _ in rows) <= 8  # and nowhere more than two values
    assert re.search(r"sm_90a: \d+ kernels compiled", done.stdout)


SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   STL [R1], R18 ;
        /*0020*/                   FFMA R2, R3, R4, R5 ;
        /*0030*/                   LDL R7, [R1+0x4] ;
        /*0040*/              @!P1 BRA 0x20 ;
        /*0050*/                   LDL.LU R16, [R1] ;
        /*0060*/                   EXIT ;
"""


def test_spills_are_counted_only_inside_loops():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from sass_spills import spills_in_loops
    finally:
        sys.path.pop(0)
    assert spills_in_loops(SASS) == 1  # the LDL at 0x30 (loop 0x20-0x40), not 0x10 or 0x50
    assert spills_in_loops(SASS.replace("BRA 0x20", "BRA 0x60")) == 0  # a forward branch
