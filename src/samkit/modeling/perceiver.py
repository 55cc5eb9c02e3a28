"""EdgeTAM's spatial perceiver: compresses a frame's memory (BxCxHxW, 64x64 at 1024 px) into a
few hundred tokens before the memory attention reads it.

Two sets of learned latents read the memory through the same layers (official
`sam2/modeling/perceiver.py` `PerceiverResampler`, whose state-dict names are kept:
`latents`, `latents_2d`, `layers.{i}.attn.*`, `layers.{i}.ff.{0,1,3}`, `layers.{i}.self_attn.*`,
`layers.{i}.self_ff.{0,1,3}`, `norm`):

- global latents (`num_latents`, 256): each attends to every memory position; the memory's
  position encoding is added to the projected keys *and* values; their output position is 0.
- 2-D latents (`num_latents_2d`, 256 = 16x16): latent i reads only the i-th window of the memory
  grid (64 / 16 = 4x4 cells), without position; the outputs form a 16x16 grid whose sine
  position encoding is their position.

Output: (BxNxC tokens, BxNxC positions), global latents first, N = 256 + 256. The official code
fails for a batch of several memories (`view` of an expanded tensor, EdgeTAM issue #15); here
every batch element is independent, as the official computes for a batch of one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from samkit.layers.attention import sdpa
from samkit.layers.sine_position import PositionEmbeddingSine


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    """LayerNorm, Linear to dim * mult (no bias), GELU, Linear back (no bias)."""
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


def _heads(x: Tensor, n: int) -> Tensor:
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)  # (B, nh, T, hs)


def _merge(x: Tensor) -> Tensor:
    b, nh, t, hs = x.shape
    return x.transpose(1, 2).reshape(b, t, nh * hs)


class PerceiverAttention(nn.Module):
    """Latents (queries) attend to the inputs; the key/value inputs are not concatenated with
    the latents (the official `concat_kv_latents=False`, the only setting EdgeTAM uses)."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm_x = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, latents: Tensor, x: Tensor, pos: Tensor | None = None) -> Tensor:
        """latents BxLxC, x BxNxC, pos BxNx(dim_head * heads) added to keys and values."""
        latents = self.norm_latents(latents)
        x = self.norm_x(x)
        q = _heads(self.to_q(latents), self.heads)
        k, v = self.to_kv(x).chunk(2, dim=-1)
        k, v = _heads(k, self.heads), _heads(v, self.heads)
        if pos is not None:
            p = _heads(pos.to(k.dtype), self.heads)
            k, v = k + p, v + p
        return self.to_out(_merge(sdpa(q, k, v)))


