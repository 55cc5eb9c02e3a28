"""Typed inputs and outputs of a memory-tracking step, shared by every tracker family.

A tracker (SAM 2's `Sam2Video.track_step`, later SAM 3's tracker) reads a frame's image features
(`FrameFeatures`), an object's clicks (`Clicks`) and the object's stored outputs of other
frames (`ObjectMemory`), and returns that frame's output (`FrameOutput`). Names follow the
official `sam2` code (`cond_frame_outputs`, `maskmem_features`, `obj_ptr`, ...), so the official
`_prepare_memory_conditioned_features` and `track_step` read the same way here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class FrameFeatures:
    """One frame's image-encoder output for B objects tracked together.

    Attributes:
        image_embed: BxCxHxW stride-16 features (float32).
        image_pos: BxCxHxW position encoding of `image_embed`.
        high_res_feats: [Bx(C/8)x4Hx4W, Bx(C/4)x2Hx2W] projected high-resolution features.
    """

    image_embed: Tensor
    image_pos: Tensor
    high_res_feats: list[Tensor]

    def expand(self, batch: int) -> FrameFeatures:
        """The same features for `batch` objects (expanded views, no copy) from a batch of 1."""
        if batch == 1:
            return self
        return FrameFeatures(
            self.image_embed.expand(batch, -1, -1, -1),
            self.image_pos.expand(batch, -1, -1, -1),
            [f.expand(batch, -1, -1, -1) for f in self.high_res_feats],
        )


@dataclass(frozen=True, eq=False)
class Clicks:
    """Point prompts of B objects on one frame (the official `point_inputs`).

    Attributes:
        coords: BxNx2 float32 (x, y) in model-input pixels (0..image_size).
        labels: BxN int32: 1 positive, 0 negative, 2 / 3 a box's top-left / bottom-right corner.
    """

    coords: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[1])

    def then(self, more: Clicks) -> Clicks:
        """These clicks followed by `more` (same B), as a click added to a frame's clicks."""
        return Clicks(
            torch.cat([self.coords, more.coords], dim=1), torch.cat([self.labels, more.labels], 1)
        )


@dataclass(eq=False)
class FrameOutput:
    """An object's output on one frame, as a tracker returns and a session stores it.

    Attributes:
        pred_masks: Bx1x(S/4)x(S/4) low-resolution mask logits (-1024 where the object is
            predicted absent).
        obj_ptr: BxC object pointer (the decoder's output token, projected).
        object_score_logits: Bx1 (> 0: the object is present).
        maskmem_features: BxC_memxhxw memory of the frame, None until encoded (a prompted frame
            is encoded when propagation starts).
        maskmem_pos_enc: BxC_memxhxw its position encoding (None with `maskmem_features`).
        pred_masks_high_res: Bx1xSxS logits; returned by the tracking step, not stored.
    """

    pred_masks: Tensor
    obj_ptr: Tensor
    object_score_logits: Tensor
    maskmem_features: Tensor | None = None
    maskmem_pos_enc: Tensor | None = None
    pred_masks_high_res: Tensor | None = None


@dataclass(eq=False)
class ObjectMemory:
    """One object's outputs by frame index (the official `output_dict` of one object).

    Attributes:
        cond_frame_outputs: outputs of conditioning frames (prompted; always attended to).
        non_cond_frame_outputs: outputs of tracked frames (the recent ones are attended to).
        key_cache: where a tracker keeps the memories' frame-independent key parts
            (`samkit.modeling.memory_keys.MemoryKeyCache`), or None (computed every frame).
    """

    cond_frame_outputs: dict[int, FrameOutput] = field(default_factory=dict)
    non_cond_frame_outputs: dict[int, FrameOutput] = field(default_factory=dict)
    key_cache: Any = None

    def frames(self, is_cond: bool) -> dict[int, FrameOutput]:
        """`cond_frame_outputs` when `is_cond`, else `non_cond_frame_outputs`."""
        return self.cond_frame_outputs if is_cond else self.non_cond_frame_outputs

    def get(self, frame_idx: int) -> FrameOutput | None:
        """The output of a frame: its conditioning output, else its tracked one, else None."""
        out = self.cond_frame_outputs.get(frame_idx)
        return self.non_cond_frame_outputs.get(frame_idx) if out is None else out

    def clear(self) -> None:
        self.cond_frame_outputs.clear()
        self.non_cond_frame_outputs.clear()
