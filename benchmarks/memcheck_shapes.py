"""One forward + backward of the Triton scan at the benchmark shapes, for compute-sanitizer (no reference check:
the float64 comparison of the GPU tests is too slow under the sanitizer at these sizes).

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 3 \
        python benchmarks/memcheck_shapes.py [--cases c vim-long a] [--variants default warps=4 ...]

Each (case, variant) pair prints one line when done, so a run cut by a time limit shows how far it got.
"""
from __future__ import annotations

import argparse
import time

import torch

import scan_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["c", "vim-long", "a"], choices=sorted(scan_bench.CASES))
    parser.add_argument("--variants", nargs="+", default=["default"],
                        help="'default' or KernelConfig settings NAME=VALUE,... (benchmarks/kernel_settings.py)")
    args = parser.parse_args()
    for name in args.cases:
        inputs = scan_bench.make_inputs(scan_bench.CASES[name])
        leaves = [t for t in inputs.values() if isinstance(t, torch.Tensor) and t.is_floating_point()]
        for variant in args.variants:
            step = scan_bench.fwd_bwd(scan_bench.ours(inputs, "triton"), leaves)
            if variant != "default":
                step = scan_bench.with_settings(step, variant)
            start = time.perf_counter()
            step()
            torch.cuda.synchronize()
            print(f"{name} {variant}: forward + backward done in {time.perf_counter() - start:.1f} s", flush=True)
        del inputs, leaves
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
