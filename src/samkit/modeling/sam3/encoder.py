"""SAM 3 fusion encoder: image tokens attend to themselves, then to the prompt tokens.

Also holds the pieces the other SAM 3 detector heads share: `MultiheadAttention` (the state-dict
layout of `torch.nn.MultiheadAttention`: `in_proj_weight`, `in_proj_bias`, `out_proj.*`, computed
through `F.scaled_dot_product_attention` with padding masks and additive biases folded into one
mask), the pre-norm `TransformerEncoderLayer` (also the geometry encoder's layer) and
`sine_encode`, the DETR sine encoding of normalised coordinates.

Everything here is batch-first: tokens are (B, L, C). The official code is sequence-first in
places; the computation is the same. Reference: `sam3/model/encoder.py` and `model_misc.py` of the
official `sam3` 0.1.4 package.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.layers.fused_linear import linear_act


def sine_encode(coords: Tensor, num_feats: int, temperature: float = 10000.0) -> Tensor:
    """Sine-cosine encoding of normalised coordinates (DETR / SAM 3 convention).

    Each coordinate `c` (in [0, 1]) becomes `num_feats` channels: `c * 2 * pi / t_i` with
    `t_i = temperature ** (2 * (i // 2) / num_feats)`, sine on even channels, cosine on odd ones.

    Args:
        coords: (...) float tensor of normalised coordinates.
        num_feats: channels per coordinate (even).

    Returns:
        (..., num_feats) float32 encoding (float32 like the official tables).
    """
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=coords.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    p = (coords.float() * (2 * math.pi))[..., None] / dim_t
    return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)


def padding_bias(key_padding_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, Lk) bool, True = padding -> (B, 1, 1, Lk) additive bias (0 or -inf) in `dtype`."""
    bias = torch.zeros(key_padding_mask.shape, dtype=dtype, device=key_padding_mask.device)
    return bias.masked_fill(key_padding_mask, float("-inf"))[:, None, None, :]


class MultiheadAttention(nn.Module):
    """Multi-head attention with `torch.nn.MultiheadAttention`'s parameters (batch-first).

    Keys: `in_proj_weight` (3C, C), `in_proj_bias` (3C), `out_proj.weight`, `out_proj.bias`.
    """

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"num_heads ({num_heads}) must divide embed_dim ({embed_dim})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
    ) -> Tensor:
        """Attend.

        Args:
            query: (B, Lq, C).
            key, value: (B, Lk, C).
            key_padding_mask: (B, Lk) bool, True = ignore that key.
            attn_bias: additive bias broadcastable to (B, nh, Lq, Lk).

        Returns:
            (B, Lq, C).
        """
        b, lq, c = query.shape
        lk = key.shape[1]
        nh, hd = self.num_heads, c // self.num_heads
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = F.linear(query, w_q, b_q).view(b, lq, nh, hd).transpose(1, 2)  # (B, nh, Lq, hd)
        k = F.linear(key, w_k, b_k).view(b, lk, nh, hd).transpose(1, 2)
        v = F.linear(value, w_v, b_v).view(b, lk, nh, hd).transpose(1, 2)
        mask = None
        if key_padding_mask is not None:
            mask = padding_bias(key_padding_mask, q.dtype)
        if attn_bias is not None:
            mask = attn_bias.to(q.dtype) if mask is None else mask + attn_bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, c))


class TransformerEncoderLayer(nn.Module):
    """Pre-norm layer: self-attention, cross-attention to a memory, ReLU feed-forward.

    Keys as the official: `self_attn`, `cross_attn_image`, `linear1`, `linear2`, `norm1..3`.

    Args:
        d_model: token width.
        num_heads: heads of both attentions.
        dim_feedforward: hidden width of the feed-forward block.
        pos_at_self_attn: add `tgt_pos` to the self-attention queries and keys (fusion encoder).
        pos_at_cross_keys: add `memory_pos` to the cross-attention keys (geometry encoder).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dim_feedforward: int,
        pos_at_self_attn: bool,
        pos_at_cross_keys: bool,
    ) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, num_heads)
        self.cross_attn_image = MultiheadAttention(d_model, num_heads)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = nn.ReLU()
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.pos_at_self_attn = pos_at_self_attn
        self.pos_at_cross_keys = pos_at_cross_keys

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_pos: Tensor | None = None,
        memory_pos: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """(B, Lt, C) tokens attending to (B, Lm, C) memory -> (B, Lt, C)."""
        x = self.norm1(tgt)
        q = x + tgt_pos if self.pos_at_self_attn and tgt_pos is not None else x
        tgt = tgt + self.self_attn(q, q, x, key_padding_mask=tgt_key_padding_mask)
        x = self.norm2(tgt)
        k = memory + memory_pos if self.pos_at_cross_keys and memory_pos is not None else memory
        tgt = tgt + self.cross_attn_image(x, k, memory, key_padding_mask=memory_key_padding_mask)
        x = self.norm3(tgt)
        return tgt + self.linear2(linear_act(x, self.linear1, self.activation))


class TransformerEncoderFusion(nn.Module):
    """The fusion encoder: `num_layers` pre-norm layers over the image tokens (keys `layers.{i}`).

    Each layer: self-attention among image tokens (position encoding on queries and keys),
    cross-attention from image tokens to the prompt tokens (text + geometry), feed-forward.
    The official model uses one feature level (72x72 at 1008 px) and no level embedding.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                d_model, num_heads, dim_feedforward, pos_at_self_attn=True, pos_at_cross_keys=False
            )
            for _ in range(num_layers)
        )

    def forward(
        self, img_tokens: Tensor, img_pos: Tensor, prompt: Tensor, prompt_mask: Tensor
    ) -> Tensor:
        """Fuse.

        Args:
            img_tokens: (B, HW, C) image features (row-major flattened).
            img_pos: (B, HW, C) their position encoding.
            prompt: (B, P, C) prompt tokens.
            prompt_mask: (B, P) bool, True = padding.

        Returns:
            (B, HW, C) encoder memory.
        """
        out = img_tokens
        for layer in self.layers:
            out = layer(out, prompt, tgt_pos=img_pos, memory_key_padding_mask=prompt_mask)
        return out
