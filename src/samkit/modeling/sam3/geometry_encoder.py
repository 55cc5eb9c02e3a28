"""SAM 3 geometry / exemplar encoder: boxes and points -> prompt tokens.

Each box (normalised cx, cy, w, h) becomes the sum of a linear projection of its coordinates, a
7x7 RoIAlign pool of the (layer-normed) image features under it projected by a 7x7 convolution,
and a projection of the sine encoding of its centre plus its height and width; a label embedding
(0 = negative, 1 = positive) is added. Points (normalised x, y) work alike with a bilinear sample
instead of the pool. A learned CLS token is appended; the sequence goes through a linear layer, a
LayerNorm and `num_layers` pre-norm layers (self-attention among the prompt tokens,
cross-attention to the image tokens with position encoding on the keys) and a final LayerNorm.

Reference: `SequenceGeometryEncoder` in `sam3/model/geometry_encoders.py` (official `sam3`
0.1.4), with the official configuration (boxes and points each encoded by projection + pooling +
position encoding, CLS token, post-encode projection). State-dict keys are the official ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.modeling.sam3.encoder import TransformerEncoderLayer, sine_encode
from samkit.modeling.sam3.roi_align import roi_align


def concat_padded(
    seq1: Tensor, mask1: Tensor, seq2: Tensor, mask2: Tensor
) -> tuple[Tensor, Tensor]:
    """Concatenate two right-padded batch-first sequences into one right-padded sequence.

    Args:
        seq1: (B, L1, C); mask1: (B, L1) bool, True = padding (padding on the right).
        seq2: (B, L2, C); mask2: (B, L2).

    Returns:
        (B, L1 + L2, C) with each row's valid tokens of seq1, then those of seq2, then padding
        (zeros), and its (B, L1 + L2) padding mask.
    """
    b, l1, c = seq1.shape
    l2 = seq2.shape[1]
    n1 = (~mask1).sum(dim=1)  # (B,)
    n2 = (~mask2).sum(dim=1)
    out = seq1.new_zeros(b, l1 + l2, c)
    out[:, :l1] = seq1 * (~mask1)[..., None]
    idx = torch.arange(l2, device=seq2.device)[None, :] + n1[:, None]  # (B, L2)
    out = out.scatter(1, idx[..., None].expand(-1, -1, c), seq2 * (~mask2)[..., None])
    mask = torch.arange(l1 + l2, device=seq2.device)[None, :] >= (n1 + n2)[:, None]
    return out, mask


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) cx, cy, w, h -> (..., 4) x0, y0, x1, y1."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


class SequenceGeometryEncoder(nn.Module):
    """Encode box and point prompts into a token sequence (official keys, see module doc).

    Args:
        d_model: token width (256).
        num_heads: heads of the encoder layers.
        dim_feedforward: feed-forward width of the encoder layers.
        num_layers: encoder layers (official 3).
        roi_size: RoIAlign output size (official 7).
    """

    def __init__(
        self,
        d_model: int = 256,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        num_layers: int = 3,
        roi_size: int = 7,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.roi_size = roi_size
        self.label_embed = nn.Embedding(2, d_model)
        self.cls_embed = nn.Embedding(1, d_model)
        self.points_direct_project = nn.Linear(2, d_model)
        self.points_pool_project = nn.Linear(d_model, d_model)
        self.points_pos_enc_project = nn.Linear(d_model, d_model)
        self.boxes_direct_project = nn.Linear(4, d_model)
        self.boxes_pool_project = nn.Conv2d(d_model, d_model, roi_size)
        self.boxes_pos_enc_project = nn.Linear(d_model + 2, d_model)
        self.final_proj = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.img_pre_norm = nn.LayerNorm(d_model)
        self.encode = nn.ModuleList(
            TransformerEncoderLayer(
                d_model, num_heads, dim_feedforward, pos_at_self_attn=False, pos_at_cross_keys=True
            )
            for _ in range(num_layers)
        )
        self.encode_norm = nn.LayerNorm(d_model)

    def _encode_points(self, points: Tensor, labels: Tensor, img: Tensor) -> Tensor:
        """(B, M, 2) normalised x, y -> (B, M, C)."""
        points = points.float()
        embed = self.points_direct_project(points.to(img.dtype))
        grid = (points * 2 - 1)[:, :, None, :]  # (B, M, 1, 2)
        sampled = F.grid_sample(img, grid.to(img.dtype), align_corners=False)  # (B, C, M, 1)
        embed = embed + self.points_pool_project(sampled[..., 0].transpose(1, 2))
        half = self.d_model // 2
        enc = torch.cat([sine_encode(points[..., 0], half), sine_encode(points[..., 1], half)], -1)
        embed = embed + self.points_pos_enc_project(enc.to(embed.dtype))
        return embed + self.label_embed(labels.long())

    def _encode_boxes(self, boxes: Tensor, labels: Tensor, img: Tensor) -> Tensor:
        """(B, N, 4) normalised cx, cy, w, h -> (B, N, C)."""
        b, n = boxes.shape[:2]
        h, w = img.shape[-2:]
        dt = img.dtype
        boxes = boxes.float()  # coordinates stay float32 whatever the model dtype
        embed = self.boxes_direct_project(boxes.to(dt))
        scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        xyxy = (box_cxcywh_to_xyxy(boxes) * scale).float()
        pooled = roi_align(img, list(xyxy.unbind(0)), self.roi_size)  # (B*N, C, 7, 7)
        proj = self.boxes_pool_project(pooled).view(b, n, self.d_model)
        embed = embed + proj
        half = self.d_model // 2
        cx, cy, bw, bh = boxes.unbind(-1)
        enc = torch.cat(
            [
                sine_encode(cy, half),
                sine_encode(cx, half),
                bh[..., None].float(),
                bw[..., None].float(),
            ],
            dim=-1,
        )
        embed = embed + self.boxes_pos_enc_project(enc.to(embed.dtype))
        return embed + self.label_embed(labels.long())

    def forward(
        self,
        img_tokens: Tensor,
        img_pos: Tensor,
        feat_size: tuple[int, int],
        boxes: Tensor,
        box_labels: Tensor,
        box_mask: Tensor,
        points: Tensor | None = None,
        point_labels: Tensor | None = None,
        point_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Encode the prompts of a batch.

        Args:
            img_tokens: (B, HW, C) image features of the last level (row-major).
            img_pos: (B, HW, C) their position encoding.
            feat_size: (H, W) of that level.
            boxes: (B, N, 4) normalised cx, cy, w, h (N may be 0).
            box_labels: (B, N) bool or int, 1/True = positive.
            box_mask: (B, N) bool, True = padding.
            points: (B, M, 2) normalised x, y, or None; point_labels / point_mask as for boxes.

        Returns:
            tokens (B, T, C) and their padding mask (B, T), T = M + N + 1: the valid points,
            the valid boxes, the CLS token, then padding.
        """
        b, _, c = img_tokens.shape
        h, w = feat_size
        img = self.img_pre_norm(img_tokens).transpose(1, 2).reshape(b, c, h, w)
        if points is None:
            points = img_tokens.new_zeros(b, 0, 2)
            point_labels = torch.ones(b, 0, dtype=torch.long, device=img_tokens.device)
            point_mask = torch.zeros(b, 0, dtype=torch.bool, device=img_tokens.device)
        tokens = self._encode_points(points, point_labels, img)
        mask = point_mask
        box_tokens = self._encode_boxes(boxes, box_labels, img)
        tokens, mask = concat_padded(tokens, mask, box_tokens, box_mask)
        cls = self.cls_embed.weight[None].expand(b, 1, c)
        cls_mask = torch.zeros(b, 1, dtype=torch.bool, device=mask.device)
        tokens, mask = concat_padded(tokens, mask, cls, cls_mask)
        tokens = self.norm(self.final_proj(tokens))
        for layer in self.encode:
            tokens = layer(tokens, img_tokens, memory_pos=img_pos, tgt_key_padding_mask=mask)
        return self.encode_norm(tokens), mask
