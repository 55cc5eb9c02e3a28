"""The web app's video mode, in process: routes, tracking results against the predictor, errors."""

from __future__ import annotations

import io
import json
import time
import zipfile
from fractions import Fraction

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from samkit.server.app import create_app
from samkit.server.video_session import VideoLimits
from tests.server.conftest import coco_decode
from tests.video.clips import encode_video, moving_shapes
from tests.video.conftest import CKPT, CONFIG

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
N, H, W = 4, 48, 64
CLICK = (14.0, 20.0)  # inside the red square on frame 0


@pytest.fixture(scope="module")
def sam2_model():
    from samkit import build_sam2

    return build_sam2(CONFIG, checkpoint=CKPT)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "shapes.mp4"
    return encode_video(path, moving_shapes(n=N, h=H, w=W))


@pytest.fixture(scope="module")
def client(sam2_model):
    limits = VideoLimits(max_bytes=200_000, max_frames=8, max_seconds=5, max_pixels=80 * 60)
    app = create_app(
        sam2_model, cache_bytes=64 * 2**20, max_upload_bytes=2**20, video_limits=limits
    )
    with TestClient(app) as c:
        yield c


def _expected(sam2_model, clip) -> dict[int, np.ndarray]:
    """Object 1's masks from `Sam2VideoPredictor` run directly with the same click."""
    from samkit.video import Sam2VideoPredictor

    pred = Sam2VideoPredictor(sam2_model)
    state = pred.init_state(str(clip))
    pred.add_new_points_or_box(
        state, 0, 1, points=np.array([CLICK], np.float32), labels=np.array([1], np.int32)
    )
    return {t: (lg[0, 0] > 0).numpy() for t, _, lg in pred.propagate_in_video(state)}


def _wait_track(client, vid: str) -> dict:
    deadline = time.monotonic() + 120
    while True:
        st = client.get(f"/api/videos/{vid}/track").json()
        if st["status"] != "running":
            return st
        assert time.monotonic() < deadline, st
        time.sleep(0.05)


