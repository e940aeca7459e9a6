"""PlainMamba (arXiv:2403.17695): plain (non-hierarchical) Mamba backbone with the zig-zag scan.

Conv stem (7x7 s2 -> n x 3x3 -> 8x8 s8 projection; stride 16) -> + learned pos_embed (bicubic-resized
for other grids) -> depth x [x + drop_path(mixer(LayerNorm(x)))] (L1: dwconv3x3 + BN + GELU after block 0,
not residual) -> LayerNorm (eps 1e-6) -> mean over tokens -> head.fc.
The mixer is :class:`~vssm.layers.plain_mamba_mixer.PlainMambaMixer` (default scan ``zigzag``).
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, calculate_drop_path_rates, to_2tuple
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from ..layers.norms import LayerNorm
from ..layers.plain_mamba_mixer import PlainMambaMixer
from ..layers.pos_embed import resample_grid_pos_embed
from ._checks import check_image
from ._loading import StateDict, create_model_from_file_or_cfg, select_state_dict
from ._mixers import build_mixer


def _conv_bn_relu(in_chs: int, out_chs: int, kernel: int, stride: int, **dd: Any) -> List[nn.Module]:
    conv = nn.Conv2d(in_chs, out_chs, kernel, stride, padding=kernel // 2, bias=False, **dd)
    return [conv, nn.BatchNorm2d(out_chs, **dd), nn.ReLU(True)]


class ConvStem(nn.Module):
    """(B, C, H, W) -> (B, D, ceil(H/16), ceil(W/16)): conv7x7 s2 + BN + ReLU, ``num_convs`` x (conv3x3 +
    BN + ReLU), bottom/right zero padding to a multiple of 8, conv 8x8 s8 (bias)."""

    def __init__(self, in_chans: int, dim: int, num_convs: int, width: int = 64,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.stem = nn.Sequential(*_conv_bn_relu(in_chans, width, 7, 2, **dd))
        self.convs = nn.Sequential(*[m for _ in range(num_convs) for m in _conv_bn_relu(width, width, 3, 1, **dd)])
        self.projection = nn.Conv2d(width, dim, 8, stride=8, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(self.stem(x))
        h, w = x.shape[-2:]
        return self.projection(F.pad(x, (0, -w % 8, 0, -h % 8)))


class PlainMambaBlock(nn.Module):
    """x (B, H*W, C) -> x + drop_path(mixer(LN(x))), then (extra block only) dwconv3x3 + BN + GELU."""

    def __init__(self, dim: int, drop_path: float, with_dwconv: bool,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None, **mixer_kwargs: Any) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.norm = LayerNorm(dim, feeds_matmul=True, **dd)
        self.mamba = build_mixer(lambda: PlainMambaMixer(dim, **mixer_kwargs), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.dw = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False, **dd), nn.BatchNorm2d(dim, **dd), nn.GELU()
        ) if with_dwconv else None

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = x + self.drop_path(self.mamba(self.norm(x), H, W))
        if self.dw is not None:
            b, L, C = x.shape
            x = self.dw(x.transpose(1, 2).reshape(b, C, H, W)).flatten(2).transpose(1, 2)
        return x


class PlainMamba(nn.Module):
    def __init__(
        self,
        img_size: Union[int, Tuple[int, int]] = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 24,
        num_convs_stem: int = 1,
        layers_with_dwconv: Sequence[int] = (0,),
        d_state: int = 16,
        expand: int = 2,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        scan: Any = "zigzag",
        scan_kwargs: Optional[dict] = None,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.in_chans, self.num_classes = in_chans, num_classes
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        if min(to_2tuple(img_size)) < 2:
            raise ValueError(f"img_size: got {img_size}, expected an int or (H, W) with each side >= 2")
        # the official patch_resolution: the stem's stride-2 output size taken as floor(s / 2), then padded to
        # a multiple of 8 (for s = 16k + 1 this is one less than the run-time grid; pos_embed is then resampled)
        self.grid_size = tuple(math.ceil((s // 2) / 8) for s in to_2tuple(img_size))
        self.grad_checkpointing = False
        self.patch_embed = ConvStem(in_chans, embed_dim, num_convs_stem, **dd)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size[0] * self.grid_size[1], embed_dim, **dd))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = calculate_drop_path_rates(drop_path_rate, depth)  # on the CPU: meta construction works
        self.layers = nn.ModuleList(
            PlainMambaBlock(embed_dim, dpr[i], i in layers_with_dwconv, **dd, d_state=d_state, expand=expand, scan=scan, scan_kwargs=scan_kwargs)
            for i in range(depth)
        )
        self.norm = LayerNorm(embed_dim, eps=1e-6, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Module()
        self.head.fc = nn.Linear(embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(num_chs=embed_dim, reduction=16, module=f"layers.{i}") for i in range(depth)]
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    # timm API ---------------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {"pos_embed"} | {n for n, _ in self.named_parameters() if n.endswith(("A_log", ".D", "direction_Bs"))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^pos_embed|^patch_embed", blocks=[(r"^layers\.(\d+)", None), (r"^norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool not in (None, "", "avg"):
            raise ValueError(f"global_pool: got {global_pool!r}, PlainMamba mean-pools ('avg')")
        self.num_classes = num_classes
        dd = dict(device=self.pos_embed.device, dtype=self.pos_embed.dtype)  # the new head: the model's device,
        self.head.fc = nn.Linear(self.embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.head.fc.train(self.training)  # dtype and mode

    # forward ----------------------------------------------------------------------------------------
    def _embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        """(B, C, H, W) -> tokens (B, h*w, D) + pos_embed, and the grid h, w = ceil(ceil(H/2) / 8),
        ceil(ceil(W/2) / 8) (stem output zero-padded at the bottom/right). Any H, W >= 1, as the official model.

        ``pos_embed`` is resampled from ``grid_size`` to (h, w) in every forward when they differ, as the official
        forward does (mmcls ``resize_pos_embed``: bicubic, align_corners=False)."""
        check_image(x, self.in_chans, 1)
        x = self.patch_embed(x)
        H, W = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2) + resample_grid_pos_embed(self.pos_embed, self.grid_size, (H, W))
        return self.pos_drop(x), H, W

    def _run_block(self, block: PlainMambaBlock, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, x, H, W, use_reentrant=False)
        return block(x, H, W)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Tokens after the chosen blocks as (B, D, H/16, W/16); ``norm=True`` applies the final norm."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt: got {output_fmt!r}, expected 'NCHW'")
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        x, H, W = self._embed(x)
        intermediates = []
        blocks = self.layers[: max_index + 1] if stop_early else self.layers
        for i, block in enumerate(blocks):
            x = self._run_block(block, x, H, W)
            if i in take_indices:
                tap = self.norm(x) if norm else x
                intermediates.append(tap.transpose(1, 2).reshape(x.shape[0], tap.shape[2], H, W).contiguous())
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self, indices: Union[int, List[int]] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0)
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> normalised tokens (B, h*w, D)."""
        x, H, W = self._embed(x)
        for block in self.layers:
            x = self._run_block(block, x, H, W)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, L, D) -> mean-pooled (B, D) or logits (B, num_classes)."""
        x = self.head_drop(x.mean(1))
        return x if pre_logits else self.head.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Official checkpoint conversion --------------------------------------------------------------------
def official_to_vssm(checkpoint: Any) -> StateDict:
    """Official PlainMamba (mmcls ``{"state_dict": {"backbone.*", "head.fc.*"}}``) -> vssm keys:
    ``backbone.`` dropped, ``ln1`` -> ``norm``, ``mamba.direction_Bs`` -> ``mamba.scan_module.direction_Bs``.
    vssm's own layout passes through unchanged."""
    out: StateDict = {}
    for key, value in select_state_dict(checkpoint).items():
        key = re.sub(r"^backbone\.", "", key)
        key = re.sub(r"^ln1\.", "norm.", key)
        key = re.sub(r"\.mamba\.direction_Bs$", ".mamba.scan_module.direction_Bs", key)
        out[key] = value
    return out


