"""OnnxSam2Predictor (onnxruntime, no torch) against the torch Sam2ImagePredictor on sam2_tiny."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from samkit import Sam2ImagePredictor  # noqa: E402
from samkit.export.ort_sam2 import (  # noqa: E402
    OnnxSam2Predictor,
    preprocess_sam2,
    select_single_mask,
)
from tests.conftest import FIXTURES, ROOT, load_rgb, manifest  # noqa: E402
from tests.predict.test_predictors import model_input  # noqa: E402

D = FIXTURES / "sam2_tiny"
CASES = {c["name"]: c for c in manifest("sam2_tiny")["cases"] if c["call"] == "predict"}
IMAGES = sorted({c["image"] for c in CASES.values()})
PROMPT_KEYS = ("point_coords", "point_labels", "box", "mask_input")
MAX_FLIPS = 1e-4  # fixtures README: mask sign flips allowed near logit 0 (measured <= 3.7e-6)
LOW_ATOL = 2e-6  # low-res logits vs torch (measured <= 5.8e-7 with set_image, 4.9e-7 features)
IOU_ATOL = 1e-6  # measured <= 6e-8
FULL_ATOL = 5e-5  # full-size logits (ORT's vs torch's bilinear resize; measured <= 1.2e-5)


@pytest.fixture(scope="module")
def model(sam2_tiny_model):
    return sam2_tiny_model


@pytest.fixture(scope="module")
def files(sam2_onnx_dir):
    """The encoder, 4-mask and single-mask decoders of tests/export/conftest.py's export (the
    Python API's, and the single-mask decoder of `samkit export onnx --return-single-mask`)."""
    return {
        "encoder": sam2_onnx_dir / "api" / "encoder.onnx",
        "decoder": sam2_onnx_dir / "api" / "decoder.onnx",
        "single": sam2_onnx_dir / "cli" / "decoder.onnx",
    }


@pytest.fixture(scope="module")
def predictors(model, files):
    """Per image: torch predictor, ORT predictor via set_image, ORT predictor via set_features
    with the torch features (decoder path only), ORT single-mask predictor (torch features), and
    those features as numpy arrays ("feats": image embedding, high-res features 0 and 1)."""
    cache: dict[str, dict] = {}

    def get(image: str) -> dict:
        if image not in cache:
            rgb = load_rgb(image)
            tp = Sam2ImagePredictor(model)
            tp.set_image(rgb)
            feats = [f.numpy() for f in tp.get_image_features().values()]
            op = OnnxSam2Predictor(files["encoder"], files["decoder"], threads=2)
            op.set_image(rgb)
            fp = OnnxSam2Predictor(None, files["decoder"], threads=2)
            fp.set_features(*feats, original_size=rgb.shape[:2])
            sp = OnnxSam2Predictor(None, files["single"], threads=2)
            sp.set_features(*feats, original_size=rgb.shape[:2])
            cache[image] = {"torch": tp, "image": op, "features": fp, "single": sp, "feats": feats}
        return cache[image]

    return get


def _flips(masks: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean((masks > 0) != (ref > 0)))


def _close(out, ref, logits: bool) -> None:
    assert [o.shape for o in out] == [r.shape for r in ref]
    assert all(o.dtype == np.float32 for o in out)
    np.testing.assert_allclose(out[2], ref[2], rtol=0, atol=LOW_ATOL)
    np.testing.assert_allclose(out[1], ref[1], rtol=0, atol=IOU_ATOL)
    if logits:
        np.testing.assert_allclose(out[0], ref[0], rtol=0, atol=FULL_ATOL)
    else:
        assert set(np.unique(out[0]).tolist()) <= {0.0, 1.0}
    assert _flips(out[0], ref[0]) <= MAX_FLIPS


def test_metadata_and_interface(files):
    p = OnnxSam2Predictor(files["encoder"], files["decoder"])
    assert p.img_size == 1024 and p.num_decoder_masks == 4 and p.mask_input_size == (256, 256)
    assert p.dynamic_multimask and (p.stability_delta, p.stability_thresh) == (0.05, 0.98)
    meta = ort.InferenceSession(str(files["decoder"])).get_modelmeta().custom_metadata_map
    assert json.loads(meta["samkit_dynamic_multimask_stability_thresh"]) == 0.98
    assert OnnxSam2Predictor(None, files["single"]).num_decoder_masks == 1
    assert OnnxSam2Predictor(None, files["decoder"], mask_threshold=1.5).mask_threshold == 1.5


