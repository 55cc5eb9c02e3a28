"""Sam2AutomaticMaskGenerator: model checks, bad settings, single-mask and m2m shapes."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from samkit.amg import Sam2AutomaticMaskGenerator, SamAutomaticMaskGenerator
from tests.conftest import FIXTURES, load_rgb

SAM2 = FIXTURES / "sam2_tiny"


@functools.lru_cache(maxsize=1)
def _sam2():
    from samkit import build_sam2

    return build_sam2(SAM2 / "config.json", checkpoint=SAM2 / "sam2_tiny.pt").eval()


def test_sam1_generator_points_to_the_sam2_class():
    from samkit import Sam2ImagePredictor

    for model in (_sam2(), Sam2ImagePredictor(_sam2())):
        with pytest.raises(ValueError, match="Sam2AutomaticMaskGenerator"):
            SamAutomaticMaskGenerator(model)
    with pytest.raises(ValueError, match="SAM 1 model"):
        SamAutomaticMaskGenerator(object())


def test_sam2_generator_rejects_sam1_and_bad_settings(sam1_shapes):
    with pytest.raises(ValueError, match="SamAutomaticMaskGenerator"):
        Sam2AutomaticMaskGenerator(sam1_shapes)
    bad = [
        {"mask_threshold": float("nan")},
        {"use_m2m": "yes"},
        {"multimask_output": 1},
        {"pred_iou_thresh": 1.5},
        {"output_mode": "png"},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            Sam2AutomaticMaskGenerator(_sam2(), **kwargs)


def test_lazy_export():
    import samkit

    assert samkit.Sam2AutomaticMaskGenerator is Sam2AutomaticMaskGenerator


@pytest.mark.parametrize(
    "kwargs, per_point", [({}, 3), ({"multimask_output": False}, 1), ({"use_m2m": True}, 3)]
)
def test_candidates_per_point_and_outputs(kwargs, per_point):
    image = load_rgb("dog.jpg")[::4, ::4].copy()
    gen = Sam2AutomaticMaskGenerator(
        _sam2(), points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, **kwargs
    )
    records = gen.generate(image)
    assert gen.filter_counts["candidates"] == 4 * per_point
    assert len(records) >= 1
    out = gen.generate_torch(image)
    assert out["masks"].shape[1:] == image.shape[:2] and len(out["masks"]) == len(records)
    for r, m in zip(records, out["masks"].numpy()):
        np.testing.assert_array_equal(r["segmentation"], m)
        assert r["point_coords"][0] in ([x, y] for x in (50.0, 150.0) for y in (33.5, 100.5))
    t = gen.timings
    assert t["encoder_s"] > 0 and t["decoder_s"] > 0 and t["num_masks"] == len(records)
