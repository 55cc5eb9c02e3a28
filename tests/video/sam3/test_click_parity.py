"""The click path of the recorded session `text_forward_refine_remove` on two backbone passes
(the quick check of the default run; the slow test replays the whole session): object 4 was
started with object 3 from frame 2's detections (their tracker state depends on nothing else),
two clicks refine it on frame 2 (c03), and the partial propagation tracks that state over
frames 2 and 3 (c04). The click's logits and object score and both frames' tracker logits and
scores must match the recorded ones at the README's `trk_*` tolerances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.modeling.video_memory import FrameFeatures
from samkit.video.sam3 import clicks, tracking
from samkit.video.sam3.build import build_sam3_video_predictor
from samkit.video.sam3.frames import load_frames
from samkit.video.sam3.postprocess import fill_holes_in_mask_scores
from samkit.video.sam3.prompts import click_prompt
from tests.video.sam3 import recorded as rec

pytestmark = pytest.mark.skipif(
    not (rec.CHECKPOINT.is_file() and rec.FRAMES_DIR.is_dir()),
    reason="the SAM 3 tiny checkpoint or the SAM 2 video frames are not in ../shared",
)

NAME = "text_forward_refine_remove"


def _event(key: str, kind: str, frame: int) -> dict:
    return next(
        e for e in rec.call(NAME, key)["events"] if e["kind"] == kind and e.get("frame") == frame
    )


def test_click_refinement_and_partial_pass_match_the_recording() -> None:
    z = rec.arrays(NAME)
    p = build_sam3_video_predictor(
        checkpoint_path=rec.CHECKPOINT, **rec.session(NAME)["thresholds"]
    )
    frames = load_frames(rec.frames())
    hw = (frames.video_height, frames.video_width)
    with torch.inference_mode():
        d2 = p.detector.detect(frames[2], "person", None)
        rec.check_detection(d2, z, f"c02_{_event('c02', 'detect', 2)['key']}_")
        events = rec.call(NAME, "c02")["events"]
        plan = _event("c02", "plan", 2)
        assoc = events[events.index(plan) - 1]
        assert assoc["kind"] == "associate" and assoc["new_det_inds"] == [0, 1]
        assert plan["new_det_obj_ids"] == [3, 4]
        tracker = p.tracker
        feats2 = tracking.frame_features(d2)
        state = tracking.start_objects(tracker, feats2, 2, [3, 4], d2.mask_logits, hw)

        req = rec.call(NAME, "c03")["request"]
        assert req["obj_id"] == 4
        prompt = click_prompt(req["points"], req["point_labels"], tracker.image_size)
        out = clicks.add_points(tracker, state, feats2, 2, 4, prompt, 4)
        e = _event("c03", "tracker_points", 2)
        pre = f"c03_{e['key']}_"
        rec.check_logits(out.pred_masks[:, 0], z[pre + "points_mask_logits"], pre)
        np.testing.assert_allclose(
            out.object_score_logits.reshape(-1).numpy(),
            z[pre + "points_obj_score_logits"],
            atol=2e-5,
        )
        clicks.consolidate(tracker, state, feats2, 2)
        assert clicks.clear_detector_frames(state, 4, 2) == []  # frame 2 now has clicks

        fpn, pos = p.detector.tracker_features(frames[3])
        feats3 = FrameFeatures(fpn[2], pos, [fpn[0], fpn[1]])
        for f, feats in ((2, feats2), (3, feats3)):
            low, score = tracking.propagate(
                tracker, state, feats, f, 4, False, run_mem_encoder=True
            )
            e = _event("c04", "track", f)
            pre = f"c04_{e['key']}_"
            assert e["obj_ids"] == state.obj_ids == [3, 4]
            rec.check_logits(
                fill_holes_in_mask_scores(low[:, None], 16)[:, 0], z[pre + "trk_mask_logits"], pre
            )
            np.testing.assert_allclose(score.numpy(), z[pre + "trk_obj_score_logits"], atol=2e-5)
