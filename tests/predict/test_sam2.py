"""Sam2ImagePredictor: parity with the official sam2 1.1.0 on every recorded fixture case, bad
input, and the CPU hole / sprinkle post-processing."""

from __future__ import annotations

import hashlib
import sys
from collections import deque

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from samkit import Sam2ImagePredictor, build_sam2
from samkit.predict.postprocess import connected_components, fill_holes_and_remove_sprinkles
from tests.conftest import FIXTURES, load_rgb, manifest
from tests.predict.test_predictors import BAD_IMAGES, encoder_inputs

D = FIXTURES / "sam2_tiny"
MANIFEST = manifest("sam2_tiny")
CASES = {c["name"]: c for c in MANIFEST["cases"]}
PT = np.array([[400.0, 260.0]])
LB = np.array([1])


@pytest.fixture(scope="module")
def model():
    return build_sam2(D / "config.json", checkpoint=D / "sam2_tiny.pt")


@pytest.fixture(scope="module")
def predictor_for(model):
    """Predictors with one image set each; every image is encoded once per module."""
    cache: dict[str, Sam2ImagePredictor] = {}

    def get(image: str) -> Sam2ImagePredictor:
        if image not in cache:
            p = Sam2ImagePredictor(model)
            p.set_image(load_rgb(image))
            cache[image] = p
        return cache[image]

    return get


@pytest.fixture(scope="module")
def dog(predictor_for):
    return predictor_for("dog.jpg")


DOG_HW = (534, 800)  # dog.jpg


def _close_f16(mine: torch.Tensor, stored: np.ndarray) -> None:
    np.testing.assert_allclose(mine.numpy(), stored.astype(np.float32), rtol=2e-3, atol=1e-4)


