"""VMamba (Liu et al., arXiv 2401.10166): hierarchical 2-D selective-scan backbones.

``vmamba_tiny|small|base`` are the v2 releases T[s1l8], S[s2l15], B[s2l15] (d_state 1, MLP, no z-gate,
conv stem, conv downsampling); ``vmamba_*_v0`` are the vanilla models (d_state 16, z-gate, no MLP,
patchify stem, patch merging). Any registered scan strategy replaces the default cross scan with
``scan=...``; the per-route parameter sets follow ``strategy.num_routes``.

Layout: the stem and downsamplers take/give channel-first maps; blocks run channel-last (B, H, W, C).
``forward_features`` and every feature map are channel-first (B, C, H, W).
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, calculate_drop_path_rates
from timm.models import generate_default_cfgs, register_model, register_notrace_function
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers.mlp import Mlp
from ..layers.norms import LayerNorm, LayerNorm2d
from ..layers.ss2d import SS2D
from ..scans import ScanStrategy, get_scan
from ._checks import check_image
from ._loading import StateDict, create_model_from_file_or_cfg, select_state_dict
from ._mixers import build_mixer

__all__ = ["VMamba", "checkpoint_filter_fn"]


class ConvStem(nn.Module):
    """v2 stem: conv3x3 s2 (C/2) -> LN -> GELU -> conv3x3 s2 (C) -> LN. (B, 3, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, in_chans: int, dim: int,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.conv1 = nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1, **dd)
        self.norm1 = LayerNorm2d(dim // 2, **dd)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1, **dd)
        self.norm2 = LayerNorm2d(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last memory: the convs keep it and the channel norms read unit-stride rows (no copies)
        x = x.contiguous(memory_format=torch.channels_last)
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class PatchStem(nn.Module):
    """v0 stem: conv4x4 s4 -> LN. (B, 3, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, in_chans: int, dim: int,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, 4, stride=4, device=device, dtype=dtype)
        self.norm = LayerNorm2d(dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x.contiguous(memory_format=torch.channels_last)))


class ConvDownsample(nn.Module):
    """v2 ("v3") downsampling: conv3x3 s2 -> LN. (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C_out)."""

    def __init__(self, dim: int, out_dim: int,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, out_dim, 3, stride=2, padding=1, device=device, dtype=dtype)
        self.norm = LayerNorm(out_dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """v0 downsampling: 2x2 neighbours concatenated -> LN(4C) -> Linear(4C, C_out). Odd sizes are
    zero-padded at the bottom/right as in the official model. (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C_out)."""

    def __init__(self, dim: int, out_dim: int,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.norm = LayerNorm(4 * dim, feeds_matmul=True, device=device, dtype=dtype)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_to_even(x)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


@register_notrace_function  # fx: one call (it branches on the size; fx wraps only public names)
def pad_to_even(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) zero-padded at the bottom/right to even H and W."""
    H, W = x.shape[1], x.shape[2]
    if H % 2 or W % 2:
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
    return x


class VSSBlock(nn.Module):
    """x + DropPath(SS2D(LN(x))) [+ DropPath(MLP(LN(x)))], channel-last (B, H, W, C)."""

    def __init__(self, dim: int, mlp_ratio: float, drop_path: float,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None, **mixer_kwargs: Any) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.norm = LayerNorm(dim, feeds_matmul=True, **dd)
        self.op = build_mixer(lambda: SS2D(dim, **mixer_kwargs), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if mlp_ratio > 0:
            self.norm2 = LayerNorm(dim, feeds_matmul=True, **dd)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), **dd)
        else:
            self.norm2 = self.mlp = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class VMambaStage(nn.Module):
    """Blocks at one resolution, then (except in the last stage) a downsampler."""

    def __init__(self, blocks: List[VSSBlock], downsample: Optional[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.grad_checkpointing = False

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.grad_checkpointing and self.training else block(x)
        return x


class VMamba(nn.Module):
    """Hierarchical VMamba backbone with a classification head.

    Args: depths per stage; dims (first stage width, doubled per stage, or a list); d_state, ssm_ratio,
    mlp_ratio (0 = no MLP), gated (v0 z-gate), conv_bias (SS2D depthwise conv), stem ("conv" v2 | "patch" v0),
    downsample ("conv" v2 | "merge" v0), scan (any registered strategy) and scan_kwargs (one dict for every
    stage, or one per stage, e.g. atrous rates growing with depth).
    """

    def __init__(
        self,
        depths: Sequence[int] = (2, 2, 8, 2),
        dims: Union[int, Sequence[int]] = 96,
        d_state: int = 1,
        ssm_ratio: float = 1.0,
        mlp_ratio: float = 4.0,
        gated: bool = False,
        conv_bias: bool = False,
        stem: str = "conv",
        downsample: str = "conv",
        scan: Union[str, ScanStrategy] = "cross",
        scan_kwargs: Optional[Union[dict, Sequence[dict]]] = None,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if stem not in ("conv", "patch"):
            raise ValueError(f"stem: got {stem!r}, expected 'conv' or 'patch'")
        if downsample not in ("conv", "merge"):
            raise ValueError(f"downsample: got {downsample!r}, expected 'conv' or 'merge'")
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool: got {global_pool!r}, expected 'avg' or ''")
        dims = [dims * 2 ** i for i in range(len(depths))] if isinstance(dims, int) else list(dims)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = dims[-1]
        self.patch_embed = (ConvStem if stem == "conv" else PatchStem)(in_chans, dims[0], **dd)
        down_cls = ConvDownsample if downsample == "conv" else PatchMerging
        rates = calculate_drop_path_rates(drop_path_rate, sum(depths))  # on the CPU: meta construction works
        if scan_kwargs is None or isinstance(scan_kwargs, dict):
            scan_kwargs = [scan_kwargs] * len(depths)
        if len(scan_kwargs) != len(depths):
            raise ValueError(f"scan_kwargs: got {len(scan_kwargs)} dicts, expected one or one per stage ({len(depths)})")
        self.layers = nn.ModuleList()
        self.feature_info = []
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            # One strategy per stage: its route tables are built once per size and shared by the blocks.
            strategy = get_scan(scan, **(scan_kwargs[i] or {}))
            mixer = dict(d_state=d_state, ssm_ratio=ssm_ratio, gated=gated, conv_bias=conv_bias, scan=strategy)
            blocks = [VSSBlock(dims[i], mlp_ratio, rates[start + j], **dd, **mixer) for j in range(depth)]
            last = i == len(depths) - 1
            self.layers.append(VMambaStage(blocks, None if last else down_cls(dims[i], dims[i + 1], **dd)))
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f"layers.{i}"))
        self.norm = LayerNorm(dims[-1], **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dims[-1], num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # timm API ---------------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {name for name, _ in self.named_parameters() if name.endswith(("A_logs", "Ds", "direction_Bs"))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r"^patch_embed",
            blocks=r"^layers\.(\d+)" if coarse else [(r"^layers\.(\d+)\.downsample", (0,)), (r"^layers\.(\d+)\.blocks\.(\d+)", None), (r"^norm", (99999,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        like = next(self.patch_embed.parameters())  # the new head: the model's device, dtype and mode
        dd = dict(device=like.device, dtype=like.dtype)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.head.train(self.training)

    # forward ----------------------------------------------------------------------------------------
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Per-stage maps (B, C_i, H/2^(i+2), W/2^(i+2)), taken before each stage's downsampling."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt: got {output_fmt!r}, expected 'NCHW'")
        check_image(x, self.in_chans, 4)
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        x = self.patch_embed(x).permute(0, 2, 3, 1)
        intermediates = []
        last = len(self.layers) - 1
        stages = self.layers[: max_index + 1] if stop_early else self.layers
        for i, stage in enumerate(stages):
            x = stage.run_blocks(x)
            if i in take_indices:
                feature = self.norm(x) if norm and i == last else x
                intermediates.append(feature.permute(0, 3, 1, 2).contiguous())
            x = stage.downsample(x)
        if intermediates_only:
            return intermediates
        return self.norm(x).permute(0, 3, 1, 2), intermediates

    def prune_intermediate_layers(
        self, indices: Union[int, List[int]] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        self.layers[-1].downsample = nn.Identity()
        if prune_norm or max_index < len(self.feature_info) - 1:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> normalised last-stage map (B, C, H/32, W/32)."""
        check_image(x, self.in_chans, 4)
        x = self.patch_embed(x).permute(0, 2, 3, 1)
        for stage in self.layers:
            x = stage.downsample(stage.run_blocks(x))
        return self.norm(x).permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, C, h, w) -> pooled (B, C) features or logits (B, num_classes)."""
        if self.global_pool == "avg":
            x = x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Official checkpoint conversion --------------------------------------------------------------------
_RENAMES = [
    # oldest v0 releases (renamed by the official loader on load)
    (r"^layers\.(\d+)\.blocks\.(\d+)\.ln_1\.", r"layers.\1.blocks.\2.norm."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.self_attention\.", r"layers.\1.blocks.\2.op."),
    # v2 conv stem (Sequential with identity permutes) and v0 patch stem
    (r"^patch_embed\.0\.", "patch_embed.conv1."),
    (r"^patch_embed\.2\.", "patch_embed.norm1."),
    (r"^patch_embed\.5\.", "patch_embed.conv2."),
    (r"^patch_embed\.7\.", "patch_embed.norm2."),
    # v2 downsampling (Sequential with identity permutes)
    (r"^layers\.(\d+)\.downsample\.1\.", r"layers.\1.downsample.conv."),
    (r"^layers\.(\d+)\.downsample\.3\.", r"layers.\1.downsample.norm."),
    (r"^classifier\.norm\.", "norm."),
    (r"^classifier\.head\.", "head."),
]


def official_to_vssm(checkpoint: Any) -> StateDict:
    """Official VMamba (v2, v0 and the oldest v0 key names) -> vssm keys; vssm's own layout passes through.

    Official files hold the weights under ``model`` next to a pickled config (read safely by the loader).
    A v0 file is told by its stem (``patch_embed.0`` without the v2 stem's ``patch_embed.5``). Linear weights
    stored as 1x1 convs are squeezed. Keys are otherwise kept, so anything the model lacks or the file lacks
    is reported by the strict load.
    """
    state = select_state_dict(checkpoint)
    v0_stem = "patch_embed.0.weight" in state and "patch_embed.5.weight" not in state
    out: StateDict = {}
    for key, value in state.items():
        if v0_stem and key.startswith(("patch_embed.0.", "patch_embed.2.")):
            key = key.replace("patch_embed.0.", "patch_embed.proj.").replace("patch_embed.2.", "patch_embed.norm.")
        for pattern, repl in _RENAMES:
            key = re.sub(pattern, repl, key)
        if key.endswith(("in_proj.weight", "out_proj.weight", "fc1.weight", "fc2.weight")) and value.dim() == 4:
            value = value.flatten(1)
        out[key] = value
    return out


def checkpoint_filter_fn(checkpoint: Any, model: VMamba) -> StateDict:
    """Official VMamba or vssm's own state dict -> this model's keys (:func:`official_to_vssm`; VMamba has no
    position embedding, so nothing depends on the model)."""
    return official_to_vssm(checkpoint)


def _input_size_overlay(img_size: Union[int, Sequence[int]], in_chans: int) -> Dict[str, Tuple[int, ...]]:
    """pretrained_cfg entries for a nominal ``img_size`` (int or (H, W)): input_size and the head's pool_size."""
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if len(size) != 2 or not all(isinstance(s, int) and s >= 4 for s in size):
        raise ValueError(f"img_size: got {img_size!r}, expected an int or (H, W) of ints >= 4")
    return dict(input_size=(in_chans, *size), pool_size=tuple(math.ceil(s / 32) for s in size))


def _create_vmamba(variant: str, pretrained: bool = False, **kwargs: Any) -> VMamba:
    img_size = kwargs.pop("img_size", None)
    if img_size is not None:
        # The model itself takes any size (no position embedding); img_size sets the input size that
        # timm's data config (resolve_data_config) reads from pretrained_cfg.
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
        overlay.update(_input_size_overlay(img_size, kwargs.get("in_chans", 3)))
        kwargs["pretrained_cfg_overlay"] = overlay
    return create_model_from_file_or_cfg(
        VMamba, variant, pretrained, checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"),
        **kwargs,
    )


def _cfg(first_conv: str, url: str, release: str, **kwargs: Any) -> Dict[str, Any]:
    return dict(
        url=url, num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875, interpolation="bicubic",
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv=first_conv, classifier="head",
        license="mit", paper_ids="arXiv:2401.10166", paper_name="VMamba: Visual State Space Model",
        origin_url="https://github.com/MzeroMiko/VMamba",
        notes=(f"Official ImageNet-1k release {release} (MzeroMiko/VMamba README / assets/performance.md); the "
               "file's 'model' weights (not 'model_ema', as the official downstream loader), converted on load.",),
        **kwargs,
    )


_RELEASES = "https://github.com/MzeroMiko/VMamba/releases/download/%23{}/{}"
default_cfgs = generate_default_cfgs({
    "vmamba_tiny.in1k": _cfg("patch_embed.conv1", _RELEASES.format("v2cls", "vssm1_tiny_0230s_ckpt_epoch_264.pth"),
                             "v2 VMamba-T[s1l8] (vmambav2v_tiny_224, 82.6 top-1)"),
    "vmamba_small.in1k": _cfg("patch_embed.conv1", _RELEASES.format("v2cls", "vssm_small_0229_ckpt_epoch_222.pth"),
                              "v2 VMamba-S[s2l15] (vmambav2_small_224, 83.6 top-1)"),
    "vmamba_base.in1k": _cfg("patch_embed.conv1", _RELEASES.format("v2cls", "vssm_base_0229_ckpt_epoch_237.pth"),
                             "v2 VMamba-B[s2l15] (vmambav2_base_224, 83.9 top-1)"),
    "vmamba_tiny_v0.in1k": _cfg("patch_embed.proj", _RELEASES.format("v0cls", "vssmtiny_dp01_ckpt_epoch_292.pth"),
                                "v0 Vanilla-VMamba-T (vmambav0_tiny_224, 82.2 top-1, trained without EMA)"),
    "vmamba_small_v0.in1k": _cfg("patch_embed.proj", _RELEASES.format("v0cls", "vssmsmall_dp03_ckpt_epoch_238.pth"),
                                 "v0 Vanilla-VMamba-S (vmambav0_small_224, 83.5 top-1)"),
    "vmamba_base_v0.in1k": _cfg("patch_embed.proj", _RELEASES.format("v0cls", "vssmbase_dp06_ckpt_epoch_241.pth"),
                                "v0 Vanilla-VMamba-B (vmambav0_base_224, 83.7 top-1)"),
})

_V2 = dict(d_state=1, mlp_ratio=4.0, gated=False, conv_bias=False, stem="conv", downsample="conv")
_V0 = dict(d_state=16, ssm_ratio=2.0, mlp_ratio=0.0, gated=True, conv_bias=True, stem="patch", downsample="merge")


def _model(variant: str, pretrained: bool, defaults: Dict[str, Any], kwargs: Dict[str, Any]) -> VMamba:
    return _create_vmamba(variant, pretrained, **{**defaults, **kwargs})


@register_model
def vmamba_tiny(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """VMamba-T [s1l8]: dims 96, depths 2-2-8-2, ssm_ratio 1, d_state 1."""
    return _model("vmamba_tiny", pretrained, dict(_V2, depths=(2, 2, 8, 2), dims=96, ssm_ratio=1.0, drop_path_rate=0.2), kwargs)


@register_model
def vmamba_small(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """VMamba-S [s2l15]: dims 96, depths 2-2-15-2, ssm_ratio 2, d_state 1."""
    return _model("vmamba_small", pretrained, dict(_V2, depths=(2, 2, 15, 2), dims=96, ssm_ratio=2.0, drop_path_rate=0.3), kwargs)


@register_model
def vmamba_base(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """VMamba-B [s2l15]: dims 128, depths 2-2-15-2, ssm_ratio 2, d_state 1."""
    return _model("vmamba_base", pretrained, dict(_V2, depths=(2, 2, 15, 2), dims=128, ssm_ratio=2.0, drop_path_rate=0.6), kwargs)


@register_model
def vmamba_tiny_v0(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """Vanilla VMamba-T: dims 96, depths 2-2-9-2, d_state 16, z-gate, no MLP."""
    return _model("vmamba_tiny_v0", pretrained, dict(_V0, depths=(2, 2, 9, 2), dims=96, drop_path_rate=0.2), kwargs)


@register_model
def vmamba_small_v0(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """Vanilla VMamba-S: dims 96, depths 2-2-27-2."""
    return _model("vmamba_small_v0", pretrained, dict(_V0, depths=(2, 2, 27, 2), dims=96, drop_path_rate=0.3), kwargs)


@register_model
def vmamba_base_v0(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """Vanilla VMamba-B: dims 128, depths 2-2-27-2."""
    return _model("vmamba_base_v0", pretrained, dict(_V0, depths=(2, 2, 27, 2), dims=128, drop_path_rate=0.6), kwargs)
