"""MobileSAM and HQ-SAM variants as frozen dataclasses, registered in the one variant registry.

| variant (aliases) | encoder | decoder | official checkpoint |
|---|---|---|---|
| `mobile_sam` (`vit_t`) | TinyViT 64/128/160/320 x 2/2/6/2 | SAM 1 | `mobile_sam.pt` (github ChaoningZhang/MobileSAM) |
| `sam_hq_vit_b` / `_l` / `_h` | SAM 1 ViT-B / L / H | SAM 1 + HQ token | `sam_hq_vit_{b,l,h}.pth` (huggingface lkeab/hq-sam) |
| `sam_hq_vit_tiny` | TinyViT as MobileSAM | SAM 1 + HQ token | `sam_hq_vit_tiny.pth` (same) |

The hyper-parameters are those of the official builders (`mobile_sam/build_sam.py`
`build_sam_vit_t`; `segment_anything_hq/build_sam.py`). No sha256 is published for these files,
so downloads are not verified (the downloader says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from samkit.configs.common import MaskDecoderConfig, PromptEncoderConfig, Variant, register
from samkit.configs.sam import ViTConfig


@dataclass(frozen=True)
class TinyViTConfig:
    """`samkit.modeling.tiny_vit.TinyViT` arguments (official `vit_t` defaults)."""

    img_size: int = 1024
    in_chans: int = 3
    embed_dims: tuple[int, int, int, int] = (64, 128, 160, 320)
    depths: tuple[int, int, int, int] = (2, 2, 6, 2)
    num_heads: tuple[int, int, int, int] = (2, 4, 5, 10)
    window_sizes: tuple[int, int, int, int] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    num_classes: int = 1000
    out_chans: int = 256


@dataclass(frozen=True)
class MobileSamConfig:
    """A MobileSAM model: TinyViT encoder, SAM 1 prompt encoder and decoder."""

    image_encoder: TinyViTConfig = field(default_factory=TinyViTConfig)
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    mask_threshold: float = 0.0
    family: str = "mobile_sam"

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size


@dataclass(frozen=True)
class SamHQConfig:
    """An HQ-SAM model: a ViT or TinyViT encoder, SAM 1 prompt encoder, `MaskDecoderHQ`.

    `vit_dim` is the width of the early encoder feature the decoder fuses (the ViT width, or
    TinyViT's third stage width).
    """

    image_encoder: ViTConfig | TinyViTConfig = field(default_factory=ViTConfig)
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    vit_dim: int = 768
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    mask_threshold: float = 0.0
    family: str = "sam_hq"

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size


def _hq_vit(embed_dim: int, depth: int, heads: int, global_idx: tuple[int, ...]) -> SamHQConfig:
    enc = ViTConfig(
        embed_dim=embed_dim, depth=depth, num_heads=heads, global_attn_indexes=global_idx
    )
    return SamHQConfig(image_encoder=enc, vit_dim=embed_dim)


_HQ_URL = "https://huggingface.co/lkeab/hq-sam/resolve/main/"

register(
    Variant(
        "mobile_sam",
        "mobile_sam",  # type: ignore[arg-type]
        MobileSamConfig(),
        "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
    ),
    "vit_t",
    "mobilesam",
)
for _name, _cfg in (
    ("sam_hq_vit_b", _hq_vit(768, 12, 12, (2, 5, 8, 11))),
    ("sam_hq_vit_l", _hq_vit(1024, 24, 16, (5, 11, 17, 23))),
    ("sam_hq_vit_h", _hq_vit(1280, 32, 16, (7, 15, 23, 31))),
    ("sam_hq_vit_tiny", SamHQConfig(image_encoder=TinyViTConfig(), vit_dim=160)),
):
    register(Variant(_name, "sam_hq", _cfg, _HQ_URL + _name + ".pth"))  # type: ignore[arg-type]
