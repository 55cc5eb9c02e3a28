"""The video mode's answers found by a newcomer trial: tracking progress over several runs and
passes, multipart uploads, still images refused, prompt errors naming the JSON fields, bodies that
are not JSON. In process (TestClient) on the SAM 2 fixture model and a 4-frame clip."""

from __future__ import annotations

import io
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from samkit.server.app import create_app
from samkit.server.video_progress import TrackJob
from samkit.server.video_session import VideoLimits
from samkit.video.predictor import Sam2VideoPredictor
from tests.video.clips import encode_video, moving_shapes
from tests.video.conftest import CKPT, CONFIG

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
N, H, W = 4, 48, 64
CLICK = [14.0, 20.0]  # inside the red square on frame 0
PYTHON_NAMES = ("point_coords", "point_labels", "mask_input", "boxes")


class RepeatingPredictor(Sam2VideoPredictor):
    """SAM 2's predictor, except that a reverse pass from a frame tracked before yields that
    frame first (as SAM 3's concept tracker does on a second Track): more frames than the
    official range rule counts. Records the session's progress at every frame."""

    def __init__(self, model):
        super().__init__(model)
        self.tracked: set[int] = set()
        self.job_of = lambda: None  # set by the test: the session's current TrackJob
        self.seen: list[dict] = []

    def propagate_in_video(
        self, state, start_frame_idx=None, max_frame_num_to_track=None, reverse=False
    ):
        if reverse and start_frame_idx in self.tracked:
            yield from super().propagate_in_video(state, start_frame_idx, 0, False)
            self.seen.append(self.job_of().summary())
        for out in super().propagate_in_video(
            state, start_frame_idx, max_frame_num_to_track, reverse
        ):
            self.tracked.add(out[0])
            yield out
            self.seen.append(self.job_of().summary())


@pytest.fixture(scope="module")
def sam2_model():
    from samkit import build_sam2

    return build_sam2(CONFIG, checkpoint=CKPT)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return encode_video(tmp_path_factory.mktemp("clip") / "shapes.mp4", moving_shapes(N, H, W))


@pytest.fixture(scope="module")
def predictor(sam2_model):
    return RepeatingPredictor(sam2_model)


