"""Build SAM 2 / 2.1 image models from a variant name, a `Sam2Config` or an official config.json."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from samkit.build.family import resolve_family_config
from samkit.build.misfit import AdviceError
from samkit.build.pipeline import (
    build_model,
    read_checkpoint,
    require_spec,
    reset_pixel_normalization,
)
from samkit.build.sam import build_mask_decoder, build_prompt_encoder
from samkit.configs.sam import get_variant, variant_names
from samkit.configs.sam2 import Sam2Config, sam2_config_from_official
from samkit.layers import LayerNorm2d
from samkit.layers.rope import RoPEAttention
from samkit.layers.sine_position import PositionEmbeddingSine
from samkit.modeling.hiera import Hiera
from samkit.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
from samkit.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
from samkit.modeling.neck import FpnNeck, ImageEncoder
from samkit.modeling.sam2 import Sam2
from samkit.modeling.sam2_video import Sam2Video

ConfigT = TypeVar("ConfigT")
_HIERA_EMBEDS = ("pos_embed", "pos_embed_window")

Sam2ConfigLike = str | os.PathLike | Sam2Config | None

# Checkpoint tensors of the video memory modules (built by `sam2_from_config(..., video=True)`).
VIDEO_KEY_PREFIXES: tuple[str, ...] = (
    "memory_attention.",
    "memory_encoder.",
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "no_obj_embed_spatial",
    "obj_ptr_proj.",
    "obj_ptr_tpos_proj.",
    "mask_downsample.",
)


def sam2_from_config(
    cfg: Sam2Config,
    video: bool = True,
    *,
    image_encoder: nn.Module | None = None,
    cross_attention: Callable[..., RoPEAttention] = RoPEAttention,
    classes: tuple[type[Sam2], type[Sam2Video]] = (Sam2, Sam2Video),
) -> Sam2:
    """An (uninitialised-weights) model from a `Sam2Config`: `Sam2Video` (image path and the
    memory modules, the full official layout) or, with `video=False`, the image-only `Sam2`.

    SAM 2 derivatives reuse it: `image_encoder` replaces the Hiera + FPN encoder of `cfg.trunk` /
    `cfg.neck` (then only `cfg.neck.d_model` is read), `cross_attention` builds the memory
    cross-attention (`RoPEAttention` arguments) and `classes` are the (image, video) model classes.
    """
    n = cfg.neck
    parts = (
        image_encoder if image_encoder is not None else _hiera_encoder(cfg),
        build_prompt_encoder(cfg.prompt_encoder),
        build_mask_decoder(cfg.mask_decoder, sam2_outputs=True),
    )
    common = dict(
        image_size=cfg.image_size,
        directly_add_no_mem_embed=cfg.directly_add_no_mem_embed,
        pixel_mean=cfg.pixel_mean,
        pixel_std=cfg.pixel_std,
    )
    if not video:
        return classes[0](*parts, **common)
    m, d = cfg.memory, n.d_model

    def rope_attention(kv_in_dim: int | None, k_repeat: bool, cls: Callable[..., RoPEAttention]):
        return cls(
            d,
            m.attn_num_heads,
            downsample_rate=m.attn_downsample_rate,
            kv_in_dim=kv_in_dim,
            rope_theta=m.attn_rope_theta,
            rope_k_repeat=k_repeat,
            feat_sizes=m.attn_feat_sizes,
        )

    layers = [
        MemoryAttentionLayer(
            rope_attention(None, False, RoPEAttention),
            rope_attention(m.mem_dim, True, cross_attention),
            d_model=d,
            dim_feedforward=m.attn_dim_feedforward,
            pos_enc_at_attn=m.attn_pos_enc_at_attn,
            pos_enc_at_cross_attn_queries=m.attn_pos_enc_at_cross_attn_queries,
            pos_enc_at_cross_attn_keys=m.attn_pos_enc_at_cross_attn_keys,
        )
        for _ in range(m.attn_num_layers)
    ]
    memory_encoder = MemoryEncoder(
        MaskDownSampler(
            d,
            m.downsampler_kernel_size,
            m.downsampler_stride,
            m.downsampler_padding,
            m.downsampler_total_stride,
        ),
        Fuser(
            [
                CXBlock(
                    d,
                    m.fuser_kernel_size,
                    m.fuser_padding,
                    m.fuser_layer_scale_init_value,
                    m.fuser_use_dwconv,
                )
                for _ in range(m.fuser_num_layers)
            ]
        ),
        PositionEmbeddingSine(m.mem_dim, 10000.0, True, None),
        in_dim=d,
        out_dim=m.mem_dim,
    )
    return classes[1](
        *parts,
        MemoryAttention(layers, d, m.attn_pos_enc_at_input),
        memory_encoder,
        **common,
        num_maskmem=m.num_maskmem,
        sigmoid_scale_for_mem_enc=m.sigmoid_scale_for_mem_enc,
        sigmoid_bias_for_mem_enc=m.sigmoid_bias_for_mem_enc,
        binarize_mask_from_pts_for_mem_enc=m.binarize_mask_from_pts_for_mem_enc,
        use_mask_input_as_output_without_sam=m.use_mask_input_as_output_without_sam,
        max_cond_frames_in_attn=m.max_cond_frames_in_attn,
        multimask_output_in_sam=m.multimask_output_in_sam,
        multimask_min_pt_num=m.multimask_min_pt_num,
        multimask_max_pt_num=m.multimask_max_pt_num,
        multimask_output_for_tracking=m.multimask_output_for_tracking,
        memory_temporal_stride_for_eval=m.memory_temporal_stride_for_eval,
        non_overlap_masks_for_mem_enc=m.non_overlap_masks_for_mem_enc,
        use_obj_ptrs_in_encoder=m.use_obj_ptrs_in_encoder,
        max_obj_ptrs_in_encoder=m.max_obj_ptrs_in_encoder,
        only_obj_ptrs_in_the_past_for_eval=m.only_obj_ptrs_in_the_past_for_eval,
        add_tpos_enc_to_obj_ptrs=cfg.add_tpos_enc_to_obj_ptrs,
        proj_tpos_enc_in_obj_ptrs=cfg.proj_tpos_enc_in_obj_ptrs,
        use_signed_tpos_enc_to_obj_ptrs=cfg.use_signed_tpos_enc_to_obj_ptrs,
        fixed_no_obj_ptr=m.fixed_no_obj_ptr,
        soft_no_obj_ptr=m.soft_no_obj_ptr,
        use_mlp_for_obj_ptr_proj=m.use_mlp_for_obj_ptr_proj,
        no_obj_embed_spatial=cfg.no_obj_embed_spatial,
    )


def _hiera_encoder(cfg: Sam2Config) -> ImageEncoder:
    t, n = cfg.trunk, cfg.neck
    trunk = Hiera(
        embed_dim=t.embed_dim,
        num_heads=t.num_heads,
        q_pool=t.q_pool,
        q_stride=t.q_stride,
        stages=t.stages,
        dim_mul=t.dim_mul,
        head_mul=t.head_mul,
        window_pos_embed_bkg_spatial_size=t.window_pos_embed_bkg_spatial_size,
        window_spec=t.window_spec,
        global_att_blocks=t.global_att_blocks,
        mlp_ratio=t.mlp_ratio,
    )
    neck = FpnNeck(
        PositionEmbeddingSine(n.pos_num_feats, n.pos_temperature, n.pos_normalize, n.pos_scale),
        d_model=n.d_model,
        backbone_channel_list=n.backbone_channel_list,
        kernel_size=n.kernel_size,
        stride=n.stride,
        padding=n.padding,
        fpn_interp_model=n.fpn_interp_model,
        fuse_type=n.fuse_type,
        fpn_top_down_levels=n.fpn_top_down_levels,
    )
    return ImageEncoder(trunk, neck, scalp=cfg.scalp)


def resolve_sam2_config(variant_or_config: Sam2ConfigLike) -> tuple[Sam2Config, str | None]:
    """(config, variant name or None) from a variant name, a `Sam2Config` or a config.json path."""
    return resolve_family_config(variant_or_config, "sam2", Sam2Config, sam2_config_from_official)


def infer_sam2_variant(state_dict: dict[str, torch.Tensor]) -> str:
    """The registered variant whose image-path tensor shapes match a checkpoint.

    Head counts and global-attention blocks cannot be read from shapes, but every official size
    has a distinct layout. SAM 2 and 2.1 share the image path; a checkpoint with the 2.1-only
    `no_obj_embed_spatial` tensor is reported as 2.1.
    """
    shapes = {
        k: tuple(v.shape) for k, v in state_dict.items() if not k.startswith(VIDEO_KEY_PREFIXES)
    }
    version = "sam2.1" if "no_obj_embed_spatial" in state_dict else "sam2"
    for name in variant_names("sam2"):
        if not name.startswith(version + "_"):
            continue
        with torch.device("meta"):
            model = sam2_from_config(get_variant(name).config, video=False)
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes:
            return name
    why = (
        "the SAM 2 checkpoint matches no official SAM 2 / 2.1 image model (compared "
        f"{len(shapes)} image-path tensors), and a custom SAM 2 architecture needs its config: "
        "head counts, attention windows and global-attention blocks cannot be read from tensor "
        "shapes. "
    )
    raise AdviceError(
        why + "Pass the config (variant name, Sam2Config or official config.json) as "
        "variant_or_config (CLI: --model CONFIG.json)",
        why + "Pass the config.json it was made with: --model CONFIG.json",
    )


def build_sam2(
    variant_or_config: Sam2ConfigLike = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    apply_postprocessing: bool | None = None,
) -> Sam2:
    """Build a SAM 2 / 2.1 model, optionally loading an official checkpoint.

    Args:
        variant_or_config: a variant name (`sam2_hiera_{t,s,b+,l}`, `sam2.1_hiera_{t,s,b+,l}`,
            or the long names such as `sam2.1_hiera_base_plus`), a `Sam2Config`, or the path of an
            official hydra-resolved config (JSON, `{"model": {...}}` with `_target_` keys). With
            only `checkpoint`, the official variant with the checkpoint's layout is used.
        checkpoint: `.pt` / `.safetensors` file, official `{"model": state_dict}` or a flat
            state dict. Every tensor loads: the model is a `Sam2Video` (image path plus the
            video memory modules); a checkpoint without any memory tensor builds the image-only
            `Sam2`. Any missing, unexpected or misshaped tensor raises a ValueError. Without a
            checkpoint the weights are randomly initialised (a `Sam2Video`).
        device: where to put the model (default CPU).
        dtype: float32 (the default) or a low precision for speed: `torch.bfloat16` /
            `torch.float16` run the image encoder in that dtype and the mask decoder under
            autocast (its matmuls and convolutions in that dtype; its weights, LayerNorms,
            softmax and residual stream in float32, which keeps the masks; see
            `samkit.runtime.accel.low_precision`).
        apply_postprocessing: True forces and False disables the decoder's dynamic multimask
            selection (what the official `apply_postprocessing` switches); None keeps the
            config's setting (on for the registered variants, as in the official default).

    Returns:
        The model in eval mode (`Sam2Video`, or `Sam2` for an image-only checkpoint).
    """
    return build_sam2_family(
        "build_sam2",
        "sam2",
        variant_or_config,
        checkpoint,
        device,
        dtype,
        apply_postprocessing,
        infer=infer_sam2_variant,
        resolve=resolve_sam2_config,
        construct=sam2_from_config,
        init_weights=functools.partial(init_sam2_weights, trunk_embeds=_HIERA_EMBEDS),
    )


def build_sam2_family(
    builder: str,
    family: str,
    spec: Any,
    checkpoint: str | os.PathLike | None,
    device: str | torch.device | None,
    dtype: torch.dtype | None,
    apply_postprocessing: bool | None,
    *,
    infer: Callable[[dict[str, torch.Tensor]], Any],
    resolve: Callable[[Any], tuple[Any, str | None]],
    construct: Callable[[Any, bool], Sam2],
    init_weights: Callable[[Sam2, Any], None],
    video_prefixes: tuple[str, ...] = VIDEO_KEY_PREFIXES,
) -> Sam2:
    """The build of SAM 2 and of the families on its model (EfficientTAM, EdgeTAM): config from
    `spec` (or from the checkpoint's tensors), construct, load, cast (`build_model`).

    Args:
        builder, family: the public builder's name (for messages) and the family whose
            checkpoint is expected (`read_checkpoint`).
        spec, checkpoint, device, dtype, apply_postprocessing: as `build_sam2`'s.
        infer: checkpoint tensors -> what `resolve` takes (a variant name or a config), when
            `spec` is None.
        resolve: spec -> (config, variant name or None).
        construct: (config, video) -> an uninitialised model; `video` is False for a
            checkpoint without any tensor under `video_prefixes` (the image-only model).
        init_weights: (model, config) -> random weights (no checkpoint).

    Raises:
        ValueError: no spec and no checkpoint, or what `resolve`, `infer` and `build_model` raise.
    """
    require_spec(builder, spec, checkpoint)
    state_dict = read_checkpoint(checkpoint, family)
    shown = spec  # what provenance messages name: the spec, or the variant inferred
    given = spec is not None
    if spec is None:
        assert state_dict is not None  # require_spec
        spec = infer(state_dict)
        shown = spec if isinstance(spec, str) else None
    cfg, _ = resolve(spec)
    cfg = with_postprocessing(cfg, apply_postprocessing)
    # An image-only checkpoint (no memory tensors at all) builds the image-only model.
    video = state_dict is None or any(k.startswith(video_prefixes) for k in state_dict)
    return build_model(
        lambda: construct(cfg, video),
        state_dict,
        checkpoint,
        reset_buffers=lambda m: reset_pixel_normalization(m, cfg),
        init_weights=lambda m: init_weights(m, cfg),
        user=f"the model of {builder}({shown!r})",
        family=family,
        spec=spec if given else None,  # an inferred architecture: no other advice
        infer=infer,
        device=device,
        dtype=dtype,
    )


def with_postprocessing(cfg: ConfigT, apply_postprocessing: bool | None) -> ConfigT:
    """`cfg` with the decoder's dynamic multimask selection forced on (True) or off (False), as
    the official `apply_postprocessing` switches it; None keeps the config's setting."""
    if apply_postprocessing is None:
        return cfg
    dec = dataclasses.replace(
        cfg.mask_decoder, dynamic_multimask_via_stability=bool(apply_postprocessing)
    )
    return dataclasses.replace(cfg, mask_decoder=dec)


def is_sam2_config(raw: Mapping[str, Any]) -> bool:
    """Whether a parsed config.json without a `"family"` is a SAM 2 one: the official
    hydra-resolved layout (`{"model": {...}}`, or `hydra_overrides`)."""
    return isinstance(raw, Mapping) and ("model" in raw or "hydra_overrides" in raw)


@torch.no_grad()
def init_sam2_weights(
    model: Sam2,
    cfg: Any,
    trunk_embeds: tuple[str, ...] = (),
    video_init: Callable[[Sam2Video], None] | None = None,
) -> None:
    """Random weights for a model of the SAM 2 layout built without a checkpoint (meta-built
    modules are empty): each module's own `reset_parameters`, LayerNorm2d to identity, the
    learned embeddings truncated normal (std 0.02), memory fuser layer scales to their init value.

    Args:
        model: a `Sam2` / `Sam2Video` (or a family's subclass) allocated on its device.
        cfg: its config (`memory.fuser_layer_scale_init_value` for the fuser's layer scales).
        trunk_embeds: the trunk's position-embedding parameters (Hiera: `pos_embed`,
            `pos_embed_window`; the ViT: `pos_embed`).
        video_init: initialises a video model's further modules (EdgeTAM's perceiver).
    """
    for m in model.modules():
        if isinstance(m, LayerNorm2d):
            m.weight.fill_(1.0)
            m.bias.zero_()
        elif hasattr(m, "reset_parameters"):
            m.reset_parameters()
    trunk = model.image_encoder.trunk
    for name in trunk_embeds:
        nn.init.trunc_normal_(getattr(trunk, name), std=0.02)
    nn.init.trunc_normal_(model.no_mem_embed, std=0.02)
    if isinstance(model, Sam2Video):
        for p in (model.maskmem_tpos_enc, model.no_mem_pos_enc, model.no_obj_embed_spatial):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        if hasattr(model, "no_obj_ptr"):
            nn.init.trunc_normal_(model.no_obj_ptr, std=0.02)
        for m in model.memory_encoder.fuser.layers:
            if m.gamma is not None:
                m.gamma.fill_(cfg.memory.fuser_layer_scale_init_value)
        if video_init is not None:
            video_init(model)
    model.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.normal_()
