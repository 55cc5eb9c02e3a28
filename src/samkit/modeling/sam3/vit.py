"""SAM 3's ViT trunk: patch 14, tiled absolute positions, 2-D RoPE, windowed + global blocks.

The official `sam3.model.vitdet.ViT` as SAM 3 builds it (`_create_vit_backbone`): no patch-embed
bias, a 24x24 (336 px pretraining) absolute position table without its class token tiled over
the 72x72 grid, `ln_pre`, blocks with 2-D axial RoPE (window blocks at 24x24; global blocks at
72x72 with positions scaled by 24/72, the official `use_interp_rope`), no relative position
bias, no layer scale, no `ln_post`; the output is the last global block's tokens.

State-dict names match the official ones (`patch_embed.proj`, `pos_embed`, `ln_pre`,
`blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`). The official RoPE tables
`blocks.{i}.attn.freqs_cis` (complex64) are checked against the recomputed float32 tables when a
checkpoint is loaded and not stored.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from samkit.layers.attention import sdpa
from samkit.layers.fused_linear import linear_act
from samkit.layers.rope import axial_rope_tables, interleave_tables, rotate
from samkit.layers.window import window_partition, window_unpartition


class RopeAttention(nn.Module):
    """Multi-head self-attention over an HxW token grid with 2-D axial RoPE on q and k.

    Args:
        dim: token width.
        num_heads: heads (head dim a multiple of 4).
        grid: (H, W) of the token grid this block sees (window or whole image).
        rope_scale: position scale of the RoPE table (24 / 72 for SAM 3's global blocks).
        rope_theta: RoPE base.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid: tuple[int, int],
        rope_scale: float = 1.0,
        rope_theta: float = 10000.0,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0 or (dim // num_heads) % 4 != 0:
            raise ValueError(
                f"embed dim {dim} must split into {num_heads} heads of a multiple of 4 channels"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.grid = tuple(grid)
        self.rope_scale = rope_scale
        self.rope_theta = rope_theta
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self._tables: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def _angles(self, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        h, w = self.grid
        return axial_rope_tables(self.head_dim, w, h, self.rope_theta, device, self.rope_scale)

    def rope_tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Interleaved float32 cos / sin tables (H*W, head_dim), cached per device."""
        tables = self._tables.get(device)
        if tables is None:
            with torch.inference_mode(False), torch.no_grad():
                tables = interleave_tables(*self._angles(device))
            self._tables[device] = tables
        return tables

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        table = state_dict.pop(prefix + "freqs_cis", None)
        if table is not None:
            cos, sin = self._angles()
            if tuple(table.shape) != tuple(cos.shape) or not table.is_complex():
                raise ValueError(
                    f"{prefix}freqs_cis has shape {tuple(table.shape)} {table.dtype}; this "
                    f"architecture needs a complex {tuple(cos.shape)} RoPE table (other image "
                    "size, window or head count?)"
                )
            ref = torch.complex(cos, sin)
            if not torch.allclose(table.to(ref.dtype), ref, rtol=0, atol=1e-5):
                raise ValueError(f"{prefix}freqs_cis differs from the RoPE table of this model")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """x: BxHxWxC (H, W = `grid`) -> BxHxWxC."""
        b, h, w, c = x.shape
        n = h * w
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, N, hd) each
        cos2, sin2 = self.rope_tables(x.device)
        if cos2.shape[0] != n:
            raise ValueError(f"attention grid is {self.grid}, got tokens of {h}x{w}")
        q, k = rotate(q, cos2, sin2), rotate(k, cos2, sin2)
        out = sdpa(q, k, v)  # (B, nh, N, hd)
        out = out.transpose(1, 2).reshape(b, h, w, c)
        return self.proj(out)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (timm `Mlp` names)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(linear_act(x, self.fc1, self.act))


class Block(nn.Module):
    """Pre-norm ViT block; with `window_size > 0` attention runs inside non-overlapping windows."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        window_size: int,
        grid: tuple[int, int],
        rope_scale: float,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        attn_grid = (window_size, window_size) if window_size > 0 else tuple(grid)
        self.attn = RopeAttention(dim, num_heads, attn_grid, rope_scale)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """x: BxHxWxC -> BxHxWxC."""
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            h, w = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(x), self.window_size, pad_hw, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class Sam3ViT(nn.Module):
    """The SAM 3 image trunk (official sizes by default: 1008 px, ViT-L-like 1024 x 32).

    Args:
        img_size: square input size (1008).
        patch_size: patch size (14), giving an (img_size / patch_size)^2 token grid.
        embed_dim, depth, num_heads, mlp_ratio: transformer sizes (1024, 32, 16, 4.625).
        window_size: window of the non-global blocks (24); also the RoPE pretraining grid.
        global_att_blocks: indices of the global-attention blocks; the output is taken after
            the last of them.
        pretrain_img_size: size of the absolute position table (336 px -> 24x24, plus a class
            token entry that is dropped), tiled over the token grid.
    """

    def __init__(
        self,
        img_size: int = 1008,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 32,
        num_heads: int = 16,
        mlp_ratio: float = 4.625,
        window_size: int = 24,
        global_att_blocks: tuple[int, ...] = (7, 15, 23, 31),
        pretrain_img_size: int = 336,
    ) -> None:
        super().__init__()
        if not global_att_blocks or not all(0 <= i < depth for i in global_att_blocks):
            raise ValueError(f"global_att_blocks {global_att_blocks} must lie in [0, {depth})")
        self.img_size = img_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.full_attn_ids = sorted(global_att_blocks)
        self.channel_list = [embed_dim]
        grid = (img_size // patch_size, img_size // patch_size)
        self.grid = grid
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(
            3, embed_dim, kernel_size=patch_size, stride=patch_size, bias=False
        )
        pt = pretrain_img_size // patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, pt * pt + 1, embed_dim))
        self.ln_pre = nn.LayerNorm(embed_dim, eps=1e-5)
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio,
                window_size=0 if i in self.full_attn_ids else window_size,
                grid=grid,
                rope_scale=window_size / grid[0] if i in self.full_attn_ids else 1.0,
            )
            for i in range(depth)
        )

    def tiled_pos_embed(self, h: int, w: int) -> Tensor:
        """The position table without its class token, tiled (not interpolated) to 1xHxWxC."""
        table = self.pos_embed[:, 1:]
        side = math.isqrt(table.shape[1])
        table = table.reshape(1, side, side, -1)
        reps = (1, h // side + 1, w // side + 1, 1)
        return table.repeat(reps)[:, :h, :w]

    def forward(self, x: Tensor) -> list[Tensor]:
        """Bx3xSxS normalised images (S = img_size) -> [BxCx(S/14)x(S/14)] (one level)."""
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (self.img_size,) * 2:
            raise ValueError(
                f"expected a Bx3x{self.img_size}x{self.img_size} image batch, got {tuple(x.shape)}"
            )
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        x = x + self.tiled_pos_embed(x.shape[1], x.shape[2])
        x = self.ln_pre(x)
        for block in self.blocks[: self.full_attn_ids[-1] + 1]:
            x = block(x)
        return [x.permute(0, 3, 1, 2)]
