"""`benchmarks.bench_video.drift_summary`: the bf16-vs-fp32 drift numbers on hand-made outputs."""

from __future__ import annotations

import pytest
import torch
from benchmarks.bench_video import drift_summary


def test_drift_summary_counts_flips_by_score_sign_and_iou_on_sure_pixels():
    r = torch.tensor([[[1.0, -1.0], [0.01, -0.5]], [[2.0, 2.0], [2.0, 2.0]]])
    g = r.clone()
    g[0, 1, 0] = -0.02  # flips a pixel within 0.05 of zero: not a sure pixel, IoU stays 1
    g[0, 0, 1] = 0.5  # flips a sure pixel: IoU 1/2 on object 0
    ref = {("s", "c00", 0): (r, torch.tensor([3.0, 4.0]))}
    got = {("s", "c00", 0): (g, torch.tensor([2.0, -0.1]))}  # object 1 found absent: a flip
    d = drift_summary(ref, got)
    assert (d["frames"], d["frames_objects"], d["presence_flips"], d["both_absent"]) == (1, 2, 1, 0)
    assert d["max_abs_logit_error"] == pytest.approx(1.5)
    assert d["median_logit_scale"] == pytest.approx(1.0)
    assert d["mask_iou_sure_pixels_min"] == pytest.approx(0.5)
    assert d["mask_iou_sure_pixels_mean"] == pytest.approx(0.5)


def test_drift_summary_with_no_frame_present_in_both():
    m = torch.full((1, 2, 2), -1024.0)
    d = drift_summary(
        {("s", "c", 0): (m, torch.tensor([-1.0]))}, {("s", "c", 0): (m, torch.tensor([-2.0]))}
    )
    assert d["both_absent"] == 1 and d["presence_flips"] == 0
    assert d["max_abs_logit_error"] is None and d["mask_iou_sure_pixels_min"] is None