@pytest.mark.parametrize("image", IMAGES)
def test_preprocess_matches_torch(model, image):
    """PIL float bilinear resize vs torch's antialiased bilinear (measured <= 1.2e-6)."""
    rgb = load_rgb(image)
    mean, std = model.pixel_mean.flatten().numpy(), model.pixel_std.flatten().numpy()
    ref = model_input(Sam2ImagePredictor(model), rgb).numpy()
    mine = preprocess_sam2(rgb, 1024, mean, std)
    assert mine.shape == ref.shape == (1, 3, 1024, 1024) and mine.dtype == np.float32
    np.testing.assert_allclose(mine, ref, rtol=0, atol=3e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_predict_cases_match_torch(predictors, name):
    case = CASES[name]
    z = np.load(D / case["file"])
    kw = {k: z[k] for k in PROMPT_KEYS if k in z.files}
    preds = predictors(case["image"])
    for multimask in (True, False):
        for logits in (True, False):
            args = {**kw, "multimask_output": multimask, "return_logits": logits}
            ref = preds["torch"].predict(**args)
            for which in ("image", "features"):
                _close(preds[which].predict(**args), ref, logits)
            if not multimask:
                _close(preds["single"].predict(**args), ref, logits)
    # the official sam2 outputs of the fixture
    args = {**kw, "multimask_output": bool(z["multimask_output"])}
    out = preds["image"].predict(**args, return_logits=True)
    np.testing.assert_allclose(out[2], z["low_res_logits"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out[1], z["iou_predictions"], rtol=0, atol=1e-5)
    if "masks" in z.files:
        assert _flips(out[0], z["masks"]) <= MAX_FLIPS


def test_several_boxes_and_normalized_coords(predictors):
    preds = predictors("dog.jpg")
    h, w = 534, 800
    boxes = np.array([[100, 50, 400, 500], [420, 100, 780, 520], [10, 10, 200, 150.5]])
    point = np.array([[300.0, 260.0]])
    for multimask in (True, False):
        args = {"box": boxes, "point_coords": point, "point_labels": np.array([1])}
        ref = preds["torch"].predict(**args, multimask_output=multimask)
        out = preds["features"].predict(**args, multimask_output=multimask)
        assert out[0].shape == (3, 3 if multimask else 1, h, w)
        _close(out, ref, logits=False)
    norm = {"box": boxes / [w, h, w, h], "normalize_coords": False}
    ref = preds["torch"].predict(**norm, return_logits=True)
    _close(preds["image"].predict(**norm, return_logits=True), ref, logits=True)
    # a mask-only prompt (no points, no box): the low-res output of an earlier call fed back
    low = preds["torch"].predict(box=boxes[0], multimask_output=False)[2]
    ref = preds["torch"].predict(mask_input=low, multimask_output=False, return_logits=True)
    out = preds["features"].predict(mask_input=low, multimask_output=False, return_logits=True)
    _close(out, ref, logits=True)


def test_select_single_mask_matches_mask_decoder(model):
    """numpy selection vs `MaskDecoder._dynamic_multimask_via_stability` on logits whose
    single-mask tokens are stable for some prompts and not for others."""
    rng = np.random.default_rng(0)
    low = rng.normal(0, 3, (6, 4, 32, 32)).astype(np.float32)
    low[::2, 0] = np.sign(low[::2, 0]) * 10  # far from +-delta: stability 1
    low[1::2, 0] *= 0.02  # mostly within +-delta: stability well below 0.98
    iou = rng.uniform(0, 1, (6, 4)).astype(np.float32)
    full = rng.normal(0, 1, (6, 4, 5, 7)).astype(np.float32)
    decoder = model.sam_mask_decoder
    ref_low, ref_iou = decoder._dynamic_multimask_via_stability(
        torch.from_numpy(low), torch.from_numpy(iou)
    )
    m, i, lr = select_single_mask(full, iou, low, 0.05, 0.98)
    np.testing.assert_array_equal(lr, ref_low.numpy())
    np.testing.assert_array_equal(i, ref_iou.numpy())
    k = [int(np.flatnonzero((low[b] == lr[b, 0]).all(axis=(1, 2)))[0]) for b in range(6)]
    assert k[::2] == [0, 0, 0] and all(j > 0 for j in k[1::2])  # both branches taken
    np.testing.assert_array_equal(m[:, 0], full[np.arange(6), k])


def test_single_mask_choice_follows_stability(files, predictors, model):
    """With the threshold between two prompts' stability scores, one keeps token 0 and the other
    the best multimask output, as in the torch predictor with the same threshold."""
    preds = predictors("dog.jpg")
    fp = OnnxSam2Predictor(None, files["decoder"], threads=2)
    fp.set_features(*preds["feats"], original_size=(534, 800))
    pts = np.array([[[400.0, 260.0]], [[600.0, 100.0]]])
    args = {"point_coords": pts, "point_labels": np.ones((2, 1))}
    tweaked = copy.deepcopy(model)
    mm = tweaked.sam_mask_decoder
    mm.dynamic_multimask_via_stability = False  # token 0 to read its stability score
    tp = Sam2ImagePredictor(tweaked)
    tp.set_image(load_rgb("dog.jpg"))
    tok0 = tp.predict(**args, multimask_output=False, return_logits=True)[2]
    scores = mm._get_stability_scores(torch.from_numpy(tok0)).numpy()[:, 0]
    assert scores[0] != scores[1]
    thresh = float(scores.mean())
    mm.dynamic_multimask_via_stability, mm.dynamic_multimask_stability_thresh = True, thresh
    fp.stability_thresh = thresh
    ref = tp.predict(**args, multimask_output=False, return_logits=True)
    out = fp.predict(**args, multimask_output=False, return_logits=True)
    _close(out, ref, logits=True)
    stable = int(np.argmax(scores))
    np.testing.assert_allclose(out[2][stable], tok0[stable], atol=LOW_ATOL)
    assert np.abs(out[2][1 - stable] - tok0[1 - stable]).max() > 1e-3  # a multimask output


def test_predict_path_never_imports_torch(tmp_path, files, predictors):
    preds = predictors("truck.jpg")
    np.savez(tmp_path / "feats.npz", *preds["feats"])
    code = f"""
import json, sys
import numpy as np
from PIL import Image
from samkit.export.ort_sam2 import OnnxSam2Predictor
z = np.load({str(tmp_path / "feats.npz")!r})
p = OnnxSam2Predictor(None, {str(files["decoder"])!r}, threads=1)
p.set_features(z["arr_0"], z["arr_1"], z["arr_2"], original_size=(1200, 1800))
m, iou, low = p.predict(np.array([[500, 375]]), np.array([1]), multimask_output=False)
after_features = "torch" in sys.modules
q = OnnxSam2Predictor({str(files["encoder"])!r}, {str(files["decoder"])!r}, threads=1)
q.set_image(Image.open({str(ROOT.parent / "shared" / "images" / "truck.jpg")!r}))
q.predict(box=np.array([100, 100, 900, 700]))
print(json.dumps({{"features": after_features, "end": "torch" in sys.modules,
                  "iou": iou.tolist()}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["features"] is False and res["end"] is False
    ref = preds["torch"].predict(np.array([[500, 375]]), np.array([1]), multimask_output=False)
    np.testing.assert_allclose(res["iou"], ref[1], rtol=0, atol=IOU_ATOL)


def test_bad_input(files, predictors):
    feats = list(predictors("dog.jpg")["feats"])
    p = OnnxSam2Predictor(None, files["decoder"])
    with pytest.raises(ValueError, match="no image is set"):
        p.predict(box=np.array([0, 0, 10, 10]))
    with pytest.raises(ValueError, match="use set_features"):
        p.set_image(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"high_res_feats_0 must have shape \(1, 32, 256, 256\)"):
        p.set_features(feats[0], feats[1][:, :, :128], feats[2], (534, 800))
    with pytest.raises(ValueError, match="NaN"):
        p.set_features(feats[0] * np.nan, feats[1], feats[2], (534, 800))
    for size in ((534,), (0, 800), (534.5, 800), "534x800"):
        with pytest.raises(ValueError, match="original_size"):
            p.set_features(*feats, original_size=size)
    p.set_features(*feats, original_size=(534, 800))
    bad = [
        ({"point_coords": np.array([[1.0, np.nan]]), "point_labels": [1]}, "NaN"),
        ({"point_coords": np.array([[1.0, 2.0]]), "point_labels": [5]}, "point_labels must be"),
        ({"point_coords": np.array([1.0, 2.0, 3.0]), "point_labels": [1]}, "shape"),
        ({"box": np.array([10, 10, 5, 20])}, "x1 >= x0"),
        ({"mask_input": np.zeros((1, 64, 64))}, r"mask_input must have shape \(1, 256, 256\)"),
        ({}, "no prompt"),
        ({"box": np.array([0, 0, 5, 5]), "multimask_output": "yes"}, "must be a bool"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            p.predict(**kwargs)
    single = OnnxSam2Predictor(None, files["single"])
    single.set_features(*feats, original_size=(534, 800))
    with pytest.raises(ValueError, match="return_single_mask"):
        single.predict(box=np.array([0, 0, 5, 5]), multimask_output=True)
    with pytest.raises(ValueError, match="decoder inputs"):
        OnnxSam2Predictor(None, files["encoder"])
    with pytest.raises(ValueError, match="mask_threshold"):
        OnnxSam2Predictor(None, files["decoder"], mask_threshold=float("nan"))
    with pytest.raises(FileNotFoundError):
        OnnxSam2Predictor(None, files["decoder"].parent / "missing.onnx")
    p.reset_predictor()
    with pytest.raises(ValueError, match="no image is set"):
        p.get_image_embedding()
