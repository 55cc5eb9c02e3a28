"""SAM 3 segmentation head: pixel decoder, per-query mask predictor and semantic head.

The encoder memory first cross-attends to the prompt tokens (pre-norm, residual). It replaces the
coarsest backbone level; a pixel decoder walks up the pyramid (nearest upsampling, add, 3x3 conv,
GroupNorm(8), ReLU) to the finest level (288x288 at 1008 px). A 1x1 convolution gives the instance
embedding; each query's mask logits are the dot product of a 3-layer MLP of the query with it. A
second 1x1 convolution gives the one-channel semantic logits.

Reference: `UniversalSegmentationHead`, `PixelDecoder`, `MaskPredictor` in
`sam3/model/maskformer_segmentation.py` (official `sam3` 0.1.4; no presence head, no aux masks).
Keys are the official ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.layers.mlp import MLP
from samkit.modeling.sam3.encoder import MultiheadAttention


class PixelDecoder(nn.Module):
    """FPN-style top-down decoder (keys `conv_layers.{i}`, `norms.{i}`).

    Args:
        hidden_dim: channels (256).
        num_upsampling_stages: conv + GroupNorm pairs (official 3; with three backbone levels
            the first two are used).
    """

    def __init__(self, hidden_dim: int = 256, num_upsampling_stages: int = 3) -> None:
        super().__init__()
        self.conv_layers = nn.ModuleList(
            nn.Conv2d(hidden_dim, hidden_dim, 3, 1, 1) for _ in range(num_upsampling_stages)
        )
        self.norms = nn.ModuleList(
            nn.GroupNorm(8, hidden_dim) for _ in range(num_upsampling_stages)
        )

    def forward(self, feats: list[Tensor]) -> Tensor:
        """Levels finest first, each (B, C, Hi, Wi) -> (B, C, H0, W0)."""
        x = feats[-1]
        for i, f in enumerate(feats[:-1][::-1]):
            x = f + F.interpolate(x, size=f.shape[-2:], mode="nearest")
            x = F.relu(self.norms[i](self.conv_layers[i](x)))
        return x


class MaskPredictor(nn.Module):
    """Mask logits = MLP(query) . pixel embedding (key `mask_embed.layers.{0,1,2}`)."""

    def __init__(self, hidden_dim: int = 256) -> None:
        super().__init__()
        self.mask_embed = MLP(hidden_dim, hidden_dim, hidden_dim, 3)

    def forward(self, queries: Tensor, pixel_embed: Tensor) -> Tensor:
        """(B, Q, C) queries and (B, C, H, W) embedding -> (B, Q, H, W) logits."""
        return torch.einsum("bqc,bchw->bqhw", self.mask_embed(queries), pixel_embed)


class UniversalSegmentationHead(nn.Module):
    """Instance masks and semantic logits (see module doc).

    Args:
        hidden_dim: channels (256).
        num_heads: heads of the prompt cross-attention (8).
        upsampling_stages: pixel-decoder stages (3).
    """

    def __init__(
        self, hidden_dim: int = 256, num_heads: int = 8, upsampling_stages: int = 3
    ) -> None:
        super().__init__()
        self.pixel_decoder = PixelDecoder(hidden_dim, upsampling_stages)
        self.mask_predictor = MaskPredictor(hidden_dim)
        self.cross_attend_prompt = MultiheadAttention(hidden_dim, num_heads)
        self.cross_attn_norm = nn.LayerNorm(hidden_dim)
        self.semantic_seg_head = nn.Conv2d(hidden_dim, 1, kernel_size=1)
        self.instance_seg_head = nn.Conv2d(hidden_dim, hidden_dim, kernel_size=1)

    def forward(
        self,
        backbone_fpn: list[Tensor],
        queries: Tensor,
        memory: Tensor,
        prompt: Tensor,
        prompt_mask: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Predict masks.

        Args:
            backbone_fpn: the detector levels, finest first, each (B, C, Hi, Wi); the last one
                has the memory's size.
            queries: (B, Q, C) last-layer query features.
            memory: (B, HW, C) fusion-encoder memory.
            prompt: (B, P, C); prompt_mask: (B, P) bool, True = padding.

        Returns:
            pred_masks (B, Q, H0, W0) and semantic_seg (B, 1, H0, W0), logits.
        """
        x = self.cross_attn_norm(memory)
        memory = memory + self.cross_attend_prompt(x, prompt, prompt, key_padding_mask=prompt_mask)
        b, hw, c = memory.shape
        h, w = backbone_fpn[-1].shape[-2:]
        if h * w != hw:
            raise ValueError(f"memory has {hw} tokens, the coarsest level is {h}x{w}")
        feats = [*backbone_fpn[:-1], memory.transpose(1, 2).reshape(b, c, h, w)]
        pixel_embed = self.pixel_decoder(feats)
        masks = self.mask_predictor(queries, self.instance_seg_head(pixel_embed))
        return masks, self.semantic_seg_head(pixel_embed)
