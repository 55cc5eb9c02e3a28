"""One frame of SAM 3's detector-tracker loop (official `Sam3VideoBase._det_track_one_frame`,
sam3 0.1.4; the fixture README's "One frame of propagation" lists the rules with their sources).

Detect on the frame; propagate every tracker state one frame (hole-filled 288x288 logits);
associate detections with tracks by mask IoU; give new ids to unmatched confident detections;
apply the hotstart rules; suppress tracks that overlap a more recently occluded one; re-encode
the frame's memories; start the new objects; build the frame's masks. Every
`recondition_every_nth_frame` frames a confidently matched track is re-prompted with its
detection's mask (`recondition`; the recorded random-weight sessions never reach its 0.8
thresholds, so it is checked for its bookkeeping only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.modeling.sam3.tracker import Sam3Tracker
from samkit.modeling.video_memory import FrameFeatures
from samkit.video.sam3 import clicks, tracking
from samkit.video.sam3.detect import FrameDetections, mask_iou
from samkit.video.sam3.postprocess import fill_holes_in_mask_scores, video_res_binary
from samkit.video.sam3.session import Sam3VideoSession, TrackMetadata

HIGH_CONF = 0.8  # official `_associate_det_trk` / `_recondition_masklets`
HIGH_IOU = 0.8
NEVER_OCCLUDED = -1
ALWAYS_OCCLUDED = 100000
SUPPRESSED_LOGIT = -10.0
REMOVED_SCORE = -1e4


@dataclass(frozen=True)
class LoopSettings:
    """The heuristics of the loop (official names; `build_sam3_video_model` values)."""

    new_det_thresh: float = 0.7
    assoc_iou_thresh: float = 0.1
    trk_assoc_iou_thresh: float = 0.5
    fill_hole_area: int = 16
    hotstart_delay: int = 15
    hotstart_unmatch_thresh: int = 8
    hotstart_dup_thresh: int = 8
    init_trk_keep_alive: int = 30
    max_trk_keep_alive: int = 30
    min_trk_keep_alive: int = -1
    suppress_unmatched_only_within_hotstart: bool = True
    occlusion_iou_thresh: float = 0.7
    recondition_every_nth_frame: int = 16


@dataclass
class Association:
    """`_associate_det_trk`'s decisions (detection indices in query order)."""

    new_dets: list[int]
    unmatched: list[int]
    empty: list[int]
    matched: dict[int, list[int]]
    high_conf: dict[int, int]
    ious: np.ndarray | None


@dataclass
class FrameResult:
    """One frame's outcome: masks by object id (video resolution), the frame's removals and
    suppressions (official `_run_single_frame_inference` output)."""

    masks: dict[int, Tensor]
    removed: set[int]
    suppressed: set[int]


def associate(
    det_logits: Tensor,
    det_scores: np.ndarray,
    trk_logits: Tensor,
    trk_ids: list[int],
    st: LoopSettings,
) -> Association:
    """Match detections (K, h, w) with tracks (M, h, w) by binary-mask IoU."""
    if not trk_ids:
        return Association(list(range(det_logits.shape[0])), [], [], {}, {}, None)
    nonempty = (trk_logits > 0).flatten(1).any(1).numpy()
    if det_logits.shape[0] == 0:
        un = [i for i, ne in zip(trk_ids, nonempty) if ne]
        em = [i for i, ne in zip(trk_ids, nonempty) if not ne]
        return Association([], un, em, {}, {}, None)
    ious = mask_iou(det_logits > 0, trk_logits > 0).numpy()
    ids = np.asarray(trk_ids)
    matched_trk = (ious >= st.trk_assoc_iou_thresh).any(axis=0)
    is_new = (det_scores >= st.new_det_thresh) & ~(ious >= st.assoc_iou_thresh).any(axis=1)
    high = set(np.flatnonzero((det_scores >= HIGH_CONF) & ~is_new & (ious.max(1) >= HIGH_IOU)))
    best = ious.argmax(axis=1)
    matched, high_conf = {}, {}
    for d in range(det_logits.shape[0]):
        matched[d] = [int(i) for i in ids[ious[d] >= st.assoc_iou_thresh]]
        if d in high:
            high_conf[int(ids[best[d]])] = d
    return Association(
        new_dets=[int(i) for i in np.flatnonzero(is_new)],
        unmatched=[int(i) for i in ids[nonempty & ~matched_trk]],
        empty=[int(i) for i in ids[~nonempty]],
        matched=matched,
        high_conf=high_conf,
        ious=ious,
    )


