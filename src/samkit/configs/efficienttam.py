"""EfficientTAM variants (yformer/EfficientTAM, Apache-2.0) as frozen dataclasses, registered in
the one variant registry (`samkit.configs.common`).

EfficientTAM is SAM 2 with a plain ViT image encoder (`ViTDetConfig`, one 16x feature level, no
high-resolution decoder features) and, in its `*_1` / `*_2` models, an efficient memory
cross-attention that pools the memory 2x2 (`cross_attention` "efficient1" / "efficient2"; the
plain models use SAM 2's RoPE attention, "rope"). Everything else (prompt encoder, mask decoder,
memory attention layout, memory encoder, object pointers) is the SAM 2.0 layout: the official
yaml files (`efficient_track_anything/configs/efficienttam/efficienttam_{ti,s}*.yaml`) set no
SAM 2.1 flag (no `no_obj_embed_spatial`, no temporal encoding of object pointers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from samkit.configs.common import MaskDecoderConfig, PromptEncoderConfig, Variant, register
from samkit.configs.official import (
    is_official_config,
    model_mapping,
    target_name,
    video_flags,
    with_decoder_extra_args,
)
from samkit.configs.sam2 import sam2_mask_decoder_config
from samkit.configs.sam2_memory import Sam2MemoryConfig, memory_config_from_official

CROSS_ATTENTIONS = ("rope", "efficient1", "efficient2")
# official cross-attention class -> `cross_attention`
_CROSS_TARGETS = {
    "RoPEAttention": "rope",
    "EfficientRoPEAttention1": "efficient1",
    "EfficientRoPEAttention2": "efficient2",
}


@dataclass(frozen=True)
class ViTDetConfig:
    """The EfficientTAM ViT trunk (official `backbones/vitdet.py` `ViT` arguments)."""

    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    window_block_indexes: tuple[int, ...] = (0, 1, 3, 4, 6, 7, 9, 10)
    patch_size: int = 16
    window_size: int = 14
    mlp_ratio: float = 4.0
    pretrain_img_size: int = 224


def _decoder(d_model: int) -> MaskDecoderConfig:
    return dataclasses.replace(sam2_mask_decoder_config(d_model), use_high_res_features=False)


@dataclass(frozen=True)
class EfficientTamConfig:
    """An EfficientTAM model: ViT + one-level neck, the SAM 2 heads and memory modules.

    `d_model` is the neck / prompt / decoder / memory-attention width (256 in every official
    model); `cross_attention` selects the memory cross-attention ("rope", "efficient1",
    "efficient2"), which the checkpoint's tensors cannot tell apart.
    """

    trunk: ViTDetConfig = field(default_factory=ViTDetConfig)
    d_model: int = 256
    image_size: int = 1024
    backbone_stride: int = 16
    cross_attention: str = "rope"
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=lambda: _decoder(256))
    directly_add_no_mem_embed: bool = True
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    no_obj_embed_spatial: bool = False
    proj_tpos_enc_in_obj_ptrs: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False
    add_tpos_enc_to_obj_ptrs: bool = False
    memory: Sam2MemoryConfig = field(default_factory=Sam2MemoryConfig)
    family: str = "efficienttam"

    def __post_init__(self) -> None:
        if self.cross_attention not in CROSS_ATTENTIONS:
            raise ValueError(
                f"cross_attention must be one of {', '.join(CROSS_ATTENTIONS)}, "
                f"got {self.cross_attention!r}"
            )

    @property
    def img_size(self) -> int:
        return self.image_size


def efficienttam_config(
    embed_dim: int, num_heads: int, cross_attention: str = "rope", image_size: int = 1024
) -> EfficientTamConfig:
    """The official layout (`efficienttam_{ti,s}[_1|_2|_512x512].yaml`) with a ViT size."""
    grid = image_size // 16
    memory = dataclasses.replace(Sam2MemoryConfig(), attn_feat_sizes=(grid, grid))
    return EfficientTamConfig(
        trunk=ViTDetConfig(embed_dim=embed_dim, num_heads=num_heads),
        image_size=image_size,
        cross_attention=cross_attention,
        prompt_encoder=PromptEncoderConfig(
            embed_dim=256,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
        ),
        memory=memory,
    )


_HF = "https://huggingface.co/yunyangx/efficient-track-anything/resolve/main/"
_SIZES = {"ti": (192, 3), "s": (384, 6)}
_SUFFIXES = {"": ("rope", 1024), "_1": ("efficient1", 1024), "_2": ("efficient2", 1024)}
_SUFFIXES["_512x512"] = ("rope", 512)

for _size, (_dim, _heads) in _SIZES.items():
    for _suffix, (_attn, _px) in _SUFFIXES.items():
        _name = f"efficienttam_{_size}{_suffix}"
        register(
            Variant(
                _name,
                "efficienttam",  # type: ignore[arg-type]  # a family of samkit.build.registry
                efficienttam_config(_dim, _heads, _attn, _px),
                f"{_HF}{_name}.pt",
                None,
            )
        )


def efficienttam_config_from_official(cfg: dict[str, Any]) -> EfficientTamConfig:
    """An `EfficientTamConfig` from an official hydra-resolved EfficientTAM model config (the
    `model` mapping, or a dict holding it under `"model"`, the fixture `config.json` format).

    Raises:
        ValueError: not an EfficientTAM config (another trunk / neck / attention class, or a
            missing field).
    """
    cfg = model_mapping(cfg)
    try:
        enc = cfg["image_encoder"]
        trunk, neck = enc["trunk"], enc["neck"]
        if target_name(trunk) not in ("ViT", "") or target_name(neck) not in ("ViTDetNeck", ""):
            raise ValueError(
                f"image_encoder is {target_name(trunk)} + {target_name(neck)}; an EfficientTAM "
                "config has the ViT trunk and the ViTDetNeck"
            )
        if bool(trunk.get("use_rel_pos", False)):
            raise ValueError("EfficientTAM ViT with use_rel_pos=True is not supported")
        if int(enc.get("scalp", 0)) != 0 or len(neck.get("backbone_channel_list", [0])) != 1:
            raise ValueError("an EfficientTAM image encoder has one feature level and scalp 0")
        vit = ViTDetConfig(
            embed_dim=int(trunk["embed_dim"]),
            depth=int(trunk.get("depth", 12)),
            num_heads=int(trunk.get("num_heads", 12)),
            window_block_indexes=tuple(
                int(i) for i in trunk.get("window_block_indexes", (0, 1, 3, 4, 6, 7, 9, 10))
            ),
            patch_size=int(trunk.get("patch_size", 16)),
            window_size=int(trunk.get("window_size", 14)),
            mlp_ratio=float(trunk.get("mlp_ratio", 4.0)),
            pretrain_img_size=int(trunk.get("pretrain_img_size", 224)),
        )
        d_model = int(neck["d_model"])
        image_size = int(cfg.get("image_size", 512))
        stride = int(cfg.get("backbone_stride", 16))
        ca = cfg["memory_attention"]["layer"]["cross_attention"]
        name = target_name(ca)
        if name not in _CROSS_TARGETS:
            raise ValueError(
                f"memory_attention.layer.cross_attention._target_ is {name!r}; EfficientTAM "
                f"uses one of {', '.join(_CROSS_TARGETS)}"
            )
        return EfficientTamConfig(
            trunk=vit,
            d_model=d_model,
            image_size=image_size,
            backbone_stride=stride,
            cross_attention=_CROSS_TARGETS[name],
            prompt_encoder=PromptEncoderConfig(
                embed_dim=d_model,
                image_embedding_size=(image_size // stride, image_size // stride),
                input_image_size=(image_size, image_size),
            ),
            mask_decoder=with_decoder_extra_args(_decoder(d_model), cfg),
            **video_flags(cfg),
            memory=memory_config_from_official(cfg, cross_attentions=tuple(_CROSS_TARGETS)),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"not an EfficientTAM model config: missing or malformed field {e}") from e


def is_efficienttam_config(raw: Any) -> bool:
    """Whether a parsed config.json is an official EfficientTAM one (ViT trunk + ViTDetNeck)."""
    return is_official_config(
        raw, "efficienttam", lambda m: target_name(m["image_encoder"]["neck"]) == "ViTDetNeck"
    )
