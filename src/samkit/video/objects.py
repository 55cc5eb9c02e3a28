"""Removing prompts and objects (`clear_all_prompts_in_frame`, `remove_object`) of a session."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from samkit.video.session import InferenceSession
from samkit.video.tracker import Sam2Tracker


def clear_prompts_in_frame(
    tracker: Sam2Tracker, s: InferenceSession, frame_idx: int, obj_id: Any, need_output: bool
) -> tuple[int, list, Tensor] | None:
    """`Sam2VideoPredictor.clear_all_prompts_in_frame` (arguments, returns and errors there)."""
    tracker.check_frame(s, frame_idx)
    obj = s.objects[s.known_obj_idx(obj_id)]
    obj.point_inputs.pop(frame_idx, None)
    obj.mask_inputs.pop(frame_idx, None)
    obj.pending.cond_frame_outputs.pop(frame_idx, None)
    obj.pending.non_cond_frame_outputs.pop(frame_idx, None)
    out = obj.memory.cond_frame_outputs.pop(frame_idx, None)
    if out is not None:  # its output there becomes a tracked one
        obj.memory.non_cond_frame_outputs[frame_idx] = out
        obj.frames_tracked.pop(frame_idx, None)
    if not need_output:
        return None
    is_cond = any(frame_idx in o.pending.cond_frame_outputs for o in s.objects)
    return frame_idx, s.obj_ids, tracker.frame_masks(s, frame_idx, is_cond)


def remove_object(
    tracker: Sam2Tracker, s: InferenceSession, obj_id: Any, strict: bool, need_output: bool
) -> tuple[list, list[tuple[int, Tensor]]]:
    """`Sam2VideoPredictor.remove_object` (arguments, returns and errors there)."""
    try:
        idx = s.obj_idx(obj_id)
    except ValueError:  # not hashable or already removed: not an object id now
        idx = None
    if idx is None:
        if strict:
            raise ValueError(f"cannot remove unknown object id {obj_id!r}; have {s.obj_ids}")
        return s.obj_ids, []
    if len(s.objects) == 1:
        s.reset()
        s.removed_obj_ids.add(obj_id)
        return s.obj_ids, []
    frames = s.objects[idx].prompted_frames()
    s.drop_object(idx)
    updated = []
    if need_output:
        for t in frames:
            is_cond = any(t in o.pending.cond_frame_outputs for o in s.objects)
            updated.append((t, tracker.frame_masks(s, t, is_cond)))
    return s.obj_ids, updated
