"""The video mode keeps its word under load (issue 24), against a real uvicorn server on loopback:

* an object's removal sent while tracking runs is refused with 409 when it arrives, as the other
  edits are (it used to wait for the tracking to end, then remove the object);
* the session limit is said: a new video closes an idle session only when every slot is taken and
  names it in the answer (a later request for it gets a 404 saying why), or is refused with 503
  saying the limit and how to free a slot.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from samkit.server.app import create_app
from samkit.server.video_session import VideoLimits
from tests.server.conftest import live_server
from tests.server.test_browser import running_server
from tests.video.clips import encode_video, moving_shapes
from tests.video.conftest import CKPT, CONFIG

N, H, W = 4, 48, 64
CLICK = (14.0, 20.0)  # inside the red square on frame 0
LIMITS = VideoLimits(
    max_bytes=200_000, max_frames=8, max_seconds=5, max_pixels=80 * 60, max_sessions=2, idle_s=60
)


@pytest.fixture(scope="module")
def sam2_model():
    from samkit import build_sam2

    return build_sam2(CONFIG, checkpoint=CKPT)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("clip") / "shapes.mp4"
    return encode_video(path, moving_shapes(n=N, h=H, w=W)).read_bytes()


@pytest.fixture(scope="module")
def server(sam2_model):
    app = create_app(
        sam2_model, cache_bytes=64 * 2**20, max_upload_bytes=2**20, video_limits=LIMITS
    )
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield app, client


def _open(client: httpx.Client, clip: bytes, name: str) -> httpx.Response:
    return client.post(f"/api/videos?name={name}", content=clip)


def _close_all(app, client) -> None:
    for vid in list(app.state.video.sessions):
        client.delete(f"/api/videos/{vid}")


def test_removing_an_object_while_tracking_is_refused_when_the_request_arrives(
    server, clip, sam2_model
):
    app, client = server
    _close_all(app, client)
    vid = _open(client, clip, "shapes.mp4").json()["video_id"]
    for obj, xy in ((1, CLICK), (2, (50.0, 30.0))):
        body = {"frame": 0, "obj_id": obj, "points": [list(xy)], "labels": [1]}
        assert client.post(f"/api/videos/{vid}/prompts", json=body).status_code == 200

    # the tracking job really runs: it stops inside the image encoder of a tracked frame
    inside, release = threading.Event(), threading.Event()

    def hold(module, inputs):
        inside.set()
        assert release.wait(120), "the test did not release the encoder"

    handle = sam2_model.image_encoder.register_forward_pre_hook(hold)
    try:
        assert client.post(f"/api/videos/{vid}/track", json={}).status_code == 202
        assert inside.wait(60), "tracking did not reach the image encoder"
        assert client.get(f"/api/videos/{vid}/track").json()["status"] == "running"
        # answered now, while the job thread is busy tracking (it used to wait for it)
        r = client.delete(f"/api/videos/{vid}/objects/2", timeout=30)
        assert r.status_code == 409, r.text
        assert "being tracked" in r.json()["detail"]
        assert client.get(f"/api/videos/{vid}").json()["objects"] == [1, 2]
    finally:
        handle.remove()
        release.set()
    while (st := client.get(f"/api/videos/{vid}/track").json())["status"] == "running":
        threading.Event().wait(0.05)
    assert st["status"] == "done" and st["done"] == N
    masks = client.get(f"/api/videos/{vid}/masks/{N - 1}").json()["objects"]
    assert {o["obj_id"] for o in masks} <= {1, 2}
    r = client.delete(f"/api/videos/{vid}/objects/2")  # after tracking: removed
    assert r.status_code == 200 and r.json()["objects"] == [1]
    client.delete(f"/api/videos/{vid}")


def test_a_full_server_names_the_session_it_closes_or_refuses_with_the_limit(server, clip):
    app, client = server
    _close_all(app, client)
    info = client.get("/api/videos").json()
    assert info["limits"]["max_sessions"] == 2 and info["limits"]["idle_s"] == 60
    a = _open(client, clip, "a.mp4").json()
    b = _open(client, clip, "b.mp4").json()
    assert a["closed_sessions"] == [] and b["closed_sessions"] == []
    assert client.get("/api/videos").json()["sessions"]["open"] == 2

    # both in use: refused, with the limit, the way to free a slot and when one frees itself
    r = _open(client, clip, "c.mp4")
    assert r.status_code == 503, r.text
    detail = r.json()["detail"]
    assert "all 2 video slots" in detail and "--max-video-sessions 2" in detail
    assert "DELETE /api/videos/ID" in detail and "idle for 60 s" in detail
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert client.get(f"/api/videos/{a['video_id']}").status_code == 200  # nothing was closed

    # a idle for two minutes: closed for the new video, and the answer says so
    app.state.video.sessions[a["video_id"]].last_used -= 120
    r = _open(client, clip, "c.mp4")
    assert r.status_code == 200, r.text
    (closed,) = r.json()["closed_sessions"]
    assert closed["video_id"] == a["video_id"] and closed["name"] == "a.mp4"
    assert closed["idle_s"] >= 120
    r = client.get(f"/api/videos/{a['video_id']}")
    assert r.status_code == 404 and "closed after" in r.json()["detail"]
    assert "free a slot" in r.json()["detail"]

    # a client that closes its video frees the slot at once
    assert client.delete(f"/api/videos/{b['video_id']}").status_code == 200
    d = _open(client, clip, "d.mp4")
    assert d.status_code == 200 and d.json()["closed_sessions"] == []
    _close_all(app, client)


def test_video_limits_are_checked():
    with pytest.raises(ValueError, match="max_sessions must be positive"):
        VideoLimits(max_sessions=0)
    with pytest.raises(ValueError, match="idle_s must be >= 0"):
        VideoLimits(idle_s=-1)


def test_samkit_serve_takes_the_session_limit_and_idle_time():
    options = ("--max-video-sessions", "1", "--video-idle-minutes", "0.5")
    with running_server(CONFIG, CKPT, *options) as url:
        info = httpx.get(f"{url}/api/videos").json()
    assert info["limits"]["max_sessions"] == 1 and info["limits"]["idle_s"] == 30
    assert info["sessions"] == {"open": 0, "opening": 0, "max_sessions": 1, "idle_s": 30}
