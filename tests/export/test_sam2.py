"""ONNX export of SAM 2 (encoder + prompt-encoder / mask decoder) run with onnxruntime, compared
with the torch `Sam2ImagePredictor` and the official sam2 fixture outputs."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from samkit import Sam2ImagePredictor, build_sam2  # noqa: E402
from samkit.export.sam import export_decoder  # noqa: E402
from samkit.export.sam2 import (  # noqa: E402
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_OUTPUTS,
    Sam2OnnxEncoder,
    export_sam2_decoder,
    export_sam2_onnx,
    sam2_decoder_example_inputs,
)
from tests.conftest import FIXTURES, load_rgb, manifest  # noqa: E402
from tests.predict.test_predictors import model_input  # noqa: E402

D = FIXTURES / "sam2_tiny"
DOG_HW = (534, 800)  # dog.jpg
MANIFEST = manifest("sam2_tiny")
CASES = {c["name"]: c for c in MANIFEST["cases"] if c["call"] == "predict"}
MAX_FLIPS = 1e-4  # fixtures README: mask sign flips allowed near logit 0
FEAT_ATOL = 2e-5  # ORT vs torch features (measured <= 3.1e-6 for |x| <= 2.7)


@pytest.fixture(scope="module")
def model(sam2_tiny_model):
    return sam2_tiny_model


@pytest.fixture(scope="module")
def onnx_dir(sam2_onnx_dir):
    """`api`: Python API, encoder + 4-mask decoder; `cli`: the command, single-mask decoder
    (tests/export/conftest.py: one export for this module and tests/export/test_ort_sam2.py)."""
    return sam2_onnx_dir


def _session(path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sessions(onnx_dir):
    return {
        "encoder": _session(onnx_dir / "api" / "encoder.onnx"),
        "decoder": _session(onnx_dir / "api" / "decoder.onnx"),
        "single": _session(onnx_dir / "cli" / "decoder.onnx"),
    }


@pytest.fixture(scope="module")
def encoded(model, sessions):
    """Per image: the torch predictor (set_image done) and the ORT encoder's features."""
    cache: dict[str, tuple[Sam2ImagePredictor, dict[str, np.ndarray]]] = {}

    def get(image: str) -> tuple[Sam2ImagePredictor, dict[str, np.ndarray]]:
        if image not in cache:
            rgb = load_rgb(image)
            p = Sam2ImagePredictor(model)
            x = model_input(p, rgb).numpy()
            p.set_image(rgb)
            cache[image] = (
                p,
                dict(zip(ENCODER_OUTPUTS, sessions["encoder"].run(None, {"image": x}))),
            )
        return cache[image]

    return get


def _model_frame(xy: np.ndarray, orig_hw: tuple[int, int], size: int = 1024) -> np.ndarray:
    """Original-image pixels -> model input frame, as `Sam2ImagePredictor._prep_prompts` (float32)."""
    h, w = orig_hw
    return xy.astype(np.float32) / np.array([w, h], np.float32) * np.float32(size)


def _feeds(feats, coords, labels, orig_hw, mask_input=None) -> dict[str, np.ndarray]:
    has_mask = mask_input is not None
    if mask_input is None:
        mask_input = np.zeros((1, 1, 256, 256), np.float32)
    return {
        **feats,
        "point_coords": np.asarray(coords, np.float32),
        "point_labels": np.asarray(labels, np.float32),
        "mask_input": np.asarray(mask_input, np.float32),
        "has_mask_input": np.array([float(has_mask)], np.float32),
        "orig_im_size": np.array(orig_hw, np.float32),
    }


def _flips(masks: np.ndarray, ref: np.ndarray) -> float:
    assert masks.shape == ref.shape
    return float(np.mean((masks > 0) != (ref > 0)))


