"""FLOPs as the vision-SSM papers count them: multiply-accumulates of convolutions and matrix products
(fvcore's convention, one per MAC) plus the selective-scan formula 9*B*L*D*N (+ B*D*L for D, + B*D*L for
z) per route, with L the route's steps and D its channels (mamba_ssm / VMamba's flops_selective_scan_fn).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

import vssm.kernels.op  # noqa: F401  (defines torch.ops.vssm.selective_scan)


def selective_scan_flops(batch: int, steps: int, routes: int, dim: int, d_state: int, with_D: bool, with_z: bool) -> int:
    channels = routes * dim
    return 9 * batch * steps * channels * d_state + (batch * steps * channels) * (int(with_D) + int(with_z))


@register_flop_formula(torch.ops.vssm.selective_scan)
def _scan_flop_formula(u, delta, A, B, C, D, delta_bias, z, index, *args, **kwargs) -> int:
    # FlopCounterMode counts 2 per MAC for matmuls; report the scan in the same unit (halved in count_flops).
    K, steps = index
    return 2 * selective_scan_flops(u[0], steps, K, A[1], A[2], D is not None, z is not None)


def count_flops(model: torch.nn.Module, input_size: Tuple[int, int, int] = (3, 224, 224)) -> int:
    """FLOPs (MAC convention) of one forward pass of a single image."""
    model = model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, *input_size))
    return counter.get_total_flops() // 2
