"""Box IoU and (batched) non-maximum suppression in pure torch, with torchvision's CPU semantics.

`nms` reproduces torchvision's CPU kernel exactly: the same stable descending sort of the
scores, areas as (x2 - x1) * (y2 - y1), IoU = inter / (area_i + area_j - inter) in the boxes'
dtype, and a box is suppressed when its IoU with a kept box is strictly greater than the
threshold (compared in float64, like the C++ `float > double`). The greedy pass runs over
blocks of a precomputed suppression matrix, so it is vectorised but gives identical keep lists.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# Largest number of IoU entries computed at once (rows x columns of one block).
_BLOCK_ELEMENTS = 1 << 22


def _check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    if not isinstance(boxes, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape Nx4 (x0, y0, x1, y1), got {tuple(boxes.shape)}")


def box_area(boxes: Tensor) -> Tensor:
    """Areas (x1 - x0) * (y1 - y0) of Nx4 XYXY boxes (integer boxes stay integer)."""
    _check_boxes(boxes)
    if boxes.is_floating_point():
        boxes = boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()
    elif boxes.dtype not in (torch.int32, torch.int64):
        boxes = boxes.int()
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU (NxM) between Nx4 and Mx4 XYXY boxes (torchvision's `box_iou`)."""
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])  # (N, M, 2)
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = rb - lt
    if not wh.is_floating_point():
        wh = wh.to(torch.int64)
    wh = wh.clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2 - inter)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: indices of kept boxes, in decreasing score order.

    Args:
        boxes: Nx4 float XYXY boxes.
        scores: N scores, same dtype as `boxes`.
        iou_threshold: boxes with IoU > this with a higher-scoring kept box are dropped.

    Returns:
        int64 tensor of kept indices.
    """
    _check_boxes(boxes)
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"scores must be a 1-D tensor with one score per box ({boxes.shape[0]}), got "
            f"{tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}"
        )
    if not boxes.is_floating_point() or boxes.dtype != scores.dtype:
        raise ValueError(
            f"boxes and scores must be floating point of the same dtype, got {boxes.dtype} "
            f"and {scores.dtype}"
        )
    n = boxes.shape[0]
    if n == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError("boxes must be finite (no NaN or inf)")
    thr = float(iou_threshold)

    x1, y1, x2, y2 = (boxes[:, k].contiguous() for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    # Stable descending sort, as torchvision's CPU kernel: tied boxes keep their input order.
    order = scores.sort(stable=True, dim=0, descending=True)[1]
    x1, y1, x2, y2, areas = x1[order], y1[order], x2[order], y2[order], areas[order]

    suppressed = np.zeros(n, dtype=bool)
    kept: list[int] = []
    block = max(1, min(n, _BLOCK_ELEMENTS // n))
    zero = torch.zeros((), dtype=boxes.dtype, device=boxes.device)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        live = np.flatnonzero(~suppressed[b0:b1]) + b0
        if live.size == 0:
            continue
        rows = torch.as_tensor(live, device=boxes.device)
        xx1 = torch.maximum(x1[rows, None], x1[None, b0:])
        yy1 = torch.maximum(y1[rows, None], y1[None, b0:])
        xx2 = torch.minimum(x2[rows, None], x2[None, b0:])
        yy2 = torch.minimum(y2[rows, None], y2[None, b0:])
        inter = torch.maximum(zero, xx2 - xx1) * torch.maximum(zero, yy2 - yy1)
        iou = inter / ((areas[rows, None] + areas[None, b0:]) - inter)
        sup = (iou.double() > thr).cpu().numpy()  # (len(live), n - b0)
        for k, r in enumerate(live.tolist()):
            if suppressed[r]:
                continue
            kept.append(r)
            later = sup[k, r - b0 + 1 :]
            suppressed[r + 1 :] |= later
    return order[torch.as_tensor(kept, dtype=torch.int64, device=boxes.device)]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS independently per category `idxs` (torchvision's `batched_nms`, same code paths).

    Args:
        boxes: Nx4 float XYXY boxes.
        scores: N scores (same dtype as `boxes`).
        idxs: N category indices; boxes of different categories never suppress each other.
        iou_threshold: IoU above which a lower-scoring box is dropped.

    Returns:
        int64 indices of the kept boxes, in decreasing score order.
    """
    _check_boxes(boxes)
    if not isinstance(idxs, Tensor) or idxs.shape != (boxes.shape[0],):
        raise ValueError(f"idxs must be a tensor of shape ({boxes.shape[0]},)")
    limit = 4000 if boxes.device.type == "cpu" else 100_000
    if boxes.numel() > limit:
        return _batched_nms_vanilla(boxes, scores, idxs, iou_threshold)
    return _batched_nms_coordinate_trick(boxes, scores, idxs, iou_threshold)


def _batched_nms_coordinate_trick(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float
) -> Tensor:
    # Shift each category by a multiple of (max coordinate + 1) so categories never overlap.
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def _batched_nms_vanilla(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float
) -> Tensor:
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for class_id in torch.unique(idxs):
        curr = torch.where(idxs == class_id)[0]
        keep_mask[curr[nms(boxes[curr], scores[curr], iou_threshold)]] = True
    keep = torch.where(keep_mask)[0]
    return keep[scores[keep].sort(descending=True)[1]]