class SelfAttention(nn.Module):
    """Pre-norm self-attention among the latents (official perceiver `Attention`)."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        q = _heads(self.to_q(x), self.heads)
        k, v = self.to_kv(x).chunk(2, dim=-1)
        out = sdpa(q, _heads(k, self.heads), _heads(v, self.heads))
        return self.to_out(_merge(out))


class PerceiverLayer(nn.Module):
    """Cross-attention + MLP, then (with `use_self_attn`) self-attention + MLP, all residual."""

    def __init__(self, dim: int, dim_head: int, heads: int, ff_mult: int, use_self_attn: bool):
        super().__init__()
        self.attn = PerceiverAttention(dim, dim_head, heads)
        self.ff = feed_forward(dim, ff_mult)
        self.use_self_attn = use_self_attn
        if use_self_attn:
            self.self_attn = SelfAttention(dim, dim_head, heads)
            self.self_ff = feed_forward(dim, ff_mult)

    def forward(self, latents: Tensor, x: Tensor, pos: Tensor | None = None) -> Tensor:
        latents = latents + self.attn(latents, x, pos)
        latents = latents + self.ff(latents)
        if self.use_self_attn:
            latents = latents + self.self_attn(latents)
            latents = latents + self.self_ff(latents)
        return latents


class PerceiverResampler(nn.Module):
    """The spatial perceiver (see the module docstring).

    Args:
        dim: memory channels C (= the memory encoder's `out_dim`).
        depth: layers (shared by both latent sets).
        dim_head, heads: attention head width and count (dim_head * heads must be C when the
            global latents read positions, as in every official config).
        num_latents: global latents (0: none).
        num_latents_2d: 2-D latents, a square number (0: none).
        ff_mult: MLP hidden width / C.
        position_encoding: the sine encoding of the 2-D latents' grid.
        use_self_attn: self-attention among the latents in every layer.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        dim_head: int = 64,
        heads: int = 1,
        num_latents: int = 256,
        num_latents_2d: int = 256,
        ff_mult: int = 4,
        position_encoding: PositionEmbeddingSine | None = None,
        use_self_attn: bool = True,
    ) -> None:
        super().__init__()
        if num_latents <= 0 and num_latents_2d <= 0:
            raise ValueError("the perceiver needs global latents, 2-D latents or both")
        side = math.isqrt(max(num_latents_2d, 0))
        if num_latents_2d > 0 and side * side != num_latents_2d:
            raise ValueError(f"num_latents_2d must be a square number, got {num_latents_2d}")
        if num_latents_2d > 0 and position_encoding is None:
            raise ValueError("2-D latents need a position encoding")
        self.num_latents = num_latents
        self.num_latents_2d = num_latents_2d
        self.grid = side
        if num_latents > 0:
            self.latents = nn.Parameter(torch.randn(num_latents, dim))
        if num_latents_2d > 0:
            self.latents_2d = nn.Parameter(torch.randn(num_latents_2d, dim))
        self.position_encoding = position_encoding
        self.layers = nn.ModuleList(
            PerceiverLayer(dim, dim_head, heads, ff_mult, use_self_attn) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    @property
    def num_tokens(self) -> int:
        """Tokens per memory: global latents + 2-D latents."""
        return max(self.num_latents, 0) + max(self.num_latents_2d, 0)

    def forward(self, x: Tensor, pos: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """BxCxHxW memory (pos: its BxCxHxW encoding) -> (BxNxC latents, BxNxC positions, None
        without `pos`), N = `num_tokens`, global latents first.

        Raises:
            ValueError: a memory grid the 2-D latents' grid does not divide.
        """
        lat, lpos = [], []
        if self.num_latents > 0:
            a, p = self._global(x, pos)
            lat.append(a)
            lpos.append(p)
        if self.num_latents_2d > 0:
            a, p = self._windows(x)
            lat.append(a)
            lpos.append(p)
        latents = torch.cat(lat, dim=1)
        return latents, (torch.cat(lpos, dim=1) if pos is not None else None)

    def _global(self, x: Tensor, pos: Tensor | None) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        latents = self.latents.unsqueeze(0).expand(b, -1, -1)
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        kv_pos = None if pos is None else pos.flatten(2).transpose(1, 2)
        for layer in self.layers:
            latents = layer(latents, tokens, kv_pos)
        return self.norm(latents), torch.zeros_like(latents)

    def _windows(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        g = self.grid
        if h % g or w % g or h // g != w // g:
            raise ValueError(
                f"a {h}x{w} memory cannot be split into {g}x{g} square windows for the 2-D latents"
            )
        ws = h // g
        # (B, C, g, ws, g, ws) -> (B * g * g, ws * ws, C): window-major, as the 2-D latents
        win = x.reshape(b, c, g, ws, g, ws).permute(0, 2, 4, 3, 5, 1).reshape(b * g * g, ws * ws, c)
        latents = self.latents_2d.unsqueeze(0).expand(b, -1, -1).reshape(b * g * g, 1, c)
        for layer in self.layers:
            latents = layer(latents, win)
        grid = latents.reshape(b, g, g, c).permute(0, 3, 1, 2)  # (B, C, g, g)
        assert self.position_encoding is not None
        pos = self.position_encoding(grid).flatten(2).transpose(1, 2)  # (B, g*g, C)
        return self.norm(grid.flatten(2).transpose(1, 2)), pos.to(latents.dtype)
