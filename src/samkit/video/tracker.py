"""`Sam2Tracker`: what `Sam2VideoPredictor` computes on an `InferenceSession`.

The session holds data; the tracker runs the model on it: the image encoder (through the
session's feature cache), one frame of one object (`run_frame`), the memories of frames prompted
since the last propagation (`preflight`), and one tracked frame of every object (`track`). The
predictor's public calls (`samkit.video.predictor`, `corrections`, `objects`) check their input,
then use these.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.modeling.sam2_video import Sam2Video
from samkit.modeling.video_memory import Clicks, FrameFeatures, FrameOutput, ObjectMemory
from samkit.video.outputs import consolidate, fill_holes_in_mask_scores, video_res
from samkit.video.session import InferenceSession, memory_window


class Sam2Tracker:
    """The model and the post-processing settings of a `Sam2VideoPredictor` (see there)."""

    def __init__(
        self,
        model: Sam2Video,
        fill_hole_area: int,
        non_overlap_masks: bool,
        clear_non_cond_mem_around_input: bool,
        add_all_frames_to_correct_as_cond: bool,
    ) -> None:
        self.model = model
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.clear_non_cond_mem_around_input = clear_non_cond_mem_around_input
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond

    @property
    def image_size(self) -> int:
        return self.model.image_size

    # ------------------------------------------------------------------ checks
    def check_frame(self, s: InferenceSession, frame_idx: Any) -> None:
        """ValueError unless `frame_idx` is an int frame of the video (a live iterator source
        is read up to it first)."""
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise ValueError(f"frame_idx must be an int, got {type(frame_idx).__name__}")
        s.refresh()
        if s.is_live and frame_idx >= s.num_frames:
            s.frames[frame_idx]  # an iterator source pulls up to the frame (or says it ended)
            s.refresh()
        n = s.num_frames
        if not 0 <= frame_idx < n:
            raise ValueError(f"frame_idx {frame_idx} is outside the video (frames 0..{n - 1})")

    def check_prompts(self, s: InferenceSession) -> None:
        """ValueError unless every object has a conditioning frame (changes nothing)."""
        if not s.objects:
            raise ValueError("no prompts yet: add points, a box or a mask before propagating")
        for obj in s.objects:
            if not obj.has_conditioning():
                raise ValueError(
                    f"object id {obj.obj_id!r} has no prompts; add points, a box "
                    "or a mask for it (or remove it) before propagating"
                )

    # ------------------------------------------------------------------ model
    def features(self, s: InferenceSession, frame_idx: int, batch: int) -> FrameFeatures:
        """A frame's image features for `batch` objects, through the session's cache."""
        entry = s.cached_features(frame_idx)
        if entry is None:
            image = s.frames[frame_idx].to(s.device).float().unsqueeze(0)
            model = self.model
            out = model.forward_image(image.to(model.dtype))
            fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
            n = model.num_feature_levels
            entry = FrameFeatures(fpn[-1].float(), pos[-1].float(), [f.float() for f in fpn[-n:-1]])
            s.cache_features(frame_idx, entry)
        return entry.expand(batch)

    def run_frame(
        self,
        s: InferenceSession,
        memory: ObjectMemory,
        frame_idx: int,
        is_init: bool,
        points: Clicks | None,
        mask: Tensor | None,
        reverse: bool,
        run_mem_encoder: bool,
        prev_logits: Tensor | None,
        num_frames: int | None = None,
    ) -> tuple[FrameOutput, Tensor]:
        """One object on one frame: (the output to store, its 1x1xhxw low-res logits).

        Changes nothing in the session but its feature cache."""
        feats = self.features(s, frame_idx, 1)
        if num_frames is None:
            num_frames = s.num_frames
            if s.is_live:
                num_frames = max(num_frames, self.model.max_obj_ptrs_in_encoder)
        out = self.model.track_step(
            frame_idx,
            is_init,
            feats,
            points,
            mask,
            memory,
            num_frames,
            track_in_reverse=reverse,
            run_mem_encoder=run_mem_encoder,
            prev_sam_mask_logits=prev_logits,
        )
        masks = out.pred_masks
        if self.fill_hole_area > 0:
            masks = fill_holes_in_mask_scores(masks, self.fill_hole_area)
        mem = out.maskmem_features
        stored = FrameOutput(
            pred_masks=masks.to(s.storage_device),
            obj_ptr=out.obj_ptr,
            object_score_logits=out.object_score_logits,
            maskmem_features=None if mem is None else self._store_memory(s, mem),
            maskmem_pos_enc=None
            if out.maskmem_pos_enc is None
            else self._pos_constant(s, out.maskmem_pos_enc),
        )
        return stored, masks

    def preflight(self, s: InferenceSession) -> None:
        """Encode the memories of the frames prompted since the last propagation and store
        them (official `propagate_in_video_preflight`); all encoding precedes any change."""
        self.check_prompts(s)
        memories = []
        for obj in s.objects:
            for outs in (obj.pending.cond_frame_outputs, obj.pending.non_cond_frame_outputs):
                for t, out in outs.items():
                    if out.maskmem_features is None:
                        high = F.interpolate(
                            out.pred_masks.to(s.device),
                            size=(self.image_size, self.image_size),
                            mode="bilinear",
                            align_corners=False,
                        )
                        feats = self.features(s, t, 1)
                        mem, pos = self.model.encode_new_memory(
                            feats.image_embed, high, out.object_score_logits, True
                        )
                        memories.append((out, mem, pos))
        for out, mem, pos in memories:
            out.maskmem_features = self._store_memory(s, mem)
            out.maskmem_pos_enc = self._pos_constant(s, pos)
        for obj in s.objects:
            stored, pending = obj.memory, obj.pending
            for is_cond in (False, True):
                for t, out in pending.frames(is_cond).items():
                    stored.frames(is_cond)[t] = out
                    if self.clear_non_cond_mem_around_input:
                        self._clear_around(stored, t)
            pending.clear()
            for t in stored.cond_frame_outputs:
                stored.non_cond_frame_outputs.pop(t, None)

    def track(self, s: InferenceSession, frame_idx: int, reverse: bool, num_frames: int) -> Tensor:
        """Track all objects on one frame (prompted objects reuse their stored output);
        returns Ox1xHxW video-res logits."""
        per_obj = []
        for obj in s.objects:
            stored = obj.memory
            cond = stored.cond_frame_outputs.get(frame_idx)
            if cond is not None:
                masks = cond.pred_masks.to(s.device)
                if self.clear_non_cond_mem_around_input:
                    self._clear_around(stored, frame_idx)
            else:
                out, masks = self.run_frame(
                    s, stored, frame_idx, False, None, None, reverse, True, None, num_frames
                )
                stored.non_cond_frame_outputs[frame_idx] = out
            obj.frames_tracked[frame_idx] = reverse
            per_obj.append(masks)
        s.prune_tracked(frame_idx, memory_window(self.model))
        return video_res(s, self.non_overlap_masks, torch.cat(per_obj, dim=0))

    def frame_masks(self, s: InferenceSession, frame_idx: int, is_cond: bool) -> Tensor:
        """Ox1xHxW video-res logits of every object's newest output on a frame."""
        return video_res(s, self.non_overlap_masks, consolidate(s, frame_idx, is_cond))

    # ------------------------------------------------------------------ storage
    def _store_memory(self, s: InferenceSession, mem: Tensor) -> Tensor:
        # the official predictor stores memories in bfloat16; they are used in float32
        return mem.to(torch.bfloat16).to(s.storage_device)

    def _pos_constant(self, s: InferenceSession, pos: Tensor) -> Tensor:
        if s.maskmem_pos_enc is None:
            s.maskmem_pos_enc = pos[:1].clone()
        return s.maskmem_pos_enc.expand(pos.shape[0], -1, -1, -1)

    def _clear_around(self, stored: ObjectMemory, frame_idx: int) -> None:
        r = self.model.memory_temporal_stride_for_eval * self.model.num_maskmem
        for t in range(frame_idx - r, frame_idx + r + 1):
            stored.non_cond_frame_outputs.pop(t, None)
