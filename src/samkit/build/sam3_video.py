"""Build SAM 3's video tracker (`Sam3Tracker`) from the `tracker.*` tensors of an official
`sam3.pt` checkpoint, loading them unchanged.

The official builder (`sam3.model_builder.build_tracker`, sam3 0.1.4) fixes: d_model 256,
memory width 64, memory attention of pre-norm layers with 1-head RoPE self- and cross-attention
on a 72x72 grid (rope theta 1e4, cross-attention keys of width 64 repeated), ReLU FFN, 0.1 x the
image position encoding added at the input; a memory encoder with a 3x3 / stride-2 mask
downsampler (4 steps, masks resized to 1152x1152 first), CXBlock fuser (7x7, layer scale), a
64-channel sine position encoding; num_maskmem 7, max_cond_frames_in_attn 4, multimask outputs
for 0-1 clicks and tracking, object pointers (3-layer MLP, projected temporal encoding, 16 at
most), memory selection. The number of memory-attention and fuser layers and the FFN width are
read off the tensors (the full model has 4 layers / FFN 2048 / 2 CXBlocks).
"""

from __future__ import annotations

import re

import torch

from samkit.configs.sam3 import SAM3_OFFICIAL, sam3_config_from_state_dict
from samkit.layers.rope import RoPEAttention
from samkit.layers.sine_position import PositionEmbeddingSine
from samkit.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
from samkit.modeling.memory_encoder import CXBlock, Fuser, MemoryEncoder
from samkit.modeling.sam3.interactive import build_tracker_heads
from samkit.modeling.sam3.tracker import (
    ResizingMaskDownSampler,
    Sam3Tracker,
    official_to_samkit_key,
)
from samkit.runtime.precision import autocast_decoder


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def sam3_tracker_from_sizes(
    num_attn_layers: int = 4,
    dim_feedforward: int = 2048,
    num_fuser_layers: int = 2,
    d_model: int = 256,
    mem_dim: int = 64,
    image_size: int = 1008,
    backbone_stride: int = 14,
) -> Sam3Tracker:
    """A randomly initialised tracker with the official settings and these sizes."""
    grid = image_size // backbone_stride
    heads = build_tracker_heads(d_model, image_size, backbone_stride)

    def rope(kv_in_dim: int | None, k_repeat: bool) -> RoPEAttention:
        return RoPEAttention(
            d_model, 1, kv_in_dim=kv_in_dim, rope_k_repeat=k_repeat, feat_sizes=(grid, grid)
        )

    layers = [
        MemoryAttentionLayer(
            rope(None, False),
            rope(mem_dim, True),
            d_model=d_model,
            dim_feedforward=dim_feedforward,
            pos_enc_at_attn=False,
            pos_enc_at_cross_attn_queries=False,
            pos_enc_at_cross_attn_keys=True,
        )
        for _ in range(num_attn_layers)
    ]
    mask_in = heads.sam_prompt_encoder.mask_input_size[0] * 4  # 1152
    encoder = MemoryEncoder(
        ResizingMaskDownSampler(d_model, 3, 2, 1, 16, interpol_size=(mask_in, mask_in)),
        Fuser([CXBlock(d_model, 7, 3, 1e-6, True) for _ in range(num_fuser_layers)]),
        PositionEmbeddingSine(mem_dim, 10000.0, True, None),
        in_dim=d_model,
        out_dim=mem_dim,
    )
    return Sam3Tracker(
        heads.sam_prompt_encoder,
        heads.sam_mask_decoder,
        MemoryAttention(layers, d_model, pos_enc_at_input=True),
        encoder,
        image_size=image_size,
        backbone_stride=backbone_stride,
        pixel_mean=(0.5, 0.5, 0.5),
        pixel_std=(0.5, 0.5, 0.5),
        num_maskmem=7,
        max_cond_frames_in_attn=4,
        multimask_output_in_sam=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        multimask_output_for_tracking=True,
        max_obj_ptrs_in_encoder=16,
    )


def _input_side(checkpoint_state: dict[str, torch.Tensor]) -> int:
    """The detector's input side, read off the same checkpoint's tensors (the tracker reads the
    detector's features, so it runs at that side); 1008 (the official) for tracker tensors
    alone, which do not fix it."""
    if not any(k.startswith("detector.") for k in checkpoint_state):
        return SAM3_OFFICIAL.img_size
    return sam3_config_from_state_dict(checkpoint_state).img_size


def build_sam3_tracker(
    checkpoint_state: dict[str, torch.Tensor], device: str | torch.device | None = None
) -> Sam3Tracker:
    """The tracker from an official state dict (`{"detector.*", "tracker.*"}` keys, or the
    `tracker.`-stripped ones), strictly: every tracker tensor is used, none is missing.

    Raises:
        ValueError: no tracker tensors, or missing / unexpected / misshaped ones.
    """
    prefix = "tracker."
    if any(k.startswith(prefix) for k in checkpoint_state):
        state = {k[len(prefix) :]: v for k, v in checkpoint_state.items() if k.startswith(prefix)}
    elif any(k.startswith("detector.") for k in checkpoint_state):
        raise ValueError("the checkpoint has no tracker.* tensors: SAM 3 video needs them")
    else:
        state = dict(checkpoint_state)
    n_layers = _count(state, r"transformer\.encoder\.layers\.(\d+)\.")
    n_fuser = _count(state, r"maskmem_backbone\.fuser\.layers\.(\d+)\.")
    ffn = state.get("transformer.encoder.layers.0.linear1.weight")
    if n_layers == 0 or n_fuser == 0 or ffn is None:
        raise ValueError(
            "the tracker tensors lack the memory attention (transformer.encoder.*) or the "
            "memory encoder (maskmem_backbone.*): not an official SAM 3 tracker"
        )
    with torch.device("meta"):
        model = sam3_tracker_from_sizes(
            n_layers, int(ffn.shape[0]), n_fuser, image_size=_input_side(checkpoint_state)
        )
    mapped = {official_to_samkit_key(k): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    shapes = [k for k in set(own) & set(mapped) if own[k].shape != mapped[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(
            f"tracker tensors do not fit SAM 3's tracker: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, misshaped {sorted(shapes)[:5]}"
        )
    model.load_state_dict(mapped, strict=True, assign=True)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    model.pixel_mean = torch.full((3, 1, 1), 0.5)
    model.pixel_std = torch.full((3, 1, 1), 0.5)
    return model.to(dev).eval()


def tracker_to_dtype(tracker: Sam3Tracker, dtype: torch.dtype | None) -> Sam3Tracker:
    """Run the tracker's memory attention and memory encoder in `dtype` and its mask decoder
    under `torch.autocast(dtype)`, as samkit's SAM 2 video predictor does
    (`samkit.video.build.video_predictor_for`); None or float32 leaves it in float32.

    Inputs are cast to those modules' dtype where they enter; the pointers, scores, mask
    logits and the outputs stay float32 (the memories are stored in bfloat16 either way, as
    the official tracker stores them).

    Raises:
        ValueError: a dtype other than float32, bfloat16 or float16.
    """
    if dtype is None or dtype == torch.float32:
        return tracker
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(
            f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype}"
        )
    tracker.memory_attention.to(dtype)
    tracker.memory_encoder.to(dtype)
    autocast_decoder(tracker, dtype)
    return tracker
