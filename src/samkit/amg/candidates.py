"""Candidate masks of the generator: box crops (or low-res logits) plus per-mask scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from samkit.amg.upsample import MaskUpsampler


class LowResMask:
    """A large mask kept as its low-res logits; re-upsampled (bit-identically) when needed."""

    __slots__ = ("box", "low_res", "threshold", "upsampler")

    def __init__(
        self, low_res: Tensor, upsampler: MaskUpsampler, box: list[int], threshold: float
    ) -> None:
        self.low_res, self.upsampler, self.box, self.threshold = low_res, upsampler, box, threshold

    def get(self) -> Tensor:
        x0, y0, x1, y1 = self.box
        return (self.upsampler(self.low_res) > self.threshold)[y0 : y1 + 1, x0 : x1 + 1]


class Candidates:
    """Candidate masks of one crop or image: box crops plus per-mask tensors (filterable)."""

    def __init__(self) -> None:
        # Each mask inside its inclusive box (bool), or its low-res logits when that is smaller.
        self.crops: list[Tensor | LowResMask] = []
        self.boxes: list[Tensor] = []  # (4,) int64 XYXY inclusive
        self.iou: list[Tensor] = []
        self.stability: list[Tensor] = []
        self.points: list[np.ndarray] = []
        self.crop_boxes: list[list[int]] = []

    def __len__(self) -> int:
        return len(self.crops)

    def crop(self, i: int) -> Tensor:
        c = self.crops[i]
        return c.get() if isinstance(c, LowResMask) else c

    def box_tensor(self) -> Tensor:
        return torch.stack(self.boxes) if self.boxes else torch.zeros((0, 4), dtype=torch.int64)

    def filter(self, keep: Sequence[int]) -> None:
        for name in ("crops", "boxes", "iou", "stability", "points", "crop_boxes"):
            items = getattr(self, name)
            setattr(self, name, [items[i] for i in keep])

    def extend(self, other: Candidates) -> None:
        for name in ("crops", "boxes", "iou", "stability", "points", "crop_boxes"):
            getattr(self, name).extend(getattr(other, name))
