"""The web app with a SAM 2 model: prompts answered from cached SAM 2 features."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from samkit.server.app import create_app
from tests.conftest import FIXTURES, IMAGES, load_rgb
from tests.server.conftest import coco_decode

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SAM2 = FIXTURES / "sam2_tiny"


def test_sam2_predict_matches_the_predictor():
    from samkit import Sam2ImagePredictor, build_sam2

    model = build_sam2(SAM2 / "config.json", checkpoint=SAM2 / "sam2_tiny.pt")
    app = create_app(model, cache_bytes=64 * 2**20, max_upload_bytes=4 * 2**20)
    prompt = {
        "points": [[300.0, 200.0], [600.0, 100.0]],
        "labels": [1, 0],
        "box": [100.0, 50.0, 700.0, 500.0],
    }
    with TestClient(app) as client:
        assert client.get("/api/info").json()["family"] == "sam2"
        image_id = client.post("/api/images", content=(IMAGES / "dog.jpg").read_bytes()).json()[
            "image_id"
        ]
        out = client.post(f"/api/images/{image_id}/predict", json=prompt).json()
        everything = client.post(f"/api/images/{image_id}/everything", json={})
        assert everything.status_code == 422 and "SAM 1" in everything.json()["detail"]

    predictor = Sam2ImagePredictor(model)
    predictor.set_image(load_rgb("dog.jpg"))
    masks, scores, _ = predictor.predict(
        np.array(prompt["points"]), np.array(prompt["labels"]), np.array(prompt["box"])
    )
    assert len(out["masks"]) == 3 and out["best"] == int(np.argmax(scores))
    for rec, m, s in zip(out["masks"], masks, scores):
        np.testing.assert_array_equal(coco_decode(rec["segmentation"]), m > 0)
        assert rec["score"] == pytest.approx(float(s), abs=1e-5)
