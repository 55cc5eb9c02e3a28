"""EfficientTAM image encoder: a plain ViT trunk (ViTDet style) and its one-level neck.

The official EfficientTAM (`efficient_track_anything/modeling/backbones/vitdet.py`,
`image_encoder.py`) encodes a 1024x1024 image with a ViT of patch 16: an absolute position
embedding learnt on a 224-px grid (14x14 plus a class token) and bicubically resized to 64x64,
windowed blocks (window 14, zero padding to 70x70) and global blocks, no relative positions. The
feature map after the last global block goes through `ViTDetNeck` (1x1 conv, LayerNorm2d, 3x3 conv,
LayerNorm2d) to the 256-channel image embedding. State-dict names match the official checkpoint
(`image_encoder.trunk.patch_embed.proj.*`, `...trunk.pos_embed`, `...trunk.blocks.{i}.norm1`,
`.attn.qkv`, `.attn.proj`, `.norm2`, `.mlp.layers.{0,1}`, `image_encoder.neck.convs.0.conv_1x1`,
`.norm_0`, `.conv_3x3`, `.norm_1`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.layers import MLP, LayerNorm2d
from samkit.layers.sine_position import PositionEmbeddingSine
from samkit.layers.window import window_partition, window_unpartition
from samkit.modeling.vit import PatchEmbed, ViTAttention


class ViTDetBlock(nn.Module):
    """Pre-norm transformer block, windowed (`window_size` > 0) or global; BxHxWxC -> BxHxWxC."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window_size: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = ViTAttention(dim, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dim, num_layers=2, activation=nn.GELU)
        self.window_size = window_size

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            h, w = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, pad_hw, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ViTDet(nn.Module):
    """The EfficientTAM ViT trunk: Bx3xSxS image -> [BxCx(S/16)x(S/16)] (one level).

    Args:
        embed_dim: token width C (official: 192 for `ti`, 384 for `s`).
        depth: number of blocks (official 12).
        num_heads: attention heads per block (official 3 / 6).
        window_block_indexes: blocks with windowed attention; the others are global. The output
            is the feature map after the last global block (the official `full_attn_ids[-1]`);
            later blocks would not reach the output and are not run.
        patch_size, window_size, mlp_ratio: official 16, 14, 4.0.
        pretrain_img_size: the grid the position embedding was learnt on (224 px -> 14x14, plus
            one class-token row that is dropped).

    Raises:
        ValueError: if every block is windowed (the official trunk outputs nothing then).
    """

    def __init__(
        self,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        window_block_indexes: tuple[int, ...] = (0, 1, 3, 4, 6, 7, 9, 10),
        patch_size: int = 16,
        window_size: int = 14,
        mlp_ratio: float = 4.0,
        pretrain_img_size: int = 224,
    ) -> None:
        super().__init__()
        full = [i for i in range(depth) if i not in set(window_block_indexes)]
        if not full:
            raise ValueError(
                f"window_block_indexes {tuple(window_block_indexes)} leave no global block in a "
                f"depth-{depth} ViT; the output is taken after the last global block"
            )
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        grid = pretrain_img_size // patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self.blocks = nn.ModuleList(
            ViTDetBlock(embed_dim, num_heads, mlp_ratio, window_size if i not in full else 0)
            for i in range(depth)
        )
        self.out_block = full[-1]
        self.channel_list = [embed_dim]
        self._pos_cache: dict[tuple[int, int, torch.device, torch.dtype], Tensor] = {}

    def abs_pos(self, h: int, w: int) -> Tensor:
        """The position embedding without its class token, resized to (1, h, w, C)."""
        p = self.pos_embed[:, 1:]
        side = math.isqrt(p.shape[1])
        grid = p.reshape(1, side, side, -1)
        if (side, side) == (h, w):
            return grid
        grid = F.interpolate(
            grid.permute(0, 3, 1, 2), size=(h, w), mode="bicubic", align_corners=False
        )
        return grid.permute(0, 2, 3, 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Bx3xSxS -> [BxCx(S/16)x(S/16)]."""
        x = self.patch_embed(x)  # (B, H, W, C)
        x = x + self.abs_pos(x.shape[1], x.shape[2])
        for blk in self.blocks[: self.out_block + 1]:
            x = blk(x)
        return [x.permute(0, 3, 1, 2)]


class ViTDetNeck(nn.Module):
    """One-level neck: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d (no conv biases), plus the
    sine position encoding of the output. `forward` has the `FpnNeck` signature."""

    def __init__(self, position_encoding: PositionEmbeddingSine, d_model: int, in_dim: int) -> None:
        super().__init__()
        self.position_encoding = position_encoding
        self.backbone_channel_list = [in_dim]
        self.d_model = d_model
        conv = nn.Sequential()
        conv.add_module("conv_1x1", nn.Conv2d(in_dim, d_model, kernel_size=1, bias=False))
        conv.add_module("norm_0", LayerNorm2d(d_model))
        conv.add_module("conv_3x3", nn.Conv2d(d_model, d_model, 3, padding=1, bias=False))
        conv.add_module("norm_1", LayerNorm2d(d_model))
        self.convs = nn.ModuleList([conv])

    def forward(self, xs: list[Tensor], num_levels: int = 1) -> tuple[list[Tensor], list[Tensor]]:
        """[BxC_inxHxW] -> ([Bxd_modelxHxW], [its position encoding])."""
        if len(xs) != 1 or num_levels != 1:
            raise ValueError(f"the ViTDet neck takes one feature level, got {len(xs)}")
        out = self.convs[0](xs[0])
        return [out], [self.position_encoding(out).to(out.dtype)]
