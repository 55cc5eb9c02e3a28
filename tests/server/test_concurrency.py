"""20 parallel clients on 3 images against a real uvicorn server with a cache that holds only 2."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from samkit.io.masks import decode_image
from samkit.server.app import create_app
from tests.conftest import IMAGES
from tests.server.conftest import SHAPES, coco_decode, live_server

N_CLIENTS = 20
ROUNDS = 2


def _prompt(k: int, w: int, h: int) -> dict:
    """A different prompt for every client: a point (and for some a box) spread over the image."""
    rng = np.random.default_rng(k)
    x, y = float(rng.uniform(0.1, 0.9) * w), float(rng.uniform(0.1, 0.9) * h)
    body = {"points": [[x, y]], "labels": [1], "multimask": True}
    if k % 3 == 0:
        body["box"] = [
            max(0.0, x - 0.2 * w),
            max(0.0, y - 0.2 * h),
            min(w, x + 0.2 * w),
            min(h, y + 0.2 * h),
        ]
    return body


def test_parallel_clients_get_their_own_answers_and_the_cache_stays_bounded(
    sam1_shapes, shapes_predictor
):
    files = [IMAGES / "dog.jpg", IMAGES / "groceries.jpg", SHAPES / "shapes_1.png"]
    data = [f.read_bytes() for f in files]
    ids = [hashlib.sha256(d).hexdigest() for d in data]
    images = [decode_image(d) for d in data]
    emb_bytes = 256 * 16 * 16 * 4
    sizes = sorted(emb_bytes + len(d) for d in data)
    cache_bytes = sizes[-1] + sizes[-2]  # any two images fit, never all three
    max_upload = max(len(d) for d in data)

    # expected answers, computed directly with the predictor
    expected = {}
    for k in range(N_CLIENTS):
        i = k % 3
        h, w = images[i].shape[:2]
        body = _prompt(k, w, h)
        shapes_predictor.set_image(images[i])
        masks, scores, _ = shapes_predictor.predict(
            np.array(body["points"]),
            np.array(body["labels"]),
            None if "box" not in body else np.array(body["box"]),
        )
        expected[k] = (i, body, masks, scores)

    app = create_app(sam1_shapes, cache_bytes=cache_bytes, max_upload_bytes=max_upload)
    engine = app.state.engine
    errors: list[str] = []
    stop = threading.Event()
    observed_max = [0]

    def watch_cache() -> None:
        while not stop.is_set():
            observed_max[0] = max(observed_max[0], engine.cache.nbytes)
            stop.wait(0.001)

    with live_server(app) as url:
        watcher = threading.Thread(target=watch_cache)
        watcher.start()

        def client(k: int) -> int:
            i, body, masks, scores = expected[k]
            answered = 0
            with httpx.Client(base_url=url, timeout=120) as http:
                for _ in range(ROUNDS):
                    up = http.post("/api/images", content=data[i])
                    assert up.status_code == 200, up.text
                    assert up.json()["image_id"] == ids[i]
                    for _attempt in range(5):  # another client's upload may evict our image
                        r = http.post(f"/api/images/{ids[i]}/predict", json=body)
                        if r.status_code != 404:
                            break
                        assert http.post("/api/images", content=data[i]).status_code == 200
                    assert r.status_code == 200, r.text
                    out = r.json()
                    h, w = images[i].shape[:2]
                    assert out["image_id"] == ids[i] and (out["height"], out["width"]) == (h, w)
                    assert out["prompt"]["points"] == body["points"]
                    assert out["prompt"]["box"] == body.get("box")
                    for rec, m, s in zip(out["masks"], masks, scores):
                        got = coco_decode(rec["segmentation"])
                        assert got.shape == m.shape
                        assert np.mean(got != m) <= 1e-4, f"client {k}: mask differs"
                        assert rec["score"] == pytest.approx(float(s), abs=1e-5)
                    answered += 1
            return answered

        try:
            with ThreadPoolExecutor(N_CLIENTS) as pool:
                futures = [pool.submit(client, k) for k in range(N_CLIENTS)]
                for f in futures:
                    try:
                        assert f.result() == ROUNDS
                    except AssertionError as e:
                        errors.append(str(e))
            stats = httpx.get(f"{url}/api/stats").json()["cache"]
        finally:
            stop.set()
            watcher.join()

    assert not errors, errors[:3]
    assert stats["max_bytes"] == cache_bytes
    assert stats["peak_bytes"] <= cache_bytes and observed_max[0] <= cache_bytes
    assert stats["entries"] <= 2
    assert stats["evictions"] > 0, "the test should exercise eviction"
