"""`MaskDecoder` is a pure function of its tensors: a precomputed image side (`prepare_image`)
gives the same answer as computing it in `forward`, and gradients flow."""

from __future__ import annotations

import pytest
import torch

from samkit.modeling.mask_decoder import DecoderImage


def _inputs(model, b: int, masks: bool = False) -> dict:
    g = torch.Generator().manual_seed(1)
    pe = model.prompt_encoder
    c, (h, w) = pe.embed_dim, pe.image_embedding_size
    pts = torch.rand(b, 2, 2, generator=g) * pe.input_image_size[0]
    labels = torch.tensor([[1, 0]] * b, dtype=torch.int)
    mask_in = torch.randn(b, 1, *pe.mask_input_size, generator=g) if masks else None
    sparse, dense = pe(points=(pts, labels), boxes=None, masks=mask_in)
    return {
        "image_embeddings": torch.randn(1, c, h, w, generator=g),
        "image_pe": pe.get_dense_pe(),
        "sparse_prompt_embeddings": sparse,
        "dense_prompt_embeddings": dense,
        "multimask_output": True,
    }


def test_prepared_image_side_gives_the_same_answer(sam1_tiny):
    decoder = sam1_tiny.mask_decoder
    kw = _inputs(sam1_tiny, 4)
    with torch.inference_mode():
        prepared = decoder.prepare_image(
            kw["image_embeddings"], kw["image_pe"], kw["dense_prompt_embeddings"]
        )
        assert isinstance(prepared, DecoderImage) and prepared.src.shape[0] == 1
        ref = decoder(**kw)
        out = decoder(**kw, prepared=prepared)
        # a chunk of the prompts with the same prepared image side
        part = decoder(
            **{**kw, "sparse_prompt_embeddings": kw["sparse_prompt_embeddings"][1:3]},
            prepared=prepared,
        )
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(part[0], ref[0][1:3], atol=1e-5, rtol=1e-5)


def test_prepare_image_needs_one_image_and_one_dense_prompt(sam1_tiny):
    kw = _inputs(sam1_tiny, 3, masks=True)
    with pytest.raises(ValueError, match="one 1xCxHxW image embedding"):
        sam1_tiny.mask_decoder.prepare_image(
            kw["image_embeddings"], kw["image_pe"], kw["dense_prompt_embeddings"]
        )


def test_forward_keeps_gradients(sam1_tiny):
    decoder = sam1_tiny.mask_decoder
    kw = _inputs(sam1_tiny, 2)
    emb = kw["image_embeddings"].requires_grad_(True)
    masks, iou = decoder(**kw)
    (masks.mean() + iou.mean()).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    k_proj = decoder.transformer.layers[0].cross_attn_token_to_image.k_proj
    assert k_proj.weight.grad is not None
    decoder.zero_grad(set_to_none=True)
