"""SAM 2 memory encoder: a frame's image features fused with its predicted mask -> memory.

State-dict names match the official `MemoryEncoder` (`mask_downsampler.encoder.{i}`,
`pix_feat_proj`, `fuser.layers.{i}.{dwconv,norm,pwconv1,pwconv2,gamma}`, `out_proj`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from samkit.layers import LayerNorm2d
from samkit.layers.sine_position import PositionEmbeddingSine


class MaskDownSampler(nn.Module):
    """Conv (stride s) + LayerNorm2d + GELU, repeated until `total_stride`, then a 1x1 conv.

    Channels grow by s^2 per step from 1 (official layout: `encoder.{0,1,3,4,...}` and the last
    1x1 conv). Bx1xHxW -> Bx`embed_dim`x(H/total_stride)x(W/total_stride).
    """

    def __init__(
        self,
        embed_dim: int = 256,
        kernel_size: int = 4,
        stride: int = 4,
        padding: int = 0,
        total_stride: int = 16,
    ) -> None:
        super().__init__()
        num_layers = int(math.log2(total_stride) // math.log2(stride))
        if stride**num_layers != total_stride:
            raise ValueError(f"total_stride {total_stride} is not a power of stride {stride}")
        layers: list[nn.Module] = []
        c_in = 1
        for _ in range(num_layers):
            c_out = c_in * stride**2
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding),
                LayerNorm2d(c_out),
                nn.GELU(),
            ]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv, LayerNorm2d, Linear-GELU-Linear, layer scale, residual."""

    def __init__(
        self,
        dim: int,
        kernel_size: int = 7,
        padding: int = 3,
        layer_scale_init_value: float = 1e-6,
        use_dwconv: bool = True,
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(
            dim, dim, kernel_size, padding=padding, groups=dim if use_dwconv else 1
        )
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = (
            nn.Parameter(layer_scale_init_value * torch.ones(dim))
            if layer_scale_init_value > 0
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """BxCxHxW -> BxCxHxW."""
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma * y
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """A stack of `CXBlock`s (official keys `layers.{i}`; no input projection)."""

    def __init__(self, layers: list[CXBlock]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Image features + mask -> memory features and their sine position encoding.

    Args:
        mask_downsampler: mask (1024 px) -> stride-16 `in_dim` features.
        fuser: CXBlocks over (projected image features + mask features).
        position_encoding: sine encoding of the `out_dim`-channel memory grid.
        in_dim: image feature width C.
        out_dim: memory width C_mem (a 1x1 `out_proj` when it differs from C).
    """

    def __init__(
        self,
        mask_downsampler: MaskDownSampler,
        fuser: Fuser,
        position_encoding: PositionEmbeddingSine,
        in_dim: int = 256,
        out_dim: int = 64,
    ) -> None:
        super().__init__()
        self.mask_downsampler = mask_downsampler
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = fuser
        self.position_encoding = position_encoding
        self.out_proj: nn.Module = (
            nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()
        )
        self.out_dim = out_dim

    def forward(self, pix_feat: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        """Encode a memory.

        Args:
            pix_feat: BxCxHxW image features (stride 16).
            masks: Bx1x(16H)x(16W) mask values already passed through the scaled sigmoid (or
                binarised): the official `skip_mask_sigmoid=True` path.

        Returns:
            (BxC_memxHxW memory features, BxC_memxHxW position encoding).
        """
        m = self.mask_downsampler(masks)
        x = self.fuser(self.pix_feat_proj(pix_feat.to(m.device)) + m)
        x = self.out_proj(x)
        return x, self.position_encoding(x).to(x.dtype)
