"""The state of one SAM 3 video session: frames, prompt, objects, cached frame outputs."""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from samkit.modeling.sam3.sam3_image import GeometricPrompt
from samkit.modeling.video_memory import FrameFeatures
from samkit.video.sam3.frames import Sam3Frames
from samkit.video.sam3.outputs import OutputCache
from samkit.video.sam3.tracking import TrackerState

VISUAL_TEXT = "visual"  # the detector's text when a prompt has no text (official)


@dataclass
class TrackMetadata:
    """What the official `tracker_metadata` / `rank0_metadata` hold about the objects.

    Attributes:
        obj_ids: tracked objects in tracker-state order.
        max_obj_id: the largest id handed out (-1: none yet); ids are never reused.
        score: `out_probs` per object (its first detection score; 1.0 after clicks; -1e4
            once removed by hotstart).
        tracker_score: frame -> object -> the probability that decides contested pixels.
        last_occluded: object -> last frame it was empty or suppressed (-1: never).
        first_frame: object -> frame it started on.
        unmatched_frames: object -> frames where no detection matched it.
        keep_alive: object -> keep-alive counter.
        overlap_frames: (earlier object, later object) -> frames one detection matched both.
        removed: objects removed by the hotstart rules.
        suppressed: frame -> objects hidden on it but still tracked.
    """

    obj_ids: list[int] = field(default_factory=list)
    max_obj_id: int = -1
    score: dict[int, float] = field(default_factory=dict)
    tracker_score: defaultdict[int, dict[int, float]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    last_occluded: dict[int, int] = field(default_factory=dict)
    first_frame: dict[int, int] = field(default_factory=dict)
    unmatched_frames: defaultdict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    keep_alive: defaultdict[int, int] = field(default_factory=lambda: defaultdict(int))
    overlap_frames: defaultdict[tuple[int, int], list[int]] = field(
        default_factory=lambda: defaultdict(list)
    )
    removed: set[int] = field(default_factory=set)
    suppressed: defaultdict[int, set[int]] = field(default_factory=lambda: defaultdict(set))


@dataclass
class LivePass:
    """A forward pass over a live source that continues as frames arrive.

    Attributes:
        next_frame: the next frame to run the loop on.
        buffer: (frame, result) of processed frames whose outputs wait for the hotstart delay.
        removed: objects removed by hotstart during the pass (hidden in buffered outputs).
        last_frame: the pass's last frame (`max_frame_num_to_track` after its start), or None
            to run until the source is closed.
    """

    next_frame: int
    last_frame: int | None = None
    buffer: list = field(default_factory=list)
    removed: set[int] = field(default_factory=set)


@dataclass
class Sam3VideoSession:
    """A session of `Sam3VideoPredictor` (the official `inference_state`, typed).

    Attributes:
        session_id: the id `start_session` returned.
        frames: the clip (`Sam3Frames`).
        text: the concept prompt (None for an exemplar box alone: the detector then reads the
            text "visual" and detects only on the exemplar's frame).
        geometric_prompts: frame -> the exemplar prompt given on it.
        states: the tracker states (objects grouped as the official code groups them).
        meta: the objects' bookkeeping (`TrackMetadata`).
        cached_masks: frame -> object -> (H, W) bool mask of its last outputs
            (`OutputCache`, compressed; optionally only the last frames).
        first_output_frame: the first frame with outputs of the loop (prompted or
            propagated; the default start of a propagation), None before any.
        history: the official action history ("add", "refine", "remove",
            "propagation_full" / "_partial" / "_fetch"), as (type, frame, object ids).
        features: frame -> the tracker's features of the most recently used frames (clicks and
            partial passes reuse them instead of running the backbone again).
        detector_buffer: frame -> the exemplar prompt (or None) its detection was, or would
            be, computed with (the official detector computes each frame's next one ahead with
            the current frame's prompt and reuses it: `Sam3ImageOnVideoMultiGPU`
            `forward_video_grounding_multigpu`, one device).
        min_track_len: the video length the tracker assumes at least (live sources: the
            pointer window, as their length is unknown; 0 for files).
        live_pass: the open forward pass of a live session (`LivePass`), or None.
        score_threshold: this session's detection threshold (`score_threshold_detection`),
            None for the predictor's; new_det_thresh: likewise (samkit: one predictor serves
            sessions with different thresholds, e.g. the web app's finds).
        best_score: the best detection probability of any query (before the threshold and NMS)
            on the frames the loop ran with new detections allowed since the last text / box
            prompt; None before any (samkit: what a find that kept nothing reports).
    """

    session_id: str
    frames: Sam3Frames
    text: str | None = None
    geometric_prompts: dict[int, GeometricPrompt] = field(default_factory=dict)
    states: list[TrackerState] = field(default_factory=list)
    meta: TrackMetadata = field(default_factory=TrackMetadata)
    cached_masks: OutputCache = field(default_factory=OutputCache)
    first_output_frame: int | None = None
    history: list[tuple[str, int | None, list[int] | None]] = field(default_factory=list)
    features: OrderedDict[int, FrameFeatures] = field(default_factory=OrderedDict)
    detector_buffer: dict[int, GeometricPrompt | None] = field(default_factory=dict)
    min_track_len: int = 0
    live_pass: LivePass | None = None
    score_threshold: float | None = None
    new_det_thresh: float | None = None
    best_score: float | None = None

    @property
    def num_frames(self) -> int:
        """Frames of the video (of a live source: arrived so far)."""
        return len(self.frames)

    @property
    def track_len(self) -> int:
        """The video length the tracker's memory and pointer windows see."""
        return max(self.num_frames, self.min_track_len)

    def detector_prompt(self, frame: int, reverse: bool) -> GeometricPrompt | None:
        """The exemplar prompt the official detector uses on `frame` (see `detector_buffer`):
        the buffered one if the frame was computed ahead, else the frame's own; then the
        previous frame leaves the buffer and the next one enters it with this frame's prompt."""
        buf = self.detector_buffer
        own = self.geometric_prompts.get(frame)
        used = buf.setdefault(frame, own)
        buf.pop(frame + 1 if reverse else frame - 1, None)
        nxt = frame - 1 if reverse else frame + 1
        if nxt >= 0 and (self.frames.is_live or nxt < self.num_frames):
            buf.setdefault(nxt, own)
        return used

    def mark_output(self, frame: int) -> None:
        if self.first_output_frame is None or frame < self.first_output_frame:
            self.first_output_frame = frame

    def store_outputs(self, frame: int, masks: dict[int, Tensor], hidden: set[int]) -> None:
        """Cache a frame's masks (without the `hidden` objects); frames the cache drops also
        drop their per-frame scores and suppressions."""
        dropped = self.cached_masks.put(frame, {o: m for o, m in masks.items() if o not in hidden})
        for f in dropped:
            self.meta.tracker_score.pop(f, None)
            self.meta.suppressed.pop(f, None)

    @property
    def detector_text(self) -> str:
        return self.text if self.text is not None else VISUAL_TEXT

    def reset(self) -> None:
        """Forget prompts, objects and outputs (official `reset_state`); frames stay."""
        self.text = None
        self.geometric_prompts = {}
        self.states = []
        self.meta = TrackMetadata()
        self.cached_masks = OutputCache(self.cached_masks.max_frames)
        self.first_output_frame = None
        self.history = []
        self.live_pass = None
        self.detector_buffer = {}
        self.best_score = None

    def note_best_score(self, score: float) -> None:
        """Keep `score` (a frame's best query probability) if it is the best so far."""
        if self.best_score is None or score > self.best_score:
            self.best_score = score

    def check_frame(self, frame_index: object, what: str = "frame_index") -> int:
        """`frame_index` as an int in [0, num_frames).

        Raises:
            ValueError: not an int, or outside the video.
        """
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
            raise ValueError(f"{what} must be an int, got {frame_index!r}")
        while int(frame_index) >= self.num_frames and self.frames.pull():
            pass  # an iterator source pulls up to the frame
        if not 0 <= int(frame_index) < self.num_frames:
            raise ValueError(
                f"{what} {frame_index} is outside the video (0..{self.num_frames - 1})"
            )
        return int(frame_index)
