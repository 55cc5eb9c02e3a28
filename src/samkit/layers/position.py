"""Random-Fourier positional encoding (SAM 1 and SAM 2 prompt encoders)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies (buffer `positional_encoding_gaussian_matrix`)."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats))
        )

    def _pe_encoding(self, coords: Tensor) -> Tensor:
        """Encode points normalised to [0, 1]: ...x2 -> ...x(2*num_pos_feats)."""
        gauss = self.positional_encoding_gaussian_matrix
        coords = 2 * coords.to(gauss.dtype) - 1
        coords = 2 * math.pi * (coords @ gauss)
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> Tensor:
        """Dense encoding of an HxW grid of pixel centres: returns CxHxW."""
        h, w = size
        gauss = self.positional_encoding_gaussian_matrix
        grid = torch.ones((h, w), device=gauss.device, dtype=gauss.dtype)
        y_embed = (grid.cumsum(dim=0) - 0.5) / h
        x_embed = (grid.cumsum(dim=1) - 0.5) / w
        pe = self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1))
        return pe.permute(2, 0, 1)

    def forward_with_coords(self, coords_input: Tensor, image_size: tuple[int, int]) -> Tensor:
        """Encode BxNx2 pixel coordinates (x, y) in an image of `image_size` (H, W): BxNxC."""
        coords = coords_input.clone()
        coords[:, :, 0] = coords[:, :, 0] / image_size[1]
        coords[:, :, 1] = coords[:, :, 1] / image_size[0]
        return self._pe_encoding(coords.to(torch.float))
