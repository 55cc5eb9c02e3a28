"""Removing prompts and objects (`clear_all_prompts_in_frame`, `remove_object`) for
`Sam2VideoPredictor`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from samkit.video import state as st
from samkit.video.outputs import consolidate, video_res

State = dict[str, Any]


class ObjectEditing:
    """Mixed into `Sam2VideoPredictor` (uses its `_check_frame`, `reset_state` and
    `non_overlap_masks`)."""

    @torch.inference_mode()
    def clear_all_prompts_in_frame(
        self, inference_state: State, frame_idx: int, obj_id: Any, need_output: bool = True
    ) -> tuple[int, list, Tensor] | None:
        """Remove an object's prompts on a frame (its output there becomes a tracked one).

        An object left without prompts cannot be propagated; its next prompt, on any frame,
        starts it over (see `samkit.video.corrections`).

        Returns:
            (frame_idx, obj_ids, Ox1xHxW video-res logits of the frame), None without
            `need_output`.

        Raises:
            ValueError: frame outside the video, unknown or removed object id (the state is
                then unchanged).
        """
        s = inference_state
        self._check_frame(s, frame_idx)
        idx = st.obj_idx(s, obj_id, create=False)
        s["point_inputs_per_obj"][idx].pop(frame_idx, None)
        s["mask_inputs_per_obj"][idx].pop(frame_idx, None)
        temp = s["temp_output_dict_per_obj"]
        temp[idx]["cond_frame_outputs"].pop(frame_idx, None)
        temp[idx]["non_cond_frame_outputs"].pop(frame_idx, None)
        out_dict = s["output_dict_per_obj"][idx]
        out = out_dict["cond_frame_outputs"].pop(frame_idx, None)
        if out is not None:
            out_dict["non_cond_frame_outputs"][frame_idx] = out
            s["frames_tracked_per_obj"][idx].pop(frame_idx, None)
        if not need_output:
            return None
        is_cond = any(frame_idx in t["cond_frame_outputs"] for t in temp.values())
        masks = consolidate(s, frame_idx, is_cond)
        return frame_idx, s["obj_ids"], video_res(s, self.non_overlap_masks, masks)

    @torch.inference_mode()
    def remove_object(
        self, inference_state: State, obj_id: Any, strict: bool = False, need_output: bool = True
    ) -> tuple[list, list[tuple[int, Tensor]]]:
        """Remove an object; returns (remaining obj_ids, [(frame_idx, masks) of its prompted
        frames]). Unknown ids are ignored unless `strict` (then a ValueError, and the state is
        unchanged)."""
        s = inference_state
        try:
            old = s["obj_id_to_idx"].get(obj_id)
        except TypeError:  # not hashable: not an object id
            old = None
        if old is None:
            if strict:
                raise ValueError(f"cannot remove unknown object id {obj_id!r}; have {s['obj_ids']}")
            return s["obj_ids"], []
        if len(s["obj_id_to_idx"]) == 1:
            self.reset_state(s)
            s["removed_obj_ids"].add(obj_id)
            return s["obj_ids"], []
        frames = set(s["point_inputs_per_obj"][old]) | set(s["mask_inputs_per_obj"][old])
        for t in frames:
            self.clear_all_prompts_in_frame(s, t, obj_id, need_output=False)
        old_ids = s["obj_ids"]
        keep = [i for i in range(len(old_ids)) if i != old]
        remap = {o: n for n, o in enumerate(keep)}
        new_ids = [old_ids[i] for i in keep]
        s["obj_id_to_idx"] = dict(zip(new_ids, range(len(new_ids)), strict=True))
        s["obj_idx_to_id"] = dict(enumerate(new_ids))
        s["obj_ids"] = new_ids
        for key in (
            "point_inputs_per_obj",
            "mask_inputs_per_obj",
            "output_dict_per_obj",
            "temp_output_dict_per_obj",
            "frames_tracked_per_obj",
        ):
            d = s[key]
            s[key] = {remap[k]: v for k, v in d.items() if k in remap}
        s["removed_obj_ids"].add(obj_id)
        updated = []
        if need_output:
            temp = s["temp_output_dict_per_obj"]
            for t in frames:
                is_cond = any(t in d["cond_frame_outputs"] for d in temp.values())
                updated.append(
                    (t, video_res(s, self.non_overlap_masks, consolidate(s, t, is_cond)))
                )
        return s["obj_ids"], updated
