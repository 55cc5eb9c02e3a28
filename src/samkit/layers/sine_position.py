"""Sine-cosine 2-D position encoding (DETR style; SAM 2's FPN neck and memory encoder)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """Fixed sin/cos encoding of the (row, column) index of every cell of a feature map.

    Channels are `[y-encoding (num_pos_feats / 2), x-encoding (num_pos_feats / 2)]`; within each
    half, even channels are sines and odd channels cosines of `pos / temperature^(2 * (i // 2) / d)`.
    With `normalize`, positions 1..H (1..W) are scaled to (0, scale]. The encoding depends only on
    the grid size, so it is computed once per (H, W, device) and cached. No parameters.
    """

    def __init__(
        self,
        num_pos_feats: int,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if num_pos_feats % 2 != 0:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ValueError("scale is only used with normalize=True")
        self.num_pos_feats = num_pos_feats // 2  # per axis
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self._cache: dict[tuple[int, int, torch.device], Tensor] = {}
        self._cast: dict[tuple[int, int, torch.device, torch.dtype], Tensor] = {}

    def _encode_axis(self, pos: Tensor) -> Tensor:
        """...xN positions -> ...xNx(num_pos_feats) with interleaved sin/cos."""
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=pos.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        p = pos[..., None] / dim_t
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)

    def encode_grid(self, h: int, w: int, device: torch.device | str = "cpu") -> Tensor:
        """The (2 * num_pos_feats)xHxW float32 encoding of an HxW grid (cached)."""
        device = torch.device(device)
        key = (h, w, device)
        cached = self._cache.get(key)
        if cached is None:
            # a normal (not inference-mode) tensor, so the cache also serves autograd callers
            with torch.inference_mode(False), torch.no_grad():
                cached = self._compute(h, w, device)
            self._cache[key] = cached
        return cached

    def _compute(self, h: int, w: int, device: torch.device) -> Tensor:
        y = torch.arange(1, h + 1, dtype=torch.float32, device=device)
        x = torch.arange(1, w + 1, dtype=torch.float32, device=device)
        if self.normalize:
            eps = 1e-6
            y = y / (y[-1:] + eps) * self.scale
            x = x / (x[-1:] + eps) * self.scale
        pos_y = self._encode_axis(y)[:, None, :].expand(h, w, -1)  # (H, W, d)
        pos_x = self._encode_axis(x)[None, :, :].expand(h, w, -1)  # (H, W, d)
        return torch.cat((pos_y, pos_x), dim=-1).permute(2, 0, 1).contiguous()  # (2d, H, W)

    def forward(self, x: Tensor) -> Tensor:
        """Encoding for a BxCxHxW feature map: Bx(2 * num_pos_feats)xHxW, in x's dtype. A cached
        tensor expanded over the batch: do not write to it."""
        h, w, dtype = x.shape[-2], x.shape[-1], x.dtype
        pe = self.encode_grid(h, w, x.device)
        if dtype != pe.dtype:
            key = (h, w, x.device, dtype)
            cast = self._cast.get(key)
            if cast is None:
                with torch.inference_mode(False), torch.no_grad():
                    cast = pe.to(dtype)
                self._cast[key] = cast
            pe = cast
        return pe[None].expand(x.shape[0], -1, -1, -1)