def _close(out, ref, full_atol: float = 5e-5) -> None:
    """ORT (masks, iou, low_res) vs torch / fixture: README tolerances, masks at threshold 0."""
    masks, iou, low = out
    np.testing.assert_allclose(low, ref[2], rtol=0, atol=1e-5)
    np.testing.assert_allclose(iou, ref[1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(masks, ref[0], rtol=0, atol=full_atol)
    assert _flips(masks, ref[0]) <= MAX_FLIPS


def test_interface_names_shapes_and_metadata(onnx_dir, sessions):
    enc, dec = sessions["encoder"], sessions["decoder"]
    assert [(i.name, i.shape) for i in enc.get_inputs()] == [("image", [1, 3, 1024, 1024])]
    assert [(o.name, o.shape) for o in enc.get_outputs()] == [
        ("image_embed", [1, 256, 64, 64]),
        ("high_res_feats_0", [1, 32, 256, 256]),
        ("high_res_feats_1", [1, 64, 128, 128]),
    ]
    for sess in (dec, sessions["single"]):
        assert [i.name for i in sess.get_inputs()] == DECODER_INPUTS
        assert [o.name for o in sess.get_outputs()] == DECODER_OUTPUTS
    shapes = {i.name: i.shape for i in dec.get_inputs()}
    assert shapes["point_coords"][2] == 2 and all(
        isinstance(d, str) for d in shapes["point_coords"][:2]
    )
    assert isinstance(shapes["mask_input"][0], str) and shapes["mask_input"][1:] == [1, 256, 256]
    assert shapes["has_mask_input"] == [1] and shapes["orig_im_size"] == [2]
    meta = {k: json.loads(v) for k, v in dec.get_modelmeta().custom_metadata_map.items()}
    assert meta["samkit_family"] == "sam2" and meta["samkit_img_size"] == 1024
    assert meta["samkit_return_single_mask"] is False and meta["samkit_component"] == "decoder"
    assert meta["samkit_embedding_shape"] == [1, 256, 64, 64]
    assert meta["samkit_high_res_feats_shapes"] == [[1, 32, 256, 256], [1, 64, 128, 128]]
    np.testing.assert_allclose(meta["samkit_pixel_std"], [0.229, 0.224, 0.225], atol=1e-7)
    single = sessions["single"].get_modelmeta().custom_metadata_map
    assert json.loads(single["samkit_return_single_mask"]) is True
    assert json.loads(enc.get_modelmeta().custom_metadata_map["samkit_component"]) == "encoder"
    assert (onnx_dir / "cli" / "encoder.onnx").is_file()


def test_encoder_module_is_bitwise_encode_image(model):
    """The traced module computes exactly what set_image stores (the position embedding
    precomputed as a constant changes no bit)."""
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        out = Sam2OnnxEncoder(model)(x)
        ref = model.encode_image(x)
    for a, b in zip(out, [ref["image_embed"], *ref["high_res_feats"]]):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("folder", "image"), [("api", "truck.jpg"), ("cli", "dog.jpg")])
def test_encoder_matches_predictor_and_fixture(onnx_dir, sessions, encoded, folder, image):
    p, feats = encoded(image)
    if folder == "cli":  # the command's encoder gives the same features as the API's
        x = model_input(Sam2ImagePredictor(p.model), load_rgb(image)).numpy()
        cli = _session(onnx_dir / "cli" / "encoder.onnx").run(None, {"image": x})
        for a, b in zip(cli, feats.values()):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    torch_feats = list(p.get_image_features().values())
    z = np.load(D / MANIFEST["images"][image]["file"])
    for (name, mine), ref in zip(feats.items(), torch_feats):
        np.testing.assert_allclose(mine, ref.numpy(), rtol=0, atol=FEAT_ATOL)
        flat = mine[0].astype(np.float64).reshape(mine.shape[1], -1)
        np.testing.assert_allclose(flat.mean(1), z[f"{name}_chan_mean"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(flat.std(1, ddof=1), z[f"{name}_chan_std"], rtol=0, atol=1e-5)
    if MANIFEST["images"][image]["features_stored"]:
        stored = {
            "image_embed": (feats["image_embed"], z["image_embed"]),
            "hr1": (feats["high_res_feats_1"][..., ::2, ::2], z["high_res_feats_1_stride2"]),
            "hr0": (feats["high_res_feats_0"][..., ::4, ::4], z["high_res_feats_0_stride4"]),
        }
        for mine, ref in stored.values():
            np.testing.assert_allclose(mine, ref.astype(np.float32), rtol=2e-3, atol=1e-4)


def _case_prompts(z, orig_hw) -> tuple[np.ndarray, np.ndarray]:
    """BxNx2 model-frame coords and BxN labels: box corners (2, 3) first, then the points."""
    coords, labels = [], []
    if "box" in z.files:
        box = _model_frame(z["box"].reshape(-1, 2, 2), orig_hw)
        np.testing.assert_array_equal(box, z["box_model"])  # the official _prep_prompts frame
        coords.append(box)
        labels.append(np.tile([2.0, 3.0], (box.shape[0], 1)))
    if "point_coords" in z.files:
        pts = _model_frame(z["point_coords"][None], orig_hw)
        np.testing.assert_array_equal(pts, z["point_coords_model"])
        coords.append(pts)
        labels.append(z["point_labels"][None].astype(np.float32))
    return np.concatenate(coords, axis=1), np.concatenate(labels, axis=1)


def _squeeze(outs):
    """Official predictor output convention: drop a leading prompt axis of 1."""
    return [o[0] if o.shape[0] == 1 else o for o in outs]


@pytest.mark.parametrize("name", list(CASES))
def test_decoder_matches_predictor_and_fixture_case(sessions, encoded, model, name):
    case = CASES[name]
    z = np.load(D / case["file"])
    assert "point_coords" in z.files or "box" in z.files
    p, feats = encoded(case["image"])
    orig_hw = load_rgb(case["image"]).shape[:2]
    coords, labels = _case_prompts(z, orig_hw)
    mask_in = z["mask_input"][None] if "mask_input" in z.files else None
    feeds = _feeds(feats, coords, labels, orig_hw, mask_in)
    out4 = sessions["decoder"].run(None, feeds)
    out1 = _squeeze(sessions["single"].run(None, feeds))
    assert out4[0].shape == (coords.shape[0], 4, *orig_hw)

    kw = {k: z[k] for k in ("point_coords", "point_labels", "box", "mask_input") if k in z.files}
    ref_mm = p.predict(**kw, multimask_output=True, return_logits=True)
    ref_1 = p.predict(**kw, multimask_output=False, return_logits=True)
    decoder, dynamic = (
        model.sam_mask_decoder,
        model.sam_mask_decoder.dynamic_multimask_via_stability,
    )
    decoder.dynamic_multimask_via_stability = False  # the predictor then returns token 0
    try:
        ref_0 = p.predict(**kw, multimask_output=False, return_logits=True)
    finally:
        decoder.dynamic_multimask_via_stability = dynamic
    _close(_squeeze([o[:, 1:] for o in out4]), ref_mm)
    _close(_squeeze([o[:, :1] for o in out4]), ref_0)
    _close(out1, ref_1)

    # the official sam2 outputs (multimask cases: outputs 1..3; others: the single-mask file)
    mine = _squeeze([o[:, 1:] for o in out4]) if z["multimask_output"] else out1
    np.testing.assert_allclose(mine[2], z["low_res_logits"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(mine[1], z["iou_predictions"], rtol=0, atol=1e-5)
    if "logits_stride4" in z.files:
        assert mine[0].shape == tuple(z["masks_shape"])
        np.testing.assert_allclose(mine[0][..., ::4, ::4], z["logits_stride4"], rtol=0, atol=5e-5)
    else:
        assert _flips(mine[0], z["masks"]) <= MAX_FLIPS


def _random_prompts(n: int, b: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    coords = rng.uniform(0, 1024, (b, n, 2)).astype(np.float32)
    labels = rng.integers(0, 2, (b, n)).astype(np.float32)
    if n >= 3:
        labels[:, :2] = [2.0, 3.0]  # a box, then points
    if n >= 5:
        labels[:, -1] = -1.0  # an explicit padding point is ignored like SAM 2's own
    return coords, labels


@pytest.mark.parametrize(
    ("n", "b", "mask_batch"), [(1, 1, 0), (3, 2, 0), (7, 1, 1), (5, 2, 1), (2, 2, 2), (0, 1, 1)]
)
def test_any_number_of_points_prompts_and_mask_inputs(sessions, encoded, n, b, mask_batch):
    """N points (N = 0: mask only), B prompts, no mask input or one shared or one per prompt,
    against the torch predictor's decoding (`_predict`, prompts already in the model frame)."""
    p, feats = encoded("dog.jpg")
    coords, labels = _random_prompts(n, b, seed=10 * n + b)
    mask_in = None
    if mask_batch:
        rng = np.random.default_rng(n)
        mask_in = rng.normal(0, 2, (mask_batch, 1, 256, 256)).astype(np.float32)
    feeds = _feeds(feats, coords, labels, DOG_HW, mask_in)
    args = (  # N = 0: the predictor's mask-only prompt, which has no padding token
        None if mask_in is None else torch.from_numpy(mask_in),
        torch.from_numpy(coords) if n else None,
        torch.from_numpy(labels).int() if n else None,
        None,
    )
    for sess, multimask in ((sessions["decoder"], True), (sessions["single"], False)):
        out = sess.run(None, feeds)
        ref = [t.numpy() for t in p._predict(*args, multimask_output=multimask, return_logits=True)]
        if multimask:
            out = [o[:, 1:] for o in out]
        assert out[0].shape == (b, 3 if multimask else 1, 534, 800)
        _close(out, ref)


def test_single_mask_takes_token_0_when_stable(tmp_path, sessions, encoded, model):
    """The dynamic multimask choice per prompt: with the stability threshold set between two
    prompts' scores, one keeps the single-mask token and the other gets the best multimask output."""
    _p, feats = encoded("dog.jpg")
    coords, labels = _random_prompts(2, 2, seed=5)
    feeds = _feeds(feats, coords, labels, DOG_HW)
    _, iou4, low4 = sessions["decoder"].run(None, feeds)
    tweaked = copy.deepcopy(model)
    decoder = tweaked.sam_mask_decoder
    scores = decoder._get_stability_scores(torch.from_numpy(low4[:, 0])).numpy()
    assert scores[0] != scores[1]
    decoder.dynamic_multimask_stability_thresh = float(scores.mean())
    out = _session(export_sam2_decoder(tweaked, tmp_path / "d.onnx", True)).run(None, feeds)
    stable = int(np.argmax(scores))
    for i in range(2):
        k = 0 if i == stable else 1 + int(np.argmax(iou4[i, 1:]))
        np.testing.assert_allclose(out[1][i, 0], iou4[i, k], rtol=0, atol=1e-7)
        np.testing.assert_allclose(out[2][i, 0], low4[i, k], rtol=0, atol=1e-6)
    tp = Sam2ImagePredictor(tweaked)
    tp.set_image(load_rgb("dog.jpg"))
    args = (None, torch.from_numpy(coords), torch.from_numpy(labels).int(), None)
    _close(out, [t.numpy() for t in tp._predict(*args, multimask_output=False, return_logits=True)])


def test_export_leaves_the_model_in_eval_mode(onnx_dir, model, sam1_tiny, tmp_path):
    """A training-mode model would skip the dynamic multimask choice in the torch predictor."""

    assert not any(m.training for m in model.modules())  # after the module's exports
    export_decoder(sam1_tiny, tmp_path / "sam1.onnx")
    assert not any(m.training for m in sam1_tiny.modules())


def test_low_precision_model_exports_float32_decoder(tmp_path, onnx_dir, model):
    fast = build_sam2(D / "config.json", checkpoint=D / "sam2_tiny.pt", dtype=torch.bfloat16)
    path = export_sam2_decoder(fast, tmp_path / "fast.onnx")
    feeds = {k: v.numpy() for k, v in sam2_decoder_example_inputs(model, 4, 2).items()}
    a = _session(path).run(None, feeds)
    b = _session(onnx_dir / "api" / "decoder.onnx").run(None, feeds)
    for x, y in zip(a, b):
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


def test_bad_input(tmp_path, model, sam1_tiny):
    with pytest.raises(ValueError, match="SAM 2 `Sam2` model"):
        export_sam2_onnx(sam1_tiny, tmp_path)
    with pytest.raises(ValueError, match="SAM 2 `Sam2` model"):
        export_sam2_decoder(torch.nn.Linear(2, 2), tmp_path / "d.onnx")
    with pytest.raises(ValueError, match="opset"):
        export_sam2_onnx(model, tmp_path, opset=9)
    with pytest.raises(ValueError, match="return_single_mask"):
        export_sam2_decoder(model, tmp_path / "d.onnx", return_single_mask="yes")
    assert not any(tmp_path.iterdir())  # nothing written
