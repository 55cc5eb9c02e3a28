"""SAM 1 image encoder: a ViT with windowed and global attention and decomposed relative positions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from samkit.layers import LayerNorm2d, MLPBlock, rel_pos_attention, sdpa
from samkit.layers.window import window_partition, window_unpartition


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: BxCxHxW image -> BxH'xW'xD tokens (key `proj`)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        # Contiguous BxHxWxD: a permuted view would make every later LayerNorm, linear and
        # residual add copy or stride through memory.
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


class ViTAttention(nn.Module):
    """Multi-head self-attention over a token grid with optional decomposed relative positions."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size is required with use_rel_pos")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        """BxHxWxC -> BxHxWxC."""
        b, h, w, c = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, nh, H*W, hs)
        if self.use_rel_pos:
            out = rel_pos_attention(q, k, v, self.rel_pos_h, self.rel_pos_w, (h, w), (h, w))
        else:
            out = sdpa(q, k, v)
        out = out.transpose(1, 2).reshape(b, h, w, c)
        return self.proj(out)


class ViTBlock(nn.Module):
    """Pre-norm transformer block; windowed attention when `window_size > 0`, else global."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        norm_eps: float,
        use_rel_pos: bool,
        window_size: int,
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = ViTAttention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
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


class ImageEncoderViT(nn.Module):
    """ViT backbone + convolutional neck: Bx3xSxS image -> Bx`out_chans`x(S/p)x(S/p) embedding."""

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        use_abs_pos: bool = True,
        use_rel_pos: bool = False,
        window_size: int = 0,
        global_attn_indexes: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        if img_size % patch_size != 0:
            raise ValueError(f"img_size {img_size} must be a multiple of patch_size {patch_size}")
        if embed_dim % num_heads != 0:
            raise ValueError(f"num_heads {num_heads} must divide embed_dim {embed_dim}")
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            ViTBlock(
                embed_dim,
                num_heads,
                mlp_ratio,
                qkv_bias,
                norm_eps,
                use_rel_pos,
                window_size if i not in global_attn_indexes else 0,
                (grid, grid),
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)  # (B, H, W, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))
