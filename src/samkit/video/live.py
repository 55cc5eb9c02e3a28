"""Live tracking (frames arriving one at a time): `add_frame` and `track_frame` of a session."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from samkit.video.session import InferenceSession
from samkit.video.tracker import Sam2Tracker


def add_frame(s: InferenceSession, frame: Any) -> int:
    """`Sam2VideoPredictor.add_frame` (arguments, returns and errors there)."""
    src = s.frames
    if not s.is_live or not hasattr(src, "append"):
        raise ValueError("add_frame needs a live state: init_state on an iterator or LiveFrames")
    idx = src.append(frame)
    s.refresh()
    return idx


def track_frame(
    tracker: Sam2Tracker, s: InferenceSession, frame_idx: int | None
) -> tuple[int, list, Tensor]:
    """`Sam2VideoPredictor.track_frame` (arguments, returns and errors there)."""
    s.refresh()
    if frame_idx is None:
        if s.num_frames == 0:
            raise ValueError(
                "track_frame: no frame has arrived yet; add_frame(state, frame) first "
                "(or use track_new_frame(state, frame))"
            )
        frame_idx = s.num_frames - 1
    tracker.check_frame(s, frame_idx)
    tracker.preflight(s)
    # the pointer window of a live video cannot depend on its unknown length
    n = max(s.num_frames, tracker.model.max_obj_ptrs_in_encoder)
    return frame_idx, s.obj_ids, tracker.track(s, frame_idx, False, n)
