"""`Sam3VideoPredictor`: the official SAM 3 video request API on samkit's SAM 3 models.

Requests are the official dicts (`sam3.model.sam3_video_predictor.Sam3VideoPredictor`,
sam3 0.1.4): `start_session` (`resource_path`: a frame folder, a video file, a list of frames,
an iterator of frames or a `samkit.video.frames.live.LiveFrames`) ->
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

Live frames: a session on an iterator (pulled as needed) or on a `LiveFrames(image_size=1008)`
(its owner appends frames) has `num_frames` = the frames arrived so far. After a text / box
prompt, `propagate_in_video` (forward or both) opens a forward pass that runs the loop on the
frames that have arrived and returns the outputs the hotstart delay releases; each later
`propagate_in_video` continues it over the new frames, and once the source is closed (or the
iterator ends, or `max_frame_num_to_track` frames ran) the held-back outputs follow. The outputs
equal `propagate_in_video` over the same frames of a video of at least
`max_obj_ptrs_in_encoder` (16) frames (shorter videos scale the tracker's pointer positions by
their length, which a live stream does not know). A `LiveFrames` holds only its last
`cache_frames` frames: run `propagate_in_video` before more than that many arrive unprocessed.
Prompts may be added on any arrived frame the source still holds: a text / box prompt restarts the pass there; clicks answer as on a video
and the open pass goes on with the loop (all objects, detections) on the next frames.

Memory is bounded (`samkit.video.sam3.engine`): frames are decoded when used, tracked outputs
are dropped once no later frame of the pass (or of its other direction) can attend to them,
and cached outputs are run-length encoded; the `max_output_frames` setting keeps only the last
frames' outputs, and a live session keeps only its last `live_output_frames` (300) by default (a
request that needs a dropped frame's outputs raises a ValueError).
"""

from __future__ import annotations

import dataclasses
import inspect
import uuid
from collections.abc import Iterator
from typing import Any

import torch

from samkit.configs.sam3_thresholds import check_score_threshold, check_video_thresholds
from samkit.modeling.sam3.sam3_image import Sam3Image
from samkit.modeling.sam3.tracker import Sam3Tracker
from samkit.video.sam3 import history
from samkit.video.sam3.detect import FrameDetector
from samkit.video.sam3.engine import Sam3VideoEngine
from samkit.video.sam3.frames import load_frames
from samkit.video.sam3.loop import LoopSettings
from samkit.video.sam3.outputs import OutputCache
from samkit.video.sam3.prompts import check_obj_id, click_prompt, exemplar_prompt
from samkit.video.sam3.session import Sam3VideoSession

_REQUESTS = (
    "start_session",
    "add_prompt",
    "propagate_in_video",
    "remove_object",
    "reset_session",
    "close_session",
)


LIVE_OUTPUT_FRAMES = 300  # a live session's cached outputs by default: 10 s at 30 frames/s


@dataclasses.dataclass(frozen=True)
class Sam3VideoSettings(LoopSettings):
    """The detector thresholds and the loop's heuristics (official defaults), and samkit's
    bounds on the cached outputs (run-length encoded masks, a few KB per object and frame):
    `max_output_frames` keeps those of only the most recently written this many frames in every
    session (None: every frame, as the official session does); `live_output_frames` is the
    bound of a live session (an iterator or `LiveFrames` source, whose length has no end) when
    `max_output_frames` is None: by default the last `LIVE_OUTPUT_FRAMES` (300) frames, so that
    a stream runs in bounded memory; None keeps every frame of a stream too. Clicks on a frame
    whose outputs were dropped raise a ValueError saying so.

    Raises:
        ValueError: a detection score threshold (`score_threshold_detection`,
            `new_det_thresh`) not strictly between 0 and 1, or a mask-IoU threshold
            (`det_nms_thresh`, `*_iou_thresh`) outside [0, 1]
            (`samkit.configs.sam3_thresholds.check_video_thresholds`)."""

    score_threshold_detection: float = 0.5
    det_nms_thresh: float = 0.1
    max_output_frames: int | None = None
    live_output_frames: int | None = LIVE_OUTPUT_FRAMES

    def __post_init__(self) -> None:
        check_video_thresholds(self)


