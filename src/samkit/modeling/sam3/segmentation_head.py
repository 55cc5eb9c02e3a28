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


def conv3x3_after_nearest_up2(x: Tensor, weight: Tensor) -> Tensor:
    """`conv2d(nearest_upsample_2x(x), weight, padding=1)` (no bias), computed at x's size.

    Every output pixel (2i + di, 2j + dj) sees a 3x3 window of the upsampled map, which covers
    only a 2x2 block of x: rows (i - 1, i) for di = 0 with the kernel rows summed as (w0, w1 + w2),
    rows (i, i + 1) for di = 1 as (w0 + w1, w2); columns alike. So the four output phases are one
    2x2 convolution of x (zero-padded by one) with 4 x C_out kernels: 4/9 of the multiply-adds of
    the 3x3 convolution at the upsampled size, same values up to rounding.

    Args:
        x: (B, C_in, h, w).
        weight: (C_out, C_in, 3, 3).

    Returns:
        (B, C_out, 2h, 2w).
    """
    w0, w1, w2 = weight.unbind(2)
    row_phases = (torch.stack([w0, w1 + w2], 2), torch.stack([w0 + w1, w2], 2))  # (O, I, 2, 3)
    kernels = []
    for k in row_phases:
        c0, c1, c2 = k.unbind(3)
        kernels += [torch.stack([c0, c1 + c2], 3), torch.stack([c0 + c1, c2], 3)]  # (O, I, 2, 2)
    b, _, h, w = x.shape
    o = weight.shape[0]
    y = F.conv2d(F.pad(x, (1, 1, 1, 1)), torch.cat(kernels))  # (B, 4 * O, h + 1, w + 1)
    y = y.view(b, 2, 2, o, h + 1, w + 1)
    out = x.new_empty(b, o, h, 2, w, 2)
    for di in (0, 1):
        for dj in (0, 1):
            out[:, :, :, di, :, dj] = y[:, di, dj, :, di : di + h, dj : dj + w]
    return out.view(b, o, 2 * h, 2 * w)


class PixelDecoder(nn.Module):
    """FPN-style top-down decoder (keys `conv_layers.{i}`, `norms.{i}`).

    Each stage is `relu(GroupNorm(conv3x3(level + nearest_up(x))))`. The convolution is linear,
    so it is split into `conv3x3(level)` (depends on the image only: `image_terms`, which a
    caller may compute once per image) and the convolution of the upsampled coarser map, done at
    the coarse size (`conv3x3_after_nearest_up2`) when the sizes differ by exactly 2x.

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

    def image_terms(self, levels: list[Tensor]) -> list[Tensor]:
        """`conv_layers[i](level)` (bias included) of the finer levels, in stage order
        (coarse to fine), from `levels` = the backbone levels finest first without the coarsest
        (the one the encoder memory replaces). Each (B, C, Hi, Wi)."""
        return [self.conv_layers[i](f) for i, f in enumerate(levels[::-1])]

    def forward(self, feats: list[Tensor], image_terms: list[Tensor] | None = None) -> Tensor:
        """Levels finest first, each (B, C, Hi, Wi) -> (B, C, H0, W0).

        Args:
            feats: the levels; the last (coarsest) one is the encoder memory.
            image_terms: `image_terms(feats[:-1])` computed beforehand (broadcastable over B);
                None: each stage convolves `level + up(x)` directly (the cheaper way when the
                image terms are not reused).
        """
        x = feats[-1]
        for i, f in enumerate(feats[:-1][::-1]):
            conv = self.conv_layers[i]
            h, w = f.shape[-2:]
            if image_terms is None:
                x = conv(f + F.interpolate(x, size=(h, w), mode="nearest"))
            elif (h, w) == (2 * x.shape[-2], 2 * x.shape[-1]):
                x = image_terms[i] + conv3x3_after_nearest_up2(x, conv.weight)
            else:
                up = F.interpolate(x, size=(h, w), mode="nearest")
                x = image_terms[i] + F.conv2d(up, conv.weight, padding=1)
            x = F.relu(self.norms[i](x))
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
        image_terms: list[Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Predict masks.

        Args:
            backbone_fpn: the detector levels, finest first, each (B, C, Hi, Wi); the last one
                has the memory's size.
            queries: (B, Q, C) last-layer query features.
            memory: (B, HW, C) fusion-encoder memory.
            prompt: (B, P, C); prompt_mask: (B, P) bool, True = padding.
            image_terms: `pixel_decoder.image_terms(backbone_fpn[:-1])`, when computed once
                for several passes (broadcastable over B), or None.

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
        pixel_embed = self.pixel_decoder(feats, image_terms)
        masks = self.mask_predictor(queries, self.instance_seg_head(pixel_embed))
        return masks, self.semantic_seg_head(pixel_embed)
