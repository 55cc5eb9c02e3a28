"""Builders: the only place that reads config dataclasses and turns them into modules."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from samkit.build.family import resolve_family_config
from samkit.build.pipeline import (
    build_model,
    read_checkpoint,
    require_spec,
    reset_pixel_normalization,
)
from samkit.configs.sam import (
    MaskDecoderConfig,
    PromptEncoderConfig,
    SamConfig,
    TwoWayTransformerConfig,
    ViTConfig,
    sam_config_from_official,
)
from samkit.modeling.mask_decoder import MaskDecoder
from samkit.modeling.prompt_encoder import PromptEncoder
from samkit.modeling.sam import Sam
from samkit.modeling.two_way_transformer import TwoWayTransformer
from samkit.modeling.vit import ImageEncoderViT

ConfigLike = str | os.PathLike | SamConfig | None


def build_two_way_transformer(t: TwoWayTransformerConfig) -> TwoWayTransformer:
    """The mask decoder's `TwoWayTransformer` from its config (every family's decoder)."""
    return TwoWayTransformer(
        depth=t.depth,
        embedding_dim=t.embedding_dim,
        num_heads=t.num_heads,
        mlp_dim=t.mlp_dim,
        attention_downsample_rate=t.attention_downsample_rate,
        mlp_keys=t.mlp_keys,
    )


def build_mask_decoder(cfg: MaskDecoderConfig, sam2_outputs: bool = False) -> MaskDecoder:
    """A `MaskDecoder` (with its two-way transformer) from its config."""
    return MaskDecoder(
        transformer_dim=cfg.transformer_dim,
        transformer=build_two_way_transformer(cfg.transformer),
        num_multimask_outputs=cfg.num_multimask_outputs,
        iou_head_depth=cfg.iou_head_depth,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        use_high_res_features=cfg.use_high_res_features,
        iou_prediction_use_sigmoid=cfg.iou_prediction_use_sigmoid,
        dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
        dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
        dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
        pred_obj_scores=cfg.pred_obj_scores,
        pred_obj_scores_mlp=cfg.pred_obj_scores_mlp,
        use_multimask_token_for_obj_ptr=cfg.use_multimask_token_for_obj_ptr,
        sam2_outputs=sam2_outputs,
    )


def build_prompt_encoder(cfg: PromptEncoderConfig) -> PromptEncoder:
    return PromptEncoder(
        embed_dim=cfg.embed_dim,
        image_embedding_size=cfg.image_embedding_size,
        input_image_size=cfg.input_image_size,
        mask_in_chans=cfg.mask_in_chans,
    )


def vit_from_config(e: ViTConfig) -> ImageEncoderViT:
    """SAM 1's ViT image encoder (also HQ-SAM's) from its config."""
    return ImageEncoderViT(
        img_size=e.img_size,
        patch_size=e.patch_size,
        in_chans=e.in_chans,
        embed_dim=e.embed_dim,
        depth=e.depth,
        num_heads=e.num_heads,
        mlp_ratio=e.mlp_ratio,
        out_chans=e.out_chans,
        qkv_bias=e.qkv_bias,
        norm_eps=e.norm_eps,
        use_abs_pos=e.use_abs_pos,
        use_rel_pos=e.use_rel_pos,
        window_size=e.window_size,
        global_attn_indexes=e.global_attn_indexes,
    )


def sam_from_config(cfg: SamConfig) -> Sam:
    """An (uninitialised-weights) `Sam` from a `SamConfig`."""
    return Sam(
        vit_from_config(cfg.image_encoder),
        build_prompt_encoder(cfg.prompt_encoder),
        build_mask_decoder(cfg.mask_decoder),
        pixel_mean=cfg.pixel_mean,
        pixel_std=cfg.pixel_std,
        mask_threshold=cfg.mask_threshold,
    )


def _count(sd: Mapping[str, Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def infer_sam_config(sd: Mapping[str, Tensor]) -> SamConfig:
    """Infer a SAM 1 architecture from a state dict's tensor shapes.

    Embed dim, patch size and image size come from the patch embedding and `pos_embed`; depth from
    the block count; heads from the relative-position tables (their width is the head dim); window
    size and global blocks from the table lengths (2 * window - 1 vs 2 * grid - 1).
    """
    try:
        patch_w = sd["image_encoder.patch_embed.proj.weight"]  # (D, 3, p, p)
        embed_dim, in_chans, patch = patch_w.shape[0], patch_w.shape[1], patch_w.shape[2]
        depth = _count(sd, r"image_encoder\.blocks\.(\d+)\.")
        pos = sd.get("image_encoder.pos_embed")
        mlp_hidden = sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0]
        out_chans = sd["image_encoder.neck.0.weight"].shape[0]
        pe_matrix = sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"]
        prompt_dim = pe_matrix.shape[1] * 2
        mask_in_chans = sd["prompt_encoder.mask_downscaling.3.weight"].shape[0]
        transformer_dim = sd["mask_decoder.iou_token.weight"].shape[1]
        num_mask_tokens = sd["mask_decoder.mask_tokens.weight"].shape[0]
        dec_depth = _count(sd, r"mask_decoder\.transformer\.layers\.(\d+)\.")
        mlp_dim = sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]
        iou_depth = _count(sd, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.")
        iou_hidden = sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]
        internal = sd["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"]
    except KeyError as e:
        raise ValueError(f"not a SAM 1 state dict: missing {e.args[0]!r}") from None
    if depth == 0:
        raise ValueError("not a SAM 1 state dict: no image_encoder.blocks.* keys")

    use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in sd
    if pos is not None:
        grid = pos.shape[1]
    else:
        raise ValueError("cannot infer the image size: the checkpoint has no pos_embed")
    img_size = grid * patch
    window_size, global_idx = 0, []
    if use_rel_pos:
        head_dim = sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
        num_heads = embed_dim // head_dim
        for i in range(depth):
            length = sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]
            if length == 2 * grid - 1:
                global_idx.append(i)
            else:
                window_size = (length + 1) // 2
    else:
        num_heads = {768: 12, 1024: 16, 1280: 16}.get(embed_dim, max(1, embed_dim // 64))
        global_idx = list(range(depth))
    return SamConfig(
        image_encoder=ViTConfig(
            img_size=img_size,
            patch_size=patch,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_hidden / embed_dim,
            out_chans=out_chans,
            use_rel_pos=use_rel_pos,
            window_size=window_size,
            global_attn_indexes=tuple(global_idx),
            qkv_bias="image_encoder.blocks.0.attn.qkv.bias" in sd,
        ),
        prompt_encoder=PromptEncoderConfig(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=mask_in_chans,
        ),
        mask_decoder=MaskDecoderConfig(
            transformer_dim=transformer_dim,
            transformer=TwoWayTransformerConfig(
                depth=dec_depth,
                embedding_dim=transformer_dim,
                num_heads=8,  # not recoverable from shapes; every official SAM uses 8
                mlp_dim=mlp_dim,
                attention_downsample_rate=transformer_dim // internal.shape[0],
            ),
            num_multimask_outputs=num_mask_tokens - 1,
            iou_head_depth=iou_depth,
            iou_head_hidden_dim=iou_hidden,
        ),
    )


def resolve_sam_config(variant_or_config: ConfigLike) -> tuple[SamConfig, str | None]:
    """(config, default checkpoint variant name or None) from a name, config, or JSON path."""
    return resolve_family_config(variant_or_config, "sam1", SamConfig, sam_config_from_official)


def build_sam(
    variant_or_config: ConfigLike = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Sam:
    """Build a SAM 1 model, optionally loading a checkpoint.

    Args:
        variant_or_config: a variant name (`vit_b`, `vit_l`, `vit_h`), a `SamConfig`, or the path
            of a JSON file with the official constructor arguments. With only `checkpoint`, the
            architecture is inferred from the checkpoint's tensor shapes.
        checkpoint: `.pth` / `.pt` / `.safetensors` file (official format or `{"model": ...}`).
        device: where to put the model (default CPU).
        dtype: float32 (the default) or a low precision for speed: `torch.bfloat16` /
            `torch.float16` run the image encoder in that dtype and the mask decoder under
            autocast (its matmuls and convolutions in that dtype; its weights, LayerNorms,
            softmax and residual stream in float32, which keeps the masks; see
            `samkit.runtime.accel.low_precision`).

    Returns:
        The model in eval mode.
    """
    require_spec("build_sam", variant_or_config, checkpoint)
    state_dict = read_checkpoint(checkpoint, "sam1")
    if variant_or_config is None:
        cfg = infer_sam_config(state_dict)
    else:
        cfg, _ = resolve_sam_config(variant_or_config)
    return build_model(
        lambda: sam_from_config(cfg),
        state_dict,
        checkpoint,
        reset_buffers=lambda m: reset_pixel_normalization(m, cfg),
        init_weights=lambda m: _init_weights(m, cfg),
        user=f"the model of build_sam({variant_or_config!r})",
        family="sam1",
        spec=variant_or_config,
        infer=infer_sam_config,
        device=device,
        dtype=dtype,
    )


@torch.no_grad()
def _init_weights(model: Sam, cfg: SamConfig) -> None:
    """Random initialisation for a model built without a checkpoint (meta-built modules are empty)."""
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    for name, p in model.named_parameters():
        if name.endswith(("pos_embed", "rel_pos_h", "rel_pos_w")):
            p.zero_()
        elif "LayerNorm" in type(model.get_submodule(name.rsplit(".", 1)[0])).__name__:
            p.fill_(1.0 if name.endswith("weight") else 0.0)
    model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.normal_()
    reset_pixel_normalization(model, cfg)


def _registry_builder(name: str) -> Callable[..., Sam]:
    def build(checkpoint: str | os.PathLike | None = None, **kwargs: object) -> Sam:
        return build_sam(name, checkpoint=checkpoint, **kwargs)  # type: ignore[arg-type]

    build.__name__ = f"build_sam_{name}"
    return build


sam_model_registry: dict[str, Callable[..., Sam]] = {
    name: _registry_builder(name) for name in ("default", "vit_h", "vit_l", "vit_b")
}


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
