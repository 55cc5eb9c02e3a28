"""SAM training losses: focal + dice on mask logits (20:1), MSE on the predicted IoU.

Shapes: logits and targets are BxMxHxW (M masks per prompt), predicted IoU BxM. With M > 1 the
prompt is ambiguous and only the mask with the lowest focal + dice loss is back-propagated (the
"multimask rule"); the IoU head is supervised on all M masks (or only that one).

SAM 2 adds an object-score head: given its Bx1 logits, `sam_loss` adds a binary cross-entropy
between them and "the ground-truth mask is non-empty", and the mask, dice and IoU terms count
only for prompts whose object is present (the official `MultiStepMultiMasksAndIous` with
`pred_obj_scores=True`, `focal_alpha_obj_score=-1`, `focal_gamma_obj_score=0`). The official SAM 2
recipe also regresses the IoU with an L1 loss (`iou_use_l1_loss`); see `sam2_loss_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def _weights(logits: Tensor, valid: Tensor | None) -> Tensor:
    if valid is None:
        return torch.ones_like(logits)
    return valid.to(logits.dtype).expand_as(logits)


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    valid: Tensor | None = None,
) -> Tensor:
    """Focal loss (Lin et al.) averaged over the (valid) pixels of each mask.

    Args:
        logits: ...xHxW mask logits.
        targets: ...xHxW 0/1 targets (broadcastable to logits).
        alpha: weight of the positive class (negative class 1 - alpha); < 0 disables it.
        gamma: focusing exponent.
        valid: optional ...xHxW pixel weights (e.g. 0 on the padding).

    Returns:
        ... per-mask losses.
    """
    targets = targets.to(logits.dtype).expand_as(logits)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    w = _weights(logits, valid)
    return (loss * w).sum((-2, -1)) / w.sum((-2, -1)).clamp_min(1.0)


def dice_loss(
    logits: Tensor, targets: Tensor, valid: Tensor | None = None, eps: float = 1.0
) -> Tensor:
    """1 - (2 |P.T| + eps) / (|P| + |T| + eps) with P = sigmoid(logits), per mask."""
    targets = targets.to(logits.dtype).expand_as(logits)
    w = _weights(logits, valid)
    p = torch.sigmoid(logits) * w
    t = targets * w
    num = 2 * (p * t).sum((-2, -1)) + eps
    den = p.sum((-2, -1)) + t.sum((-2, -1)) + eps
    return 1 - num / den


def mask_iou(logits: Tensor, targets: Tensor, valid: Tensor | None = None) -> Tensor:
    """IoU of (logits > 0) with the targets, per mask (1 when both are empty)."""
    pred = logits > 0
    gt = targets.bool().expand_as(pred)
    if valid is not None:
        v = valid.bool().expand_as(pred)
        pred, gt = pred & v, gt & v
    inter = (pred & gt).sum((-2, -1)).float()
    union = (pred | gt).sum((-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.ones_like(union))


@dataclass(frozen=True)
class LossWeights:
    """Weights of the SAM loss terms (the paper: focal 20, dice 1, IoU MSE 1).

    `obj_score` weighs SAM 2's object-score cross-entropy (used only when the model gives object
    scores). `iou_l1` regresses the IoU with L1 instead of MSE; None means the model family's
    default (MSE for SAM 1, L1 for SAM 2, as in the official SAM 2 training configs).
    """

    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    supervise_all_iou: bool = True
    obj_score: float = 1.0
    iou_l1: bool | None = None


def sam2_loss_weights() -> LossWeights:
    """The official SAM 2.1 fine-tuning loss: mask 20, dice 1, IoU 1 (L1, all masks), class 1."""
    return LossWeights(
        focal=20.0, dice=1.0, iou=1.0, supervise_all_iou=True, obj_score=1.0, iou_l1=True
    )


def sam_loss(
    logits: Tensor,
    iou_pred: Tensor,
    targets: Tensor,
    valid: Tensor | None = None,
    weights: LossWeights = LossWeights(),
    object_score_logits: Tensor | None = None,
) -> dict[str, Tensor]:
    """The SAM loss for one round of prompts, with the multimask rule.

    Args:
        logits: BxMxHxW mask logits (M = 1, or 3 for ambiguous prompts).
        iou_pred: BxM predicted IoU.
        targets: Bx1xHxW (or BxHxW) 0/1 ground truth in the logits' frame.
        valid: optional Bx1xHxW / HxW pixel weights.
        weights: loss weights (`iou_l1` None means MSE).
        object_score_logits: SAM 2's Bx1 object-score logits, or None (SAM 1).

    Returns:
        dict with `loss` (scalar: the weighted terms averaged over prompts), `focal`, `dice`,
        `iou_mse` (the IoU regression term, L1 with `iou_l1`), `obj` (object-score cross-entropy,
        0 without object scores) as scalars of the selected masks, `best` (B indices of the
        selected masks) and `iou` (BxM actual IoU of every mask, no gradient).
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be BxMxHxW, got shape {tuple(logits.shape)}")
    if targets.dim() == 3:
        targets = targets[:, None]
    if iou_pred.shape != logits.shape[:2]:
        raise ValueError(
            f"iou_pred {tuple(iou_pred.shape)} must be BxM = {tuple(logits.shape[:2])}"
        )
    focal = sigmoid_focal_loss(logits, targets, weights.focal_alpha, weights.focal_gamma, valid)
    dice = dice_loss(logits, targets, valid)
    per_mask = weights.focal * focal + weights.dice * dice  # (B, M)
    best = per_mask.detach().argmin(dim=1)
    rows = torch.arange(logits.shape[0], device=logits.device)
    with torch.no_grad():
        actual_iou = mask_iou(logits, targets, valid)
    diff = iou_pred.float() - actual_iou
    iou_err = diff.abs() if weights.iou_l1 else diff**2
    iou_term = iou_err.mean(1) if weights.supervise_all_iou else iou_err[rows, best]
    mask_term = per_mask[rows, best]
    per_prompt = mask_term + weights.iou * iou_term
    obj = torch.zeros((), device=logits.device)
    if object_score_logits is not None:
        if object_score_logits.shape != (logits.shape[0], 1):
            raise ValueError(
                f"object_score_logits {tuple(object_score_logits.shape)} must be Bx1 = "
                f"({logits.shape[0]}, 1)"
            )
        gt = targets.bool()
        if valid is not None:
            gt = gt & valid.bool().expand_as(gt)
        present = gt.flatten(1).any(1).to(per_prompt.dtype)  # (B,)
        obj = F.binary_cross_entropy_with_logits(
            object_score_logits.float()[:, 0], present, reduction="none"
        )
        per_prompt = per_prompt * present + weights.obj_score * obj
        obj = obj.mean()
    loss = per_prompt.mean()
    return {
        "loss": loss,
        "focal": focal[rows, best].mean().detach(),
        "dice": dice[rows, best].mean().detach(),
        "iou_mse": iou_term.mean().detach(),
        "obj": obj.detach(),
        "best": best,
        "iou": actual_iou,
    }
