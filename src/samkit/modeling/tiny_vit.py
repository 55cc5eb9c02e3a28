"""TinyViT image encoder of MobileSAM and light HQ-SAM (`vit_t` / `vit_tiny`).

A 4-stage hierarchy: a convolutional stem (stride 4), one stage of MobileNet-style inverted
residual blocks, then three stages of windowed-attention blocks with a depthwise convolution
between attention and MLP, patch merging (stride 2, or 1 into the last stage) between stages,
and SAM's convolutional neck. Bx3xSxS (S = 1024 for the official models) -> Bx256x(S/16)x(S/16).

State-dict keys equal the official `mobile_sam` / `segment_anything_hq` `TinyViT`
(`patch_embed.seq.*`, `layers.{i}.blocks.{j}.*`, `layers.{i}.downsample.*`, `norm_head.*`, `head.*`,
`neck.*`); `norm_head` / `head` (the ImageNet classifier) are kept so official checkpoints load
strictly, and never run.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.layers import LayerNorm2d, window_partition, window_unpartition
from samkit.layers.fused_linear import linear_act

# The official PatchMerging keeps the resolution (stride 1) when its output width is one of these:
# it is how MobileSAM's last stage stays at 1/16 of the input (`tiny_vit_sam.py`, PatchMerging).
STRIDE1_MERGE_WIDTHS = (320, 448, 576)


def _bias_index(window_size: int) -> tuple[Tensor, int]:
    """NxN index (N = window_size**2) of each query/key pair's (|dy|, |dx|) offset, numbered in
    order of first appearance (the official order), and the number of distinct offsets."""
    points = list(itertools.product(range(window_size), range(window_size)))
    offsets: dict[tuple[int, int], int] = {}
    idxs = [
        offsets.setdefault((abs(p1[0] - p2[0]), abs(p1[1] - p2[1])), len(offsets))
        for p1 in points
        for p2 in points
    ]
    n = len(points)
    return torch.tensor(idxs, dtype=torch.long).view(n, n), len(offsets)


class ConvBN(nn.Sequential):
    """Conv2d without bias + BatchNorm2d (official `Conv2d_BN`; keys `c.*`, `bn.*`)."""

    def __init__(
        self, cin: int, cout: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        c, bn = self.c, self.bn
        if self.training:
            return bn(c(x))
        # eval: the BatchNorm folded into the convolution's weights (the official
        # `Conv2d_BN.fuse`), one pass over the activations instead of two
        scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
        w = (c.weight.float() * scale.view(-1, 1, 1, 1)).to(x.dtype)
        b = (bn.bias.float() - bn.running_mean.float() * scale).to(x.dtype)
        return F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 ConvBN with a GELU between: Bx3xHxW -> BxDx(H/4)x(W/4)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            ConvBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU (BxCxHxW)."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = ConvBN(hidden, dim)
        self.act3 = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """1x1 ConvBN, GELU, 3x3 depthwise ConvBN (stride 2 or 1), GELU, 1x1 ConvBN.

    Takes BxCxHxW or BxNxC tokens on a `resolution` grid; returns BxN'xC' tokens.
    """

    def __init__(self, resolution: tuple[int, int], dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.act = nn.GELU()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 3:
            h, w = self.resolution
            x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])  # (B, N, C')


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on BxCxHxW, then patch merging to tokens."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, downsample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class WindowAttention(nn.Module):
    """Multi-head attention within a window with a learned bias per head and (|dy|, |dx|) offset.

    Pre-norm inside (official `Attention`: `norm`, `qkv`, `proj`, `attention_biases`).
    Input and output (B*nW)xNxC with N = window_size**2.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"num_heads {num_heads} must divide the width {dim}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.window_size = window_size
        idxs, num_offsets = _bias_index(window_size)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, num_offsets))
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)

    def reset_buffers(self) -> None:
        """Refill the (non-persistent) offset index, e.g. after building on the meta device."""
        self.attention_bias_idxs = _bias_index(self.window_size)[0].to(self.attention_biases.device)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=-1)  # (B, nh, N, hd) each
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)  # (nh, N, N)
        # written out as the official code does (rather than SDPA with a float mask, whose CPU
        # path checks the mask on every call): scores * scale + bias, softmax, values
        attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
        out = attn @ v  # (B, nh, N, hd)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class TinyViTMlp(nn.Module):
    """LayerNorm, Linear, GELU, Linear (official keys `norm`, `fc1`, `fc2`)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(linear_act(self.norm(x), self.fc1, self.act))


class TinyViTBlock(nn.Module):
    """Window attention (zero padding to whole windows), depthwise 3x3 ConvBN, MLP; BxNxC."""

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.window_size = window_size
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.mlp = TinyViTMlp(dim, int(dim * mlp_ratio))
        pad = local_conv_size // 2
        self.local_conv = ConvBN(dim, dim, local_conv_size, 1, pad, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = self.resolution
        b, n, c = x.shape
        ws = self.window_size
        if h == ws and w == ws:
            a = self.attn(x)
        else:
            win, pad_hw = window_partition(x.view(b, h, w, c), ws)  # (B*nW, ws, ws, C)
            a = self.attn(win.view(-1, ws * ws, c)).view(-1, ws, ws, c)
            a = window_unpartition(a, ws, pad_hw, (h, w)).reshape(b, n, c)
        x = x + a
        # the depthwise conv on a channels-last view of the tokens: no copies either way
        x = self.local_conv(x.view(b, h, w, c).permute(0, 3, 1, 2))
        x = x.permute(0, 2, 3, 1).reshape(b, n, c)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks on BxNxC tokens, then optional patch merging."""

    def __init__(self, blocks: list[TinyViTBlock], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """TinyViT backbone + SAM neck: Bx3xSxS -> Bx`out_chans`x(S/16)x(S/16).

    Args:
        img_size: square input side S (1024 for the official models; a multiple of 64).
        in_chans: input channels.
        embed_dims: the four stage widths (official `vit_t`: 64, 128, 160, 320).
        depths: blocks per stage (official: 2, 2, 6, 2).
        num_heads: attention heads per stage (stage 0 has none; official: 2, 4, 5, 10).
        window_sizes: attention window per stage (official: 7, 7, 14, 7).
        mlp_ratio: MLP hidden width / block width.
        mbconv_expand_ratio: MBConv hidden width / width (stage 0).
        local_conv_size: kernel of the depthwise convolution in each block.
        num_classes: rows of the unused classifier `head` (1000 in the official checkpoints).
        out_chans: neck width (256 in the official code).

    Raises:
        ValueError: a configuration the official code cannot run either: four stages are needed,
            the last stage width must be one of 320 / 448 / 576 (only those keep 1/16 scale), S
            a multiple of 64, heads dividing widths.
    """

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: tuple[int, ...] = (64, 128, 160, 320),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (2, 4, 5, 10),
        window_sizes: tuple[int, ...] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        num_classes: int = 1000,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        if not len(embed_dims) == len(depths) == len(num_heads) == len(window_sizes) == 4:
            raise ValueError(
                "TinyViT needs 4 stages: embed_dims, depths, num_heads and window_sizes of "
                f"length 4, got {len(embed_dims)}, {len(depths)}, {len(num_heads)}, {len(window_sizes)}"
            )
        if embed_dims[3] not in STRIDE1_MERGE_WIDTHS or embed_dims[2] in STRIDE1_MERGE_WIDTHS:
            raise ValueError(
                f"the last TinyViT stage width must be one of {STRIDE1_MERGE_WIDTHS} (and the others "
                f"not): the official patch merging keeps 1/16 scale only then; got {embed_dims}"
            )
        if img_size % 64 != 0:
            raise ValueError(f"img_size must be a multiple of 64, got {img_size}")
        self.img_size = img_size
        self.embed_dims = tuple(embed_dims)
        self.depths = tuple(depths)
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        res = img_size // 4
        self.layers = nn.ModuleList()
        for i in range(4):
            merge = None
            if i < 3:
                stride = 1 if embed_dims[i + 1] in STRIDE1_MERGE_WIDTHS else 2
                merge = PatchMerging((res, res), embed_dims[i], embed_dims[i + 1], stride)
            if i == 0:
                self.layers.append(ConvLayer(embed_dims[0], depths[0], mbconv_expand_ratio, merge))
            else:
                blocks = [
                    TinyViTBlock(
                        embed_dims[i],
                        (res, res),
                        num_heads[i],
                        window_sizes[i],
                        mlp_ratio,
                        local_conv_size,
                    )
                    for _ in range(depths[i])
                ]
                self.layers.append(BasicLayer(blocks, merge))
            if merge is not None and stride == 2:
                res //= 2
        self.grid = res
        self.norm_head = nn.LayerNorm(embed_dims[3])
        self.head = nn.Linear(embed_dims[3], num_classes) if num_classes > 0 else nn.Identity()
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[3], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def reset_buffers(self) -> None:
        """Refill the non-persistent attention-offset indices (after a meta-device build)."""
        for m in self.modules():
            if isinstance(m, WindowAttention):
                m.reset_buffers()

    def describe(self) -> str:
        """e.g. `TinyViT 64/128/160/320 x 2/2/6/2` (stage widths x depths)."""
        dims = "/".join(map(str, self.embed_dims))
        return f"TinyViT {dims} x {'/'.join(map(str, self.depths))}"

    def forward(self, x: Tensor) -> Tensor:
        """Bx3xSxS normalised, padded image -> Bx`out_chans`x(S/16)x(S/16) embedding.

        HQ-SAM reads `layers[1]`'s output (BxNx`embed_dims[2]` tokens on the final grid) with a
        forward hook (`SamHQ.capture_interm`).
        """
        # channels-last from the stem on: every later conv then reads the token layout as is
        x = self.layers[0](self.patch_embed(x).contiguous(memory_format=torch.channels_last))
        for layer in self.layers[1:]:
            x = layer(x)
        x = x.view(x.shape[0], self.grid, self.grid, -1).permute(0, 3, 1, 2)
        return self.neck(x)
