"""SAM 3's vision + language backbone (official `SAM3VLBackbone`, no fusion).

Attribute names match the official ones (`vision_backbone`, `language_backbone`), so the
checkpoint's `detector.backbone.*` keys load 1:1. `scalp=1` drops the coarsest pyramid level, as
the official image model does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from samkit.modeling.sam3.neck import Sam3DualViTDetNeck
from samkit.modeling.sam3.text_encoder import VETextEncoder
from samkit.text.tokenizer import tokenize


class SAM3VLBackbone(nn.Module):
    """Image pyramid(s) and text features of SAM 3.

    Args:
        visual: the dual neck with its ViT trunk.
        text: the text encoder (None for an image-only backbone).
        scalp: number of coarsest levels dropped from both pyramids (official 1).
    """

    def __init__(
        self, visual: Sam3DualViTDetNeck, text: VETextEncoder | None, scalp: int = 1
    ) -> None:
        super().__init__()
        self.vision_backbone = visual
        self.language_backbone = text
        self.scalp = scalp

    def forward_image(self, samples: Tensor) -> dict[str, Any]:
        """Image features of a normalised Bx3x1008x1008 batch (`samkit.predict.transforms.sam3_image_to_tensor`).

        Returns:
            The official dict: "vision_features" (Bx256x72x72, the last level), "vision_pos_enc"
            and "backbone_fpn" (lists, finest first: 288, 144, 72), "sam2_backbone_out" (the
            same three keys for the SAM 2 pyramid, before the tracker's conv_s0 / conv_s1; None
            without it).
        """
        sam3, sam3_pos, sam2, sam2_pos = self.vision_backbone(samples)
        if self.scalp > 0:
            sam3, sam3_pos = sam3[: -self.scalp], sam3_pos[: -self.scalp]
            if sam2 is not None and sam2_pos is not None:
                sam2, sam2_pos = sam2[: -self.scalp], sam2_pos[: -self.scalp]
        sam2_out = None
        if sam2 is not None and sam2_pos is not None:
            sam2_out = {
                "vision_features": sam2[-1],
                "vision_pos_enc": sam2_pos,
                "backbone_fpn": sam2,
            }
        return {
            "vision_features": sam3[-1],
            "vision_pos_enc": sam3_pos,
            "backbone_fpn": sam3,
            "sam2_backbone_out": sam2_out,
        }

    def forward_tokens(self, token_ids: Tensor) -> dict[str, Tensor]:
        """Text features of tokenized prompts (Bx32 int64, `samkit.text.tokenizer.tokenize`).

        Returns:
            {"language_features": 32xBx256, "language_mask": Bx32 bool (True = padding),
            "language_embeds": 32xBxwidth} (the official keys, sequence first).
        """
        if self.language_backbone is None:
            raise ValueError("this backbone has no text encoder")
        mask, features, embeds = self.language_backbone(token_ids)
        return {"language_features": features, "language_mask": mask, "language_embeds": embeds}

    def forward_text(
        self, captions: list[str], device: torch.device | str | None = None
    ) -> dict[str, Tensor]:
        """`forward_tokens` of `captions` (the official call; `device` defaults to the
        encoder's). Raises ValueError for an empty or non-string caption (see `tokenize`)."""
        if self.language_backbone is None:
            raise ValueError("this backbone has no text encoder")
        if device is None:
            device = self.language_backbone.resizer.weight.device
        ids = tokenize(captions, self.language_backbone.context_length).to(device)
        return self.forward_tokens(ids)
