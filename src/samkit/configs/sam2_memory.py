"""SAM 2 / 2.1 video-memory hyper-parameters (memory attention, memory encoder, tracking).

Defaults are the official `sam2*_hiera_*.yaml` values, the same for all eight official variants
(they differ only in the four version flags kept on `Sam2Config`). `memory_config_from_official`
reads them from an official hydra-resolved config; arguments the yaml leaves out take the
official constructors' defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sam2MemoryConfig:
    """Video-only settings of a SAM 2 model (official `SAM2Base` / memory module arguments)."""

    # memory attention (`MemoryAttention` + `MemoryAttentionLayer` + `RoPEAttention`)
    attn_num_layers: int = 4
    attn_dim_feedforward: int = 2048
    attn_num_heads: int = 1
    attn_downsample_rate: int = 1
    attn_rope_theta: float = 10000.0
    attn_feat_sizes: tuple[int, int] = (64, 64)
    attn_pos_enc_at_input: bool = True
    attn_pos_enc_at_attn: bool = False
    attn_pos_enc_at_cross_attn_keys: bool = True
    attn_pos_enc_at_cross_attn_queries: bool = False
    # memory encoder (`MemoryEncoder`, `MaskDownSampler`, `Fuser` of `CXBlock`s)
    mem_dim: int = 64
    downsampler_kernel_size: int = 3
    downsampler_stride: int = 2
    downsampler_padding: int = 1
    downsampler_total_stride: int = 16
    fuser_num_layers: int = 2
    fuser_kernel_size: int = 7
    fuser_padding: int = 3
    fuser_layer_scale_init_value: float = 1e-6
    fuser_use_dwconv: bool = True
    # tracking (`SAM2Base`)
    num_maskmem: int = 7
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = True
    use_mask_input_as_output_without_sam: bool = True
    max_cond_frames_in_attn: int = -1
    multimask_output_in_sam: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = True
    memory_temporal_stride_for_eval: int = 1
    non_overlap_masks_for_mem_enc: bool = False
    use_obj_ptrs_in_encoder: bool = True
    max_obj_ptrs_in_encoder: int = 16
    only_obj_ptrs_in_the_past_for_eval: bool = True
    fixed_no_obj_ptr: bool = True
    soft_no_obj_ptr: bool = False
    use_mlp_for_obj_ptr_proj: bool = True


def memory_config_from_official(
    cfg: dict[str, Any], cross_attentions: tuple[str, ...] = ("RoPEAttention",)
) -> Sam2MemoryConfig:
    """A `Sam2MemoryConfig` from the `model` mapping of an official SAM 2 config.

    `cross_attentions`: the memory cross-attention classes the caller builds (SAM 2's
    `RoPEAttention`; EfficientTAM's and EdgeTAM's variants take the same arguments).

    `binarize_mask_from_pts_for_mem_enc` defaults to True: the official
    `build_sam2_video_predictor(..., apply_postprocessing=True)` (its default) switches it on.
    """
    d = Sam2MemoryConfig()
    ma = cfg.get("memory_attention") or {}
    layer = ma.get("layer") or {}
    sa = layer.get("self_attention") or {}
    ca = layer.get("cross_attention") or {}
    me = cfg.get("memory_encoder") or {}
    ds = me.get("mask_downsampler") or {}
    fuser = me.get("fuser") or {}
    cx = fuser.get("layer") or {}
    for where, sub, names in (
        ("memory_attention.layer.self_attention", sa, ("RoPEAttention",)),
        ("memory_attention.layer.cross_attention", ca, cross_attentions),
        ("memory_encoder.fuser.layer", cx, ("CXBlock",)),
    ):
        target = str(sub.get("_target_", ""))
        if target and target.rsplit(".", 1)[-1] not in names:
            raise ValueError(f"{where}._target_ is {target!r}; samkit supports {', '.join(names)}")
    if int(sa.get("downsample_rate", 1)) != int(ca.get("downsample_rate", 1)):
        raise ValueError("memory attention: self and cross attention downsample rates differ")
    if int(sa.get("num_heads", 1)) != int(ca.get("num_heads", 1)):
        raise ValueError("memory attention: self and cross attention head counts differ")
    return Sam2MemoryConfig(
        attn_num_layers=int(ma.get("num_layers", d.attn_num_layers)),
        attn_dim_feedforward=int(layer.get("dim_feedforward", d.attn_dim_feedforward)),
        attn_num_heads=int(sa.get("num_heads", d.attn_num_heads)),
        attn_downsample_rate=int(sa.get("downsample_rate", d.attn_downsample_rate)),
        attn_rope_theta=float(sa.get("rope_theta", d.attn_rope_theta)),
        attn_feat_sizes=tuple(int(v) for v in sa.get("feat_sizes", d.attn_feat_sizes)),
        attn_pos_enc_at_input=bool(ma.get("pos_enc_at_input", d.attn_pos_enc_at_input)),
        attn_pos_enc_at_attn=bool(layer.get("pos_enc_at_attn", d.attn_pos_enc_at_attn)),
        attn_pos_enc_at_cross_attn_keys=bool(
            layer.get("pos_enc_at_cross_attn_keys", d.attn_pos_enc_at_cross_attn_keys)
        ),
        attn_pos_enc_at_cross_attn_queries=bool(
            layer.get("pos_enc_at_cross_attn_queries", d.attn_pos_enc_at_cross_attn_queries)
        ),
        mem_dim=int(me.get("out_dim", d.mem_dim)),
        downsampler_kernel_size=int(ds.get("kernel_size", 4)),
        downsampler_stride=int(ds.get("stride", 4)),
        downsampler_padding=int(ds.get("padding", 0)),
        downsampler_total_stride=int(ds.get("total_stride", 16)),
        fuser_num_layers=int(fuser.get("num_layers", d.fuser_num_layers)),
        fuser_kernel_size=int(cx.get("kernel_size", 7)),
        fuser_padding=int(cx.get("padding", 3)),
        fuser_layer_scale_init_value=float(cx.get("layer_scale_init_value", 1e-6)),
        fuser_use_dwconv=bool(cx.get("use_dwconv", True)),
        num_maskmem=int(cfg.get("num_maskmem", 7)),
        sigmoid_scale_for_mem_enc=float(cfg.get("sigmoid_scale_for_mem_enc", 1.0)),
        sigmoid_bias_for_mem_enc=float(cfg.get("sigmoid_bias_for_mem_enc", 0.0)),
        binarize_mask_from_pts_for_mem_enc=bool(
            cfg.get("binarize_mask_from_pts_for_mem_enc", True)
        ),
        use_mask_input_as_output_without_sam=bool(
            cfg.get("use_mask_input_as_output_without_sam", False)
        ),
        max_cond_frames_in_attn=int(cfg.get("max_cond_frames_in_attn", -1)),
        multimask_output_in_sam=bool(cfg.get("multimask_output_in_sam", False)),
        multimask_min_pt_num=int(cfg.get("multimask_min_pt_num", 1)),
        multimask_max_pt_num=int(cfg.get("multimask_max_pt_num", 1)),
        multimask_output_for_tracking=bool(cfg.get("multimask_output_for_tracking", False)),
        memory_temporal_stride_for_eval=int(cfg.get("memory_temporal_stride_for_eval", 1)),
        non_overlap_masks_for_mem_enc=bool(cfg.get("non_overlap_masks_for_mem_enc", False)),
        use_obj_ptrs_in_encoder=bool(cfg.get("use_obj_ptrs_in_encoder", False)),
        max_obj_ptrs_in_encoder=int(cfg.get("max_obj_ptrs_in_encoder", 16)),
        only_obj_ptrs_in_the_past_for_eval=bool(
            cfg.get("only_obj_ptrs_in_the_past_for_eval", False)
        ),
        fixed_no_obj_ptr=bool(cfg.get("fixed_no_obj_ptr", False)),
        soft_no_obj_ptr=bool(cfg.get("soft_no_obj_ptr", False)),
        use_mlp_for_obj_ptr_proj=bool(cfg.get("use_mlp_for_obj_ptr_proj", False)),
    )
