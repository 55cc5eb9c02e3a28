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

from samkit.video import state as st
from samkit.video.outputs import consolidate, video_res
from samkit.video.prompts import mask_input, point_input

State = dict[str, Any]


def _empty_outputs() -> dict[str, dict]:
    return {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}


class PromptAdding:
    """Mixed into `Sam2VideoPredictor` (uses its `_check_frame`, `_run_frame`, `image_size`,
    `device`, `non_overlap_masks` and `add_all_frames_to_correct_as_cond`)."""

    @torch.inference_mode()
    def add_new_points_or_box(
        self,
        inference_state: State,
        frame_idx: int,
        obj_id: Any,
        points: Any = None,
        labels: Any = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Any = None,
    ) -> tuple[int, list, Tensor]:
        """Add clicks and/or a box for an object on a frame; returns that frame's masks.

        A click on a tracked frame is a correction (see the module docstring for what it
        becomes with `add_all_frames_to_correct_as_cond`).

        Args:
            points: Nx2 (x, y) in video pixels (in [0, 1] of the frame with
                normalize_coords=False), labels: N (1 positive, 0 negative).
            clear_old_points: replace the frame's earlier clicks of this object.
            box: (x0, y0, x1, y1); needs clear_old_points=True.

        Returns:
            (frame_idx, obj_ids, Ox1xHxW float32 logits of every object at video resolution;
            -1024 for objects without output on this frame).

        Raises:
            ValueError: frame outside the video, points without labels (or the reverse),
                lengths that differ, no points and no box, a box with clear_old_points=False,
                non-finite coordinates, an object id removed with `remove_object` or not
                hashable. The state is then unchanged.
        """
        s = inference_state
        self._check_frame(s, frame_idx)
        new = point_input(
            points, labels, box, clear_old_points, normalize_coords, s, self.image_size
        )
        return self._add_prompt(s, frame_idx, obj_id, new, None, clear_old_points)

    @torch.inference_mode()
    def add_new_mask(
        self, inference_state: State, frame_idx: int, obj_id: Any, mask: Any
    ) -> tuple[int, list, Tensor]:
        """Add a mask prompt (HxW bool, video size or 256x256) for an object on a frame.

        Returns:
            As `add_new_points_or_box`.

        Raises:
            ValueError: frame outside the video, a mask that is not 2-D of the video's size or
                256x256, an object id removed with `remove_object` or not hashable. The state
                is then unchanged.
        """
        s = inference_state
        self._check_frame(s, frame_idx)
        m = mask_input(mask, s, self.image_size, self.device)
        return self._add_prompt(s, frame_idx, obj_id, None, m, True)

    def _add_prompt(
        self,
        s: State,
        frame_idx: int,
        obj_id: Any,
        points: dict[str, Tensor] | None,
        mask: Tensor | None,
        clear_old_points: bool,
    ) -> tuple[int, list, Tensor]:
        idx = st.known_obj_idx(s, obj_id)
        restart = idx is None or not st.has_conditioning(s, idx)
        if restart:  # a new object, or one whose prompts were all removed
            out_dict, temp, tracked = _empty_outputs(), _empty_outputs(), {}
        else:
            out_dict = s["output_dict_per_obj"][idx]
            temp = s["temp_output_dict_per_obj"][idx]
            tracked = s["frames_tracked_per_obj"][idx]
            old = s["point_inputs_per_obj"][idx].get(frame_idx)
            if points is not None and not clear_old_points and old is not None:
                points = {
                    k: torch.cat([old[k], points[k]], dim=1)
                    for k in ("point_coords", "point_labels")
                }
        # no memory to correct from: an initial conditioning frame (samkit; see module doc)
        is_init = frame_idx not in tracked or not out_dict["cond_frame_outputs"]
        reverse = False if is_init else tracked[frame_idx]
        is_cond = is_init or self.add_all_frames_to_correct_as_cond
        key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
        prev_logits = None
        if points is not None:
            prev = temp[key].get(frame_idx)
            if prev is None:
                prev = out_dict["cond_frame_outputs"].get(frame_idx)
            if prev is None:
                prev = out_dict["non_cond_frame_outputs"].get(frame_idx)
            if prev is not None and prev["pred_masks"] is not None:
                prev_logits = torch.clamp(prev["pred_masks"].to(s["device"]), -32.0, 32.0)
        # may raise (e.g. a frame that does not decode): the state is still untouched
        out, _ = self._run_frame(
            s, out_dict, frame_idx, 1, is_init, points, mask, reverse, False, prev_logits
        )
        if idx is None:
            idx = st.obj_idx(s, obj_id, create=True)
        elif restart:
            st.empty_object(s, idx)
        if points is not None:
            s["point_inputs_per_obj"][idx][frame_idx] = points
            s["mask_inputs_per_obj"][idx].pop(frame_idx, None)
        else:
            s["mask_inputs_per_obj"][idx][frame_idx] = mask
            s["point_inputs_per_obj"][idx].pop(frame_idx, None)
        s["temp_output_dict_per_obj"][idx][key][frame_idx] = out
        masks = consolidate(s, frame_idx, is_cond)
        return frame_idx, s["obj_ids"], video_res(s, self.non_overlap_masks, masks)
