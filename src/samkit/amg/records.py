"""The generator's outputs from its final candidates: the official per-mask records or batched
tensors, made only for the masks kept (each from its box crop).

`samkit.amg.pipeline.MaskGeneratorBase.generate` / `generate_torch` return what these make.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from samkit.amg.candidates import Candidates
from samkit.io.rle import coco_encode_rle, crop_mask_to_rle

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


def mask_records(data: Candidates, size: tuple[int, int], output_mode: str) -> list[dict[str, Any]]:
    """One record per candidate, in order (the official generator's `generate` output).

    Args:
        data: the final candidates (box crops in the image frame).
        size: the image's (H, W) in pixels.
        output_mode: one of `OUTPUT_MODES`: `segmentation` as an HxW bool array, the
            uncompressed RLE dict (`{"size": [H, W], "counts": [...]}`), or COCO's compressed RLE.

    Returns:
        Records with `segmentation`, `area` (int), `bbox` (XYWH list, w = x_max - x_min as the
        official generator), `predicted_iou`, `point_coords` ([[x, y]]), `stability_score` and
        `crop_box` (XYWH list).
    """
    h, w = size
    records = []
    for i in range(len(data)):
        box = [int(v) for v in data.boxes[i].tolist()]
        crop = data.crop(i)
        area = int(crop.sum())
        if output_mode == "binary_mask":
            seg: Any = np.zeros((h, w), dtype=bool)
            if area:
                seg[box[1] : box[3] + 1, box[0] : box[2] + 1] = crop.cpu().numpy()
        else:
            seg = crop_mask_to_rle(crop.cpu(), box, h, w)
            if output_mode == "coco_rle":
                seg = coco_encode_rle(seg)
        cb = data.crop_boxes[i]
        records.append(
            {
                "segmentation": seg,
                "area": area,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                "predicted_iou": float(data.iou[i]),
                "point_coords": [data.points[i].tolist()],
                "stability_score": float(data.stability[i]),
                "crop_box": [cb[0], cb[1], cb[2] - cb[0], cb[3] - cb[1]],
            }
        )
    return records


def mask_tensors(
    data: Candidates, size: tuple[int, int], device: torch.device | str
) -> dict[str, Tensor]:
    """The candidates as batched tensors (`generate_torch`'s output).

    Args:
        data: the final candidates (box crops in the image frame).
        size: the image's (H, W) in pixels.
        device: where the masks and boxes go (the model's device).

    Returns:
        `masks` NxHxW bool, `boxes` Nx4 int64 XYXY (inclusive), `area` N int64,
        `predicted_iou` N, `stability_score` N (float32), `point_coords` Nx2 float64 and
        `crop_boxes` Nx4 int64 XYXY.
    """
    h, w = size
    n = len(data)
    masks = torch.zeros((n, h, w), dtype=torch.bool, device=device)
    boxes = data.box_tensor().to(device)
    for i, b in enumerate(boxes.tolist()):
        crop = data.crop(i)
        if crop.any():
            masks[i, b[1] : b[3] + 1, b[0] : b[2] + 1] = crop
    return {
        "masks": masks,
        "boxes": boxes,
        "area": masks.flatten(1).sum(1),
        "predicted_iou": torch.stack(data.iou) if n else torch.zeros(0),
        "stability_score": torch.stack(data.stability) if n else torch.zeros(0),
        "point_coords": torch.as_tensor(np.array(data.points).reshape(n, 2)),
        "crop_boxes": torch.as_tensor(data.crop_boxes, dtype=torch.int64).reshape(n, 4),
    }
