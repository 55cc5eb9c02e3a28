"""Adding prompts to `Sam2VideoPredictor` (`add_new_points_or_box`, `add_new_mask`), and what a
prompt on a tracked frame (a correction) becomes.

The rules, as the official `sam2` 1.1.0 `SAM2VideoPredictor.add_new_points_or_box` /
`add_new_mask` unless marked "samkit":

- A prompt on a frame where the object was not tracked is an initial conditioning frame: the
  decoder sees no memory (as SAM on an image).
- A prompt on a tracked frame is a correction: the decoder sees the object's memory and (for
  clicks) the frame's current mask logits, clamped to +-32.
  - `add_all_frames_to_correct_as_cond=True` (samkit's default): the corrected frame becomes a
    conditioning frame of that object. The next `propagate_in_video` returns its corrected mask
    unchanged, and every frame tracked from then on attends to its memory (the official
    configs' `max_cond_frames_in_attn=-1` attends to all conditioning frames) and, when the
    frame lies before it in the tracking direction, to its object pointer.
  - `False` (the official default, as the `sam2_video` fixtures were recorded): the corrected
    frame stays a tracked frame; the next propagation recomputes it from memory, so a forward
    re-propagation from before it gives the masks it gave before the correction
    (facebookresearch/sam2 #719, #154, #321, #731).
- samkit: an object with no conditioning frame left (its prompts all removed with
  `clear_all_prompts_in_frame`) starts over on its next prompt: what it still holds (tracked
  outputs and corrections, all computed from the removed prompts) is dropped and the prompt is
  its initial conditioning frame, exactly as for a new object; the next propagation tracks it
  from there. The official predictor fails on such a click with an AssertionError when the
  frame was tracked (facebookresearch/sam2 #523) and otherwise feeds it the removed prompts'
  mask.
- samkit: a click on a tracked frame of an object whose only conditioning frames were added
  after the last propagation (not yet in its memory) is an initial conditioning frame too (the
  official fails there with the same AssertionError).
- samkit: every check and the model run come before the state changes, so a call that raises
  leaves the state as it was (the official stores the points first).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from samkit.modeling.video_memory import Clicks
from samkit.video.prompts import mask_input, point_input
from samkit.video.session import InferenceSession, ObjectState
from samkit.video.tracker import Sam2Tracker


def add_points(
    tracker: Sam2Tracker,
    s: InferenceSession,
    frame_idx: int,
    obj_id: Any,
    points: Any,
    labels: Any,
    clear_old_points: bool,
    normalize_coords: bool,
    box: Any,
) -> tuple[int, list, Tensor]:
    """`Sam2VideoPredictor.add_new_points_or_box` (arguments, returns and errors there)."""
    tracker.check_frame(s, frame_idx)
    new = point_input(
        points, labels, box, clear_old_points, normalize_coords, s, tracker.image_size
    )
    return add_prompt(tracker, s, frame_idx, obj_id, new, None, clear_old_points)


def add_mask(
    tracker: Sam2Tracker, s: InferenceSession, frame_idx: int, obj_id: Any, mask: Any
) -> tuple[int, list, Tensor]:
    """`Sam2VideoPredictor.add_new_mask` (arguments, returns and errors there)."""
    tracker.check_frame(s, frame_idx)
    m = mask_input(mask, s, tracker.image_size)
    return add_prompt(tracker, s, frame_idx, obj_id, None, m, True)


def add_prompt(
    tracker: Sam2Tracker,
    s: InferenceSession,
    frame_idx: int,
    obj_id: Any,
    points: Clicks | None,
    mask: Tensor | None,
    clear_old_points: bool,
) -> tuple[int, list, Tensor]:
    """Run an object's new prompt on a frame and store it (the rules: module docstring).

    Raises:
        ValueError: a removed or unhashable object id, a frame that does not decode; the
            session is then unchanged.
    """
    idx = s.obj_idx(obj_id)
    obj = None if idx is None else s.objects[idx]
    if obj is None or not obj.has_conditioning():
        # a new object, or one whose prompts were all removed: starts over (not stored yet)
        obj = ObjectState(obj_id)
    elif points is not None and not clear_old_points:
        old = obj.point_inputs.get(frame_idx)
        if old is not None:
            points = old.then(points)
    stored = obj.memory
    # no memory to correct from: an initial conditioning frame (samkit; see module doc)
    is_init = frame_idx not in obj.frames_tracked or not stored.cond_frame_outputs
    reverse = False if is_init else obj.frames_tracked[frame_idx]
    is_cond = is_init or tracker.add_all_frames_to_correct_as_cond
    prev_logits = None
    if points is not None:
        prev = obj.output(frame_idx, is_cond)
        if prev is not None and prev.pred_masks is not None:
            prev_logits = torch.clamp(prev.pred_masks.to(s.device), -32.0, 32.0)
    # may raise (e.g. a frame that does not decode): the session is still untouched
    out, _ = tracker.run_frame(
        s, stored, frame_idx, is_init, points, mask, reverse, False, prev_logits
    )
    s.put_object(obj)
    if points is not None:
        obj.point_inputs[frame_idx] = points
        obj.mask_inputs.pop(frame_idx, None)
    else:
        obj.mask_inputs[frame_idx] = mask
        obj.point_inputs.pop(frame_idx, None)
    obj.pending.frames(is_cond)[frame_idx] = out
    return frame_idx, s.obj_ids, tracker.frame_masks(s, frame_idx, is_cond)