class Sam3VideoPredictor:
    """SAM 3 concept tracking in videos through official requests.

    Args:
        model: a `Sam3Image` with segmentation head and tracker heads (the detector); None
            with `detector`.
        tracker: the `Sam3Tracker` built from the same checkpoint.
        settings: thresholds and heuristics (`Sam3VideoSettings`).
        detector: what runs on a frame (default: a `FrameDetector` on `model`); it needs
            `detect`, `tracker_features` and `image_size` as `FrameDetector` has them.
    """

    def __init__(
        self,
        model: Sam3Image | None,
        tracker: Sam3Tracker,
        settings: Sam3VideoSettings | None = None,
        detector: Any = None,
    ) -> None:
        self.model = model
        self.tracker = tracker
        self.settings = settings or Sam3VideoSettings()
        s = self.settings
        if detector is None:
            if model is None:
                raise ValueError("Sam3VideoPredictor needs a model or a detector")
            detector = FrameDetector(model, s.score_threshold_detection, s.det_nms_thresh)
        OutputCache(s.max_output_frames)  # checks the settings
        OutputCache(s.live_output_frames, "live_output_frames")
        self.detector = detector
        self.engine = Sam3VideoEngine(tracker, detector, s)
        self._sessions: dict[str, Sam3VideoSession] = {}

    # ------------------------------------------------------------------ requests
    def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one official request dict (propagation: use `handle_stream_request`).

        Raises:
            ValueError: unknown request type, unknown session or object, bad arguments.
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
        args = {k: v for k, v in request.items() if k != "type"}
        params = inspect.signature(getattr(self, kind)).parameters
        unknown = sorted(set(args) - set(params))
        if unknown:
            raise ValueError(f"{kind} has no field(s) {unknown}; its fields: {list(params)}")
        missing = [
            n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in args
        ]
        if missing:
            raise ValueError(f"{kind} needs the field(s) {missing}")
        return kind, args

    def start_session(
        self,
        resource_path: Any,
        session_id: str | None = None,
        score_threshold_detection: float | None = None,
        new_det_thresh: float | None = None,
    ) -> dict[str, str]:
        """Open a session on a video: a frame folder, a video file, a list of PIL images /
        HxWx3 uint8 arrays, an iterator of frames or a `LiveFrames` (live: see the module doc).

        `score_threshold_detection` / `new_det_thresh` (samkit, not official fields): this
        session's detection and new-object thresholds, numbers strictly between 0 and 1 (the
        rule of every SAM 3 threshold: `samkit.configs.sam3_thresholds`); None keeps the
        predictor's settings.

        Raises:
            ValueError: an unreadable or empty video, a bad or duplicate session id, a
                threshold that is not a number strictly between 0 and 1.
        """
        thresholds = {
            name: _check_probability(value, name)
            for name, value in (
                ("score_threshold_detection", score_threshold_detection),
                ("new_det_thresh", new_det_thresh),
            )
        }
        if session_id is None:
            session_id = str(uuid.uuid4())
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"session_id must be a non-empty string, got {session_id!r}")
        if session_id in self._sessions:
            raise ValueError(f"session {session_id!r} already exists")
        frames = load_frames(resource_path, self.detector.image_size)
        s = Sam3VideoSession(session_id, frames, cached_masks=self._output_cache(frames.is_live))
        s.score_threshold = thresholds["score_threshold_detection"]
        s.new_det_thresh = thresholds["new_det_thresh"]
        if frames.is_live:  # the pointer window cannot depend on an unknown length
            s.min_track_len = self.tracker.max_obj_ptrs_in_encoder
        self._sessions[session_id] = s
        return {"session_id": session_id}

    def _output_cache(self, live: bool) -> OutputCache:
        """The cached outputs of a new session (`Sam3VideoSettings` says which bound)."""
        bound = self.settings.max_output_frames
        if bound is None and live:
            bound = self.settings.live_output_frames
        return OutputCache(bound)

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
                return {"frame_index": f, "outputs": self.engine.add_clicks(s, f, oid, prompt)}
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
            result = self.engine.run_frame(s, f, False, f)
        return {"frame_index": f, "outputs": self.engine.postprocess(s, f, result.masks, set())}

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
        if s.live_pass is not None:
            if propagation_direction == "backward":
                raise ValueError(
                    "this live session's forward pass is still open: propagate backward once "
                    "its source is closed (LiveFrames.close())"
                )
            with torch.inference_mode():  # a live pass continues over the new frames
                yield from self.engine.live(s)
            return
        if start_frame_index is None:
            history.processing_order(s, None, None, False)  # raises without any prompt
        for reverse in (False, True):
            if (propagation_direction == "forward" and reverse) or (
                propagation_direction == "backward" and not reverse
            ):
                continue
            if reverse and s.live_pass is not None:
                return  # a live session's forward pass waits for frames: no backward part
            with torch.inference_mode():
                yield from self.engine.propagate(
                    s, start_frame_index, max_frame_num_to_track, reverse
                )

    def remove_object(
        self, session_id: str, obj_id: int, is_user_action: bool = True
    ) -> dict[str, bool]:
        """Drop an object from its tracker state, the metadata and every cached frame."""
        s = self._session(session_id)
        if isinstance(obj_id, bool) or obj_id not in s.meta.obj_ids:
            raise ValueError(f"unknown object id {obj_id!r}; tracked: {s.meta.obj_ids}")
        self.engine.remove_object(s, obj_id, is_user_action)
        return {"is_success": True}

    def reset_session(self, session_id: str) -> dict[str, bool]:
        self._session(session_id).reset()
        return {"is_success": True}

    def close_session(self, session_id: str) -> dict[str, bool]:
        self._session(session_id)
        del self._sessions[session_id]
        return {"is_success": True}

    def best_detection_score(self, session_id: str) -> float | None:
        """samkit, not a request: the best detection probability any query reached in the session
        since its last text / box prompt (before the threshold and NMS; the outputs are the
        official ones, unchanged), or None before the loop ran. What a find that kept nothing
        reports (how close the best candidate came).

        Raises:
            ValueError: an unknown session.
        """
        return self._session(session_id).best_score

    # ------------------------------------------------------------------ internals
    def _session(self, session_id: Any) -> Sam3VideoSession:
        if session_id not in self._sessions:
            raise ValueError(
                f"unknown session {session_id!r}; open one with start_session "
                f"(open: {sorted(self._sessions)})"
            )
        return self._sessions[session_id]


def _check_probability(value: Any, name: str) -> float | None:
    """`value` as a SAM 3 threshold strictly between 0 and 1 (None stays None):
    `check_score_threshold`, the rule the CLI and the web app apply.

    Raises:
        ValueError: a bool, a non-number, NaN or a number outside (0, 1).
    """
    return None if value is None else check_score_threshold(value, name)
