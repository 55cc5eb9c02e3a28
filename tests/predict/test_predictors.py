"""What every image predictor does the same way, run per family (tests/families.py): no image
set, reset, bad prompts and bad images refused with the same `ValueError`, and every image form
(grey, RGBA, PIL, BGR) reaching the encoder as the same RGB input.

Family-specific behaviour stays with its predictor: tests/predict/test_sam.py, test_sam2.py.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.io.embeddings import load_embedding, rgb_sha256
from tests.conftest import load_rgb
from tests.families import Family, parametrize_families, shared_fixture_model

PT = np.array([[400.0, 260.0]])
LB = np.array([1])


@pytest.fixture(scope="module")
def dog() -> Callable[[Family], object]:
    """The family's predictor with dog.jpg set; each family's image is encoded once."""
    cache: dict[str, object] = {}

    def get(family: Family) -> object:
        if family.name not in cache:
            p = family.predictor(shared_fixture_model(family.name))
            p.set_image(load_rgb("dog.jpg"))
            cache[family.name] = p
        return cache[family.name]

    return get


@parametrize_families()
def test_predict_before_set_image(family):
    p = family.predictor(shared_fixture_model(family.name))
    for call in (lambda: p.predict(PT, LB), p.get_image_embedding):
        with pytest.raises(ValueError, match="call set_image"):
            call()


@parametrize_families()
def test_reset_forgets_the_image(family):
    p = family.predictor(shared_fixture_model(family.name))
    p.set_image(load_rgb("dog.jpg")[::8, ::8].copy())
    p.predict(PT, LB)
    getattr(p, family.reset)()
    for call in (lambda: p.predict(PT, LB), p.get_image_embedding, p.get_image_features):
        with pytest.raises(ValueError, match="call set_image"):
            call()


BAD_PROMPTS = [
    ({"point_coords": PT}, "need point_labels"),
    ({"point_labels": LB}, "without point_coords"),
    ({}, "no prompt"),
    ({"point_coords": np.array([[1.0, 2.0], [3.0, 4.0]]), "point_labels": LB}, "one label per point"),
    ({"point_coords": PT, "point_labels": np.array([5])}, r"must be in \{-1, 0, 1, 2, 3\}"),
    ({"point_coords": PT, "point_labels": np.array([0.5])}, "whole numbers"),
    ({"point_coords": PT, "point_labels": np.array(["a"])}, "must be integers"),
    ({"point_coords": np.array([[np.nan, 2.0]]), "point_labels": LB}, "NaN or infinite"),
    ({"point_coords": np.array([[np.inf, 2.0]]), "point_labels": LB}, "NaN or infinite"),
    ({"point_coords": np.array([1.0, 2.0, 3.0]), "point_labels": LB}, r"shape \(N, 2\)"),
    ({"point_coords": np.zeros((0, 2)), "point_labels": np.zeros(0)}, r"shape \(N, 2\)"),
    ({"point_coords": [["a", "b"]], "point_labels": LB}, "must be numeric"),
    ({"box": np.array([100.0, 100.0, 50.0, 200.0])}, "x1 >= x0"),
    ({"box": np.array([100.0, 100.0, 150.0, 20.0])}, "y1 >= y0"),
    ({"box": np.array([1.0, 2.0, 3.0])}, r"shape \(4,\) or \(B, 4\)"),
    ({"box": np.zeros((0, 4))}, r"shape \(4,\) or \(B, 4\)"),
    ({"box": np.array([np.nan, 2.0, 3.0, 4.0])}, "NaN or infinite"),
    ({"mask_input": np.zeros((1, 64, 64), np.float32)}, r"mask_input must have shape \(1, 256, 256\)"),
    ({"mask_input": np.full((1, 256, 256), np.nan, np.float32)}, "NaN or infinite"),
    (
        {
            "box": np.array([[0, 0, 10, 10], [0, 0, 20, 20]]),
            "point_coords": np.zeros((3, 1, 2)),
            "point_labels": np.ones((3, 1)),
        },
        "3 point sets for 2 boxes",
    ),
]  # fmt: skip


@parametrize_families()
@pytest.mark.parametrize(("kwargs", "match"), BAD_PROMPTS)
def test_bad_prompts(dog, family, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dog(family).predict(**kwargs)


BAD_IMAGES = [
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 10, 2), np.uint8), r"HxWx\{1,3,4\}"),
    (np.zeros((10, 10, 3, 1), np.uint8), r"HxWx\{1,3,4\}"),
    (np.full((10, 10, 3), 2.0, np.float32), r"float image must hold values in \[0, 1\]"),
    ([[1, 2, 3]], "numpy array or a PIL image"),
]


@parametrize_families()
@pytest.mark.parametrize(("image", "match"), BAD_IMAGES)
def test_bad_images(family, image, match):
    with pytest.raises(ValueError, match=match):
        family.predictor(shared_fixture_model(family.name)).set_image(image)


@parametrize_families()
def test_bad_image_format(family):
    with pytest.raises(ValueError, match="'RGB' or 'BGR'"):
        family.predictor(shared_fixture_model(family.name)).set_image(
            np.zeros((8, 8, 3), np.uint8), image_format="HSV"
        )


class _Stop(Exception):
    """Raised by the encoder hook: only the conversion up to the encoder's input is tested."""


