"""The computations behind `Sam3VideoPredictor`'s requests: one loop frame, clicks, and the
full / partial / fetch / live passes (official `Sam3VideoInferenceWithInstanceInteractivity`,
sam3 0.1.4; the rules are in the fixture README of `tests/fixtures/sam3_video`).

Memory stays bounded on long videos and live streams: frames are decoded when needed
(`Sam3Frames`), the tracker features of the last `FEATURE_CACHE_FRAMES` frames and the tracked
outputs a later frame can attend to are kept (`tracking.prune_memory`, the SAM 2 window of
`samkit.video.session.memory_window`), and the cached output masks are run-length encoded
(`OutputCache`, optionally only the last `max_output_frames` frames).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from samkit.modeling.sam3.tracker import Sam3Tracker
from samkit.modeling.video_memory import Clicks, FrameFeatures
from samkit.video.sam3 import clicks, history, tracking
from samkit.video.sam3.loop import FrameResult, LoopSettings, det_track_one_frame
from samkit.video.sam3.postprocess import (
    fill_holes_in_mask_scores,
    postprocess_output,
    video_res_binary,
)
from samkit.video.sam3.session import LivePass, Sam3VideoSession
from samkit.video.session import FEATURE_CACHE_FRAMES, memory_window

Outputs = dict[str, np.ndarray]


class Sam3VideoEngine:
    """Runs SAM 3 video on sessions.

    Args:
        tracker: the `Sam3Tracker`.
        detector: a `FrameDetector` (`detect(frame, text, prompt, allow_new_detections)` and
            `tracker_features(frame)`).
        settings: the loop's heuristics (`LoopSettings` or `Sam3VideoSettings`).
    """

    def __init__(self, tracker: Sam3Tracker, detector: Any, settings: LoopSettings) -> None:
        self.tracker = tracker
        self.detector = detector
        self.settings = settings
        self.window = memory_window(tracker)

    # ------------------------------------------------------------------ frames
    def features(self, s: Sam3VideoSession, f: int, reverse: bool = False) -> FrameFeatures:
        """The tracker's features of frame `f`: cached, else from the backbone alone (the
        official code runs the detector here, whose detections go unused)."""
        s.detector_prompt(f, reverse)  # its look-ahead buffer moves as the official one
        feats = s.features.get(f)
        if feats is None:
            fpn, pos = self.detector.tracker_features(s.frames[f])
            feats = FrameFeatures(fpn[2], pos, [fpn[0], fpn[1]])
        self._keep_features(s, f, feats)
        return feats

    def _keep_features(self, s: Sam3VideoSession, f: int, feats: FrameFeatures) -> None:
        s.features[f] = feats
        s.features.move_to_end(f)
        while len(s.features) > FEATURE_CACHE_FRAMES:
            s.features.popitem(last=False)

    def run_frame(self, s: Sam3VideoSession, f: int, reverse: bool, anchor: int) -> FrameResult:
        """The detector-tracker loop on frame `f`; then the memory no later frame of the pass
        (started at `anchor`) can read is dropped."""
        allow = s.text is not None or f in s.geometric_prompts
        gp = s.detector_prompt(f, reverse)
        own = {} if s.score_threshold is None else {"score_threshold": s.score_threshold}
        det = self.detector.detect(s.frames[f], s.detector_text, gp, allow, **own)
        if allow and det.query_logits.numel():  # the best candidate, kept or not
            s.note_best_score(float(det.query_logits.max().sigmoid()))
        self._keep_features(s, f, tracking.frame_features(det))
        settings = self.settings
        if s.new_det_thresh is not None:
            settings = dataclasses.replace(settings, new_det_thresh=s.new_det_thresh)
        result = det_track_one_frame(self.tracker, s, det, f, reverse, settings)
        for st in s.states:
            tracking.prune_memory(self.tracker, st, f, anchor, self.window)
        s.mark_output(f)
        s.store_outputs(f, result.masks, set())
        return result

    def postprocess(self, s: Sam3VideoSession, f: int, masks: dict, hidden: set[int]) -> Outputs:
        hw = (s.frames.video_height, s.frames.video_width)
        return postprocess_output(masks, s.meta.score, s.meta.tracker_score[f], hw, hidden)

    def _hw(self, s: Sam3VideoSession) -> tuple[int, int]:
        return (int(s.frames.video_height), int(s.frames.video_width))

    # ------------------------------------------------------------------ clicks
    def add_clicks(self, s: Sam3VideoSession, f: int, obj_id: int, prompt: Clicks) -> Outputs:
        """Refine object `obj_id` (or start it) with clicks on frame `f`; its outputs."""
        meta = s.meta
        cached = s.cached_masks.get(f)  # raises for a frame whose outputs were dropped
        feats = self.features(s, f)
        state = next((st for st in s.states if obj_id in st.obj_ids), None)
        if state is None:  # a new object in its own tracker state ("add")
            state = tracking.TrackerState([obj_id])
            s.states.append(state)
            meta.obj_ids.append(obj_id)
            meta.max_obj_id = max(meta.max_obj_id, obj_id)
            # the official loop never runs on click-added objects (their passes are partial);
            # a live pass does: they start on the clicked frame like a new detection
            meta.first_frame.setdefault(obj_id, f)
            meta.keep_alive.setdefault(obj_id, self.settings.init_trk_keep_alive)
            s.history.append(("add", f, [obj_id]))
        else:
            s.history.append(("refine", f, [obj_id]))
        meta.score[obj_id] = 1.0
        meta.tracker_score[f][obj_id] = 1.0
        meta.removed.discard(obj_id)
        for hidden in meta.suppressed.values():
            hidden.discard(obj_id)
        out = clicks.add_points(self.tracker, state, feats, f, obj_id, prompt, s.track_len)
        mask = clicks.object_video_mask(out.pred_masks, self._hw(s), self.settings.fill_hole_area)
        clicks.consolidate(self.tracker, state, feats, f)
        clicks.clear_detector_frames(state, obj_id, f)
        masks = {**cached, obj_id: mask}
        hidden = set(meta.suppressed[f])
        s.store_outputs(f, masks, hidden)
        if s.live_pass is not None:  # a buffered output of this frame gets the new mask
            for g, r in s.live_pass.buffer:
                if g == f:
                    r.masks[obj_id] = mask
        return self.postprocess(s, f, masks, hidden)

    def remove_object(self, s: Sam3VideoSession, obj_id: int, is_user_action: bool) -> None:
        tracking.remove_objects(s.states, {obj_id})
        if is_user_action:
            s.history.append(("remove", None, [obj_id]))
        s.meta.obj_ids = [o for o in s.meta.obj_ids if o != obj_id]
        s.meta.score.pop(obj_id, None)
        s.cached_masks.drop_object(obj_id)
        if s.live_pass is not None:
            for _, r in s.live_pass.buffer:
                r.masks.pop(obj_id, None)

    # ------------------------------------------------------------------ passes
    def propagate(
        self, s: Sam3VideoSession, start: int | None, max_n: int | None, reverse: bool
    ) -> Iterator[dict[str, Any]]:
        """One direction of `propagate_in_video` (full, partial or fetch by the history)."""
        kind, obj_ids = history.propagation_type(s)
        s.history.append((kind, start, obj_ids))
        order, end = history.processing_order(s, start, max_n, reverse)
        if kind == history.FETCH:
            for f in order:
                masks = s.cached_masks.get(f)
                outputs = self.postprocess(s, f, masks, set(s.meta.suppressed[f]))
                yield {"frame_index": f, "outputs": outputs}
        elif kind == history.PARTIAL:
            yield from self._partial(s, order, reverse, obj_ids or [])
        elif s.frames.is_live and not reverse:
            first = order[0] if order else s.num_frames
            s.live_pass = LivePass(first, None if max_n is None else first + max_n)
            yield from self.live(s)
        else:
            yield from self._full(s, order, end, reverse)

    def _partial(
        self, s: Sam3VideoSession, order: list[int], reverse: bool, obj_ids: list[int]
    ) -> Iterator[dict[str, Any]]:
        """Track only the states holding `obj_ids`; their masks replace the cached ones
        (official partial propagation; the tracker score kept is the object-score logit)."""
        states = [st for st in s.states if set(obj_ids) & set(st.obj_ids)]
        meta = s.meta
        for f in order:
            masks = s.cached_masks.get(f)
            feats = self.features(s, f, reverse)
            ids, lows, scores = [], [], []
            for st in states:
                low, sc = tracking.propagate(
                    self.tracker, st, feats, f, s.track_len, reverse, run_mem_encoder=True
                )
                tracking.prune_memory(self.tracker, st, f, order[0], self.window)
                ids += st.obj_ids
                lows.append(low)
                scores.append(sc)
            if ids:
                low = torch.cat(lows)[:, None]
                low = fill_holes_in_mask_scores(low, self.settings.fill_hole_area)[:, 0]
                score = torch.cat(scores)
                for o in obj_ids:
                    if o in ids:
                        i = ids.index(o)
                        meta.tracker_score[f][o] = float(score[i])
                        masks[o] = video_res_binary(low[i : i + 1], self._hw(s))[0]
            hidden = set(meta.suppressed[f])
            s.store_outputs(f, masks, hidden)
            yield {"frame_index": f, "outputs": self.postprocess(s, f, masks, hidden)}

    def _ready(
        self, s: Sam3VideoSession, buffer: list, removed: set[int], flush: bool
    ) -> Iterator[dict[str, Any]]:
        """Yield the buffered frames the hotstart delay releases (all of them on `flush`)."""
        # a delay of 0 releases each frame at once, as a delay of 1 does (official buffer)
        delay = max(1, self.settings.hotstart_delay)
        n = len(buffer) if flush else max(0, len(buffer) - delay + 1)
        for _ in range(n):
            g, r = buffer.pop(0)
            hidden = removed | r.suppressed
            s.store_outputs(g, r.masks, hidden)
            yield {"frame_index": g, "outputs": self.postprocess(s, g, r.masks, hidden)}

    def _full(
        self, s: Sam3VideoSession, order: list[int], end: int, reverse: bool
    ) -> Iterator[dict[str, Any]]:
        """The loop on every frame of `order`; a frame's outputs are released once
        `hotstart_delay` later frames ran (objects removed meanwhile are hidden), the rest at
        the end (official hotstart buffer)."""
        buffer: list[tuple[int, FrameResult]] = []
        removed: set[int] = set()
        for f in order:
            result = self.run_frame(s, f, reverse, order[0])
            buffer.append((f, result))
            removed |= result.removed
            yield from self._ready(s, buffer, removed, flush=f == end)

    def live(self, s: Sam3VideoSession) -> Iterator[dict[str, Any]]:
        """Continue the forward pass of a live session over the frames that have arrived
        (pulling an iterator source until it ends); outputs are released as by `_full`, and
        all of them once the source is closed or the pass's last frame ran."""
        lp = s.live_pass
        if lp is None:
            return
        stop = lp.last_frame
        while stop is None or lp.next_frame <= stop:
            if lp.next_frame >= s.num_frames and not s.frames.pull():
                break
            f = lp.next_frame
            result = self.run_frame(s, f, False, f)
            lp.buffer.append((f, result))
            lp.removed |= result.removed
            lp.next_frame += 1
            yield from self._ready(s, lp.buffer, lp.removed, flush=False)
        if s.frames.closed or (stop is not None and lp.next_frame > stop):
            yield from self._ready(s, lp.buffer, lp.removed, flush=True)
            s.live_pass = None
