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

Clicks: `add_prompt` with `points` ((N, 2) `[x, y]` normalised by the video width / height),
`point_labels` (N values 1 / 0) and `obj_id` (no `text` / `bounding_boxes`) refines a tracked
object on any frame, or starts a new object with that id (`samkit.video.sam3.clicks`), and
returns the frame's outputs with that object's new mask (the official
`add_tracker_new_points`). The next `propagate_in_video` is then **partial**: only the tracker
states of the clicked objects run (memory encoded as they go); the other objects' masks come
from the cached outputs. Unlike the official code (an assertion), a click on a frame without
outputs is allowed: the other objects then have none there.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from samkit.modeling.sam3.sam3_image import Sam3Image
from samkit.modeling.sam3.tracker import Sam3Tracker
from samkit.modeling.video_memory import FrameFeatures
from samkit.video.sam3 import clicks, history, tracking
from samkit.video.sam3.detect import FrameDetector
from samkit.video.sam3.frames import load_frames
from samkit.video.sam3.loop import FrameResult, LoopSettings, det_track_one_frame
from samkit.video.sam3.postprocess import (
    fill_holes_in_mask_scores,
    postprocess_output,
    video_res_binary,
)
from samkit.video.sam3.prompts import check_obj_id, click_prompt, exemplar_prompt
from samkit.video.sam3.session import Sam3VideoSession
from samkit.video.session import FEATURE_CACHE_FRAMES

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
            NotImplementedError: a frame where the official code would recondition a track
                from a high-confidence detection (not implemented).
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
        """A prompt on a frame; returns `{"frame_index", "outputs"}` of that frame.

        A text and / or exemplar box resets the session and runs the loop on that frame
        (official `Sam3VideoInference.add_prompt`). Clicks (`points` + `point_labels` +
        `obj_id`) refine object `obj_id` or start it (official `add_tracker_new_points`).

        Args:
            text: the concept (a non-empty string).
            points: (N, 2) `[x, y]` in [0, 1] (normalised by the video width / height);
                point_labels: N labels, 1 positive / 0 negative; obj_id: an int >= 0.
            bounding_boxes: exactly one `[x, y, w, h]` box normalised by the video width /
                height (the visual exemplar of that frame); bounding_box_labels: its label
                (1 positive, 0 negative).

        Raises:
            ValueError: unknown session, a frame outside the video, an empty text, no prompt,
                clicks mixed with text / boxes or without `obj_id`, malformed points or boxes.
        """
        s = self._session(session_id)
        f = s.check_frame(frame_index)
        if points is not None or point_labels is not None:
            if text is not None or bounding_boxes is not None:
                raise ValueError(
                    "add_prompt takes either points (+ point_labels, obj_id) or text / "
                    "bounding_boxes, not both"
                )
            if obj_id is None:
                raise ValueError("points need the obj_id of the object they refine or start")
            if points is None:
                raise ValueError("point_labels were given without points")
            oid = check_obj_id(obj_id)
            prompt = click_prompt(points, point_labels, self.tracker.image_size)
            with torch.inference_mode():
                return self._add_clicks(s, f, oid, prompt)
        if obj_id is not None:
            raise ValueError("obj_id is only used with points (clicks on that object)")
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
        if start_frame_index is None:
            history.processing_order(s, None, None, False)  # raises without any prompt
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
        if isinstance(obj_id, bool) or obj_id not in s.meta.obj_ids:
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
        self._keep_features(s, f, tracking.frame_features(det))
        result = det_track_one_frame(self.tracker, s, det, f, reverse, self.settings)
        s.frames_with_outputs.add(f)
        s.cached_masks[f] = dict(result.masks)
        return result

    def _postprocess(
        self, s: Sam3VideoSession, f: int, masks: dict, hidden: set[int]
    ) -> dict[str, np.ndarray]:
        hw = (s.frames.video_height, s.frames.video_width)
        return postprocess_output(masks, s.meta.score, s.meta.tracker_score[f], hw, hidden)

    def _features(self, s: Sam3VideoSession, f: int) -> FrameFeatures:
        """The tracker's features of frame `f`: cached, else from the backbone."""
        feats = s.features.get(f)
        if feats is None:
            fpn, pos = self.detector.tracker_features(s.frames.images[f])
            feats = FrameFeatures(fpn[2], pos, [fpn[0], fpn[1]])
            self._keep_features(s, f, feats)
        s.features.move_to_end(f)
        return feats

    def _keep_features(self, s: Sam3VideoSession, f: int, feats: FrameFeatures) -> None:
        s.features[f] = feats
        while len(s.features) > FEATURE_CACHE_FRAMES:
            s.features.popitem(last=False)

    def _add_clicks(self, s: Sam3VideoSession, f: int, obj_id: int, prompt: Any) -> dict[str, Any]:
        meta = s.meta
        feats = self._features(s, f)
        state = next((st for st in s.states if obj_id in st.obj_ids), None)
        if state is None:  # a new object in its own tracker state ("add")
            state = tracking.TrackerState([obj_id])
            s.states.append(state)
            meta.obj_ids.append(obj_id)
            meta.max_obj_id = max(meta.max_obj_id, obj_id)
            s.history.append(("add", f, [obj_id]))
        else:
            s.history.append(("refine", f, [obj_id]))
        meta.score[obj_id] = 1.0
        meta.tracker_score[f][obj_id] = 1.0
        meta.removed.discard(obj_id)
        for hidden in meta.suppressed.values():
            hidden.discard(obj_id)
        out = clicks.add_points(self.tracker, state, feats, f, obj_id, prompt, s.num_frames)
        hw = (s.frames.video_height, s.frames.video_width)
        mask = clicks.object_video_mask(out.pred_masks, hw, self.settings.fill_hole_area)
        clicks.consolidate(self.tracker, state, feats, f)
        clicks.clear_detector_frames(state, obj_id, f)
        masks = {**s.cached_masks.get(f, {}), obj_id: mask}
        hidden = set(meta.suppressed[f])
        s.cached_masks[f] = {o: m for o, m in masks.items() if o not in hidden}
        return {"frame_index": f, "outputs": self._postprocess(s, f, masks, hidden)}

    def _propagate(
        self, s: Sam3VideoSession, start: int | None, max_n: int | None, reverse: bool
    ) -> Iterator[dict[str, Any]]:
        kind, obj_ids = history.propagation_type(s)
        s.history.append((kind, start, obj_ids))
        order, end = history.processing_order(s, start, max_n, reverse)
        if kind == history.FETCH:
            for f in order:
                masks = s.cached_masks.get(f, {})
                outputs = self._postprocess(s, f, masks, set(s.meta.suppressed[f]))
                yield {"frame_index": f, "outputs": outputs}
        elif kind == history.PARTIAL:
            yield from self._propagate_partial(s, order, reverse, obj_ids or [])
        else:
            yield from self._propagate_full(s, order, end, reverse)

    def _propagate_partial(
        self, s: Sam3VideoSession, order: list[int], reverse: bool, obj_ids: list[int]
    ) -> Iterator[dict[str, Any]]:
        """Track only the states holding `obj_ids`; their masks replace the cached ones
        (official partial propagation; the tracker score kept is the object-score logit)."""
        states = [st for st in s.states if set(obj_ids) & set(st.obj_ids)]
        hw = (s.frames.video_height, s.frames.video_width)
        meta = s.meta
        for f in order:
            feats = self._features(s, f)
            ids, lows, scores = [], [], []
            for st in states:
                low, sc = tracking.propagate(
                    self.tracker, st, feats, f, s.num_frames, reverse, run_mem_encoder=True
                )
                ids += st.obj_ids
                lows.append(low)
                scores.append(sc)
            masks = dict(s.cached_masks.get(f, {}))
            if ids:
                low = torch.cat(lows)[:, None]
                low = fill_holes_in_mask_scores(low, self.settings.fill_hole_area)[:, 0]
                score = torch.cat(scores)
                for o in obj_ids:
                    if o in ids:
                        i = ids.index(o)
                        meta.tracker_score[f][o] = float(score[i])
                        masks[o] = video_res_binary(low[i : i + 1], hw)[0]
            hidden = set(meta.suppressed[f])
            s.cached_masks[f] = {o: m for o, m in masks.items() if o not in hidden}
            yield {"frame_index": f, "outputs": self._postprocess(s, f, masks, hidden)}

    def _propagate_full(
        self, s: Sam3VideoSession, order: list[int], end: int, reverse: bool
    ) -> Iterator[dict[str, Any]]:
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
