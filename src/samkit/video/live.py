"""Live tracking (frames arriving one at a time) for `Sam2VideoPredictor`."""

from __future__ import annotations

from typing import Any

import torch

from samkit.video import state as st

State = dict[str, Any]


class LiveTracking:
    """`add_frame`, `track_frame` and `track_new_frame` (mixed into `Sam2VideoPredictor`)."""

    @torch.inference_mode()
    def add_frame(self, inference_state: State, frame: Any) -> int:
        """Append a frame (HxWx3 uint8 array or PIL image) to a live state; returns its index.

        Raises:
            ValueError: the state's video is not live, or the frame is malformed / of another
                size than the first frame.
        """
        s = inference_state
        src = s["images"]
        if not s["is_live"] or not hasattr(src, "append"):
            raise ValueError(
                "add_frame needs a live state: init_state on an iterator or LiveFrames"
            )
        idx = src.append(frame)
        st.refresh_frames(s)
        return idx

    @torch.inference_mode()
    def track_frame(self, inference_state: State, frame_idx: int | None = None) -> tuple:
        """Track the objects prompted so far on a live frame (default: the newest).

        Frame by frame in order this equals `propagate_in_video` over the same frames with the
        same prompts, for videos of at least `max_obj_ptrs_in_encoder` (16) frames (the live
        pointer window cannot depend on the unknown video length). Objects without a prompt
        up to this frame get -1024 logits. Memory stays constant (see `samkit.video.state`).

        Returns:
            (frame_idx, obj_ids, Ox1xHxW video-res logits).

        Raises:
            ValueError: no frame yet, a frame that has not arrived, or no prompt yet.
        """
        s = inference_state
        st.refresh_frames(s)
        if frame_idx is None:
            if s["num_frames"] == 0:
                raise ValueError(
                    "track_frame: no frame has arrived yet; add_frame(state, frame) first "
                    "(or use track_new_frame(state, frame))"
                )
            frame_idx = s["num_frames"] - 1
        self._check_frame(s, frame_idx)
        self._preflight(s)
        n = max(s["num_frames"], self.model.max_obj_ptrs_in_encoder)
        return frame_idx, s["obj_ids"], self._track(s, frame_idx, False, n)

    def track_new_frame(self, inference_state: State, frame: Any) -> tuple:
        """`add_frame` then `track_frame` on it: (frame_idx, obj_ids, Ox1xHxW logits).

        Raises:
            ValueError: as `add_frame` and `track_frame`; the prompts are checked before the
                frame is added, so a refused call adds no frame.
        """
        if inference_state["is_live"]:
            self._check_prompts(inference_state)
        return self.track_frame(inference_state, self.add_frame(inference_state, frame))
