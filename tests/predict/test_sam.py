"""SamPredictor behaviour beyond parity: batching, mask input, embeddings, `predict_torch`.

What every family's predictor does the same way (no image, reset, bad prompts and images, image
forms, the decoder cache) is tests/predict/test_predictors.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit import SamPredictor, build_sam2
from tests.conftest import FIXTURES, load_rgb


@pytest.fixture(scope="module")
def predictor(sam1_tiny):
    p = SamPredictor(sam1_tiny)
    p.set_image(load_rgb("dog.jpg"))
    return p


PT = np.array([[400.0, 260.0]])
LB = np.array([1])


def test_coordinates_outside_image_allowed(predictor):
    masks, scores, _ = predictor.predict(np.array([[-50.0, 2000.0]]), LB)
    assert masks.shape == (3, 534, 800) and np.isfinite(scores).all()


def test_multi_box_with_points_is_one_batch(predictor):
    boxes = np.array([[100, 100, 400, 400], [300, 50, 700, 500]], float)
    pts = np.array([[[200.0, 200.0]], [[500.0, 300.0]]])
    labels = np.ones((2, 1))
    masks, scores, low = predictor.predict(pts, labels, box=boxes, multimask_output=False)
    assert (
        masks.shape == (2, 1, 534, 800) and scores.shape == (2, 1) and low.shape == (2, 1, 256, 256)
    )
    for i in range(2):
        _m1, s1, l1 = predictor.predict(pts[i], labels[i], box=boxes[i], multimask_output=False)
        np.testing.assert_allclose(l1, low[i], atol=1e-5)
        np.testing.assert_allclose(s1, scores[i], atol=1e-6)
    # one point set shared by every box
    m_shared, _, _ = predictor.predict(pts[0], labels[0], box=boxes, multimask_output=True)
    assert m_shared.shape == (2, 3, 534, 800)


def test_mask_input_round_trip(predictor):
    _, scores, low = predictor.predict(PT, LB)
    best = low[np.argmax(scores)][None]
    masks, _, _ = predictor.predict(PT, LB, mask_input=best, multimask_output=False)
    assert masks.shape == (1, 534, 800)


def test_set_embedding_skips_encoder(sam1_tiny, predictor):
    p = SamPredictor(sam1_tiny)
    p.set_embedding(predictor.get_image_embedding(), predictor.original_size)
    assert p.input_size == predictor.input_size
    a = p.predict(PT, LB)
    b = predictor.predict(PT, LB)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="embedding must have shape"):
        p.set_embedding(torch.zeros(1, 256, 32, 32), (10, 10))


def test_predict_torch_errors(predictor):
    with pytest.raises(ValueError, match="given together"):
        predictor.predict_torch(torch.zeros(1, 1, 2), None)
    with pytest.raises(ValueError, match="BxNx2"):
        predictor.predict_torch(torch.zeros(1, 2), torch.ones(1, 1))


def test_set_torch_image_shape_check(predictor):
    with pytest.raises(ValueError, match="long side 1024"):
        predictor.set_torch_image(torch.zeros(1, 3, 100, 100, dtype=torch.uint8), (100, 100))


def test_batched_point_sets_without_boxes(predictor):
    pts = np.array([[[200.0, 200.0]], [[500.0, 300.0]]])
    masks, scores, low = predictor.predict(pts, np.ones((2, 1)))
    assert masks.shape == (2, 3, 534, 800) and scores.shape == (2, 3)
    single = predictor.predict(pts[1], np.ones(1))[2]
    np.testing.assert_allclose(low[1], single, atol=1e-5)


def test_a_sam2_model_is_refused_with_the_predictor_to_use() -> None:
    with pytest.raises(
        ValueError, match=r"SamPredictor needs a SAM 1-style model.*Sam2ImagePredictor"
    ):
        SamPredictor(build_sam2(str(FIXTURES / "sam2_tiny" / "config.json")))
