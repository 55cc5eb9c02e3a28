"""The model-side image and mask resizing of SAM 1: input normalisation and padding, and the
low-res logits -> original-size upsampling (`Sam.preprocess` / `Sam.postprocess_masks` of the
official `segment_anything/modeling/sam.py`). Tensor in, tensor out."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor


def normalize_and_pad(x: Tensor, pixel_mean: Tensor, pixel_std: Tensor, img_size: int) -> Tensor:
    """(x - mean) / std on a BxCxHxW image, then zero-pad bottom/right to img_size x img_size."""
    x = (x - pixel_mean) / pixel_std
    h, w = x.shape[-2:]
    return F.pad(x, (0, img_size - w, 0, img_size - h))


def rows_needed(low: int, keep: int, img_size: int) -> int:
    """Low-res rows (or columns) that the first upsampling of `postprocess_masks` reads for the
    `keep` output rows it keeps: with an integer factor img_size / low, the bilinear source index
    and weight of each kept row are the same whether or not the rest is computed. One extra row
    keeps the bilinear "next row" index away from the smaller input's border clamp."""
    if img_size % low != 0:
        return low
    return min(low, math.ceil(keep / (img_size // low)) + 1)


def postprocess_masks(
    masks: Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    img_size: int,
) -> Tensor:
    """Low-res mask logits -> logits at the original image size.

    Bit-identical to the official two bilinear steps (to the padded square img_size, crop to
    `input_size`, to `original_size`) but the first step only computes the rows and columns the
    crop keeps.

    Args:
        masks: BxCxhxw low-res logits.
        input_size: (H, W) of the resized image before padding.
        original_size: (H, W) of the original image.
        img_size: the encoder's square input size.

    Returns:
        BxCxHxW logits (float32).
    """
    masks = masks.float()
    lh, lw = masks.shape[-2:]
    kh = rows_needed(lh, input_size[0], img_size)
    kw = rows_needed(lw, input_size[1], img_size)
    mid = (img_size * kh // lh, img_size * kw // lw)
    masks = F.interpolate(masks[..., :kh, :kw], mid, mode="bilinear", align_corners=False)
    masks = masks[..., : input_size[0], : input_size[1]]
    return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)
