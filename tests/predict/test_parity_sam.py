"""Parity with the official segment_anything on every recorded sam1 fixture case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit import SamPredictor
from tests.conftest import FIXTURES, load_rgb
from tests.fixture_cases import (
    check_sam1_case,
    check_sam1_masks,
    fixture_image,
    predict_sam1_case,
    sam1_case,
    sam1_case_ids,
)


@pytest.fixture(scope="module")
def predictors(sam1_tiny, sam1_shapes):
    return {"sam1_tiny": SamPredictor(sam1_tiny), "sam1_shapes": SamPredictor(sam1_shapes)}


def _set(predictor: SamPredictor, model_dir: str, image: str) -> None:
    key = (model_dir, image)
    if getattr(predictor, "_test_key", None) != key:
        predictor.set_image(fixture_image(model_dir, image))
        predictor._test_key = key


@pytest.mark.parametrize("image", ["truck.jpg", "groceries.jpg", "dog.jpg"])
def test_image_embedding(predictors, image):
    p = predictors["sam1_tiny"]
    _set(p, "sam1_tiny", image)
    ref = np.load(FIXTURES / "sam1_tiny" / f"image_{image[:-4]}.npz")
    assert p.input_size == tuple(ref["input_size"])
    assert p.original_size == tuple(ref["original_size"])
    feats = p.get_image_embedding()[0].double().numpy()  # (256, 64, 64)
    flat = feats.reshape(256, -1)
    np.testing.assert_allclose(flat.mean(1), ref["features_chan_mean"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(flat.std(1, ddof=1), ref["features_chan_std"], atol=1e-5, rtol=0)
    if "features" in ref.files:
        stored = ref["features"].astype(np.float32)[0]
        assert np.allclose(feats.astype(np.float32), stored, rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize(("model_dir", "case"), sam1_case_ids())
def test_prompt_case(predictors, model_dir, case):
    c, z = sam1_case(model_dir, case)
    p = predictors[model_dir]
    _set(p, model_dir, c["image"])
    if c["call"] == "predict_torch":
        masks, iou, low_res = p.predict_torch(
            None,
            None,
            boxes=torch.from_numpy(z["boxes_model"]),
            multimask_output=bool(z["multimask_output"]),
        )
        masks, iou, low_res = masks.numpy(), iou.numpy(), low_res.numpy()
        # The same boxes through predict(box=Bx4) in pixels: one batched call, same numbers.
        check_sam1_case(model_dir, z, *predict_sam1_case(p, c, z))
    else:
        masks, iou, low_res = predict_sam1_case(p, c, z)
    check_sam1_case(model_dir, z, masks, iou, low_res)


def test_sam_forward_matches_predictor(sam1_tiny, predictors):
    """The official batched `Sam.forward` gives the predictor's numbers."""
    _c, z = sam1_case("sam1_tiny", "truck_2pts")
    p = predictors["sam1_tiny"]
    image = load_rgb("truck.jpg")
    resized = p.transform.apply_image(image)
    batched = [
        {
            "image": torch.from_numpy(np.array(resized)).permute(2, 0, 1),
            "original_size": image.shape[:2],
            "point_coords": torch.from_numpy(z["point_coords_model"]).float()[None],
            "point_labels": torch.from_numpy(z["point_labels"])[None],
        }
    ]
    with torch.no_grad():
        out = sam1_tiny(batched, multimask_output=False)[0]
    np.testing.assert_allclose(out["low_res_logits"][0].numpy(), z["low_res_logits"], atol=1e-5)
    check_sam1_masks(out["masks"][0].numpy(), z["masks"])
