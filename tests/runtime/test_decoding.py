"""`PromptDecoder`: prompts decoded in chunks, with the image-side work shared, give the one-batch
answer; the kept image side follows the tensors it comes from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit import SamPredictor, build_sam2
from samkit.modeling.mask_decoder import MaskDecoder
from samkit.runtime.decoding import PromptDecoder
from tests.conftest import FIXTURES, load_rgb

GEN = torch.Generator().manual_seed(0)


def _decode(decoder: MaskDecoder | PromptDecoder, chunk: int | None = None, **kw):
    """`decoder` as given (a PromptDecoder), or a PromptDecoder with `chunk` around it."""
    if isinstance(decoder, MaskDecoder):
        decoder = PromptDecoder(decoder, prompt_chunk=chunk)
    with torch.inference_mode():
        return decoder(**kw)


def _inputs(model, b: int, masks: bool):
    pe = model.prompt_encoder
    c, (h, w) = pe.embed_dim, pe.image_embedding_size
    pts = torch.rand(b, 2, 2, generator=GEN) * pe.input_image_size[0]
    labels = torch.tensor([[1, 0]] * b, dtype=torch.int)
    mask_in = torch.randn(b, 1, *pe.mask_input_size, generator=GEN) if masks else None
    sparse, dense = pe(points=(pts, labels), boxes=None, masks=mask_in)
    return {
        "image_embeddings": torch.randn(1, c, h, w, generator=GEN),
        "image_pe": pe.get_dense_pe(),
        "sparse_prompt_embeddings": sparse,
        "dense_prompt_embeddings": dense,
        "multimask_output": True,
    }


@pytest.mark.parametrize("masks", [False, True], ids=["shared-image", "mask-inputs"])
@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_chunks_match_one_batch(sam1_tiny, chunk, masks):
    kw = _inputs(sam1_tiny, 7, masks)
    ref = _decode(sam1_tiny.mask_decoder, 0, **kw)
    out = _decode(sam1_tiny.mask_decoder, chunk, **kw)
    with torch.inference_mode():
        plain = sam1_tiny.mask_decoder(**kw)  # the module alone: one batch, nothing kept
    for a, b, c in zip(out, ref, plain):
        torch.testing.assert_close(b, c, atol=0, rtol=0)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_shared_image_side_is_computed_once_and_only_for_one_image(sam1_tiny):
    decoder = sam1_tiny.mask_decoder
    calls = []
    k_proj = decoder.transformer.layers[0].cross_attn_token_to_image.k_proj
    handle = k_proj.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        kw = _inputs(sam1_tiny, 6, masks=False)
        no_mask = sam1_tiny.prompt_encoder.no_mask_embed.weight
        runner = PromptDecoder(decoder, prompt_chunk=2)
        first = _decode(runner, **kw, no_mask_embed=no_mask)
        assert calls == [1] and runner.prepared_image is not None  # once for 3 chunks, batch 1
        runner.prompt_chunk = 0
        again = _decode(runner, **kw, no_mask_embed=no_mask)  # a later call reuses it
        assert calls == [1]
        for a, b in zip(first, again):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        # Without no_mask_embed the chunks of one call still share it, and nothing is kept.
        calls.clear()
        fresh = PromptDecoder(decoder, prompt_chunk=2)
        _decode(fresh, **kw)
        assert calls == [1] and fresh.prepared_image is None
        calls.clear()
        kw = _inputs(sam1_tiny, 4, masks=True)  # per-prompt dense embeddings: nothing shared
        _decode(fresh, **kw)
        assert calls == [2, 2] and fresh.prepared_image is None
    finally:
        handle.remove()


def test_predictor_chunks_keep_masks_and_logits(sam1_shapes):
    predictor = SamPredictor(sam1_shapes)
    predictor.set_image(load_rgb("truck.jpg"))
    h, w = predictor.original_size
    rng = np.random.default_rng(0)
    x0, y0 = rng.uniform(0, w * 0.6, 5), rng.uniform(0, h * 0.6, 5)
    boxes = np.stack([x0, y0, x0 + w * 0.3, y0 + h * 0.3], 1)
    results = {}
    for chunk in (0, 2):
        predictor._prompt_decoder.prompt_chunk = chunk
        masks, iou, low = predictor.predict(box=boxes, multimask_output=True)
        logits = predictor.predict(box=boxes, multimask_output=True, return_logits=True)[0]
        results[chunk] = masks, iou, low, logits
    (m0, i0, l0, g0), (m2, i2, l2, g2) = results[0], results[2]
    assert m2.shape == (5, 3, h, w) and m2.dtype == bool
    np.testing.assert_allclose(i2, i0, atol=1e-5)
    np.testing.assert_allclose(l2, l0, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(g2, g0, atol=1e-4, rtol=1e-5)
    # Thresholds agree except where the logit is within float noise of 0.
    np.testing.assert_array_equal(m2 | (np.abs(g0) < 1e-4), m0 | (np.abs(g0) < 1e-4))


def test_sam2_decoder_chunks_with_high_res_features():
    d = FIXTURES / "sam2_tiny"
    model = build_sam2(d / "config.json", checkpoint=d / "sam2_tiny.pt")
    dec = model.sam_mask_decoder
    pe = model.sam_prompt_encoder
    c, (h, w) = pe.embed_dim, pe.image_embedding_size
    b = 5
    sparse, dense = pe(
        points=(torch.rand(b, 1, 2, generator=GEN) * 64, torch.ones(b, 1, dtype=torch.int)),
        boxes=None,
        masks=None,
    )
    kw = {
        "image_embeddings": torch.randn(1, c, h, w, generator=GEN),
        "image_pe": pe.get_dense_pe(),
        "sparse_prompt_embeddings": sparse,
        "dense_prompt_embeddings": dense,
        "multimask_output": False,
        "repeat_image": True,
        "high_res_features": [
            torch.randn(1, c // 8, 4 * h, 4 * w, generator=GEN),
            torch.randn(1, c // 4, 2 * h, 2 * w, generator=GEN),
        ],
    }
    ref = _decode(dec, 0, **kw)
    out = _decode(dec, 2, **kw)
    assert len(out) == 4
    for a, b_ in zip(out, ref):
        torch.testing.assert_close(a, b_, atol=1e-5, rtol=1e-5)


def test_kept_image_side_follows_weights_autocast_and_new_tensors(sam1_tiny):
    decoder = sam1_tiny.mask_decoder
    kw = _inputs(sam1_tiny, 3, masks=False)
    no_mask = sam1_tiny.prompt_encoder.no_mask_embed.weight
    runner = PromptDecoder(decoder)
    first = _decode(runner, **kw, no_mask_embed=no_mask)
    kept = runner.prepared_image
    _decode(runner, **kw, no_mask_embed=no_mask)
    assert runner.prepared_image is kept
    v_proj = decoder.transformer.layers[0].cross_attn_token_to_image.v_proj
    saved = v_proj.weight.detach().clone()
    try:
        with torch.no_grad():
            v_proj.weight.mul_(0.5)  # a fine-tuning step
        changed = _decode(runner, **kw, no_mask_embed=no_mask)
        assert runner.prepared_image is not kept
        torch.testing.assert_close(changed[0], _decode(decoder, **kw)[0], atol=1e-5, rtol=1e-5)
        assert (changed[0] - first[0]).abs().max() > 1e-3
    finally:
        with torch.no_grad():
            v_proj.weight.copy_(saved)
    kept = runner.prepared_image
    _decode(runner, **{**kw, "image_embeddings": kw["image_embeddings"] + 1}, no_mask_embed=no_mask)
    assert runner.prepared_image is not kept  # another image tensor
    runner.clear()
    assert runner.prepared_image is None


def test_bad_prompt_chunk(sam1_tiny):
    for bad in (-1, True, 2.0, "2"):
        with pytest.raises(ValueError, match="prompt_chunk"):
            PromptDecoder(sam1_tiny.mask_decoder, prompt_chunk=bad)
