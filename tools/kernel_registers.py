"""Compile every Triton kernel vssm's launchers use, for a GPU architecture, on a machine without a GPU; print each
kernel's registers and spills.

    python tools/kernel_registers.py [--arch 90] [--settings warps=4 partials_bf16=0 ...] [--only KERNEL ...]

The scan and LayerNorm launchers run on small CPU tensors shaped like the benchmark layers (VMamba-T stage 1,
VMamba v0, a Vim layer; whole-route and chunk-parallel schedules, with and without hidden states), once with the
default kernel config and once per ``--settings`` entry (NAME=VALUE,... of ``vssm.kernels.KernelConfig``). Each launch is compiled by Triton's own specialisation of its actual arguments, for a
stand-in driver of the chosen architecture, and never run; ptxas reports registers and spill bytes. Run it
without TRITON_INTERPRET. Exit status 1 when a kernel fails to compile.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("tools/kernel_registers.py compiles for a GPU: run it without TRITON_INTERPRET=1")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability  # noqa: E402
from triton.runtime.driver import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

from vssm.kernels import KernelConfig, Routes, kernel_config, triton_epilogue, triton_layer_norm, triton_scan  # noqa: E402
from vssm.kernels.config import current_config  # noqa: E402
from vssm.kernels.contract import scan_sizes  # noqa: E402
from vssm.kernels.op import _problem  # noqa: E402

from sass_spills import spills_in_loops  # noqa: E402  (tools/, beside this file)

# The modules whose kernels the launchers call, by the names the launchers see.
LAUNCHING = (triton_scan, triton_epilogue, triton_layer_norm)


class CompileOnlyDriver:
    """What Triton's launcher asks of a driver before it compiles: a device, a stream and the target."""

    def __init__(self, arch: int) -> None:
        self.target = GPUTarget("cuda", arch, 32)

    def get_current_target(self) -> GPUTarget:
        return self.target

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: Optional[int] = None) -> int:
        return 0


@dataclass
class Compiled:
    kernel: str
    config: str  # constexprs and warps
    registers: int
    spill_bytes: int
    spills_in_loops: int


class Recorder:
    """Stands in for a kernel: ``kernel[grid](*args, **kwargs)`` compiles that launch (no run) and records it."""

    def __init__(self, kernel: JITFunction, arch: int, seen: Dict[Tuple[str, str], Compiled],
                 failures: List[str]) -> None:
        self.kernel, self.arch, self.seen, self.failures = kernel, arch, seen, failures

    def __getitem__(self, grid) -> Callable[..., None]:
        return lambda *args, **kwargs: self.compile(grid, args, kwargs)

    def compile(self, grid, args, kwargs) -> None:
        name = self.kernel.fn.__name__
        constexprs = {k: v for k, v in kwargs.items() if k != "num_warps"}
        config = ", ".join(f"{k}={v}" for k, v in constexprs.items()) + f", warps={kwargs.get('num_warps', 4)}"
        try:
            compiled = self.kernel.warmup(*args, grid=grid, **kwargs)
        except Exception as err:  # reported, the other kernels still compile
            self.failures.append(f"{name} ({config}): {type(err).__name__}: {str(err).splitlines()[0][:300]}")
            return
        key = (name, compiled.asm["ptx"])
        if key not in self.seen:
            self.seen[key] = Compiled(name, config, *ptxas_usage(compiled.asm["ptx"], self.arch))


class Skipper:
    """Stands in for a kernel left out by --only: its launches do nothing."""

    def __getitem__(self, grid) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def ptxas_usage(ptx: str, arch: int) -> Tuple[int, int, int]:
    """(registers, spill-store bytes, spill loads/stores inside a loop) of the kernel in ``ptx``: ptxas's report,
    and the local-memory accesses of its SASS that lie inside a loop."""
    ptxas = get_ptxas(arch).path
    with tempfile.TemporaryDirectory() as tmp:
        src, cubin = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
        with open(src, "w") as f:
            f.write(ptx)
        log = subprocess.run([ptxas, "-v", f"--gpu-name={sm_arch_from_capability(arch)}", src, "-o", cubin],
                             capture_output=True, text=True, check=True).stderr
        sass = subprocess.run([os.path.join(os.path.dirname(ptxas), "cuobjdump"), "-sass", cubin],
                              capture_output=True, text=True, check=True).stdout
    registers = int(re.search(r"Used (\d+) registers", log).group(1))
    return registers, int(re.search(r"(\d+) bytes spill stores", log).group(1)), spills_in_loops(sass)



