"""EdgeTAM (facebookresearch/EdgeTAM, Apache-2.0) as frozen dataclasses, registered in the one
variant registry (`samkit.configs.common`): the official model `edgetam`
(`sam2/configs/edgetam.yaml`).

EdgeTAM is SAM 2 (2.0 pointer settings) with a RepViT image trunk (timm `repvit_m1`, four levels,
the FPN neck with `scalp 1`: stride 4 / 8 / 16 outputs, high-resolution decoder features on), a
spatial perceiver that compresses each memory into global + 2-D latents, and the memory
cross-attention `RoPEAttentionv2` (separate RoPE grids for queries and 2-D latents). Memory
attention 2 layers; everything else is the SAM 2 layout of `Sam2MemoryConfig`.
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

# timm model names EdgeTAM configs may use -> (stage widths, depths, legacy token mixer)
TIMM_REPVIT = {
    "repvit_m1": ((48, 96, 192, 384), (2, 2, 14, 2), True),
}


@dataclass(frozen=True)
class RepVitConfig:
    """The RepViT trunk (timm `RepVit` arguments; defaults: `repvit_m1`)."""

    embed_dims: tuple[int, ...] = (48, 96, 192, 384)
    depths: tuple[int, ...] = (2, 2, 14, 2)
    mlp_ratio: int = 2
    kernel_size: int = 3
    legacy: bool = True


@dataclass(frozen=True)
class PerceiverConfig:
    """The spatial perceiver (official `PerceiverResampler`; `dim` is the memory dim)."""

    depth: int = 2
    dim_head: int = 64
    heads: int = 1
    num_latents: int = 256
    num_latents_2d: int = 256
    ff_mult: int = 4
    use_self_attn: bool = True

    @property
    def num_tokens(self) -> int:
        return self.num_latents + self.num_latents_2d


@dataclass(frozen=True)
class EdgeTamConfig:
    """An EdgeTAM model: RepViT + FPN neck, the SAM 2 heads, memory modules and perceiver.

    `d_model` is the neck / prompt / decoder / memory-attention width (256 officially);
    `q_sizes` / `k_sizes` are the RoPE grids of the memory cross-attention (the stride-16 grid
    and the 2-D latents' grid).
    """

    trunk: RepVitConfig = field(default_factory=RepVitConfig)
    d_model: int = 256
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    scalp: int = 1
    image_size: int = 1024
    backbone_stride: int = 16
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=sam2_mask_decoder_config)
    directly_add_no_mem_embed: bool = True
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    no_obj_embed_spatial: bool = False
    proj_tpos_enc_in_obj_ptrs: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False
    add_tpos_enc_to_obj_ptrs: bool = False
    memory: Sam2MemoryConfig = field(default_factory=lambda: Sam2MemoryConfig(attn_num_layers=2))
    perceiver: PerceiverConfig = field(default_factory=PerceiverConfig)
    q_sizes: tuple[int, int] = (64, 64)
    k_sizes: tuple[int, int] = (16, 16)
    family: str = "edgetam"

    def __post_init__(self) -> None:
        n2d = self.perceiver.num_latents_2d
        if n2d != self.k_sizes[0] * self.k_sizes[1]:
            raise ValueError(f"k_sizes {self.k_sizes} must hold the perceiver's {n2d} 2-D latents")
        if len(self.trunk.embed_dims) - self.scalp != 3:
            raise ValueError(
                f"EdgeTAM decodes from 3 feature levels; {len(self.trunk.embed_dims)} trunk "
                f"stages with scalp {self.scalp} give {len(self.trunk.embed_dims) - self.scalp}"
            )

    @property
    def img_size(self) -> int:
        return self.image_size


register(
    Variant(
        "edgetam",
        "edgetam",  # type: ignore[arg-type]  # a family of samkit.build.registry
        EdgeTamConfig(),
        "https://github.com/facebookresearch/EdgeTAM/raw/main/checkpoints/edgetam.pt",
        None,
    )
)


def edgetam_config_from_official(
    cfg: dict[str, Any], trunk: RepVitConfig | None = None
) -> EdgeTamConfig:
    """An `EdgeTamConfig` from an official hydra-resolved EdgeTAM config (the `model` mapping,
    or a dict holding it under `"model"`, the fixture `config.json` format).

    The trunk is a timm model name (its sizes are not in the config): `repvit_m1` unless
    `trunk` is given (e.g. read from a checkpoint's tensors).

    Raises:
        ValueError: not an EdgeTAM config (another trunk / neck / attention class, an unknown
            timm name, or a missing field).
    """
    cfg = model_mapping(cfg)
    try:
        enc = cfg["image_encoder"]
        t, neck = enc["trunk"], enc["neck"]
        if target_name(t) != "TimmBackbone" or target_name(neck) not in ("FpnNeck", ""):
            raise ValueError(
                f"image_encoder is {target_name(t)} + {target_name(neck)}; an EdgeTAM config "
                "has the TimmBackbone (RepViT) trunk and the FpnNeck"
            )
        if trunk is None:
            base = str(t["name"]).split(".", 1)[0]
            if base not in TIMM_REPVIT:
                raise ValueError(
                    f"trunk {t['name']!r}: samkit knows the timm RepViT models "
                    f"{', '.join(TIMM_REPVIT)} (give the trunk sizes, or build from a checkpoint)"
                )
            dims, depths, legacy = TIMM_REPVIT[base]
            trunk = RepVitConfig(embed_dims=dims, depths=depths, legacy=legacy)
        d_model = int(neck["d_model"])
        image_size = int(cfg.get("image_size", 1024))
        stride = int(cfg.get("backbone_stride", 16))
        ca = cfg["memory_attention"]["layer"]["cross_attention"]
        if target_name(ca) != "RoPEAttentionv2":
            raise ValueError(
                f"memory_attention.layer.cross_attention._target_ is {target_name(ca)!r}; "
                "EdgeTAM uses RoPEAttentionv2"
            )
        sp = cfg["spatial_perceiver"]
        if bool(sp.get("concat_kv_latents", False)):
            raise ValueError("spatial_perceiver.concat_kv_latents=True is not supported")
        grid = image_size // stride
        memory = dataclasses.replace(
            memory_config_from_official(cfg, cross_attentions=("RoPEAttentionv2",)),
            attn_feat_sizes=(grid, grid),
        )
        return EdgeTamConfig(
            trunk=trunk,
            d_model=d_model,
            fpn_top_down_levels=tuple(int(i) for i in neck.get("fpn_top_down_levels", (2, 3))),
            scalp=int(enc.get("scalp", 1)),
            image_size=image_size,
            backbone_stride=stride,
            prompt_encoder=PromptEncoderConfig(
                embed_dim=d_model,
                image_embedding_size=(grid, grid),
                input_image_size=(image_size, image_size),
            ),
            mask_decoder=with_decoder_extra_args(sam2_mask_decoder_config(d_model), cfg),
            **video_flags(cfg),
            memory=memory,
            perceiver=PerceiverConfig(
                depth=int(sp["depth"]),
                dim_head=int(sp.get("dim_head", 64)),
                heads=int(sp.get("heads", 1)),
                num_latents=max(int(sp.get("num_latents", -1)), 0),
                num_latents_2d=max(int(sp.get("num_latents_2d", -1)), 0),
                ff_mult=int(sp.get("ff_mult", 4)),
                use_self_attn=bool(sp.get("use_self_attn", False)),
            ),
            q_sizes=tuple(int(v) for v in ca.get("q_sizes", (grid, grid))),  # type: ignore[arg-type]
            k_sizes=tuple(int(v) for v in ca.get("k_sizes", (16, 16))),  # type: ignore[arg-type]
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"not an EdgeTAM model config: missing or malformed field {e}") from e


def is_edgetam_config(raw: Any) -> bool:
    """Whether a parsed config.json is an official EdgeTAM one (a `spatial_perceiver` and the
    timm trunk), or says `"family": "edgetam"`."""
    return is_official_config(
        raw,
        "edgetam",
        lambda m: (
            "spatial_perceiver" in m and target_name(m["image_encoder"]["trunk"]) == "TimmBackbone"
        ),
    )