def hotstart(
    meta: TrackMetadata,
    frame: int,
    reverse: bool,
    a: Association,
    new_ids: list[int],
    st: LoopSettings,
) -> set[int]:
    """The official `_process_hotstart`: keep-alive counters, unmatched / duplicate removals
    within the hotstart window. Returns the ids newly removed on this frame."""
    removed_now: set[int] = set()
    window = frame + st.hotstart_delay if reverse else frame - st.hotstart_delay

    def within(obj: int) -> bool:
        first = meta.first_frame[obj]
        return first < window if reverse else first > window

    for obj in new_ids:
        meta.first_frame.setdefault(obj, frame)
        meta.keep_alive[obj] = st.init_trk_keep_alive
    for obj in {o for objs in a.matched.values() for o in objs}:
        meta.keep_alive[obj] = min(st.max_trk_keep_alive, meta.keep_alive[obj] + 1)
    for obj in a.unmatched:
        meta.unmatched_frames[obj].append(frame)
        meta.keep_alive[obj] = max(st.min_trk_keep_alive, meta.keep_alive[obj] - 1)
    for obj, frames in meta.unmatched_frames.items():
        if obj in meta.removed or obj in removed_now:
            continue
        if len(frames) >= st.hotstart_unmatch_thresh and within(obj):
            removed_now.add(obj)
        if (
            meta.keep_alive[obj] <= 0
            and not st.suppress_unmatched_only_within_hotstart
            and obj not in meta.removed
            and obj not in removed_now
        ):
            meta.suppressed[frame].add(obj)
    for objs in a.matched.values():
        if len(objs) < 2:
            continue
        pick = max if reverse else min
        first = pick(objs, key=lambda o: meta.first_frame[o])
        for obj in objs:
            if obj != first:
                meta.overlap_frames[(first, obj)].append(frame)
    for (_, obj), frames in meta.overlap_frames.items():
        if obj in meta.removed or obj in removed_now:
            continue
        if within(obj) and len(frames) >= st.hotstart_dup_thresh:
            removed_now.add(obj)
    meta.removed |= removed_now
    return removed_now


def suppress_occluded(
    meta: TrackMetadata,
    frame: int,
    reverse: bool,
    trk_ids: list[int],
    low: Tensor,
    removed_now: set[int],
    st: LoopSettings,
) -> Tensor:
    """The official `_suppress_overlapping_based_on_recent_occlusion`; updates
    `meta.last_occluded` and returns the logits with suppressed tracks set to -10."""
    binary = low > 0
    last = torch.tensor(
        [
            meta.last_occluded.get(o, ALWAYS_OCCLUDED if o in removed_now else NEVER_OCCLUDED)
            for o in trk_ids
        ],
        dtype=torch.long,
    )
    suppress = torch.zeros(len(trk_ids), dtype=torch.bool)
    if len(trk_ids) > 1:
        pairs = torch.triu(mask_iou(binary, binary) >= st.occlusion_iou_thresh, diagonal=1)
        li, lj = last[:, None], last[None, :]
        later = torch.lt if reverse else torch.gt
        sup_i = pairs & later(li, lj) & (lj > -1)
        sup_j = pairs & later(lj, li) & (li > -1)
        suppress = sup_i.any(dim=1) | sup_j.any(dim=0)
    occluded = ~binary.flatten(1).any(1) | suppress
    last[occluded] = frame
    meta.last_occluded = {o: int(last[i]) for i, o in enumerate(trk_ids)}
    low = low.clone()
    low[suppress] = SUPPRESSED_LOGIT
    return low


