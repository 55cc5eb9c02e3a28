"""EfficientTAM models: SAM 2 (`Sam2` / `Sam2Video`) with the ViT image encoder of
`samkit.modeling.vitdet` and, for the `*_1` / `*_2` checkpoints, the pooled memory
cross-attention of `samkit.modeling.efficienttam_attention`.

The official `EfficientTAMBase` is `SAM2Base` with `use_high_res_features_in_sam` forced off: the
decoder reads only the stride-16 embedding, so the checkpoint has no `conv_s0` / `conv_s1`.
Everything else (prompt encoder, mask decoder, memory modules, tracking step) is the shared SAM 2
code; these classes only say what the model is (`family`, `variant`).
"""

from __future__ import annotations

from samkit.modeling.efficienttam_attention import EfficientRoPEAttention
from samkit.modeling.sam2 import Sam2
from samkit.modeling.sam2_video import Sam2Video
from samkit.modeling.vitdet import ViTDet

# (ViT width, depth) of the official models at 1024 px -> size name
_OFFICIAL = {(192, 12): "ti", (384, 12): "s"}


def efficienttam_variant(model: Sam2) -> str:
    """`efficienttam_ti` / `_s` (+ `_1` / `_2` for the pooled cross-attention, `_512x512` at
    512 px), or a description such as `EfficientTAM ViT 64 wide, depth 4` for other sizes."""
    trunk = model.image_encoder.trunk
    if not isinstance(trunk, ViTDet):
        raise ValueError(f"not an EfficientTAM image encoder: {type(trunk).__name__}")
    width, depth = int(trunk.patch_embed.proj.out_channels), len(trunk.blocks)
    size = _OFFICIAL.get((width, depth))
    if size is None:
        return f"EfficientTAM ViT {width} wide, depth {depth}"
    suffix = ""
    ma = getattr(model, "memory_attention", None)
    if ma is not None:
        ca = ma.layers[0].cross_attn_image
        if isinstance(ca, EfficientRoPEAttention):
            suffix = f"_{ca.variant}"
    if int(model.image_size) == 512 and not suffix:
        suffix = "_512x512"
    elif int(model.image_size) != 1024:
        return f"EfficientTAM ViT {width} wide, depth {depth}, {int(model.image_size)} px"
    return f"efficienttam_{size}{suffix}"


class EfficientTamImage(Sam2):
    """The image-only EfficientTAM model (an EfficientTAM checkpoint without memory tensors)."""

    family: str = "efficienttam"

    @property
    def variant(self) -> str:
        return efficienttam_variant(self)


class EfficientTam(Sam2Video):
    """EfficientTAM for images and videos (official `EfficientTAMBase` in evaluation mode)."""

    family: str = "efficienttam"

    @property
    def variant(self) -> str:
        return efficienttam_variant(self)
