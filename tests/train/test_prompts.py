"""Training prompt simulation: points in masks, box noise, correction clicks."""

from __future__ import annotations

import pytest
import torch

from samkit.train.prompts import (
    jitter_boxes,
    mask_boxes,
    noisy_boxes,
    sample_correction_points,
    sample_points_in_masks,
)


def _random_masks(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, h, w, generator=g) > 0.93
    masks[:, 0, 0] |= ~masks.flatten(1).any(1)  # never empty
    return masks


def test_points_fall_inside_the_masks() -> None:
    masks = _random_masks(64, 40, 50, 0)
    pts = sample_points_in_masks(masks, torch.Generator().manual_seed(1))
    x, y = pts[:, 0].long(), pts[:, 1].long()
    assert masks[torch.arange(64), y, x].all()


def test_points_are_uniform_over_the_mask() -> None:
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    cells = [(0, 0), (2, 3), (4, 4), (4, 1)]
    for yy, xx in cells:
        mask[0, yy, xx] = True
    g = torch.Generator().manual_seed(2)
    counts = {c: 0 for c in cells}
    for _ in range(2000):
        x, y = sample_points_in_masks(mask, g)[0].long().tolist()
        counts[(y, x)] += 1
    assert all(400 < c < 600 for c in counts.values()), counts


def test_empty_mask_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        sample_points_in_masks(torch.zeros(2, 4, 4, dtype=torch.bool), torch.Generator())


def test_mask_boxes_are_tight() -> None:
    m = torch.zeros(1, 10, 12, dtype=torch.bool)
    m[0, 2:5, 3:9] = True
    m[0, 7, 1] = True
    assert mask_boxes(m).tolist() == [[1.0, 2.0, 8.0, 7.0]]


def test_box_noise_std_is_10_percent_capped_at_20px() -> None:
    n = 4000
    tight = torch.tensor(
        [[200.0, 250.0, 259.0, 299.0]] * (n // 2) + [[50.0, 100.0, 549.0, 499.0]] * (n // 2)
    )
    # first half 60 wide, 50 high: std 6 / 5; second 500 x 400: 10% would be 50 / 40, capped at 20
    boxes = jitter_boxes(tight, torch.Generator().manual_seed(3), (600, 600))
    noise = boxes - tight
    small, large = noise[: n // 2], noise[n // 2 :]
    torch.testing.assert_close(small.std(0), torch.tensor([6.0, 5.0, 6.0, 5.0]), rtol=0.07, atol=0)
    torch.testing.assert_close(large.std(0), torch.full((4,), 20.0), rtol=0.07, atol=0)
    assert noise.mean(0).abs().max() < 1.0


def test_noisy_boxes_of_masks_stay_in_the_frame_and_ordered() -> None:
    masks = torch.zeros(300, 30, 40, dtype=torch.bool)
    masks[:, 0:30, 0:40] = True  # whole frame: noise pushes outward half the time
    masks[:150, :, 20:] = False
    b = noisy_boxes(masks, torch.Generator().manual_seed(4))
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
    assert (b[:, 2] <= 39).all() and (b[:, 3] <= 29).all()
    assert (b[:, 0] <= b[:, 2]).all() and (b[:, 1] <= b[:, 3]).all()
    assert (b[:150, 2] < 35).all()  # 20 px wide boxes: std 2, so x1 stays near 19


def test_correction_points_fall_in_the_error_region_with_the_right_label() -> None:
    gt = _random_masks(200, 24, 24, 5)
    pred = _random_masks(200, 24, 24, 6)
    pts, labels = sample_correction_points(pred, gt, torch.Generator().manual_seed(7))
    i = torch.arange(200)
    x, y = pts[:, 0].long(), pts[:, 1].long()
    assert (pred ^ gt)[i, y, x].all()
    fn = (gt & ~pred)[i, y, x]
    assert torch.equal(labels.bool(), fn)
    assert labels.min() == 0 and labels.max() == 1  # both kinds occur


def test_correction_respects_valid_area_and_perfect_predictions() -> None:
    gt = torch.zeros(3, 8, 8, dtype=torch.bool)
    gt[:, 2:6, 2:6] = True
    pred = gt.clone()
    pred[0] = True  # false positives everywhere, but only the top rows count as image
    valid = torch.zeros(8, 8, dtype=torch.bool)
    valid[:2] = True
    pts, labels = sample_correction_points(pred, gt, torch.Generator().manual_seed(0), valid)
    assert pts[0, 1] < 2 and labels[0] == 0
    # rows 1, 2 are exact: a foreground click inside the object
    for k in (1, 2):
        x, y = pts[k].long().tolist()
        assert gt[k, y, x] and labels[k] == 1
