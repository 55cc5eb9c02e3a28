"""Checking the prompts of SAM 3 video requests: exemplar boxes, clicks, object ids.

Official forms (`Sam3VideoPredictor.add_prompt`, sam3 0.1.4): boxes `[x, y, w, h]` and points
`[x, y]` normalised to [0, 1] by the video width / height; point labels 1 (positive) / 0
(negative); object ids are integers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from samkit.modeling.sam3.sam3_image import GeometricPrompt
from samkit.modeling.video_memory import Clicks

MAX_POINTS_IN_PROMPT = 16  # official `max_point_num_in_prompt_enc`: first 8 and last 8 kept


def exemplar_prompt(boxes: Any, labels: Any) -> GeometricPrompt:
    """The detector prompt of one exemplar box (official `_get_visual_prompt`: `[x, y, w, h]`
    normalised -> cx, cy, w, h; exactly one box on a frame without outputs).

    Raises:
        ValueError: not one box of 4 numbers in [0, 1] with one 0 / 1 label.
    """
    try:
        b = torch.as_tensor(boxes, dtype=torch.float32)
        lab = torch.as_tensor(labels, dtype=torch.long) if labels is not None else None
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"bounding_boxes must be [[x, y, w, h]] numbers: {e}") from e
    if b.dim() != 2 or b.shape[-1] != 4 or b.shape[0] != 1:
        raise ValueError(
            "bounding_boxes must hold exactly one [x, y, w, h] box (the visual exemplar), got "
            f"shape {tuple(b.shape)}"
        )
    if lab is None or lab.shape != (1,) or int(lab[0]) not in (0, 1):
        raise ValueError(f"bounding_box_labels must be one label 0 or 1, got {labels!r}")
    cxcywh = torch.cat([b[:, :2] + b[:, 2:] / 2, b[:, 2:]], dim=1)
    if not torch.isfinite(b).all() or (b < 0).any() or (b > 1).any() or (cxcywh > 1).any():
        raise ValueError(f"a box must lie in [0, 1] (normalised by the video size), got {boxes}")
    return GeometricPrompt.empty(1).with_boxes(cxcywh[None], lab[None].bool())


def check_obj_id(obj_id: Any) -> int:
    """An object id as an int >= 0.

    Raises:
        ValueError: not an integer, or negative.
    """
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)) or obj_id < 0:
        raise ValueError(f"obj_id must be an integer >= 0, got {obj_id!r}")
    return int(obj_id)


def click_prompt(points: Any, labels: Any, image_size: int) -> Clicks:
    """Clicks of one object: (N, 2) `[x, y]` in [0, 1] and N labels 1 / 0 -> 1xNx2 model-input
    pixels (x, y times `image_size`, the official `rel_coordinates`). More than 16 clicks keep
    the first 8 and the last 8 (official `max_point_num_in_prompt_enc`).

    Raises:
        ValueError: no points, not (N, 2) finite numbers in [0, 1], labels not N values 0 / 1.
    """
    try:
        p = torch.as_tensor(np.asarray(points, dtype=np.float64), dtype=torch.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"points must be [[x, y], ...] numbers in [0, 1]: {e}") from e
    if p.dim() != 2 or p.shape[-1] != 2 or p.shape[0] == 0:
        raise ValueError(
            f"points must be a non-empty list of [x, y] pairs (shape (N, 2)), got shape "
            f"{tuple(p.shape)}"
        )
    if not torch.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError(
            f"points must be finite and lie in [0, 1] (normalised by the video size), got {points}"
        )
    if labels is None:
        raise ValueError("points need point_labels (one 1 = positive / 0 = negative per point)")
    try:
        lab_np = np.asarray(labels)
    except (TypeError, ValueError) as e:
        raise ValueError(f"point_labels must be a list of 0 / 1: {e}") from e
    if lab_np.shape != (p.shape[0],) or not np.isin(lab_np, (0, 1)).all():
        raise ValueError(
            f"point_labels must be {p.shape[0]} values 0 (negative) or 1 (positive), got {labels!r}"
        )
    lab = torch.as_tensor(lab_np.astype(np.int32))
    if p.shape[0] > MAX_POINTS_IN_PROMPT:
        half = MAX_POINTS_IN_PROMPT // 2
        keep = list(range(half)) + list(range(p.shape[0] - half, p.shape[0]))
        p, lab = p[keep], lab[keep]
    return Clicks(p[None] * image_size, lab[None])
