"""EdgeTAM models: SAM 2 (`Sam2` / `Sam2Video`) with the RepViT trunk of `samkit.modeling.repvit`,
the spatial perceiver of `samkit.modeling.perceiver` and the memory cross-attention of
`samkit.modeling.edgetam_attention`.

The only change to SAM 2's tracking step is where a memory is made: after the memory encoder,
the perceiver compresses the BxC_memx64x64 memory into N = 512 tokens (official
`SAM2Base._encode_new_memory` with a `spatial_perceiver`). They are stored as a BxC_memx1xN
"grid", so the shared memory reader (`samkit.modeling.memory_conditioning`), which flattens a
memory's grid into tokens, reads them unchanged; the cross-attention knows the token layout.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from samkit.modeling.perceiver import PerceiverResampler
from samkit.modeling.repvit import RepViT
from samkit.modeling.sam2 import Sam2
from samkit.modeling.sam2_video import Sam2Video

# RepViT (widths, depths) of the official models at 1024 px -> variant name
_OFFICIAL = {((48, 96, 192, 384), (2, 2, 14, 2)): "edgetam"}


def edgetam_variant(model: Sam2) -> str:
    """`edgetam` for the official size at 1024 px, else a description such as
    `EdgeTAM RepViT (16, 32, 64, 128) x (1, 1, 2, 1), 64 wide`."""
    trunk = model.image_encoder.trunk
    if not isinstance(trunk, RepViT):
        raise ValueError(f"not an EdgeTAM image encoder: {type(trunk).__name__}")
    dims = trunk.embed_dims
    depths = tuple(len(getattr(trunk.body, f"stages_{i}").blocks) for i in range(len(dims)))
    name = _OFFICIAL.get((dims, depths))
    if name is not None and model.hidden_dim == 256 and int(model.image_size) == 1024:
        return name
    return f"EdgeTAM RepViT {dims} x {depths}, {model.hidden_dim} wide, {int(model.image_size)} px"


def contiguous_outputs(out: dict[str, Any]) -> dict[str, Any]:
    """`forward_image` outputs in the default layout: the RepViT trunk runs channels-last in
    low precision, and embedding files (safetensors) and `.view` callers need contiguous
    tensors."""
    for key in ("backbone_fpn", "vision_pos_enc"):
        out[key] = [t.contiguous() for t in out[key]]
    out["vision_features"] = out["backbone_fpn"][-1]
    return out


class EdgeTamImage(Sam2):
    """The image-only EdgeTAM model (an EdgeTAM checkpoint without memory tensors)."""

    family: str = "edgetam"

    @property
    def variant(self) -> str:
        return edgetam_variant(self)

    def forward_image(self, img_batch: Tensor) -> dict[str, Any]:
        """`Sam2.forward_image`, outputs contiguous (see `contiguous_outputs`)."""
        return contiguous_outputs(super().forward_image(img_batch))


class EdgeTam(Sam2Video):
    """EdgeTAM for images and videos (official `SAM2Base` with a `spatial_perceiver`, in
    evaluation mode).

    Args:
        *args, **kwargs: as `Sam2Video` (the EdgeTAM memory cross-attention inside
            `memory_attention`).
        spatial_perceiver: compresses each new memory (see the module docstring).
    """

    family: str = "edgetam"

    def __init__(self, *args: Any, spatial_perceiver: PerceiverResampler, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spatial_perceiver = spatial_perceiver

    @property
    def variant(self) -> str:
        return edgetam_variant(self)

    def forward_image(self, img_batch: Tensor) -> dict[str, Any]:
        """`Sam2.forward_image`, outputs contiguous (see `contiguous_outputs`)."""
        return contiguous_outputs(super().forward_image(img_batch))

    def encode_new_memory(
        self,
        pix_feat: Tensor,
        high_res_masks: Tensor,
        object_score_logits: Tensor,
        is_mask_from_pts: bool,
    ) -> tuple[Tensor, Tensor]:
        """Memory of a frame: (BxC_memx1xN latents, BxC_memx1xN their positions), float32.

        Arguments as `Sam2Video.encode_new_memory`; N = the perceiver's `num_tokens`.
        """
        feats, pos = super().encode_new_memory(
            pix_feat, high_res_masks, object_score_logits, is_mask_from_pts
        )
        dt = self.spatial_perceiver.norm.weight.dtype
        latents, lpos = self.spatial_perceiver(feats.to(dt), pos.to(dt))
        assert lpos is not None
        return (
            latents.float().transpose(1, 2).unsqueeze(2),
            lpos.float().transpose(1, 2).unsqueeze(2),
        )