def test_open_click_track_download(client, clip, sam2_model):
    assert client.get("/api/videos").json()["available"] is True
    r = client.post("/api/videos?name=shapes.mp4", content=clip.read_bytes())
    assert r.status_code == 200, r.text
    info = r.json()
    vid = info["video_id"]
    assert (info["num_frames"], info["width"], info["height"]) == (N, W, H)
    assert info["next_obj_id"] == 1 and info["objects"] == []
    frame = Image.open(io.BytesIO(client.get(f"/api/videos/{vid}/frames/2").content))
    assert frame.size == (W, H)

    expected = _expected(sam2_model, clip)
    body = {"frame": 0, "obj_id": 1, "points": [list(CLICK)], "labels": [1]}
    out = client.post(f"/api/videos/{vid}/prompts", json=body).json()
    assert [o["obj_id"] for o in out["objects"]] == [1]
    np.testing.assert_array_equal(coco_decode(out["objects"][0]["segmentation"]), expected[0])

    r = client.post(f"/api/videos/{vid}/track", json={"direction": "forward"})
    assert r.status_code == 202 and r.json()["total"] == N
    st = _wait_track(client, vid)
    assert st["status"] == "done" and st["done"] == N and sorted(st["frames"]) == list(range(N))
    assert client.get(f"/api/videos/{vid}/track?since=3").json()["frames"] == st["frames"][3:]
    for t in range(N):
        got = client.get(f"/api/videos/{vid}/masks/{t}").json()
        assert got["has_result"]
        seg = [o for o in got["objects"] if o["obj_id"] == 1]
        mask = coco_decode(seg[0]["segmentation"]) if seg else np.zeros((H, W), bool)
        np.testing.assert_array_equal(mask, expected[t])
    assert expected[N - 1].any()
    assert client.get(f"/api/videos/{vid}").json()["tracked_frames"] == list(range(N))

    # downloads: palette PNGs, YouTube-VIS JSON, MP4
    r = client.get(f"/api/videos/{vid}/download/masks.zip")
    assert r.status_code == 200 and "shapes_masks.zip" in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = sorted(z.namelist())
        assert names == [f"masks/{t:05d}.png" for t in range(N)]
        for t, name in enumerate(names):
            im = Image.open(io.BytesIO(z.read(name)))
            assert im.mode == "P"
            np.testing.assert_array_equal(np.array(im) == 1, expected[t])
    doc = json.loads(client.get(f"/api/videos/{vid}/download/annotations.json").content)
    (ann,) = doc["annotations"]
    assert ann["object_id"] == 1 and len(ann["segmentations"]) == N
    for t in range(N):
        seg = ann["segmentations"][t]
        got = coco_decode(seg) if seg else np.zeros((H, W), bool)
        np.testing.assert_array_equal(got, expected[t])
    r = client.get(f"/api/videos/{vid}/download/overlay.mp4")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    import av

    with av.open(io.BytesIO(r.content)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == N and (frames[0].width, frames[0].height) == (W, H)

    # a second object, then removing it
    body = {"frame": 1, "obj_id": 2, "points": [[50.0, 30.0]], "labels": [1], "box": None}
    out = client.post(f"/api/videos/{vid}/prompts", json=body).json()
    assert out["objects_in_video"] == [1, 2]
    r = client.delete(f"/api/videos/{vid}/objects/2")
    assert r.status_code == 200 and r.json()["objects"] == [1]
    masks1 = client.get(f"/api/videos/{vid}/masks/1").json()["objects"]
    assert [o["obj_id"] for o in masks1] == [1]
    assert client.get(f"/api/videos/{vid}").json()["next_obj_id"] == 3
    assert client.delete(f"/api/videos/{vid}").status_code == 200
    assert client.get(f"/api/videos/{vid}").status_code == 404


def test_bad_input(client, clip, tmp_path):
    def detail(r, status):
        assert r.status_code == status, (r.status_code, r.text)
        return r.json()["detail"]

    assert "not a decodable video" in detail(
        client.post("/api/videos", content=b"this is not a video"), 400
    )
    assert "empty upload" in detail(client.post("/api/videos", content=b""), 400)
    assert "limit" in detail(client.post("/api/videos", content=b"x" * 200_001), 413)
    long = encode_video(tmp_path / "long.mp4", moving_shapes(n=9, h=H, w=W))
    assert "9 frames" in detail(client.post("/api/videos", content=long.read_bytes()), 400)
    big = encode_video(tmp_path / "big.mp4", moving_shapes(n=2, h=64, w=96))
    assert "pixels" in detail(client.post("/api/videos", content=big.read_bytes()), 400)
    slow = encode_video(tmp_path / "slow.mp4", moving_shapes(n=4, h=H, w=W), rate=Fraction(1, 2))
    assert "lasts" in detail(client.post("/api/videos", content=slow.read_bytes()), 400)

    unknown = "0" * 32
    assert "unknown video" in detail(client.get(f"/api/videos/{unknown}"), 404)
    assert "unknown video" in detail(client.get("/api/videos/nonsense/frames/0"), 404)
    vid = client.post("/api/videos", content=clip.read_bytes()).json()["video_id"]
    assert "outside the video" in detail(client.get(f"/api/videos/{vid}/frames/{N}"), 422)
    assert "outside the video" in detail(client.get(f"/api/videos/{vid}/masks/-1"), 422)
    base = {"frame": 0, "obj_id": 1, "points": [[10.0, 10.0]], "labels": [1]}
    for change, words in [
        ({"frame": N}, "frame 4 is outside"),
        ({"obj_id": 0}, "object ids are 1..255"),
        ({"points": [[10.0, 10.0]], "labels": []}, "one label per point"),
        ({"points": [], "labels": []}, "no prompt"),
        ({"points": [[W + 5.0, 1.0]]}, "outside the 64x48 frame"),
        ({"labels": [3]}, "1 = foreground"),
        ({"box": [30.0, 5.0, 10.0, 20.0]}, "x1 >= x0"),
    ]:
        r = client.post(f"/api/videos/{vid}/prompts", json={**base, **change})
        assert words in detail(r, 422)
    assert client.post(f"/api/videos/{vid}/prompts", json={**base, "x": 1}).status_code == 422
    assert "no prompts yet" in detail(client.post(f"/api/videos/{vid}/track", json={}), 422)
    assert "no tracking run" in detail(client.get(f"/api/videos/{vid}/track"), 404)
    assert "unknown object 7" in detail(client.delete(f"/api/videos/{vid}/objects/7"), 404)
    assert "no results" in detail(client.get(f"/api/videos/{vid}/download/masks.zip"), 409)
    assert client.post(f"/api/videos/{vid}/prompts", json=base).status_code == 200
    r = client.post(f"/api/videos/{vid}/track", json={"direction": "sideways"})
    assert "direction" in detail(r, 422)
    r = client.post(f"/api/videos/{vid}/track", json={"start_frame": N})
    assert "start_frame 4" in detail(r, 422)
    assert client.delete(f"/api/videos/{vid}/objects/1").status_code == 200
    assert "was removed" in detail(client.post(f"/api/videos/{vid}/prompts", json=base), 422)


def test_sam1_server_answers_400(sam1_tiny, clip):
    app = create_app(sam1_tiny, cache_bytes=64 * 2**20, max_upload_bytes=2**20)
    with TestClient(app) as c:
        info = c.get("/api/videos").json()
        assert info["available"] is False and "SAM 2" in info["reason"]
        r = c.post("/api/videos", content=clip.read_bytes())
        assert r.status_code == 400 and "video tracking needs a SAM 2" in r.json()["detail"]
        assert c.get(f"/api/videos/{'0' * 32}").status_code == 400
        assert c.get("/").status_code == 200 and c.get("/static/video.js").status_code == 200


def test_busy_while_tracking_and_cancel(client, clip):
    import threading

    vid = client.post("/api/videos", content=clip.read_bytes()).json()["video_id"]
    prompt = {"frame": 0, "obj_id": 1, "points": [list(CLICK)], "labels": [1]}
    assert client.post(f"/api/videos/{vid}/prompts", json=prompt).status_code == 200
    gate = threading.Event()
    client.app.state.video.submit(gate.wait)  # holds the job thread: the track job waits behind
    try:
        assert client.post(f"/api/videos/{vid}/track", json={}).status_code == 202
        assert client.get(f"/api/videos/{vid}/track").json()["status"] == "running"
        for r in (
            client.post(f"/api/videos/{vid}/track", json={}),
            client.post(f"/api/videos/{vid}/prompts", json=prompt),
            client.get(f"/api/videos/{vid}/download/annotations.json"),
        ):
            assert r.status_code == 409, r.text
        assert client.delete(f"/api/videos/{vid}/track").json()["status"] == "running"
    finally:
        gate.set()
    st = _wait_track(client, vid)
    assert st["status"] == "cancelled" and st["done"] == 1 and st["frames"] == [0]
    assert client.get(f"/api/videos/{vid}").json()["tracked_frames"] == [0]


def test_image_only_sam2_checkpoint_answers_400(tmp_path, clip):
    import torch

    from samkit import build_sam2
    from samkit.build.sam2 import VIDEO_KEY_PREFIXES

    sd = torch.load(CKPT, weights_only=True)["model"]
    image_only = {k: v for k, v in sd.items() if not k.startswith(VIDEO_KEY_PREFIXES)}
    torch.save({"model": image_only}, tmp_path / "image_only.pt")
    model = build_sam2(CONFIG, checkpoint=tmp_path / "image_only.pt")
    app = create_app(model, cache_bytes=64 * 2**20, max_upload_bytes=2**20)
    with TestClient(app) as c:
        assert c.get("/api/info").json()["family"] == "sam2"
        assert "memory modules" in c.get("/api/videos").json()["reason"]
        r = c.post("/api/videos", content=clip.read_bytes())
        assert r.status_code == 400 and "memory modules" in r.json()["detail"]


def _prompted_video(client, clip, prompts: list[tuple[int, int, tuple[float, float]]]) -> str:
    vid = client.post("/api/videos", content=clip.read_bytes()).json()["video_id"]
    for frame, obj_id, xy in prompts:
        body = {"frame": frame, "obj_id": obj_id, "points": [list(xy)], "labels": [1]}
        assert client.post(f"/api/videos/{vid}/prompts", json=body).status_code == 200
    return vid


def _track(client, vid: str, body: dict) -> tuple[int, dict]:
    r = client.post(f"/api/videos/{vid}/track", json=body)
    assert r.status_code == 202, r.text
    st = _wait_track(client, vid)
    assert st["status"] == "done", st
    client.delete(f"/api/videos/{vid}")
    return r.json()["total"], st


def test_reverse_starts_at_the_last_prompted_frame(client, clip):
    """As `samkit track --reverse`: from the last prompted frame, the total = the frames yielded."""
    vid = _prompted_video(client, clip, [(1, 1, CLICK), (2, 2, (50.0, 30.0))])
    total, st = _track(client, vid, {"direction": "reverse"})
    assert st["frames"] == [2, 1, 0] and total == st["done"] == 3
    vid = _prompted_video(client, clip, [(1, 1, CLICK), (2, 2, (50.0, 30.0))])
    total, st = _track(client, vid, {"direction": "both"})
    assert st["frames"] == [1, 2, 3, 2, 1, 0] and total == st["done"] == 6


def test_max_frames_counts_the_start_frame(client, clip):
    """max_frames N: N frames per direction, the start frame included (`samkit track`'s N)."""
    vid = _prompted_video(client, clip, [(0, 1, CLICK)])
    total, st = _track(client, vid, {"max_frames": 2})
    assert st["frames"] == [0, 1] and total == st["done"] == 2
    vid = _prompted_video(client, clip, [(0, 1, CLICK)])
    total, st = _track(client, vid, {"direction": "both", "start_frame": 2, "max_frames": 2})
    assert st["frames"] == [2, 3, 2, 1] and total == st["done"] == 4
    vid = _prompted_video(client, clip, [(0, 1, CLICK)])
    for bad in (0, -1):
        r = client.post(f"/api/videos/{vid}/track", json={"max_frames": bad})
        assert r.status_code == 422, r.text
        assert "max_frames must be >= 1" in r.json()["detail"], r.text
        assert "start frame included" in r.json()["detail"]
    client.delete(f"/api/videos/{vid}")
