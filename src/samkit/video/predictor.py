"""`Sam2VideoPredictor`: the official SAM 2 video predictor API on samkit's `Sam2Video`.

Call for call like the official `sam2` 1.1.0 `SAM2VideoPredictor` (December 2024: objects can
be added on any frame, also after tracking began; each object keeps its own memory), with the
same numbers (memory features stored in bfloat16 and used in float32, -1024 logits on frames
where the object is absent, dynamic multimask on single-click frames). Differences: a
correction on a tracked frame becomes a conditioning frame by default
(`add_all_frames_to_correct_as_cond=True`; the official default False recomputes it at the
next propagation: see `samkit.video.corrections`), an object whose prompts were all removed
starts over on its next prompt, a call that raises leaves the state unchanged, frames are
decoded lazily, only recent outputs are kept (see `samkit.video.state`), frames can arrive live
(`add_frame` / `track_frame` / `track_new_frame`), and bad input is a `ValueError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.modeling.sam2_video import Sam2Video
from samkit.video import state as st
from samkit.video.corrections import PromptAdding
from samkit.video.live import LiveTracking
from samkit.video.objects import ObjectEditing
from samkit.video.outputs import fill_holes_in_mask_scores, video_res

State = dict[str, Any]


class Sam2VideoPredictor(PromptAdding, ObjectEditing, LiveTracking):
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
        self.model = model.eval()
        self.fill_hole_area = int(fill_hole_area)
        self.non_overlap_masks = non_overlap_masks
        self.clear_non_cond_mem_around_input = clear_non_cond_mem_around_input
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond

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
    ) -> State:
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
            The state dict (`num_frames`, `video_height`, `video_width`, `obj_ids` readable).
        """
        from samkit.video.frames.folder import VideoFrames
        from samkit.video.frames.sources import open_video

        frames = video_path  # any object with the VideoFrames interface is used as is
        if isinstance(video_path, VideoFrames) or not hasattr(video_path, "video_height"):
            frames = open_video(video_path, self.image_size)  # checks a VideoFrames' input size
        state = st.new_state(frames, self.device, offload_video_to_cpu, offload_state_to_cpu)
        if len(frames):
            self._image_features(state, 0, 1)  # warm up on frame 0, as the official predictor
        return state

    @torch.inference_mode()
    def reset_state(self, inference_state: State) -> None:
        """Remove every object, prompt and output (frames and cached features stay)."""
        s = inference_state
        for key in ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj"):
            s[key].clear()
        for key in ("temp_output_dict_per_obj", "frames_tracked_per_obj", "removed_obj_ids"):
            s[key].clear()
        s["obj_id_to_idx"].clear()
        s["obj_idx_to_id"].clear()
        s["obj_ids"] = []

    # ------------------------------------------------------------------ tracking
    @torch.inference_mode()
    def propagate_in_video(
        self,
        inference_state: State,
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
        s = inference_state
        st.refresh_frames(s)
        self._check_prompts(s)
        num_frames = s["num_frames"]
        if start_frame_idx is None:
            start_frame_idx = min(
                t
                for i in range(len(s["obj_ids"]))
                for d in (s["output_dict_per_obj"][i], s["temp_output_dict_per_obj"][i])
                for t in d["cond_frame_outputs"]
            )
        self._check_frame(s, start_frame_idx)
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
        self._preflight(s)
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + max_frame_num_to_track, num_frames - 1)
            order = range(start_frame_idx, end + 1)
        for frame_idx in order:
            yield frame_idx, s["obj_ids"], self._track(s, frame_idx, reverse, num_frames)

    def _check_prompts(self, s: State) -> None:
        """ValueError unless every object has a conditioning frame (changes nothing)."""
        if not s["obj_ids"]:
            raise ValueError("no prompts yet: add points, a box or a mask before propagating")
        for idx in range(len(s["obj_ids"])):
            if not st.has_conditioning(s, idx):
                raise ValueError(
                    f"object id {s['obj_idx_to_id'][idx]!r} has no prompts; add points, a box "
                    "or a mask for it (or remove it) before propagating"
                )

    def _preflight(self, s: State) -> None:
        """Encode the memories of the frames prompted since the last propagation and store
        them (official `propagate_in_video_preflight`); all encoding precedes any change."""
        self._check_prompts(s)
        n_obj = len(s["obj_ids"])
        memories = []
        for idx in range(n_obj):
            for out_t in s["temp_output_dict_per_obj"][idx].values():
                for t, out in out_t.items():
                    if out["maskmem_features"] is None:
                        high = F.interpolate(
                            out["pred_masks"].to(s["device"]),
                            size=(self.image_size, self.image_size),
                            mode="bilinear",
                            align_corners=False,
                        )
                        feats = self._image_features(s, t, 1)
                        mem, pos = self.model.encode_new_memory(
                            feats["image_embed"], high, out["object_score_logits"], True
                        )
                        memories.append((out, mem, pos))
        for out, mem, pos in memories:
            out["maskmem_features"] = self._store_memory(s, mem)
            out["maskmem_pos_enc"] = self._pos_constant(s, pos)
        for idx in range(n_obj):
            out_dict = s["output_dict_per_obj"][idx]
            temp = s["temp_output_dict_per_obj"][idx]
            for key in ("non_cond_frame_outputs", "cond_frame_outputs"):
                for t, out in temp[key].items():
                    out_dict[key][t] = out
                    if self.clear_non_cond_mem_around_input:
                        self._clear_around(s, t, idx)
                temp[key].clear()
            for t in out_dict["cond_frame_outputs"]:
                out_dict["non_cond_frame_outputs"].pop(t, None)

    def _track(self, s: State, frame_idx: int, reverse: bool, num_frames: int) -> Tensor:
        """Track all objects on one frame (prompted objects reuse their stored output)."""
        per_obj = []
        for idx in range(len(s["obj_ids"])):
            out_dict = s["output_dict_per_obj"][idx]
            cond = out_dict["cond_frame_outputs"].get(frame_idx)
            if cond is not None:
                masks = cond["pred_masks"].to(s["device"])
                if self.clear_non_cond_mem_around_input:
                    self._clear_around(s, frame_idx, idx)
            else:
                out, masks = self._run_frame(
                    s, out_dict, frame_idx, 1, False, None, None, reverse, True, None, num_frames
                )
                out_dict["non_cond_frame_outputs"][frame_idx] = out
            s["frames_tracked_per_obj"][idx][frame_idx] = reverse
            per_obj.append(masks)
        st.prune_outputs(s, frame_idx, st.memory_window(self.model))
        return video_res(s, self.non_overlap_masks, torch.cat(per_obj, dim=0))

    # ------------------------------------------------------------------ internals
    def _check_frame(self, s: State, frame_idx: Any) -> None:
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise ValueError(f"frame_idx must be an int, got {type(frame_idx).__name__}")
        st.refresh_frames(s)
        if s["is_live"] and frame_idx >= s["num_frames"]:
            s["images"][frame_idx]  # an iterator source pulls up to the frame (or says it ended)
            st.refresh_frames(s)
        n = s["num_frames"]
        if not 0 <= frame_idx < n:
            raise ValueError(f"frame_idx {frame_idx} is outside the video (frames 0..{n - 1})")

    def _image_features(self, s: State, frame_idx: int, batch: int) -> dict[str, Any]:
        return st.frame_features(self.model, s, frame_idx, batch)

    def _run_frame(
        self,
        s: State,
        out_dict: dict,
        frame_idx: int,
        batch: int,
        is_init: bool,
        points: dict | None,
        mask: Tensor | None,
        reverse: bool,
        run_mem_encoder: bool,
        prev_logits: Tensor | None,
        num_frames: int | None = None,
    ) -> tuple[dict[str, Any], Tensor]:
        feats = self._image_features(s, frame_idx, batch)
        if num_frames is None:
            num_frames = s["num_frames"]
            if s["is_live"]:
                num_frames = max(num_frames, self.model.max_obj_ptrs_in_encoder)
        out = self.model.track_step(
            frame_idx,
            is_init,
            feats,
            points,
            mask,
            out_dict,
            num_frames,
            track_in_reverse=reverse,
            run_mem_encoder=run_mem_encoder,
            prev_sam_mask_logits=prev_logits,
        )
        masks = out["pred_masks"]
        if self.fill_hole_area > 0:
            masks = fill_holes_in_mask_scores(masks, self.fill_hole_area)
        mem = out["maskmem_features"]
        compact = {
            "maskmem_features": None if mem is None else self._store_memory(s, mem),
            "maskmem_pos_enc": None
            if out["maskmem_pos_enc"] is None
            else self._pos_constant(s, out["maskmem_pos_enc"]),
            "pred_masks": masks.to(s["storage_device"]),
            "obj_ptr": out["obj_ptr"],
            "object_score_logits": out["object_score_logits"],
        }
        return compact, masks

    def _store_memory(self, s: State, mem: Tensor) -> Tensor:
        # the official predictor stores memories in bfloat16; they are used in float32
        return mem.to(torch.bfloat16).to(s["storage_device"])

    def _pos_constant(self, s: State, pos: Tensor) -> Tensor:
        const = s["constants"].get("maskmem_pos_enc")
        if const is None:
            const = pos[:1].clone()
            s["constants"]["maskmem_pos_enc"] = const
        return const.expand(pos.shape[0], -1, -1, -1)

    def _clear_around(self, s: State, frame_idx: int, idx: int) -> None:
        r = self.model.memory_temporal_stride_for_eval * self.model.num_maskmem
        non_cond = s["output_dict_per_obj"][idx]["non_cond_frame_outputs"]
        for t in range(frame_idx - r, frame_idx + r + 1):
            non_cond.pop(t, None)
