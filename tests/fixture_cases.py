"""The recorded official SAM 1 predictor cases (../shared/fixtures/sam1_*/manifest.json), run
through any predictor with the official `predict` signature and compared with the recorded
arrays: one comparator for the torch predictor (tests/predict/test_parity_sam.py) and the
onnxruntime one (tests/export/test_sam.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.conftest import FIXTURES, load_rgb, manifest

SAM1_MODELS = ["sam1_tiny", "sam1_shapes"]
PROMPT_KEYS = ("point_coords", "point_labels", "box", "mask_input")


def sam1_case_ids() -> list[tuple[str, str]]:
    """(model folder, case name) of every recorded SAM 1 case."""
    return [(m, c["name"]) for m in SAM1_MODELS for c in manifest(m)["cases"]]


def sam1_case(model_dir: str, name: str) -> tuple[dict, Any]:
    """The manifest entry of a case and its arrays (an `np.load` of its .npz)."""
    c = next(c for c in manifest(model_dir)["cases"] if c["name"] == name)
    return c, np.load(FIXTURES / model_dir / c["file"])


def fixture_image(model_dir: str, name: str) -> np.ndarray:
    """A case's image: the fixture folder's own file, else the shared image of that name."""
    local = FIXTURES / model_dir / name
    return load_rgb(str(local) if local.exists() else name)


def predict_sam1_case(predictor: Any, case: dict, z: Any) -> tuple[np.ndarray, ...]:
    """The case's call through `predictor.predict` (a recorded `predict_torch` call of B boxes
    is `predict(box=Bx4)` in pixels: one batched call). Returns (masks, iou, low_res)."""
    multimask = bool(z["multimask_output"])
    if case["call"] == "predict_torch":
        return predictor.predict(box=z["boxes"], multimask_output=multimask)
    kw = {k: z[k] for k in PROMPT_KEYS if k in z.files}
    logits = bool(z["return_logits"]) if "return_logits" in z.files else False
    return predictor.predict(**kw, multimask_output=multimask, return_logits=logits)


def check_sam1_masks(masks: np.ndarray, ref: np.ndarray) -> None:
    """Boolean masks of the recorded shape; at most 1e-4 of the pixels differ."""
    assert masks.shape == ref.shape and masks.dtype == np.bool_
    assert (masks != ref).mean() <= 1e-4


def check_sam1_case(
    model_dir: str, z: Any, masks: np.ndarray, iou: np.ndarray, low_res: np.ndarray
) -> None:
    """Low-res logits and IoU predictions within 1e-5, masks (or stride-4 logits) as recorded."""
    # sam1_tiny's random logits are small (|x| < 0.6): absolute tolerance as the README says.
    # sam1_shapes is trained (|x| up to ~30), so float32 rounding needs a relative term there.
    rtol = 0 if model_dir == "sam1_tiny" else 1e-5
    np.testing.assert_allclose(low_res, z["low_res_logits"], atol=1e-5, rtol=rtol)
    np.testing.assert_allclose(iou, z["iou_predictions"], atol=1e-5, rtol=rtol)
    if "logits_stride4" in z.files:
        assert masks.shape == tuple(z["masks_shape"])
        np.testing.assert_allclose(masks[..., ::4, ::4], z["logits_stride4"], atol=5e-5, rtol=0)
    else:
        check_sam1_masks(masks, z["masks"])
