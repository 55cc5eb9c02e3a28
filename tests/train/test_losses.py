"""Losses against hand-computed values, and the multimask rule."""

from __future__ import annotations

import math

import pytest
import torch

from samkit.train.losses import LossWeights, dice_loss, mask_iou, sam_loss, sigmoid_focal_loss


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_focal_single_pixel_by_hand() -> None:
    z = torch.zeros(1, 1, 1, 1)
    # p = 0.5: ce = ln 2, (1 - p_t)^2 = 1/4; alpha 0.25 for a positive, 0.75 for a negative
    pos = sigmoid_focal_loss(z, torch.ones_like(z))
    neg = sigmoid_focal_loss(z, torch.zeros_like(z))
    assert pos.item() == pytest.approx(0.25 * math.log(2) * 0.25, rel=1e-6)
    assert neg.item() == pytest.approx(0.75 * math.log(2) * 0.25, rel=1e-6)


def test_focal_and_dice_2x2_by_hand() -> None:
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    expect_focal = 0.0
    ps, ts = [], []
    for x, t in zip([2.0, -1.0, 0.0, 3.0], [1, 0, 0, 0]):
        p = _sig(x)
        ce = -math.log(p) if t else -math.log(1 - p)
        p_t = p if t else 1 - p
        a = 0.25 if t else 0.75
        expect_focal += a * ce * (1 - p_t) ** 2 / 4
        ps.append(p)
        ts.append(t)
    inter = sum(p * t for p, t in zip(ps, ts))
    expect_dice = 1 - (2 * inter + 1) / (sum(ps) + sum(ts) + 1)
    assert sigmoid_focal_loss(logits, target).item() == pytest.approx(expect_focal, rel=1e-5)
    assert dice_loss(logits, target).item() == pytest.approx(expect_dice, rel=1e-5)
    # a valid-pixel mask restricts both losses to those pixels
    valid = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    only_top = sigmoid_focal_loss(logits[..., :1, :], target[..., :1, :])
    assert sigmoid_focal_loss(logits, target, valid=valid).item() == pytest.approx(
        only_top.item(), rel=1e-6
    )


def test_mask_iou_and_iou_mse() -> None:
    logits = torch.tensor([[[[1.0, 1.0], [-1.0, -1.0]]]])  # predicts the top row
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert mask_iou(logits, target).item() == pytest.approx(0.5)
    w = LossWeights(focal=0.0, dice=0.0, iou=1.0)
    out = sam_loss(logits, torch.tensor([[0.9]]), target, weights=w)
    assert out["loss"].item() == pytest.approx((0.9 - 0.5) ** 2, rel=1e-6)
    assert out["iou_mse"].item() == pytest.approx(0.16, rel=1e-6)


def test_total_is_20_focal_plus_dice_plus_iou() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 1, 8, 8, generator=g)
    target = torch.rand(4, 1, 8, 8, generator=g) > 0.5
    iou_pred = torch.rand(4, 1, generator=g)
    out = sam_loss(logits, iou_pred, target)
    f = sigmoid_focal_loss(logits, target)[:, 0]
    d = dice_loss(logits, target)[:, 0]
    i = (iou_pred[:, 0] - mask_iou(logits, target)[:, 0]) ** 2
    torch.testing.assert_close(out["loss"], (20 * f + d + i).mean())


def test_multimask_rule_backprops_only_the_best_mask() -> None:
    target = torch.zeros(2, 1, 6, 6)
    target[:, :, 1:4, 1:4] = 1
    good = target * 20 - 10  # confident and right
    bad = -good
    logits = torch.stack(
        [torch.cat([bad[0], good[0], bad[0]]), torch.cat([bad[1], bad[1], good[1]])]
    )
    logits.requires_grad_(True)
    iou_pred = torch.full((2, 3), 0.5, requires_grad=True)
    out = sam_loss(logits, iou_pred, target)
    assert out["best"].tolist() == [1, 2]
    torch.testing.assert_close(out["iou"], torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    out["loss"].backward()
    grad = logits.grad.abs().flatten(2).sum(-1)
    assert grad[0, 0] == 0 and grad[0, 2] == 0 and grad[1, 0] == 0 and grad[1, 1] == 0
    assert grad[0, 1] > 0 and grad[1, 2] > 0
    # the IoU head is supervised on all three masks
    assert (iou_pred.grad != 0).all()


def test_loss_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="BxMxHxW"):
        sam_loss(torch.zeros(2, 8, 8), torch.zeros(2, 1), torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="iou_pred"):
        sam_loss(torch.zeros(2, 3, 8, 8), torch.zeros(2, 1), torch.zeros(2, 8, 8))


def test_object_score_loss_and_absent_objects() -> None:
    """SAM 2: BCE of the object score against "the target is non-empty"; the mask, dice and IoU
    terms count only where the object is present (official MultiStepMultiMasksAndIous)."""
    logits = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, :2, :2] = 1  # prompt 0: object present; prompt 1: empty target
    iou_pred = torch.tensor([[0.7], [0.4]])
    obj = torch.tensor([[1.5], [0.5]])
    w = LossWeights(obj_score=2.0, iou_l1=True)
    out = sam_loss(logits, iou_pred, target, weights=w, object_score_logits=obj)
    ref = sam_loss(logits[:1], iou_pred[:1], target[:1], weights=w)  # the present prompt alone
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        obj[:, 0], torch.tensor([1.0, 0.0]), reduction="none"
    )
    expected = (ref["loss"] + 2.0 * bce[0] + 2.0 * bce[1]) / 2
    torch.testing.assert_close(out["loss"], expected)
    torch.testing.assert_close(out["obj"], bce.mean())
    # L1 IoU regression: |0.7 - IoU| for the present prompt
    actual = mask_iou(logits[:1], target[:1])[0, 0]
    torch.testing.assert_close(ref["iou_mse"], (0.7 - actual).abs())
    with pytest.raises(ValueError, match="object_score_logits"):
        sam_loss(logits, iou_pred, target, object_score_logits=torch.zeros(2))
