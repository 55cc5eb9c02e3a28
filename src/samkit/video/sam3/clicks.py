"""Clicks on SAM 3 video objects: refine a tracked object or start one on a frame (official
`Sam3VideoInferenceWithInstanceInteractivity.add_tracker_new_points` and the tracker calls it
makes, `Sam3TrackerPredictor.add_new_points_or_box` / `propagate_in_video_preflight` /
`clear_all_points_in_frame`, sam3 0.1.4).

* `add_points`: the clicks replace the object's clicks on the frame (`clear_old_points=True`)
  and its detector-mask prompt there; the SAM heads run on the frame's features **without
  memory** (`use_prev_mem_frame=False`: features + `no_mem_embed`) with the object's previous
  low-res logits on that frame (clamped to +-32) as the mask prompt
  (`iter_use_prev_mask_pred`). The output waits as a pending conditioning output
  (`add_all_frames_to_correct_as_cond`).
* `object_video_mask`: that output bilinear to the video size, holes / specks of <= 16 pixels
  filled (`fill_holes_in_mask_scores`), > 0.
* `consolidate`: the frame's output of every object of the state (pending, else its stored
  one, else an empty mask with the pointer of an empty mask) becomes the state's conditioning
  output, its memory encoded as a clicked frame's (bilinear to the model size, per-pixel
  non-overlap, bfloat16); a tracked output of that frame is dropped. A state of one object
  hides the tracked outputs within `num_maskmem` frames from its per-object view.
* `clear_detector_frames`: the clicked object's detector-mask-only conditioning frames within
  16 frames of the click are cleared for every object of its state (they become tracked
  frames), so the click can change the masks there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.modeling.sam2_video import NO_OBJ_SCORE, apply_non_overlapping_constraints
from samkit.modeling.sam3.tracker import Sam3Tracker, TrackerFrameOutput
from samkit.modeling.video_memory import Clicks, FrameFeatures
from samkit.video.sam3.postprocess import fill_holes_in_mask_scores
from samkit.video.sam3.tracking import TrackerState, hide_around

PREV_MASK_CLAMP = 32.0  # official clamp of the previous logits used as the mask prompt
DETECTOR_FRAME_WINDOW = 16  # official `refinement_detector_cond_frame_removal_window`


def _object_output(state: TrackerState, obj_id: int, frame_idx: int) -> TrackerFrameOutput | None:
    """The object's newest output on a frame as its per-object view sees it (pending, then
    conditioning, then tracked), as a batch of one."""
    pending = state.pending.get(obj_id, {}).get(frame_idx)
    if pending is not None:
        return pending
    i = state.obj_ids.index(obj_id)
    mem = state.memory
    out = mem.cond_frame_outputs.get(frame_idx)
    if out is None and frame_idx not in state.hidden_non_cond:
        out = mem.non_cond_frame_outputs.get(frame_idx)
    if out is None:
        return None
    iou = out.iou_score
    return TrackerFrameOutput(
        pred_masks=out.pred_masks[i : i + 1],
        obj_ptr=out.obj_ptr[i : i + 1],
        object_score_logits=out.object_score_logits[i : i + 1],
        iou_score=None if iou is None else iou[i : i + 1],
    )


def add_points(
    tracker: Sam3Tracker,
    state: TrackerState,
    feats: FrameFeatures,
    frame_idx: int,
    obj_id: int,
    clicks: Clicks,
    num_frames: int,
) -> TrackerFrameOutput:
    """Run one object's clicks on a frame; returns its pending output (1x1x288x288 logits).

    Args:
        clicks: 1xNx2 coordinates in model-input pixels and 1xN labels (1 / 0).
    """
    state.point_inputs.setdefault(obj_id, {})[frame_idx] = clicks
    state.mask_inputs.get(obj_id, set()).discard(frame_idx)
    is_init = frame_idx not in state.tracked
    prev = _object_output(state, obj_id, frame_idx)
    prev_logits = None
    if prev is not None:
        prev_logits = prev.pred_masks.clamp(-PREV_MASK_CLAMP, PREV_MASK_CLAMP)
    out = tracker.track_step(
        frame_idx,
        is_init,
        feats.expand(1),
        clicks,
        None,
        state.memory,
        num_frames,
        track_in_reverse=state.tracked.get(frame_idx, False),
        run_mem_encoder=False,
        prev_sam_mask_logits=prev_logits,
        use_prev_mem_frame=False,
    )
    out.pred_masks_high_res = None
    state.pending.setdefault(obj_id, {})[frame_idx] = out
    return out


def add_mask(
    tracker: Sam3Tracker,
    state: TrackerState,
    feats: FrameFeatures,
    frame_idx: int,
    obj_id: int,
    mask: Tensor,
    video_hw: tuple[int, int],
) -> TrackerFrameOutput:
    """A mask prompt for one object on a frame (official `Sam3TrackerPredictor.add_new_mask`,
    as `_recondition_masklets` uses it); returns its pending output.

    Args:
        mask: (S, S) bool, S = `input_mask_size` (1152).

    The mask is the output: at the video size (bilinear, antialiased, > 0.5) as +-1024 logits,
    brought back to the low-res grid (antialiased) when consolidated; here directly, as every
    caller consolidates before the next prompt of the state.
    """
    state.mask_inputs.setdefault(obj_id, set()).add(frame_idx)
    state.point_inputs.get(obj_id, {}).pop(frame_idx, None)
    m = mask[None, None].float()
    out = tracker.track_step(
        frame_idx,
        frame_idx not in state.tracked,
        feats.expand(1),
        None,
        m,
        state.memory,
        1,
        run_mem_encoder=False,
    )
    video = F.interpolate(m, size=video_hw, mode="bilinear", align_corners=False, antialias=True)
    logits = torch.where(video > 0.5, -NO_OBJ_SCORE, NO_OBJ_SCORE)
    lr = tracker.low_res_mask_size
    out.pred_masks = F.interpolate(
        logits, size=(lr, lr), mode="bilinear", align_corners=False, antialias=True
    )
    out.pred_masks_high_res = None
    state.pending.setdefault(obj_id, {})[frame_idx] = out
    return out


def object_video_mask(low_res: Tensor, video_hw: tuple[int, int], fill_hole_area: int) -> Tensor:
    """(H, W) bool mask of a 1x1xhxw click output: bilinear to the video size, small holes and
    specks filled (official `add_tracker_new_points`), > 0."""
    up = F.interpolate(low_res.float(), size=video_hw, mode="bilinear", align_corners=False)
    return fill_holes_in_mask_scores(up, fill_hole_area)[0, 0] > 0


def _empty_mask_ptr(tracker: Sam3Tracker, feats: FrameFeatures) -> Tensor:
    one = feats.expand(1)
    size = tracker.image_size
    empty = torch.zeros(1, 1, size, size, device=one.image_embed.device)
    return tracker.use_mask_as_output(one.image_embed, one.high_res_feats, empty).obj_ptr


def consolidate(
    tracker: Sam3Tracker, state: TrackerState, feats: FrameFeatures, frame_idx: int
) -> None:
    """Make the frame's pending click outputs part of the state's memory (see the module doc)."""
    lr = tracker.low_res_mask_size
    b = len(state.obj_ids)
    masks, ptrs, scores, ious = [], [], [], []
    empty_ptr = None
    for obj in state.obj_ids:
        out = _object_output(state, obj, frame_idx)
        if out is None:
            if empty_ptr is None:
                empty_ptr = _empty_mask_ptr(tracker, feats)
            masks.append(torch.full((1, 1, lr, lr), NO_OBJ_SCORE))
            ptrs.append(empty_ptr)
            scores.append(torch.full((1, 1), 10.0))
            ious.append(torch.zeros(1, 1))
            continue
        masks.append(out.pred_masks.float())
        ptrs.append(out.obj_ptr)
        scores.append(out.object_score_logits.reshape(1, 1))
        iou = out.iou_score if out.iou_score is not None else torch.zeros(1)
        ious.append(iou.reshape(1, 1).float())
    pred = torch.cat(masks)
    score = torch.cat(scores)
    size = tracker.image_size
    high = F.interpolate(pred, size=(size, size), mode="bilinear", align_corners=False)
    high = apply_non_overlapping_constraints(high)
    mem, pos = tracker.encode_new_memory(feats.expand(b).image_embed, high, score, True)
    state.memory.cond_frame_outputs[frame_idx] = TrackerFrameOutput(
        pred_masks=pred,
        obj_ptr=torch.cat(ptrs),
        object_score_logits=score,
        maskmem_features=mem.to(torch.bfloat16),
        maskmem_pos_enc=pos,
        iou_score=torch.cat(ious),
    )
    state.memory.non_cond_frame_outputs.pop(frame_idx, None)
    for per_obj in state.pending.values():
        per_obj.pop(frame_idx, None)
    if b == 1:  # official clear_non_cond_mem_around_input (single-object states only)
        hide_around(tracker, state, frame_idx)


def clear_detector_frames(state: TrackerState, obj_id: int, frame_idx: int) -> list[int]:
    """Clear the object's detector-mask-only conditioning frames near a click for every object
    of its state (official `clear_detector_added_cond_frame_in_tracker`); returns them."""
    clicked = state.point_inputs.get(obj_id, {})
    frames = sorted(
        f
        for f in state.mask_inputs.get(obj_id, set())
        if f not in clicked and abs(f - frame_idx) <= DETECTOR_FRAME_WINDOW
    )
    mem = state.memory
    for f in frames:
        for obj in state.obj_ids:
            state.mask_inputs.get(obj, set()).discard(f)
            state.point_inputs.get(obj, {}).pop(f, None)
            state.pending.get(obj, {}).pop(f, None)
        if f not in state.input_frames():
            out = mem.cond_frame_outputs.pop(f, None)
            if out is not None:
                mem.non_cond_frame_outputs[f] = out
                state.tracked.pop(f, None)
    return frames
