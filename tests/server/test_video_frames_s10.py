"""A frame index outside the video is a 422 in every video route, whether it is in the address
(`/frames/{t}`, `/masks/{t}`) or the body (`prompts`' `frame`, `track`'s `start_frame`): the
video exists, and an index out of its range is a bad parameter value, as FastAPI answers a `{t}`
that is no int and as the image routes answer a point outside the image. 404 stays for what
the address names that does not exist (an unknown video id)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from samkit.server.app import create_app
from samkit.server.video_session import VideoLimits
from tests.video.clips import encode_video, moving_shapes
from tests.video.conftest import CKPT, CONFIG

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
N, H, W = 3, 48, 64
WORDS = f"is outside the video (frames 0..{N - 1})"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from samkit import build_sam2

    model = build_sam2(CONFIG, checkpoint=CKPT)
    clip = encode_video(tmp_path_factory.mktemp("clip") / "s.mp4", moving_shapes(n=N, h=H, w=W))
    limits = VideoLimits(max_bytes=200_000, max_frames=8, max_seconds=5, max_pixels=80 * 60)
    app = create_app(model, max_upload_bytes=2**20, video_limits=limits)
    with TestClient(app) as c:
        vid = c.post("/api/videos", content=clip.read_bytes()).json()["video_id"]
        yield c, vid


@pytest.mark.parametrize("t", [N, -1, 10**6])
def test_every_route_answers_a_frame_outside_the_video_with_422(served, t) -> None:
    c, vid = served
    prompt = {"frame": t, "obj_id": 1, "points": [[10.0, 10.0]], "labels": [1]}
    answers = {
        "frames": c.get(f"/api/videos/{vid}/frames/{t}"),
        "masks": c.get(f"/api/videos/{vid}/masks/{t}"),
        "prompts": c.post(f"/api/videos/{vid}/prompts", json=prompt),
    }
    for route, r in answers.items():
        assert r.status_code == 422, (route, r.status_code, r.text)
        assert r.json()["detail"] == f"frame {t} {WORDS}", (route, r.text)
    ok = {"frame": 0, "obj_id": 1, "points": [[10.0, 10.0]], "labels": [1]}
    assert c.post(f"/api/videos/{vid}/prompts", json=ok).status_code == 200
    r = c.post(f"/api/videos/{vid}/track", json={"start_frame": t})
    assert r.status_code == 422 and r.json()["detail"] == f"start_frame {t} {WORDS}", r.text


def test_a_malformed_index_is_422_too_and_404_is_for_unknown_ids(served) -> None:
    c, vid = served
    for path in ("frames", "masks"):
        assert c.get(f"/api/videos/{vid}/{path}/abc").status_code == 422  # FastAPI's own
        assert c.get(f"/api/videos/{vid}/{path}/0").status_code == 200
        r = c.get(f"/api/videos/{'0' * 32}/{path}/0")
        assert r.status_code == 404 and "unknown video id" in r.json()["detail"]
