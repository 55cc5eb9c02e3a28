"""The tracker half of SAM 3 video: object states, adding detections, one-frame propagation,
memory updates (official `Sam3VideoBase` + `Sam3TrackerPredictor`, sam3 0.1.4).

Objects are grouped as the official code groups them: one `TrackerState` per batch of new
detections on a frame (and, later, one per click-added object). Memory selection scores are per
state (the mean over its objects), so the grouping changes the numbers and is kept. States
are not merged into larger batches as `samkit.video.tracker.Sam2Tracker.batches` can for SAM 2:
on a CPU a batch of 3 full-size objects took 0.99x the time of 3 one by one (BENCHMARKS.md,
"SAM 3: several objects' memory reads"), and separate states start on different frames.

* `start_objects` (`Base._tracker_add_new_objects` -> `Tracker.add_new_mask` ->
  `propagate_in_video_preflight`): each detection's 288x288 logits, bilinear to 1152 and > 0, is
  a mask prompt used as the output; its pointer comes from the SAM heads on the downsampled mask.
  The video-resolution masks (antialiased resize, > 0.5; a later object of the batch takes the
  pixels it shares with an earlier one) are brought back to 288x288 (antialiased) and to
  1008x1008, one object per pixel, and encoded as a clicked frame's memory (binarised, object
  score +10), stored in bfloat16.
* `propagate` (`Base._propogate_tracker_one_frame_local_gpu`): a stored conditioning output is
  returned as is; other frames run the tracking step without memory encoding.
* `update_memories` (`Base._tracker_update_memories`): the frame's hole-filled low-res logits of
  every object, bilinear to 1152, objects that lose >= 70 % of their area to a per-pixel
  non-overlap step clamped to <= -10, object scores +-10 by emptiness, encoded as tracked
  (sigmoid) memories of each state, bfloat16.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.modeling.sam2_video import NO_OBJ_SCORE, apply_non_overlapping_constraints
from samkit.modeling.sam3.tracker import Sam3Tracker, TrackerFrameOutput
from samkit.modeling.video_memory import Clicks, FrameFeatures, ObjectMemory
from samkit.video.sam3.detect import FrameDetections

SHRINK_THRESHOLD = 0.3  # official `_suppress_shrinked_masks`


@dataclass(eq=False)
class TrackerState:
    """Objects tracked together (one official tracker inference state).

    Attributes:
        obj_ids: the objects, in batch order.
        memory: their batched outputs by frame (B = len(obj_ids)).
        mask_inputs: object -> frames where a detector mask is its prompt.
        point_inputs: object -> frame -> its clicks there (1xNx2 model-input pixels).
        tracked: frame -> direction (True: reverse) of the last time the state was propagated
            on it (official `frames_already_tracked`).
        hidden_non_cond: frames whose tracked outputs the per-object view no longer sees (the
            official `_clear_non_cond_mem_around_input` clears only the per-object slices, not
            the batched outputs that tracking reads); a click there finds no previous mask.
        pending: object -> frame -> click output not yet consolidated into `memory`.
    """

    obj_ids: list[int]
    memory: ObjectMemory = field(default_factory=ObjectMemory)
    mask_inputs: dict[int, set[int]] = field(default_factory=dict)
    point_inputs: dict[int, dict[int, Clicks]] = field(default_factory=dict)
    tracked: dict[int, bool] = field(default_factory=dict)
    hidden_non_cond: set[int] = field(default_factory=set)
    pending: dict[int, dict[int, TrackerFrameOutput]] = field(default_factory=dict)

    def input_frames(self) -> set[int]:
        """Frames where some object of the state has a prompt (mask or clicks)."""
        frames: set[int] = set()
        for per_obj in (self.mask_inputs, self.point_inputs):
            for fr in per_obj.values():
                frames.update(fr)
        return frames


def frame_features(det: FrameDetections, batch: int = 1) -> FrameFeatures:
    """The tracker's view of a frame's backbone output, for `batch` objects."""
    fpn = det.tracker_fpn
    return FrameFeatures(fpn[2], det.tracker_pos, [fpn[0], fpn[1]]).expand(batch)


def _encode(
    tracker: Sam3Tracker, feats: FrameFeatures, high_res: Tensor, scores: Tensor, clicked: bool
) -> tuple[Tensor, Tensor]:
    b = high_res.shape[0]
    feat, pos = tracker.encode_new_memory(feats.expand(b).image_embed, high_res, scores, clicked)
    return feat.to(torch.bfloat16), pos


def start_objects(
    tracker: Sam3Tracker,
    feats: FrameFeatures,
    frame_idx: int,
    obj_ids: list[int],
    det_logits: Tensor,
    video_hw: tuple[int, int],
) -> TrackerState:
    """A new state for this frame's new detections (ids `obj_ids`, (N, 288, 288) logits)."""
    if len(obj_ids) != det_logits.shape[0] or not obj_ids:
        raise ValueError(f"{len(obj_ids)} ids for {det_logits.shape[0]} detection masks")
    s_in = tracker.input_mask_size
    masks = F.interpolate(
        det_logits.float()[:, None], size=(s_in, s_in), mode="bilinear", align_corners=False
    )
    masks = (masks > 0).float()
    one = feats.expand(1)
    ptrs, obj_scores, video_res = [], [], []
    for i in range(len(obj_ids)):
        out = tracker.use_mask_as_output(one.image_embed, one.high_res_feats, masks[i : i + 1])
        ptrs.append(out.obj_ptr)
        obj_scores.append(out.object_score_logits)
        vr = F.interpolate(
            masks[i : i + 1], size=video_hw, mode="bilinear", align_corners=False, antialias=True
        )
        vr = vr > 0.5
        video_res = [torch.where(vr, NO_OBJ_SCORE, v) for v in video_res]
        video_res.append(torch.where(vr, -NO_OBJ_SCORE, NO_OBJ_SCORE))
    lr = tracker.low_res_mask_size
    low = F.interpolate(
        torch.cat(video_res), size=(lr, lr), mode="bilinear", align_corners=False, antialias=True
    )
    high = F.interpolate(low, size=(tracker.image_size,) * 2, mode="bilinear", align_corners=False)
    high = apply_non_overlapping_constraints(high)
    b = len(obj_ids)
    scores = torch.cat(obj_scores)
    mem, pos = _encode(tracker, feats, high, scores, clicked=True)
    state = TrackerState(list(obj_ids), mask_inputs={o: {frame_idx} for o in obj_ids})
    state.memory.cond_frame_outputs[frame_idx] = TrackerFrameOutput(
        pred_masks=low,
        obj_ptr=torch.cat(ptrs),
        object_score_logits=scores,
        maskmem_features=mem,
        maskmem_pos_enc=pos,
        iou_score=torch.ones(b),
    )
    return state


