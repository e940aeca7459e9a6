"""Random state dicts in the official VMamba v2 classification layout (reference/official_models.md §4.1).

Used to check that ``init_cfg=dict(type='Pretrained', ...)`` goes through the checkpoint converter; the values
are random, only names and shapes follow the official files.
"""
import math
from typing import Dict, Sequence

import torch


def vmamba_v2_state_dict(
    dims: Sequence[int], depths: Sequence[int], ssm_ratio: float, d_state: int, mlp_ratio: float,
    num_classes: int = 1000, routes: int = 4,
) -> Dict[str, torch.Tensor]:
    """Official key names and shapes: v2 stem, channel-first blocks (no z gate), v3 downsample, classifier."""
    sd: Dict[str, torch.Tensor] = {}

    def put(name, *shape):
        sd[name] = torch.randn(*shape) * 0.02

    half = dims[0] // 2
    put("patch_embed.0.weight", half, 3, 3, 3), put("patch_embed.0.bias", half)
    put("patch_embed.2.weight", half), put("patch_embed.2.bias", half)
    put("patch_embed.5.weight", dims[0], half, 3, 3), put("patch_embed.5.bias", dims[0])
    put("patch_embed.7.weight", dims[0]), put("patch_embed.7.bias", dims[0])
    for i, (dim, depth) in enumerate(zip(dims, depths)):
        inner, rank, hidden = int(ssm_ratio * dim), math.ceil(dim / 16), int(mlp_ratio * dim)
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}"
            put(f"{p}.norm.weight", dim), put(f"{p}.norm.bias", dim)
            put(f"{p}.op.in_proj.weight", inner, dim)
            put(f"{p}.op.conv2d.weight", inner, 1, 3, 3)
            put(f"{p}.op.x_proj_weight", routes, rank + 2 * d_state, inner)
            put(f"{p}.op.dt_projs_weight", routes, inner, rank)
            put(f"{p}.op.dt_projs_bias", routes, inner)
            put(f"{p}.op.A_logs", routes * inner, d_state)
            put(f"{p}.op.Ds", routes * inner)
            put(f"{p}.op.out_norm.weight", inner), put(f"{p}.op.out_norm.bias", inner)
            put(f"{p}.op.out_proj.weight", dim, inner)
            put(f"{p}.norm2.weight", dim), put(f"{p}.norm2.bias", dim)
            put(f"{p}.mlp.fc1.weight", hidden, dim), put(f"{p}.mlp.fc1.bias", hidden)
            put(f"{p}.mlp.fc2.weight", dim, hidden), put(f"{p}.mlp.fc2.bias", dim)
        if i + 1 < len(dims):
            put(f"layers.{i}.downsample.1.weight", dims[i + 1], dim, 3, 3)
            put(f"layers.{i}.downsample.1.bias", dims[i + 1])
            put(f"layers.{i}.downsample.3.weight", dims[i + 1]), put(f"layers.{i}.downsample.3.bias", dims[i + 1])
    put("classifier.norm.weight", dims[-1]), put("classifier.norm.bias", dims[-1])
    put("classifier.head.weight", num_classes, dims[-1]), put("classifier.head.bias", num_classes)
    return sd