LAYERS = {  # name: (dim, N, routes, z); VMamba-T stage 1, VMamba v0 stage 1, a Vim-T layer
    "vmamba_t": (96, 1, 4, False),
    "vmamba_v0": (192, 16, 4, False),
    "vim_t": (384, 16, 2, True),
}


def run_launchers(length: int = 100) -> None:
    """Forward and backward of each layer, bf16, whole-route and chunk-parallel, with and without hidden states,
    and with a route that visits a token twice and pads a step (in-order accumulation); then the LayerNorm
    forward and backward at the channel counts the models use."""
    for dim, N, K, with_z in LAYERS.values():
        index = torch.stack([torch.randperm(length) if k % 2 else torch.arange(length) for k in range(K)]).int()
        repeated = index.clone()
        repeated[0, 1], repeated[0, 2] = repeated[0, 0], -1
        for chunked in (False, True):
            for hidden in (False, True):
                scan_once(index, dim, N, with_z, hidden, KernelConfig(chunk_parallel=chunked))
        # repeated tokens: per-step kernels, whole routes only
        scan_once(repeated, dim, N, with_z, False, KernelConfig(chunk_parallel=False))
    for channels in (96, 192, 384, 768):
        x = torch.randn(64, channels, dtype=torch.bfloat16, requires_grad=True)
        y = triton_layer_norm.TritonLayerNorm.apply(x, torch.ones(channels), torch.zeros(channels), 1e-5, torch.bfloat16)
        y.backward(torch.ones_like(y))


def scan_once(index: torch.Tensor, dim: int, N: int, with_z: bool, hidden: bool, config: KernelConfig) -> None:
    K, L = index.shape
    bf16 = dict(dtype=torch.bfloat16)
    u, delta = torch.randn(2, L, 1, dim, **bf16), torch.randn(2, L, K, dim, **bf16)
    B, C = torch.randn(2, L, K, N, **bf16), torch.randn(2, L, K, N, **bf16)
    A, D, bias = -torch.rand(K, dim, N), torch.randn(K, dim), torch.randn(K, dim)
    z = torch.randn(2, L, 1, dim, **bf16) if with_z else None
    routes = Routes(index=index)
    unique, cover = routes.tokens_unique(), routes.covers(L)
    prob = _problem(u, delta, A, B, C, D, bias, routes.index, None, None, True, unique, cover)
    plan = triton_scan.plan(current_config(config), scan_sizes(u, A, routes.index), unique, cover)
    merge = "mean" if with_z else "sum"
    out, hid, ckpt, y_pre = triton_scan.forward(prob, z, merge, torch.bfloat16, hidden, plan)
    triton_scan.backward(prob, z, merge, ckpt, y_pre, torch.ones_like(out), torch.ones_like(hid) if hidden else None,
                         plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90 for H100/H200")
    parser.add_argument("--settings", nargs="*", default=[], help="extra kernel-setting runs, NAME=VALUE,...")
    parser.add_argument("--only", nargs="*", default=None, help="compile only these kernels (names)")
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
    import kernel_settings

    driver.set_active(CompileOnlyDriver(args.arch))
    seen: Dict[Tuple[str, str], Compiled] = {}
    failures: List[str] = []
    for module in LAUNCHING:
        for name, obj in list(vars(module).items()):
            if isinstance(obj, JITFunction) and name.endswith("_kernel"):
                keep = args.only is None or name in args.only
                setattr(module, name, Recorder(obj, args.arch, seen, failures) if keep else Skipper())
    for settings in [""] + args.settings:
        with kernel_config(kernel_settings.parse(settings)):
            run_launchers()
    print(f"# Triton {triton.__version__}, {sm_arch_from_capability(args.arch)}: {len(seen)} kernels compiled")
    print("| kernel | constexprs, warps | registers | spill stores (bytes) | spill accesses inside loops |")
    print("|---|---|---|---|---|")
    for c in sorted(seen.values(), key=lambda c: (c.kernel, c.config)):
        print(f"| {c.kernel} | {c.config} | {c.registers} | {c.spill_bytes} | {c.spills_in_loops} |")
    for failure in failures:
        print(f"FAILED {failure}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
