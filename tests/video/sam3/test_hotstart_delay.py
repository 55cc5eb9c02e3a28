"""The hotstart delay of SAM 3 video's full pass at its smallest settings: a delay of 0, like a
delay of 1, releases each frame's outputs as soon as the frame ran (the official
`Sam3VideoInferenceWithInstanceInteractivity` yields at once there), on the tiny setup of
`tests.video.sam3.tiny` (no hotstart removal, so both delays give the same outputs)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.video.sam3 import tiny


def _released(delay: int) -> list[tuple[int, int, dict]]:
    """(frame, frames run so far, outputs) per output of a forward pass over 5 frames."""
    p = tiny.predictor(hotstart_delay=delay)
    # the random tracker's object scores sit just below 0; lift them so objects stay visible
    p.tracker.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.data += 0.3
    sid = p.handle_request({"type": "start_session", "resource_path": tiny.frames(5)})["session_id"]
    p.handle_request({"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "blob"})
    det = p.engine.detector
    start = det.calls
    req = {"type": "propagate_in_video", "session_id": sid, "propagation_direction": "forward"}
    return [
        (o["frame_index"], det.calls - start, o["outputs"]) for o in p.handle_stream_request(req)
    ]


@pytest.mark.parametrize("delay", [0, 1])
def test_small_delay_releases_each_frame_at_once(delay: int) -> None:
    out = _released(delay)
    assert [f for f, _, _ in out] == [0, 1, 2, 3, 4]
    # frame f is yielded right after the loop ran on it (one detector pass per frame)
    assert [n for _, n, _ in out] == [1, 2, 3, 4, 5]
    assert all(len(o["out_obj_ids"]) == 2 for _, _, o in out)


def test_delay_0_outputs_equal_delay_1() -> None:
    for (f0, _, a), (f1, _, b) in zip(_released(0), _released(1), strict=True):
        assert f0 == f1
        for k in ("out_obj_ids", "out_probs", "out_boxes_xywh", "out_binary_masks"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"frame {f0} {k}")


def test_delay_3_holds_back_two_frames() -> None:
    out = _released(3)
    assert [f for f, _, _ in out] == [0, 1, 2, 3, 4]
    assert [n for _, n, _ in out] == [3, 4, 5, 5, 5]  # the last two flushed at the end