def checkpoint_filter_fn(checkpoint: Any, model: PlainMamba) -> StateDict:
    """Official PlainMamba or vssm's own state dict -> this model's keys (:func:`official_to_vssm`).
    A square ``pos_embed`` of another grid is bicubic-resized to the model's ``grid_size`` (an addition: the
    official mmcv ``load_checkpoint`` warns and keeps the initial ``pos_embed``; its forward resizes from the
    built grid, as ours does). Anything left over is reported by the strict load."""
    out = official_to_vssm(checkpoint)
    value = out.get("pos_embed")
    if value is not None and value.shape != model.pos_embed.shape:
        side = math.isqrt(value.shape[1])
        if side * side != value.shape[1]:
            raise ValueError(
                f"pos_embed: got shape {tuple(value.shape)} for a model of grid {model.grid_size}, expected "
                f"(1, {model.pos_embed.shape[1]}, C) or a square grid (1, n*n, C); a non-square grid cannot be "
                "inferred, so build the model with the checkpoint's img_size (inputs of any size are then "
                "handled by resizing pos_embed in forward)"
            )
        out["pos_embed"] = resample_grid_pos_embed(value, (side, side), model.grid_size)
    return out


def _create_plainmamba(variant: str, pretrained: bool = False, **kwargs: Any) -> PlainMamba:
    return create_model_from_file_or_cfg(
        PlainMamba, variant, pretrained, checkpoint_filter_fn,
        feature_cfg=dict(out_indices=3, feature_cls="getter"),  # features_only: the last 3 blocks, as timm's ViTs
        **kwargs,
    )


