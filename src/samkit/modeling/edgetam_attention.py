"""EdgeTAM's memory cross-attention (official `RoPEAttentionv2`, `sam2/modeling/sam/transformer.py`).

The queries are the frame's stride-16 tokens, rotated by the axial RoPE of their `q_sizes` grid
(64x64 at 1024 px) as in SAM 2. The keys are memories compressed by the spatial perceiver
(`samkit.modeling.perceiver`): each memory is `tokens_per_memory` tokens, its global latents
first (not rotated) and then the `k_sizes` grid of 2-D latents (16x16), rotated by the RoPE of
that grid; the object-pointer tokens at the end are not rotated. The official passes the
number of memories (`rope_k_repeat = num_spatial_mem`); here it is the number of rotated-part
keys divided by `tokens_per_memory`, which the model fixes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from samkit.layers.attention import sdpa
from samkit.layers.rope import RoPEAttention, axial_rope_tables, interleave_tables, rotate


class RoPEAttentionV2(RoPEAttention):
    """RoPE attention with separate query and key grids (state-dict keys of `Attention`).

    Args:
        embedding_dim, num_heads, downsample_rate, kv_in_dim, rope_theta: as `RoPEAttention`.
        q_sizes: the queries' (x, y) grid (only square grids are supported, as officially).
        k_sizes: the 2-D latents' (x, y) grid of each memory.
        tokens_per_memory: tokens of one compressed memory (global + 2-D latents).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        kv_in_dim: int | None = None,
        rope_theta: float = 10000.0,
        q_sizes: tuple[int, int] = (64, 64),
        k_sizes: tuple[int, int] = (16, 16),
        tokens_per_memory: int = 512,
    ) -> None:
        super().__init__(
            embedding_dim,
            num_heads,
            downsample_rate,
            kv_in_dim,
            rope_theta,
            rope_k_repeat=True,
            feat_sizes=q_sizes,
        )
        self.k_sizes = (int(k_sizes[0]), int(k_sizes[1]))
        self.tokens_per_memory = int(tokens_per_memory)
        if self.tokens_per_memory < self.k_sizes[0] * self.k_sizes[1]:
            raise ValueError(
                f"tokens_per_memory {tokens_per_memory} is fewer than the {k_sizes} key grid"
            )
        self._k_tables: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def key_tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Interleaved cos/sin tables (k_x * k_y, head dim) of the key grid, cached per device."""
        tables = self._k_tables.get(device)
        if tables is None:
            with torch.inference_mode(False), torch.no_grad():
                hd = self.internal_dim // self.num_heads
                tables = interleave_tables(
                    *axial_rope_tables(
                        hd, self.k_sizes[0], self.k_sizes[1], self.rope_theta, device
                    )
                )
            self._k_tables[device] = tables
        return tables

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0) -> Tensor:
        """Attend from q (BxNqxC) to k, v (BxNkxC_kv): r memories of `tokens_per_memory` tokens,
        then `num_k_exclude_rope` pointer tokens. Returns BxNqxC.

        Raises:
            ValueError: Nk - num_k_exclude_rope is not a multiple of `tokens_per_memory`.
        """
        q = self._separate_heads(self.q_proj(q))  # (B, nh, Nq, hs)
        k = self._separate_heads(self.k_proj(k))  # (B, nh, Nk, hs)
        nh, hs = self.num_heads, self.internal_dim // self.num_heads
        late_v = self.late_values(q, k, v)
        if late_v:  # weigh the narrow values first, project after (see RoPEAttention)
            v = v.unsqueeze(1).expand(-1, nh, -1, -1)
        else:
            v = self._separate_heads(self.v_proj(v))
        b, _, nk, _ = k.shape
        n_rope = nk - num_k_exclude_rope
        tpm = self.tokens_per_memory
        if n_rope < 0 or n_rope % tpm != 0:
            raise ValueError(f"{n_rope} memory keys are not a whole number of {tpm}-token memories")
        q = rotate(q, *self.rope_tables(q.shape[-2], q.device))
        if n_rope:
            n2d = self.k_sizes[0] * self.k_sizes[1]
            mem = k[:, :, :n_rope].reshape(b, nh, n_rope // tpm, tpm, hs)
            rotated = rotate(mem[:, :, :, tpm - n2d :], *self.key_tables(k.device))
            mem = torch.cat([mem[:, :, :, : tpm - n2d], rotated], dim=3).reshape(b, nh, n_rope, hs)
            k = torch.cat([mem, k[:, :, n_rope:]], dim=2) if num_k_exclude_rope else mem
        out = sdpa(q, k, v)
        if late_v:
            out = self.project_weighed_values(out)
        n = out.shape[2]
        return self.out_proj(out.transpose(1, 2).reshape(b, n, nh * hs))
