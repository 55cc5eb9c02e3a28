"""Channel-first layer norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a BxCxHxW tensor (official keys `weight`, `bias`)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps
        self.num_channels = num_channels

    def forward(self, x: Tensor) -> Tensor:
        # One fused layer_norm over the channel axis: the same statistics as the official
        # mean / variance formula (to float rounding) in one pass instead of eight, and no copy
        # when x is channels-last (as in the mask decoder's upscaling path).
        y = F.layer_norm(
            x.permute(0, 2, 3, 1), (self.num_channels,), self.weight, self.bias, self.eps
        )
        return y.permute(0, 3, 1, 2)
