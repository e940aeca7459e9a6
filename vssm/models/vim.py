"""Vim (Vision Mamba, arXiv:2401.09417): plain bidirectional-Mamba backbone with a middle class token.

16x16 patch conv -> class token inserted at M//2 -> + pos_embed -> depth x [add -> RMSNorm -> mixer]
(residual stream kept apart, in fp32) -> add -> norm_f -> class-token feature -> head.
The mixer is :class:`~vssm.layers.bimamba.BiMambaMixer` (default scan ``bidirectional``).
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.utils.checkpoint
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, RmsNorm, calculate_drop_path_rates, to_2tuple
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from ..layers.bimamba import BiMambaMixer
from ..layers.pos_embed import resample_middle_cls_pos_embed
from ._checks import check_image
from ._loading import StateDict, create_model_from_file_or_cfg, key_summary, pickled_fields, select_state_dict
from ._mixers import build_mixer


class VimBlock(nn.Module):
    """(hidden, residual) -> (mixer(RmsNorm(residual')), residual') with residual' = residual + drop_path(hidden);
    ``grid`` is the (H, W) patch grid the tokens come from."""

    def __init__(self, dim: int, drop_path: float,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None, **mixer_kwargs: Any) -> None:
        super().__init__()
        self.norm = RmsNorm(dim, eps=1e-5, device=device, dtype=dtype)
        self.mixer = build_mixer(lambda: BiMambaMixer(dim, **mixer_kwargs), device, dtype)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, hidden: torch.Tensor, residual: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        residual = hidden.float() if residual is None else residual + self.drop_path(hidden).float()
        return self.mixer(self.norm(residual.to(self.norm.weight.dtype)), grid), residual


class Vim(nn.Module):
    def __init__(
        self,
        img_size: Union[int, Tuple[int, int]] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 24,
        d_state: int = 16,
        expand: int = 2,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        scan: Any = "bidirectional",
        scan_kwargs: Optional[dict] = None,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.in_chans, self.patch_size, self.num_classes = in_chans, patch_size, num_classes
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.grid_size = tuple(s // patch_size for s in to_2tuple(img_size))
        self.grad_checkpointing = False
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, **dd)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim, **dd))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size[0] * self.grid_size[1] + 1, embed_dim, **dd))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = calculate_drop_path_rates(drop_path_rate, depth)  # on the CPU: meta construction works
        self.layers = nn.ModuleList(
            VimBlock(embed_dim, dpr[i], **dd, d_state=d_state, expand=expand, scan=scan, scan_kwargs=scan_kwargs)
            for i in range(depth)
        )
        self.norm_f = RmsNorm(embed_dim, eps=1e-5, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size, module=f"layers.{i}") for i in range(depth)]
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
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
        names = {"pos_embed", "cls_token"}
        return names | {n for n, _ in self.named_parameters() if n.endswith(("A_log", ".D", "direction_Bs"))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^cls_token|^pos_embed|^patch_embed", blocks=[(r"^layers\.(\d+)", None), (r"^norm_f", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool not in (None, "", "token"):
            raise ValueError(f"global_pool: got {global_pool!r}, Vim reads the class token ('token')")
        self.num_classes = num_classes
        dd = dict(device=self.pos_embed.device, dtype=self.pos_embed.dtype)  # the new head: the model's device,
        self.head = nn.Linear(self.embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.head.train(self.training)  # dtype and mode

    # forward ----------------------------------------------------------------------------------------
    def _embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(B, C, H, W) -> tokens (B, M+1, D) with the class token at M//2, and the patch grid."""
        check_image(x, self.in_chans, self.patch_size)
        x = self.patch_embed.proj(x)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        M = x.shape[1]
        x = torch.cat([x[:, : M // 2], self.cls_token.expand(x.shape[0], -1, -1), x[:, M // 2 :]], dim=1)
        x = x + resample_middle_cls_pos_embed(self.pos_embed, self.grid_size, grid)
        return self.pos_drop(x), grid

    def _run_block(self, block: VimBlock, hidden: torch.Tensor, residual: Optional[torch.Tensor], grid: Tuple[int, int]):
        if self.grad_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, hidden, residual, grid, use_reentrant=False)
        return block(hidden, residual, grid)

    def _final_norm(self, hidden: torch.Tensor, residual: torch.Tensor, block: VimBlock) -> torch.Tensor:
        return self.norm_f((residual + block.drop_path(hidden).float()).to(self.norm_f.weight.dtype))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Residual stream (patch tokens, class token removed) after the chosen blocks as (B, D, H/16, W/16).
        ``norm=True`` applies norm_f to the taps."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt: got {output_fmt!r}, expected 'NCHW'")
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        x, (H, W) = self._embed(x)
        M = H * W
        hidden, residual = x, None
        intermediates = []
        blocks = self.layers[: max_index + 1] if stop_early else self.layers
        for i, block in enumerate(blocks):
            hidden, residual = self._run_block(block, hidden, residual, (H, W))
            if i in take_indices:
                stream = residual + block.drop_path(hidden).float()
                stream = self.norm_f(stream.to(self.norm_f.weight.dtype)) if norm else stream.to(x.dtype)
                patches = torch.cat([stream[:, : M // 2], stream[:, M // 2 + 1 :]], dim=1)
                intermediates.append(patches.transpose(1, 2).reshape(x.shape[0], patches.shape[2], H, W).contiguous())
        if intermediates_only:
            return intermediates
        return self._final_norm(hidden, residual, blocks[-1]), intermediates

    def prune_intermediate_layers(
        self, indices: Union[int, List[int]] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        if prune_head:
            self.reset_classifier(0)
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> normalised tokens (B, M+1, D), class token at M//2."""
        x, grid = self._embed(x)
        hidden, residual = x, None
        for block in self.layers:
            hidden, residual = self._run_block(block, hidden, residual, grid)
        return self._final_norm(hidden, residual, self.layers[-1])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, M+1, D) -> class-token feature (B, D) or logits (B, num_classes)."""
        x = self.head_drop(x[:, (x.shape[1] - 1) // 2])
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Official checkpoint conversion --------------------------------------------------------------------
_BRANCHES = {  # ours <- (forward-branch key, backward-branch key) under layers.{i}.mixer.
    "conv_weight": ("conv1d.weight", "conv1d_b.weight"),
    "conv_bias": ("conv1d.bias", "conv1d_b.bias"),
    "x_proj_weight": ("x_proj.weight", "x_proj_b.weight"),
    "dt_proj_weight": ("dt_proj.weight", "dt_proj_b.weight"),
    "dt_proj_bias": ("dt_proj.bias", "dt_proj_b.bias"),
    "A_log": ("A_log", "A_b_log"),
    "D": ("D", "D_b"),
}
_VSSM_MIXER_KEY = re.compile(r"^layers\.\d+\.mixer\.x_proj_weight$")


def _is_vssm_layout(state: StateDict) -> bool:
    """vssm's own Vim state dict (stacked routes) rather than the official one (two named branches)."""
    return any(_VSSM_MIXER_KEY.match(k) for k in state)


def official_patch_stride(checkpoint: Any) -> Optional[int]:
    """The patch stride an official Vim training file was made with, read from its pickled ``args``: the
    model name (``..._stride8_...`` for the Vim-Ti+/S+ fine-tunes) or ``input_size`` against the pos_embed
    grid and the patch kernel. None when the file carries no args (a bare state dict)."""
    if not isinstance(checkpoint, dict):
        return None
    args = pickled_fields(checkpoint.get("args"))
    named = re.search(r"_stride(\d+)_", str(args.get("model", "")))
    if named:
        return int(named.group(1))
    state = select_state_dict(checkpoint)
    size, pos, proj = args.get("input_size"), state.get("pos_embed"), state.get("patch_embed.proj.weight")
    if not isinstance(size, int) or pos is None or proj is None:
        return None
    side, kernel = math.isqrt(pos.shape[1] - 1), proj.shape[-1]
    if side < 2 or side * side != pos.shape[1] - 1 or (size - kernel) % (side - 1):
        return None
    return (size - kernel) // (side - 1)


def official_to_vssm(checkpoint: Any, patch_stride: int = 16) -> StateDict:
    """Official Vim (``{"model": ..., "args": ...}``, bimamba v2) -> vssm keys: the two branches of each
    mixer are stacked as routes (forward, backward). vssm's own layout passes through unchanged.
    A file made with another patch stride than ``patch_stride`` (the "+" fine-tunes) is refused."""
    state = dict(select_state_dict(checkpoint))
    if _is_vssm_layout(state):
        return state
    stride = official_patch_stride(checkpoint)
    if stride is not None and stride != patch_stride:
        model_name = pickled_fields(checkpoint.get("args")).get("model", "?")
        raise ValueError(
            f"checkpoint: an official Vim file made with patch stride {stride} (args.model {model_name!r}: a Vim-Ti+/S+ "
            f"fine-tune), expected patch stride {patch_stride}; its pos_embed would be resampled to the stride-"
            f"{patch_stride} grid and the logits would be wrong. Use the stride-{patch_stride} release "
            "(vim_t_midclstok_76p1acc.pth, vim_s_midclstok_80p5acc.pth, vim_b_midclstok_81p9acc.pth)"
        )
    out: StateDict = {}
    layer_ids = sorted({int(m.group(1)) for k in state if (m := re.match(r"^layers\.(\d+)\.mixer\.", k))})
    missing = []
    for i in layer_ids:
        prefix = f"layers.{i}.mixer."
        for ours, branch_keys in _BRANCHES.items():
            lacking = [prefix + k for k in branch_keys if prefix + k not in state]
            if lacking:
                missing += lacking
                continue
            pair = [state.pop(prefix + k) for k in branch_keys]
            out[prefix + ours] = torch.cat(pair, 0) if ours.startswith("conv_") else torch.stack(pair)
    if missing:
        raise ValueError(f"checkpoint conversion for Vim: missing keys {key_summary(missing)} (each mixer needs both branches)")
    out.update(state)
    return out


def checkpoint_filter_fn(checkpoint: Any, model: Vim) -> StateDict:
    """Official Vim or vssm's own Vim state dict -> this model's keys (:func:`official_to_vssm`); ``pos_embed``
    is resampled (class slot kept in the middle) when the model's grid differs. Official weights need a
    2-route scan; anything left over is reported by the strict load."""
    if not _is_vssm_layout(select_state_dict(checkpoint)):
        K = model.layers[0].mixer.scan.num_routes if len(model.layers) else 2
        if K != 2:
            raise ValueError(f"scan: official Vim weights have 2 routes (forward, backward), the model has {K}")
    out = official_to_vssm(checkpoint, patch_stride=model.patch_size)
    value = out.get("pos_embed")
    if value is not None and value.shape != model.pos_embed.shape:
        M = value.shape[1] - 1
        side = math.isqrt(M)
        if side * side != M:
            raise ValueError(f"pos_embed: got shape {tuple(value.shape)}, expected a square grid plus one class slot")
        out["pos_embed"] = resample_middle_cls_pos_embed(value, (side, side), model.grid_size)
    return out


def _create_vim(variant: str, pretrained: bool = False, **kwargs: Any) -> Vim:
    return create_model_from_file_or_cfg(
        Vim, variant, pretrained, checkpoint_filter_fn,
        feature_cfg=dict(out_indices=3, feature_cls="getter"),  # features_only: the last 3 blocks, as timm's ViTs
        **kwargs,
    )


def _cfg(url: str, release: str, **kwargs: Any) -> Dict[str, Any]:
    return dict(
        url=url, num_classes=1000, input_size=(3, 224, 224), pool_size=None, crop_pct=0.875, interpolation="bicubic",
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv="patch_embed.proj", classifier="head",
        license="apache-2.0", paper_ids="arXiv:2401.09417",
        paper_name="Vision Mamba: Efficient Visual Representation Learning with Bidirectional State Space Model",
        origin_url="https://github.com/hustvl/Vim",
        notes=(f"Official ImageNet-1k release {release} (huggingface.co/hustvl, linked from the hustvl/Vim README), "
               "converted on load. The stride-8 '+' fine-tunes are other models and are refused.",),
        **kwargs,
    )


_HF = "https://huggingface.co/hustvl/Vim-{}-midclstok/resolve/main/{}"
default_cfgs = generate_default_cfgs({
    "vim_tiny.in1k": _cfg(_HF.format("tiny", "vim_t_midclstok_76p1acc.pth"), "Vim-Ti (patch stride 16, 76.1 top-1)"),
    "vim_small.in1k": _cfg(_HF.format("small", "vim_s_midclstok_80p5acc.pth"), "Vim-S (patch stride 16, 80.5 top-1)"),
    "vim_base.in1k": _cfg(_HF.format("base", "vim_b_midclstok_81p9acc.pth"), "Vim-B (patch stride 16, 81.9 top-1)"),
})


@register_model
def vim_tiny(pretrained: bool = False, **kwargs: Any) -> Vim:
    return _create_vim("vim_tiny", pretrained, **{**dict(embed_dim=192, depth=24), **kwargs})


@register_model
def vim_small(pretrained: bool = False, **kwargs: Any) -> Vim:
    return _create_vim("vim_small", pretrained, **{**dict(embed_dim=384, depth=24), **kwargs})


@register_model
def vim_base(pretrained: bool = False, **kwargs: Any) -> Vim:
    return _create_vim("vim_base", pretrained, **{**dict(embed_dim=768, depth=24), **kwargs})
