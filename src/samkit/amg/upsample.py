"""Exact, fast upsampling of one low-res mask's logits to its image's size.

The official generator upsamples every mask's logits with `Sam.postprocess_masks` (bilinear to the
encoder's square size, crop to the resized image, bilinear to the original size) and then
thresholds. `MaskUpsampler` gives bit-identical logits, one mask at a time, into reused
buffers (no page faults, cache-resident), and skips the rows and columns of the first
upsampling that the crop throws away: with an integer scale factor the bilinear source index
and weight of every kept output pixel are the same as in the full-size call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.layers.resize import rows_needed


def _upsample_into(x: Tensor, size: tuple[int, int], out: Tensor | None) -> Tensor:
    if out is not None:
        try:
            return torch._C._nn.upsample_bilinear2d(x, size, False, None, None, out=out)
        except (AttributeError, TypeError, RuntimeError):
            pass
    return F.interpolate(x, size, mode="bilinear", align_corners=False)


class MaskUpsampler:
    """Upsamples hxw low-res logits of one crop to its original size, like `postprocess_masks`.

    Args:
        low_res_hw: (h, w) of the decoder's low-res masks (256x256 for SAM 1).
        img_size: the encoder's square input size (1024 for SAM 1).
        input_size: (H, W) of the resized image before padding.
        original_size: (H, W) of the image (crop) the masks belong to.
        device: where the buffers live.
    """

    def __init__(
        self,
        low_res_hw: tuple[int, int],
        img_size: int,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
        device: torch.device,
    ) -> None:
        lh, lw = low_res_hw
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.img_size = int(img_size)
        # Rows / columns of the low-res map needed for the kept part of the first upsampling.
        self.k_h = rows_needed(lh, self.input_size[0], self.img_size)
        self.k_w = rows_needed(lw, self.input_size[1], self.img_size)
        self.mid_size = (
            self.img_size * self.k_h // lh,
            self.img_size * self.k_w // lw,
        )
        self._mid = torch.empty((1, 1, *self.mid_size), device=device)
        self._out = torch.empty((1, 1, *self.original_size), device=device)

    def __call__(self, low_res: Tensor) -> Tensor:
        """hxw float32 logits -> HxW float32 logits (a view of an internal buffer, reused)."""
        x = low_res[None, None, : self.k_h, : self.k_w].float()
        mid = _upsample_into(x, self.mid_size, self._mid)
        mid = mid[..., : self.input_size[0], : self.input_size[1]]
        out = _upsample_into(mid, self.original_size, self._out)
        return out[0, 0]


class DirectUpsampler:
    """Upsamples hxw low-res logits of one crop straight to its size (SAM 2's `postprocess_masks`:
    the SAM 2 input is a plain square resize, so there is one bilinear step and nothing to crop).

    Args:
        original_size: (H, W) of the image (crop) the masks belong to.
        device: where the output buffer lives.
    """

    def __init__(self, original_size: tuple[int, int], device: torch.device) -> None:
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self._out = torch.empty((1, 1, *self.original_size), device=device)

    def __call__(self, low_res: Tensor) -> Tensor:
        """hxw logits -> HxW float32 logits (a view of an internal buffer, reused)."""
        out = _upsample_into(low_res[None, None].float(), self.original_size, self._out)
        return out[0, 0]
