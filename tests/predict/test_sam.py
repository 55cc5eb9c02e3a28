"""SamPredictor behaviour beyond parity: input conversion, batching, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import SamPredictor
from tests.conftest import load_rgb


@pytest.fixture(scope="module")
def predictor(sam1_tiny):
    p = SamPredictor(sam1_tiny)
    p.set_image(load_rgb("dog.jpg"))
    return p


PT = np.array([[400.0, 260.0]])
LB = np.array([1])


def test_predict_before_set_image(sam1_tiny):
    with pytest.raises(ValueError, match="call set_image"):
        SamPredictor(sam1_tiny).predict(PT, LB)
    with pytest.raises(ValueError, match="call set_image"):
        SamPredictor(sam1_tiny).get_image_embedding()


def test_reset_image(sam1_tiny):
    p = SamPredictor(sam1_tiny)
    p.set_image(load_rgb("dog.jpg"))
    p.reset_image()
    with pytest.raises(ValueError, match="call set_image"):
        p.predict(PT, LB)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"point_coords": PT}, "need point_labels"),
        ({"point_labels": LB}, "without point_coords"),
        ({}, "no prompt"),
        (
            {"point_coords": np.array([[1.0, 2.0], [3.0, 4.0]]), "point_labels": LB},
            "one label per point",
        ),
        ({"point_coords": PT, "point_labels": np.array([5])}, r"must be in \{-1, 0, 1, 2, 3\}"),
        ({"point_coords": PT, "point_labels": np.array([0.5])}, "whole numbers"),
        ({"point_coords": np.array([[np.nan, 2.0]]), "point_labels": LB}, "NaN or infinite"),
        ({"point_coords": np.array([[np.inf, 2.0]]), "point_labels": LB}, "NaN or infinite"),
        ({"point_coords": np.array([1.0, 2.0, 3.0]), "point_labels": LB}, r"shape \(N, 2\)"),
        ({"point_coords": np.zeros((0, 2)), "point_labels": np.zeros(0)}, r"shape \(N, 2\)"),
        ({"point_coords": [["a", "b"]], "point_labels": LB}, "must be numeric"),
        ({"box": np.array([100.0, 100.0, 50.0, 200.0])}, "x1 >= x0"),
        ({"box": np.array([100.0, 100.0, 150.0, 20.0])}, "y1 >= y0"),
        ({"box": np.array([1.0, 2.0, 3.0])}, r"shape \(4,\) or \(B, 4\)"),
        ({"box": np.array([np.nan, 2.0, 3.0, 4.0])}, "NaN or infinite"),
        (
            {"mask_input": np.zeros((1, 64, 64), np.float32)},
            r"mask_input must have shape \(1, 256, 256\)",
        ),
        (
            {
                "box": np.array([[0, 0, 10, 10], [0, 0, 20, 20]]),
                "point_coords": np.zeros((3, 1, 2)),
                "point_labels": np.ones((3, 1)),
            },
            "3 point sets for 2 boxes",
        ),
    ],
)
def test_bad_prompts(predictor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        predictor.predict(**kwargs)


def test_coordinates_outside_image_allowed(predictor):
    masks, scores, _ = predictor.predict(np.array([[-50.0, 2000.0]]), LB)
    assert masks.shape == (3, 534, 800) and np.isfinite(scores).all()


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 2), np.uint8), r"HxWx\{1,3,4\}"),
        (np.zeros((10, 10, 3, 1), np.uint8), r"HxWx\{1,3,4\}"),
        (np.full((10, 10, 3), 2.0, np.float32), r"float image must hold values in \[0, 1\]"),
        ([[1, 2, 3]], "numpy array or a PIL image"),
    ],
)
def test_bad_images(sam1_tiny, image, match):
    with pytest.raises(ValueError, match=match):
        SamPredictor(sam1_tiny).set_image(image)


def test_bad_image_format(sam1_tiny):
    with pytest.raises(ValueError, match="'RGB' or 'BGR'"):
        SamPredictor(sam1_tiny).set_image(np.zeros((8, 8, 3), np.uint8), image_format="HSV")


def test_grey_rgba_pil_and_bgr_inputs_match_rgb(sam1_tiny):
    rgb = load_rgb("dog.jpg")[::4, ::4].copy()  # small: fast
    p = SamPredictor(sam1_tiny)
    p.set_image(rgb)
    ref = p.get_image_embedding().clone()
    for image, fmt in [
        (np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGB"),
        (Image.fromarray(rgb), "RGB"),
        (rgb[:, :, ::-1].copy(), "BGR"),
    ]:
        p.set_image(image, image_format=fmt)
        torch.testing.assert_close(p.get_image_embedding(), ref, rtol=0, atol=0)
    grey = rgb[:, :, 0]
    p.set_image(grey)
    emb_grey = p.get_image_embedding().clone()
    p.set_image(np.dstack([grey] * 3))
    torch.testing.assert_close(emb_grey, p.get_image_embedding(), rtol=0, atol=0)
    p.set_image(Image.fromarray(grey))  # PIL mode "L"
    torch.testing.assert_close(emb_grey, p.get_image_embedding(), rtol=0, atol=0)


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


def test_decoder_cache_follows_the_image_weights_and_mask_inputs():
    """The image-side decoder work kept across calls is never stale."""
    from samkit import build_sam
    from tests.conftest import FIXTURES

    d = FIXTURES / "sam1_tiny"
    model = build_sam(d / "config.json", checkpoint=d / "sam1_tiny.pth")
    p = SamPredictor(model)
    p.set_image(load_rgb("dog.jpg"))
    pt, lb = np.array([[400.0, 260.0]]), np.array([1])

    def fresh(**kw):
        q = SamPredictor(model)
        q.set_embedding(p.get_image_embedding(), p.original_size, p.input_size)
        return q.predict(pt, lb, return_logits=True, **kw)[2]

    first = p.predict(pt, lb, return_logits=True)[2]
    assert p._prompt_decoder.prepared_image is not None  # kept by the first call
    np.testing.assert_allclose(p.predict(pt, lb, return_logits=True)[2], first, atol=1e-6)
    # A mask input changes the dense embedding: this call must not use the cached image side.
    mask_in = first[:1] * 0.5
    np.testing.assert_allclose(
        p.predict(pt, lb, mask_input=mask_in, return_logits=True)[2],
        fresh(mask_input=mask_in),
        atol=1e-6,
    )
    # Weights changed in place (a fine-tuning step): recomputed.
    k_proj = model.mask_decoder.transformer.layers[0].cross_attn_token_to_image.k_proj
    with torch.no_grad():
        k_proj.weight.mul_(0.5)
    changed = p.predict(pt, lb, return_logits=True)[2]
    assert np.abs(changed - first).max() > 1e-3
    np.testing.assert_allclose(changed, fresh(), atol=1e-6)
    # A new image: recomputed.
    p.set_image(load_rgb("truck.jpg"))
    np.testing.assert_allclose(p.predict(pt, lb, return_logits=True)[2], fresh(), atol=1e-6)
