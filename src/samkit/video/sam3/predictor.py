"""`Sam3VideoPredictor`: the official SAM 3 video request API on samkit's SAM 3 models.

Requests are the official dicts (`sam3.model.sam3_video_predictor.Sam3VideoPredictor`,
sam3 0.1.4): `start_session` (`resource_path`: a frame folder or a list of frames) ->
`{"session_id"}`; `add_prompt` (`session_id`, `frame_index`, `text`) -> `{"frame_index",
"outputs"}`; `propagate_in_video` (`propagation_direction` "both" / "forward" / "backward",
`start_frame_index`, `max_frame_num_to_track`) through `handle_stream_request`, yielding
`{"frame_index", "outputs"}` per frame; `remove_object` (`obj_id`), `reset_session`,
`close_session` -> `{"is_success": True}`. Outputs per frame: `out_obj_ids` (K,) int64
ascending, `out_probs` (K,), `out_boxes_xywh` (K, 4) normalised by the video size,
`out_binary_masks` (K, H, W) bool.

A text prompt resets the session and runs one frame of the detector-tracker loop
(`samkit.video.sam3.loop`) on `frame_index`. Propagation follows the official action history
(`Sam3VideoInferenceWithInstanceInteractivity.parse_action_history_for_propagation`): a full
pass (the loop on every frame) after a prompt, the other direction once when the first pass did
not start at an end of the video, then cached outputs ("fetch"). Outputs of a full pass are
returned after the last frame, as the official hotstart buffer does for clips shorter than
`hotstart_delay`. An exemplar box (`bounding_boxes` + `bounding_box_labels`, no text) makes the
detector read the text "visual" with the box on its frame; other frames get no new detections.
Not implemented yet (issue #22): clicks (points) and so partial propagation; they raise
NotImplementedError.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from samkit.modeling.sam3.sam3_image import GeometricPrompt, Sam3Image
from samkit.modeling.sam3.tracker import Sam3Tracker
from samkit.video.sam3 import tracking
from samkit.video.sam3.detect import FrameDetector
from samkit.video.sam3.frames import load_frames
from samkit.video.sam3.loop import FrameResult, LoopSettings, det_track_one_frame
from samkit.video.sam3.postprocess import postprocess_output
from samkit.video.sam3.session import Sam3VideoSession

_REQUESTS = (
    "start_session",
    "add_prompt",
    "propagate_in_video",
    "remove_object",
    "reset_session",
    "close_session",
)


@dataclasses.dataclass(frozen=True)
class Sam3VideoSettings(LoopSettings):
    """The detector thresholds and the loop's heuristics (official defaults)."""

    score_threshold_detection: float = 0.5
    det_nms_thresh: float = 0.1


