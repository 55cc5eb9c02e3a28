"""SAM 3 video parity with the recorded official sessions (tests/fixtures/sam3_video), call by
call at the README's tolerances. The detector runs at full size on 1008 px frames: a frame costs
tens of seconds on a busy CPU, so each test replays as few frames as its check needs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.video.sam3.build import build_sam3_video_predictor
from samkit.video.sam3.frames import load_frames
from tests.video.sam3 import recorded as rec

pytestmark = [
    pytest.mark.skipif(
        not (rec.CHECKPOINT.is_file() and rec.FRAMES_DIR.is_dir()),
        reason="the SAM 3 tiny checkpoint or the SAM 2 video frames are not in ../shared",
    ),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def predictor():
    th = rec.session("text_forward_refine_remove")["thresholds"]
    return build_sam3_video_predictor(checkpoint_path=rec.CHECKPOINT, **th)


def _open(predictor, name: str) -> str:
    """Open a session on the recorded clip (frames cost nothing until the detector runs)."""
    return predictor.handle_request(
        {"type": "start_session", "resource_path": rec.frames(), "session_id": name}
    )["session_id"]


def test_frames_are_loaded_as_the_official_video_loader_does() -> None:
    fr = load_frames(rec.frames())
    assert fr.images.dtype == torch.float16 and fr.images.shape == (4, 3, 1008, 1008)
    assert (fr.video_height, fr.video_width) == tuple(rec.MANIFEST["video_hw"])
    assert float(fr.images.min()) >= -1 and float(fr.images.max()) <= 1


def test_text_prompt_matches_official_detection_and_outputs(predictor) -> None:
    """c01 (add_prompt text): the detector pass (pre-NMS logits, presence, boxes, NMS keeps,
    detections, their 288x288 logits) and the returned frame (ids, scores, boxes, masks)."""
    name = "text_forward_refine_remove"
    c01 = rec.call(name, "c01")
    z = rec.arrays(name)
    sid = _open(predictor, name)
    seen = []
    orig = predictor.detector.detect

    def spy(*a, **k):
        seen.append(orig(*a, **k))
        return seen[-1]

    predictor.detector.detect = spy
    try:
        resp = predictor.handle_request({**c01["request"], "session_id": sid})
    finally:
        del predictor.detector.detect
    assert resp["frame_index"] == c01["response"]["frame_index"]
    (ev,) = [e for e in c01["events"] if e["kind"] == "detect"]
    (d,) = seen
    p = f"c01_{ev['key']}_"
    tol = rec.ATOL_QUERY_LOGITS
    np.testing.assert_allclose(d.query_logits.numpy(), z[p + "query_logits"], atol=tol)
    np.testing.assert_allclose(d.presence_logit.numpy(), z[p + "presence_logit"], atol=tol)
    np.testing.assert_allclose(
        d.query_boxes_xyxy.numpy(), z[p + "query_boxes_xyxy"], atol=rec.ATOL_BOXES_NORM
    )
    np.testing.assert_array_equal(d.nms_keep.numpy(), z[p + "nms_keep"])
    np.testing.assert_allclose(d.scores.numpy(), z[p + "det_scores"], atol=rec.ATOL_SCORES)
    np.testing.assert_allclose(
        d.boxes_xyxy.numpy(), z[p + "det_boxes_xyxy"], atol=rec.ATOL_BOXES_NORM
    )
    ls = rec.MANIFEST["logit_stride"]
    mine = d.mask_logits[:, ::ls, ::ls].numpy()
    assert np.allclose(mine, z[p + "det_mask_logits"].astype(np.float32), rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(
        d.mask_logits.abs().flatten(1).amax(1).numpy(), z[p + "det_mask_logits_absmax"], atol=1e-4
    )
    (plan,) = [e for e in c01["events"] if e["kind"] == "plan"]
    (out,) = c01["outputs"]
    assert list(resp["outputs"]["out_obj_ids"]) == out["obj_ids"] == plan["new_det_obj_ids"]
    rec.check_frame_outputs(resp["outputs"], z, f"c01_f{out['frame']:03d}_")
    assert predictor.handle_request({"type": "close_session", "session_id": sid}) == {
        "is_success": True
    }


def test_text_both_ways_session_replays_call_by_call(predictor) -> None:
    """add_prompt text on frame 1, propagate "both" from 1: forward 1-3 then backward 0; new
    objects mid-clip (frames 2, 3 and 0 in reverse), a duplicate started when a track's mask
    is empty; every yielded frame's ids, scores, boxes and masks."""
    name = "text_both_ways"
    keys = [c["key"] for c in rec.session(name)["calls"]]
    assert rec.replay(predictor, name, keys) == keys


