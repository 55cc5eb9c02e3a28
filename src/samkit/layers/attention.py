"""Multi-head attention through `samkit.layers.attention_kernels.attention`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from samkit.layers.attention_kernels import attention

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

    `F.scaled_dot_product_attention`, or blocks of matmuls where those are faster on a CPU
    (bfloat16; values narrower than the keys): see `samkit.layers.attention_kernels`.
    """
    return attention(q, k, v, attn_bias)


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
        return self.attend(self.q_proj(q), self.k_proj(k), self.v_proj(v))

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """`forward` after the q/k/v projections (BxNqxC', BxNkxC', BxNkxC'); returns BxNqxC."""
        if k.shape[1] <= SMALL_KEYS:
            return self.out_proj(self._few_keys(q, k, v))
        q, k, v = self._separate_heads(q), self._separate_heads(k), self._separate_heads(v)
        if q.shape[0] == 1 and k.shape[0] != 1:
            q = q.expand(k.shape[0], -1, -1, -1)
        elif k.shape[0] == 1 and q.shape[0] != 1:
            k, v = k.expand(q.shape[0], -1, -1, -1), v.expand(q.shape[0], -1, -1, -1)
        out = sdpa(q, k, v)  # (B, nh, Nq, hs)
        b, nh, n, hs = out.shape  # from the output, so exporters keep the batch dynamic
        return self.out_proj(out.transpose(1, 2).reshape(b, n, nh * hs))

    def _few_keys(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attention over a few keys (image -> token): (Bq, Nq, C) x (Bk, Nk, C) -> (B, Nq, C).

        With keys and values spread block-diagonally over the heads, (Bk, nh*Nk, C), all heads are
        one matmul against the queries in their (B, Nq, C) layout, and the output comes out in
        that layout too: no head split or merge copies of the long query side. The scores are
        laid out keys x queries, so the softmax vectorises along the long query axis.
        """
        nh = self.num_heads
        bq, nq, c = q.shape
        bk, nk, _ = k.shape
        eye = torch.eye(nh, dtype=k.dtype, device=k.device)[:, None, :, None]  # (nh, 1, nh, 1)
        k_bd = (k.reshape(bk, 1, nk, nh, c // nh) * eye).reshape(bk, nh * nk, c)
        v_bd = (v.reshape(bk, 1, nk, nh, c // nh) * eye).reshape(bk, nh * nk, c)
        k_bd = k_bd * (c // nh) ** -0.5
        if bq == 1 and bk != 1:  # one shared query side: stack the batches' keys as rows
            scores = (k_bd.reshape(1, bk * nh * nk, c) @ q.transpose(1, 2)).reshape(bk, nh, nk, nq)
        else:
            scores = (k_bd @ q.transpose(1, 2)).reshape(-1, nh, nk, nq)  # (B, nh, Nk, Nq)
        attn = torch.softmax(scores, dim=-2).reshape(-1, nh * nk, nq)
        return attn.transpose(1, 2) @ v_bd  # (B, Nq, C)


def reference_attention(q: Tensor, k: Tensor, v: Tensor, attn_bias: Tensor | None = None) -> Tensor:
    """Plain softmax(q k^T / sqrt(d) + bias) v, for tests."""
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if attn_bias is not None:
        attn = attn + attn_bias
    return torch.softmax(attn, dim=-1) @ v
