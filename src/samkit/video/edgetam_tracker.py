"""The older, batched SAM 2 video predictor's rules (sam2 1.0, what EdgeTAM ships), as a session
and a tracker on top of samkit's per-object ones (`InferenceSession`, `Sam2Tracker`).

EdgeTAM's official `SAM2VideoPredictor` (facebookresearch/EdgeTAM `sam2/sam2_video_predictor.py`)
predates sam2 1.1.0's per-object tracking. What differs, and is reproduced here:

- "Consolidation" (`propagate_in_video_preflight`): every frame that received a prompt for any
  object since the last propagation becomes a frame of *all* objects, of the prompt's kind
  (conditioning, or a correction with `add_all_frames_to_correct_as_cond=False`). An object
  without a prompt there keeps its own output on that frame if it has one, else gets an empty
  output (-1024 logits, the pointer of an empty mask, object score 10). The memory of every
  object on the frame is then encoded again, together, from its low-res logits upsampled and
  binarised as click masks (`is_mask_from_pts=True`).
- Propagation reuses the stored outputs of consolidated frames (corrections included) instead of
  tracking them again; all other frames are tracked for every object.
- New object ids are refused once tracking has started (until `reset_state`).
- Removing the last prompt of a frame (for all objects) turns that frame back into a tracked
  frame of every object; removing the last conditioning frame resets the tracking results.

samkit keeps its own rules where the official fails or loses data (a removed id stays refused,
a call that raises leaves the state unchanged, a prompt cleared from a frame that another
object's pending prompt still keeps does not reset the other objects' prompts).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.modeling.sam2_video import NO_OBJ_SCORE
from samkit.modeling.video_memory import FrameOutput, ObjectMemory
from samkit.video.outputs import video_res
from samkit.video.session import InferenceSession, ObjectState, memory_window
from samkit.video.tracker import Sam2Tracker

# object score of an object that has no output on a consolidated frame (official default 10.0)
EMPTY_OBJECT_SCORE = 10.0


@dataclass(eq=False)
class BatchedSession(InferenceSession):
    """An `InferenceSession` with the batched predictor's frame bookkeeping.

    Attributes:
        tracking_has_started: a propagation ran (new object ids are refused until `reset`).
        consolidated_cond / consolidated_non_cond: frames whose outputs propagation reuses
            (official `consolidated_frame_inds`).
    """

    tracking_has_started: bool = False
    consolidated_cond: set[int] = field(default_factory=set)
    consolidated_non_cond: set[int] = field(default_factory=set)

    @classmethod
    def from_session(cls, s: InferenceSession) -> BatchedSession:
        """The same state (shared, not copied) with empty batched bookkeeping."""
        base = fields(InferenceSession)
        out = cls(**{f.name: getattr(s, f.name) for f in base if f.init})
        for f in base:
            if not f.init:
                setattr(out, f.name, getattr(s, f.name))
        return out

    def reset(self) -> None:
        super().reset()
        self.reset_tracking()

    def reset_tracking(self) -> None:
        """Forget the consolidated frames and that tracking started (official
        `_reset_tracking_results`, which also clears every prompt and output: `clear_results`)."""
        self.tracking_has_started = False
        self.consolidated_cond.clear()
        self.consolidated_non_cond.clear()

    def clear_results(self) -> None:
        """Every object's prompts and outputs (the objects stay), and `reset_tracking`."""
        for o in self.objects:
            o.point_inputs.clear()
            o.mask_inputs.clear()
            o.memory.clear()
            o.pending.clear()
            o.frames_tracked.clear()
        self.reset_tracking()

    def check_new_object(self, obj_id: Hashable) -> None:
        """ValueError for an id not seen yet once tracking has started (and the errors of
        `obj_idx`)."""
        if self.obj_idx(obj_id) is None and self.tracking_has_started:
            raise ValueError(
                f"cannot add new object id {obj_id!r} after tracking started (the batched "
                f"EdgeTAM predictor tracks a fixed set of objects: {self.obj_ids}); call "
                "reset_state to start over"
            )


