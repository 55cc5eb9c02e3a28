"""SAM 2's sine position encodings are computed once per grid, not per frame
(`samkit.layers.sine_position.PositionEmbeddingSine`'s cache; benchmarks/bench_position_cache.py
measures what it saves): every frame's encodings are views of the same tensors, equal to a fresh
computation, in inference and in training, where gradients still reach the encoder."""

from __future__ import annotations

import pytest
import torch

from samkit.layers.sine_position import PositionEmbeddingSine
from tests.video.conftest import random_frames, small_predictor


@pytest.fixture(scope="module")
def model():
    return small_predictor(128).model


def _encodings(model):
    return [m for m in model.image_encoder.modules() if isinstance(m, PositionEmbeddingSine)]


def _images(n):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, 3, 128, 128, generator=g) for _ in range(n)]


def test_frames_share_one_encoding_per_level(model):
    """Three frames: each level's encoding is the same storage every frame (nothing allocated
    per frame), exactly the freshly computed one; the tracker reads the lowest-res level's."""
    (pe,) = _encodings(model)
    with torch.inference_mode():
        outs = [model.forward_image(x)["vision_pos_enc"] for x in _images(3)]
    assert len(outs[0]) == model.num_feature_levels == 3
    for level, first in enumerate(outs[0]):
        fresh = pe._compute(first.shape[-2], first.shape[-1], first.device)
        assert torch.equal(first[0], fresh), level
        for later in outs[1:]:
            assert later[level].untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
    assert [tuple(p.shape[-2:]) for p in outs[0]] == [(32, 32), (16, 16), (8, 8)]
    pred = small_predictor(128)  # the same weights (seeded): the tracker's features
    state = pred.init_state(random_frames(1, 128, 128))
    with torch.inference_mode():
        feats = pred.tracker.features(state, 0, 1)
    (ppe,) = _encodings(pred.model)
    assert torch.equal(feats.image_pos[0], ppe.encode_grid(8, 8))
    assert feats.image_pos.untyped_storage().data_ptr() == ppe.encode_grid(8, 8).data_ptr()


def test_cached_equals_recomputed(model):
    """Clearing the cache before a frame (what a per-frame computation gives) changes no value
    of the encoder's outputs."""
    (pe,) = _encodings(model)
    image = _images(1)[0]
    with torch.inference_mode():
        cached = model.forward_image(image)
        pe._cache.clear()
        pe._cast.clear()
        fresh = model.forward_image(image)
    for key in ("backbone_fpn", "vision_pos_enc"):
        for a, b in zip(cached[key], fresh[key], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_training_forward_keeps_gradients(model):
    """In training (gradients on), the kept encodings (made under inference mode above) are
    plain constants, the same values, and the loss's gradients reach the trunk and the neck."""
    (pe,) = _encodings(model)
    with torch.inference_mode():
        want = [p.clone() for p in model.forward_image(_images(1)[0])["vision_pos_enc"]]
    model.train()
    try:
        model.zero_grad()
        image = _images(1)[0].requires_grad_(True)
        out = model.forward_image(image)
        for p, w in zip(out["vision_pos_enc"], want, strict=True):
            assert not p.requires_grad and not p.is_inference()
            kept = pe.encode_grid(p.shape[-2], p.shape[-1])
            assert p.untyped_storage().data_ptr() == kept.data_ptr()  # no parameters: kept
            torch.testing.assert_close(p, w, rtol=0, atol=0)
        fpn, pe_last = out["backbone_fpn"], out["vision_pos_enc"][-1]
        loss = sum(f.pow(2).mean() for f in fpn) + (fpn[-1] * pe_last).mean()
        loss.backward()
        assert image.grad is not None and image.grad.abs().sum() > 0
        trunk = model.image_encoder.trunk.patch_embed.proj.weight.grad
        neck = model.image_encoder.neck.convs[0].conv.weight.grad
        assert trunk is not None and trunk.abs().sum() > 0
        assert neck is not None and neck.abs().sum() > 0
    finally:
        model.eval()
        model.zero_grad()
