"""Build EdgeTAM models from a variant name (`edgetam`), an `EdgeTamConfig`, an official
config.json, or a checkpoint alone (its architecture inferred from the tensor shapes).

The model is the shared SAM 2 one (`samkit.build.sam2.sam2_from_config`) with the RepViT + FPN
image encoder, the `RoPEAttentionV2` memory cross-attention and the spatial perceiver; official
checkpoints load unchanged (the state-dict keys of `edgetam.pt`, timm's trunk names included).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from typing import Any

import torch

from samkit.build.family import resolve_family_config
from samkit.build.sam2 import (
    VIDEO_KEY_PREFIXES,
    build_sam2_family,
    init_sam2_weights,
    sam2_from_config,
)
from samkit.configs.common import PromptEncoderConfig
from samkit.configs.edgetam import (
    EdgeTamConfig,
    PerceiverConfig,
    RepVitConfig,
    edgetam_config_from_official,
    is_edgetam_config,
)
from samkit.configs.sam2 import as_sam2_config, sam2_mask_decoder_config
from samkit.layers.sine_position import PositionEmbeddingSine
from samkit.modeling.edgetam import EdgeTam, EdgeTamImage
from samkit.modeling.edgetam_attention import RoPEAttentionV2
from samkit.modeling.neck import FpnNeck, ImageEncoder
from samkit.modeling.perceiver import PerceiverResampler
from samkit.modeling.repvit import RepViT
from samkit.modeling.sam2 import Sam2
from samkit.modeling.sam2_video import Sam2Video

EdgeTamConfigLike = str | os.PathLike | EdgeTamConfig | None

_VIDEO_PREFIXES = (*VIDEO_KEY_PREFIXES, "spatial_perceiver.")
_TRUNK = "image_encoder.trunk.body."


def edgetam_from_config(cfg: EdgeTamConfig, video: bool = True) -> Sam2:
    """An (uninitialised-weights) `EdgeTam` (image path + memory modules + perceiver) or, with
    `video=False`, the image-only `EdgeTamImage`."""
    t = cfg.trunk
    trunk = RepViT(t.embed_dims, t.depths, t.mlp_ratio, t.kernel_size, t.legacy)
    neck = FpnNeck(
        PositionEmbeddingSine(cfg.d_model, 10000.0, True, None),
        d_model=cfg.d_model,
        backbone_channel_list=trunk.channel_list,
        fpn_interp_model="nearest",
        fpn_top_down_levels=cfg.fpn_top_down_levels,
    )
    m, p = cfg.memory, cfg.perceiver
    cross = functools.partial(
        _cross_attention, q_sizes=cfg.q_sizes, k_sizes=cfg.k_sizes, tokens=p.num_tokens
    )
    perceiver = PerceiverResampler(
        m.mem_dim,
        p.depth,
        dim_head=p.dim_head,
        heads=p.heads,
        num_latents=p.num_latents,
        num_latents_2d=p.num_latents_2d,
        ff_mult=p.ff_mult,
        position_encoding=PositionEmbeddingSine(m.mem_dim, 10000.0, True, None),
        use_self_attn=p.use_self_attn,
    )
    sam2_cfg = as_sam2_config(cfg, scalp=cfg.scalp)
    video_cls: Any = functools.partial(EdgeTam, spatial_perceiver=perceiver)
    return sam2_from_config(
        sam2_cfg,
        video=video,
        image_encoder=ImageEncoder(trunk, neck, scalp=cfg.scalp),  # type: ignore[arg-type]
        cross_attention=cross,
        classes=(EdgeTamImage, video_cls),
    )


def _cross_attention(
    embedding_dim: int,
    num_heads: int,
    *,
    downsample_rate: int,
    kv_in_dim: int | None,
    rope_theta: float,
    rope_k_repeat: bool,
    feat_sizes: tuple[int, int],
    q_sizes: tuple[int, int],
    k_sizes: tuple[int, int],
    tokens: int,
) -> RoPEAttentionV2:
    # called by sam2_from_config with RoPEAttention's arguments (rope_k_repeat, feat_sizes unused)
    return RoPEAttentionV2(
        embedding_dim, num_heads, downsample_rate, kv_in_dim, rope_theta, q_sizes, k_sizes, tokens
    )


def resolve_edgetam_config(spec: EdgeTamConfigLike) -> tuple[EdgeTamConfig, str | None]:
    """(config, variant name or None) from a variant name, a config or a config.json path.

    Raises:
        ValueError: an unknown name, a variant of another family, or an unreadable config.
    """
    return resolve_family_config(spec, "edgetam", EdgeTamConfig, edgetam_config_from_official)


def _count(keys: list[str], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in keys if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def infer_edgetam_config(state_dict: dict[str, torch.Tensor]) -> EdgeTamConfig:
    """The `EdgeTamConfig` whose tensors a checkpoint holds: RepViT widths / depths / token
    mixer, neck width, memory and perceiver sizes are read from the shapes; what shapes cannot
    tell takes the official values (1024 px, one attention head in the memory attention and
    the perceiver, SAM 2.0 pointer settings, `edgetam.yaml`'s flags).

    Raises:
        ValueError: the tensors are not an EdgeTAM image path (no RepViT trunk / FPN neck).
    """
    sd, keys = state_dict, list(state_dict)
    n_stages = _count(keys, re.escape(_TRUNK) + r"stages_(\d+)\.")
    stem = sd.get(_TRUNK + "stem.conv2.c.weight")
    neck = sd.get("image_encoder.neck.convs.0.conv.weight")
    if stem is None or neck is None or n_stages == 0:
        raise ValueError(
            "not an EdgeTAM checkpoint: no RepViT trunk (image_encoder.trunk.body.stem.*, "
            "...stages_{i}.*) or FPN neck (image_encoder.neck.convs.0.conv.weight)"
        )
    dims, depths = [], []
    for i in range(n_stages):
        pre = f"{_TRUNK}stages_{i}.blocks."
        depths.append(_count(keys, re.escape(pre) + r"(\d+)\."))
        dims.append(int(sd[pre + "0.token_mixer.conv.c.weight"].shape[0]))
    block = f"{_TRUNK}stages_0.blocks.0."
    trunk = RepVitConfig(
        embed_dims=tuple(dims),
        depths=tuple(depths),
        mlp_ratio=int(sd[block + "channel_mixer.conv1.c.weight"].shape[0]) // dims[0],
        kernel_size=int(sd[block + "token_mixer.conv.c.weight"].shape[-1]),
        legacy=(block + "token_mixer.conv1.c.weight") in sd,
    )
    d = int(neck.shape[0])
    cfg = EdgeTamConfig(
        trunk=trunk,
        d_model=d,
        prompt_encoder=PromptEncoderConfig(embed_dim=d),
        mask_decoder=sam2_mask_decoder_config(d),
    )
    if "memory_attention.layers.0.linear1.weight" not in sd:
        return cfg  # image-only: the memory settings are unused
    mem = sd.get("memory_encoder.out_proj.weight")
    mem_dim = d if mem is None else int(mem.shape[0])
    memory = dataclasses.replace(
        cfg.memory,
        attn_num_layers=_count(keys, r"memory_attention\.layers\.(\d+)\."),
        attn_dim_feedforward=int(sd["memory_attention.layers.0.linear1.weight"].shape[0]),
        mem_dim=mem_dim,
        fuser_num_layers=_count(keys, r"memory_encoder\.fuser\.layers\.(\d+)\."),
        num_maskmem=int(sd["maskmem_tpos_enc"].shape[0]),
    )
    sp = "spatial_perceiver."
    n_lat = int(sd[sp + "latents"].shape[0]) if sp + "latents" in sd else 0
    n_2d = int(sd[sp + "latents_2d"].shape[0]) if sp + "latents_2d" in sd else 0
    perceiver = PerceiverConfig(
        depth=_count(keys, re.escape(sp) + r"layers\.(\d+)\."),
        dim_head=int(sd[sp + "layers.0.attn.to_q.weight"].shape[0]),
        heads=1,
        num_latents=n_lat,
        num_latents_2d=n_2d,
        ff_mult=int(sd[sp + "layers.0.ff.1.weight"].shape[0]) // mem_dim,
        use_self_attn=(sp + "layers.0.self_attn.to_q.weight") in sd,
    )
    side = math.isqrt(n_2d)
    return dataclasses.replace(cfg, memory=memory, perceiver=perceiver, k_sizes=(side, side))


def build_edgetam(
    variant_or_config: EdgeTamConfigLike = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    apply_postprocessing: bool | None = None,
) -> Sam2:
    """Build an EdgeTAM model, optionally loading an official checkpoint.

    Args:
        variant_or_config: `edgetam` (the official model), an `EdgeTamConfig`, or an official
            hydra-resolved config.json (its timm trunk name gives the trunk sizes). With only
            `checkpoint`, the architecture is read from the tensors (`infer_edgetam_config`).
        checkpoint: official `{"model": state_dict}` `.pt` (or a flat state dict / safetensors);
            every tensor must load (a missing, unexpected or misshaped one raises ValueError).
            A checkpoint without memory tensors builds the image-only `EdgeTamImage`.
        device: where to put the model (default CPU).
        dtype: None / float32, or a low precision as for `samkit.build_sam2`.
        apply_postprocessing: True / False forces the decoder's dynamic multimask selection on
            / off (the official `apply_postprocessing`); None keeps the config's setting.

    Returns:
        The model in eval mode (`EdgeTam`, or `EdgeTamImage`).

    Raises:
        ValueError: no variant and no checkpoint, an unknown variant, or a checkpoint of another
            family / size.
    """
    return build_sam2_family(
        "build_edgetam",
        "edgetam",
        variant_or_config,
        checkpoint,
        device,
        dtype,
        apply_postprocessing,
        infer=infer_edgetam_config,
        resolve=resolve_edgetam_config,
        construct=edgetam_from_config,
        init_weights=functools.partial(init_sam2_weights, video_init=_init_perceiver),
        video_prefixes=_VIDEO_PREFIXES,
    )


def is_edgetam_config_file(raw: Any) -> bool:
    """Registry `config_match`: an official EdgeTAM config (spatial perceiver + timm trunk)."""
    return is_edgetam_config(raw)


def _init_perceiver(model: Sam2Video) -> None:
    """Random latents of the spatial perceiver (the rest: `init_sam2_weights`)."""
    perceiver = getattr(model, "spatial_perceiver", None)
    for name in ("latents", "latents_2d"):
        if perceiver is not None and hasattr(perceiver, name):
            getattr(perceiver, name).normal_()


__all__ = [
    "build_edgetam",
    "edgetam_from_config",
    "infer_edgetam_config",
    "resolve_edgetam_config",
]
