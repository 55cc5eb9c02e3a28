"""`Sam2VideoPredictor`: the official SAM 2 video predictor API on samkit's `Sam2Video`.

Call for call like the official `sam2` 1.1.0 `SAM2VideoPredictor` (December 2024: objects can
be added on any frame, also after tracking began; each object keeps its own memory), with the
same numbers (memory features stored in bfloat16 and used in float32, -1024 logits on frames
where the object is absent, dynamic multimask on single-click frames). Differences: a
correction on a tracked frame becomes a conditioning frame by default
(`add_all_frames_to_correct_as_cond=True`; the official default False recomputes it at the
next propagation: see `samkit.video.corrections`), an object whose prompts were all removed
starts over on its next prompt, a call that raises leaves the state unchanged, frames are
decoded lazily, only recent outputs are kept (see `samkit.video.session`), frames can arrive live
(`add_frame` / `track_frame` / `track_new_frame`), and bad input is a `ValueError`.

The state is an `InferenceSession` (typed data; the official keys `num_frames`, `video_height`,
`video_width` and `obj_ids` read with `state[...]`); a `Sam2Tracker` runs the model on it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from samkit.modeling.sam2_video import Sam2Video
from samkit.video import corrections, live, objects
from samkit.video.session import InferenceSession
from samkit.video.tracker import Sam2Tracker


class Sam2VideoPredictor:
    """Track objects through a video with SAM 2 (official `SAM2VideoPredictor` methods).

    Args:
        model: a `Sam2Video` (from `build_sam2` with a full checkpoint or no checkpoint).
        fill_hole_area: fill background holes of at most this many pixels (8-connected, on the
            256x256 logits, with scipy on the CPU) before outputs are stored and returned; 0 off.
        non_overlap_masks: keep only the highest-scoring object per pixel in returned masks.
        clear_non_cond_mem_around_input: after a correction on frame t, drop that object's
            tracked outputs within num_maskmem frames of t.
        add_all_frames_to_correct_as_cond: a prompt on a tracked frame (a correction) makes
            that frame a conditioning frame of the object, so the next `propagate_in_video`
            keeps the corrected mask and tracks the frames after it from it. True in samkit;
            False is the official default (the official sets it with
            `hydra_overrides_extra=["++model.add_all_frames_to_correct_as_cond=true"]`; the
            `sam2_video` fixtures were recorded with False): the correction only lasts until
            the frame is tracked again. Details in `samkit.video.corrections`.
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
        if not isinstance(model, Sam2Video):
            raise ValueError(
                f"expected a Sam2Video model (SAM 2 with its memory modules), got "
                f"{type(model).__name__}; build it from a checkpoint with the memory tensors"
            )
        if fill_hole_area < 0:
            raise ValueError(f"fill_hole_area must be >= 0, got {fill_hole_area}")
        self.tracker = Sam2Tracker(
            model.eval(),
            int(fill_hole_area),
            non_overlap_masks,
            clear_non_cond_mem_around_input,
            add_all_frames_to_correct_as_cond,
        )

    @property
    def model(self) -> Sam2Video:
        return self.tracker.model

    @property
    def fill_hole_area(self) -> int:
        return self.tracker.fill_hole_area

    @property
    def non_overlap_masks(self) -> bool:
        return self.tracker.non_overlap_masks

    @property
    def clear_non_cond_mem_around_input(self) -> bool:
        return self.tracker.clear_non_cond_mem_around_input

    @property
    def add_all_frames_to_correct_as_cond(self) -> bool:
        return self.tracker.add_all_frames_to_correct_as_cond

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------ state
    @torch.inference_mode()
    def init_state(
        self,
        video_path: Any,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
    ) -> InferenceSession:
        """A new tracking state over a video.

        Args:
            video_path: (the official argument name) a folder of JPEG frames (`<index>.jpg`),
                a video file (PyAV), a sequence of HxWx3 uint8 arrays or PIL images, an
                iterator of frames (live), or a frame source from
                `samkit.video.frames.sources.open_video` (e.g. `LiveFrames`).
            offload_video_to_cpu: accepted for compatibility (frames always stay on the CPU).
            offload_state_to_cpu: keep stored outputs on the CPU.
            async_loading_frames: accepted for compatibility (frames are always decoded lazily).

        Returns:
            The `InferenceSession` (`state["num_frames"]`, `["video_height"]`,
            `["video_width"]`, `["obj_ids"]` readable as in the official state dict).
        """
        from samkit.video.frames.folder import VideoFrames
        from samkit.video.frames.sources import open_video

        frames = video_path  # any object with the VideoFrames interface is used as is
        if isinstance(video_path, VideoFrames) or not hasattr(video_path, "video_height"):
            frames = open_video(video_path, self.image_size)  # checks a VideoFrames' input size
        state = InferenceSession.open(
            frames, self.device, offload_video_to_cpu, offload_state_to_cpu
        )
        if len(frames):
            self.tracker.features(state, 0, 1)  # warm up on frame 0, as the official predictor
        return state

    @torch.inference_mode()
    def reset_state(self, inference_state: InferenceSession) -> None:
        """Remove every object, prompt and output (frames and cached features stay); removed
        object ids can be used again."""
        inference_state.reset()

    # ------------------------------------------------------------------ tracking
    @torch.inference_mode()
    def propagate_in_video(
        self,
        inference_state: InferenceSession,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list, Tensor]]:
        """Track every object; yields (frame_idx, obj_ids, Ox1xHxW video-res logits) per frame.

        Starts at the earliest prompted frame (or `start_frame_idx`) and tracks up to
        `max_frame_num_to_track` frames after it (before it with `reverse`). Prompted frames
        (conditioning frames, corrections included with `add_all_frames_to_correct_as_cond`)
        yield their stored masks; the others are tracked from memory.

        Raises:
            ValueError: no prompt yet, an object without prompts, a start frame outside the
                video, a negative `max_frame_num_to_track` (checked at the first iteration,
                before the state changes); a frame that cannot be decoded (the frames yielded
                before it stay tracked).
        """
        s, tracker = inference_state, self.tracker
        s.refresh()
        tracker.check_prompts(s)
        num_frames = s.num_frames
        if start_frame_idx is None:
            start_frame_idx = min(
                t
                for obj in s.objects
                for d in (obj.memory, obj.pending)
                for t in d.cond_frame_outputs
            )
        tracker.check_frame(s, start_frame_idx)
        if max_frame_num_to_track is None:
            max_frame_num_to_track = num_frames
        if (
            isinstance(max_frame_num_to_track, bool)
            or not isinstance(max_frame_num_to_track, (int, np.integer))
            or max_frame_num_to_track < 0
        ):
            raise ValueError(
                f"max_frame_num_to_track must be an int >= 0 (or None: to the end), got "
                f"{max_frame_num_to_track!r}"
            )
        tracker.preflight(s)
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + max_frame_num_to_track, num_frames - 1)
            order = range(start_frame_idx, end + 1)
        for frame_idx in order:
            yield frame_idx, s.obj_ids, tracker.track(s, frame_idx, reverse, num_frames)

    @torch.inference_mode()
    def add_frame(self, inference_state: InferenceSession, frame: Any) -> int:
        """Append a frame (HxWx3 uint8 array or PIL image) to a live state; returns its index.

        Raises:
            ValueError: the state's video is not live, or the frame is malformed / of another
                size than the first frame.
        """
        return live.add_frame(inference_state, frame)

    @torch.inference_mode()
    def track_frame(
        self, inference_state: InferenceSession, frame_idx: int | None = None
    ) -> tuple[int, list, Tensor]:
        """Track the objects prompted so far on a live frame (default: the newest).

        Frame by frame in order this equals `propagate_in_video` over the same frames with the
        same prompts, for videos of at least `max_obj_ptrs_in_encoder` (16) frames (the live
        pointer window cannot depend on the unknown video length). Objects without a prompt
        up to this frame get -1024 logits. Memory stays constant (see `samkit.video.session`).

        Returns:
            (frame_idx, obj_ids, Ox1xHxW video-res logits).

        Raises:
            ValueError: no frame yet, a frame that has not arrived, or no prompt yet.
        """
        return live.track_frame(self.tracker, inference_state, frame_idx)

    def track_new_frame(
        self, inference_state: InferenceSession, frame: Any
    ) -> tuple[int, list, Tensor]:
        """`add_frame` then `track_frame` on it: (frame_idx, obj_ids, Ox1xHxW logits).

        Raises:
            ValueError: as `add_frame` and `track_frame`; the prompts are checked before the
                frame is added, so a refused call adds no frame.
        """
        if inference_state.is_live:
            self.tracker.check_prompts(inference_state)
        return self.track_frame(inference_state, self.add_frame(inference_state, frame))

    # ------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def add_new_points_or_box(
        self,
        inference_state: InferenceSession,
        frame_idx: int,
        obj_id: Hashable,
        points: Any = None,
        labels: Any = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Any = None,
    ) -> tuple[int, list, Tensor]:
        """Add clicks and/or a box for an object on a frame; returns that frame's masks.

        A click on a tracked frame is a correction (see `samkit.video.corrections` for what it
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
                lengths that differ, no points and no box, a box with clear_old_points=False
                or with x1 < x0 or y1 < y0,
                non-finite coordinates, an object id removed with `remove_object` or not
                hashable. The state is then unchanged.
        """
        return corrections.add_points(
            self.tracker,
            inference_state,
            frame_idx,
            obj_id,
            points,
            labels,
            clear_old_points,
            normalize_coords,
            box,
        )

    @torch.inference_mode()
    def add_new_mask(
        self, inference_state: InferenceSession, frame_idx: int, obj_id: Hashable, mask: Any
    ) -> tuple[int, list, Tensor]:
        """Add a mask prompt (HxW bool, video size or 256x256) for an object on a frame.

        Returns:
            As `add_new_points_or_box`.

        Raises:
            ValueError: frame outside the video, a mask that is not 2-D of the video's size or
                256x256, an object id removed with `remove_object` or not hashable. The state
                is then unchanged.
        """
        return corrections.add_mask(self.tracker, inference_state, frame_idx, obj_id, mask)

    @torch.inference_mode()
    def clear_all_prompts_in_frame(
        self,
        inference_state: InferenceSession,
        frame_idx: int,
        obj_id: Hashable,
        need_output: bool = True,
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
        return objects.clear_prompts_in_frame(
            self.tracker, inference_state, frame_idx, obj_id, need_output
        )

    @torch.inference_mode()
    def remove_object(
        self,
        inference_state: InferenceSession,
        obj_id: Hashable,
        strict: bool = False,
        need_output: bool = True,
    ) -> tuple[list, list[tuple[int, Tensor]]]:
        """Remove an object; returns (remaining obj_ids, [(frame_idx, Ox1xHxW masks) of its
        prompted frames]). Its id is refused from then on (until `reset_state`).

        Raises:
            ValueError: with `strict`, an unknown id (without it, unknown ids are ignored);
                the state is then unchanged.
        """
        return objects.remove_object(self.tracker, inference_state, obj_id, strict, need_output)

    def get_object_scores(
        self, inference_state: InferenceSession, frame_idx: int
    ) -> dict[Hashable, float | None]:
        """Object id -> the object score logit (> 0: present) stored for a frame, None where
        the object has no output there (not tracked yet, or no longer kept)."""
        out: dict[Hashable, float | None] = {}
        for obj in inference_state.objects:
            o = obj.output(frame_idx, True)
            out[obj.obj_id] = None if o is None else float(o.object_score_logits.flatten()[0])
        return out
