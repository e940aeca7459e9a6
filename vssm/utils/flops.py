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


def vim_flops_published_convention(model: torch.nn.Module, size: int = 224) -> int:
    """FLOPs of a Vim model counted as the published Vim-Ti / Vim-S figures (1.5G / 5.1G) were: hunto/LocalMamba's
    ``VisionMamba.flops`` (their README is the source). Per layer: in_proj, out_proj, the token LayerNorm, the
    conv (L + k - 1 steps), x_proj and dt_proj of ONE direction, and 5*L*D*N + 2*L*D per scan direction (instead of
    9*L*D*N); patch conv MACs (no bias) and an embed_dim x classes head. Only for comparing with those figures."""
    patches = (size // model.patch_size) ** 2
    L = patches + 1
    flops = patches * model.embed_dim * model.in_chans * model.patch_size ** 2 + model.embed_dim * model.num_classes
    for layer in model.layers:
        mixer = layer.mixer
        E, N, R = mixer.d_inner, mixer.d_state, mixer.dt_rank
        flops += L * model.embed_dim * 2 * E + L * E * model.embed_dim + L * model.embed_dim  # in/out_proj, norm
        flops += (L + mixer.d_conv - 1) * E * mixer.d_conv + L * E * (R + 2 * N) + L * R * E  # one direction
        flops += mixer.scan.num_routes * (5 * L * E * N + 2 * L * E)
    return flops
