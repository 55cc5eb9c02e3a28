"""A SAM 3 video session's own detection thresholds (`start_session(...,
score_threshold_detection=, new_det_thresh=)`, what the web app's Find threshold and
`ConceptTracker.find(threshold=)` use): a session with thresholds gives exactly what a
predictor built with those thresholds gives, and bad values are refused. The tiny tracker and a
stand-in detector (`tests.video.sam3.tiny`) that keeps its detections above the threshold it is
given, as `FrameDetector.detect` does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from samkit.build.sam3_video import sam3_tracker_from_sizes
from samkit.video.sam3.predictor import Sam3VideoPredictor, Sam3VideoSettings
from tests.video.sam3 import tiny


class ThresholdDetector(tiny.StandInDetector):
    """Two detections scored 0.75 and 0.72, kept above `score_threshold` (its own or the
    session's)."""

    def __init__(self, score_threshold: float) -> None:
        super().__init__()
        self.score_threshold = score_threshold

    def detect(self, frame, text, prompt, allow_new_detections=True, score_threshold=None):
        det = super().detect(frame, text, prompt, allow_new_detections)
        thr = self.score_threshold if score_threshold is None else score_threshold
        k = det.scores > thr
        return dataclasses.replace(
            det, scores=det.scores[k], boxes_xyxy=det.boxes_xyxy[k], mask_logits=det.mask_logits[k]
        )


@pytest.fixture(scope="module")
def tracker():
    torch.manual_seed(0)
    t = sam3_tracker_from_sizes(1, 64, 1, d_model=tiny.D, mem_dim=16, image_size=tiny.SIZE)
    return t.eval()


def _predictor(tracker, det_threshold: float, new_det: float) -> Sam3VideoPredictor:
    st = Sam3VideoSettings(**{**tiny.SETTINGS, "new_det_thresh": new_det})
    return Sam3VideoPredictor(None, tracker, st, detector=ThresholdDetector(det_threshold))


def _run(p: Sam3VideoPredictor, frames, **thresholds) -> dict[int, dict]:
    sid = p.handle_request({"type": "start_session", "resource_path": frames, **thresholds})[
        "session_id"
    ]
    first = p.handle_request(
        {"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "x"}
    )
    req = {"type": "propagate_in_video", "session_id": sid, "propagation_direction": "forward"}
    out = {o["frame_index"]: o["outputs"] for o in p.handle_stream_request(req)}
    p.handle_request({"type": "close_session", "session_id": sid})
    return {0: first["outputs"], **{f: o for f, o in out.items() if f > 0}}


def test_session_thresholds_equal_predictor_settings(tracker) -> None:
    frames = tiny.frames(4)
    strict = _predictor(tracker, 0.9, 0.99)  # its own thresholds start nothing
    assert all(len(o["out_obj_ids"]) == 0 for o in _run(strict, frames).values())
    got = _run(strict, frames, score_threshold_detection=0.74, new_det_thresh=0.7)
    want = _run(_predictor(tracker, 0.74, 0.7), frames)
    assert sorted(got) == sorted(want) == [0, 1, 2, 3]
    assert len(got[0]["out_obj_ids"]) == 1  # the 0.75 detection, not the 0.72 one
    for f in want:
        for key in ("out_obj_ids", "out_probs", "out_boxes_xywh", "out_binary_masks"):
            np.testing.assert_array_equal(got[f][key], want[f][key], err_msg=f"{key} {f}")


@pytest.mark.parametrize(
    "bad",
    [{"score_threshold_detection": 1.5}, {"new_det_thresh": -0.1}, {"new_det_thresh": "0.5"},
     {"score_threshold_detection": True}, {"score_threshold_detection": float("nan")},
     {"score_threshold_detection": 0}, {"new_det_thresh": 1.0}],
    ids=repr,
)  # fmt: skip
def test_bad_session_thresholds(tracker, bad) -> None:
    p = _predictor(tracker, 0.5, 0.7)
    name = next(iter(bad))
    with pytest.raises(
        ValueError, match=f"{name} must be a number between 0 and 1 \\(exclusive\\)"
    ):
        p.handle_request({"type": "start_session", "resource_path": tiny.frames(1), **bad})
