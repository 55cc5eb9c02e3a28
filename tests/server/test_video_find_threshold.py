"""The video Find box's detection score threshold on a real uvicorn server with SAM 3 (the
sam3_tiny random weights, whose queries score about 0.23, as the 336 px checkpoint of the product
tests: the `sam3_small` fixture, tests/fixtures/sam3_small.py, 24x24 tokens instead of 72x72):
`POST /api/videos/{id}/find` with `threshold` detects and starts objects at that threshold,
without it at the server's (official 0.5 / 0.7: nothing here, with a message saying what to try),
and a threshold that is not a number in (0, 1) gets a 422 with the reason before any model work.
Two detector passes in all (2 frames of the SAM 2 video fixture, encoded losslessly)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from samkit.server.app import create_app
from samkit.server.video_session import VideoLimits
from tests.conftest import FIXTURES
from tests.server.conftest import live_server
from tests.video.clips import encode_video
from tests.video.conftest import fixture_arrays

CKPT = FIXTURES / "sam3_tiny" / "sam3_tiny.pt"
N, H, W = 2, 540, 960
LOW = 0.228  # below the random weights' best scores (about 0.23): a few instances
pytestmark = [
    pytest.mark.skipif(not CKPT.is_file(), reason="no ../shared/fixtures/sam3_tiny"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return fixture_arrays()[:N]  # the SAM 2 video fixture's first N frames


@pytest.fixture(scope="module")
def tracker(sam3_small):
    from samkit.video.track_concepts import build_concept_tracker

    return build_concept_tracker(checkpoint=sam3_small, keep_outputs=True)  # official thresholds


@pytest.fixture(scope="module")
def served(tracker, frames, tmp_path_factory):
    """(server URL, video id) of the clip opened on a server with the default thresholds."""
    clip = encode_video(tmp_path_factory.mktemp("clip") / "street.mp4", frames)
    limits = VideoLimits(max_bytes=64 * 2**20, max_frames=4, max_pixels=W * H)
    app = create_app(tracker.model, video_limits=limits, video_predictor=tracker)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=600) as c:
        vid = c.post("/api/videos?name=street.mp4", content=clip.read_bytes()).json()["video_id"]
        yield url, vid


@pytest.mark.parametrize("threshold", [0, 1, 1.5, -0.2, "0.3", True, [0.3], {"v": 0.3}], ids=repr)
def test_bad_threshold_is_422_with_the_reason(served, threshold) -> None:
    url, vid = served
    with httpx.Client(base_url=url, timeout=60) as c:
        r = c.post(
            f"/api/videos/{vid}/find", json={"frame": 0, "text": "person", "threshold": threshold}
        )
        assert r.status_code == 422, r.text
        assert "threshold must be a number between 0 and 1" in r.json()["detail"], r.text
        assert c.get(f"/api/videos/{vid}").json()["concepts"] == []  # nothing was run


def test_nan_threshold_is_422(served) -> None:
    url, vid = served
    body = b'{"frame": 0, "text": "person", "threshold": NaN}'
    with httpx.Client(base_url=url, timeout=60) as c:
        r = c.post(
            f"/api/videos/{vid}/find", content=body, headers={"Content-Type": "application/json"}
        )
        # refused with the other JSON bodies' rule (samkit.server.validation): numbers are finite
        assert r.status_code == 422 and "numbers must be finite" in r.json()["detail"], r.text


def test_threshold_is_the_concepts_threshold(served, tracker) -> None:
    url, vid = served
    with httpx.Client(base_url=url, timeout=600) as c:
        r = c.post(f"/api/videos/{vid}/find", json={"frame": 0, "text": "person"})
        assert r.status_code == 200, r.text
        out = r.json()  # the server's thresholds (official 0.5 / 0.7): none of ~0.23
        assert out["found"] == [] and out["threshold"] == 0.5  # the one used: the server's
        assert "lower the threshold" in out["message"] and "another phrase" in out["message"]

        r = c.post(f"/api/videos/{vid}/find", json={"frame": 0, "text": "person", "threshold": LOW})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["threshold"] == LOW and out["message"] is None
        assert out["found"], "the low threshold finds instances"
        assert sorted(o["obj_id"] for o in out["objects"]) == out["found"]
        concepts = c.get(f"/api/videos/{vid}").json()["concepts"]
    assert [k["objects"] for k in concepts] == [[], out["found"]]
    # the second concept's predictor session detects and starts objects at that threshold
    # (tests/video/sam3/test_session_thresholds.py: equal to a predictor built with it)
    sessions = list(tracker.predictor._sessions.values())
    assert [(s.score_threshold, s.new_det_thresh) for s in sessions] == [(None, None), (LOW, LOW)]