@pytest.fixture(scope="module")
def client(sam2_model, predictor):
    limits = VideoLimits(max_bytes=200_000, max_frames=8, max_pixels=80 * 60, max_sessions=8)
    app = create_app(
        sam2_model, max_upload_bytes=2**20, video_limits=limits, video_predictor=predictor
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def vid(client, clip) -> str:
    r = client.post("/api/videos?name=shapes.mp4", content=clip.read_bytes())
    assert r.status_code == 200, r.text
    return r.json()["video_id"]


def _detail(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()["detail"]


def _run(client, vid: str, body: dict) -> tuple[dict, dict]:
    r = client.post(f"/api/videos/{vid}/track", json=body)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while (st := client.get(f"/api/videos/{vid}/track").json())["status"] == "running":
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    assert st["status"] == "done", st
    return r.json(), st


def test_progress_restarts_per_run_and_pass_and_never_exceeds_the_total(client, vid, predictor):
    session = client.app.state.video.get(vid)
    predictor.job_of = lambda: session.job
    body = {"frame": 0, "obj_id": 1, "points": [CLICK], "labels": [1]}
    assert client.post(f"/api/videos/{vid}/prompts", json=body).status_code == 200
    first, st = _run(client, vid, {"direction": "forward", "max_frames": 2})
    assert first["total"] == st["total"] == st["done"] == 2
    assert st["pass"] == {"index": 1, "count": 1, "direction": "forward", "done": 2, "total": 2}

    # the second run: forward 0..1, then reverse from frame 0, which was tracked before: the
    # official range rule counts 0 frames, this predictor yields frame 0 again (was 3 / 2)
    predictor.seen.clear()
    second, st = _run(client, vid, {"direction": "both", "max_frames": 2})
    assert second["done"] == 0 and second["total"] == 2  # a new run counts from 0
    assert st["frames"] == [0, 1, 0]
    assert st["done"] == st["total"] == 3
    assert st["pass"] == {"index": 2, "count": 2, "direction": "reverse", "done": 1, "total": 1}
    assert len(predictor.seen) == 3
    for s in predictor.seen:
        assert s["done"] <= s["total"] and s["pass"]["done"] <= s["pass"]["total"], s
    passes = [(s["pass"]["index"], s["pass"]["done"]) for s in predictor.seen]
    assert passes == [(1, 1), (1, 2), (2, 1)]  # the count restarts with the second pass


def test_track_job_counts_each_pass():
    job = TrackJob([("forward", 3), ("reverse", 2)], "both")
    assert job.summary()["total"] == 5 and job.summary()["pass"]["index"] == 1
    for t in (1, 2, 3):
        job.add(t)
    job.start_pass(1)
    s = job.summary()
    assert (s["done"], s["total"], s["pass"]["done"], s["pass"]["total"]) == (3, 5, 0, 2)
    for t in (1, 0, 0):  # one frame more than expected
        job.add(t)
    s = job.summary()
    assert (s["done"], s["total"], s["pass"]["done"], s["pass"]["total"]) == (6, 6, 3, 3)
    job.finish("cancelled")
    assert job.summary()["status"] == "cancelled" and job.summary()["eta_s"] == 0.0
    short = TrackJob([("forward", 4)], "forward")
    short.add(0)
    short.finish("done")  # the predictor yielded fewer: a finished run reports what it tracked
    assert (short.summary()["done"], short.summary()["total"]) == (1, 1)


def test_multipart_upload_opens_the_video(client, clip):
    data = clip.read_bytes()
    r = client.post("/api/videos", files={"file": ("my clip.mp4", data, "video/mp4")})
    assert r.status_code == 200, r.text
    assert (r.json()["num_frames"], r.json()["name"]) == (N, "my clip.mp4")
    client.delete(f"/api/videos/{r.json()['video_id']}")
    r = client.post("/api/videos", files={"a": ("a.mp4", data), "b": ("b.mp4", data)})
    assert "exactly one file field" in _detail(r, 422)
    r = client.post("/api/videos", files={"note": (None, "no file")})  # a text field only
    detail = _detail(r, 400)
    assert "--data-binary @clip.mp4" in detail and "-F file=@clip.mp4" in detail
    r = client.post(
        "/api/videos", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"}
    )
    assert "multipart" in _detail(r, 400)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_still_image_is_no_video(client, fmt):
    buf = io.BytesIO()
    Image.fromarray(moving_shapes(1, H, W)[0]).save(buf, fmt)
    r = client.post("/api/videos?name=frame.img", content=buf.getvalue())
    detail = _detail(r, 400)
    assert f"frame.img: a single {fmt} image, not a video" in detail
    assert "video file (.mp4" in detail and "folder of frames" in detail
    assert "POST /api/images" in detail


def test_an_animated_gif_is_a_video(client):
    frames = [Image.fromarray(f) for f in moving_shapes(3, H, W)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    r = client.post("/api/videos?name=anim.gif", content=buf.getvalue())
    assert r.status_code == 200 and r.json()["num_frames"] == 3, r.text
    client.delete(f"/api/videos/{r.json()['video_id']}")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"points": [CLICK], "labels": [1, 1]}, "got 1 point and 2 labels"),
        ({"points": [CLICK], "labels": []}, "labels must have one label per point"),
        ({"points": [], "labels": [1]}, "labels were given without points"),
        ({"points": [], "labels": []}, "no prompt: send points"),
        ({"labels": [5]}, "labels[0] is 5: 1 = foreground, 0 = background"),
        ({"labels": [-1]}, "labels[0] is -1"),
        ({"points": [], "labels": [], "box": [30.0, 5.0, 10.0, 20.0]}, "box must be [x0, y0"),
        ({"points": [[W + 5.0, 1.0]]}, "point 0 (69.0, 1.0) is outside the 64x48 frame"),
        ({"obj_id": 0}, "obj_id 0: object ids are 1..255"),
    ],
)
def test_prompt_errors_name_the_json_fields(client, vid, change, words):
    body = {"frame": 0, "obj_id": 1, "points": [CLICK], "labels": [1], **change}
    detail = _detail(client.post(f"/api/videos/{vid}/prompts", json=body), 422)
    assert words in detail
    assert not any(name in detail for name in PYTHON_NAMES), detail


def test_image_mode_prompt_errors_name_the_json_fields(client):
    buf = io.BytesIO()
    Image.fromarray(moving_shapes(1, H, W)[0]).save(buf, "PNG")
    image_id = client.post("/api/images", content=buf.getvalue()).json()["image_id"]
    for body, words in [
        ({"points": [CLICK], "labels": [1, 0]}, "got 1 point and 2 labels"),
        ({"points": [CLICK]}, "got 1 point and 0 labels"),
        ({"labels": [1]}, "labels were given without points"),
        ({}, "no prompt"),
        ({"box": [30, 5, 10, 20]}, "box must be [x0, y0, x1, y1] with x1 >= x0"),
    ]:
        detail = _detail(client.post(f"/api/images/{image_id}/predict", json=body), 422)
        assert words in detail and not any(n in detail for n in PYTHON_NAMES), detail


@pytest.mark.parametrize(
    ("route", "field"),
    [("prompts", '"obj_id": 1..255'), ("track", '"direction": "forward"')],
)
def test_a_body_that_is_not_json_says_what_is_expected(client, vid, route, field):
    url = f"/api/videos/{vid}/{route}"
    ctype = {"content-type": "application/json"}
    for body in (b"{bad json", b"frame=0&obj_id=1", b"\xff\xfe"):
        detail = _detail(client.post(url, content=body, headers=ctype), 422)
        assert detail.startswith("the body must be JSON") and field in detail, detail
        assert "JSON decode error" not in detail
    detail = _detail(client.post(url, content=b"[1, 2]", headers=ctype), 422)
    assert "must be a JSON object {" in detail and "got a JSON array" in detail
    assert field in _detail(client.post(url, content=b"", headers=ctype), 422)
    form = {"content-type": "application/x-www-form-urlencoded"}
    detail = _detail(client.post(url, content=b"frame=0", headers=form), 415)
    assert "Content-Type: application/json" in detail and field in detail