def test_exemplar_box_session_replays_call_by_call() -> None:
    """add_prompt with one exemplar box (no text): the detector reads "visual" with the box on
    frame 0 and detects nothing on later frames; propagate forward for 2 frames; reset."""
    name = "exemplar_box"
    th = rec.session(name)["thresholds"]
    predictor = build_sam3_video_predictor(checkpoint_path=rec.CHECKPOINT, **th)
    keys = [c["key"] for c in rec.session(name)["calls"]]
    assert rec.replay(predictor, name, keys) == keys


def test_bad_requests_are_clear_errors(predictor) -> None:
    with pytest.raises(ValueError, match="unknown session"):
        predictor.handle_request({"type": "add_prompt", "session_id": "nope", "frame_index": 0})
    with pytest.raises(ValueError, match="unknown request type"):
        predictor.handle_request({"type": "explode"})
    sid = predictor.handle_request({"type": "start_session", "resource_path": rec.frames()})[
        "session_id"
    ]
    with pytest.raises(ValueError, match="outside the video"):
        predictor.handle_request(
            {"type": "add_prompt", "session_id": sid, "frame_index": 4, "text": "person"}
        )
    with pytest.raises(ValueError, match="non-empty string"):
        predictor.handle_request(
            {"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "  "}
        )
    assert predictor.handle_request({"type": "reset_session", "session_id": sid}) == {
        "is_success": True
    }
    bad = [
        ({"type": "propagate_in_video", "session_id": sid}, ValueError, "handle_stream_request"),
        ({"type": "remove_object", "session_id": sid, "obj_id": 3}, ValueError, "unknown object"),
        (
            {
                "type": "add_prompt",
                "session_id": sid,
                "frame_index": 0,
                "bounding_boxes": [[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1]],
                "bounding_box_labels": [1, 1],
            },
            ValueError,
            "exactly one",
        ),
        (
            {
                "type": "add_prompt",
                "session_id": sid,
                "frame_index": 0,
                "bounding_boxes": [[0.95, 0.1, 0.2, 0.2]],
                "bounding_box_labels": [1],
            },
            ValueError,
            "lie in",
        ),
        (
            {
                "type": "add_prompt",
                "session_id": sid,
                "frame_index": 0,
                "points": [[0.5, 0.5]],
                "point_labels": [1],
                "obj_id": 0,
            },
            NotImplementedError,
            "click",
        ),
    ]
    for req, err, msg in bad:
        with pytest.raises(err, match=msg):
            predictor.handle_request(req)
    stream = {"type": "propagate_in_video", "session_id": sid, "propagation_direction": "up"}
    with pytest.raises(ValueError, match="propagation_direction"):
        list(predictor.handle_stream_request(stream))
    with pytest.raises(ValueError, match="add a prompt"):
        list(predictor.handle_stream_request({**stream, "propagation_direction": "forward"}))
    predictor.handle_request({"type": "close_session", "session_id": sid})
    with pytest.raises(ValueError, match="unknown session"):
        predictor.handle_request({"type": "close_session", "session_id": sid})
