"""`benchmarks/sam3_pipeline.compare` / `summary` (the numbers `bench_sam3.py drift` prints and
`tests/paths/test_sam3_paths.py` checks) on hand-made results whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.sam3_pipeline import SURE_LOGIT, compare, summary


def _step(scores: list[float], thr: float, masks: np.ndarray, logits: np.ndarray) -> dict:
    s = np.asarray(scores, dtype=np.float64)
    return {
        "scores": s,
        "boxes": np.zeros((len(s), 4), np.float32),
        "kept": np.flatnonzero(s > thr),
        "masks": masks,
        "mask_logits": logits,
        "threshold": np.float64(thr),
    }


def test_compare_counts_kept_changes_and_sure_pixel_iou() -> None:
    logits = np.array([[[2.0, 2.0], [0.1, -2.0]]])  # one kept query; one unsure pixel
    ref = _step([0.3, 0.2, 0.5], 0.4, logits > 0, logits)
    flipped = (logits > 0).copy()
    flipped[0, 1, 0] = False  # differs only on the unsure pixel
    other = _step([0.31, 0.41, 0.5], 0.4, np.concatenate([flipped, flipped]), np.zeros((2, 2, 2)))
    other["boxes"][1, 2] = 0.25
    row = compare({"x/s0": ref}, {"x/s0": other})["x/s0"]
    assert row["score_max_abs_diff"] == pytest.approx(0.21)
    assert row["box_max_abs_diff"] == pytest.approx(0.25)
    assert row["kept"] == 1
    assert row["kept_changes"] == [{"query": 1, "ref_score_minus_threshold": pytest.approx(-0.2)}]
    assert abs(0.1) < SURE_LOGIT
    assert row["mask_iou_sure_min"] == 1.0
    assert row["mask_iou_min"] == pytest.approx(2 / 3)


def test_compare_inst_and_summary_take_the_worst_step() -> None:
    logits = np.array([[[1.0, -1.0], [1.0, -1.0]]])
    ref = {"inst_masks": logits > 0, "ious": np.array([0.5]), "mask_logits": logits}
    other = {"inst_masks": np.ones((1, 2, 2), bool), "ious": np.array([0.52])}
    rep = compare(
        {"f": ref, "x/s0": _step([0.9], 0.5, np.ones((1, 1, 1), bool), np.ones((1, 1, 1)))},
        {"f": other, "x/s0": _step([0.95], 0.5, np.ones((1, 1, 1), bool), np.ones((1, 1, 1)))},
    )
    assert rep["f"]["inst_mask_iou_min"] == pytest.approx(0.5)
    assert rep["f"]["iou_prediction_max_abs_diff"] == pytest.approx(0.02)
    worst = summary(rep)
    assert worst["inst_mask_iou_sure_min"] == pytest.approx(0.5)
    assert worst["score_max_abs_diff"] == pytest.approx(0.05)
    assert worst["kept_changes"] == 0 and worst["kept_total"] == 1
