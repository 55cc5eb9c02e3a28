"""2-D axial rotary position encoding (RoPE) and the attention that applies it (SAM 2 memory).

Channel pairs `(x[2i], x[2i+1])` of each head are rotated by an angle that depends on the token's
column (first half of the pairs) or row (second half) in a `end_x` x `end_y` grid, token
`t` being at column `t % end_x`, row `t // end_x`. The frequencies are `theta^(-4j/d)` for
`j < d/4`, as in the official `compute_axial_cis`. The rotation is done with real cos/sin tables
(the same products as the official complex multiplication) so it also runs in bfloat16.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from samkit.layers.attention import Attention, sdpa
from samkit.layers.attention_kernels import fast_path_allowed


def axial_rope_tables(
    dim: int,
    end_x: int,
    end_y: int,
    theta: float = 10000.0,
    device: torch.device | None = None,
    scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """cos and sin tables, each (end_x * end_y) x (dim / 2) float32, of the axial rotation.

    `scale` multiplies the (column, row) positions first: SAM 3's ViT interpolates its RoPE
    trained on a 24x24 window to the 72x72 global grid with `scale = 24 / 72` (the official
    `compute_axial_cis(scale_pos=...)`).
    """
    if dim % 4 != 0:
        raise ValueError(f"RoPE head dim must be a multiple of 4, got {dim}")
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4, device=device)[: dim // 4].float() / dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32, device=device)
    t_x = t % end_x
    t_y = torch.div(t, end_x, rounding_mode="floor")
    if scale != 1.0:
        t_x, t_y = t_x * scale, t_y * scale
    angles = torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)
    return torch.cos(angles), torch.sin(angles)


def interleave_tables(cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """(n, D/2) cos / sin tables -> (n, D) tables `[c0, c0, c1, c1, ...]`, `[-s0, s0, -s1, s1, ...]`
    for `rotate`."""
    return cos.repeat_interleave(2, dim=-1), torch.stack((-sin, sin), dim=-1).flatten(-2)


def rotate(x: Tensor, cos2: Tensor, sin2: Tensor, out: Tensor | None = None) -> Tensor:
    """RoPE with interleaved tables (n, D) (see `interleave_tables`) on x (..., N, D), N = r * n.

    `x * cos2 + swap_pairs(x) * sin2` in float32: the official complex product's terms, in two
    passes over x instead of six. The result is written into `out` (any dtype, x's shape) when
    given, else returned in x's dtype.
    """
    *lead, n_tok, d = x.shape
    n = cos2.shape[0]
    xf = x.float().reshape(*lead, n_tok // n, n, d)
    swapped = torch.empty_like(xf)  # pairs swapped: strided copies beat flip on a size-2 dim
    swapped[..., 0::2] = xf[..., 1::2]
    swapped[..., 1::2] = xf[..., 0::2]
    rot = (xf * cos2).addcmul_(swapped, sin2).reshape(x.shape)
    if out is None:
        return rot.to(x.dtype)
    return out.copy_(rot)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the channel pairs of x (..., N, D) by tables (n, D/2) with N a multiple of n.

    N = r * n tokens (r memory frames of the same grid) reuse the table r times. Computed in
    float32 and returned in x's dtype.
    """
    return rotate(x, *interleave_tables(cos, sin))


class RoPEAttention(Attention):
    """`Attention` with 2-D RoPE on the queries and on all but the last keys.

    State-dict keys are those of `Attention` (`q_proj`, `k_proj`, `v_proj`, `out_proj`). The
    query tokens form a square grid (`feat_sizes` at 1024 px; other square sizes get their own
    tables). With `rope_k_repeat` the keys may be several grids of the query's size (memories of
    several frames), each rotated like the queries; the last `num_k_exclude_rope` keys (object
    pointer tokens) are not rotated.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        kv_in_dim: int | None = None,
        rope_theta: float = 10000.0,
        rope_k_repeat: bool = False,
        feat_sizes: tuple[int, int] = (64, 64),
    ) -> None:
        super().__init__(embedding_dim, num_heads, downsample_rate, kv_in_dim)
        self.rope_theta = rope_theta
        self.rope_k_repeat = rope_k_repeat
        self.feat_sizes = tuple(feat_sizes)
        self._tables: dict[tuple[int, torch.device], tuple[Tensor, Tensor]] = {}

    def rope_tables(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Interleaved cos/sin tables (n, head dim) for n query tokens (a square grid), cached per
        (n, device)."""
        key = (n, device)
        tables = self._tables.get(key)
        if tables is None:
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(f"RoPE attention needs a square grid of queries, got {n} tokens")
            with torch.inference_mode(False), torch.no_grad():
                hd = self.internal_dim // self.num_heads
                tables = interleave_tables(
                    *axial_rope_tables(hd, side, side, self.rope_theta, device)
                )
            self._tables[key] = tables
        return tables

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        num_k_exclude_rope: int = 0,
        memory_keys: Tensor | None = None,
    ) -> Tensor:
        """Attend from q (BxNqxC) to k, v (BxNkxC_kv); returns BxNqxC.

        Nk - num_k_exclude_rope must be Nq (or a multiple of it with `rope_k_repeat`).
        `memory_keys` (B, nh, Nk, hs): the rotated, projected keys of the first
        Nk - num_k_exclude_rope tokens, computed ahead (`memory_key_part` + `add_key_offset`);
        k then holds only the inputs of the last num_k_exclude_rope keys, which are projected
        and written into the rest of `memory_keys`.
        """
        q = self._separate_heads(self.q_proj(q))  # (B, nh, Nq, hs)
        nh, hs = self.num_heads, self.internal_dim // self.num_heads
        if memory_keys is None:
            k = self._separate_heads(self.k_proj(k))  # (B, nh, Nk, hs)
        # Narrow values (SAM 2's 64-wide memory, 256-wide heads): weigh them first and project
        # after, P (V W^T + b) = (P V) W^T + b as each row of P sums to 1; the probabilities
        # then multiply 64 channels instead of 256 (exact math, float rounding only).
        late_v = self.late_values(q, k, v)
        if late_v:
            v = v.unsqueeze(1).expand(-1, nh, -1, -1)  # (B, nh, Nk, C_kv)
        else:
            v = self._separate_heads(self.v_proj(v))
        nq = q.shape[-2]
        n_all = k.shape[-2] if memory_keys is None else memory_keys.shape[-2]
        n_rope = n_all - num_k_exclude_rope
        if n_rope % nq != 0 or (n_rope != nq and not self.rope_k_repeat):
            raise ValueError(
                f"{n_rope} rotated keys for {nq} queries; expected the same number"
                + (" or a multiple" if self.rope_k_repeat else "")
            )
        cos2, sin2 = self.rope_tables(nq, q.device)
        q = rotate(q, cos2, sin2)
        if memory_keys is not None:
            if num_k_exclude_rope:
                memory_keys[:, :, n_rope:] = self._separate_heads(self.k_proj(k))
            k = memory_keys
        elif num_k_exclude_rope and n_rope:
            k_all = torch.empty_like(k)
            rotate(k[:, :, :n_rope], cos2, sin2, out=k_all[:, :, :n_rope])
            k_all[:, :, n_rope:] = k[:, :, n_rope:]
            k = k_all
        elif n_rope:
            k = rotate(k, cos2, sin2)
        out = sdpa(q, k, v)  # (B, nh, Nq, hs), or (B, nh, Nq, C_kv) with late_v
        if late_v:
            out = self.project_weighed_values(out)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, nh * hs))

    def late_values(self, q: Tensor, k: Tensor, v: Tensor) -> bool:
        """Whether to weigh the narrow values before their projection (see `forward`): values
        narrower than a head, on the CPU fast path (`attention_kernels.fast_path_allowed`)."""
        hs = self.internal_dim // self.num_heads
        return self.kv_in_dim < hs and fast_path_allowed(q, k, v, self.v_proj.weight)

    def project_weighed_values(self, out: Tensor) -> Tensor:
        """(P V) W_v^T + b_v per head: (B, nh, Nq, C_kv) -> (B, nh, Nq, hs)."""
        nh, hs = self.num_heads, self.internal_dim // self.num_heads
        w = self.v_proj.weight.view(nh, hs, self.kv_in_dim)
        return torch.einsum("bhnc,hdc->bhnd", out, w) + self.v_proj.bias.view(nh, 1, hs)

    # Keys of a stored memory: rotate(W (m + p + t) + b) = rotate(W (m + p)) + rotate(W t + b)
    # (projection and rotation are linear), where m + p (memory + its position encoding) stays
    # the same while the memory is stored and t (the temporal encoding of its slot) changes
    # from frame to frame: the first part is computed once, the second per frame.
    def memory_key_part(self, x: Tensor) -> Tensor:
        """rotate(x W_k^T), (B, nh, n, hs) in x's dtype, of one memory frame x (B, n, C_kv) on the
        n-token query grid: the part of its keys that does not change between frames."""
        k = self._separate_heads(torch.nn.functional.linear(x, self.k_proj.weight))
        cos2, sin2 = self.rope_tables(k.shape[-2], k.device)
        return rotate(k, cos2, sin2)

    def add_key_offset(self, out: Tensor, part: Tensor, offset: Tensor) -> Tensor:
        """out (B, nh, n, hs) = part + rotate(offset W_k^T + b): the keys of a memory frame
        from its `memory_key_part` and the C_kv vector added to all its tokens (the slot's
        temporal encoding); rotate(c) of a constant c is c * cos + swap(c) * sin per token."""
        c = self._separate_heads(self.k_proj(offset.reshape(1, 1, -1))).float()  # (1, nh, 1, hs)
        swapped = torch.empty_like(c)
        swapped[..., 0::2] = c[..., 1::2]
        swapped[..., 1::2] = c[..., 0::2]
        cos2, sin2 = self.rope_tables(part.shape[-2], part.device)
        if out.dtype == torch.float32:
            torch.addcmul(part, cos2, c, out=out)
            return out.addcmul_(sin2, swapped)
        # low precision: one rounding of the float32 sum
        return out.copy_(torch.addcmul(part.float(), cos2, c).addcmul_(sin2, swapped))
