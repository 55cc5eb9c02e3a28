"""Prompt simulation for training, as in the SAM paper (section 3 and appendix A).

All coordinates are (x, y) pixels of the model input frame (the resized image, before padding);
a point at pixel (col, row) is passed as (col, row), as `SamPredictor` does for integer clicks.

* `sample_points_in_masks`: one point uniformly among the pixels of each mask.
* `noisy_boxes` / `jitter_boxes`: the tight box of each mask with Gaussian noise on every
  coordinate, std 10% of the box side (width for x, height for y) and at most `max_std` (20)
  pixels, clipped to the frame.
* `sample_correction_points`: one point uniformly from the error region of each previous
  prediction; foreground (label 1) if it falls in the false-negative area, background (label 0)
  if it falls in the false-positive area.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _uniform_pixel(region: Tensor, generator: torch.Generator) -> Tensor:
    """(x, y) of a pixel drawn uniformly from each nonempty HxW region of a BxHxW bool tensor."""
    b, _, w = region.shape
    flat = region.reshape(b, -1)
    counts = flat.sum(dim=1)
    if (counts == 0).any():
        raise ValueError(
            f"cannot sample a point from an empty region (rows {(counts == 0).nonzero().flatten().tolist()})"
        )
    # k-th True pixel of each row, k uniform in [0, count)
    k = (torch.rand(b, generator=generator) * counts).long().clamp_max(counts - 1)
    cum = flat.long().cumsum(dim=1)
    idx = torch.searchsorted(cum, (k + 1)[:, None]).flatten()
    return torch.stack([idx % w, idx // w], dim=1).float()


def sample_points_in_masks(masks: Tensor, generator: torch.Generator) -> Tensor:
    """One point per mask, uniform over its pixels.

    Args:
        masks: BxHxW bool, every mask nonempty.
        generator: torch random generator.

    Returns:
        Bx2 (x, y) pixel coordinates (float32).
    """
    return _uniform_pixel(masks.bool(), generator)


def mask_boxes(masks: Tensor) -> Tensor:
    """Tight boxes Bx4 (x0, y0, x1, y1; inclusive pixel indices) of BxHxW nonempty masks."""
    if (masks.flatten(1).sum(1) == 0).any():
        raise ValueError("mask_boxes: a mask is empty")
    rows = masks.any(dim=2)  # (B, H)
    cols = masks.any(dim=1)  # (B, W)
    h, w = masks.shape[-2:]
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ar_h, h).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1)
    x0 = torch.where(cols, ar_w, w).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1)
    return torch.stack([x0, y0, x1, y1], dim=1).float()


def jitter_boxes(
    boxes: Tensor,
    generator: torch.Generator,
    frame: tuple[int, int],
    rel_std: float = 0.1,
    max_std: float = 20.0,
) -> Tensor:
    """Add Gaussian noise to Bx4 (x0, y0, x1, y1) boxes, as the SAM paper does for box prompts.

    Args:
        boxes: Bx4 tight boxes (inclusive pixel indices).
        generator: torch random generator.
        frame: (h, w) the boxes are clipped to.
        rel_std: noise std as a fraction of the box side (width for x0 / x1, height for y0 / y1).
        max_std: cap on the std, in pixels.

    Returns:
        Bx4 float32 boxes inside the frame with x0 <= x1 and y0 <= y1.
    """
    boxes = boxes.float()
    h, w = frame
    bw = boxes[:, 2] - boxes[:, 0] + 1
    bh = boxes[:, 3] - boxes[:, 1] + 1
    std = (torch.stack([bw, bh, bw, bh], dim=1) * rel_std).clamp(max=max_std)
    noisy = boxes + torch.randn(boxes.shape, generator=generator) * std
    hi = torch.tensor([w - 1, h - 1, w - 1, h - 1], dtype=torch.float32)
    noisy = torch.maximum(torch.minimum(noisy, hi), torch.zeros(4))
    x0 = torch.minimum(noisy[:, 0], noisy[:, 2])
    x1 = torch.maximum(noisy[:, 0], noisy[:, 2])
    y0 = torch.minimum(noisy[:, 1], noisy[:, 3])
    y1 = torch.maximum(noisy[:, 1], noisy[:, 3])
    return torch.stack([x0, y0, x1, y1], dim=1)


def noisy_boxes(
    masks: Tensor,
    generator: torch.Generator,
    frame: tuple[int, int] | None = None,
    rel_std: float = 0.1,
    max_std: float = 20.0,
) -> Tensor:
    """`jitter_boxes` of the masks' tight boxes; the frame defaults to the mask size."""
    frame = frame if frame is not None else (masks.shape[-2], masks.shape[-1])
    return jitter_boxes(mask_boxes(masks), generator, frame, rel_std, max_std)


def sample_correction_points(
    pred: Tensor, gt: Tensor, generator: torch.Generator, valid: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """A correction click per prediction, uniform over its error region.

    Args:
        pred: BxHxW bool previous predictions (in the same frame as gt).
        gt: BxHxW bool ground truth.
        generator: torch random generator.
        valid: optional BxHxW (or HxW) bool area where clicks may fall (the unpadded image).

    Returns:
        (Bx2 (x, y) coordinates, B labels): label 1 where the point is a false negative, 0 where it
        is a false positive. A prediction without error gets a foreground point inside gt.
    """
    error = pred ^ gt
    if valid is not None:
        error = error & valid
    empty = error.flatten(1).sum(1) == 0
    region = torch.where(empty[:, None, None], gt, error)
    points = _uniform_pixel(region, generator)
    b = torch.arange(pred.shape[0])
    x, y = points[:, 0].long(), points[:, 1].long()
    labels = gt[b, y, x].float()
    return points, labels
