"""Non-overlapping window partition with padding (SAM 1 ViT and Hiera)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def window_partition(x: Tensor, window_size: int) -> tuple[Tensor, tuple[int, int]]:
    """Split BxHxWxC into windows, zero-padding H and W up to multiples of `window_size`.

    Returns:
        (B * num_windows) x window_size x window_size x C windows and the padded (Hp, Wp).
    """
    b, h, w, c = x.shape
    pad_h = (window_size - h % window_size) % window_size
    pad_w = (window_size - w % window_size) % window_size
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> Tensor:
    """Inverse of `window_partition`: back to BxHxWxC with the padding removed."""
    hp, wp = pad_hw
    h, w = hw
    b = windows.shape[0] // (hp * wp // window_size // window_size)
    x = windows.reshape(b, hp // window_size, wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x
