"""SAM 3 DETR decoder: object queries with iterative box refinement, box relative-position bias
on the image cross-attention, and a presence token.

Per layer (post-norm): self-attention among [presence token, queries] (query position from an
MLP of the sine encoding of each query's current box), cross-attention to the prompt tokens,
cross-attention to the encoder memory with an additive per-head bias that depends on where each
image cell lies relative to the query's box (the "log" box RPB), feed-forward. After each layer
the box head refines every box in logit space, and the presence head scores the presence token.

Reference: `TransformerDecoder` / `TransformerDecoderLayer` in `sam3/model/decoder.py` (official
`sam3` 0.1.4) with the official configuration (box_refine, boxRPB "log", presence token, DAC off in
eval). State-dict keys are the official ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from samkit.layers.fused_linear import linear_act
from samkit.layers.mlp import MLP
from samkit.modeling.sam3.encoder import MultiheadAttention, sine_encode
from samkit.modeling.sam3.geometry_encoder import box_cxcywh_to_xyxy


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    """log(x / (1 - x)) with x clamped to [0, 1] and both terms to at least `eps` (official)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


@dataclass
class DecoderOutput:
    """What `TransformerDecoder.forward` returns (batch-first).

    Attributes:
        hs: (L, B, Q, C) normed query features after every layer.
        reference_boxes: (L, B, Q, 4) the cx, cy, w, h boxes (in [0, 1]) each layer started from.
        boxes: (B, Q, 4) refined boxes of the last layer (cx, cy, w, h in [0, 1]).
        presence_logits: (L, B, 1) presence logit after every layer, or None without a token.
    """

    hs: Tensor
    reference_boxes: Tensor
    boxes: Tensor
    presence_logits: Tensor | None


