"""Multi-head attention through `F.scaled_dot_product_attention`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Attention over at most this many keys uses explicit matmuls instead of SDPA.
SMALL_KEYS = 32


def sdpa(q: Tensor, k: Tensor, v: Tensor, attn_bias: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention with an optional additive bias.

    Args:
        q: (B, nh, Tq, hs) queries.
        k: (B, nh, Tk, hs) keys.
        v: (B, nh, Tk, hv) values.
        attn_bias: additive bias broadcastable to (B, nh, Tq, Tk), in q's dtype.

    Returns:
        (B, nh, Tq, hv) attention output.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)


class Attention(nn.Module):
    """Attention with separate q/k/v projections and optional down-projection.

    This is the attention of the two-way transformer (SAM 1 and SAM 2) and of SAM 2's memory
    attention; state-dict keys are `q_proj`, `k_proj`, `v_proj`, `out_proj`.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        kv_in_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = kv_in_dim if kv_in_dim is not None else embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError(
                f"num_heads ({num_heads}) must divide embedding_dim // downsample_rate "
                f"({self.internal_dim})"
            )
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _separate_heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(
            1, 2
        )  # (B, nh, N, hs)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attend from q (BxNqxC) to k, v (BxNkxC_kv); returns BxNqxC.

        A batch of 1 on either side broadcasts over the other's batch (the mask decoder keeps a
        shared image embedding at batch 1), so its projections are computed once.
        """
        q = self._separate_heads(self.q_proj(q))
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        if k.shape[2] <= SMALL_KEYS:
            # A few keys (image -> token attention): plain matmuls beat the SDPA kernel here, and
            # scores laid out keys x queries let the softmax vectorise along the long query axis.
            scores_t = k @ q.transpose(-2, -1) * q.shape[-1] ** -0.5  # (B, nh, Nk, Nq)
            out = torch.softmax(scores_t, dim=-2).transpose(-2, -1) @ v
        else:
            if q.shape[0] == 1 and k.shape[0] != 1:
                q = q.expand(k.shape[0], -1, -1, -1)
            elif k.shape[0] == 1 and q.shape[0] != 1:
                k, v = k.expand(q.shape[0], -1, -1, -1), v.expand(q.shape[0], -1, -1, -1)
            out = sdpa(q, k, v)  # (B, nh, Nq, hs)
        b, nh, n, hs = out.shape  # from the output, so exporters keep the batch dynamic
        return self.out_proj(out.transpose(1, 2).reshape(b, n, nh * hs))


def reference_attention(q: Tensor, k: Tensor, v: Tensor, attn_bias: Tensor | None = None) -> Tensor:
    """Plain softmax(q k^T / sqrt(d) + bias) v, for tests."""
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if attn_bias is not None:
        attn = attn + attn_bias
    return torch.softmax(attn, dim=-1) @ v
