"""Resampling learned absolute position embeddings to another token grid.

Both functions are fx leaves for timm (register_notrace_function): they branch on the grid.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from timm.models import register_notrace_function


@register_notrace_function
def resample_grid_pos_embed(pos_embed: torch.Tensor, old_grid: Tuple[int, int], new_grid: Tuple[int, int]) -> torch.Tensor:
    """(1, h*w, C) raster embedding -> (1, H*W, C), bicubic (align_corners=False); unchanged if the grid is.

    Computed in float32 for half-precision embeddings and in the embedding's own dtype otherwise (float64 stays
    float64)."""
    if old_grid[0] == new_grid[0] and old_grid[1] == new_grid[1]:
        return pos_embed
    if pos_embed.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(f"pos_embed: got shape {tuple(pos_embed.shape)}, expected (1, {old_grid[0] * old_grid[1]}, C)")
    C = pos_embed.shape[-1]
    work = torch.promote_types(pos_embed.dtype, torch.float32)
    grid = pos_embed.reshape(1, old_grid[0], old_grid[1], C).permute(0, 3, 1, 2).to(work)
    grid = F.interpolate(grid, size=[new_grid[0], new_grid[1]], mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], C).to(pos_embed.dtype)


@register_notrace_function
def resample_middle_cls_pos_embed(
    pos_embed: torch.Tensor, old_grid: Tuple[int, int], new_grid: Tuple[int, int]
) -> torch.Tensor:
    """(1, M+1, C) with the class slot at M//2 (Vim) -> (1, M'+1, C) with the class slot at M'//2.

    The patch part is resampled on its grid; the class slot is moved, never interpolated.
    """
    M = old_grid[0] * old_grid[1]
    if pos_embed.shape[1] != M + 1:
        raise ValueError(f"pos_embed: got shape {tuple(pos_embed.shape)}, expected (1, {M + 1}, C)")
    if old_grid[0] == new_grid[0] and old_grid[1] == new_grid[1]:
        return pos_embed
    cls_slot = pos_embed[:, M // 2 : M // 2 + 1]
    patches = torch.cat([pos_embed[:, : M // 2], pos_embed[:, M // 2 + 1 :]], dim=1)
    patches = resample_grid_pos_embed(patches, old_grid, new_grid)
    new_M = new_grid[0] * new_grid[1]
    return torch.cat([patches[:, : new_M // 2], cls_slot, patches[:, new_M // 2 :]], dim=1)