class TransformerDecoderLayer(nn.Module):
    """One post-norm decoder layer (keys `self_attn`, `norm2`, `ca_text`, `catext_norm`,
    `cross_attn`, `norm1`, `linear1`, `linear2`, `norm3`)."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int) -> None:
        super().__init__()
        self.cross_attn = MultiheadAttention(d_model, num_heads)
        self.norm1 = nn.LayerNorm(d_model)
        self.ca_text = MultiheadAttention(d_model, num_heads)
        self.catext_norm = nn.LayerNorm(d_model)
        self.self_attn = MultiheadAttention(d_model, num_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = nn.ReLU()
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        prompt: Tensor,
        prompt_mask: Tensor,
        attn_bias: Tensor,
    ) -> Tensor:
        """Update the tokens.

        Args:
            tgt: (B, T, C) tokens (presence token first when there is one).
            query_pos: (B, T, C) their position embedding (zeros for the presence token).
            memory, memory_pos: (B, HW, C) encoder memory and its position encoding.
            prompt: (B, P, C); prompt_mask: (B, P) bool, True = padding.
            attn_bias: (B, nh, T, HW) additive bias of the image cross-attention.
        """
        q = tgt + query_pos
        tgt = self.norm2(tgt + self.self_attn(q, q, tgt))
        tgt = self.catext_norm(
            tgt + self.ca_text(tgt + query_pos, prompt, prompt, key_padding_mask=prompt_mask)
        )
        x = self.cross_attn(tgt + query_pos, memory + memory_pos, memory, attn_bias=attn_bias)
        tgt = self.norm1(tgt + x)
        return self.norm3(tgt + self.linear2(linear_act(tgt, self.linear1, self.activation)))


class TransformerDecoder(nn.Module):
    """The DETR decoder (official keys: `layers`, `norm`, `bbox_embed`, `query_embed`,
    `reference_points`, `boxRPB_embed_x/y`, `presence_token`, `presence_token_head`,
    `presence_token_out_norm`, `ref_point_head`).

    Args:
        d_model: width (256).
        num_heads: attention heads (8).
        dim_feedforward: feed-forward width (official 2048).
        num_layers: layers (official 6).
        num_queries: object queries (official 200).
        presence_token: with the presence token and head (official True).
    """

    def __init__(
        self,
        d_model: int = 256,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        num_layers: int = 6,
        num_queries: int = 200,
        presence_token: bool = True,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.num_heads = num_heads
        self.num_queries = num_queries
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(d_model, num_heads, dim_feedforward) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.bbox_embed = MLP(d_model, d_model, 4, 3)
        self.query_embed = nn.Embedding(num_queries, d_model)
        self.reference_points = nn.Embedding(num_queries, 4)
        self.boxRPB_embed_x = MLP(2, d_model, num_heads, 2)
        self.boxRPB_embed_y = MLP(2, d_model, num_heads, 2)
        self.presence_token: nn.Embedding | None = None
        if presence_token:
            self.presence_token = nn.Embedding(1, d_model)
            self.presence_token_head = MLP(d_model, d_model, 1, 3)
            self.presence_token_out_norm = nn.LayerNorm(d_model)
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)

    def box_rpb(self, boxes: Tensor, feat_size: tuple[int, int]) -> Tensor:
        """Box relative-position bias ("log" mode).

        Args:
            boxes: (B, Q, 4) cx, cy, w, h in [0, 1].
            feat_size: (H, W) of the memory.

        Returns:
            (B, nh, Q, H*W) bias: MLP_y of the signed log distances of each row to the box's top
            and bottom plus MLP_x of each column's to its left and right.
        """
        h, w = feat_size
        xyxy = box_cxcywh_to_xyxy(boxes)
        coords_h = torch.arange(h, dtype=torch.float32, device=boxes.device) / h
        coords_w = torch.arange(w, dtype=torch.float32, device=boxes.device) / w
        dy = coords_h.view(1, 1, h, 1) - xyxy[..., None, 1::2]  # (B, Q, H, 2)
        dx = coords_w.view(1, 1, w, 1) - xyxy[..., None, 0::2]  # (B, Q, W, 2)

        def log_scale(d: Tensor) -> Tensor:
            d = d * 8
            return torch.sign(d) * torch.log2(d.abs() + 1.0) / math.log2(8)

        dt = self.boxRPB_embed_x.layers[0].weight.dtype
        ex = self.boxRPB_embed_x(log_scale(dx).to(dt))  # (B, Q, W, nh)
        ey = self.boxRPB_embed_y(log_scale(dy).to(dt))  # (B, Q, H, nh)
        bias = ey[:, :, :, None, :] + ex[:, :, None, :, :]  # (B, Q, H, W, nh)
        return bias.flatten(2, 3).permute(0, 3, 1, 2).contiguous()  # (B, nh, Q, HW)

    def forward(
        self,
        memory: Tensor,
        memory_pos: Tensor,
        feat_size: tuple[int, int],
        prompt: Tensor,
        prompt_mask: Tensor,
    ) -> DecoderOutput:
        """Decode the object queries.

        Args:
            memory: (B, HW, C) encoder memory; memory_pos: (B, HW, C) its position encoding.
            feat_size: (H, W), H * W = HW.
            prompt: (B, P, C) prompt tokens; prompt_mask: (B, P) bool, True = padding.

        Returns:
            A `DecoderOutput`.
        """
        b = memory.shape[0]
        tgt = self.query_embed.weight[None].expand(b, -1, -1).to(memory.dtype)
        # boxes stay float32 whatever the model dtype (refinement accumulates in logit space)
        ref = self.reference_points.weight[None].expand(b, -1, -1).float().sigmoid()
        presence = None
        if self.presence_token is not None:
            presence = self.presence_token.weight[None].expand(b, 1, -1).to(memory.dtype)
        hs, refs, presence_logits = [], [], []
        boxes = ref
        for layer in self.layers:
            refs.append(ref)
            # sine encoding of the box in the official channel order: cy, cx, w, h
            sine = sine_encode(ref[..., [1, 0, 2, 3]], self.d_model // 2).flatten(-2)
            query_pos = self.ref_point_head(sine.to(memory.dtype))
            bias = self.box_rpb(ref, feat_size).to(memory.dtype)
            x, pos = tgt, query_pos
            if presence is not None:
                x = torch.cat([presence, tgt], dim=1)
                pos = torch.cat([torch.zeros_like(presence), query_pos], dim=1)
                bias = torch.cat(
                    [bias.new_zeros(b, self.num_heads, 1, bias.shape[-1]), bias], dim=2
                )
            x = layer(x, pos, memory, memory_pos, prompt, prompt_mask, bias)
            if presence is not None:
                presence, tgt = x[:, :1], x[:, 1:]
            else:
                tgt = x
            normed = self.norm(tgt)
            boxes = (self.bbox_embed(normed).float() + inverse_sigmoid(ref)).sigmoid()
            ref = boxes.detach()
            hs.append(normed)
            if presence is not None:
                presence_logits.append(
                    self.presence_token_head(self.presence_token_out_norm(presence))[..., 0]
                )
        return DecoderOutput(
            hs=torch.stack(hs),
            reference_boxes=torch.stack(refs),
            boxes=boxes,
            presence_logits=torch.stack(presence_logits) if presence_logits else None,
        )
