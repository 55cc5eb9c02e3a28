"""Sam3Processor behaviour: image work done once, text cache, several concepts in one pass,
re-thresholding without a model run, prompt bookkeeping, clear errors for bad input.

Numbers against the official live in test_parity_sam3.py; here the processor is compared
with itself (one concept at a time vs a batch, a fresh pass vs a re-threshold), on the 336 px SAM 3
checkpoint of the product tests (the `sam3_small` fixture, tests/fixtures/sam3_small.py: the
sam3_tiny random weights at 24x24 tokens instead of 72x72, a ninth of the work)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.build.sam3 import build_sam3_image_model
from samkit.predict.sam3 import Sam3Processor, Sam3State, _normalise_box
from tests.conftest import IMAGES, manifest
from tests.fixtures.sam3_small import IMG_SIZE

KEEP_ALL = 1e-6  # keeps every query (thresholds are strictly between 0 and 1; was 0.0)


class Counter:
    """Wraps a bound method and counts its calls."""

    def __init__(self, obj, name: str) -> None:
        self.n = 0
        self.orig = getattr(obj, name)
        setattr(obj, name, self)

    def __call__(self, *a, **k):
        self.n += 1
        return self.orig(*a, **k)


@pytest.fixture(scope="module")
def model(sam3_small):
    return build_sam3_image_model(checkpoint_path=sam3_small, enable_inst_interactivity=False)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.open(IMAGES / "dog.jpg").convert("RGB").resize((160, 120))


@pytest.fixture(scope="module")
def ready(model, image):
    """(processor, state with the image set, backbone / text / grounding call counters)."""
    proc = Sam3Processor(model, resolution=IMG_SIZE, confidence_threshold=KEEP_ALL)
    counts = {
        "image": Counter(model.backbone, "forward_image"),
        "text": Counter(model.backbone, "forward_tokens"),
        "ground": Counter(model, "forward_grounding"),
    }
    st = proc.set_image(image)
    return proc, st, counts


def test_prompts_reuse_the_image_features_and_cached_text(ready) -> None:
    proc, st, counts = ready
    proc.reset_all_prompts(st)
    n_img = counts["image"].n
    st = proc.set_text_prompt("dog", st)
    n_txt = counts["text"].n
    first = st["scores"].clone()
    st = proc.add_geometric_prompt([0.5, 0.5, 0.4, 0.6], True, st)
    st = proc.set_text_prompt("dog", st)  # text again: cached
    assert counts["image"].n == n_img  # the backbone ran only in set_image
    assert counts["text"].n == n_txt
    assert isinstance(st, Sam3State) and st.scores is st["scores"]
    assert st["scores"].shape == (16,)  # KEEP_ALL keeps all queries
    assert st["masks"].shape == (16, 1, 120, 160) and st["masks"].dtype == torch.bool
    assert st["boxes"].shape == (16, 4) and st["masks_logits"].shape == (16, 1, 120, 160)
    assert st["scores"].is_inference()
    assert not torch.equal(first, st["scores"])  # the box prompt is still in the state
    proc.reset_all_prompts(st)
    assert all(
        k not in st for k in ("masks", "boxes", "scores", "masks_logits", "geometric_prompt")
    )
    st = proc.set_text_prompt("dog", st)
    torch.testing.assert_close(st["scores"], first, rtol=0, atol=0)


def test_several_concepts_in_one_pass_equal_one_call_each(ready) -> None:
    proc, st, counts = ready
    proc.reset_all_prompts(st)
    proc.set_confidence_threshold(0.2)
    prompts = ["dog", "a red ball"]
    n = counts["ground"].n
    results = proc.set_text_prompts(prompts, st)
    assert counts["ground"].n == n + 1  # one batched grounding pass
    assert [r["prompt"] for r in results] == prompts and st["results_per_prompt"] is results
    assert isinstance(st["masks"], list) and len(st["scores"]) == 2
    assert st["scores"][1] is results[1]["scores"]
    for p, r in zip(prompts, results):
        single = proc.set_text_prompt(p, st)
        torch.testing.assert_close(r["scores"], single["scores"], rtol=0, atol=1e-5)
        torch.testing.assert_close(r["boxes"], single["boxes"], rtol=0, atol=1e-3)
        torch.testing.assert_close(r["masks_logits"], single["masks_logits"], rtol=0, atol=1e-4)
    proc.set_confidence_threshold(KEEP_ALL)


def test_rethreshold_filters_the_last_pass_without_running_the_model(ready, model) -> None:
    proc, st, counts = ready
    proc.reset_all_prompts(st)
    st = proc.set_text_prompt("dog", st)
    scores = st["scores"].double().numpy()
    thr = float(np.sort(scores)[-4] + np.sort(scores)[-5]) / 2  # keep 4
    n = counts["ground"].n
    st = proc.set_confidence_threshold(thr, st)
    assert counts["ground"].n == n
    assert st["scores"].shape == (4,) and proc.confidence_threshold == thr
    np.testing.assert_array_equal(st["scores"].numpy(), scores[scores > thr].astype(np.float32))
    fresh = Sam3Processor(model, resolution=IMG_SIZE, confidence_threshold=thr)
    st2 = fresh.set_text_prompt("dog", dict(st))
    torch.testing.assert_close(st2["masks_logits"], st["masks_logits"], rtol=0, atol=0)
    proc.set_confidence_threshold(KEEP_ALL)


def test_box_only_prompt_uses_the_visual_text(ready) -> None:
    proc, st, _ = ready
    proc.reset_all_prompts(st)
    st = proc.add_geometric_prompt([20, 10, 120, 110], True, st, box_format="xyxy")
    assert "visual" in proc._text_cache and "text_prompt" not in st
    assert st["geometric_prompt"].num_boxes == 1
    st = proc.add_geometric_prompt([0.8, 0.8, 0.2, 0.2], False, st)
    assert st["geometric_prompt"].num_boxes == 2
    assert st["geometric_prompt"].box_labels.tolist() == [[True, False]]


def test_pixel_boxes_convert_to_the_official_normalised_boxes() -> None:
    m = manifest("sam3_tiny")
    for case in m["cases"].values():
        if "image" not in case:
            continue
        h, w = m["images"][case["image"]]["hw"]
        for step in case["steps"]:
            if "box_xyxy_pixels" in step:
                got = _normalise_box(step["box_xyxy_pixels"], "xyxy", w, h)
                np.testing.assert_allclose(got, step["box_cxcywh_normalized"], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("box", "kw", "msg"),
    [
        ([0.5, 0.5, 0.2], {}, "4 numbers"),
        ([[0.5, 0.5, 0.2, 0.1]], {}, "4 numbers"),
        ("abcd", {}, "4 numbers"),
        ([0.5, float("nan"), 0.2, 0.2], {}, "NaN or infinite"),
        ([0.5, 0.5, 0.0, 0.2], {}, "w > 0 and h > 0"),
        ([1.5, 0.5, 0.2, 0.2], {}, "entirely outside the image"),
        ([10, 10, 5, 20], {"box_format": "xyxy"}, "x1 > x0"),
        ([200, 10, 300, 20], {"box_format": "xyxy"}, "entirely outside"),
        ([0.5, 0.5, 0.2, 0.2], {"box_format": "xywh"}, "box_format must be"),
    ],
)
def test_bad_boxes(ready, box, kw, msg: str) -> None:
    proc, st, _ = ready
    with pytest.raises(ValueError, match=msg):
        proc.add_geometric_prompt(box, True, st, **kw)


def test_bad_input_everywhere(ready, model, image) -> None:
    proc, st, _ = ready
    fresh = Sam3Processor(model, resolution=IMG_SIZE)
    for call in (
        lambda: fresh.set_text_prompt("dog", {}),
        lambda: fresh.add_geometric_prompt([0.5, 0.5, 0.1, 0.1], True, {}),
        lambda: fresh.set_text_prompts(["dog"], {}),
    ):
        with pytest.raises(ValueError, match="call set_image"):
            call()
    with pytest.raises(ValueError, match="state must be"):
        fresh.set_text_prompt("dog", None)  # type: ignore[arg-type]
    for bad in ("", "   ", 3, None):
        with pytest.raises(ValueError):
            proc.set_text_prompt(bad, st)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty list"):
        proc.set_text_prompts([], st)
    with pytest.raises(ValueError, match="non-empty list"):
        proc.set_text_prompts("dog", st)
    with pytest.raises(ValueError, match="must be a string"):
        proc.set_text_prompts(["dog", 1], st)
    with pytest.raises(ValueError, match="must be a string"):
        proc.set_text_prompt(["dog", 1], st)  # a list is several concepts
    with pytest.raises(ValueError, match="label must be True"):
        proc.add_geometric_prompt([0.5, 0.5, 0.1, 0.1], 1, st)
    for thr in (-0.1, 0, 0.0, 1, 1.0, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="confidence_threshold"):
            proc.set_confidence_threshold(thr)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="confidence_threshold"):
        Sam3Processor(model, resolution=IMG_SIZE, confidence_threshold=2)
    with pytest.raises(ValueError, match=f"resolution must be {IMG_SIZE}"):
        Sam3Processor(model, resolution=512)
    with pytest.raises(ValueError, match=f"resolution must be {IMG_SIZE}.*got 1008"):
        Sam3Processor(model)  # the official default, 1008, is not this model's
    with pytest.raises(ValueError, match="image must be"):
        proc.set_image("dog.jpg")
    with pytest.raises(ValueError, match="image must be"):
        proc.set_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="non-empty list"):
        proc.set_image_batch([])
    batch = proc.set_image_batch([image, image])
    with pytest.raises(ValueError, match="one image"):
        proc.add_geometric_prompt([0.5, 0.5, 0.1, 0.1], True, batch)
    with pytest.raises(ValueError, match="one image"):
        proc.set_text_prompts(["dog"], batch)
    # clicks need the interactive heads, which this model was built without
    assert proc.inst_interactive_predictor is None
    with pytest.raises(ValueError, match="no interactive heads"):
        proc.predict_inst(st, point_coords=[[1, 1]], point_labels=[1])


def test_model_forward_equals_the_processor_pass(ready, model, image) -> None:
    """Sam3Image.forward (tensors in: images + token ids, nothing cached) gives the processor's
    per-query outputs."""
    from samkit.predict.transforms import sam3_image_to_tensor
    from samkit.text.tokenizer import tokenize

    proc, st, _ = ready
    proc.reset_all_prompts(st)
    ref = proc.set_text_prompt("dog", st)["_last_output"]
    with torch.inference_mode():
        out = model(sam3_image_to_tensor(image, IMG_SIZE)[None], tokenize(["dog"]))
    for key in ("pred_logits", "presence_logit_dec", "pred_boxes"):
        torch.testing.assert_close(out[key], ref[key], rtol=0, atol=1e-6, msg=key)
    # the processor reuses the image-side pixel-decoder terms (same values, other rounding)
    for key in ("pred_masks", "semantic_seg"):
        torch.testing.assert_close(out[key], ref[key], rtol=0, atol=1e-5, msg=key)