class Sam3VideoPredictor:
    """SAM 3 concept tracking in videos through official requests.

    Args:
        model: a `Sam3Image` with segmentation head and tracker heads (the detector).
        tracker: the `Sam3Tracker` built from the same checkpoint.
        settings: thresholds and heuristics (`Sam3VideoSettings`).
    """

    def __init__(
        self, model: Sam3Image, tracker: Sam3Tracker, settings: Sam3VideoSettings | None = None
    ) -> None:
        self.model = model
        self.tracker = tracker
        self.settings = settings or Sam3VideoSettings()
        s = self.settings
        self.detector = FrameDetector(model, s.score_threshold_detection, s.det_nms_thresh)
        self._sessions: dict[str, Sam3VideoSession] = {}

    # ------------------------------------------------------------------ requests
    def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one official request dict (propagation: use `handle_stream_request`).

        Raises:
            ValueError: unknown request type, unknown session or object, bad arguments.
            NotImplementedError: clicks and exemplar boxes (not implemented yet).
        """
        kind, args = self._parse(request)
        if kind == "propagate_in_video":
            raise ValueError("propagate_in_video streams its frames: use handle_stream_request")
        return getattr(self, kind)(**args)

    def handle_stream_request(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Answer a `propagate_in_video` request, one `{"frame_index", "outputs"}` per frame."""
        kind, args = self._parse(request)
        if kind != "propagate_in_video":
            raise ValueError(f"handle_stream_request answers propagate_in_video, not {kind!r}")
        yield from self.propagate_in_video(**args)

    def _parse(self, request: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(request, dict) or "type" not in request:
            raise ValueError("a request must be a dict with a 'type'")
        kind = request["type"]
        if kind not in _REQUESTS:
            raise ValueError(f"unknown request type {kind!r}; expected one of {list(_REQUESTS)}")
        return kind, {k: v for k, v in request.items() if k != "type"}

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
        """A text and / or exemplar-box prompt on a frame: reset, run the loop on that frame,
        return its outputs (official `Sam3VideoInference.add_prompt`).

        Args:
            bounding_boxes: exactly one `[x, y, w, h]` box normalised by the video width /
                height (the visual exemplar of that frame); bounding_box_labels: its label
                (1 positive, 0 negative).
        """
        s = self._session(session_id)
        f = s.check_frame(frame_index)
        if points is not None or obj_id is not None:
            raise NotImplementedError("SAM 3 video click prompts are not implemented yet")
        if text is None and bounding_boxes is None:
            raise ValueError("add_prompt needs a text or bounding_boxes (or points with obj_id)")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ValueError(f"text must be a non-empty string, got {text!r}")
        prompt = None
        if bounding_boxes is not None:
            prompt = exemplar_prompt(bounding_boxes, bounding_box_labels)
        s.reset()
        s.text = None if text in (None, "visual") else text
        if prompt is not None:
            s.geometric_prompts[f] = prompt
        with torch.inference_mode():
            result = self._run_frame(s, f, reverse=False)
        return {"frame_index": f, "outputs": self._postprocess(s, f, result.masks, set())}

    def propagate_in_video(
        self,
        session_id: str,
        propagation_direction: str = "both",
        start_frame_index: int | None = None,
        max_frame_num_to_track: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Track through the video (official `Sam3VideoPredictor.propagate_in_video`)."""
        s = self._session(session_id)
        if propagation_direction not in ("both", "forward", "backward"):
            raise ValueError(
                f"propagation_direction must be 'both', 'forward' or 'backward', got "
                f"{propagation_direction!r}"
            )
        if start_frame_index is not None:
            start_frame_index = s.check_frame(start_frame_index, "start_frame_index")
        if max_frame_num_to_track is not None and (
            isinstance(max_frame_num_to_track, bool)
            or not isinstance(max_frame_num_to_track, int)
            or max_frame_num_to_track < 0
        ):
            raise ValueError(
                f"max_frame_num_to_track must be an int >= 0, got {max_frame_num_to_track!r}"
            )
        if not s.frames_with_outputs and start_frame_index is None:
            raise ValueError("add a prompt before propagate_in_video")
        for reverse in (False, True):
            if (propagation_direction == "forward" and reverse) or (
                propagation_direction == "backward" and not reverse
            ):
                continue
            with torch.inference_mode():
                yield from self._propagate(s, start_frame_index, max_frame_num_to_track, reverse)

    def remove_object(
        self, session_id: str, obj_id: int, is_user_action: bool = True
    ) -> dict[str, bool]:
        """Drop an object from its tracker state, the metadata and every cached frame."""
        s = self._session(session_id)
        if obj_id not in s.meta.obj_ids:
            raise ValueError(f"unknown object id {obj_id!r}; tracked: {s.meta.obj_ids}")
        tracking.remove_objects(s.states, {obj_id})
        if is_user_action:
            s.history.append(("remove", None, [obj_id]))
        s.meta.obj_ids = [o for o in s.meta.obj_ids if o != obj_id]
        s.meta.score.pop(obj_id, None)
        for masks in s.cached_masks.values():
            masks.pop(obj_id, None)
        return {"is_success": True}

    def reset_session(self, session_id: str) -> dict[str, bool]:
        self._session(session_id).reset()
        return {"is_success": True}

    def close_session(self, session_id: str) -> dict[str, bool]:
        self._session(session_id)
        del self._sessions[session_id]
        return {"is_success": True}

    # ------------------------------------------------------------------ internals
    def _session(self, session_id: Any) -> Sam3VideoSession:
        if session_id not in self._sessions:
            raise ValueError(
                f"unknown session {session_id!r}; open one with start_session "
                f"(open: {sorted(self._sessions)})"
            )
        return self._sessions[session_id]

    def _run_frame(self, s: Sam3VideoSession, f: int, reverse: bool) -> FrameResult:
        gp = s.geometric_prompts.get(f)
        allow = s.text is not None or gp is not None
        det = self.detector.detect(s.frames.images[f], s.detector_text, gp, allow)
        result = det_track_one_frame(self.tracker, s, det, f, reverse, self.settings)
        s.frames_with_outputs.add(f)
        s.cached_masks[f] = dict(result.masks)
        return result

    def _postprocess(
        self, s: Sam3VideoSession, f: int, masks: dict, hidden: set[int]
    ) -> dict[str, np.ndarray]:
        hw = (s.frames.video_height, s.frames.video_width)
        return postprocess_output(masks, s.meta.score, s.meta.tracker_score[f], hw, hidden)

    def _order(
        self, s: Sam3VideoSession, start: int | None, max_n: int | None, reverse: bool
    ) -> tuple[list[int], int]:
        """Frames of a pass (official `Sam3VideoInference._get_processing_order`)."""
        n = s.num_frames
        if start is None:
            start = min(s.frames_with_outputs)
        max_n = n if max_n is None else max_n
        if reverse:
            end = max(start - max_n, 0)
            return list(range(start - 1, end - 1, -1)), end
        end = min(start + max_n, n - 1)
        return list(range(start, end + 1)), end

    def _propagation_type(self, s: Sam3VideoSession) -> str:
        """Official `parse_action_history_for_propagation` (without click actions yet)."""
        h = s.history
        if not h:
            return "propagation_full"
        last = h[-1]
        if last[0] == "propagation_fetch":
            return "propagation_fetch"
        if last[0] in ("propagation_full", "propagation_partial"):
            twice = len(h) > 1 and h[-2][0] in ("propagation_full", "propagation_partial")
            if twice or last[1] in (0, s.num_frames - 1):
                return "propagation_fetch"
            return last[0]
        return "propagation_fetch"  # only removals since the last propagation

    def _propagate(
        self, s: Sam3VideoSession, start: int | None, max_n: int | None, reverse: bool
    ) -> Iterator[dict[str, Any]]:
        kind = self._propagation_type(s)
        s.history.append((kind, start, None))
        order, end = self._order(s, start, max_n, reverse)
        if kind == "propagation_fetch":
            for f in order:
                masks = s.cached_masks.get(f, {})
                outputs = self._postprocess(s, f, masks, set(s.meta.suppressed[f]))
                yield {"frame_index": f, "outputs": outputs}
            return
        buffer: list[tuple[int, FrameResult]] = []
        removed: set[int] = set()
        for f in order:
            result = self._run_frame(s, f, reverse)
            buffer.append((f, result))
            removed |= result.removed
            if f == end:
                ready, buffer = buffer, []
            elif len(buffer) >= self.settings.hotstart_delay:
                ready, buffer = buffer[:1], buffer[1:]
            else:
                ready = []
            for g, r in ready:
                hidden = removed | r.suppressed
                outputs = self._postprocess(s, g, r.masks, hidden)
                s.cached_masks[g] = {o: m for o, m in r.masks.items() if o not in hidden}
                yield {"frame_index": g, "outputs": outputs}


def exemplar_prompt(boxes: Any, labels: Any) -> GeometricPrompt:
    """The detector prompt of one exemplar box (official `_get_visual_prompt`: `[x, y, w, h]`
    normalised -> cx, cy, w, h; exactly one box on a frame without outputs).

    Raises:
        ValueError: not one box of 4 numbers in [0, 1] with one 0 / 1 label.
    """
    try:
        b = torch.as_tensor(boxes, dtype=torch.float32)
        lab = torch.as_tensor(labels, dtype=torch.long) if labels is not None else None
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"bounding_boxes must be [[x, y, w, h]] numbers: {e}") from e
    if b.dim() != 2 or b.shape[-1] != 4 or b.shape[0] != 1:
        raise ValueError(
            "bounding_boxes must hold exactly one [x, y, w, h] box (the visual exemplar), got "
            f"shape {tuple(b.shape)}"
        )
    if lab is None or lab.shape != (1,) or int(lab[0]) not in (0, 1):
        raise ValueError(f"bounding_box_labels must be one label 0 or 1, got {labels!r}")
    cxcywh = torch.cat([b[:, :2] + b[:, 2:] / 2, b[:, 2:]], dim=1)
    if not torch.isfinite(b).all() or (b < 0).any() or (b > 1).any() or (cxcywh > 1).any():
        raise ValueError(f"a box must lie in [0, 1] (normalised by the video size), got {boxes}")
    return GeometricPrompt.empty(1).with_boxes(cxcywh[None], lab[None].bool())
