"""EfficientTAM image predictor parity: the official EfficientTAMImagePredictor's outputs on the
sam2_tiny cases, recorded in tests/fixtures/efficienttam (see its README for the storage and the
tolerances; tools/reference/light_video records them)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import ROOT, load_rgb

FIX = ROOT / "tests" / "fixtures" / "efficienttam"
LOGIT_ATOL = 1e-5  # low-res logits and IoUs (float32 drift from float64 is ~1e-7)
FULL_LOGIT_ATOL = 5e-5  # full-resolution logits (two bilinear upsamplings)
MASK_MISMATCH = 1e-4


def _manifest() -> dict:
    return json.loads((FIX / "manifest.json").read_text())


@pytest.fixture(scope="module")
def ref():
    return np.load(FIX / "image_cases.npz")


@pytest.fixture(scope="module")
def predictor():
    from samkit.build.efficienttam import build_efficienttam
    from samkit.predict.sam2 import Sam2ImagePredictor

    model = build_efficienttam(FIX / "config.json", checkpoint=FIX / "efficienttam_tiny.pt")
    return Sam2ImagePredictor(model)


def _unpack(a: np.ndarray, width: int) -> np.ndarray:
    return np.unpackbits(a, axis=-1)[..., :width].astype(bool)


def _check_masks(ref, key: str, masks: np.ndarray, stride: int) -> None:
    m = np.asarray(masks) > 0.5
    sub = m[..., ::stride, ::stride]
    stored = _unpack(ref[key], sub.shape[-1])
    assert stored.shape == sub.shape, key
    assert np.mean(stored != sub) <= MASK_MISMATCH, key
    area = m.reshape(*m.shape[:-2], -1).sum(-1)
    tol = MASK_MISMATCH * m.shape[-1] * m.shape[-2]
    assert np.all(np.abs(area - ref[key + "_area"]) <= tol), key


def _check_logits(ref, key: str, logits: np.ndarray, stride: int, atol: float) -> None:
    v = np.asarray(logits, dtype=np.float32)
    np.testing.assert_allclose(v[..., ::stride, ::stride], ref[key], rtol=0, atol=atol)
    absmax = np.abs(v).reshape(*v.shape[:-2], -1).max(-1)
    np.testing.assert_allclose(absmax, ref[key + "_absmax"], rtol=0, atol=atol)


@pytest.mark.parametrize("name", ["truck.jpg", "groceries.jpg", "dog.jpg"])
def test_image_features(predictor, ref, name):
    stem = name[:-4]
    img = load_rgb(name)
    info = _manifest()["images"][name]
    import hashlib

    assert hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest() == info["rgb_sha256"]
    predictor.set_image(img)
    emb = predictor.get_image_features()["image_embedding"][0].double().numpy()
    c = emb.shape[0]
    pre = f"image_{stem}/"
    np.testing.assert_array_equal(ref[pre + "orig_hw"], img.shape[:2])
    flat = emb.reshape(c, -1)
    np.testing.assert_allclose(flat.mean(-1), ref[pre + "image_embed_chan_mean"], atol=1e-5)
    np.testing.assert_allclose(flat.std(-1, ddof=1), ref[pre + "image_embed_chan_std"], atol=1e-5)
    if stem == "truck":
        stored = ref[pre + "image_embed_stride2"][0].astype(np.float32)
        assert np.allclose(emb[:, ::2, ::2], stored, rtol=2e-3, atol=1e-4)


CASES = [c for c in _manifest()["cases"]] if (FIX / "manifest.json").exists() else []


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_matches_official(predictor, ref, case):
    stride = _manifest()["storage"]["image_logit_stride"]
    mstride = _manifest()["storage"]["image_mask_stride"]
    pre = case["prefix"]
    kw = case["kwargs"]
    if case["call"] == "predict":
        predictor.set_image(load_rgb(case["image"]))
        call = {k: np.asarray(kw[k]) for k in ("point_coords", "point_labels", "box") if k in kw}
        if case.get("mask_input_from"):
            call["mask_input"] = ref[pre + "mask_input"].astype(np.float32)
        masks, ious, low = predictor.predict(
            multimask_output=kw["multimask_output"],
            return_logits=kw.get("return_logits", False),
            **call,
        )
        np.testing.assert_allclose(ious, ref[pre + "iou_predictions"], rtol=0, atol=LOGIT_ATOL)
        _check_logits(ref, pre + "low_res_logits", low, stride, LOGIT_ATOL)
        if kw.get("return_logits"):
            _check_logits(ref, pre + "logits", masks, 8, FULL_LOGIT_ATOL)
            masks = np.asarray(masks) > 0
        _check_masks(ref, pre + "masks", masks, mstride)
    else:
        predictor.set_image_batch([load_rgb(n) for n in case["images"]])
        ms, ios, lows = predictor.predict_batch(
            [np.asarray(p) for p in kw["point_coords_batch"]],
            [np.asarray(p) for p in kw["point_labels_batch"]],
            multimask_output=kw["multimask_output"],
        )
        for i in range(len(case["images"])):
            np.testing.assert_allclose(ios[i], ref[f"{pre}iou_predictions_{i}"], atol=LOGIT_ATOL)
            _check_logits(ref, f"{pre}low_res_logits_{i}", lows[i], stride, LOGIT_ATOL)
            _check_masks(ref, f"{pre}masks_{i}", ms[i], mstride)