def propagate(
    tracker: Sam3Tracker,
    state: TrackerState,
    feats: FrameFeatures,
    frame_idx: int,
    num_frames: int,
    reverse: bool,
    run_mem_encoder: bool = False,
) -> tuple[Tensor, Tensor]:
    """One frame of one state: ((B, 288, 288) low-res logits, (B,) object-score logits).

    `run_mem_encoder` encodes the frame's memory from the state's own prediction (the partial
    propagation after clicks); the detector-tracker loop encodes it later from every object's
    masks (`update_memories`)."""
    mem = state.memory
    out = mem.cond_frame_outputs.get(frame_idx)
    if out is not None and len(state.obj_ids) == 1:
        hide_around(tracker, state, frame_idx)
    if out is None:  # an already tracked frame is tracked again (official)
        out = tracker.track_step(
            frame_idx,
            False,
            feats.expand(len(state.obj_ids)),
            None,
            None,
            mem,
            num_frames,
            track_in_reverse=reverse,
            run_mem_encoder=run_mem_encoder,
        )
        out.pred_masks_high_res = None
        if out.maskmem_features is not None:
            out.maskmem_features = out.maskmem_features.to(torch.bfloat16)
        mem.non_cond_frame_outputs[frame_idx] = out
        state.hidden_non_cond.discard(frame_idx)
    state.tracked[frame_idx] = reverse
    return out.pred_masks[:, 0], out.object_score_logits[:, 0]


def hide_around(tracker: Sam3Tracker, state: TrackerState, frame_idx: int) -> None:
    """Hide the tracked outputs within `num_maskmem` frames from the per-object view
    (official `_clear_non_cond_mem_around_input`, stride 1)."""
    r = tracker.memory_temporal_stride_for_eval * tracker.num_maskmem
    near = range(frame_idx - r, frame_idx + r + 1)
    state.hidden_non_cond.update(t for t in state.memory.non_cond_frame_outputs if t in near)


def _valid(tracker: Sam3Tracker, out: TrackerFrameOutput) -> bool:
    score = getattr(out, "eff_iou_score", None)
    return score is not None and float(score) > tracker.mf_threshold


def prune_memory(
    tracker: Sam3Tracker, state: TrackerState, frame_idx: int, anchor: int, window: int
) -> None:
    """Drop the tracked outputs no later frame of this pass or of its other direction can
    attend to (samkit's SAM 2 policy, `samkit.video.session.memory_window`, plus what SAM 3's
    memory selection reads).

    Kept: every tracked frame within `window` frames of `frame_idx` or of `anchor` (the pass's
    first frame, where the other direction starts), and on each side of those two frames the
    nearest `max_obj_ptrs_in_encoder - 1` frames that memory selection accepts (it scans back
    past the rejected ones). Conditioning outputs always stay. A later pass or click that
    starts farther away sees fewer memories than the official session, which keeps all.
    """
    non_cond = state.memory.non_cond_frame_outputs
    if len(non_cond) <= 2 * window + 2:
        return
    keep = {t for t in non_cond if abs(t - frame_idx) <= window or abs(t - anchor) <= window}
    valid = sorted(t for t, out in non_cond.items() if _valid(tracker, out))
    n = tracker.max_obj_ptrs_in_encoder - 1
    for c in {frame_idx, anchor}:
        keep.update([t for t in valid if t < c][-n:])
        keep.update([t for t in valid if t > c][:n])
    for t in [t for t in non_cond if t not in keep]:
        del non_cond[t]
        state.tracked.pop(t, None)
    state.hidden_non_cond &= set(non_cond)
    for t in [
        t for t in state.tracked if t not in keep and t not in state.memory.cond_frame_outputs
    ]:
        del state.tracked[t]


