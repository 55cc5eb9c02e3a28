"""SAM 3 video outputs: hole filling of low-res logits, boxes from masks, one object per pixel.

Official sources (sam3 0.1.4): `model/sam3_tracker_utils.py` `fill_holes_in_mask_scores`,
`Sam3VideoInference._postprocess_output`, torchvision-style `masks_to_boxes`,
`Sam3TrackerPredictor._apply_object_wise_non_overlapping_constraints`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def fill_holes_in_mask_scores(masks: Tensor, max_area: int) -> Tensor:
    """Fill small holes, then remove small specks, of Bx1xhxw logits (8-connected).

    Background components of <= `max_area` pixels become +0.1; then foreground components of
    <= min(max_area, floor(foreground area / 2)) pixels become -0.1 (official
    `fill_holes_in_mask_scores` with both steps on). `max_area` <= 0 returns `masks`.
    """
    if max_area <= 0 or masks.numel() == 0:
        return masks
    from samkit.predict.postprocess import connected_components, require_scipy

    require_scipy("SAM 3 video hole filling")
    _, bg_areas = connected_components(masks.detach().float().cpu().numpy() <= 0)
    hole = torch.from_numpy(bg_areas > 0) & torch.from_numpy(bg_areas <= max_area)
    masks = torch.where(hole.to(masks.device), torch.tensor(0.1, dtype=masks.dtype), masks)
    fg = masks > 0
    limit = fg.sum(dim=(2, 3), keepdim=True, dtype=torch.int32).floor_divide(2).clamp(max=max_area)
    _, fg_areas_np = connected_components(fg.cpu().numpy())
    fg_areas = torch.from_numpy(fg_areas_np).to(masks.device)
    speck = fg & (fg_areas <= limit)
    return torch.where(speck, torch.tensor(-0.1, dtype=masks.dtype), masks)


def masks_to_boxes(masks: Tensor) -> Tensor:
    """(N, 4) float xyxy boxes of (N, H, W) bool masks: min / max pixel indices (an empty mask
    gives zeros), as torchvision's `masks_to_boxes`."""
    out = torch.zeros(masks.shape[0], 4, dtype=torch.float32)
    for i, m in enumerate(masks):
        ys, xs = torch.where(m)
        if ys.numel():
            out[i] = torch.stack([xs.min(), ys.min(), xs.max(), ys.max()]).float()
    return out


def object_wise_non_overlap(masks: Tensor, scores: Tensor) -> Tensor:
    """(N, H, W) bool masks where a pixel claimed by several objects stays with the one of the
    highest score (the first on ties; a score <= 0 keeps nothing)."""
    if masks.shape[0] <= 1:
        return masks
    per_pixel = torch.where(masks, scores[:, None, None].float(), torch.zeros(()))
    top = per_pixel.argmax(dim=0, keepdim=True)
    idx = torch.arange(masks.shape[0])[:, None, None]
    return masks & (top == idx) & (per_pixel > 0)


def video_res_binary(low_res: Tensor, video_hw: tuple[int, int]) -> Tensor:
    """(N, h, w) logits -> (N, H, W) bool masks: bilinear to the video size, > 0."""
    if low_res.shape[0] == 0:
        return torch.zeros(0, *video_hw, dtype=torch.bool)
    up = F.interpolate(
        low_res.float()[:, None], size=video_hw, mode="bilinear", align_corners=False
    )
    return up[:, 0] > 0


def postprocess_output(
    masks: dict[int, Tensor],
    scores: dict[int, float],
    tracker_scores: dict[int, float],
    video_hw: tuple[int, int],
    hidden: set[int] | None = None,
) -> dict[str, np.ndarray]:
    """The official per-frame output dict (`Sam3VideoInference._postprocess_output`).

    Args:
        masks: object id -> (H, W) bool mask at video resolution.
        scores: object id -> `out_probs` value; tracker_scores: object id -> the score that
            decides contested pixels (0 when missing).
        video_hw: (H, W) of the video.
        hidden: ids to leave out (suppressed / removed).

    Returns:
        {"out_obj_ids" (K,) int64 ascending, "out_probs" (K,) float32, "out_boxes_xywh" (K, 4)
        float32 normalised by W, H, "out_binary_masks" (K, H, W) bool}: objects with an empty
        mask are dropped and boxes taken *before* the non-overlap step (which can empty a mask
        again).
    """
    h, w = video_hw
    ids_sorted = sorted(masks)
    if not ids_sorted:
        return {
            "out_obj_ids": np.zeros(0, np.int64),
            "out_probs": np.zeros(0, np.float32),
            "out_boxes_xywh": np.zeros((0, 4), np.float32),
            "out_binary_masks": np.zeros((0, h, w), bool),
        }
    ids = torch.tensor(ids_sorted, dtype=torch.int64)
    p = torch.tensor([scores[i] for i in ids_sorted], dtype=torch.float32)
    tp = torch.tensor([tracker_scores.get(i, 0.0) for i in ids_sorted], dtype=torch.float32)
    binary = torch.stack([masks[i] for i in ids_sorted])
    keep = binary.flatten(1).any(dim=1)
    if hidden:
        keep &= ~torch.isin(ids, torch.tensor(sorted(hidden), dtype=torch.int64))
    ids, p, tp, binary = ids[keep], p[keep], tp[keep], binary[keep]
    boxes = masks_to_boxes(binary)
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
    xywh = xywh / torch.tensor([w, h, w, h], dtype=torch.float32)
    binary = object_wise_non_overlap(binary, tp)
    return {
        "out_obj_ids": ids.numpy(),
        "out_probs": p.numpy(),
        "out_boxes_xywh": xywh.numpy(),
        "out_binary_masks": binary.numpy(),
    }
