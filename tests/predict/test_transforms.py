"""Pure transforms: official resize rounding and bit-exact mask post-processing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from samkit.layers.resize import postprocess_masks
from samkit.predict.inputs import get_preprocess_shape


def _official_postprocess(masks, input_size, original_size, img_size):
    masks = F.interpolate(masks, (img_size, img_size), mode="bilinear", align_corners=False)
    masks = masks[..., : input_size[0], : input_size[1]]
    return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize(
    ("original", "img_size", "low"),
    [
        ((1200, 1800), 1024, 256),
        ((534, 800), 1024, 256),
        ((800, 534), 1024, 256),
        ((1024, 1024), 1024, 256),
        ((480, 640), 256, 64),
        ((17, 1000), 1024, 256),
        ((333, 100), 768, 192),
        ((300, 500), 1000, 256),  # non-integer factor: full first upsampling
    ],
)
def test_postprocess_masks_is_bit_identical_to_the_official_steps(original, img_size, low):
    torch.manual_seed(0)
    input_size = get_preprocess_shape(*original, img_size)
    masks = torch.randn(2, 3, low, low) * 5
    ours = postprocess_masks(masks, input_size, original, img_size)
    ref = _official_postprocess(masks, input_size, original, img_size)
    assert ours.shape == ref.shape == (2, 3, *original)
    assert torch.equal(ours, ref)


def test_preprocess_shape_rounding():
    assert get_preprocess_shape(1200, 1800, 1024) == (683, 1024)
    assert get_preprocess_shape(534, 800, 1024) == (684, 1024)
    assert get_preprocess_shape(480, 640, 256) == (192, 256)


def test_threshold_masks_bool_and_float_match_torch():
    from samkit.predict.transforms import threshold_masks

    logits = torch.randn(2, 3, 17, 29, generator=torch.Generator().manual_seed(5))
    logits[0, 0, 0, :5] = 0.0  # exactly at the threshold: not above it
    ref = logits > 0.0
    b = threshold_masks(logits, 0.0)
    assert b.dtype == torch.bool and torch.equal(b, ref)
    f = threshold_masks(logits, 0.0, dtype=torch.float32)
    assert f.dtype == torch.float32 and torch.equal(f, ref.float())
    out = torch.zeros(3, 3, 17, 29, dtype=torch.bool)
    assert threshold_masks(logits, 0.0, out=out[1:]).data_ptr() == out[1:].data_ptr()
    assert torch.equal(out[1:], ref) and not out[0].any()
