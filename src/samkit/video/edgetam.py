"""The EdgeTAM video predictor: `Sam2VideoPredictor`'s API with the older, batched SAM 2 video
predictor's rules that EdgeTAM's official predictor follows (`samkit.video.edgetam_tracker`
says what differs), and its builder."""

from __future__ import annotations

import os
from collections.abc import Hashable
from typing import Any

import torch
from torch import Tensor

from samkit.build.edgetam import EdgeTamConfigLike, build_edgetam
from samkit.modeling.sam2_video import Sam2Video
from samkit.video.build import video_predictor_for
from samkit.video.edgetam_tracker import BatchedSession, BatchedTracker
from samkit.video.predictor import Sam2VideoPredictor
from samkit.video.session import InferenceSession


class EdgeTamVideoPredictor(Sam2VideoPredictor):
    """Track objects with EdgeTAM, call for call like EdgeTAM's official `SAM2VideoPredictor`.

    Arguments as `Sam2VideoPredictor`. Differences from it (the official batched predictor's,
    see `samkit.video.edgetam_tracker`): a frame prompted for any object is consolidated for all
    objects when propagation starts, consolidated frames are not tracked again, and new object
    ids are refused (ValueError) once tracking has started, until `reset_state`.
    """

    def __init__(
        self,
        model: Sam2Video,
        *,
        fill_hole_area: int = 8,
        non_overlap_masks: bool = False,
        clear_non_cond_mem_around_input: bool = False,
        add_all_frames_to_correct_as_cond: bool = True,
    ) -> None:
        super().__init__(
            model,
            fill_hole_area=fill_hole_area,
            non_overlap_masks=non_overlap_masks,
            clear_non_cond_mem_around_input=clear_non_cond_mem_around_input,
            add_all_frames_to_correct_as_cond=add_all_frames_to_correct_as_cond,
        )
        t = self.tracker
        self.tracker = BatchedTracker(
            t.model,
            t.fill_hole_area,
            t.non_overlap_masks,
            t.clear_non_cond_mem_around_input,
            t.add_all_frames_to_correct_as_cond,
        )

    @torch.inference_mode()
    def init_state(self, video_path: Any, *args: Any, **kwargs: Any) -> BatchedSession:
        """As `Sam2VideoPredictor.init_state`; the state also records the batched predictor's
        consolidated frames."""
        return BatchedSession.from_session(super().init_state(video_path, *args, **kwargs))

    def _session(self, s: InferenceSession) -> BatchedSession:
        if not isinstance(s, BatchedSession):
            raise ValueError(
                "this state was not made by EdgeTamVideoPredictor.init_state; EdgeTAM tracks "
                "with the batched predictor's state"
            )
        return s

    def add_new_points_or_box(
        self,
        inference_state: InferenceSession,
        frame_idx: int,
        obj_id: Hashable,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[int, list, Tensor]:
        """As `Sam2VideoPredictor.add_new_points_or_box`.

        Raises:
            ValueError: as there, and a new object id after tracking started.
        """
        self._session(inference_state).check_new_object(obj_id)
        return super().add_new_points_or_box(inference_state, frame_idx, obj_id, *args, **kwargs)

    def add_new_mask(
        self, inference_state: InferenceSession, frame_idx: int, obj_id: Hashable, mask: Any
    ) -> tuple[int, list, Tensor]:
        """As `Sam2VideoPredictor.add_new_mask`.

        Raises:
            ValueError: as there, and a new object id after tracking started.
        """
        self._session(inference_state).check_new_object(obj_id)
        return super().add_new_mask(inference_state, frame_idx, obj_id, mask)

    @torch.inference_mode()
    def clear_all_prompts_in_frame(
        self,
        inference_state: InferenceSession,
        frame_idx: int,
        obj_id: Hashable,
        need_output: bool = True,
    ) -> tuple[int, list, Tensor] | None:
        """Remove an object's prompts on a frame; a frame no object has prompts on any more
        becomes a tracked frame of all objects, and without any conditioning frame left every
        prompt and output is dropped (the official batched predictor's rules).

        Returns:
            (frame_idx, obj_ids, Ox1xHxW video-res logits of the frame), None without
            `need_output`.

        Raises:
            ValueError: frame outside the video, unknown or removed object id.
        """
        s = self._session(inference_state)
        self.tracker.check_frame(s, frame_idx)
        obj = s.objects[s.known_obj_idx(obj_id)]
        assert isinstance(self.tracker, BatchedTracker)
        self.tracker.clear_prompts(s, frame_idx, obj)
        if not need_output:
            return None
        is_cond = any(frame_idx in o.pending.cond_frame_outputs for o in s.objects)
        return frame_idx, s.obj_ids, self.tracker.frame_masks(s, frame_idx, is_cond)

    @torch.inference_mode()
    def remove_object(
        self,
        inference_state: InferenceSession,
        obj_id: Hashable,
        strict: bool = False,
        need_output: bool = True,
    ) -> tuple[list, list[tuple[int, Tensor]]]:
        """Remove an object (its prompts first, as `clear_all_prompts_in_frame`); returns
        (remaining obj_ids, [(frame_idx, Ox1xHxW masks) of its prompted frames]). Its id is
        refused from then on (until `reset_state`).

        Raises:
            ValueError: with `strict`, an unknown id.
        """
        s = self._session(inference_state)
        try:
            idx = s.obj_idx(obj_id)
        except ValueError:  # not hashable or already removed
            idx = None
        if idx is None:
            if strict:
                raise ValueError(f"cannot remove unknown object id {obj_id!r}; have {s.obj_ids}")
            return s.obj_ids, []
        if len(s.objects) == 1:
            s.reset()
            s.removed_obj_ids.add(obj_id)
            return s.obj_ids, []
        obj = s.objects[idx]
        frames = sorted(obj.prompted_frames())
        assert isinstance(self.tracker, BatchedTracker)
        for t in frames:
            self.tracker.clear_prompts(s, t, obj)
        s.drop_object(idx)
        updated = []
        if need_output:
            for t in frames:
                is_cond = any(t in o.pending.cond_frame_outputs for o in s.objects)
                updated.append((t, self.tracker.frame_masks(s, t, is_cond)))
        return s.obj_ids, updated


def build_edgetam_video_predictor(
    variant_or_config: EdgeTamConfigLike = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    fill_hole_area: int = 8,
    non_overlap_masks: bool = False,
    clear_non_cond_mem_around_input: bool = False,
    add_all_frames_to_correct_as_cond: bool = True,
) -> EdgeTamVideoPredictor:
    """Build an EdgeTAM model (as `build_edgetam`, with the official video settings: dynamic
    multimask and binarised click masks for the memory) and its video predictor.

    Args:
        variant_or_config, checkpoint, device, dtype: as for `build_edgetam`; the checkpoint
            must hold the memory tensors (the official `edgetam.pt` does). A low `dtype` also
            runs the spatial perceiver in it.
        fill_hole_area, non_overlap_masks, clear_non_cond_mem_around_input,
            add_all_frames_to_correct_as_cond: as for `samkit.video.build.build_sam2_video_predictor`
            (True, samkit's default; False is the official default).

    Raises:
        ValueError: a checkpoint without the memory modules, or any `build_edgetam` error.
    """
    model = build_edgetam(
        variant_or_config, checkpoint, device=device, dtype=dtype, apply_postprocessing=True
    )
    settings = dict(
        fill_hole_area=fill_hole_area,
        non_overlap_masks=non_overlap_masks,
        clear_non_cond_mem_around_input=clear_non_cond_mem_around_input,
        add_all_frames_to_correct_as_cond=add_all_frames_to_correct_as_cond,
    )
    # the shared checks (image-only checkpoint) and the low-precision memory modules
    video_predictor_for(model, checkpoint, "EdgeTAM", dtype=dtype, **settings)  # type: ignore[arg-type]
    if dtype is not None and dtype != torch.float32:
        model.spatial_perceiver.to(dtype)
    return EdgeTamVideoPredictor(model, **settings)  # type: ignore[arg-type]
