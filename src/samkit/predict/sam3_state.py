"""The state of `samkit.predict.sam3.Sam3Processor` and the checks of its inputs (confidence
threshold, boxes), apart from the processor so that they read on their own."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from samkit.configs.sam3_thresholds import check_score_threshold

RESULT_KEYS = ("masks", "masks_logits", "boxes", "scores")  # what a grounding pass sets


class Sam3State(dict):
    """The processor state: a dict with the official keys, plus typed read access
    (`state.masks`, `state.boxes`, `state.scores`, `state.masks_logits`)."""

    @property
    def masks(self) -> Any:
        return self["masks"]

    @property
    def masks_logits(self) -> Any:
        return self["masks_logits"]

    @property
    def boxes(self) -> Any:
        return self["boxes"]

    @property
    def scores(self) -> Any:
        return self["scores"]


def check_threshold(threshold: Any) -> float:
    """A confidence threshold as a float strictly between 0 and 1: the one rule of every SAM 3
    threshold (`samkit.configs.sam3_thresholds.check_score_threshold`, as the CLI and the web
    app check theirs).

    Raises:
        ValueError: not a number, NaN, or outside (0, 1).
    """
    return check_score_threshold(threshold, "confidence_threshold")


def as_state(state: Any) -> Any:
    """The state itself (a `Sam3State`, or a plain dict used the official way).

    Raises:
        ValueError: `state` is no dict.
    """
    if not isinstance(state, dict):
        raise ValueError(f"state must be the dict set_image returned, got {type(state).__name__}")
    return state


def normalise_box(box: Any, box_format: str, width: int, height: int) -> list[float]:
    """A validated [cx, cy, w, h] normalised box from the user's box: `box_format` "cxcywh"
    (normalised, the official) or "xyxy" (pixels of a `width` x `height` image); see
    `Sam3Processor.add_geometric_prompt`.

    Raises:
        ValueError: not 4 finite numbers, an empty box, or a box entirely outside the image.
    """
    if box_format not in ("cxcywh", "xyxy"):
        raise ValueError(
            f"box_format must be 'cxcywh' (normalised, official) or 'xyxy' (pixels), got {box_format!r}"
        )
    try:
        vals = [float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError) as e:
        raise ValueError(f"box must be 4 numbers, got {box!r}") from e
    if len(vals) != 4 or np.asarray(box).ndim != 1:
        raise ValueError(f"box must be 4 numbers ([cx, cy, w, h] or [x0, y0, x1, y1]), got {box!r}")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"box has a NaN or infinite coordinate: {vals}")
    if box_format == "xyxy":
        x0, y0, x1, y1 = vals
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box [x0, y0, x1, y1] = {vals} needs x1 > x0 and y1 > y0")
        cx, cy, bw, bh = (
            (x0 + x1) / 2 / width,
            (y0 + y1) / 2 / height,
            (x1 - x0) / width,
            (y1 - y0) / height,
        )
    else:
        cx, cy, bw, bh = vals
        if bw <= 0 or bh <= 0:
            raise ValueError(f"box [cx, cy, w, h] = {vals} needs w > 0 and h > 0 (normalised)")
    if cx + bw / 2 <= 0 or cx - bw / 2 >= 1 or cy + bh / 2 <= 0 or cy - bh / 2 >= 1:
        raise ValueError(f"box {vals} ({box_format}) lies entirely outside the image")
    return [cx, cy, bw, bh]