def recondition(
    tracker: Sam3Tracker,
    s: Sam3VideoSession,
    feats: FrameFeatures,
    frame: int,
    high_conf: dict[int, int],
    det_logits: Tensor,
    trk_ids: list[int],
    trk_score: Tensor,
    video_hw: tuple[int, int],
) -> list[int]:
    """The official periodic `_recondition_masklets`: a track matched by a high-confidence
    detection whose object-score logit is > 0.8 gets that detection's mask (288 logits,
    bilinear to 1152, > 0) as a mask prompt on this frame, and its state's frame output is
    consolidated (memory encoded); returns the reconditioned objects."""
    done = []
    s_in = tracker.input_mask_size
    for obj, d in high_conf.items():
        if float(trk_score[trk_ids.index(obj)]) <= HIGH_CONF:
            continue
        up = F.interpolate(
            det_logits[d : d + 1, None].float(),
            size=(s_in, s_in),
            mode="bilinear",
            align_corners=False,
        )
        for state in s.states:
            if obj in state.obj_ids:
                clicks.add_mask(tracker, state, feats, frame, obj, up[0, 0] > 0, video_hw)
                clicks.consolidate(tracker, state, feats, frame)
                done.append(obj)
    return done


def det_track_one_frame(
    tracker: Sam3Tracker,
    s: Sam3VideoSession,
    det: FrameDetections,
    frame: int,
    reverse: bool,
    st: LoopSettings,
) -> FrameResult:
    """Run the loop on one frame of session `s` (updates its states and metadata)."""
    meta = s.meta
    feats = tracking.frame_features(det)
    trk_ids = list(meta.obj_ids)
    lows, trk_scores = [], []
    for state in s.states:
        low, sc = tracking.propagate(tracker, state, feats, frame, s.track_len, reverse)
        lows.append(low)
        trk_scores.append(sc)
    lr = tracker.low_res_mask_size
    low = torch.cat(lows) if lows else torch.zeros(0, lr, lr)
    trk_score = torch.cat(trk_scores) if trk_scores else torch.zeros(0)
    low = fill_holes_in_mask_scores(low[:, None], st.fill_hole_area)[:, 0]
    det_scores = det.scores.float().numpy()
    a = associate(det.mask_logits, det_scores, low, trk_ids, st)
    new_ids = list(range(meta.max_obj_id + 1, meta.max_obj_id + 1 + len(a.new_dets)))
    removed_now = hotstart(meta, frame, reverse, a, new_ids, st)
    if (
        st.recondition_every_nth_frame > 0
        and frame % st.recondition_every_nth_frame == 0
        and a.high_conf
    ):
        hw = (int(s.frames.video_height), int(s.frames.video_width))
        recondition(tracker, s, feats, frame, a.high_conf, det.mask_logits, trk_ids, trk_score, hw)
    if trk_ids:
        low = suppress_occluded(meta, frame, reverse, trk_ids, low, removed_now, st)
        tracking.update_memories(tracker, s.states, feats, frame, low)
    else:
        meta.last_occluded = {}
    # metadata after the plan
    obj_ids = trk_ids + new_ids
    meta.obj_ids = [o for o in obj_ids if o not in removed_now]
    for o, d in zip(new_ids, a.new_dets):
        meta.score[o] = float(det_scores[d])
        meta.tracker_score[frame][o] = float(det_scores[d])
    if new_ids:
        meta.max_obj_id = max(meta.max_obj_id, max(new_ids))
    for o in removed_now:
        meta.score[o] = REMOVED_SCORE
        meta.tracker_score[frame][o] = REMOVED_SCORE
        meta.last_occluded.pop(o, None)
    # execution: new objects, removals
    hw = (s.frames.video_height, s.frames.video_width)
    if new_ids:
        s.states.append(
            tracking.start_objects(tracker, feats, frame, new_ids, det.mask_logits[a.new_dets], hw)
        )
    if removed_now:
        tracking.remove_objects(s.states, removed_now)
    # outputs
    masks = dict(zip(trk_ids, video_res_binary(low, hw)))
    new_low = fill_holes_in_mask_scores(
        det.mask_logits[a.new_dets].float()[:, None], st.fill_hole_area
    )[:, 0]
    masks.update(zip(new_ids, video_res_binary(new_low, hw)))
    if trk_ids:
        meta.tracker_score[frame].update(zip(trk_ids, trk_score.sigmoid().tolist()))
    return FrameResult(masks, set(meta.removed), set(meta.suppressed[frame]))
