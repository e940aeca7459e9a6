"""Selective-scan speed on the GPU: vssm's Triton backend vs the mamba_ssm CUDA pipeline, in one run.

    python benchmarks/scan_bench.py [--cases a c d ...] [--out DIR] [--variants warps=4 chunk=32 ...]

Cases (bf16 inputs):
  (a) VMamba-T stage 1: batch 128, 56x56, dim 96, N 1, K 4 (cross)
  (b) the same with dim 192          (c) dim 192, N 16 (VMamba v0)
  (d) Vim-tiny layer: batch 128, L 197, dim 384, N 16, K 2 (bidirectional) with z
  (e) zigzag and hilbert at (a)'s shape
  (vim-long) Vim at 1024x1024 / 16 + cls: batch 8, L 4097, dim 384, N 16, K 2 (bidirectional) with z
  (t2) (t3) (t4) VMamba-T stages 2-4 (N 1, K 4, cross): 28x28 dim 192, 14x14 dim 384 (8 of its 14 blocks), 7x7 dim 768
Columns: ours (triton, one launch over all routes, gather/merge in-kernel); the anchor = torch cross-scan (u
re-ordered into K copies) + mamba_ssm ``selective_scan_fn`` (routes as channel groups) + torch merge (n/a when
mamba_ssm is not installed); our torch backend (forward only); the byte floor = (every input read once +
output written once) / copy bandwidth measured in this run; the exp floor = one ex2 per (b, l, k, d, n) at the
H100/H200 MUFU rate (132 SMs x 16 a clock x 1.98 GHz = 4.18e12/s; forward only). Medians of
triton.testing.do_bench. A second table times kernel-config variants in the same run (``--variants``, fields of
``vssm.kernels.KernelConfig``, benchmarks/kernel_settings.py) against the defaults of the first table, with
the relative difference of their outputs; the backward of a variant runs with the variant's plan.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
from typing import Callable, Dict, List, Optional, Tuple

import torch
import triton
from triton.testing import do_bench

import kernel_settings
from vssm.kernels import kernel_config, selective_scan
from vssm.scans import get_scan

CASES = {
    "a": dict(batch=128, H=56, W=56, dim=96, N=1, scan="cross", z=False),
    "b": dict(batch=128, H=56, W=56, dim=192, N=1, scan="cross", z=False),
    "c": dict(batch=128, H=56, W=56, dim=192, N=16, scan="cross", z=False),
    "d": dict(batch=128, H=1, W=197, dim=384, N=16, scan="bidirectional", z=True),
    "e-zigzag": dict(batch=128, H=56, W=56, dim=96, N=1, scan="zigzag", z=False),
    "e-hilbert": dict(batch=128, H=56, W=56, dim=96, N=1, scan="hilbert", z=False),
    "vim-long": dict(batch=8, H=1, W=4097, dim=384, N=16, scan="bidirectional", z=True),
    "t2": dict(batch=128, H=28, W=28, dim=192, N=1, scan="cross", z=False),
    "t3": dict(batch=128, H=14, W=14, dim=384, N=1, scan="cross", z=False),
    "t4": dict(batch=128, H=7, W=7, dim=768, N=1, scan="cross", z=False),
}
EXP_RATE = 132 * 16 * 1.98e9  # ex2 results a second (MUFU), H100 SXM / H200


def copy_bandwidth() -> float:
    """Bytes/s of a large device-to-device copy (read + write)."""
    x = torch.empty(1 << 29, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=25, rep=200, return_mode="median")
    return 2 * x.numel() / (ms * 1e-3)


def make_inputs(case: Dict, device: str = "cuda", dtype=torch.bfloat16) -> Dict:
    strategy = get_scan(case["scan"])
    routes = strategy.routes(case["H"], case["W"], device)
    K, L, b, d, N = routes.num_routes, case["H"] * case["W"], case["batch"], case["dim"], case["N"]
    gen = lambda *s: torch.randn(*s, device=device, dtype=dtype)  # noqa: E731
    return dict(
        routes=routes, merge=strategy.merge, scan=case["scan"], grid=(case["H"], case["W"]), u=gen(b, L, 1, d), delta=0.5 * gen(b, L, K, d), B=gen(b, L, K, N), C=gen(b, L, K, N),
        A=-(torch.rand(K, d, N, device=device) + 0.5), D=torch.randn(K, d, device=device),
        delta_bias=0.1 * torch.randn(K, d, device=device), z=gen(b, L, 1, d) if case["z"] else None,
    )


def ours(inputs: Dict, backend: str) -> Callable[[], torch.Tensor]:
    merge = inputs["merge"]
    names = ("u", "delta", "A", "B", "C", "D", "delta_bias", "z")
    return lambda: selective_scan(*(inputs[n] for n in names), routes=inputs["routes"], merge=merge, backend=backend)


def anchor(inputs: Dict) -> Optional[Tuple[Callable[[], torch.Tensor], List[torch.Tensor]]]:
    """The mamba_ssm pipeline as VMamba / Vim run it: u re-ordered into K route copies (cross: transposes and
    flips, like VMamba's torch cross-scan; other permutations: one gather), delta/B/C already in route order
    (they are projected from the re-ordered copies), mamba_ssm ``selective_scan_fn`` with routes as channel
    groups (B, K*D, L), then the merge back to raster order (flips/transposes, or the inverse permutation).
    Returns the function and its leaf tensors (channel-first, as the anchor consumes them)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    routes = inputs["routes"]
    index = routes.index.long()
    K, T = index.shape
    b, L, _, d = inputs["u"].shape
    N = inputs["A"].shape[-1]
    H, W = inputs["grid"]
    cross = inputs["scan"] == "cross"
    inverse = torch.argsort(index, dim=1)
    like = lambda *shape: (0.5 * torch.randn(*shape, device="cuda")).to(inputs["u"].dtype)  # noqa: E731
    u_cf = inputs["u"][:, :, 0].transpose(1, 2).contiguous()  # (b, d, L)
    z_cf = inputs["z"][:, :, 0].transpose(1, 2).contiguous() if inputs["z"] is not None else None
    delta, Bs, Cs = like(b, K * d, T), like(b, K, N, T), like(b, K, N, T)
    A = inputs["A"].reshape(K * d, N).contiguous()
    D = inputs["D"].reshape(-1).contiguous()
    bias = inputs["delta_bias"].reshape(-1).contiguous()
    leaves = [t for t in (u_cf, delta, Bs, Cs, z_cf, A, D, bias) if t is not None]

    def to_routes(x: torch.Tensor) -> torch.Tensor:  # (b, d, L) -> (b, K*d, T)
        if cross:
            rows = x.view(b, d, L)
            cols = x.view(b, d, H, W).transpose(2, 3).reshape(b, d, L)
            return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1).view(b, K * d, L)
        return x[:, :, index].permute(0, 2, 1, 3).reshape(b, K * d, T)

    def from_routes(ys: torch.Tensor) -> torch.Tensor:  # (b, K, d, T) -> (b, d, L), summed over routes
        if cross:
            rows = ys[:, 0] + ys[:, 2].flip(-1)
            cols = (ys[:, 1] + ys[:, 3].flip(-1)).view(b, d, W, H).transpose(2, 3).reshape(b, d, L)
            return rows + cols
        return sum(ys[:, k][:, :, inverse[k]] for k in range(K))

    def run() -> torch.Tensor:
        zs = to_routes(z_cf) if z_cf is not None else None
        ys = selective_scan_fn(to_routes(u_cf), delta, A, Bs, Cs, D, zs, bias, delta_softplus=True)
        y = from_routes(ys.view(b, K, d, T))
        return y / K if inputs["merge"] == "mean" else y

    return run, leaves