def _stats(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    flat = x[0].double().flatten(1).numpy()
    return flat.mean(1), flat.std(1, ddof=1)


# --------------------------------------------------------------------------------------------
# image features


@pytest.mark.parametrize("image", ["truck.jpg", "groceries.jpg", "dog.jpg"])
def test_features_match_reference(predictor_for, image):
    info = MANIFEST["images"][image]
    z = np.load(D / info["file"])
    p = predictor_for(image)
    assert p.predict(PT, LB)[0].shape[-2:] == tuple(z["orig_hw"])  # the original size kept
    assert hashlib.sha256(load_rgb(image).tobytes()).hexdigest() == info["rgb_sha256"]

    # model input: bitwise the official one (same interpolation kernel)
    q = Sam2ImagePredictor(p.model)
    x = encoder_inputs(q, [lambda: q.set_image(load_rgb(image))])[0][0]
    assert hashlib.sha256(x.numpy().tobytes()).hexdigest() == info["model_input_f32_sha256"]
    np.testing.assert_array_equal(x[:, 500:532, 700:732].numpy(), z["input_crop"])
    np.testing.assert_allclose(
        x.double().flatten(1).mean(1).numpy(), z["input_chan_mean"], atol=1e-6
    )
    np.testing.assert_allclose(
        x.double().flatten(1).std(1, unbiased=True).numpy(), z["input_chan_std"], atol=1e-6
    )

    feats = p.get_image_features()
    embed, hr0, hr1 = (
        feats[k] for k in ("image_embedding", "high_res_feats_0", "high_res_feats_1")
    )
    assert embed.shape == (1, 256, 64, 64)
    assert hr0.shape == (1, 32, 256, 256) and hr1.shape == (1, 64, 128, 128)
    assert p.get_image_embedding() is embed
    for name, t in (("image_embed", embed), ("high_res_feats_0", hr0), ("high_res_feats_1", hr1)):
        mean, std = _stats(t)
        np.testing.assert_allclose(mean, z[f"{name}_chan_mean"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(std, z[f"{name}_chan_std"], rtol=0, atol=1e-5)
    if info["features_stored"]:
        _close_f16(embed, z["image_embed"])
        _close_f16(hr1[..., ::2, ::2], z["high_res_feats_1_stride2"])
        _close_f16(hr0[..., ::4, ::4], z["high_res_feats_0_stride4"])


# --------------------------------------------------------------------------------------------
# prompt cases


def _check_outputs(z, masks, iou, low_res, suffix="", return_logits=False):
    np.testing.assert_allclose(low_res, z["low_res_logits" + suffix], rtol=0, atol=1e-5)
    np.testing.assert_allclose(iou, z["iou_predictions" + suffix], rtol=0, atol=1e-5)
    assert masks.dtype == np.float32 and low_res.dtype == np.float32
    if return_logits:
        assert masks.shape == tuple(z["masks_shape"])
        np.testing.assert_allclose(masks[..., ::4, ::4], z["logits_stride4"], rtol=0, atol=5e-5)
        return
    ref = z["masks" + suffix]
    assert masks.shape == ref.shape
    assert set(np.unique(masks)) <= {0.0, 1.0}  # official: 0/1 floats
    assert ref.any() and (~ref).any()  # the case is not trivial
    assert np.mean((masks > 0.5) != ref) <= 1e-4


@pytest.mark.parametrize("name", [c["name"] for c in MANIFEST["cases"] if c["call"] == "predict"])
def test_predict_case(predictor_for, name):
    case = CASES[name]
    z = np.load(D / case["file"])
    p = predictor_for(case["image"])
    kwargs = {
        k: z[k] for k in ("point_coords", "point_labels", "box", "mask_input") if k in z.files
    }
    if case["mask_input_from"] is not None:
        # the stored mask_input is the best low-res mask of the earlier case
        src = np.load(D / CASES[case["mask_input_from"]]["file"])
        best = src["low_res_logits"][np.argmax(src["iou_predictions"])]
        np.testing.assert_array_equal(z["mask_input"][0], best)
    return_logits = bool(case["kwargs"].get("return_logits", False))
    seen: dict = {}  # the prompt encoder's points in the model frame (box corners first)

    def capture(_module, _args, kwargs):
        seen["points"] = kwargs["points"]

    hook = p.model.sam_prompt_encoder.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        masks, iou, low_res = p.predict(
            **kwargs,
            multimask_output=bool(z["multimask_output"]),
            return_logits=return_logits,
            normalize_coords=case["normalize_coords"],
        )
    finally:
        hook.remove()
    _check_outputs(z, masks, iou, low_res, return_logits=return_logits)

    coords, labels = seen["points"]
    corners = 2 if "box_model" in z.files else 0
    if "point_coords_model" in z.files:
        ref = z["point_coords_model"]
        np.testing.assert_array_equal(coords[:, corners:].numpy().reshape(ref.shape), ref)
        assert labels.dtype == torch.int32
    if "box_model" in z.files:
        ref = z["box_model"]
        np.testing.assert_array_equal(coords[:, :corners].numpy().reshape(ref.shape), ref)


def test_dog_2boxes_is_one_batch(dog):
    """Two boxes in one call (the decoder's repeat_image path) equal two single-box calls."""
    z = np.load(D / CASES["dog_2boxes"]["file"])
    masks, iou, low_res = dog.predict(box=z["box"], multimask_output=False)
    assert masks.shape == (2, 1, 534, 800) and iou.shape == (2, 1)
    for i in range(2):
        _m_i, iou_i, low_i = dog.predict(box=z["box"][i], multimask_output=False)
        np.testing.assert_allclose(low_i, low_res[i], rtol=0, atol=1e-5)
        np.testing.assert_allclose(iou_i, iou[i], rtol=0, atol=1e-5)


def test_batch_groceries_truck(model, predictor_for):
    case = CASES["batch_groceries_truck"]
    z = np.load(D / case["file"])
    p = Sam2ImagePredictor(model)
    p.set_image_batch([load_rgb(name) for name in case["images"]])
    assert p.get_image_embedding().shape == (2, 256, 64, 64)
    # the batched encoder gives each image the features of a single set_image
    for i, name in enumerate(case["images"]):
        single = predictor_for(name).get_image_embedding()
        torch.testing.assert_close(p.get_image_embedding()[i], single[0], rtol=0, atol=1e-5)
    masks, iou, low_res = p.predict_batch(
        [z["point_coords_0"], z["point_coords_1"]],
        [z["point_labels_0"], z["point_labels_1"]],
        multimask_output=bool(z["multimask_output"]),
    )
    assert len(masks) == len(iou) == len(low_res) == 2
    assert [m.shape[-2:] for m in masks] == [(534, 800), (1200, 1800)]  # each original size
    for i in range(2):
        _check_outputs(z, masks[i], iou[i], low_res[i], suffix=f"_{i}")
    with pytest.raises(ValueError, match="use predict_batch"):
        p.predict(PT, LB)
    with pytest.raises(ValueError, match="one entry per image"):
        p.predict_batch([PT], [LB])
    with pytest.raises(ValueError, match="no prompt"):
        p.predict_batch(None, None)


def test_normalize_coords_false_takes_unit_coordinates(dog):
    _m1, s1, l1 = dog.predict(PT, LB)
    unit = PT / np.array([800.0, 534.0])
    _m2, s2, l2 = dog.predict(unit, LB, normalize_coords=False)
    np.testing.assert_allclose(l1, l2, rtol=0, atol=1e-4)
    np.testing.assert_allclose(s1, s2, rtol=0, atol=1e-5)


def test_low_res_logits_are_clamped(dog, monkeypatch):
    decoder = dog.model.sam_mask_decoder
    original = decoder.forward

    def scaled(*args, **kwargs):
        masks, iou, tokens, obj = original(*args, **kwargs)
        return masks * 1000.0, iou, tokens, obj

    monkeypatch.setattr(decoder, "forward", scaled)
    masks, _, low_res = dog.predict(PT, LB, return_logits=True)
    assert low_res.max() == 32.0 and low_res.min() == -32.0
    assert np.abs(masks).max() > 32.0  # the full-resolution logits are not clamped


# --------------------------------------------------------------------------------------------
# bad input


def test_no_image_is_also_the_official_runtime_error(model):
    """(The ValueError of every predictor: tests/predict/test_predictors.py.)"""
    p = Sam2ImagePredictor(model)
    with pytest.raises(RuntimeError):  # the official predictor's exception type also works
        p.predict(PT, LB)
    with pytest.raises(ValueError, match="set_image_batch"):
        p.predict_batch([PT], [LB])


@pytest.mark.parametrize(("image", "match"), BAD_IMAGES)
def test_bad_images_in_a_batch(model, image, match):
    with pytest.raises(ValueError, match=match):
        Sam2ImagePredictor(model).set_image_batch([image])


def test_bad_image_batch(model):
    p = Sam2ImagePredictor(model)
    with pytest.raises(ValueError, match="non-empty list"):
        p.set_image_batch([])
    with pytest.raises(ValueError, match="non-empty list"):
        p.set_image_batch(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_hole_area": -1.0}, ">= 0"),
        ({"max_sprinkle_area": float("nan")}, "finite number"),
        ({"mask_threshold": "0"}, "finite number"),
    ],
)
def test_bad_constructor_arguments(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sam2ImagePredictor(model, **kwargs)


def test_needs_a_sam2_model():
    with pytest.raises(ValueError, match="SAM 2 model"):
        Sam2ImagePredictor(torch.nn.Linear(2, 2))


def test_image_batch_forms_match_rgb(model):
    """(Single images in every form: tests/predict/test_predictors.py.)"""
    rgb = load_rgb("dog.jpg")[::8, ::8].copy()
    p = Sam2ImagePredictor(model)
    single, batch = encoder_inputs(
        p,
        [
            lambda: p.set_image(rgb),
            lambda: p.set_image_batch(
                [Image.fromarray(rgb), rgb[:, :, ::-1].copy()], image_format="BGR"
            ),
        ],
    )
    torch.testing.assert_close(batch, torch.cat([single, single]), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# hole / sprinkle removal


def _bfs_areas(mask: np.ndarray) -> np.ndarray:
    """Independent 8-connected component areas of one HxW boolean mask."""
    h, w = mask.shape
    areas = np.zeros((h, w), np.int64)
    seen = np.zeros((h, w), bool)
    for sy in range(h):
        for sx in range(w):
            if not mask[sy, sx] or seen[sy, sx]:
                continue
            comp, queue = [], deque([(sy, sx)])
            seen[sy, sx] = True
            while queue:
                y, x = queue.popleft()
                comp.append((y, x))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            queue.append((ny, nx))
            for y, x in comp:
                areas[y, x] = len(comp)
    return areas


def test_connected_components_are_8_connected():
    rng = np.random.default_rng(0)
    masks = rng.random((2, 3, 17, 23)) < 0.45
    labels, areas = connected_components(masks)
    assert labels.shape == areas.shape == masks.shape
    for idx in np.ndindex(2, 3):
        np.testing.assert_array_equal(areas[idx], _bfs_areas(masks[idx]))
    assert ((labels > 0) == masks).all()
    diagonal = np.eye(4, dtype=bool)  # 4 pixels touching only at corners: one component
    np.testing.assert_array_equal(connected_components(diagonal)[1], diagonal * 4)


def test_fill_holes_and_remove_sprinkles_follows_official_order():
    logits = np.full((1, 1, 12, 12), 1.0, np.float32)  # foreground everywhere
    logits[0, 0, 2:5, 2:5] = -1.0  # a 3x3 background ring ...
    logits[0, 0, 3, 3] = 2.0  # ... around a 1-pixel foreground speck
    logits[0, 0, 8:12, 8:12] = -1.0  # 16-pixel background block in the corner
    t = torch.from_numpy(logits)

    holes = fill_holes_and_remove_sprinkles(t, 0.0, max_hole_area=8, max_sprinkle_area=0)
    expected = logits.copy()
    expected[0, 0, 2:5, 2:5] = 10.0  # the 8-pixel ring is a hole
    expected[0, 0, 3, 3] = 2.0
    np.testing.assert_array_equal(holes.numpy(), expected)

    both = fill_holes_and_remove_sprinkles(t, 0.0, max_hole_area=8, max_sprinkle_area=1)
    # as in the official code, sprinkles are found on the input logits, where the speck is an
    # isolated 1-pixel component, so it is removed even though the hole around it is filled
    expected[0, 0, 3, 3] = -10.0
    np.testing.assert_array_equal(both.numpy(), expected)

    big = fill_holes_and_remove_sprinkles(t, 0.0, max_hole_area=16, max_sprinkle_area=0)
    assert (big.numpy()[0, 0, 8:, 8:] == 10.0).all()  # border-touching components count too
    assert fill_holes_and_remove_sprinkles(t, 0.0, 0, 0) is t


def test_predictor_hole_and_sprinkle_removal(model, dog):
    low = dog.predict(PT, LB, multimask_output=False, return_logits=True)[2]
    p = Sam2ImagePredictor(model, max_hole_area=6, max_sprinkle_area=4)
    p.set_image_features(dog.get_image_features(), DOG_HW)
    logits, _, low2 = p.predict(PT, LB, multimask_output=False, return_logits=True)
    np.testing.assert_array_equal(low2, low)  # the returned low-res logits are untouched
    # components from connected_components, checked against a BFS above
    bg, fg = connected_components(low[0] <= 0)[1], connected_components(low[0] > 0)[1]
    is_hole, is_sprinkle = (bg > 0) & (bg <= 6), (fg > 0) & (fg <= 4)
    assert is_hole.any() and is_sprinkle.any()  # noise-like masks: both kinds occur
    cleaned = np.where(is_hole, 10.0, low[0])
    cleaned = np.where(is_sprinkle, -10.0, cleaned).astype(np.float32)
    expected = F.interpolate(
        torch.from_numpy(cleaned)[None, None], (534, 800), mode="bilinear", align_corners=False
    )[0].numpy()
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)


def test_hole_removal_without_scipy_is_a_clear_error(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.ndimage", None)
    with pytest.raises(ImportError, match="needs scipy"):
        Sam2ImagePredictor(model, max_hole_area=10)
    Sam2ImagePredictor(model)  # no clean-up requested: scipy not needed
