"""The web app's JSON API: answers, and every error status with its reason."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from samkit.server.app import create_app
from samkit.server.cache import ByteLRUCache
from samkit.server.engine import Engine
from tests.conftest import IMAGES, load_rgb
from tests.server.conftest import SHAPES, coco_decode

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MAX_UPLOAD = 2 * 2**20


@pytest.fixture(scope="module")
def client(sam1_shapes):
    app = create_app(
        sam1_shapes, cache_bytes=64 * 2**20, max_upload_bytes=MAX_UPLOAD, max_pixels=40_000_000
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def dog_id(client):
    r = client.post("/api/images", content=(IMAGES / "dog.jpg").read_bytes())
    assert r.status_code == 200, r.text
    return r.json()["image_id"]


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h RGB pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js">' in r.text
    assert client.get("/static/app.js").text.startswith("// samkit web app")
    assert "text/css" in client.get("/static/app.css").headers["content-type"]
    # no request path reaches the file system
    for path in (
        "/static/index.html",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/engine.py",
        "/app.py",
    ):
        assert client.get(path).status_code == 404, path
    info = client.get("/api/info").json()
    assert (
        info["family"] == "sam1"
        and info["img_size"] == 256
        and info["max_upload_bytes"] == MAX_UPLOAD
    )


def test_multipart_upload_is_the_same_image(client, dog_id):
    data = (IMAGES / "dog.jpg").read_bytes()
    r = client.post("/api/images", files={"file": ("dog.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.json()["image_id"] == dog_id
    r = client.post(
        "/api/images", data={"note": "x"}, files={"a": ("a.jpg", data), "b": ("b.jpg", data)}
    )
    assert r.status_code == 422 and "exactly one file field" in r.json()["detail"]


def test_upload_is_cached_by_hash(client, dog_id):
    import hashlib

    data = (IMAGES / "dog.jpg").read_bytes()
    assert dog_id == hashlib.sha256(data).hexdigest()
    r = client.post("/api/images", content=data).json()
    assert r == {**r, "image_id": dog_id, "width": 800, "height": 534, "cached": True}
    assert client.get(f"/api/images/{dog_id}").json() == {
        "image_id": dog_id,
        "width": 800,
        "height": 534,
    }


def test_predict_matches_the_predictor(client, dog_id, shapes_predictor):
    prompt = {"points": [[400.5, 260.25], [100, 60]], "labels": [1, 0], "box": [250, 120, 640, 480]}
    r = client.post(f"/api/images/{dog_id}/predict", json={**prompt, "png": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["image_id"] == dog_id and (out["width"], out["height"]) == (800, 534)
    assert out["prompt"] == {
        **prompt,
        "points": [list(map(float, p)) for p in prompt["points"]],
        "box": [float(v) for v in prompt["box"]],
        "multimask": True,
    }
    shapes_predictor.set_image(load_rgb("dog.jpg"))
    masks, scores, _ = shapes_predictor.predict(
        np.array(prompt["points"]), np.array(prompt["labels"]), np.array(prompt["box"], float)
    )
    assert len(out["masks"]) == 3 and out["best"] == int(np.argmax(scores))
    for rec, m, s in zip(out["masks"], masks, scores):
        np.testing.assert_array_equal(coco_decode(rec["segmentation"]), m)
        import base64

        png = np.array(Image.open(io.BytesIO(base64.b64decode(rec["png"]))))
        np.testing.assert_array_equal(png, m)
        assert rec["score"] == pytest.approx(float(s), abs=1e-5)
        assert rec["area"] == int(m.sum())
    single = client.post(
        f"/api/images/{dog_id}/predict", json={"box": prompt["box"], "multimask": False}
    ).json()
    assert len(single["masks"]) == 1 and "png" not in single["masks"][0]


def test_segment_everything_matches_the_generator(client, dog_id, sam1_shapes):
    from samkit import SamAutomaticMaskGenerator

    params = {"points_per_side": 3, "pred_iou_thresh": 0.2, "stability_score_thresh": 0.5}
    r = client.post(f"/api/images/{dog_id}/everything", json=params)
    assert r.status_code == 200, r.text
    out = r.json()
    expected = SamAutomaticMaskGenerator(sam1_shapes, **params).generate(load_rgb("dog.jpg"))
    assert out["image"] == {"image_id": dog_id, "height": 534, "width": 800}
    assert len(out["annotations"]) == len(expected) > 0
    for ann, rec in zip(out["annotations"], expected):
        np.testing.assert_array_equal(coco_decode(ann["segmentation"]), rec["segmentation"])
        assert ann["predicted_iou"] == pytest.approx(rec["predicted_iou"], abs=1e-5)


def test_413_for_oversized_uploads(client):
    big = b"\0" * (MAX_UPLOAD + 1)
    r = client.post("/api/images", content=big)  # announced by Content-Length
    assert r.status_code == 413 and f"{MAX_UPLOAD:,}" in r.json()["detail"]

    def chunks():  # no Content-Length: the server counts while it reads
        for _ in range(3):
            yield b"\0" * (MAX_UPLOAD // 2)

    r = client.post("/api/images", content=chunks())
    assert r.status_code == 413 and "limit" in r.json()["detail"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty upload"),
        (b"GIF89a but not really", "not"),
        (b"%PDF-1.4 hello", "not an image"),
        ((IMAGES / "dog.jpg").read_bytes()[:4000], "not a readable image"),
        # one pixel limit (samkit.io.limits) for every size, named with the option that lifts it
        (_png_header_only(20000, 20000), "400,000,000 pixels, over the limit of 40,000,000"),
        (_png_header_only(10000, 10000), "100,000,000 pixels, over the limit of 40,000,000"),
        (_png_header_only(7000, 7000), "over the limit of 40,000,000 pixels"),
    ],
)
def test_400_for_non_images_and_bombs(client, data, reason):
    r = client.post("/api/images", content=data)
    assert r.status_code == 400, r.text
    assert reason in r.json()["detail"]


def test_400_for_a_real_decompression_bomb(sam1_shapes):
    buf = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buf, format="PNG")  # 16 M pixels in a few kB
    assert len(buf.getvalue()) < 50_000
    app = create_app(
        sam1_shapes, cache_bytes=8 * 2**20, max_upload_bytes=2**20, max_pixels=1_000_000
    )
    with TestClient(app) as c:
        r = c.post("/api/images", content=buf.getvalue())
        assert r.status_code == 400 and "decompression" in r.json()["detail"]
        assert "over the limit of 1,000,000 pixels" in r.json()["detail"]
        assert "--max-pixels N" in r.json()["detail"]
        assert (
            c.post("/api/images", content=(SHAPES / "shapes_1.png").read_bytes()).status_code == 200
        )


def test_404_for_unknown_images(client):
    unknown = "0" * 64
    for r in (
        client.get(f"/api/images/{unknown}"),
        client.post(f"/api/images/{unknown}/predict", json={"points": [[1, 1]], "labels": [1]}),
        client.post(f"/api/images/{unknown}/everything", json={}),
        client.post("/api/images/not-a-hash/predict", json={"points": [[1, 1]], "labels": [1]}),
    ):
        assert r.status_code == 404 and "unknown image id" in r.json()["detail"]
    assert client.get("/api/nothing").status_code == 404


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"points": [[10, 10]], "labels": [1, 0]}, "one label per point"),
        ({"points": [], "labels": []}, "no prompt"),
        ({}, "no prompt"),
        ({"points": [[10, 10]], "labels": [2]}, "1 = foreground, 0 = background"),
        ({"box": [100, 100, 50, 200]}, "x1 >= x0"),
        ({"points": [[1, "a"]], "labels": [1]}, "valid number"),
        ({"points": [[1, 2, 3]], "labels": [1]}, "points"),
        ({"box": [1, 2, 3]}, "box"),
        ({"points": [[1, 1]], "labels": [1], "colour": "red"}, "colour"),
        ({"points": [[1, 1]] * 65, "labels": [1] * 65}, "points"),
        ({"points": [[1, 1]], "labels": [1], "multimask": "maybe"}, "multimask"),
    ],
)
def test_422_for_malformed_prompts(client, dog_id, body, reason):
    r = client.post(f"/api/images/{dog_id}/predict", json=body)
    assert r.status_code == 422, r.text
    assert reason in json.dumps(r.json()["detail"])


def test_422_for_nan_and_bad_json(client, dog_id):
    r = client.post(
        f"/api/images/{dog_id}/predict",
        content=b'{"points": [[NaN, 1]], "labels": [1]}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and "finite" in json.dumps(r.json()["detail"])
    r = client.post(
        f"/api/images/{dog_id}/predict",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    for body in (
        {"points_per_side": 0},
        {"points_per_side": 1000},
        {"pred_iou_thresh": 2},
        {"crop_n_layers": 5},
    ):
        r = client.post(f"/api/images/{dog_id}/everything", json=body)
        assert r.status_code == 422, body
        assert next(iter(body)) in json.dumps(r.json()["detail"])


def test_byte_lru_cache():
    c = ByteLRUCache(100)
    c.put("a", 1, 40)
    c.put("b", 2, 40)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3, 40)  # evicts b
    assert "b" not in c and c.get("a") == 1 and c.get("c") == 3
    assert c.nbytes == 80 and c.stats()["evictions"] == 1
    c.put("a", 4, 60)  # replacing frees the old size first: 40 + 60 fits
    assert c.get("a") == 4 and c.get("c") == 3 and c.nbytes == 100
    c.put("a", 5, 70)  # 40 + 70 does not: c (least recent) goes
    assert c.get("a") == 5 and "c" not in c and c.nbytes == 70
    assert c.stats()["peak_bytes"] <= 100
    with pytest.raises(ValueError, match="cannot fit"):
        c.put("huge", 0, 101)
    with pytest.raises(ValueError, match="positive"):
        ByteLRUCache(0)


def test_engine_refuses_a_cache_smaller_than_one_image(sam1_shapes):
    with pytest.raises(ValueError, match="must hold at least one image"):
        Engine(sam1_shapes, cache_bytes=2**20, max_upload_bytes=2**20)
    emb = 256 * 16 * 16 * torch.finfo(torch.float32).bits // 8
    Engine(sam1_shapes, cache_bytes=emb + 2**20, max_upload_bytes=2**20).close()


@pytest.mark.parametrize(
    ("body", "warnings"),
    [
        ({"points": [[400, 260]], "labels": [1]}, []),
        ({"points": [[800, 534]], "labels": [1]}, []),  # the far corner is inside
        ({"points": [[-10, -10]], "labels": [1]}, ["point 0 (-10, -10) is outside the 800x534"]),
        (
            {"points": [[400, 260], [900, 10]], "labels": [1, 0]},
            ["point 1 (900, 10) is outside the 800x534"],
        ),
        ({"box": [-5, 100, 810, 300]}, ["box 0 (-5, 100, 810, 300) reaches outside the 800x534"]),
    ],
)
def test_prompts_outside_the_image_are_answered_with_warnings(
    client, shapes_predictor, body, warnings
):
    r = client.post("/api/images", content=(IMAGES / "dog.jpg").read_bytes())
    image_id = r.json()["image_id"]
    r = client.post(f"/api/images/{image_id}/predict", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["warnings"]) == len(warnings)
    for got, want in zip(out["warnings"], warnings):
        assert got.startswith(want) and got.endswith("it is used as given")
    shapes_predictor.set_image(load_rgb("dog.jpg"))
    pts = np.array(body["points"], float) if body.get("points") else None
    labels = np.array(body["labels"]) if body.get("points") else None
    box = np.array(body["box"], float) if body.get("box") else None
    masks, _, _ = shapes_predictor.predict(pts, labels, box, multimask_output=True)
    for rec, m in zip(out["masks"], masks):
        np.testing.assert_array_equal(coco_decode(rec["segmentation"]), m)
