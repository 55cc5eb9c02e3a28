"""Mask utilities: stability score, mask-to-box, and small hole / island removal."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from samkit.predict.postprocess import (  # noqa: F401 - connected_components_available: amg.sam
    MISSING_COMPONENTS,
    connected_components,
    connected_components_available,
)
from samkit.predict.transforms import threshold_masks

_MISSING_CC = f"min_mask_region_area > 0 {MISSING_COMPONENTS}"


def _count_above(masks: Tensor, threshold: float) -> Tensor:
    """Per-mask number of pixels > threshold over the last two dims, as int32."""
    above = masks > threshold
    if above.shape[-1] < 32768:  # row sums fit int16, as the official code relies on
        return above.sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    return above.sum(-1, dtype=torch.int32).sum(-1, dtype=torch.int32)


def stability_and_mask(
    logits: Tensor, threshold: float, hi: float, lo: float
) -> tuple[Tensor, Tensor]:
    """Stability score (count > hi over count > lo, float32) and the mask (> threshold) of one
    HxW logit map; on CPU the counts go through numpy, which counts about twice as fast."""
    if logits.device.type == "cpu":
        a = logits.detach().numpy()
        inter = torch.tensor(np.count_nonzero(a > hi), dtype=torch.int32)
        union = torch.tensor(np.count_nonzero(a > lo), dtype=torch.int32)
        return inter / union, threshold_masks(logits, threshold)
    return _count_above(logits, hi) / _count_above(logits, lo), threshold_masks(logits, threshold)


def calculate_stability_score(
    masks: Tensor, mask_threshold: float, threshold_offset: float
) -> Tensor:
    """IoU between the masks thresholded at `threshold + offset` and at `threshold - offset`.

    Args:
        masks: ...xHxW mask logits.
        mask_threshold: the binarisation threshold.
        threshold_offset: how far to shift it each way.

    Returns:
        ... float32 scores (NaN where the low-threshold mask is empty).
    """
    intersections = _count_above(masks, mask_threshold + threshold_offset)
    unions = _count_above(masks, mask_threshold - threshold_offset)
    return intersections / unions


def batched_mask_to_box(masks: Tensor) -> Tensor:
    """XYXY boxes (inclusive pixel indices, int64) around ...xHxW bool masks; [0,0,0,0] if empty."""
    if masks.dim() < 2:
        raise ValueError(f"masks must be ...xHxW, got shape {tuple(masks.shape)}")
    lead = masks.shape[:-2]
    h, w = masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros(*lead, 4, dtype=torch.int64, device=masks.device)
    m = masks.reshape(-1, h, w).bool()
    rows = m.view(torch.uint8).amax(-1).bool()  # (N, H)
    cols = m.view(torch.uint8).amax(-2).bool()  # (N, W)
    out = torch.stack([*_first_last(cols), *_first_last(rows)], -1)  # x0, x1, y0, y1
    out = out[:, [0, 2, 1, 3]]
    empty = ~rows.any(-1)
    out[empty] = 0
    return out.reshape(*lead, 4)


def _first_last(present: Tensor) -> tuple[Tensor, Tensor]:
    n = present.shape[-1]
    ar = torch.arange(n, device=present.device)
    first = torch.where(present, ar, n).amin(-1)
    last = torch.where(present, ar, -1).amax(-1)
    return first, last


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Remove small islands or fill small holes of an HxW bool mask (official semantics).

    Components are 8-connected. In "holes" mode, background components smaller than
    `area_thresh` are filled; in "islands" mode, foreground components smaller than it are
    removed, keeping the largest one if all are small.

    Returns:
        The new mask and whether it changed.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    correct_holes = mode == "holes"
    working = correct_holes ^ mask
    labels, areas = connected_components(working)
    small = (areas > 0) & (areas < area_thresh)
    if not small.any():
        return mask, False
    if correct_holes:
        return mask | small, True
    kept = working & ~small
    if not kept.any():  # every island is small: keep the largest (the first, on a tie)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        kept = labels == int(np.argmax(sizes))
    return kept, True
