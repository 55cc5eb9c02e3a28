"""Periodic reconditioning (official `Sam3VideoBase._recondition_masklets`): a track matched by
a high-confidence detection (score and IoU >= 0.8) whose object-score logit is > 0.8 gets the
detection's mask as a prompt on that frame. The recorded random-weight sessions never reach
these thresholds, so this checks the bookkeeping on the tiny setup with tracks forced onto the
detections."""

from __future__ import annotations

import torch

from samkit.video.sam3 import tracking
from tests.video.sam3 import tiny


def test_confident_track_is_reconditioned_with_its_detection(monkeypatch) -> None:
    p = tiny.predictor(recondition_every_nth_frame=2)
    p.detector.scores = torch.tensor([0.9, 0.85])
    masks = p.detector.masks
    real = tracking.propagate

    def on_the_detections(tracker, state, feats, frame, n, reverse, **kw):
        real(tracker, state, feats, frame, n, reverse, **kw)
        return masks.clone(), torch.tensor([5.0, 0.5])  # object 0 confident, object 1 not

    monkeypatch.setattr(tracking, "propagate", on_the_detections)
    sid = p.handle_request({"type": "start_session", "resource_path": tiny.frames(3)})["session_id"]
    p.handle_request({"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "x"})
    outs = list(
        p.handle_stream_request(
            {"type": "propagate_in_video", "session_id": sid, "propagation_direction": "forward"}
        )
    )
    assert [o["frame_index"] for o in outs] == [0, 1, 2]
    (state,) = p._sessions[sid].states
    assert state.obj_ids == [0, 1]
    # frame 2 (2 % 2 == 0): object 0 re-prompted with detection 0's mask, the state's frame
    # output consolidated (a conditioning frame with its memory), object 1 only re-encoded
    assert state.mask_inputs == {0: {0, 2}, 1: {0}}
    mem = state.memory
    assert sorted(mem.cond_frame_outputs) == [0, 2] and 2 not in mem.non_cond_frame_outputs
    out = mem.cond_frame_outputs[2]
    inside = masks[0] > 0
    assert (out.pred_masks[0, 0][inside] > 0).float().mean() > 0.95
    assert (out.pred_masks[0, 0][~inside] < 0).float().mean() > 0.95
    assert out.maskmem_features is not None and out.maskmem_features.dtype == torch.bfloat16
    # frame 1 is not a reconditioning frame
    assert 1 in mem.non_cond_frame_outputs and 1 not in mem.cond_frame_outputs
