"""Per-filter counts of the generators and the "0 masks" explanation."""

from __future__ import annotations

import numpy as np
import pytest

from samkit.amg import SamAutomaticMaskGenerator
from samkit.amg.report import FILTERS, cli_flag, empty_reason, new_filter_counts
from tests.conftest import FIXTURES, load_rgb


@pytest.fixture(scope="module")
def shapes() -> np.ndarray:
    return load_rgb(str(FIXTURES / "sam1_shapes" / "shapes_1.png"))


def _generate(model, image, **params):
    gen = SamAutomaticMaskGenerator(
        model, points_per_side=4, crop_n_layers=1, pred_iou_thresh=0.2, **params
    )
    return gen, gen.generate(image)


def _balanced(counts: dict[str, int]) -> bool:
    return counts["candidates"] == sum(counts[f] for f in FILTERS) + counts["kept"]


def test_counts_when_masks_are_kept(sam1_shapes, shapes):
    gen, records = _generate(sam1_shapes, shapes, stability_score_thresh=0.5)
    c = gen.filter_counts
    assert c["candidates"] == 5 * 16 * 3  # 5 crops x 16 points x 3 masks
    assert c["kept"] == len(records) > 0 and _balanced(c)
    for name in ("pred_iou", "crop_edge", "box_nms", "crop_nms"):
        assert c[name] > 0, name
    assert gen.empty_reason() == ""


def test_zero_masks_are_explained(sam1_shapes, shapes):
    gen, records = _generate(sam1_shapes, shapes, stability_score_thresh=0.99)
    c = gen.filter_counts
    assert records == [] and c["kept"] == 0 and _balanced(c)
    assert c["pred_iou"] > 0 and c["stability"] > c["pred_iou"]
    n = c["candidates"]
    msg = gen.empty_reason()
    assert msg.startswith(
        f"0 masks: all {n} candidate masks were removed: {c['stability']} by stability score "
        "< 0.99 (lower stability_score_thresh (0 disables it) or stability_score_offset); "
        f"{c['pred_iou']} by predicted IoU <= 0.2 (lower pred_iou_thresh"
    )
    cli = gen.empty_reason(cli_flag)
    assert "--stability-score-thresh" in cli and "--pred-iou-thresh" in cli


def test_empty_reason_orders_by_count_and_names_the_option():
    counts = {**new_filter_counts(), "candidates": 10, "pred_iou": 3, "stability": 6, "box_nms": 1}
    settings = {
        "pred_iou_thresh": 0.88,
        "stability_score_thresh": 0.95,
        "stability_score_offset": 1.0,
        "box_nms_thresh": 0.7,
        "crop_nms_thresh": 0.7,
        "min_mask_region_area": 0,
    }
    msg = empty_reason(counts, settings, cli_flag)
    assert msg.index("6 by stability") < msg.index("3 by predicted IoU") < msg.index("1 by dup")
    assert "--stability-score-thresh" in msg and "--box-nms-thresh" in msg
    assert empty_reason({**counts, "kept": 1}, settings) == ""
    assert empty_reason(new_filter_counts(), settings) == ""
