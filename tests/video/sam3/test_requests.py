"""Bad SAM 3 video requests get a ValueError naming what is expected (no detector pass runs:
every request here is refused before the model is used)."""

from __future__ import annotations

import pytest

from samkit.video.sam3.build import build_sam3_video_predictor
from tests.video.sam3 import recorded as rec

pytestmark = pytest.mark.skipif(
    not (rec.CHECKPOINT.is_file() and rec.FRAMES_DIR.is_dir()),
    reason="the SAM 3 tiny checkpoint or the SAM 2 video frames are not in ../shared",
)


@pytest.fixture(scope="module")
def predictor():
    return build_sam3_video_predictor(checkpoint_path=rec.CHECKPOINT)


@pytest.fixture(scope="module")
def sid(predictor):
    """One session for every refused request (a refused request changes nothing)."""
    return predictor.handle_request({"type": "start_session", "resource_path": rec.frames()})[
        "session_id"
    ]


def _prompt(sid: str, **kw) -> dict:
    return {"type": "add_prompt", "session_id": sid, "frame_index": 0, **kw}


CLICK = {"points": [[0.5, 0.5]], "point_labels": [1], "obj_id": 0}
BOX = {"bounding_boxes": [[0.1, 0.1, 0.2, 0.2]], "bounding_box_labels": [1]}


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"frame_index": 4, "text": "person"}, r"frame_index 4 is outside the video \(0..3\)"),
        ({"frame_index": -1, "text": "person"}, "outside the video"),
        ({"frame_index": 1.0, "text": "person"}, "frame_index must be an int"),
        ({"text": "  "}, "text must be a non-empty string"),
        ({"text": 3}, "text must be a non-empty string"),
        ({}, "needs a text or bounding_boxes"),
        ({"text": "person", "obj_id": 1}, "obj_id is only used with points"),
        ({**CLICK, "text": "person"}, "either points .* or text"),
        ({**CLICK, **BOX}, "either points .* or text"),
        ({"points": [[0.5, 0.5]], "point_labels": [1]}, "points need the obj_id"),
        ({"point_labels": [1], "obj_id": 0}, "point_labels were given without points"),
        ({**CLICK, "obj_id": -1}, "obj_id must be an integer >= 0"),
        ({**CLICK, "obj_id": "a"}, "obj_id must be an integer >= 0"),
        ({**CLICK, "points": []}, r"non-empty list of \[x, y\] pairs"),
        ({**CLICK, "points": [0.5, 0.5]}, r"shape \(N, 2\)"),
        ({**CLICK, "points": [[0.5, 0.5, 1.0]]}, r"shape \(N, 2\)"),
        ({**CLICK, "points": [[1.5, 0.5]]}, r"lie in \[0, 1\]"),
        ({**CLICK, "points": [[float("nan"), 0.5]]}, "finite"),
        ({**CLICK, "points": [["a", 0.5]]}, "numbers"),
        ({**CLICK, "point_labels": None}, "points need point_labels"),
        ({**CLICK, "point_labels": [1, 0]}, "1 values 0 .negative. or 1"),
        ({**CLICK, "point_labels": [2]}, "values 0 .negative. or 1"),
        ({**BOX, "bounding_boxes": [[0.1, 0.1, 0.2]]}, r"exactly one \[x, y, w, h\]"),
        ({**BOX, "bounding_boxes": [[0.95, 0.1, 0.2, 0.2]]}, r"lie in \[0, 1\]"),
        ({**BOX, "bounding_boxes": [[0.1, 0.1, 0.2, 0.2]] * 2}, "exactly one"),
        ({**BOX, "bounding_box_labels": [3]}, "one label 0 or 1"),
        ({**BOX, "bounding_boxes": "box"}, "numbers"),
    ],
)
def test_bad_add_prompt(predictor, sid, kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        predictor.handle_request(_prompt(sid, **kw))


def test_bad_session_object_and_propagation_requests(predictor, sid) -> None:
    req = predictor.handle_request
    with pytest.raises(ValueError, match="unknown session 'nope'; open one with start_session"):
        req(_prompt("nope", text="person"))
    with pytest.raises(ValueError, match="unknown request type 'explode'"):
        req({"type": "explode"})
    with pytest.raises(ValueError, match="a dict with a 'type'"):
        req(["start_session"])
    with pytest.raises(ValueError, match=r"add_prompt has no field\(s\) \['txt'\]; its fields"):
        req({"type": "add_prompt", "session_id": sid, "frame_index": 0, "txt": "person"})
    with pytest.raises(ValueError, match=r"add_prompt needs the field\(s\) \['frame_index'\]"):
        req({"type": "add_prompt", "session_id": sid, "text": "person"})
    with pytest.raises(ValueError, match=r"start_session needs the field\(s\) \['resource_path'\]"):
        req({"type": "start_session"})
    with pytest.raises(ValueError, match="already exists"):
        req({"type": "start_session", "resource_path": rec.frames(), "session_id": sid})
    with pytest.raises(ValueError, match=r"not a folder of frames|no such"):
        req({"type": "start_session", "resource_path": "/nonexistent/frames"})
    with pytest.raises(ValueError, match=r"unknown object id 3; tracked: \[\]"):
        req({"type": "remove_object", "session_id": sid, "obj_id": 3})
    with pytest.raises(ValueError, match="use handle_stream_request"):
        req({"type": "propagate_in_video", "session_id": sid})
    stream = {"type": "propagate_in_video", "session_id": sid}
    bad = [
        ({"propagation_direction": "up"}, "propagation_direction must be 'both', 'forward'"),
        ({}, "add a prompt before propagate_in_video"),
        ({"start_frame_index": 9}, r"start_frame_index 9 is outside the video \(0..3\)"),
        ({"start_frame_index": 0, "max_frame_num_to_track": -1}, "an int >= 0"),
    ]
    for kw, match in bad:
        with pytest.raises(ValueError, match=match):
            list(predictor.handle_stream_request({**stream, **kw}))
    with pytest.raises(ValueError, match="answers propagate_in_video, not 'reset_session'"):
        list(predictor.handle_stream_request({"type": "reset_session", "session_id": sid}))
    assert req({"type": "reset_session", "session_id": sid}) == {"is_success": True}
    assert req({"type": "close_session", "session_id": sid}) == {"is_success": True}
    with pytest.raises(ValueError, match="unknown session"):
        req({"type": "close_session", "session_id": sid})
