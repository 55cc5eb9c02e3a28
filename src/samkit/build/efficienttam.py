"""Build EfficientTAM models from a variant name, an `EfficientTamConfig`, an official
config.json, or a checkpoint alone (its architecture inferred from the tensor shapes).

The model is the shared SAM 2 one (`samkit.build.sam2.sam2_from_config`) with the ViT image
encoder and, for the `*_1` / `*_2` variants, the pooled memory cross-attention; official
checkpoints load unchanged (same state-dict keys as `efficienttam_{ti,s}*.pt`).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

from samkit.build.family import resolve_family_config
from samkit.build.sam2 import build_sam2_family, init_sam2_weights, sam2_from_config
from samkit.configs.common import VARIANTS
from samkit.configs.efficienttam import (
    EfficientTamConfig,
    efficienttam_config_from_official,
    is_efficienttam_config,
)
from samkit.configs.sam import get_variant
from samkit.configs.sam2 import as_sam2_config
from samkit.layers.rope import RoPEAttention
from samkit.layers.sine_position import PositionEmbeddingSine
from samkit.modeling.efficienttam import EfficientTam, EfficientTamImage
from samkit.modeling.efficienttam_attention import EfficientRoPEAttention
from samkit.modeling.neck import ImageEncoder
from samkit.modeling.sam2 import Sam2
from samkit.modeling.vitdet import ViTDet, ViTDetNeck

EfficientTamConfigLike = str | os.PathLike | EfficientTamConfig | None

# checkpoint tensors of the video memory modules (as for SAM 2)
_VIDEO_PREFIXES = (
    "memory_attention.",
    "memory_encoder.",
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "obj_ptr_proj.",
    "mask_downsample.",
)
# variants whose image path differs (the cross-attention and 512 px variants share these)
_BASE_VARIANTS = ("efficienttam_ti", "efficienttam_s")


def efficienttam_from_config(cfg: EfficientTamConfig, video: bool = True) -> Sam2:
    """An (uninitialised-weights) `EfficientTam` (image path + memory modules) or, with
    `video=False`, the image-only `EfficientTamImage`."""
    t = cfg.trunk
    trunk = ViTDet(
        embed_dim=t.embed_dim,
        depth=t.depth,
        num_heads=t.num_heads,
        window_block_indexes=t.window_block_indexes,
        patch_size=t.patch_size,
        window_size=t.window_size,
        mlp_ratio=t.mlp_ratio,
        pretrain_img_size=t.pretrain_img_size,
    )
    neck = ViTDetNeck(
        PositionEmbeddingSine(cfg.d_model, 10000.0, True, None), cfg.d_model, t.embed_dim
    )
    cross: Any = RoPEAttention
    if cfg.cross_attention != "rope":
        cross = functools.partial(EfficientRoPEAttention, variant=int(cfg.cross_attention[-1]))
    sam2_cfg = as_sam2_config(cfg, scalp=0)
    return sam2_from_config(
        sam2_cfg,
        video=video,
        image_encoder=ImageEncoder(trunk, neck, scalp=0),
        cross_attention=cross,
        classes=(EfficientTamImage, EfficientTam),
    )


def resolve_efficienttam_config(
    spec: EfficientTamConfigLike,
) -> tuple[EfficientTamConfig, str | None]:
    """(config, variant name or None) from a variant name, a config or a config.json path.

    Raises:
        ValueError: an unknown name, a variant of another family, or an unreadable config.
    """
    return resolve_family_config(
        spec, "efficienttam", EfficientTamConfig, efficienttam_config_from_official
    )


def efficienttam_variant_names() -> list[str]:
    """The registered EfficientTAM variant names."""
    get_variant(_BASE_VARIANTS[0])  # registers the variants
    return sorted({v.name for v in VARIANTS.values() if v.family == "efficienttam"})


def infer_efficienttam_variant(state_dict: dict[str, torch.Tensor]) -> str:
    """The official variant whose image-path tensor shapes match a checkpoint: `efficienttam_ti`
    or `efficienttam_s`.

    The checkpoint cannot tell the cross-attention (`_1` / `_2` pool the memory, the plain models
    do not; all three have the same tensors) nor the 512 px models apart: name those variants.

    Raises:
        ValueError: no official EfficientTAM image path has these shapes (a custom size needs its
            config: head counts and windowed blocks are not in the tensors).
    """
    shapes = {k: tuple(v.shape) for k, v in state_dict.items() if not k.startswith(_VIDEO_PREFIXES)}
    for name in _BASE_VARIANTS:
        cfg, _ = resolve_efficienttam_config(name)
        with torch.device("meta"):
            model = efficienttam_from_config(cfg, video=False)
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes:
            return name
    width = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    raise ValueError(
        "the EfficientTAM checkpoint matches no official EfficientTAM image model (ViT width "
        f"{None if width is None else int(width.shape[0])}; compared {len(shapes)} tensors). A "
        "custom size needs its config (variant name, EfficientTamConfig or official config.json): "
        "head counts and windowed blocks cannot be read from tensor shapes"
    )


def build_efficienttam(
    variant_or_config: EfficientTamConfigLike = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    apply_postprocessing: bool | None = None,
) -> Sam2:
    """Build an EfficientTAM model, optionally loading an official checkpoint.

    Args:
        variant_or_config: `efficienttam_ti` / `_s`, with `_1` / `_2` (pooled memory
            cross-attention) or `_512x512`; an `EfficientTamConfig`; or an official
            hydra-resolved config.json. With only `checkpoint`, `efficienttam_ti` or `_s` by
            the tensor shapes (see `infer_efficienttam_variant`).
        checkpoint: official `{"model": state_dict}` `.pt` (or a flat state dict / safetensors);
            every tensor must load (a missing, unexpected or misshaped one raises ValueError).
            A checkpoint without memory tensors builds the image-only `EfficientTamImage`.
        device: where to put the model (default CPU).
        dtype: None / float32, or a low precision as for `samkit.build_sam2`.
        apply_postprocessing: True / False forces the decoder's dynamic multimask selection on
            / off (the official `apply_postprocessing`); None keeps the config's setting.

    Returns:
        The model in eval mode (`EfficientTam`, or `EfficientTamImage`).

    Raises:
        ValueError: no variant and no checkpoint, an unknown variant, or a checkpoint of another
            family / size.
    """
    return build_sam2_family(
        "build_efficienttam",
        "efficienttam",
        variant_or_config,
        checkpoint,
        device,
        dtype,
        apply_postprocessing,
        infer=infer_efficienttam_variant,
        resolve=resolve_efficienttam_config,
        construct=efficienttam_from_config,
        init_weights=functools.partial(init_sam2_weights, trunk_embeds=("pos_embed",)),
        video_prefixes=_VIDEO_PREFIXES,
    )


def is_efficienttam_config_file(raw: Any) -> bool:
    """Registry `config_match`: an official EfficientTAM config (ViTDetNeck) or `"family"`."""
    return is_efficienttam_config(raw)


__all__ = [
    "ViTDet",
    "build_efficienttam",
    "efficienttam_from_config",
    "infer_efficienttam_variant",
    "resolve_efficienttam_config",
]