def with_settings(fn: Callable[[], object], variant: str) -> Callable[[], object]:
    """fn run (its backward too, when fn includes it) with the variant's kernel config."""
    config = kernel_settings.parse(variant)

    def run():
        with kernel_config(config):
            return fn()

    return run


def fwd_bwd(fn: Callable[[], torch.Tensor], leaves: List[torch.Tensor]) -> Callable[[], None]:
    for t in leaves:
        t.requires_grad_(True)

    def run() -> None:
        out = fn()
        out.backward(torch.ones_like(out))
        for t in leaves:
            t.grad = None

    return run


def floor_ms(inputs: Dict, bandwidth: float) -> float:
    tensors = [inputs[n] for n in ("u", "delta", "B", "C", "z") if inputs[n] is not None]
    read = sum(t.numel() * t.element_size() for t in tensors)
    written = inputs["u"].numel() * inputs["u"].element_size()
    return (read + written) / bandwidth * 1e3


def exp_floor_ms(inputs: Dict) -> float:
    b, L, K, d = inputs["delta"].shape
    return b * L * K * d * inputs["A"].shape[-1] / EXP_RATE * 1e3


def fmt_ms(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def ratio(a: Optional[float], b: Optional[float]) -> str:
    return "n/a" if a is None or b is None else f"{a / b:.2f}x"


def bench(fn: Optional[Callable], **kw) -> Optional[float]:
    if fn is None:
        return None
    return do_bench(fn, warmup=25, rep=100, return_mode="median", **kw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--out", default=None, help="folder for scan_bench.json")
    parser.add_argument("--no-torch", action="store_true", help="skip the (slow) torch-backend column")
    parser.add_argument("--variants", nargs="*", default=["warps=4", "chunk_parallel=1"],
                        help="kernel configs to time beside the default, each NAME=VALUE[,NAME=VALUE...]")
    args = parser.parse_args()
    for variant in args.variants:
        kernel_settings.parse(variant)  # a malformed entry fails before the run
    torch.manual_seed(0)
    bandwidth = copy_bandwidth()
    meta = dict(device=torch.cuda.get_device_name(), date=datetime.date.today().isoformat(),
                torch=torch.__version__, triton=triton.__version__, copy_bandwidth_TBps=bandwidth / 1e12)
    print(f"# {meta['device']}, {meta['date']}, torch {meta['torch']}, triton {meta['triton']}, "
          f"copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    print("| case | ours fwd (ms) | anchor fwd (ms) | fwd speed-up | ours fwd+bwd (ms) | anchor fwd+bwd (ms) | fwd+bwd speed-up | torch fwd (ms) | byte floor (ms) | exp floor (ms) | ours fwd / max floor |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in args.cases:
        case = CASES[name]
        inputs = make_inputs(case)
        mine, base = ours(inputs, "triton"), anchor(inputs)
        with torch.no_grad():
            row = dict(case=name, **case, ours_fwd=bench(mine), anchor_fwd=bench(base[0]) if base else None,
                       torch_fwd=None if args.no_torch else bench(ours(inputs, "torch")))
        our_leaves = [t for t in inputs.values() if isinstance(t, torch.Tensor) and t.is_floating_point()]
        row["ours_fwd_bwd"] = bench(fwd_bwd(mine, our_leaves))
        row["anchor_fwd_bwd"] = bench(fwd_bwd(*base)) if base else None
        row["floor"] = floor_ms(inputs, bandwidth)
        row["exp_floor"] = exp_floor_ms(inputs)
        row["variants"] = {}
        for variant in args.variants:
            with torch.no_grad():
                fwd = bench(with_settings(mine, variant))
                default_out, variant_out = mine().double(), with_settings(mine, variant)().double()
            row["variants"][variant] = dict(
                fwd=fwd, fwd_bwd=bench(with_settings(fwd_bwd(mine, our_leaves), variant)),
                rel_diff=((variant_out - default_out).norm() / default_out.norm()).item())
        rows.append(row)
        print(f"| {name} | {fmt_ms(row['ours_fwd'])} | {fmt_ms(row['anchor_fwd'])} | {ratio(row['anchor_fwd'], row['ours_fwd'])} | "
              f"{fmt_ms(row['ours_fwd_bwd'])} | {fmt_ms(row['anchor_fwd_bwd'])} | {ratio(row['anchor_fwd_bwd'], row['ours_fwd_bwd'])} | "
              f"{fmt_ms(row['torch_fwd'])} | {fmt_ms(row['floor'])} | {fmt_ms(row['exp_floor'])} | "
              f"{ratio(row['ours_fwd'], max(row['floor'], row['exp_floor']))} |", flush=True)
        for variant, t in row["variants"].items():  # progress; the variant table follows at the end
            print(f"  {name} {variant}: fwd {fmt_ms(t['fwd'])}, fwd+bwd {fmt_ms(t['fwd_bwd'])}", flush=True)
        save(args.out, meta, rows)  # after every case: a run cut short keeps what it measured
        del inputs
        torch.cuda.empty_cache()
    if args.variants:
        print("\n| case | variant | fwd (ms) | vs default fwd | fwd+bwd (ms) | vs default fwd+bwd | vs anchor fwd | "
              "vs anchor fwd+bwd | fwd / max floor | output rel. diff vs default |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            for variant, t in row["variants"].items():
                print(f"| {row['case']} | {variant} | {fmt_ms(t['fwd'])} | {ratio(row['ours_fwd'], t['fwd'])} | "
                      f"{fmt_ms(t['fwd_bwd'])} | {ratio(row['ours_fwd_bwd'], t['fwd_bwd'])} | "
                      f"{ratio(row['anchor_fwd'], t['fwd'])} | {ratio(row['anchor_fwd_bwd'], t['fwd_bwd'])} | "
                      f"{ratio(t['fwd'], max(row['floor'], row['exp_floor']))} | {t['rel_diff']:.1e} |")


def save(out: Optional[str], meta: Dict, rows: List[Dict]) -> None:
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "scan_bench.json"), "w") as fh:
            json.dump(dict(meta=meta, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
