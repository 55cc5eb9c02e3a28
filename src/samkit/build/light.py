"""Builders for MobileSAM and HQ-SAM: variant names or configs, or the architecture read off a
checkpoint's tensor shapes; official checkpoints load unchanged (strict, same keys)."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from samkit.build.pipeline import (
    build_model,
    read_checkpoint,
    require_spec,
    reset_pixel_normalization,
)
from samkit.build.registry import get_family, is_config_path
from samkit.build.sam import (
    build_mask_decoder,
    build_prompt_encoder,
    build_two_way_transformer,
    infer_sam_config,
    vit_from_config,
)
from samkit.configs.common import MaskDecoderConfig, PromptEncoderConfig, TwoWayTransformerConfig
from samkit.configs.light import MobileSamConfig, SamHQConfig, TinyViTConfig
from samkit.configs.sam import get_variant
from samkit.io.provenance import from_metadata, read_file_metadata
from samkit.modeling.mobile_sam import MobileSam
from samkit.modeling.sam_hq import MaskDecoderHQ, SamHQ
from samkit.modeling.tiny_vit import TinyViT

LightConfig = MobileSamConfig | SamHQConfig


def tiny_vit_from_config(cfg: TinyViTConfig) -> TinyViT:
    return TinyViT(
        img_size=cfg.img_size,
        in_chans=cfg.in_chans,
        embed_dims=cfg.embed_dims,
        depths=cfg.depths,
        num_heads=cfg.num_heads,
        window_sizes=cfg.window_sizes,
        mlp_ratio=cfg.mlp_ratio,
        mbconv_expand_ratio=cfg.mbconv_expand_ratio,
        local_conv_size=cfg.local_conv_size,
        num_classes=cfg.num_classes,
        out_chans=cfg.out_chans,
    )


def _hq_decoder(cfg: MaskDecoderConfig, vit_dim: int) -> MaskDecoderHQ:
    return MaskDecoderHQ(
        transformer_dim=cfg.transformer_dim,
        transformer=build_two_way_transformer(cfg.transformer),
        vit_dim=vit_dim,
        num_multimask_outputs=cfg.num_multimask_outputs,
        iou_head_depth=cfg.iou_head_depth,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
    )


def model_from_config(cfg: LightConfig) -> MobileSam | SamHQ:
    """An (uninitialised-weights) `MobileSam` or `SamHQ` from its config."""
    e = cfg.image_encoder
    encoder = tiny_vit_from_config(e) if isinstance(e, TinyViTConfig) else vit_from_config(e)
    pe = build_prompt_encoder(cfg.prompt_encoder)
    common: dict[str, Any] = dict(
        pixel_mean=cfg.pixel_mean, pixel_std=cfg.pixel_std, mask_threshold=cfg.mask_threshold
    )
    if isinstance(cfg, SamHQConfig):
        return SamHQ(encoder, pe, _hq_decoder(cfg.mask_decoder, cfg.vit_dim), **common)
    return MobileSam(encoder, pe, build_mask_decoder(cfg.mask_decoder), **common)  # type: ignore[arg-type]


def _count(sd: Mapping[str, Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def infer_tiny_vit_config(
    sd: Mapping[str, Tensor], prefix: str = "image_encoder."
) -> TinyViTConfig:
    """A TinyViT's arguments from its tensor shapes (all of them are visible in the weights).

    Widths come from the stem and the patch-merging convolutions, depths from the block counts,
    heads and window sizes from the attention-bias tables (heads x window**2 offsets), the MLP
    and MBConv ratios from their first layers. The image size is not in the weights: 1024.

    Raises:
        ValueError: a tensor TinyViT needs is missing.
    """
    p = prefix
    try:
        dims = [sd[p + "patch_embed.seq.2.c.weight"].shape[0]]
        for i in range(3):
            dims.append(sd[f"{p}layers.{i}.downsample.conv1.c.weight"].shape[0])
        depths = [_count(sd, rf"{re.escape(p)}layers\.{i}\.blocks\.(\d+)\.") for i in range(4)]
        # stages without attention blocks (stage 0 always) keep the official values: unused
        heads, windows = list(TinyViTConfig.num_heads), list(TinyViTConfig.window_sizes)
        mlp_ratio, conv_size = 4.0, 3
        for i in range(1, 4):
            if depths[i]:
                bias = sd[f"{p}layers.{i}.blocks.0.attn.attention_biases"]
                heads[i], windows[i] = bias.shape[0], math.isqrt(bias.shape[1])
                mlp_ratio = sd[f"{p}layers.{i}.blocks.0.mlp.fc1.weight"].shape[0] / dims[i]
                conv_size = sd[f"{p}layers.{i}.blocks.0.local_conv.c.weight"].shape[-1]
        expand = 4.0
        if depths[0]:
            expand = sd[f"{p}layers.0.blocks.0.conv1.c.weight"].shape[0] / dims[0]
        head = sd.get(p + "head.weight")
        out_chans = sd[p + "neck.0.weight"].shape[0]
        in_chans = sd[p + "patch_embed.seq.0.c.weight"].shape[1]
    except KeyError as e:
        raise ValueError(f"not a TinyViT state dict: missing {e.args[0]!r}") from None
    return TinyViTConfig(
        in_chans=in_chans,
        embed_dims=tuple(dims),  # type: ignore[arg-type]
        depths=tuple(depths),  # type: ignore[arg-type]
        num_heads=tuple(heads),  # type: ignore[arg-type]
        window_sizes=tuple(windows),  # type: ignore[arg-type]
        mlp_ratio=mlp_ratio,
        mbconv_expand_ratio=expand,
        local_conv_size=conv_size,
        num_classes=0 if head is None else head.shape[0],
        out_chans=out_chans,
    )


def _infer_heads_config(sd: Mapping[str, Tensor]) -> tuple[PromptEncoderConfig, MaskDecoderConfig]:
    """Prompt encoder and mask decoder of a 1024 px model with a TinyViT encoder (64 x 64 grid)."""
    try:
        prompt_dim = sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape[1] * 2
        mask_in = sd["prompt_encoder.mask_downscaling.3.weight"].shape[0]
        c = sd["mask_decoder.iou_token.weight"].shape[1]
        internal = sd["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"]
        t = TwoWayTransformerConfig(
            depth=_count(sd, r"mask_decoder\.transformer\.layers\.(\d+)\."),
            embedding_dim=c,
            num_heads=8,  # not visible in the weights; every official SAM decoder uses 8
            mlp_dim=sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            attention_downsample_rate=c // internal.shape[0],
        )
        dec = MaskDecoderConfig(
            transformer_dim=c,
            transformer=t,
            num_multimask_outputs=sd["mask_decoder.mask_tokens.weight"].shape[0] - 1,
            iou_head_depth=_count(sd, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
            iou_head_hidden_dim=sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        )
    except KeyError as e:
        raise ValueError(f"not a SAM-style state dict: missing {e.args[0]!r}") from None
    return PromptEncoderConfig(embed_dim=prompt_dim, mask_in_chans=mask_in), dec


def infer_light_config(sd: Mapping[str, Tensor]) -> LightConfig:
    """MobileSAM or HQ-SAM architecture from a state dict (HQ: it has `mask_decoder.hf_token`).

    Raises:
        ValueError: neither a TinyViT nor a SAM 1 ViT encoder, or missing decoder tensors.
    """
    hq = "mask_decoder.hf_token.weight" in sd
    if "image_encoder.patch_embed.seq.0.c.weight" in sd:
        enc = infer_tiny_vit_config(sd)
        pe, dec = _infer_heads_config(sd)
        if not hq:
            return MobileSamConfig(image_encoder=enc, prompt_encoder=pe, mask_decoder=dec)
    elif hq:
        s = infer_sam_config(sd)
        enc, pe, dec = s.image_encoder, s.prompt_encoder, s.mask_decoder
    else:
        raise ValueError(
            "not a MobileSAM / HQ-SAM state dict: no TinyViT encoder (image_encoder.patch_embed."
            "seq.*) and no HQ token (mask_decoder.hf_token.weight); a SAM 1 checkpoint loads "
            "with samkit.build_sam"
        )
    try:
        vit_dim = sd["mask_decoder.compress_vit_feat.0.weight"].shape[0]
    except KeyError:
        raise ValueError("HQ-SAM state dict without mask_decoder.compress_vit_feat.*") from None
    return SamHQConfig(image_encoder=enc, prompt_encoder=pe, mask_decoder=dec, vit_dim=vit_dim)


def with_recorded_img_size(cfg: LightConfig, checkpoint: str | os.PathLike | None) -> LightConfig:
    """`cfg` with the input size a samkit-written checkpoint records (its provenance), for a
    TinyViT encoder, whose tensors do not show it (`infer_tiny_vit_config` assumes 1024); the
    prompt encoder's grid follows (side / 16). Official files record none: `cfg` unchanged."""
    prov = from_metadata(read_file_metadata(checkpoint)) if checkpoint is not None else None
    if prov is None or not isinstance(cfg.image_encoder, TinyViTConfig):
        return cfg
    s = int(prov.img_size)
    if s == cfg.img_size:
        return cfg
    enc = dataclasses.replace(cfg.image_encoder, img_size=s)
    pe = dataclasses.replace(
        cfg.prompt_encoder, image_embedding_size=(s // 16, s // 16), input_image_size=(s, s)
    )
    return dataclasses.replace(cfg, image_encoder=enc, prompt_encoder=pe)


def resolve_light_config(spec: str | LightConfig, family: str) -> LightConfig:
    """A config from a variant name (`mobile_sam`, `vit_t`, `sam_hq_vit_b`, ...) or a config.

    Raises:
        ValueError: an unknown name, or a variant / config of another family.
    """
    if isinstance(spec, (MobileSamConfig, SamHQConfig)):
        cfg = spec
    elif isinstance(spec, str | os.PathLike) and is_config_path(spec):
        entry = get_family(family)
        builder = entry.builder_hint.split(" (")[0]
        raise ValueError(
            f"{spec}: {entry.display} takes a variant name ({builder}({entry.default_model!r})) "
            "or a config object, not a config.json; for a checkpoint of another size leave the "
            f"variant out: {builder}(checkpoint=...) reads its architecture from its tensors "
            "(CLI: leave --model out)"
        )
    elif isinstance(spec, str):
        cfg = get_variant(spec).config
    else:
        raise ValueError(
            f"expected a variant name or a MobileSamConfig / SamHQConfig, got {type(spec).__name__}"
        )
    if getattr(cfg, "family", None) != family:
        raise ValueError(
            f"{spec!r} is no {family} model; MobileSAM: build_mobile_sam('mobile_sam'), HQ-SAM: "
            "build_sam_hq('sam_hq_vit_b' / 'sam_hq_vit_l' / 'sam_hq_vit_h' / 'sam_hq_vit_tiny')"
        )
    return cfg


def _build(
    family: str,
    builder: str,
    spec: str | LightConfig | None,
    checkpoint: str | os.PathLike | None,
    device: str | torch.device | None,
    dtype: torch.dtype | None,
) -> Any:
    require_spec(builder, spec, checkpoint)
    sd = read_checkpoint(checkpoint, family)  # another family's file: say which
    if spec is None:
        cfg = with_recorded_img_size(infer_light_config(sd), checkpoint)
    else:
        cfg = resolve_light_config(spec, family)
    if cfg.family != family:
        raise ValueError(
            f"{checkpoint} holds a {cfg.family} model; load it with "
            f"{get_family(cfg.family).builder_hint}"
        )
    return build_model(
        lambda: model_from_config(cfg),
        sd,
        checkpoint,
        reset_buffers=lambda m: _reset_buffers(m, cfg),
        init_weights=_init_weights,
        user=f"the model of {builder}({spec!r})",
        family=family,
        spec=spec,
        infer=infer_light_config,
        device=device,
        dtype=dtype,
    )


def build_mobile_sam(
    variant_or_config: str | MobileSamConfig | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> MobileSam:
    """Build MobileSAM (`mobile_sam` / `vit_t`), optionally loading a checkpoint.

    Args:
        variant_or_config: `mobile_sam` (alias `vit_t`) or a `MobileSamConfig`; None with a
            checkpoint: the architecture is read off its tensor shapes.
        checkpoint: the official `mobile_sam.pt` (or any file in that format).
        device, dtype: as `samkit.build_sam`.

    Returns:
        The model in eval mode.

    Raises:
        ValueError: no name and no checkpoint, an HQ-SAM or SAM 1 checkpoint, mismatched keys.
    """
    return _build("mobile_sam", "build_mobile_sam", variant_or_config, checkpoint, device, dtype)


def build_sam_hq(
    variant_or_config: str | SamHQConfig | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> SamHQ:
    """Build HQ-SAM (`sam_hq_vit_b` / `_l` / `_h` / `sam_hq_vit_tiny`); arguments as
    `build_mobile_sam` (official checkpoints `sam_hq_vit_*.pth`)."""
    return _build("sam_hq", "build_sam_hq", variant_or_config, checkpoint, device, dtype)


def _reset_buffers(model: nn.Module, cfg: LightConfig) -> None:
    """Non-persistent buffers (not in checkpoints; garbage after a meta build)."""
    reset_pixel_normalization(model, cfg)
    enc = model.image_encoder
    if isinstance(enc, TinyViT):
        enc.reset_buffers()


@torch.no_grad()
def _init_weights(model: nn.Module) -> None:
    """Random weights for a model built without a checkpoint (benchmarks, smoke tests)."""
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    for name, p in model.named_parameters():
        leaf = type(model.get_submodule(name.rsplit(".", 1)[0])).__name__
        if name.endswith(("pos_embed", "rel_pos_h", "rel_pos_w", "attention_biases")):
            p.zero_()
        elif "LayerNorm" in leaf:
            p.fill_(1.0 if name.endswith("weight") else 0.0)
    model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.normal_()