def update_memories(
    tracker: Sam3Tracker,
    states: list[TrackerState],
    feats: FrameFeatures,
    frame_idx: int,
    low_res: Tensor,
) -> None:
    """Re-encode frame `frame_idx`'s memory of every state from (M, 288, 288) logits of all
    their objects (states in order)."""
    if not states:
        return
    s = tracker.input_mask_size
    high = F.interpolate(
        low_res[:, None].float(), size=(s, s), mode="bilinear", align_corners=False
    )
    non_overlap = apply_non_overlapping_constraints(high)
    before = (high > 0).sum(dim=(-1, -2)).clamp(min=1.0)
    after = (non_overlap > 0).sum(dim=(-1, -2))
    keep = (after / before >= SHRINK_THRESHOLD)[..., None, None]
    high = torch.where(keep, high, high.clamp(max=-10.0))
    scores = torch.where((high > 0).any(dim=(-1, -2)), 10.0, -10.0)
    start = 0
    for st in states:
        n = len(st.obj_ids)
        mem, pos = _encode(
            tracker, feats, high[start : start + n], scores[start : start + n], False
        )
        for outputs in (st.memory.cond_frame_outputs, st.memory.non_cond_frame_outputs):
            if frame_idx in outputs:
                outputs[frame_idx].maskmem_features = mem
                outputs[frame_idx].maskmem_pos_enc = pos
        start += n


def mem_score(object_score_logits: Tensor, iou_score: Tensor) -> Tensor:
    """The state's memory-selection score of a frame (official `cal_mem_score`; shapes as
    stored, so a Bx1 score times a B IoU vector broadcasts as the official code does)."""
    norm = torch.where(
        object_score_logits > 0,
        object_score_logits.sigmoid() * 2 - 1,
        torch.zeros_like(object_score_logits),
    )
    return (norm * iou_score).mean()


def _slice(out: TrackerFrameOutput, keep: list[int]) -> TrackerFrameOutput:
    def pick(t: Tensor | None) -> Tensor | None:
        return None if t is None else t[keep]

    scores = out.object_score_logits[keep]
    iou = pick(out.iou_score)
    return TrackerFrameOutput(
        pred_masks=out.pred_masks[keep],
        obj_ptr=out.obj_ptr[keep],
        object_score_logits=scores,
        maskmem_features=pick(out.maskmem_features),
        maskmem_pos_enc=pick(out.maskmem_pos_enc),
        iou_score=iou,
        eff_iou_score=None if iou is None else mem_score(scores, iou),
    )


def _clear_inputs(state: TrackerState, obj_id: int) -> None:
    """Drop an object's prompts; a frame left without any prompt stops being a conditioning
    frame (its output becomes a tracked one), as the official `clear_all_points_in_frame`."""
    frames = set(state.mask_inputs.pop(obj_id, set())) | set(state.point_inputs.pop(obj_id, {}))
    remaining = state.input_frames()
    mem = state.memory
    for f in sorted(frames - remaining):
        out = mem.cond_frame_outputs.pop(f, None)
        if out is not None:
            mem.non_cond_frame_outputs[f] = out
            state.tracked.pop(f, None)


def remove_objects(states: list[TrackerState], obj_ids: set[int]) -> None:
    """Drop objects from their states (a state left empty is dropped), keeping the others'
    outputs (official `Sam3TrackerPredictor.remove_object`: the object's prompts are cleared,
    which can turn a frame prompted only for it into a tracked frame, then the batched outputs
    are sliced and their memory-selection scores recomputed; a state whose conditioning frames
    are all gone forgets its outputs)."""
    for state in list(states):
        if not obj_ids & set(state.obj_ids):
            continue
        keep = [i for i, o in enumerate(state.obj_ids) if o not in obj_ids]
        if not keep:
            states.remove(state)
            continue
        for o in obj_ids & set(state.obj_ids):
            _clear_inputs(state, o)
        state.obj_ids = [state.obj_ids[i] for i in keep]
        mem = state.memory
        if not mem.cond_frame_outputs:  # official `_reset_tracking_results`
            mem.clear()
            state.tracked.clear()
            continue
        for outputs in (mem.cond_frame_outputs, mem.non_cond_frame_outputs):
            for f, out in outputs.items():
                outputs[f] = _slice(out, keep)
