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

    predictor = Sam2ImagePredictor(model)
    predictor.set_image(load_rgb("dog.jpg"))
    masks, scores, _ = predictor.predict(
        np.array(prompt["points"]), np.array(prompt["labels"]), np.array(prompt["box"])
    )
    assert len(out["masks"]) == 3 and out["best"] == int(np.argmax(scores))
    for rec, m, s in zip(out["masks"], masks, scores):
        np.testing.assert_array_equal(coco_decode(rec["segmentation"]), m > 0)
        assert rec["score"] == pytest.approx(float(s), abs=1e-5)


def test_sam2_segment_everything_matches_the_generator_and_explains_zero_masks():
    from samkit import Sam2AutomaticMaskGenerator, build_sam2

    model = build_sam2(SAM2 / "config.json", checkpoint=SAM2 / "sam2_tiny.pt")
    app = create_app(model, cache_bytes=64 * 2**20, max_upload_bytes=4 * 2**20)
    params = {"points_per_side": 3, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    with TestClient(app) as client:
        image_id = client.post("/api/images", content=(IMAGES / "dog.jpg").read_bytes()).json()[
            "image_id"
        ]
        r = client.post(f"/api/images/{image_id}/everything", json=params)
        assert r.status_code == 200, r.text
        out = r.json()
        strict = client.post(
            f"/api/images/{image_id}/everything", json={**params, "pred_iou_thresh": 0.99}
        )
        assert strict.status_code == 200, strict.text
        none = strict.json()

    gen = Sam2AutomaticMaskGenerator(model, **params)
    expected = gen.generate(load_rgb("dog.jpg"))
    assert len(out["annotations"]) == len(expected) > 0
    assert out["message"] is None and out["filter_counts"] == gen.filter_counts
    for ann, rec in zip(out["annotations"], expected):
        np.testing.assert_array_equal(coco_decode(ann["segmentation"]), rec["segmentation"])
        assert ann["predicted_iou"] == pytest.approx(rec["predicted_iou"], abs=1e-5)
        assert ann["stability_score"] == pytest.approx(rec["stability_score"], abs=1e-5)

    # random weights predict IoUs of about 0.5: a 0.99 threshold removes all 27 candidates
    assert none["annotations"] == []
    assert none["filter_counts"]["candidates"] == none["filter_counts"]["pred_iou"] == 27
    assert "27 by predicted IoU <= 0.99" in none["message"]
    assert 'lower "min predicted IoU"' in none["message"]  # the page's field
    assert "lower pred_iou_thresh" in none["message_api"]  # the setting as sent
    assert out["message_api"] is None