def _cfg(url: str, release: str, **kwargs: Any) -> Dict[str, Any]:
    return dict(
        url=url, num_classes=1000, input_size=(3, 224, 224), pool_size=None, crop_pct=0.875, interpolation="bicubic",
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv="patch_embed.stem.0", classifier="head.fc",
        license="apache-2.0", paper_ids="arXiv:2403.17695",
        paper_name="PlainMamba: Improving Non-Hierarchical Mamba in Visual Recognition",
        origin_url="https://github.com/ChenhongyiYang/PlainMamba",
        notes=(f"Official ImageNet-1k release {release} (ChenhongyiYang/PlainMamba README), converted on load.",),
        **kwargs,
    )


_HF = "https://huggingface.co/ChenhongyiYang/PlainMamba/resolve/main/{}.pth"
default_cfgs = generate_default_cfgs({
    "plainmamba_l1.in1k": _cfg(_HF.format("l1"), "PlainMamba-L1 (l1.pth, 77.9 top-1)"),
    "plainmamba_l2.in1k": _cfg(_HF.format("l2"), "PlainMamba-L2 (l2.pth, 81.6 top-1)"),
    "plainmamba_l3.in1k": _cfg(_HF.format("l3"), "PlainMamba-L3 (l3.pth, 82.3 top-1)"),
})


@register_model
def plainmamba_l1(pretrained: bool = False, **kwargs: Any) -> PlainMamba:
    defaults = dict(embed_dim=192, depth=24, num_convs_stem=1, layers_with_dwconv=(0,))
    return _create_plainmamba("plainmamba_l1", pretrained, **{**defaults, **kwargs})


@register_model
def plainmamba_l2(pretrained: bool = False, **kwargs: Any) -> PlainMamba:
    defaults = dict(embed_dim=384, depth=24, num_convs_stem=2, layers_with_dwconv=())
    return _create_plainmamba("plainmamba_l2", pretrained, **{**defaults, **kwargs})


@register_model
def plainmamba_l3(pretrained: bool = False, **kwargs: Any) -> PlainMamba:
    defaults = dict(embed_dim=448, depth=36, num_convs_stem=2, layers_with_dwconv=())
    return _create_plainmamba("plainmamba_l3", pretrained, **{**defaults, **kwargs})
