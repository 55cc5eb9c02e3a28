"""Parity with the official segment_anything on every recorded sam1 fixture case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit import SamPredictor
from tests.conftest import FIXTURES, load_rgb, manifest

MODELS = ["sam1_tiny", "sam1_shapes"]


def _cases(model_dir: str) -> list[dict]:
    return [c for c in manifest(model_dir)["cases"]]


def _image_path(model_dir: str, name: str) -> str:
    local = FIXTURES / model_dir / name
    return str(local) if local.exists() else name


@pytest.fixture(scope="module")
def predictors(sam1_tiny, sam1_shapes):
    return {"sam1_tiny": SamPredictor(sam1_tiny), "sam1_shapes": SamPredictor(sam1_shapes)}


def _set(predictor: SamPredictor, model_dir: str, image: str) -> None:
    key = (model_dir, image)
    if getattr(predictor, "_test_key", None) != key:
        predictor.set_image(load_rgb(_image_path(model_dir, image)))
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


def _check_masks(masks: np.ndarray, ref: np.ndarray) -> None:
    assert masks.shape == ref.shape and masks.dtype == np.bool_
    assert (masks != ref).mean() <= 1e-4


@pytest.mark.parametrize(
    ("model_dir", "case"),
    [(m, c["name"]) for m in MODELS for c in _cases(m)],
)
def test_prompt_case(predictors, model_dir, case):
    c = next(c for c in _cases(model_dir) if c["name"] == case)
    z = np.load(FIXTURES / model_dir / c["file"])
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
        m2, iou2, lr2 = p.predict(box=z["boxes"], multimask_output=bool(z["multimask_output"]))
        np.testing.assert_allclose(lr2, z["low_res_logits"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(iou2, z["iou_predictions"], atol=1e-5, rtol=0)
        _check_masks(m2, z["masks"])
    else:
        kw = {
            k: z[k] for k in ("point_coords", "point_labels", "box", "mask_input") if k in z.files
        }
        return_logits = bool(z["return_logits"]) if "return_logits" in z.files else False
        masks, iou, low_res = p.predict(
            **kw, multimask_output=bool(z["multimask_output"]), return_logits=return_logits
        )
    # sam1_tiny's random logits are small (|x| < 0.6): absolute tolerance as the README says.
    # sam1_shapes is trained (|x| up to ~30), so float32 rounding needs a relative term there.
    rtol = 0 if model_dir == "sam1_tiny" else 1e-5
    np.testing.assert_allclose(low_res, z["low_res_logits"], atol=1e-5, rtol=rtol)
    np.testing.assert_allclose(iou, z["iou_predictions"], atol=1e-5, rtol=rtol)
    if "logits_stride4" in z.files:
        assert masks.shape == tuple(z["masks_shape"])
        np.testing.assert_allclose(masks[..., ::4, ::4], z["logits_stride4"], atol=5e-5, rtol=0)
    else:
        _check_masks(masks, z["masks"])


def test_sam_forward_matches_predictor(sam1_tiny, predictors):
    """The official batched `Sam.forward` gives the predictor's numbers."""
    c = next(c for c in _cases("sam1_tiny") if c["name"] == "truck_2pts")
    z = np.load(FIXTURES / "sam1_tiny" / c["file"])
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
    _check_masks(out["masks"][0].numpy(), z["masks"])