class BatchedTracker(Sam2Tracker):
    """`Sam2Tracker` with the batched predictor's consolidation (see the module docstring)."""

    def check_prompts(self, s: InferenceSession) -> None:
        """ValueError without objects, or when an object has no conditioning frame and no
        pending prompt of any object would give it one."""
        if not s.objects:
            raise ValueError("no prompts yet: add points, a box or a mask before propagating")
        pending = any(o.pending.cond_frame_outputs for o in s.objects)
        for obj in s.objects:
            if not obj.has_conditioning() and not pending:
                raise ValueError(
                    f"object id {obj.obj_id!r} has no prompts; add points, a box "
                    "or a mask for it (or remove it) before propagating"
                )

    def preflight(self, s: InferenceSession) -> None:
        """Consolidate the frames prompted since the last propagation across all objects and
        encode their memories (official `propagate_in_video_preflight`)."""
        assert isinstance(s, BatchedSession)
        self.check_prompts(s)
        s.tracking_has_started = True
        single = len(s.objects) <= 1
        for is_cond in (False, True):
            frames = sorted({t for o in s.objects for t in o.pending.frames(is_cond)})
            (s.consolidated_cond if is_cond else s.consolidated_non_cond).update(frames)
            for t in frames:
                outs = [o.pending.frames(is_cond).get(t) or o.memory.get(t) for o in s.objects]
                for obj, out in zip(s.objects, self.consolidate_frame(s, t, outs), strict=True):
                    obj.memory.frames(is_cond)[t] = out
                    if self.clear_non_cond_mem_around_input and single:
                        self._clear_around(obj.memory, t)
            for o in s.objects:
                o.pending.frames(is_cond).clear()
        for o in s.objects:
            for t in o.memory.cond_frame_outputs:
                o.memory.non_cond_frame_outputs.pop(t, None)
        s.consolidated_non_cond -= s.consolidated_cond

    def consolidate_frame(
        self, s: InferenceSession, frame_idx: int, outs: list[FrameOutput | None]
    ) -> list[FrameOutput]:
        """Every object's output on a consolidated frame, its memory encoded again in one batch
        from the (S/4)x(S/4) logits (None: an object without output there gets an empty one)."""
        side = self.image_size // 4
        masks, ptrs, scores = [], [], []
        empty_ptr = None
        for out in outs:
            if out is None:
                if empty_ptr is None:
                    empty_ptr = self.empty_mask_pointer(s, frame_idx)
                masks.append(torch.full((1, 1, side, side), NO_OBJ_SCORE, device=s.device))
                ptrs.append(empty_ptr)
                scores.append(torch.full((1, 1), EMPTY_OBJECT_SCORE, device=s.device))
                continue
            m = out.pred_masks.to(s.device).float()
            if m.shape[-2:] != (side, side):
                m = F.interpolate(m, size=(side, side), mode="bilinear", align_corners=False)
            masks.append(m)
            ptrs.append(out.obj_ptr)
            scores.append(out.object_score_logits)
        low = torch.cat(masks)
        high = F.interpolate(
            low, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        feats = self.features(s, frame_idx, len(outs))
        score = torch.cat(scores)
        mem, pos = self.model.encode_new_memory(feats.image_embed, high, score, True)
        return [
            FrameOutput(
                pred_masks=low[i : i + 1].to(s.storage_device),
                obj_ptr=ptrs[i],
                object_score_logits=scores[i],
                maskmem_features=self._store_memory(s, mem[i : i + 1]),
                maskmem_pos_enc=self._pos_constant(s, pos[i : i + 1]),
            )
            for i in range(len(outs))
        ]

    def empty_mask_pointer(self, s: InferenceSession, frame_idx: int) -> Tensor:
        """1xC object pointer of an empty mask prompt on a frame (official `_get_empty_mask_ptr`)."""
        empty = torch.zeros(1, 1, self.image_size, self.image_size, device=s.device)
        out = self.model.track_step(
            frame_idx,
            True,
            self.features(s, frame_idx, 1),
            None,
            empty,
            ObjectMemory(),
            s.num_frames,
            run_mem_encoder=False,
        )
        return out.obj_ptr

    def track(self, s: InferenceSession, frame_idx: int, reverse: bool, num_frames: int) -> Tensor:
        """One frame of every object: a consolidated frame's stored outputs, else tracked
        (`Sam2Tracker.track`). Returns Ox1xHxW video-res logits."""
        assert isinstance(s, BatchedSession)
        for is_cond, frames in ((True, s.consolidated_cond), (False, s.consolidated_non_cond)):
            if frame_idx not in frames:
                continue
            outs = [o.memory.frames(is_cond).get(frame_idx) for o in s.objects]
            if any(o is None for o in outs):  # dropped from the bounded memory: track again
                frames.discard(frame_idx)
                break
            for obj in s.objects:
                if is_cond and self.clear_non_cond_mem_around_input and len(s.objects) <= 1:
                    self._clear_around(obj.memory, frame_idx)
                obj.frames_tracked[frame_idx] = reverse
            s.prune_tracked(frame_idx, memory_window(self.model))
            masks = torch.cat([o.pred_masks.to(s.device) for o in outs if o is not None])
            return video_res(s, self.non_overlap_masks, masks)
        return super().track(s, frame_idx, reverse, num_frames)

    def clear_prompts(self, s: BatchedSession, frame_idx: int, obj: ObjectState) -> None:
        """Remove an object's prompts on a frame; a frame left without any object's prompt
        becomes a tracked frame of every object, and with no conditioning frame left the
        tracking results are reset (official `clear_all_prompts_in_frame`)."""
        obj.point_inputs.pop(frame_idx, None)
        obj.mask_inputs.pop(frame_idx, None)
        obj.pending.cond_frame_outputs.pop(frame_idx, None)
        obj.pending.non_cond_frame_outputs.pop(frame_idx, None)
        if any(frame_idx in o.prompted_frames() for o in s.objects):
            return
        s.consolidated_cond.discard(frame_idx)
        s.consolidated_non_cond.discard(frame_idx)
        for o in s.objects:
            out = o.memory.cond_frame_outputs.pop(frame_idx, None)
            if out is not None:
                o.memory.non_cond_frame_outputs[frame_idx] = out
                o.frames_tracked.pop(frame_idx, None)
        if not any(o.has_conditioning() for o in s.objects):
            s.clear_results()
