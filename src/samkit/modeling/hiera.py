"""Hiera image trunk of SAM 2 (hierarchical ViT with mask-unit windows and query pooling).

State-dict names follow the official `sam2.modeling.backbones.hieradet.Hiera`
(`patch_embed.proj`, `pos_embed`, `pos_embed_window`, `blocks.{i}.{norm1,attn.qkv,attn.proj,
norm2,mlp.layers.{0,1},proj}`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.layers import MLP, sdpa, window_partition, window_unpartition


def _pool_bhwc(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """Max-pool a BxHxWxC tensor with kernel = stride (no padding, odd edges dropped).

    The permuted view has channels-last strides, which max_pool2d handles without a copy.
    """
    return F.max_pool2d(x.permute(0, 3, 1, 2), stride, stride).permute(0, 2, 3, 1)


def _tracing() -> bool:
    """Whether an exporter or compiler is recording the ops (caches stay out of its graph)."""
    return bool(
        torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
    )


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution: Bx3xHxW image -> Bx(H/4)x(W/4)xC tokens (channels last)."""

    def __init__(
        self,
        embed_dim: int,
        in_chans: int = 3,
        kernel_size: int = 7,
        stride: int = 4,
        padding: int = 3,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size, stride=stride, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention on BxHxWxC tokens, optionally max-pooling the queries.

    With `q_stride`, the output grid is the input grid pooled by `q_stride` (keys and values
    keep the full resolution), which is how Hiera downsamples between stages.
    """

    def __init__(
        self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        if dim_out % num_heads != 0:
            raise ValueError(f"num_heads ({num_heads}) must divide dim_out ({dim_out})")
        self.dim, self.dim_out, self.num_heads = dim, dim_out, num_heads
        self.q_stride = None if q_stride is None else tuple(q_stride)
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        nh = self.num_heads
        qkv = self.qkv(x).reshape(b, h * w, 3, nh, -1)  # (B, T, 3, nh, hs)
        q, k, v = qkv.unbind(2)  # each (B, T, nh, hs)
        if self.q_stride is not None:
            q = _pool_bhwc(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, nh, -1)
        out = sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, nh, T', hs)
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        return self.proj(out)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block with windowed attention and an optional stage transition.

    A transition block (`dim != dim_out`) projects the shortcut to `dim_out` and, with
    `q_stride`, pools both the shortcut and the attention queries; its attention windows are
    `window_size` before pooling and `window_size // q_stride` after.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        q_stride: tuple[int, int] | None = None,
        window_size: int = 0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size = window_size
        self.q_stride = None if q_stride is None else tuple(q_stride)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=norm_eps)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """BxHxWxC -> BxH'xW'xC' (H' = H / q_stride on a pooling block)."""
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.q_stride is not None:
                shortcut = _pool_bhwc(shortcut, self.q_stride)
        h, w = shortcut.shape[1:3]  # output grid
        window = self.window_size
        if window > 0:
            x, _ = window_partition(x, window)  # (B * nW, window, window, C)
        x = self.attn(x)
        if window > 0:
            if self.q_stride is not None:
                window = window // self.q_stride[0]  # the queries were pooled inside each window
            pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
            x = window_unpartition(x, window, (h + pad_h, w + pad_w), (h, w))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class Hiera(nn.Module):
    """Hiera trunk: returns the last block's features of every stage, high resolution first.

    Args:
        embed_dim: stage-1 width (doubled by `dim_mul` at each stage change).
        num_heads: stage-1 heads (multiplied by `head_mul` at each stage change).
        stages: blocks per stage.
        q_pool: number of stage transitions that pool (stride `q_stride`).
        window_pos_embed_bkg_spatial_size: size of the background position embedding, which is
            bicubically resized to the token grid.
        window_spec: attention window per stage (the first block of a stage still uses the
            previous stage's window, before pooling).
        global_att_blocks: blocks with global (unwindowed) attention.
    """

    def __init__(
        self,
        embed_dim: int = 96,
        num_heads: int = 1,
        q_pool: int = 3,
        q_stride: tuple[int, int] = (2, 2),
        stages: tuple[int, ...] = (2, 3, 16, 3),
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
        window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14),
        window_spec: tuple[int, ...] = (8, 4, 14, 7),
        global_att_blocks: tuple[int, ...] = (12, 16, 20),
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if len(stages) != len(window_spec):
            raise ValueError(f"stages {stages} and window_spec {window_spec} differ in length")
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        if not 0 <= q_pool <= len(stages) - 1:
            raise ValueError(f"q_pool must be in [0, {len(stages) - 1}], got {q_pool}")
        self.q_pool_blocks = [e + 1 for e in self.stage_ends[:-1]][:q_pool]
        self.q_stride = tuple(q_stride)
        self.window_spec = tuple(window_spec)
        self.global_att_blocks = tuple(global_att_blocks)
        self.patch_embed = PatchEmbed(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, embed_dim, window_spec[0], window_spec[0])
        )
        self.blocks = nn.ModuleList()
        dim, heads, stage = embed_dim, num_heads, 0
        for i in range(sum(stages)):
            window = 0 if i in self.global_att_blocks else window_spec[stage]
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out, heads, stage = int(dim * dim_mul), int(heads * head_mul), stage + 1
            self.blocks.append(
                MultiScaleBlock(
                    dim,
                    dim_out,
                    heads,
                    mlp_ratio=mlp_ratio,
                    q_stride=self.q_stride if i in self.q_pool_blocks else None,
                    window_size=window,
                    norm_eps=norm_eps,
                )
            )
            dim = dim_out
        self.channel_list = [self.blocks[i].dim_out for i in self.stage_ends[::-1]]
        self._pos_cache: tuple[tuple, Tensor] | None = None

    def _get_pos_embed(self, hw: tuple[int, int]) -> Tensor:
        """Background embedding resized to the HxW grid plus the tiled window embedding: 1xHxWxC.

        Without gradients it is kept between calls (the official resizes it on every image: a
        bicubic pass over C x H x W, about 2 % of hiera_t at 1024 px on one CPU thread) and
        recomputed when the grid, dtype, device or either parameter (in-place updates
        included) changes.
        """
        params = (self.pos_embed, self.pos_embed_window)
        if (torch.is_grad_enabled() and any(p.requires_grad for p in params)) or _tracing():
            return self._compute_pos_embed(hw)
        key = (tuple(hw), *((p.data_ptr(), p._version, p.dtype, p.device) for p in params))
        if self._pos_cache is None or self._pos_cache[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                self._pos_cache = (key, self._compute_pos_embed(hw))
        return self._pos_cache[1]

    def _compute_pos_embed(self, hw: tuple[int, int]) -> Tensor:
        h, w = hw
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        reps = [a // b for a, b in zip(pos.shape, win.shape)]
        return (pos + win.tile(reps)).permute(0, 2, 3, 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Bx3xHxW image -> per-stage features [BxC1x(H/4)x(W/4), ..., BxC4x(H/32)x(W/32)]."""
        x = self.patch_embed(x)  # (B, H/4, W/4, C)
        x = x + self._get_pos_embed(x.shape[1:3])
        outputs = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
