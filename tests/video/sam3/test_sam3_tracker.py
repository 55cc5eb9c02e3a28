"""SAM 3's tracker (`Sam3Tracker`): the checkpoint's `tracker.*` tensors load unchanged, and
the tracker half of the recorded session `text_forward_refine_remove` (object 0 started from
its frame-0 detection, its frame-0 output, memory update, and its tracked frame 1) matches the
official numbers at the README's tolerances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.build.sam3 import build_sam3_image_model
from samkit.build.sam3_video import build_sam3_tracker
from samkit.modeling.sam3.tracker import Sam3Tracker, samkit_to_official_key
from samkit.video.sam3 import tracking
from samkit.video.sam3.detect import FrameDetector
from samkit.video.sam3.frames import load_frames
from samkit.video.sam3.postprocess import fill_holes_in_mask_scores
from tests.video.sam3 import recorded as rec

pytestmark = pytest.mark.skipif(
    not rec.CHECKPOINT.is_file(), reason="the SAM 3 tiny checkpoint is not in ../shared"
)


@pytest.fixture(scope="module")
def checkpoint() -> dict[str, torch.Tensor]:
    return torch.load(rec.CHECKPOINT, weights_only=True)["model"]


def test_tracker_loads_every_tracker_tensor_unchanged(checkpoint) -> None:
    tracker = build_sam3_tracker(checkpoint)
    assert isinstance(tracker, Sam3Tracker)
    back = {"tracker." + samkit_to_official_key(k): v for k, v in tracker.state_dict().items()}
    official = {k for k in checkpoint if k.startswith("tracker.")}
    assert set(back) == official
    for k in official:
        assert torch.equal(back[k], checkpoint[k]), k
    assert tracker.low_res_mask_size == 288 and tracker.input_mask_size == 1152


def test_tracker_refuses_incomplete_tensors(checkpoint) -> None:
    detector_only = {k: v for k, v in checkpoint.items() if k.startswith("detector.")}
    with pytest.raises(ValueError, match="no tracker"):
        build_sam3_tracker(detector_only)
    broken = {k: v for k, v in checkpoint.items() if "obj_ptr_proj.layers.2" not in k}
    with pytest.raises(ValueError, match="missing"):
        build_sam3_tracker(broken)


@pytest.mark.slow
def test_object_started_from_a_detection_tracks_like_official(checkpoint) -> None:
    """c02 events e01 (frame 0: the conditioning output) and e05 (frame 1: tracked with the
    frame-0 memory, re-encoded after the frame-0 step)."""
    name = "text_forward_refine_remove"
    z = rec.arrays(name)
    th = rec.session(name)["thresholds"]
    detector = FrameDetector(
        build_sam3_image_model(checkpoint_path=rec.CHECKPOINT),
        th["score_threshold_detection"],
        th["det_nms_thresh"],
    )
    tracker = build_sam3_tracker(checkpoint)
    frames = load_frames(rec.frames()[:2])
    hw = (frames.video_height, frames.video_width)
    ls = rec.MANIFEST["logit_stride"]
    with torch.inference_mode():
        d0 = detector.detect(frames[0], "person", None)
        f0 = tracking.frame_features(d0)
        state = tracking.start_objects(tracker, f0, 0, [0], d0.mask_logits, hw)
        steps = [("e01", 0, f0)]
        d1 = detector.detect(frames[1], "person", None)
        steps.append(("e05", 1, tracking.frame_features(d1)))
        for key, frame, feats in steps:
            low, scores = tracking.propagate(tracker, state, feats, frame, 4, False)
            low = fill_holes_in_mask_scores(low[:, None], 16)[:, 0]
            p = f"c02_{key}_"
            ref = z[p + "trk_mask_logits"].astype(np.float32)
            assert np.allclose(low[:, ::ls, ::ls].numpy(), ref, rtol=1e-2, atol=2e-4), p
            np.testing.assert_allclose(
                low.abs().flatten(1).amax(1).numpy(), z[p + "trk_mask_logits_absmax"], rtol=1e-3
            )
            np.testing.assert_allclose(scores.numpy(), z[p + "trk_obj_score_logits"], atol=2e-5)
            tracking.update_memories(tracker, [state], feats, frame, low)
