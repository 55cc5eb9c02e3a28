"""EfficientTAM's efficient memory cross-attention (pooled memory "landmarks").

The official `EfficientRoPEAttention1` / `EfficientRoPEAttention2`
(`efficient_track_anything/modeling/sam/transformer.py`, configs `efficienttam_{ti,s}_{1,2}.yaml`)
rotate queries and memory keys like SAM 2's `RoPEAttention`, then, when the memory holds more
than one frame of spatial tokens, average-pool each memory frame's keys and values 2x2 on its
(side x side) grid, so the cross-attention sees a quarter of the spatial memory. The object-pointer
keys (the last `num_k_exclude_rope`) are kept as they are. The pooled keys stand for 4 tokens each,
which the official code accounts for with a `2 log 2` (= log 4) term:

* variant 1: added to the attention logits of the pooled keys (exactly the softmax weight of 4
  identical keys);
* variant 2: added to every component of the pooled key vectors themselves (its logits change
  by `2 log 2 * sum(q)`), what the official code computes.

With one frame of memory (or fewer rotated keys than queries) both are plain `RoPEAttention`.
The state-dict keys are those of `RoPEAttention`. On the CPU fast path (no gradient, autocast or
export) the 64-wide memory values are pooled and weighed before the value projection, as
`RoPEAttention` weighs SAM 2's: exact, 4x fewer multiplications with the probabilities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.layers.attention import sdpa
from samkit.layers.rope import RoPEAttention, rotate

_POOL = 2  # the official s_kernel_size
_LOG_POOL = 2 * math.log(_POOL)


class EfficientRoPEAttention(RoPEAttention):
    """`RoPEAttention` whose memory keys / values are 2x2 average-pooled per frame.

    Args:
        variant: 1 or 2, the official class (`EfficientRoPEAttention1` / `...2`).
        other arguments: as `RoPEAttention`.

    Raises:
        ValueError: an unknown variant.
    """

    def __init__(self, *args, variant: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if variant not in (1, 2):
            raise ValueError(f"EfficientTAM cross-attention variant must be 1 or 2, got {variant}")
        self.variant = variant

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0) -> Tensor:
        """Attend from q (BxNqxC) to k, v (BxNkxC_kv); returns BxNqxC (see the module docstring)."""
        nq = q.shape[1]
        n_rope = k.shape[1] - num_k_exclude_rope
        if n_rope <= nq:
            return super().forward(q, k, v, num_k_exclude_rope)
        q = self._separate_heads(self.q_proj(q))  # (B, nh, Nq, hs)
        k = self._separate_heads(self.k_proj(k))  # (B, nh, Nk, hs)
        nh, hs = self.num_heads, self.internal_dim // self.num_heads
        # Narrow values weighed before their projection, as `RoPEAttention` does: the 2x2 mean
        # and the softmax rows both sum to 1, so pool(V W^T + b) = pool(V) W^T + b and
        # P (V W^T + b) = (P V) W^T + b (exact math, float rounding only).
        late_v = self.late_values(q, k, v)
        if late_v:
            v = v.unsqueeze(1)  # (B, 1, Nk, C_kv): one copy shared by the heads
        else:
            v = self._separate_heads(self.v_proj(v))
        if n_rope % nq != 0 or not self.rope_k_repeat:
            raise ValueError(f"{n_rope} rotated keys for {nq} queries; expected a multiple")
        cos2, sin2 = self.rope_tables(nq, q.device)
        q = rotate(q, cos2, sin2)
        k_mem = rotate(k[:, :, :n_rope], cos2, sin2)
        k_land = _pool_frames(k_mem, nq)
        v_land = _pool_frames(v[:, :, :n_rope], nq)
        n_land = k_land.shape[2]
        k_cat_parts = [k_land + _LOG_POOL if self.variant == 2 else k_land]
        v_cat_parts = [v_land]
        if num_k_exclude_rope:
            k_cat_parts.append(k[:, :, n_rope:])
            v_cat_parts.append(v[:, :, n_rope:])
        k_all = k_cat_parts[0] if len(k_cat_parts) == 1 else _cat(k_cat_parts)
        v_all = v_cat_parts[0] if len(v_cat_parts) == 1 else _cat(v_cat_parts)
        if late_v:
            v_all = v_all.expand(-1, nh, -1, -1)  # (B, nh, Nk', C_kv)
        bias = None
        if self.variant == 1:
            bias = q.new_zeros(1, 1, 1, k_all.shape[2])
            bias[..., :n_land] = _LOG_POOL
        out = sdpa(q, k_all, v_all, bias)  # (B, nh, Nq, hs), or (B, nh, Nq, C_kv) with late_v
        if late_v:
            out = self.project_weighed_values(out)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, nh * hs))


def _cat(parts: list[Tensor]) -> Tensor:
    return torch.cat(parts, dim=2)


def _pool_frames(x: Tensor, nq: int) -> Tensor:
    """(B, nh, F*nq, hs) tokens of F square frames -> (B, nh, F*nq/4, hs), 2x2 average pooled."""
    b, nh, n, hs = x.shape
    side = math.isqrt(nq)
    frames = n // nq
    g = x.reshape(b, nh * frames, side, side, hs).permute(0, 1, 4, 2, 3)
    g = g.reshape(b, nh * frames * hs, side, side)
    g = F.avg_pool2d(g, _POOL, stride=_POOL)  # (B, nh*F*hs, side/2, side/2)
    g = g.reshape(b, nh * frames, hs, -1).transpose(-2, -1)
    return g.reshape(b, nh, -1, hs)