def encoder_inputs(predictor, calls: list[Callable[[], None]]) -> list[torch.Tensor]:
    """The image encoder's input tensor of each call (the encoder itself is not run)."""
    seen: list[torch.Tensor] = []

    def capture(_module, args):
        seen.append(args[0].clone())
        raise _Stop

    handle = predictor.model.image_encoder.register_forward_pre_hook(capture)
    try:
        for call in calls:
            with pytest.raises(_Stop):
                call()
    finally:
        handle.remove()
    return seen


def model_input(predictor, image: np.ndarray) -> torch.Tensor:
    """The image encoder's input for `predictor.set_image(image)`: 1x3xSxS (the predictor is
    left without an image)."""
    return encoder_inputs(predictor, [lambda: predictor.set_image(image)])[0]


@parametrize_families()
def test_grey_rgba_pil_and_bgr_inputs_match_rgb(family):
    rgb = load_rgb("dog.jpg")[::8, ::8].copy()  # small: fast
    grey = rgb[:, :, 0].copy()
    p = family.predictor(shared_fixture_model(family.name))
    forms = [
        (rgb, "RGB"),
        (np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGB"),
        (Image.fromarray(rgb), "RGB"),
        (rgb[:, :, ::-1].copy(), "BGR"),
        (np.dstack([grey] * 3), "RGB"),
        (grey, "RGB"),
        (Image.fromarray(grey), "RGB"),  # PIL mode "L"
    ]
    seen = encoder_inputs(
        p, [lambda im=im, f=f: p.set_image(im, image_format=f) for im, f in forms]
    )
    assert len(seen) == len(forms)
    for x in seen[1:4]:
        torch.testing.assert_close(x, seen[0], rtol=0, atol=0)
    for x in seen[5:7]:
        torch.testing.assert_close(x, seen[4], rtol=0, atol=0)


@parametrize_families()
def test_decoder_cache_follows_the_image_weights_and_mask_inputs(family):
    """The decoder's image-side work kept across `predict` calls is never stale: the answers
    equal a fresh predictor's on the same features after a mask input, a weight change in place
    (a fine-tuning step) and a new image."""
    model = family.fixture_model()
    p = family.predictor(model)
    p.set_image(load_rgb("dog.jpg"))
    atol = family.decoder_cache_atol
    original_size = (534, 800)

    def fresh(**kw):  # a new predictor on p's current features
        q = family.predictor(model)
        q.set_image_features(p.get_image_features(), original_size)
        return q.predict(PT, LB, return_logits=True, **kw)[2]

    first = p.predict(PT, LB, return_logits=True)[2]
    assert p._prompt_decoder.prepared_image is not None  # kept by the first call
    np.testing.assert_allclose(p.predict(PT, LB, return_logits=True)[2], first, atol=1e-6)
    # A mask input changes the dense embedding: this call must not use the cached image side.
    mask_in = first[:1] * 0.5
    np.testing.assert_allclose(
        p.predict(PT, LB, mask_input=mask_in, return_logits=True)[2],
        fresh(mask_input=mask_in),
        atol=atol,
    )
    # Weights changed in place (a fine-tuning step): recomputed.
    layer = family.mask_decoder(model).transformer.layers[0]
    with torch.no_grad():
        layer.cross_attn_token_to_image.k_proj.weight.mul_(0.5)
        layer.cross_attn_image_to_token.q_proj.weight.mul_(0.5)
    changed = p.predict(PT, LB, return_logits=True)[2]
    assert np.abs(changed - first).max() > 1e-3
    np.testing.assert_allclose(changed, fresh(), atol=atol)
    # A new image: recomputed.
    truck = load_rgb("truck.jpg")
    p.set_image(truck)
    original_size = truck.shape[:2]
    np.testing.assert_allclose(p.predict(PT, LB, return_logits=True)[2], fresh(), atol=atol)


@parametrize_families()
def test_save_embedding_then_load_embedding_gives_the_same_masks(family, dog, tmp_path):
    p = dog(family)
    image = load_rgb("dog.jpg")
    ref = p.predict(PT, LB)
    path = p.save_embedding(tmp_path / "dog.safetensors", image)
    emb = load_embedding(path)
    assert emb.family == family.name and emb.original_size == image.shape[:2]
    assert emb.image_sha256 == rgb_sha256(image)
    fresh = family.predictor(shared_fixture_model(family.name))
    fresh.load_embedding(path)
    got = fresh.predict(PT, LB)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], atol=1e-6)
    # no image set, or another image than the one set: refused, nothing written
    other = family.predictor(shared_fixture_model(family.name))
    with pytest.raises(ValueError, match="call set_image"):
        other.save_embedding(tmp_path / "none.safetensors")
    with pytest.raises(ValueError, match="the HxWx3 uint8 image given to set_image"):
        p.save_embedding(tmp_path / "bad.safetensors", image[:10])
    assert not (tmp_path / "none.safetensors").exists()
    assert not (tmp_path / "bad.safetensors").exists()
