"""`Sam3VideoPredictor`: the official SAM 3 video request API on samkit's SAM 3 models.

Requests are the official dicts (`sam3.model.sam3_video_predictor.Sam3VideoPredictor`,
sam3 0.1.4): `{"type": "start_session", "resource_path": ...}` -> `{"session_id"}`;
`{"type": "add_prompt", "session_id", "frame_index", "text" | "bounding_boxes" +
"bounding_box_labels"}` -> `{"frame_index", "outputs"}`; `reset_session` / `close_session` ->
`{"is_success": True}`. Outputs per frame: `out_obj_ids` (K,) int64 ascending, `out_probs` (K,),
`out_boxes_xywh` (K, 4) normalised by the video size, `out_binary_masks` (K, H, W) bool.

A text (or exemplar-box) prompt resets the session and runs one frame of the official
detector-tracker step (`Sam3VideoBase._det_track_one_frame`) on `frame_index`: with no tracks
yet, every detection scoring >= `new_det_thresh` starts an object (ids 0, 1, ... in query
order); its output mask is the detector's 288x288 logits, hole-filled (`fill_hole_area`),
upsampled to the video size and thresholded at 0. Propagation, clicks and object removal are
not implemented yet (issue #22): those requests raise NotImplementedError.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from samkit.modeling.sam3.sam3_image import Sam3Image
from samkit.video.sam3.detect import FrameDetector
from samkit.video.sam3.frames import load_frames
from samkit.video.sam3.postprocess import fill_holes_in_mask_scores, frame_outputs
from samkit.video.sam3.session import VISUAL_TEXT, Sam3Object, Sam3VideoSession

_NOT_YET = {"propagate_in_video", "remove_object"}
_REQUESTS = {"start_session", "add_prompt", "reset_session", "close_session"} | _NOT_YET


@dataclass(frozen=True)
class Sam3VideoSettings:
    """The detector-tracker heuristics (official `build_sam3_video_model` values by default)."""

    score_threshold_detection: float = 0.5
    det_nms_thresh: float = 0.1
    new_det_thresh: float = 0.7
    assoc_iou_thresh: float = 0.1
    trk_assoc_iou_thresh: float = 0.5
    fill_hole_area: int = 16


class Sam3VideoPredictor:
    """SAM 3 concept tracking in videos through official requests.

    Args:
        model: a `Sam3Image` with segmentation head and tracker heads (the detector).
        settings: thresholds and heuristics (`Sam3VideoSettings`).
    """

    def __init__(self, model: Sam3Image, settings: Sam3VideoSettings | None = None) -> None:
        self.model = model
        self.settings = settings or Sam3VideoSettings()
        s = self.settings
        self.detector = FrameDetector(model, s.score_threshold_detection, s.det_nms_thresh)
        self._sessions: dict[str, Sam3VideoSession] = {}

    # ------------------------------------------------------------------ requests
    def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one official request dict (see the module doc).

        Raises:
            ValueError: unknown request type, unknown session, bad arguments.
            NotImplementedError: propagation, clicks and removal (not implemented yet).
        """
        if not isinstance(request, dict) or "type" not in request:
            raise ValueError("a request must be a dict with a 'type'")
        kind = request["type"]
        if kind not in _REQUESTS:
            raise ValueError(f"unknown request type {kind!r}; expected one of {sorted(_REQUESTS)}")
        args = {k: v for k, v in request.items() if k != "type"}
        if kind in _NOT_YET:
            raise NotImplementedError(f"SAM 3 video {kind} is not implemented in samkit yet")
        return getattr(self, kind)(**args)

    def handle_stream_request(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Streaming requests (propagation); not implemented yet."""
        raise NotImplementedError("SAM 3 video propagate_in_video is not implemented yet")

    def start_session(self, resource_path: Any, session_id: str | None = None) -> dict[str, str]:
        """Load a frame folder (or a list of frames) and open a session."""
        if session_id is None:
            session_id = str(uuid.uuid4())
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"session_id must be a non-empty string, got {session_id!r}")
        if session_id in self._sessions:
            raise ValueError(f"session {session_id!r} already exists")
        frames = load_frames(resource_path, self.model.image_size)
        self._sessions[session_id] = Sam3VideoSession(session_id, frames)
        return {"session_id": session_id}

    def add_prompt(
        self,
        session_id: str,
        frame_index: int,
        text: str | None = None,
        points: list | None = None,
        point_labels: list | None = None,
        bounding_boxes: list | None = None,
        bounding_box_labels: list | None = None,
        obj_id: int | None = None,
    ) -> dict[str, Any]:
        """A text prompt on a frame: reset, detect, start objects; returns that frame's outputs."""
        s = self._session(session_id)
        f = s.check_frame(frame_index)
        if points is not None or obj_id is not None:
            raise NotImplementedError("SAM 3 video click prompts are not implemented yet")
        if bounding_boxes is not None:
            raise NotImplementedError("SAM 3 video exemplar boxes are not implemented yet")
        if text is None:
            raise ValueError("add_prompt needs a text (or bounding_boxes / points)")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text must be a non-empty string, got {text!r}")
        s.reset()
        s.text = text
        with torch.inference_mode():
            s.outputs[f] = self._detect_and_start(s, f)
        return {"frame_index": f, "outputs": s.outputs[f]}

    def reset_session(self, session_id: str) -> dict[str, bool]:
        self._session(session_id).reset()
        return {"is_success": True}

    def close_session(self, session_id: str) -> dict[str, bool]:
        self._session(session_id)
        del self._sessions[session_id]
        return {"is_success": True}

    # ------------------------------------------------------------------ the frame step
    def _session(self, session_id: Any) -> Sam3VideoSession:
        if session_id not in self._sessions:
            raise ValueError(
                f"unknown session {session_id!r}; open one with start_session "
                f"(open: {sorted(self._sessions)})"
            )
        return self._sessions[session_id]

    def _detect_and_start(self, s: Sam3VideoSession, f: int) -> dict[str, np.ndarray]:
        """Detection on frame f of a session without tracks: every detection scoring >=
        `new_det_thresh` starts an object; the frame's outputs."""
        st = self.settings
        det = self.detector.detect(s.frames.images[f], s.text or VISUAL_TEXT, None)
        new = [i for i, p in enumerate(det.scores.tolist()) if p >= st.new_det_thresh]
        ids, scores = [], []
        for i in new:
            s.max_obj_id += 1
            obj = Sam3Object(s.max_obj_id, float(det.scores[i]), f)
            obj.cond_masks[f] = det.mask_logits[i].clone()
            s.objects[obj.obj_id] = obj
            ids.append(obj.obj_id)
            scores.append(obj.score)
        low = det.mask_logits[new].float()[:, None]
        low = fill_holes_in_mask_scores(low, st.fill_hole_area)[:, 0]
        hw = (s.frames.video_height, s.frames.video_width)
        return frame_outputs(ids, low, scores, scores, hw)
