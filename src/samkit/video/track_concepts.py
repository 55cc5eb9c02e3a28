"""Concept tracking (SAM 3) behind the video predictor surface that `samkit track`,
`samkit eval-video` and the web app's video mode drive.

`ConceptTracker` wraps a `Sam3VideoPredictor` (the official request API, used only through
`handle_request` / `handle_stream_request`) and answers the calls the SAM 2 path makes
(`init_state`, `add_new_points_or_box`, `propagate_in_video`, `remove_object`,
`get_object_scores`, `reset_state`) plus `find`: every instance of a text (and / or one
exemplar box) on a frame starts a track. Rules:

- **One predictor session per concept.** The official `add_prompt` with a text resets its
  session, so each `find` opens a session of its own; a click on a new object goes to a session
  without text (the concept `None`, "clicked objects"). Outputs of the sessions are merged per
  frame; each concept becomes one YouTube-VIS category.
- **Track ids** are 1, 2, 3, ... in the order objects first appear in an output (palette PNGs
  store ids 1..255; the official ids start at 0 and repeat across sessions).
  `ConceptTrackState.predictor_id(track)` gives `(concept index, official obj id)` back.
- **Directions** as the SAM 2 predictor: a reverse pass yields its start frame too (the
  official backward pass starts one frame before it; the start frame's outputs come from the
  prompt given on it, else from the pass that started or yielded it last; a start frame that
  has none yet is not yielded).
- Masks come out as (K, 1, H, W) bool tensors (`> 0` thresholds them as it does logits);
  `get_object_scores` gives the official `out_probs` as logits.
- Mask prompts do not exist in the official SAM 3 video API: `add_new_mask` raises ValueError.
  Box prompts are concept exemplars (`find(..., box=...)`), not one object's box.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from samkit.build.sam3_models import cached_sam3_checkpoint
from samkit.build.sam3_video import build_sam3_tracker, tracker_to_dtype
from samkit.checkpoint import read_state_dict
from samkit.video.frames.folder import VideoFrames
from samkit.video.frames.sources import open_video
from samkit.video.sam3.build import build_sam3_video_predictor
from samkit.video.sam3.predictor import Sam3VideoPredictor, Sam3VideoSettings
from samkit.video.track_concepts_checks import check_clicks, check_frame, check_threshold, xywh_norm
from samkit.video.track_concepts_state import MAX_TRACK_ID, ConceptTrackState


class ConceptTracker:
    """The video predictor surface on a `Sam3VideoPredictor` (see the module docstring).

    Args:
        predictor: a `samkit.video.sam3.predictor.Sam3VideoPredictor`.
    """

    finds_concepts = True  # what the CLI and the web app ask before offering `find`
    takes_mask_prompts = False

    def __init__(self, predictor: Any, keep_outputs: bool = False) -> None:
        self.predictor = predictor
        self.keep_outputs = keep_outputs

    @property
    def image_size(self) -> int:
        return int(self.predictor.model.image_size)

    @property
    def model(self) -> Any:
        return self.predictor.model

    def _req(self, **request: Any) -> dict[str, Any]:
        return self.predictor.handle_request(request)

    # ------------------------------------------------------------------ state
    def init_state(self, video: Any, keep_outputs: bool | None = None) -> ConceptTrackState:
        """The state of a video: a `VideoFrames` (anything with `len` and `rgb(t)`), a list of
        HxWx3 uint8 RGB arrays, or a frame folder / video file path. A finished `VideoFrames`
        at the model's side (what `samkit.video.open_video` gives) is kept and decoded when a
        session needs a frame, so memory does not grow with the video; other sources are read
        whole (a live one: the frames arrived so far).

        Raises:
            ValueError: a video that cannot be read (from `samkit.video.open_video`).
        """
        if isinstance(video, (list, tuple)):
            frames: Any = [np.asarray(f) for f in video]
        else:
            if not hasattr(video, "rgb"):
                video = open_video(video, self.image_size)
            whole = isinstance(video, VideoFrames) and not video.is_live
            if whole and video.image_size == self.image_size:
                frames = video
            else:
                frames = [np.asarray(video.rgb(t)) for t in range(len(video))]
        if not len(frames):
            raise ValueError("the video has no frames")
        if isinstance(frames, list):
            h, w = frames[0].shape[:2]
        else:
            h, w = frames.video_height, frames.video_width
        keep = self.keep_outputs if keep_outputs is None else keep_outputs
        return ConceptTrackState(frames, int(h), int(w), keep)

    def reset_state(self, state: ConceptTrackState) -> None:
        """Close every session and forget every object."""
        self.close_state(state)
        fresh = ConceptTrackState(state.frames, state.video_height, state.video_width)
        fresh.keep_outputs = state.keep_outputs
        state.__dict__.update(fresh.__dict__)

    def close_state(self, state: ConceptTrackState) -> None:
        """Close the predictor sessions of `state` (frees their frames)."""
        for sid in state.sessions:
            self._req(type="close_session", session_id=sid)
        state.sessions = []

    def _new_session(
        self, state: ConceptTrackState, text: str | None, box: bool, threshold: float | None = None
    ) -> int:
        names = ("score_threshold_detection", "new_det_thresh") if threshold is not None else ()
        own = dict.fromkeys(names, threshold)
        sid = self._req(type="start_session", resource_path=state.frames, **own)["session_id"]
        state.sessions.append(sid)
        state.concepts.append(text)
        state.exemplars.append(box)
        state.prompt_frames.append(-1)
        return len(state.sessions) - 1

    # ------------------------------------------------------------------ prompts
    def find(
        self,
        state: ConceptTrackState,
        frame_idx: int,
        text: str | None = None,
        box: Sequence[float] | None = None,
        box_label: int = 1,
        threshold: float | None = None,
    ) -> tuple[int, list[int], torch.Tensor]:
        """Start a track for every instance of `text` (and / or the exemplar `box`, XYXY
        pixels) detected on `frame_idx`; a new concept (its own session and category).
        `threshold` (a probability in (0, 1); None: the predictor's settings) is this
        concept's detection and new-object threshold on every frame (`score_threshold_detection`
        and `new_det_thresh`, as `samkit track --threshold`).

        Returns:
            `(frame_idx, track ids, (K, 1, H, W) bool masks)` of that frame, every concept.

        Raises:
            ValueError: an empty text and no box, a frame outside the video, a box outside the
                frame or with no area, a label other than 0 / 1, a threshold not in (0, 1).
        """
        f = check_frame(state, frame_idx)
        threshold = check_threshold(threshold)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ValueError(f"text must be a non-empty noun phrase, got {text!r}")
        if text is None and box is None:
            raise ValueError("find needs a text (a noun phrase) or an exemplar box")
        request: dict[str, Any] = {"type": "add_prompt", "frame_index": f}
        if text is not None:
            request["text"] = text.strip()
        if box is not None:
            request["bounding_boxes"] = [xywh_norm(state, box)]
            request["bounding_box_labels"] = [int(box_label)]
        concept = None if text is None else text.strip()
        k = self._new_session(state, concept, box is not None, threshold)
        state.prompt_frames[k] = f
        state.prompted.add(f)
        try:
            out = self.predictor.handle_request({**request, "session_id": state.sessions[k]})
        except BaseException:
            self._req(type="close_session", session_id=state.sessions.pop())
            for lst in (state.concepts, state.exemplars, state.prompt_frames):
                lst.pop()
            raise
        return self._merge_frame(state, f, {k: out["outputs"]}, remember=True)

    def add_new_points_or_box(
        self,
        inference_state: ConceptTrackState,
        frame_idx: int,
        obj_id: int,
        points: Any = None,
        labels: Any = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Any = None,
    ) -> tuple[int, list[int], torch.Tensor]:
        """Clicks (pixels, labels 1 / 0) refining a track, or starting a new object with a
        new id; the official `add_prompt` with `points`, `point_labels` and `obj_id`.

        Raises:
            ValueError: a box (SAM 3 boxes are concept exemplars: use `find`), no points, a
                removed id, a frame outside the video, or clicks the predictor cannot take.
        """
        s = inference_state
        f = check_frame(s, frame_idx)
        if box is not None:
            raise ValueError(
                "a SAM 3 video model reads a box as a visual exemplar of a concept, not as one "
                "object's box: give it to find (samkit track --exemplar, the web app's Find)"
            )
        pts, labs = check_clicks(points, labels)
        oid = int(obj_id)
        if oid in s.removed:
            raise ValueError(f"object {oid} was removed: use a new object id")
        if oid in s.key_of:
            k, official = s.key_of[oid]
        else:
            if not 1 <= oid <= MAX_TRACK_ID:
                raise ValueError(f"object ids are 1..{MAX_TRACK_ID}, got {oid}")
            k = next((i for i, c in enumerate(s.concepts) if c is None and not s.exemplars[i]), -1)
            if k < 0:
                k = self._new_session(s, None, False)
            official = oid
            if (k, official) in s.track_of:
                raise ValueError(f"object id {oid} is taken; use another")
            s.track_of[(k, official)], s.key_of[oid] = oid, (k, official)
        norm = pts / np.array([s.video_width, s.video_height])
        try:
            out = self._req(
                type="add_prompt",
                session_id=s.sessions[k],
                frame_index=f,
                points=norm.tolist(),
                point_labels=labs.tolist(),
                obj_id=official,
            )
        except NotImplementedError as e:
            if s.key_of.get(oid) == (k, official) and oid not in s.scores:
                del s.key_of[oid], s.track_of[(k, official)]
            raise ValueError(f"this SAM 3 video predictor cannot take clicks yet ({e})") from None
        s.prompted.add(f)
        return self._merge_frame(s, f, {k: out["outputs"]}, remember=True)

    def add_new_mask(self, inference_state: Any, frame_idx: int, obj_id: int, mask: Any) -> Any:
        raise ValueError(
            "the SAM 3 video model takes no mask prompts (official add_prompt: text, exemplar "
            "boxes, clicks): use a text, an exemplar box or clicks"
        )

    def remove_object(
        self,
        inference_state: ConceptTrackState,
        obj_id: int,
        strict: bool = False,
        need_output: bool = True,
    ) -> tuple[list[int], None]:
        """Remove a track from its session (official `remove_object`) and every kept output.

        Raises:
            ValueError: an unknown or removed track id.
        """
        s = inference_state
        k, official = s.predictor_id(int(obj_id))
        self._req(type="remove_object", session_id=s.sessions[k], obj_id=official)
        s.removed.add(int(obj_id))
        for masks in s.last.values():
            masks.pop(int(obj_id), None)
        return s.obj_ids, None

    def get_object_scores(self, inference_state: ConceptTrackState, frame_idx: int) -> dict:
        """track id -> the official `out_probs` as a logit (what `VisRecorder` stores)."""
        out = {}
        for t, p in inference_state.scores.items():
            p = min(max(float(p), 1e-6), 1 - 1e-6)
            out[t] = math.log(p / (1 - p))
        return out

    # ------------------------------------------------------------------ propagation
    def propagate_in_video(
        self,
        inference_state: ConceptTrackState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """Track every concept's objects (one official pass per session, merged frame by frame).

        Yields:
            `(frame_idx, track ids, (K, 1, H, W) bool masks)`, every frame of the pass once.

        Raises:
            ValueError: no prompt yet, a start frame outside the video, a negative count.
        """
        s = inference_state
        live = [k for k in range(len(s.sessions)) if s.prompt_frames[k] >= 0 or self._has(s, k)]
        if not live or not s.prompted:
            raise ValueError("no prompt yet: find a concept or click an object first")
        if start_frame_idx is None:
            start = (max if reverse else min)(s.prompted)
        else:
            start = check_frame(s, start_frame_idx)
        if max_frame_num_to_track is not None and int(max_frame_num_to_track) < 0:
            raise ValueError(f"max_frame_num_to_track must be >= 0, got {max_frame_num_to_track}")
        s.pinned.add(start)  # its outputs start a later reverse pass from it
        if reverse:
            if start in s.last:  # never tracked or prompted: the official pass starts before it
                first = {k: s.concept_outputs(k, start) for k in live}
                yield self._merge_frame(s, start, first, remember=True)
            if start == 0 or max_frame_num_to_track == 0:
                return
        streams = {
            k: self.predictor.handle_stream_request(
                {
                    "type": "propagate_in_video",
                    "session_id": s.sessions[k],
                    "propagation_direction": "backward" if reverse else "forward",
                    "start_frame_index": start,
                    "max_frame_num_to_track": max_frame_num_to_track,
                }
            )
            for k in live
        }
        while True:
            got = {k: next(it, None) for k, it in streams.items()}
            if all(g is None for g in got.values()):
                return
            frames = {g["frame_index"] for g in got.values() if g is not None}
            if len(frames) != 1 or any(g is None for g in got.values()):
                raise RuntimeError(f"concept passes out of step: {got.keys()} at {frames}")
            (t,) = frames
            yield self._merge_frame(s, t, {k: g["outputs"] for k, g in got.items()}, True)

    def _has(self, s: ConceptTrackState, k: int) -> bool:
        return any(key[0] == k for key in s.track_of)

    def _merge_frame(
        self, s: ConceptTrackState, t: int, outputs: dict[int, dict[str, Any]], remember: bool
    ) -> tuple[int, list[int], torch.Tensor]:
        """`ConceptTrackState.merge` as the SAM 2 surface answers: (t, ids, (K, 1, H, W))."""
        ids, stack = s.merge(t, outputs, remember)
        hw = (s.video_height, s.video_width)
        return t, ids, torch.from_numpy(stack).reshape(len(ids), 1, *hw)

    def best_score(self, state: ConceptTrackState, concept: int | None = None) -> float | None:
        """The best detection score (a probability, kept or not) a concept's detector saw on
        the frames it ran since its find (`Sam3VideoPredictor.best_detection_score`): concept
        index `concept` (-1: the latest find), or the best of every concept (None); None when
        no detector ran or the predictor does not say. What a find or `samkit track --text` that
        found nothing reports."""
        best_of = getattr(self.predictor, "best_detection_score", None)
        sessions = state.sessions if concept is None else [state.sessions[concept]]
        scores = [] if best_of is None else [best_of(sid) for sid in sessions]
        return max((x for x in scores if x is not None), default=None)


def build_concept_tracker(
    spec: str | None = None,
    checkpoint: Any = None,
    device: Any = None,
    dtype: Any = None,
    keep_outputs: bool = False,
    **settings: Any,
) -> ConceptTracker:
    """The registry's `video_predictor` slot for SAM 3: a `ConceptTracker` on
    `samkit.video.sam3.build.build_sam3_video_predictor(checkpoint)`.

    Args:
        spec: the model name (`sam3`) or None; the architecture comes from the checkpoint.
        checkpoint: an official `sam3.pt` with the detector and tracker tensors.
        device: torch device (default CPU).
        dtype: None / float32, or bfloat16 / float16 (a torch dtype or its name; see
            `build_sam3_video_predictor`).
        keep_outputs: keep every tracked frame's masks (`ConceptTrackState.last`).
        settings: `Sam3VideoSettings` by their official names (e.g. `new_det_thresh`).

    Raises:
        ValueError: no checkpoint given or cached (the message says where to get sam3.pt),
            another dtype, or an unknown setting.
    """
    if checkpoint is None:  # the cached sam3.pt, or where to get it (Meta gates the weights)
        checkpoint = cached_sam3_checkpoint()
    if isinstance(dtype, str) and dtype in ("float32", "bfloat16", "float16"):
        dtype = getattr(torch, dtype)
    predictor = build_sam3_video_predictor(checkpoint, device=device, dtype=dtype, **settings)
    return ConceptTracker(predictor, keep_outputs)


def concept_tracker_on(
    model: Any, checkpoint: Any, keep_outputs: bool = True, state: Any = None, **settings: Any
) -> ConceptTracker:
    """A `ConceptTracker` on an already built SAM 3 image model (with its interactive heads, as
    `build_sam3_image_model` builds them from a checkpoint with tracker tensors) plus the
    checkpoint's tracker: what `samkit serve` uses, so the detector is in memory once (and,
    given `state`, the checkpoint's tensors already read, the file is read once).

    Raises:
        ValueError: a checkpoint without tracker tensors, or an unknown setting.
    """
    known = {f.name for f in dataclasses.fields(Sam3VideoSettings)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown SAM 3 video settings {unknown}; known: {sorted(known)}")
    device = next(model.parameters()).device
    tracker = build_sam3_tracker(read_state_dict(checkpoint) if state is None else state, device)
    tracker = tracker_to_dtype(tracker, next(model.parameters()).dtype)  # as the detector
    predictor = Sam3VideoPredictor(model, tracker, Sam3VideoSettings(**settings))
    return ConceptTracker(predictor, keep_outputs)
