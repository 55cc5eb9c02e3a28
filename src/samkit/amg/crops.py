"""Crop boxes for multi-layer automatic mask generation, and moving results back to the image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product

import torch
from torch import Tensor


def generate_crop_boxes(
    im_size: Sequence[int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (XYXY, ints) of every layer: layer 0 is the full image, layer i has 2**i per side.

    Neighbouring crops of layer i overlap by int(overlap_ratio * short_side * 2 / 2**i) pixels.

    Args:
        im_size: (H, W) of the image.
        n_layers: number of crop layers after the full image.
        overlap_ratio: overlap as a fraction of the short side (for layer 1).

    Returns:
        The crop boxes and each box's layer index.
    """
    im_h, im_w = int(im_size[0]), int(im_size[1])
    if im_h < 1 or im_w < 1:
        raise ValueError(f"image size must be positive, got {(im_h, im_w)}")
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    short_side = min(im_h, im_w)
    boxes: list[list[int]] = [[0, 0, im_w, im_h]]
    layer_idxs = [0]

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops)

    for i_layer in range(n_layers):
        n_per_side = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_per_side))
        crop_w = crop_len(im_w, n_per_side, overlap)
        crop_h = crop_len(im_h, n_per_side, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(n_per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_per_side)]
        # x varies slowest, as in the official generator.
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layer_idxs.append(i_layer + 1)
    return boxes, layer_idxs


def uncrop_boxes_xyxy(boxes: Tensor, crop_box: Sequence[int]) -> Tensor:
    """Shift ...x4 XYXY boxes from crop coordinates to image coordinates."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    offset = torch.tensor([x0, y0, x0, y0], device=boxes.device)
    return boxes + offset


def uncrop_points(points: Tensor, crop_box: Sequence[int]) -> Tensor:
    """Shift ...x2 (x, y) points from crop coordinates to image coordinates."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    offset = torch.tensor([x0, y0], device=points.device)
    return points + offset


def uncrop_masks(masks: Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int) -> Tensor:
    """Zero-pad ...xhxw crop masks to ...x orig_h x orig_w at the crop's position."""
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    pad_x, pad_y = orig_w - (x1 - x0), orig_h - (y1 - y0)
    return torch.nn.functional.pad(masks, (x0, pad_x - x0, y0, pad_y - y0), value=0)


def is_box_near_crop_edge(
    boxes: Tensor, crop_box: Sequence[int], orig_box: Sequence[int], atol: float = 20.0
) -> Tensor:
    """Nx4 crop-frame boxes -> N bools: within `atol` of a crop edge that is not an image edge."""
    crop_t = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    orig_t = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop = torch.isclose(boxes, crop_t[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, orig_t[None, :], atol=atol, rtol=0)
    return torch.any(near_crop & ~near_image, dim=1)
